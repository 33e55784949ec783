"""Operations on tokens (reset, set field, delete, attach), safe against the workers that run meanwhile.

Views, the Celery task and the `tokens` management command only call these functions.

Every write carries the `_rev` that was read. A selected token is re-checked against the selection when
it is read, and again after a 409 (re-read first): a token that a worker claimed, finished or changed
is skipped and reported, never overwritten. Tokens are read a key-range page at a time and written with
one `_bulk_docs` per page, so a job's memory does not grow with the pool.
"""

import base64
import hashlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db import reset_queries, transaction
from django.db.models import Q
from django.utils import timezone

from tokens.couch import Conflict, CouchError, NotFound, Unreachable
from tokens.models import Job, JobToken
from tokens.reading import ensure_own_views
from tokens.states import (
    BUCKET_LABELS,
    BUCKETS,
    OWN_DDOC,
    SURF,
    classify,
    describe_design_doc,
    failed_at,
    group_of,
    js_number,
    js_string,
    lock_time,
    stale_locks_range,
    token_types,
)

log = logging.getLogger(__name__)

JOB_OUTCOMES = {"changed": "changed", "skipped": "skipped", "failed": "failed on"}

# Fields whose change moves a token between states: set_field refuses them unless told otherwise.
STATE_FIELDS = {"lock", "done", "exit_code", "status", "output", "type", "scrub_count"}
RESERVED_FIELDS = {"_id", "_rev", "_attachments", "_deleted", "_conflicts", "_revisions"}
VALUE_TYPES = ("string", "number", "boolean", "json")


class OperationError(Exception):
    """A job cannot be created or run as asked; the message is for the operator."""


