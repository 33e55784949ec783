"""What is odd about a token: fields of unexpected types, missing fields a worker needs, huge fields, attachment
names with path parts. Real pools hold such tokens (hand edits, old tools, GRID_LRT's all-text fields); the pages
show them, say what is odd, and never fail on them."""

import json

from tokens.states import type_of

# A field whose JSON is bigger than this is cut on the token page (the JSON answer has it whole).
HUGE_FIELD_BYTES = 64 * 1024
# Fields picas and the views read, and the JSON kinds a worker writes into them.
NUMBER_FIELDS = ("lock", "done")
TEXT_FIELDS = ("hostname", "status")


def kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def short(value, limit=40):
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def safe_file_name(name):
    """An attachment's name for a download: no slashes, no control characters."""
    return "".join(c if c.isprintable() and c not in "/\\" else "-" for c in name)


def unsafe_name(name):
    """An attachment name that would climb out of a folder or breaks a header. Old pilots' names with slashes
    ("22/11/2026_10:00:00_logs_x.out") are ordinary."""
    return name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/") or not name.isprintable()


def oddities(doc, token_types=None):
    """Notes for an operator, one per odd thing; [] for a well-formed token, or for a document of a type that is
    not one of the pool's token types (`token_types`: picas logs and the like are not tokens)."""
    if isinstance(doc.get("type"), str) and token_types is not None and doc["type"] not in token_types:
        return []
    notes = []
    if "type" not in doc:
        notes.append("no type field: no view counts it as a token")
    elif not isinstance(doc["type"], str):
        matched = type_of(doc, token_types) if token_types else None
        notes.append(f"type is {kind(doc['type'])} ({short(doc['type'])}), not text: " + (
            f"the workers' views count it as a {matched!r} token (their == compares loosely), a tool that reads "
            "type as text does not" if matched else "no view counts it as a token"))
    for name in NUMBER_FIELDS:
        if name not in doc:
            notes.append(f"no {name} field: it is in no worker view")
        elif kind(doc[name]) != "a number":
            notes.append(f"{name} is {kind(doc[name])} ({short(doc[name])}), not a number: the views compare it "
                         "the loose JavaScript way, so its state may not be what it seems")
    for name in TEXT_FIELDS:
        if name in doc and not isinstance(doc[name], str):
            notes.append(f"{name} is {kind(doc[name])} ({short(doc[name])}), not text")
    if doc.get("type") == "token" and "scrub_count" not in doc:
        notes.append("no scrub_count: a picas worker crashes (KeyError) after running it; a reset adds it")
    elif "scrub_count" in doc and kind(doc["scrub_count"]) != "a number":
        notes.append(f"scrub_count is {kind(doc['scrub_count'])} ({short(doc['scrub_count'])}), not a number")
    if isinstance(doc.get("exit_code"), (dict, list, bool)):
        notes.append(f"exit_code is {kind(doc['exit_code'])} ({short(doc['exit_code'])}): parseInt makes it an "
                     "error")
    errors = doc.get("error")
    if "error" in doc and not isinstance(errors, list):
        notes.append(f"error is {kind(errors)} ({short(errors)}), not a list of entries")
    elif isinstance(errors, list):
        bad = sum(1 for e in errors if not isinstance(e, dict))
        if bad:
            notes.append(f"{bad} of {len(errors)} entries of error are not objects")
    for name, value in doc.items():
        if name == "_attachments":
            continue
        size = len(json.dumps(value, ensure_ascii=False, default=str))
        if size > HUGE_FIELD_BYTES:
            notes.append(f"{name} is huge ({size:,} characters): cut on this page; the token's JSON has it whole")
    for name in doc.get("_attachments") or {}:
        if unsafe_name(name):
            notes.append(f"attachment name {short(name, 80)} has path parts or control characters: it is "
                         f"downloaded as {safe_file_name(name)!r}")
    return notes
