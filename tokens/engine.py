"""The job engine: batches, retries while CouchDB is away, the re-check after a 409, cancel, progress.

Every write carries the `_rev` that was read. A token is re-checked against the selection when it is read, and
again after a 409 (re-read first): a token that a worker claimed, finished or changed is skipped and reported,
never overwritten. Tokens are read a key-range page at a time (the next page while this one is written) and written
with one `_bulk_docs` per page, so a job's memory does not grow with the pool. Every outcome is recorded per token
(JobToken) as its batch ends, with the job's counters and heartbeat. What a token becomes is the action's
business (tokens.actions, tokens.tokensets): the engine is handed it as a function.
"""

import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from django.conf import settings
from django.db import reset_queries
from django.utils import timezone

from tokens.couch import Unreachable, Written
from tokens.models import Job, JobToken, insert_rows
from tokens.selections import fetch, why_not
from tokens.states import OWN_DDOC, classify


class Cancelled(Exception):
    """An operator asked the job to stop: raised between two batches."""


def cancel_job(job_id):
    """Ask a job to stop. A job no worker has started yet ends here; a running one stops between two batches."""
    Job.objects.filter(pk=job_id).update(cancel_requested=True)
    Job.objects.filter(pk=job_id, status=Job.QUEUED).update(status=Job.CANCELLED,
                                                            message="Cancelled before it started.")


def check_cancel(job):
    if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
        raise Cancelled


def retrying(call, *args, **kwargs):
    """A CouchDB call, retried with backoff while the server is unreachable."""
    for attempt in range(settings.JOB_RETRIES):
        try:
            return call(*args, **kwargs)
        except Unreachable:
            if attempt == settings.JOB_RETRIES - 1:
                raise
            time.sleep(settings.JOB_RETRY_BACKOFF * 2**attempt)


class Reader:
    """Reads a job's batches one ahead: CouchDB answers the next read while the job checks and writes this batch.

    The reading thread has a CouchDB client of its own and touches nothing else; what to read next (a job's
    records in Django's database, say) is decided in the job's own thread. A read still running when the job
    stops is left to finish on its own, its answer unused.
    """

    def __init__(self, pool, batch_size):
        self.couch, self.batch_size, self.pool = pool.couch(), batch_size, pool.slug
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-reader")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.thread.shutdown(wait=False, cancel_futures=True)

    def batches(self, selection, now):
        if selection.kind in ("ids", "job", "host", "given_up"):
            ids = _id_batches(selection, self.batch_size, self.pool)
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
        return self.thread.submit(retrying, fetch, self.couch, ids) if ids else None

    def _page(self, view, start, end, first):
        return self.thread.submit(retrying, self.couch.page, OWN_DDOC, view, limit=self.batch_size,
                                  start_key=start, end_key=end, include_docs=True, stale=not first)


def _id_batches(selection, batch_size, pool):
    if selection.kind == "ids":
        yield from (selection.ids[i:i + batch_size] for i in range(0, len(selection.ids), batch_size))
        return
    # The job's records (or the table of states), a batch at a time by primary key: memory stays flat at any size.
    records = {"host": lambda: selection.host_tokens(pool).values_list("pk", "doc_id"),
               "given_up": lambda: selection.given_up_tokens(pool).values_list("pk", "doc_id"),
               "job": lambda: selection.job_tokens().values_list("pk", "token_id")}[selection.kind]()
    after = 0
    while True:
        batch = list(records.filter(pk__gt=after).order_by("pk")[:batch_size])
        if not batch:
            return
        after = batch[-1][0]
        yield [token_id for _pk, token_id in batch]


def process(job, couch, selection, rules, docs, now, change, write=None):
    """One batch: re-check, change, write; every outcome is recorded even if the batch stops half-way.

    `change(doc)` is what the token becomes (None: it already is so). `write` writes the batch's changes
    (default: one _bulk_docs with the re-check after a 409); an action that cannot write in bulk brings its own."""
    records = []
    try:
        writes = {}
        for doc in docs:
            job.total += 1
            if not selection.holds(doc, rules, now):
                records.append(record(job, doc["_id"], JobToken.SKIPPED, why_not(doc, rules, now)))
                continue
            new = change(doc)
            if new is None:
                records.append(record(job, doc["_id"], JobToken.SKIPPED, "already as asked"))
                continue
            writes[doc["_id"]] = (doc, new)
        if writes:
            (write or _write)(job, couch, selection, rules, writes, now, records, change)
    finally:
        save_batch(job, records)