@dataclass
class Selection:
    """Which tokens a job touches. kind: state, stale, failure, observation (all its tokens), ids, or job (the
    tokens an earlier job changed, skipped or failed: `job` its id, `outcome` which)."""

    kind: str
    bucket: str | None = None
    type: str | None = None
    group: str | None = None
    hours: float | None = None
    code: str | None = None
    message: str | None = None
    ids: list = field(default_factory=list)
    job: int | None = None
    outcome: str | None = None

    def as_dict(self):
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def validate(self):
        if self.kind == "state" and self.bucket not in BUCKETS:
            raise OperationError(f"Unknown state {self.bucket!r}")
        if self.kind == "stale" and (self.hours is None or not math.isfinite(self.hours) or self.hours < 0):
            raise OperationError("A stale-lock selection needs a lock age in hours (0 or more)")
        if self.kind == "failure" and self.code is None:
            raise OperationError("A failure-group selection needs an exit code")
        if self.kind == "ids" and not self.ids:
            raise OperationError("Select at least one token")
        if self.kind == "observation" and not self.type:
            raise OperationError("Name the observation (token type, and group if the pool has one)")
        if self.kind == "state" and self.bucket == "locked":
            raise OperationError("Locked tokens are acted on by lock age (a live worker may hold them): "
                                 "use Stale locks, or --stale-hours")
        if self.kind == "stale" and self.type:
            raise OperationError("Stale locks are selected across the whole pool (no observation)")
        self.ids = list(dict.fromkeys(self.ids))  # a token listed twice is still one token
        if self.kind == "job":
            self._validate_job()
        if self.kind not in ("state", "stale", "failure", "observation", "ids", "tokenset", "job"):
            raise OperationError(f"Unknown selection {self.kind!r}")

    def _validate_job(self):
        if self.outcome not in JOB_OUTCOMES:
            raise OperationError("Name the outcome: the tokens a job changed, skipped or failed")
        try:
            self.job = int(self.job)
        except (TypeError, ValueError):
            raise OperationError("Name the job by its number") from None
        if not Job.objects.filter(pk=self.job).exists():
            raise OperationError(f"There is no job {self.job}")

    def job_tokens(self):
        """The records of the tokens this selection names (kind job), in the order the job met them."""
        return JobToken.objects.filter(job_id=self.job, outcome=self.outcome).order_by("pk")

    def describe(self):
        where = ""
        if self.type:
            where = f" of {self.group or self.type}"
        if self.kind == "state":
            return f"{BUCKET_LABELS[self.bucket]} tokens{where}"
        if self.kind == "stale":
            return f"tokens{where} locked longer than {self.hours:g} hours"
        if self.kind == "failure":
            return f"failed tokens{where} with exit code {self.code} and error “{self.message or '(no message)'}”"
        if self.kind == "observation":
            return f"all tokens{where}, in every state"
        if self.kind == "tokenset":
            return f"a new token set of type {self.type}"
        if self.kind == "job":
            return f"the tokens job {self.job} {JOB_OUTCOMES.get(self.outcome, self.outcome)}"
        return f"{len(self.ids)} selected token{'s' if len(self.ids) != 1 else ''}"

    def view_ranges(self, now):
        """[(view, start key, end key)] of the dashboard's own views that hold the selection."""
        scope = [self.type, self.group] if self.type else []
        if self.kind == "state":
            return [("states", [self.bucket, *scope], [self.bucket, *scope, {}])]
        if self.kind == "observation":
            return [("states", [b, *scope], [b, *scope, {}]) for b in BUCKETS]
        if self.kind == "failure":
            return [("failures", [self.code, self.message or "", *scope], [self.code, self.message or "", *scope, {}])]
        if self.kind == "stale":
            stale_range = stale_locks_range(now - self.hours * 3600)
            return [("locks", *stale_range)] if stale_range else []
        raise ValueError(self.kind)

    def holds(self, doc, rules, now):
        """Whether a token (as just read) is still in the selection: the re-check before every write."""
        style = rules.style_of(doc)
        if style is None or doc["_id"].startswith("_design/"):
            return False
        bucket = classify(doc, style)
        if self.type and doc.get("type") != self.type:
            return False
        if self.type and group_of(doc, rules.group_field) != self.group:
            return False  # another observation (None: the tokens without a group)
        if bucket == "locked" and self.kind != "stale":
            return False  # a worker may hold it: writing now would make the worker drop its result
        if bucket == "error" and not _failed_long_enough(doc, now, explicit=self.kind in ("ids", "job")):
            return False  # just failed: picas's max_scrub retry may be scrubbing it this very moment
        if self.kind == "state" or (self.kind == "ids" and self.bucket):
            return bucket == self.bucket
        if self.kind == "stale":
            taken = lock_time(doc)  # None for a lock of "Infinity": locked, but of no age
            return bucket == "locked" and taken is not None and now - taken > self.hours * 3600
        if self.kind == "failure":
            code = doc.get("exit_code") if style == SURF else doc.get("output")
            code = js_string(code) if code not in (None, "") else "(none)"  # as the failures view keys it
            return bucket in ("error", "legacy_error") and code == self.code
        return True  # explicit ids, a whole observation: whatever state they are in


def _failed_long_enough(doc, now, explicit=False):
    """Whether a failed token failed more than the grace period before `now`. A failure of unknown time is never
    old enough for a selection by state or group; an operator who names the token by id has looked at it."""
    failed = failed_at(doc)
    if failed is None:
        return explicit
    # picas stamps whole seconds (int(time.time())): the failure happened up to a second after its stamp.
    return now - (failed + 1) >= settings.JOB_FINISHED_GRACE_SECONDS


@dataclass
class Rules:
    """What a pool's design documents say: {token type: style}, and the pool's grouping field."""

    styles: dict
    group_field: str | None
    own_views: bool

    def style_of(self, doc):
        """The token's style; None for a document of no known type (a type that is not text included)."""
        return self.styles.get(doc.get("type")) if isinstance(doc.get("type"), str) else None


def pool_rules(pool, couch):
    design_docs = couch.design_docs()
    styles = token_types([d for d in map(describe_design_doc, design_docs) if d])
    return Rules(styles, pool.group_field or None, ensure_own_views(pool, couch, styles, design_docs))


# --- the actions: what a token becomes -------------------------------------------------------


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


# --- preview ---------------------------------------------------------------------------------


