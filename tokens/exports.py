"""Exports: any token list as CSV or JSON lines, streamed a key-range page at a time.

A selection (a state, a failure group, the stale locks, an observation) is read from the same views the lists
and jobs read, `batch_size` documents per request, and turned into rows of the fields asked for as it goes: an
export of a million tokens holds one page in memory, never the list.

Values are written so that opening the file cannot run anything: CSV cells that a spreadsheet would take for a
formula get a leading quote (numbers excepted, so -1 stays a number), and JSON lines escape < > & so that no
viewer can take them for HTML. A CouchDB failure half-way ends the file with a line that says it is incomplete.
"""

import csv
import io
import json
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tokens.couch import CouchError
from tokens.reading import JOB_ID_FIELDS, matches, ungrouped_type_problem, worker_state_view
from tokens.selections import OperationError, Selection, infer_kind
from tokens.states import (
    OWN_DDOC,
    STATES,
    TIME_MIN,
    classify,
    group_label,
    group_of,
    style_of,
)

log = logging.getLogger(__name__)

FORMATS = {"csv": ("text/csv; charset=utf-8", "csv"), "jsonl": ("application/x-ndjson; charset=utf-8", "jsonl")}
KINDS = ("state", "failure", "stale", "observation")
BATCH_SIZE = 500
MAX_FIELDS = 200

# Derived from a token rather than stored in it. A document field of the same name is shadowed by these.
COMPUTED = {
    "state": "the token's bucket (todo, locked, done, error, or an out-of-view one)",
    "observation": "the observation the pool page shows it under",
    "lock_time": "lock as an ISO time (UTC), empty unless it is a time",
    "done_time": "done as an ISO time (UTC), empty unless it is a time",
    "lock_age_hours": "hours since lock, empty unless lock is a time",
    "job_id": "the first job id a worker wrote (dirac, wms, cream, pbs, slurm)",
    "error_count": "the number of entries in error",
    "last_error": "the message of the latest error",
    "attachments": "the names of the token's attachments",
}
# Fields of the PiCaS token contract and of GRID_LRT tokens: always exportable, even where the first page of a
# selection happens not to have them (job ids appear only once a worker locked a token).
CONTRACT = ("_id", "_rev", "type", "lock", "done", "hostname", "scrub_count", "input", "exit_code", "output",
            "uploads", "error", "_attachments", *JOB_ID_FIELDS, "status", "times", "progress", "launcher_status",
            "OBSID", "PIPELINE_STEP", "STARTSB", "RESULTS_DIR")
DEFAULT_FIELDS = ("_id", "type", "state", "lock_time", "done_time", "exit_code", "status", "output", "hostname",
                  "scrub_count", "error_count", "last_error", "attachments")
WHOLE = "*"

# A cell starting with one of these is a formula to Excel, LibreOffice or Google Sheets (full-width forms too).
_FORMULA_START = tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")
_NAME_RE = re.compile(r"[^\x00-\x1f\x7f]{1,200}")


class ExportError(Exception):
    """The export cannot be made as asked; the message is for the user (HTTP 400)."""


@dataclass
class Export:
    """A checked export, ready to stream: its first page is already read (so a dead server is a 5xx page, not a
    broken download), the rest is read as the response is sent."""

    fmt: str
    fields: list
    filename: str
    content_type: str
    batches: object  # iterator of lists of documents
    row_of: object  # doc -> {field: value}
    first: list = field(default_factory=list)

    def chunks(self):
        """The file, a page of rows per chunk; a failure half-way ends it with an "incomplete" line."""
        written = 0
        if self.fmt == "csv":
            yield _csv_lines([[csv_cell(name) for name in self.fields]])
        try:
            batch, self.first = self.first, None
            while batch is not None:
                if batch:
                    yield self._encode([self.row_of(doc) for doc in batch])
                    written += len(batch)
                batch = None  # one page in memory: this one goes before the next is read
                batch = next(self.batches, None)
        except CouchError as e:
            log.warning("export %s stopped after %d rows: %s", self.filename, written, e)
            yield self._incomplete(str(e), written)
        except Exception:
            log.exception("export %s stopped after %d rows", self.filename, written)
            yield self._incomplete("an unexpected error on the server", written)

    def _encode(self, rows):
        if self.fmt == "csv":
            return _csv_lines([[csv_cell(row.get(name, _ABSENT)) for name in self.fields] for row in rows])
        return _json_lines(rows)

    def _incomplete(self, reason, written):
        text = f"EXPORT INCOMPLETE: stopped after {written} rows: {reason}"
        if self.fmt == "csv":
            return _csv_lines([["#" + text]])
        return _json_lines([{"_export_incomplete": text, "rows": written}])


