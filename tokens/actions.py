"""The actions on existing tokens (reset, set a field, delete, attach a file): what a token becomes.

Each is a plain function of the document; `run` hands the job's selection and the action to the engine.
"""

import base64
import hashlib
import math
import time

from django.conf import settings
from django.utils import timezone

from tokens import engine
from tokens.couch import Conflict, NotFound, Unreachable
from tokens.models import Job, JobToken
from tokens.selections import OperationError, Selection, pool_rules
from tokens.states import SURF, js_number
from tokens.uploads import upload_path

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


def check_params(action, params):
    """Validate an action's parameters before anything is previewed or written."""
    if action not in Job.ACTIONS:
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
    with engine.Reader(pool, batch_size) as reader:
        for docs in reader.batches(selection, started):
            engine.check_cancel(job)
            process_batch(job, couch, selection, rules, docs, started)


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
                                             conflicted, doc["_rev"], rev))
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