def preview(pool, selection, sample_size=10):
    """The number of tokens a job would touch now, and the first ids, without writing anything."""
    selection.validate()
    couch = pool.couch()
    rules = pool_rules(pool, couch)
    now = time.time()
    if selection.kind == "ids":
        docs = [d for d in _fetch(couch, selection.ids) if selection.holds(d, rules, now)]
        return {"count": len(docs), "sample": [d["_id"] for d in docs[:sample_size]]}
    if selection.kind == "job":  # what the job recorded; each is re-checked when read, as always
        if Job.objects.get(pk=selection.job).pool != pool.slug:
            raise OperationError(f"Job {selection.job} was on another pool")
        records = selection.job_tokens()
        return {"count": records.count(), "sample": list(records.values_list("token_id", flat=True)[:sample_size])}
    if not rules.own_views:
        raise OperationError("Jobs on a state need the dashboard's own design document (COUCHDB_CREATE_VIEWS)")
    count, sample = 0, []
    for view, start, end in selection.view_ranges(now):
        rows = couch.view(OWN_DDOC, view, start_key=start, end_key=end, reduce=True)["rows"]
        count += rows[0]["value"] if rows else 0
        if len(sample) < sample_size:
            page = couch.page(OWN_DDOC, view, limit=sample_size - len(sample), start_key=start, end_key=end)
            sample += [r["id"] for r in page.rows]
    return {"count": count, "sample": sample}


def _fetch(couch, ids):
    """Documents by id, one _all_docs request; missing and deleted ones are left out."""
    return [doc for doc in couch.docs(ids) if doc is not None]


def needs_typed_confirmation(action, count):
    return action == "delete" or count > settings.JOB_CONFIRM_THRESHOLD


def create_job(pool, user, action, selection, params, confirmation=None, via="web"):
    """Check, preview and record a job (its header). Raises OperationError. The caller queues it."""
    check_params(action, params)
    seen = preview(pool, selection)
    if needs_typed_confirmation(action, seen["count"]) and str(confirmation).strip() != str(seen["count"]):
        why = "deleting them" if action == "delete" else f"acting on more than {settings.JOB_CONFIRM_THRESHOLD}"
        how = {"web": "", "api": f' (send "confirm": {seen["count"]})', "cli": f" (--confirm {seen['count']})"}
        raise OperationError(f"Type the number of tokens ({seen['count']}) to confirm {why}{how.get(via, '')}")
    job = Job.objects.create(
        pool=pool.slug, user=user, via=via, action=action, selection=selection.as_dict(), params=params,
        preview_count=seen["count"], preview_sample=seen["sample"],
    )
    log.info("job %s created by %s: %s on %s (%s), preview %d", job.pk, user or via, action, pool.slug,
             selection.describe(), seen["count"])
    return job


# --- running ---------------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


def run_job(job_id, batch_size=None):
    """Carry out a queued job to its end.

    A job that ended, or was interrupted, is never resumed in place (an operator re-runs it as a new job, after a
    new dry run); a task the broker hands out again while its first worker still runs the job does nothing.
    """
    from tokens.pools import get_pool

    batch_size = batch_size or settings.JOB_BATCH_SIZE
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if job.status != Job.QUEUED:
            log.warning("job %s is %s; not starting it again", job.pk, job.status)
            return job
        job.status, job.started_at, job.heartbeat_at = Job.RUNNING, job.started_at or timezone.now(), timezone.now()
        job.save(update_fields=["status", "started_at", "heartbeat_at"])
    pool = get_pool(job.pool)
    try:
        if pool is None:
            raise OperationError(f"The pool {job.pool!r} is no longer configured")
        _run(job, pool, batch_size)
    except _Cancelled:
        _finish(job, Job.CANCELLED, "Cancelled by an operator between two batches; what was written is listed.")
    except Unreachable as e:
        _finish(job, Job.FAILED, f"{e}; gave up after {settings.JOB_RETRIES} tries. Everything written before "
                                 "is listed; a batch in flight may also have been written. Re-running is safe: "
                                 "tokens already changed are no longer selected.")
    except (CouchError, OperationError) as e:
        _finish(job, Job.FAILED, str(e))
    except Exception:
        log.exception("job %s crashed", job.pk)
        _finish(job, Job.FAILED, "The job stopped on an unexpected error; see the worker's log.")
    else:
        _finish(job, Job.SUCCEEDED, "")
    return job