def save_batch(job, records):
    """A batch's outcomes recorded with the job's counters and heartbeat: where a job stands between two batches."""
    for r in records:
        setattr(job, r.outcome, getattr(job, r.outcome) + 1)
    insert_rows(JobToken, ("job", *Record._fields), [(job.pk, *r) for r in records])
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
                records.append(record(job, result["id"], JobToken.SKIPPED, "exists already: never overwritten"))
            elif result.get("error"):
                records.append(record(job, result["id"], JobToken.FAILED,
                                      f"{result['error']}: {result.get('reason')}"))
            else:
                records.append(record(job, result["id"], JobToken.CHANGED, "created", rev_after=result.get("rev", ""),
                                      unconfirmed=getattr(results, "accepted_only", False)))
    finally:
        save_batch(job, records)


NOT_CONFIRMED = "not confirmed: CouchDB took the write on fewer copies than its quorum (202)"


class Record(NamedTuple):
    """What the job did to one token: a JobToken row, kept light until its batch is saved."""

    pool: str
    token_id: str
    outcome: str
    reason: str
    conflicted: bool
    rev_before: str
    rev_after: str
    unconfirmed: bool


def record(job, token_id, outcome, reason="", conflicted=False, rev_before="", rev_after="", unconfirmed=False):
    """A token's outcome; `unconfirmed`: written, but on fewer copies than the cluster's quorum (the reason says so)."""
    if unconfirmed:
        reason = f"{reason}; {NOT_CONFIRMED}" if reason else NOT_CONFIRMED
    return Record(job.pool, token_id, outcome, reason[:300], conflicted, rev_before, rev_after, unconfirmed)


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


def _write(job, couch, selection, rules, writes, now, records, change, second_try=False):
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
            records.append(record(job, old["_id"], JobToken.FAILED, f"{result['error']}: {result.get('reason')}",
                                  second_try, old["_rev"]))
        else:
            records.append(record(job, old["_id"], JobToken.CHANGED, "after a conflict" if second_try else "",
                                  second_try, old["_rev"], result.get("rev", ""),
                                  unconfirmed=getattr(results, "accepted_only", False)))
    if not conflicted:
        return
    if second_try:
        for doc_id, old in conflicted.items():
            records.append(record(job, doc_id, JobToken.FAILED, "conflict twice: a worker keeps changing it", True,
                                  old["_rev"]))
        return
    fresh = {d["_id"]: d for d in retrying(fetch, couch, list(conflicted))}
    again = {}
    for doc_id, old in conflicted.items():
        doc = fresh.get(doc_id)
        if doc is None:
            records.append(record(job, doc_id, JobToken.SKIPPED, "deleted meanwhile", True, old["_rev"]))
        elif fingerprint(doc) != fingerprint(old) or not selection.holds(doc, rules, now):
            now_in = classify(doc, rules.style_of(doc))
            records.append(record(job, doc_id, JobToken.SKIPPED, f"changed meanwhile (now {now_in})", True,
                                  old["_rev"]))
        else:
            new = change(doc)
            if new is None:
                records.append(record(job, doc_id, JobToken.SKIPPED, "already as asked", True, doc["_rev"]))
            else:
                again[doc_id] = (doc, new)
    if again:
        _write(job, couch, selection, rules, again, now, records, change, second_try=True)


def _reconcile(job, couch, writes):
    """After a lost answer: per document, did our write arrive (done), not arrive (write again), or did someone
    else write first (a conflict)? Waits, with backoff, for CouchDB to come back."""
    results, pending = [], dict(writes)
    for attempt in range(settings.JOB_RETRIES):
        time.sleep(settings.JOB_RETRY_BACKOFF * 2**attempt)
        try:
            stored = {d["_id"]: d for d in fetch(couch, list(pending))}
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
            written = couch.bulk_docs([new for _old, new in retry.values()])
            return Written(results + written, accepted_only=written.accepted_only)
        except Unreachable:
            pending = retry
    raise Unreachable(f"CouchDB at {couch.url} is unreachable")
