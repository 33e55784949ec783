"""The actions: one registry (ACTIONS) that the web form, the API, the command line and the job pages all read;
each action's parameters, read and checked once (read_params, check_params), in words (params_in_words), and what
it makes of a token (a plain function of the document); `run` hands the job's selection and the action to the
engine. A new action is an entry here, its branches in these functions, and its tests.
"""

import base64
import hashlib
import json
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.template.defaultfilters import filesizeformat, pluralize
from django.utils import timezone

from tokens import engine, retries
from tokens.couch import Conflict, NotFound, Unreachable
from tokens.models import Job, JobToken
from tokens.selections import OperationError, Selection, pool_rules
from tokens.states import SURF, js_number
from tokens.uploads import save_upload, upload_path


@dataclass(frozen=True)
class Action:
    """An action as every surface offers it: its name, its label, whether it acts on selected tokens, and whether
    the API offers it (attaching a file needs an upload: the web form and the command line)."""

    name: str
    label: str
    verb: str  # "this would <verb> 2 tokens"
    on_tokens: bool = True
    in_api: bool = True


ACTIONS = {a.name: a for a in (
    Action("reset", "Reset / retry", "reset / retry"),
    Action("set_field", "Set a field", "set a field on"),
    Action("attach", "Attach a file", "attach the file to", in_api=False),
    Action("delete", "Delete", "delete"),
    Action("create_tokens", "New token set", "create", on_tokens=False, in_api=False),  # tokens.tokensets
)}
TOKEN_ACTIONS = tuple(name for name, a in ACTIONS.items() if a.on_tokens)  # offered on a selection of tokens
API_ACTIONS = tuple(name for name in TOKEN_ACTIONS if ACTIONS[name].in_api)


def label(action):
    return ACTIONS[action].label if action in ACTIONS else action


def verb(action):
    return ACTIONS[action].verb if action in ACTIONS else action


def labels(names=tuple(ACTIONS)):
    """{name: label}: the pages' tabs, selects and filters."""
    return {name: ACTIONS[name].label for name in names}


# Fields whose change moves a token between states: set_field refuses them unless told otherwise.
STATE_FIELDS = {"lock", "done", "exit_code", "status", "output", "type", "scrub_count"}
RESERVED_FIELDS = {"_id", "_rev", "_attachments", "_deleted", "_conflicts", "_revisions"}
VALUE_TYPES = ("string", "number", "boolean", "json")


def reset_token(doc, style, delete_attachments=False):
    """SURF resetTokens.py's fields, plus status and output for GRID_LRT tokens; error[] is kept."""
    new = dict(doc)
    new.update(lock=0, done=0, hostname="", exit_code="")
    scrubs = js_number(doc.get("scrub_count", 0))  # GRID_LRT's tools write numbers as text ("3")
    new["scrub_count"] = (int(scrubs) if math.isfinite(scrubs) and scrubs >= 0 else 0) + 1
    if style != SURF:
        new.update(status="todo", output="")
    if delete_attachments:
        new.pop("_attachments", None)
    return new


def set_field(doc, name, value):
    current = doc.get(name, _ABSENT)
    if type(current) is type(value) and current == value:  # (True == 1 in Python, not in JSON)
        return None  # already so: nothing to write
    return {**doc, name: value}


_ABSENT = object()