def _finish(job, status, message):
    for key in ("upload", "items_upload"):  # the job's input file is not needed once it has ended
        if job.params.get(key):
            upload_path(job.params[key]).unlink(missing_ok=True)
    job.status, job.message, job.finished_at = status, message, timezone.now()
    job.save(update_fields=["status", "message", "finished_at", "total", "changed", "skipped", "conflicts", "failed"])
    log.info("job %s %s: %d read, %d changed, %d skipped, %d conflicts, %d failed", job.pk, status, job.total,
             job.changed, job.skipped, job.conflicts, job.failed)


def _retrying(call, *args, **kwargs):
    """A CouchDB call, retried with backoff while the server is unreachable."""
    for attempt in range(settings.JOB_RETRIES):
        try:
            return call(*args, **kwargs)
        except Unreachable:
            if attempt == settings.JOB_RETRIES - 1:
                raise
            time.sleep(settings.JOB_RETRY_BACKOFF * 2**attempt)


def _run(job, pool, batch_size):
    if job.action == "create_tokens":
        from tokens import tokensets

        return tokensets.run(job, pool, batch_size)
    couch = pool.couch()
    selection = Selection.from_dict(job.selection)
    rules = _retrying(pool_rules, pool, couch)
    started = time.time()
    with _Reader(pool, batch_size) as reader:
        for docs in reader.batches(selection, started):
            _check_cancel(job)
            _process(job, couch, pool, selection, rules, docs, started)


class _Reader:
    """Reads a job's batches one ahead: CouchDB answers the next read while the job checks and writes this batch.

    The reading thread has a CouchDB client of its own and touches nothing else; what to read next (a job's
    records in Django's database, say) is decided in the job's own thread. A read still running when the job
    stops is left to finish on its own, its answer unused.
    """

    def __init__(self, pool, batch_size):
        self.couch, self.batch_size = pool.couch(), batch_size
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-reader")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.thread.shutdown(wait=False, cancel_futures=True)

    def batches(self, selection, now):
        if selection.kind in ("ids", "job"):
            ids = _id_batches(selection, self.batch_size)
            pending = self._fetch(next(ids, None))
            while pending:
                docs = pending.result()
                pending = self._fetch(next(ids, None))
                yield docs
            return
        for view, start, end in selection.view_ranges(now):
            # The first page brings the index up to date; later pages read it as it is, because re-indexing the
            # batch the job just wrote costs the server more than the write itself, and every document read is
            # re-checked anyway (a row whose document moved on is skipped).
            pending = self._page(view, start, end, first=True)
            while pending:
                page = pending.result()
                pending = self._page(view, page.next_key, end, first=False) if page.has_next else None
                yield [r["doc"] for r in page.rows if r.get("doc")]

    def _fetch(self, ids):
        return self.thread.submit(_retrying, _fetch, self.couch, ids) if ids else None

    def _page(self, view, start, end, first):
        return self.thread.submit(_retrying, self.couch.page, OWN_DDOC, view, limit=self.batch_size,
                                  start_key=start, end_key=end, include_docs=True, stale=not first)


def _id_batches(selection, batch_size):
    if selection.kind == "ids":
        yield from (selection.ids[i:i + batch_size] for i in range(0, len(selection.ids), batch_size))
        return
    after = 0  # the job's records, a batch at a time by primary key: memory stays flat at any size
    while True:
        batch = list(selection.job_tokens().filter(pk__gt=after).values_list("pk", "token_id")[:batch_size])
        if not batch:
            return
        after = batch[-1][0]
        yield [token_id for _pk, token_id in batch]


def _check_cancel(job):
    if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise _Cancelled


def _process(job, couch, pool, selection, rules, docs, now):
    """One batch: re-check, apply, write; every outcome is recorded even if the batch stops half-way."""
    records = []
    try:
        writes = {}
        for doc in docs:
            job.total += 1
            if not selection.holds(doc, rules, now):
                records.append(_record(job, doc["_id"], JobToken.SKIPPED, _why_not(doc, rules, now)))
                continue
            new = _apply(job, couch, doc, rules)
            if new is None:
                records.append(_record(job, doc["_id"], JobToken.SKIPPED, "already as asked"))
                continue
            writes[doc["_id"]] = (doc, new)
        if job.action == "attach":
            _attach_each(job, couch, selection, rules, writes, now, records)
        elif writes:
            _write(job, couch, selection, rules, writes, now, records)
    finally:
        _save_batch(job, records)