_ABSENT = object()


# --- checking what was asked -----------------------------------------------------------------


def parse_fields(text, fmt):
    """The field names asked for, in order, each once. `*` (JSON lines only) means whole documents."""
    if text is None:
        return list(DEFAULT_FIELDS)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise ExportError("Choose at least one field (fields=a,b,c), or leave fields out for the default set")
    if WHOLE in names:
        if fmt != "jsonl":
            raise ExportError("fields=* (whole documents) needs format=jsonl: CSV needs named columns")
        if names != [WHOLE]:
            raise ExportError("fields=* stands alone: whole documents already hold every field")
        return names
    if len(names) > MAX_FIELDS:
        raise ExportError(f"At most {MAX_FIELDS} fields")
    for name in names:
        if not _NAME_RE.fullmatch(name):
            raise ExportError(f"{name[:40]!r} is not a field name (control characters, or over 200 characters)")
    return names


def check_fields(names, first, group_field):
    """Refuse names that are no computed field, no field of the token contract and no field of any document of
    the selection's first page: a typo gives a message, not a column of blanks."""
    if names == [WHOLE] or not first:
        return
    known = set(COMPUTED) | set(CONTRACT) | ({group_field} if group_field else set())
    for doc in first:
        known.update(doc)
    unknown = [n for n in names if n not in known]
    if unknown:
        seen = sorted({k for doc in first for k in doc} - set(COMPUTED))
        raise ExportError(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: not a field of these "
            f"tokens (seen: {', '.join(seen[:40])}{' …' if len(seen) > 40 else ''}) nor a computed one "
            f"({', '.join(COMPUTED)})")


def selection_from(query, own_views):
    """The selection in a list page's query string, read as every selection is (Selection.from_query): state=…,
    code=… (a failure group), hours=… (stale locks), or type=… (a whole observation); `kind` may say which. type
    and group narrow it to one observation. What an export cannot read is an ExportError."""
    if not query.get("kind") and infer_kind(query) is None:
        raise ExportError("Say what to export: state=…, code=… (a failure group), hours=… (stale locks) "
                          "or type=… (an observation)")
    try:
        selection = Selection.from_query(query)
    except OperationError as e:
        raise ExportError(str(e)) from None
    if selection.kind not in KINDS:
        raise ExportError(f"Unknown selection {selection.kind!r}: one of {', '.join(KINDS)}")
    if selection.kind == "state" and not own_views and selection.bucket not in STATES:
        raise ExportError(f"Unknown state {selection.bucket!r}: one of {', '.join(STATES)}")
    if selection.kind != "state" and not own_views:
        raise ExportError("Only a state of one observation can be exported without the dashboard's own design "
                          "document (COUCHDB_CREATE_VIEWS)")
    if selection.kind == "state" and not own_views and not selection.type:
        raise ExportError("Without the dashboard's own design document, name the observation (type=…, and group=… "
                          f"if it has one) and one of the workers' states ({', '.join(STATES)})")
    return selection


def view_ranges(selection, data, now):
    """([(design document, view, start key, end key)] that hold the selection, in the order they are read, and
    which of their documents to keep (None: all)."""
    if not data["own_views"]:  # a worker design document's state view, keyed by document id
        where, keep = worker_state_view(data, selection.bucket, selection.type, selection.group)
        if where is None:
            raise ExportError(f"No design document of this pool is for token type {selection.type!r}")
        return [(*where, None, None)], keep
    return [(OWN_DDOC, view, start, end) for view, start, end in selection.view_ranges(now, held=True)], None


# --- reading ---------------------------------------------------------------------------------


def batches(couch, ranges, batch_size=BATCH_SIZE, id_filter="", field_filter=None, keep=None):
    """Lists of documents, one view page at a time, paged by key (never skip), those `keep` keeps. Each list may
    be empty."""
    for ddoc, view, start, end in ranges:
        key, docid = start, None
        while True:
            page = couch.page(ddoc, view, limit=batch_size, start_key=key, start_docid=docid, end_key=end,
                              include_docs=True)
            docs = [r["doc"] for r in page.rows if r.get("doc")]  # no doc: deleted since the index was read
            if id_filter or field_filter or keep:
                docs = [d for d in docs if matches(d, id_filter, field_filter) and (keep is None or keep(d))]
            yield docs
            if not page.has_next:
                break
            key, docid = page.next_key, page.next_docid
            page = docs = None  # not held while the next page is read