def parse_value(text, value_type):
    """A typed value from a form: string, number, boolean or JSON."""
    if value_type == "string":
        return text
    if value_type == "number":
        try:
            number = float(text)
        except ValueError:
            raise OperationError(f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise OperationError("The number must be finite")
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if value_type == "boolean":
        if text.strip().lower() in ("true", "1", "yes"):
            return True
        if text.strip().lower() in ("false", "0", "no"):
            return False
        raise OperationError(f"{text!r} is not true or false")
    if value_type == "json":
        import json

        try:
            return json.loads(text)
        except ValueError as e:
            raise OperationError(f"The value is not valid JSON: {e}") from None
    raise OperationError(f"Unknown value type {value_type!r}")


def read_params(action, data, upload=None):
    """An action's parameters from the web form (its fields and file), the command line's options or an API body,
    named alike: delete_attachments; field, value and value_type (without one, the value is JSON as given: the
    API's), allow_state_fields; name and the uploaded file. Checked by check_params when the job is made."""
    if action == "reset":
        return {"delete_attachments": _flag(data.get("delete_attachments"))}
    if action == "set_field":
        params = {"field": (data.get("field") or "").strip(),
                  "allow_state_fields": _flag(data.get("allow_state_fields"))}
        if data.get("value_type"):  # text and what it is (the form, the command line)
            params["value_type"] = data["value_type"]
            params["value"] = parse_value(data.get("value") or "", data["value_type"])
        elif "value" in data:  # a JSON value as it is (the API)
            params["value"] = data["value"]
        return params
    if action == "attach":
        if upload is None:
            raise OperationError("Choose a file to attach")
        upload_id, size, digest = save_upload(upload)
        return {"name": (data.get("name") or "").strip() or upload.name, "upload": upload_id, "size": size,
                "digest": digest, "content_type": getattr(upload, "content_type", None) or "application/octet-stream"}
    return {}


def _flag(value):
    """A tick box ("on"), a command-line switch or a JSON boolean."""
    return value is True or value == "on"


VALUE_TYPE_WORDS = {"string": "text", "number": "a number", "boolean": "true or false", "json": "JSON"}


def params_in_words(action, p):
    """What a job was told to do beyond its selection, as sentences (the job page; never a dict)."""
    if action == "reset":
        words = ["Attachments deleted" if p.get("delete_attachments") else "Attachments kept; error history kept"]
        if p.get("rule"):
            attempts = p.get("attempts", 1)
            words.append(f"By retry rule “{p['rule']}”: at most {p.get('limit', 0):,} token"
                         f"{pluralize(p.get('limit', 0))}, each given {attempts} attempt{pluralize(attempts)} in all "
                         "(a token with all used is given up, not reset); "
                         + ("failures on black-hole hosts held" if p.get("hold_black_holes") else
                            "black-hole hosts not held"))
        return words
    if action == "set_field":
        value = p.get("value")
        # The web form and the CLI say the value's type; the API sends JSON, whose value has its own.
        value_type = p.get("value_type") or json_type(value)
        shown = "true" if value is True else "false" if value is False else json.dumps(value) \
            if value_type == "json" else str(value)
        words = [f"Set “{p.get('field')}” to {shown} ({VALUE_TYPE_WORDS.get(value_type, 'text')})"]
        if p.get("allow_state_fields"):
            words.append("state fields allowed")
        return words
    if action == "attach":
        return [f"Attach “{p.get('name')}” ({filesizeformat(p.get('size') or 0)}, {p.get('content_type')}); a "
                "token that already has this file under this name is left as it is"]
    if action == "delete":
        return ["Deleted tokens leave tombstones (never purged)"]
    if action == "create_tokens":
        o = p.get("options", {})
        per = o.get("per_token", 1)
        return [f"Tokens of type “{o.get('token_type')}”, {per} item{pluralize(per)} each, keyed by "
                f"“{o.get('key_field')}”" + (f", each with “{o['attachment']}” attached" if o.get("attachment")
                                             else "") + ("; views created where absent" if o.get("create_views")
                                                         else "; no views created")]
    return []


def json_type(value):
    """The value type (as the web form names them) of a JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "json"


def check_params(action, params):
    """Validate an action's parameters before anything is previewed or written."""
    if action not in ACTIONS:
        raise OperationError(f"Unknown action {action!r}")
    if action == "set_field":
        name = (params.get("field") or "").strip()
        if not name:
            raise OperationError("Name the field to set")
        if name in RESERVED_FIELDS or name.startswith("_"):
            raise OperationError(f"{name!r} is CouchDB's own field and cannot be set")
        if name in STATE_FIELDS and not params.get("allow_state_fields"):
            raise OperationError(
                f"{name!r} decides the token's state; tick “change state fields” to set it anyway")
        if "value" not in params:
            raise OperationError("Give the value to set")
    if action == "attach":
        name = params.get("name") or ""
        if not name or name.startswith("_"):
            raise OperationError("Give the attachment a name (not starting with _)")
        if not params.get("upload"):
            raise OperationError("Choose a file to attach")


def run(job, pool, batch_size):
    """Carry out a job's action on its selection, a batch at a time (the engine's loop)."""
    couch = pool.couch()
    selection = Selection.from_dict(job.selection)
    rules = engine.retrying(pool_rules, pool, couch)
    started = time.time()
    # A retry rule's job: the rule judges each batch first (attempts used, black-hole hosts, its hour's limit).
    rule = retries.RuleRun(job, pool, rules) if selection.kind == "retry" else None
    with engine.Reader(pool, batch_size) as reader:
        for docs in reader.batches(selection, started):
            engine.check_cancel(job)
            if rule:
                docs = rule.sift(docs, started, engine.record, engine.save_batch)
            process_batch(job, couch, selection, rules, docs, started)
            if rule and rule.full:
                break


def process_batch(job, couch, selection, rules, docs, now):
    """One batch of documents as read: re-checked, changed, written and recorded."""
    write = _attach_each if job.action == "attach" else None
    engine.process(job, couch, selection, rules, docs, now, lambda doc: _new_version(job, couch, doc, rules), write)


def _new_version(job, couch, doc, rules):
    style = rules.style_of(doc)
    if job.action == "reset":
        return reset_token(doc, style, job.params.get("delete_attachments", False))
    if job.action == "set_field":
        return set_field(doc, job.params["field"].strip(), job.params["value"])
    if job.action == "delete":
        return {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True}
    if job.action == "attach":
        return None if _holds_our_file(job, couch, doc) else doc
    raise OperationError(f"Unknown action {job.action!r}")


def _attach_each(job, couch, selection, rules, writes, now, records, _change):
    """Attachments go one request per token (CouchDB has no bulk attachment upload), streamed from disk."""
    path = upload_path(job.params["upload"])
    name = job.params["name"]
    content_type = job.params.get("content_type") or "application/octet-stream"
    for doc_id, (doc, _same) in writes.items():
        conflicted = False
        for _attempt in range(settings.JOB_RETRIES + 1):
            try:
                with open(path, "rb") as body:  # opened anew for every try: a retry sends the whole file
                    rev = couch.put_attachment(doc_id, name, body, content_type, doc["_rev"])
                records.append(engine.record(job, doc_id, JobToken.CHANGED, "after a conflict" if conflicted else "",
                                             conflicted, doc["_rev"], rev,
                                             unconfirmed=getattr(rev, "accepted_only", False)))
                break
            except (Unreachable, Conflict) as e:
                if isinstance(e, Conflict):
                    job.conflicts += 1
                    if conflicted:
                        records.append(engine.record(job, doc_id, JobToken.FAILED, "conflict twice", True,
                                                     doc["_rev"]))
                        break
                try:
                    fresh = engine.retrying(couch.get, doc_id)
                except NotFound:
                    records.append(engine.record(job, doc_id, JobToken.SKIPPED, "deleted meanwhile", True,
                                                 doc["_rev"]))
                    break
                if _holds_our_file(job, couch, fresh):  # our upload arrived (its answer was lost) or was already there
                    records.append(engine.record(job, doc_id, JobToken.CHANGED, "", conflicted, doc["_rev"],
                                                 fresh["_rev"]))
                    break
                if fresh["_rev"] != doc["_rev"]:
                    if engine.fingerprint(fresh) != engine.fingerprint(doc) or not selection.holds(fresh, rules, now):
                        records.append(engine.record(job, doc_id, JobToken.SKIPPED, "changed meanwhile", True,
                                                     doc["_rev"]))
                        break
                    conflicted, doc = True, fresh
        else:
            raise Unreachable(f"CouchDB at {couch.url} is unreachable")
        Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())


def _holds_our_file(job, couch, doc):
    """Whether the token already has the job's file under the job's attachment name.

    The stub's digest is the MD5 of the bytes as stored. CouchDB stores compressible types (text/*, JSON ...)
    gzipped and digests the compressed bytes, so there the same file has another digest than the upload's.
    A stub of the file's length and an unknown digest is read back once and compared; what it showed is
    remembered for the rest of the job (the same server compresses the same file the same way)."""
    stub = (doc.get("_attachments") or {}).get(job.params["name"])
    if not stub or stub.get("length") != job.params.get("size"):
        return False
    if not hasattr(job, "stored_digests"):
        job.stored_digests = {job.params.get("digest"): True}
    if stub.get("digest") not in job.stored_digests:
        md5 = hashlib.md5()  # noqa: S324 - CouchDB's attachment digest, not security
        chunks, _type, _length = engine.retrying(couch.attachment, doc["_id"], job.params["name"])
        for chunk in chunks:
            md5.update(chunk)
        job.stored_digests[stub["digest"]] = "md5-" + base64.b64encode(md5.digest()).decode() == job.params["digest"]
    return job.stored_digests[stub["digest"]]