def _save_batch(job, records):
    for r in records:
        setattr(job, r.outcome, getattr(job, r.outcome) + 1)
    JobToken.objects.bulk_create(records)
    job.heartbeat_at = timezone.now()
    job.save(update_fields=["total", "changed", "skipped", "conflicts", "failed", "heartbeat_at"])
    reset_queries()  # with DEBUG on, Django keeps every query: a long job's memory would grow with it


def create_batch(job, couch, docs, sent=None):
    """New documents in one _bulk_docs: an id that exists answers 409 and is reported, never overwritten.
    `sent` is that _bulk_docs already on its way (a future), when the caller sends one batch ahead."""
    records = []
    try:
        job.total += len(docs)
        writes = {d["_id"]: (d, d) for d in docs}
        try:
            results = sent.result() if sent else couch.bulk_docs(docs)
        except Unreachable:
            results = _reconcile(job, couch, writes)
        for result in results:
            if result.get("error") == "conflict":
                records.append(_record(job, result["id"], JobToken.SKIPPED, "exists already: never overwritten"))
            elif result.get("error"):
                records.append(_record(job, result["id"], JobToken.FAILED,
                                       f"{result['error']}: {result.get('reason')}"))
            else:
                records.append(_record(job, result["id"], JobToken.CHANGED, "created", rev_after=result.get("rev", "")))
    finally:
        _save_batch(job, records)


def _why_not(doc, rules, now):
    bucket = classify(doc, rules.style_of(doc))
    if bucket is None:
        return "not a token of this pool's types"
    if bucket == "locked":
        return "locked: a worker may hold it (act on locks by age)"
    if bucket == "error" and failed_at(doc) is None:
        return "failed at an unknown time (no done time, error time or status time): select it by id to act on it"
    if bucket == "error" and not _failed_long_enough(doc, now):
        return "failed moments ago: its pilot may still retry it"
    return f"not in the selection (now {bucket})"


def _apply(job, couch, doc, rules):
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


def _record(job, token_id, outcome, reason="", conflicted=False, rev_before="", rev_after=""):
    return JobToken(job=job, pool=job.pool, token_id=token_id, outcome=outcome, reason=reason[:300],
                    conflicted=conflicted, rev_before=rev_before, rev_after=rev_after)


def fingerprint(doc):
    """What a worker changes when it claims, finishes, fails or scrubs a token."""
    errors = doc.get("error")
    return tuple(repr(doc.get(k)) for k in ("lock", "done", "exit_code", "status", "output", "hostname")) + (
        len(errors) if isinstance(errors, list) else repr(errors),)


def _same_content(stored, wanted):
    """Whether `stored` (read back) is the document we meant to write: our write arrived."""
    if wanted.get("_deleted"):
        return stored is None
    if stored is None:
        return False
    strip = ("_rev", "_revisions", "_attachments")
    return {k: v for k, v in stored.items() if k not in strip} == {k: v for k, v in wanted.items() if k not in strip}


