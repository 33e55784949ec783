"""Jobs, from the operator's request to their end: check, preview, record, queue, run, cancel, re-run.

Views, the Celery task and the `tokens` management command only call these functions (and the selections,
actions and token sets they name). Which tokens: tokens.selections; what they become: tokens.actions and
tokens.tokensets; how they are written safely while workers run: tokens.engine.
"""

import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from tokens import actions, engine, queue, tokensets, uploads
from tokens.couch import CouchError, Unreachable
from tokens.models import Job, JobToken
from tokens.selections import OperationError, Selection, needs_typed_confirmation, preview

cancel_job = engine.cancel_job  # (in the engine, beside the check it answers: a retry rule's pause asks it too)

log = logging.getLogger(__name__)


def create_job(pool, user, action, selection, params, confirmation=None, via="web", expected=None):
    """Check, preview and record a job (its header). Raises OperationError. The caller queues it.

    `expected`: the count of the preview the operator saw (the form sends it). A selection that holds another
    number of tokens now (workers moved them, or the page was a stale one brought back) is refused with both
    numbers, so nobody starts a job they did not preview; and a selection of nothing records no job. A refused job
    keeps nothing its request uploaded: the form asks for the file again (a browser never fills in a file field)."""
    try:
        return _create_job(pool, user, action, selection, params, confirmation, via, expected)
    except Exception:
        if params.get("upload"):
            uploads.forget(params["upload"])
        raise


def _create_job(pool, user, action, selection, params, confirmation, via, expected):
    actions.check_params(action, params)
    seen = preview(pool, selection)
    if expected not in (None, "") and str(expected).strip() != str(seen["count"]):
        raise PreviewChanged(expected, seen["count"])
    if seen["count"] == 0:
        raise OperationError("No token is in this selection now: nothing to do, and no job was recorded")
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


class PreviewChanged(OperationError):
    def __init__(self, was, now):
        was = str(was).strip()
        was = was if was.isdigit() and len(was) < 20 else "another number"
        super().__init__(f"The selection has changed since its preview: it was {was} token{'' if was == '1' else 's'}, "
                         f"it is {now} now. Nothing was run; the preview below is the new one.")


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
        if not _take_turn(job):
            return job
        (tokensets.run if job.action == "create_tokens" else actions.run)(job, pool, batch_size)
    except engine.Cancelled:
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
        unconfirmed = JobToken.objects.filter(job=job, unconfirmed=True).count()
        if unconfirmed:
            # Not lost, and not done either: one more node lost before the others are back could lose them.
            _finish(job, Job.FAILED, f"Every token was written, but {unconfirmed} of them not confirmed: the CouchDB "
                                     "cluster took those writes on fewer copies than its quorum (it answered 202; "
                                     "nodes are down). They reach the other copies when the nodes are back. Check "
                                     "those tokens then (the list below); a re-run does not select them again.")
        else:
            _finish(job, Job.SUCCEEDED, "")
    return job


def _take_turn(job):
    """A retry rule's job and an operator's never act on one pool at once. A rule's job gives way: it ends at once,
    writing nothing, when another job is running on its pool (the rule looks again at its next check). An
    operator's job waits while a rule's job runs (a rule's job is bounded by its hour's limit), its heartbeat kept
    and its page saying so; Cancel still stops it. False: the job has ended here."""
    others = Job.objects.filter(pool=job.pool, status=Job.RUNNING).exclude(pk=job.pk)
    if job.via == "rule":
        if not others.exists():
            return True
        _finish(job, Job.CANCELLED, "Gave way to a job already running on this pool; nothing was written. The rule "
                                    "looks again at its next check.")
        return False
    while True:
        alive = timezone.now() - timezone.timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)
        first = others.filter(via="rule", heartbeat_at__gte=alive).order_by("pk").first()
        if first is None:
            Job.objects.filter(pk=job.pk, message__startswith="Waiting for").update(message="")
            return True
        try:
            engine.check_cancel(job)
        except engine.Cancelled:
            _finish(job, Job.CANCELLED, "Cancelled while it waited for a retry rule's job; nothing was written.")
            return False
        Job.objects.filter(pk=job.pk).update(
            heartbeat_at=timezone.now(), message=f"Waiting for job {first.pk} (retry rule "
                                                 f"“{first.params.get('rule', '')}”) to end on this pool; it starts "
                                                 "then.")
        time.sleep(0.5)


def sweep_uploads():
    """Delete the kept files no job that has not ended refers to, once JOB_UPLOAD_KEEP_HOURS old."""
    referenced = set()
    for params in Job.objects.filter(finished_at__isnull=True).values_list("params", flat=True):
        referenced.update(params.get(key) for key in ("upload", "items_upload") if params.get(key))
    deleted = uploads.sweep(referenced)
    if deleted:
        log.info("deleted %d kept upload(s) older than %d hours", deleted, settings.JOB_UPLOAD_KEEP_HOURS)
    return deleted


def _finish(job, status, message):
    for key in ("upload", "items_upload"):  # the job's input file is not needed once it has ended
        if job.params.get(key):
            uploads.forget(job.params[key])
    job.status, job.message, job.finished_at = status, message, timezone.now()
    job.save(update_fields=["status", "message", "finished_at", "total", "changed", "skipped", "conflicts", "failed"])
    log.info("job %s %s: %d read, %d changed, %d skipped, %d conflicts, %d failed", job.pk, status, job.total,
             job.changed, job.skipped, job.conflicts, job.failed)


WAITING_FOR_BROKER = ("Waiting for the broker ({}): the job starts when it is reachable again. "
                      "Nothing has been written yet; Cancel withdraws it.")


def enqueue(job):
    """Hand a recorded job to the broker. If the broker is down the job stays queued and says so, and tend_jobs
    hands it over again later: nothing is lost, and nothing runs twice (run_job claims the job before it starts)."""
    try:
        queue.run_job(job.pk)
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


def rerun_query(job):
    """The dry-run page's query for a new job like this one: a re-run is previewed and confirmed afresh."""
    from urllib.parse import urlencode

    return urlencode([("action", job.action), *Selection.from_dict(job.selection).as_fields()])