def open_export(pool, data, query, batch_size=None):
    """Check an export request and read its first page. Raises ExportError (bad request) or CouchError."""
    fmt = query.get("format") or "csv"
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format {fmt!r}: csv or jsonl")
    fields = parse_fields(",".join(query.getlist("fields")) if "fields" in query else None, fmt)
    own_views = data["own_views"]
    selection = selection_from(query, own_views)
    if problem := ungrouped_type_problem(data, selection.type, selection.group):
        raise ExportError(problem)
    name, value = query.get("field", "").strip(), query.get("value", "")
    field_filter = (name, value) if name else None
    id_filter = query.get("q", "").strip()
    now = time.time()
    ranges, keep = view_ranges(selection, data, now)
    docs = batches(pool.couch(), ranges, batch_size or BATCH_SIZE, id_filter, field_filter, keep)
    first = next(docs, [])
    check_fields(fields, first, pool.group_field)
    row_of = (lambda doc: doc) if fields == [WHOLE] else _row_maker(fields, data, now)
    content_type, ext = FORMATS[fmt]
    return Export(fmt, fields, filename(pool.slug, selection, ext, now), content_type, docs, row_of, first)


# --- rows --------------------------------------------------------------------------------------


def _row_maker(fields, data, now):
    styles = data.get("types") or {}
    group_field = data.get("group_field")
    several_types = len(styles) > 1

    def computed(name, doc):
        if name == "state":
            return classify(doc, style_of(doc, styles))
        if name == "observation":
            if not group_field:
                return doc.get("type")
            label = group_label(group_of(doc, group_field), group_field)
            return f"{label} · {doc.get('type')}" if several_types else label
        if name in ("lock_time", "done_time"):
            return iso_time(doc.get(name[:-5]))
        if name == "lock_age_hours":
            lock = doc.get("lock")
            return round((now - lock) / 3600, 2) if _is_time(lock) else None
        if name == "job_id":
            return next((doc[f] for f in JOB_ID_FIELDS if doc.get(f)), None)
        errors = doc.get("error")
        if name == "error_count":
            return len(errors) if isinstance(errors, list) else (1 if errors else 0)
        if name == "last_error":
            return last_error(errors)
        if name == "attachments":
            return sorted(doc.get("_attachments") or {})
        raise KeyError(name)

    def row_of(doc):
        return {name: computed(name, doc) if name in COMPUTED else doc[name] for name in fields
                if name in COMPUTED or name in doc}

    return row_of


def _is_time(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and TIME_MIN <= value < 1e11


def iso_time(value):
    return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z") if _is_time(value) else None


def last_error(errors):
    if isinstance(errors, list) and errors:
        last = errors[-1]
        if isinstance(last, dict):
            message = last.get("message") or last.get("exception") or ""
            return message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
        return last if isinstance(last, str) else json.dumps(last, ensure_ascii=False)
    return errors if isinstance(errors, str) and errors else None


# --- encoding ------------------------------------------------------------------------------------


def csv_cell(value):
    """One CSV cell: JSON spelling for numbers, booleans, lists and objects; empty for absent and null; text that
    a spreadsheet would run as a formula gets a leading quote. Numbers stay numbers: -1 is not a formula."""
    if value is _ABSENT or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)  # starts with [ or {: never a formula
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_chunks(header, rows, per=500):
    """A CSV file of plain rows (cells as csv_cell spells them), `per` rows to a chunk: for a streamed download."""
    yield _csv_lines([header])
    batch = []
    for row in rows:
        batch.append([csv_cell(v) for v in row])
        if len(batch) == per:
            yield _csv_lines(batch)
            batch = []
    if batch:
        yield _csv_lines(batch)


def _csv_lines(rows):
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode("utf-8", "replace")  # a lone surrogate (invalid in UTF-8) becomes "?"


# Characters that would end a line for some readers (str.splitlines, JavaScript) or let a viewer take the text
# for HTML; all are valid \u escapes inside JSON strings, the only place they can occur in json.dumps's output.
_JSON_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029\x85"})


def _json_lines(rows):
    text = "".join(json.dumps(r, ensure_ascii=False).translate(_JSON_ESCAPES) + "\n" for r in rows)
    # A lone surrogate can only sit inside a JSON string, where its backslash form is the JSON escape for it.
    return text.encode("utf-8", "backslashreplace")


def filename(slug, selection, ext, now):
    parts = [slug, selection.kind if selection.kind != "state" else selection.bucket]
    if selection.kind == "failure":
        parts.append(f"code-{selection.code}")
    if selection.kind == "stale":
        parts.append(f"{selection.hours:g}h")
    parts += [p for p in (selection.type, selection.group) if p]
    parts.append(datetime.fromtimestamp(now, UTC).strftime("%Y%m%d-%H%M%S"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts)).strip("._-")
    return f"{name[:150]}.{ext}"