def _write(job, couch, selection, rules, writes, now, records, second_try=False):
    """One _bulk_docs for the batch. A 409 is re-read and re-checked: written again only if the token is still
    selected and nothing a worker writes has changed since the job read it. If the answer to the write is lost
    (CouchDB unreachable), the batch is read back to learn what arrived before anything is written again."""
    try:
        results = couch.bulk_docs([new for _old, new in writes.values()])
    except Unreachable:
        results = _reconcile(job, couch, writes)
    conflicted = {}
    for result in results:
        old, new = writes[result["id"]]
        if result.get("error") == "conflict":
            job.conflicts += 1
            conflicted[old["_id"]] = old
        elif result.get("error"):
            records.append(_record(job, old["_id"], JobToken.FAILED, f"{result['error']}: {result.get('reason')}",
                                   second_try, old["_rev"]))
        else:
            records.append(_record(job, old["_id"], JobToken.CHANGED, "after a conflict" if second_try else "",
                                   second_try, old["_rev"], result.get("rev", "")))
    if not conflicted:
        return
    if second_try:
        for doc_id, old in conflicted.items():
            records.append(_record(job, doc_id, JobToken.FAILED, "conflict twice: a worker keeps changing it", True,
                                   old["_rev"]))
        return
    fresh = {d["_id"]: d for d in _retrying(_fetch, couch, list(conflicted))}
    again = {}
    for doc_id, old in conflicted.items():
        doc = fresh.get(doc_id)
        if doc is None:
            records.append(_record(job, doc_id, JobToken.SKIPPED, "deleted meanwhile", True, old["_rev"]))
        elif fingerprint(doc) != fingerprint(old) or not selection.holds(doc, rules, now):
            now_in = classify(doc, rules.style_of(doc))
            records.append(_record(job, doc_id, JobToken.SKIPPED, f"changed meanwhile (now {now_in})", True,
                                   old["_rev"]))
        else:
            new = _apply(job, couch, doc, rules)
            if new is None:
                records.append(_record(job, doc_id, JobToken.SKIPPED, "already as asked", True, doc["_rev"]))
            else:
                again[doc_id] = (doc, new)
    if again:
        _write(job, couch, selection, rules, again, now, records, second_try=True)


def _reconcile(job, couch, writes):
    """After a lost answer: per document, did our write arrive (done), not arrive (write again), or did someone
    else write first (a conflict)? Waits, with backoff, for CouchDB to come back."""
    results, pending = [], dict(writes)
    for attempt in range(settings.JOB_RETRIES):
        time.sleep(settings.JOB_RETRY_BACKOFF * 2**attempt)
        try:
            stored = {d["_id"]: d for d in _fetch(couch, list(pending))}
        except Unreachable:
            continue
        retry = {}
        for doc_id, (old, new) in pending.items():
            doc = stored.get(doc_id)
            if _same_content(doc, new):
                results.append({"id": doc_id, "rev": doc["_rev"] if doc else ""})
            elif (doc is None) if "_rev" not in old else (doc is not None and doc["_rev"] == old["_rev"]):
                retry[doc_id] = (old, new)  # our write did not arrive
            else:
                results.append({"id": doc_id, "error": "conflict"})
        if not retry:
            return results
        try:
            results += couch.bulk_docs([new for _old, new in retry.values()])
            return results
        except Unreachable:
            pending = retry
    raise Unreachable(f"CouchDB at {couch.url} is unreachable")


