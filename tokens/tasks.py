from datetime import datetime

from celery import shared_task
from celery.signals import worker_ready

from tokens import alerts, counting, events, history, operations, retries
from tokens.pools import get_pool


@shared_task(ignore_result=True)
def refresh_counts(slug):
    """Refresh a pool's counts in the background (see tokens.counting.snapshot)."""
    pool = get_pool(slug)
    if pool is not None:
        counting.refresh(pool)


@shared_task(ignore_result=True)
def recount_counts(slug, asked):
    """Count a pool's tokens again, beside the refreshes that follow its changes (see tokens.counting.sync_states);
    `asked`: when a refresh asked for it (ISO 8601)."""
    pool = get_pool(slug)
    if pool is not None:
        counting.recount(pool, datetime.fromisoformat(asked))


@shared_task(ignore_result=True)
def refresh_history(slug):
    """Recompute a pool's chart history in the background (see tokens.history)."""
    pool = get_pool(slug)
    if pool is not None:
        history.catch_up(pool)


@shared_task(ignore_result=True, expires=60)
def follow_pools():
    """Every EVENTS_FOLLOW_SECONDS: read every pool's changes, whether anyone looks at it or not."""
    counting.follow()


@shared_task(ignore_result=True, expires=3600)
def prune_events():
    """Hourly: delete the events older than EVENTS_KEEP_DAYS and the rollups older than EVENTS_ROLLUP_DAYS."""
    events.prune()


@shared_task(ignore_result=True, expires=3600)
def sweep_uploads():
    """Hourly: delete the files kept for forms that were previewed and never sent (see tokens.uploads)."""
    operations.sweep_uploads()


@shared_task(ignore_result=True, acks_late=True)
def run_job(job_id):
    """Run a job. A job whose worker dies in its middle is not resumed (its selection may have changed): it shows
    as interrupted once its heartbeat stops, everything it wrote recorded, and a new run changes the rest."""
    job = operations.run_job(job_id)
    pool = get_pool(job.pool)
    if pool is not None:
        counting.refresh(pool)  # the pages show the job's effect at once


@worker_ready.connect
def tend_jobs_at_start(**kwargs):
    """A worker starting (after a crash, a redeploy or the broker losing its queue) takes over waiting jobs."""
    operations.tend_jobs(at_worker_start=True)


@shared_task(ignore_result=True, expires=300)
def evaluate_alerts():
    """Every ALERTS_EVALUATE_SECONDS: evaluate the alert rules, record firings and recoveries, send messages."""
    alerts.evaluate()


@shared_task(ignore_result=True, expires=300)
def apply_retry_rules():
    """Every RETRY_RULES_SECONDS: start the retry rules' jobs that are due (tokens.retries), as ordinary jobs."""
    for job in retries.apply():
        operations.enqueue(job)