def _attach_each(job, couch, selection, rules, writes, now, records):
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
                records.append(_record(job, doc_id, JobToken.CHANGED, "after a conflict" if conflicted else "",
                                       conflicted, doc["_rev"], rev))
                break
            except (Unreachable, Conflict) as e:
                if isinstance(e, Conflict):
                    job.conflicts += 1
                    if conflicted:
                        records.append(_record(job, doc_id, JobToken.FAILED, "conflict twice", True, doc["_rev"]))
                        break
                try:
                    fresh = _retrying(couch.get, doc_id)
                except NotFound:
                    records.append(_record(job, doc_id, JobToken.SKIPPED, "deleted meanwhile", True, doc["_rev"]))
                    break
                if _holds_our_file(job, couch, fresh):  # our upload arrived (its answer was lost) or was already there
                    records.append(_record(job, doc_id, JobToken.CHANGED, "", conflicted, doc["_rev"], fresh["_rev"]))
                    break
                if fresh["_rev"] != doc["_rev"]:
                    if fingerprint(fresh) != fingerprint(doc) or not selection.holds(fresh, rules, now):
                        records.append(_record(job, doc_id, JobToken.SKIPPED, "changed meanwhile", True,
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
        chunks, _type, _length = _retrying(couch.attachment, doc["_id"], job.params["name"])
        for chunk in chunks:
            md5.update(chunk)
        job.stored_digests[stub["digest"]] = "md5-" + base64.b64encode(md5.digest()).decode() == job.params["digest"]
    return job.stored_digests[stub["digest"]]


# --- uploads ---------------------------------------------------------------------------------


def save_upload(uploaded):
    """Keep an uploaded file on disk (streamed in chunks) for the job; returns (upload id, size, digest)."""
    import uuid

    if uploaded.size > settings.JOB_UPLOAD_MAX_BYTES:
        raise OperationError(f"The file is {uploaded.size} bytes; the limit is {settings.JOB_UPLOAD_MAX_BYTES}")
    upload_id = uuid.uuid4().hex
    digest = hashlib.md5()  # noqa: S324 - CouchDB's attachment digest, not security
    path = upload_path(upload_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                digest.update(chunk)
                out.write(chunk)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise OperationError(f"The upload could not be stored on the server: {e.strerror}") from None
    return upload_id, uploaded.size, "md5-" + base64.b64encode(digest.digest()).decode()


def save_text(text):
    """Keep a text input (a token set's list) on disk for the job; returns its upload id."""
    import uuid

    upload_id = uuid.uuid4().hex
    path = upload_path(upload_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise OperationError(f"The input could not be stored on the server: {e.strerror}") from None
    return upload_id


def upload_path(upload_id):
    from pathlib import Path

    if not upload_id.isalnum():
        raise OperationError("Bad upload id")
    return Path(settings.JOB_UPLOAD_DIR) / upload_id


# --- interrupted jobs ------------------------------------------------------------------------


WAITING_FOR_BROKER = ("Waiting for the broker ({}): the job starts when it is reachable again. "
                      "Nothing has been written yet; Cancel withdraws it.")


def enqueue(job):
    """Hand a recorded job to the broker. If the broker is down the job stays queued and says so, and tend_jobs
    hands it over again later: nothing is lost, and nothing runs twice (run_job claims the job before it starts)."""
    from tokens.tasks import run_job

    try:
        run_job.delay(job.pk)
    except Exception as e:  # kombu's errors differ per transport; any of them means "not queued"
        log.warning("job %s: could not queue it (%s)", job.pk, type(e).__name__)
        Job.objects.filter(pk=job.pk, status=Job.QUEUED).update(message=WAITING_FOR_BROKER.format(type(e).__name__))
        return False
    Job.objects.filter(pk=job.pk, status=Job.QUEUED).update(enqueued_at=timezone.now(), message="")
    return True


def tend_jobs(at_worker_start=False):
    """What pages and a starting worker do for jobs whose worker or broker went away (see the two below)."""
    mark_interrupted()
    requeue_waiting(0 if at_worker_start else settings.JOB_REQUEUE_SECONDS)


def requeue_waiting(seconds):
    """Queue again the jobs that no worker took within `seconds`: the broker was down when they were made, or it
    restarted and lost its queue (the embedded Redis keeps nothing on disk). A job still in the queue gets a second
    task, which does nothing: run_job starts only a job that is still queued. A starting worker passes 0."""
    cutoff = timezone.now() - timezone.timedelta(seconds=seconds)
    waiting = Job.objects.filter(Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=cutoff), status=Job.QUEUED,
                                 cancel_requested=False)
    return sum(enqueue(job) for job in waiting)


def mark_interrupted():
    """Running jobs whose worker stopped sending heartbeats are shown as interrupted (and can be re-run)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
    silent = Job.objects.filter(status=Job.RUNNING, heartbeat_at__lt=cutoff)
    # Job pages call this on every poll: read first, because on SQLite even an UPDATE of no rows waits for the one
    # writer (a job writing its batch, a refill of the counts), and 50 polling pages would queue behind it.
    if not silent.exists():
        return 0
    return silent.update(
        status=Job.INTERRUPTED, message="The worker running this job stopped (killed or restarted). "
                                        "Re-running is safe: tokens already changed are no longer selected.",
        finished_at=timezone.now())


def cancel_job(job_id):
    """Ask a job to stop. A job no worker has started yet ends here; a running one stops between two batches."""
    Job.objects.filter(pk=job_id).update(cancel_requested=True)
    Job.objects.filter(pk=job_id, status=Job.QUEUED).update(status=Job.CANCELLED,
                                                            message="Cancelled before it started.")


def rerun_query(job):
    """The dry-run page's query for a new job like this one: a re-run is previewed and confirmed afresh."""
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    query["action"] = job.action
    for key, value in job.selection.items():
        if key == "ids":
            query.setlist("ids", value)
        else:
            query[key] = "" if value is None else str(value)
    return query.urlencode()
