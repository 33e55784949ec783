"""A pool's history for its charts: tokens done and failed per hour (or day) and observation over a period.

It comes from the pool's token events (tokens.events), grouped by hour or day: what happened then, whatever the tokens
became since. Like the counts, pages read a stored copy (`tokens.models.PoolHistory`) and have it recomputed in the
background when it is older than CHART_MAX_AGE; only the very first page of a pool waits for it. That copy holds
the default period (CHART_DAYS); the others are computed from the events when a page asks (`period_series`).
"""

import logging
import time
from datetime import UTC, datetime

from django.conf import settings
from django.utils import timezone

from tokens import counting, events, queue
from tokens.actions import label
from tokens.couch import CouchError
from tokens.counting import claim_refresh
from tokens.models import Alert, CountSnapshot, Job, PoolHistory

log = logging.getLogger(__name__)

HOUR = 3600
DAY = 24 * HOUR


def take(pool, days, now=None):
    """Count the tokens finished per hour, bucket and observation in the `days` x 24 hours up to the current one,
    from the pool's events: a reset does not change past hours, and a token that failed and then was done counts
    in both hours.

    Returns {"computed_at", "start" (epoch of the first hour), "hours", "rows": [[hour, bucket, type, group, n]]}.
    """
    now = time.time() if now is None else now
    end = int(now) // HOUR * HOUR + HOUR  # the end of the current hour
    start = end - days * 24 * HOUR
    counts = events.per_hour(pool.slug, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                             to_states=("done", "error", events.RUNNING))
    rows = [[int(hour.timestamp()), bucket, type_, group, n] for (hour, bucket, type_, group), n in counts.items()]
    return {
        "computed_at": now,
        "start": start,
        "hours": days * 24,
        "rows": sorted(rows, key=lambda r: (r[0], str(r[1:4]))),
    }


def refresh(pool):
    """Recompute and store a pool's history from the events recorded so far. A page computing a pool's first
    history calls this: it has just read the counts, whose own age rule (COUNTS_MAX_AGE) says when the server is
    read again, not a chart."""
    data = take(pool, settings.CHART_DAYS)
    # A history taken before the pool's past was read from its tokens lacks that past: the page asks again as soon
    # as it has been (history() below), not CHART_MAX_AGE later.
    data["backfilled"] = CountSnapshot.objects.filter(pool=pool.slug, backfilled=True).exists()
    record, _ = PoolHistory.objects.update_or_create(
        pool=pool.slug, defaults={"data": data, "computed_at": timezone.now(), "error": ""})
    return record


def catch_up(pool):
    """What the background recomputation does: bring the events up to date first (a refresh of the counts reads
    the changes feed, what changed since the last one), then recompute. When the server cannot be read, the older
    history is kept and the error stored for the pages to say."""
    try:
        counting.refresh(pool)
    except CouchError as e:
        log.warning("pool %s: history: %s", pool.slug, e)
        record, _ = PoolHistory.objects.update_or_create(pool=pool.slug, defaults={"error": str(e)})
        return record
    return refresh(pool)


def history(pool, data):
    """The pool's stored history for a page, recomputed in the background when old.

    `data` is the pool's count snapshot; without the dashboard's own views there is no history (None).
    """
    if not data or not data.get("own_views"):
        return None
    record = PoolHistory.objects.filter(pool=pool.slug).first()
    if record is None or record.data is None or record.data["hours"] != settings.CHART_DAYS * 24 \
            or (data.get("events_backfilled") and not record.data.get("backfilled", True)):
        return refresh(pool)
    if record.age() > settings.CHART_MAX_AGE:
        _request_refresh(pool, record)
    return record


def _request_refresh(pool, record):
    # One recomputation in flight per pool, as for the counts.
    if not claim_refresh(record, "computed_at", give_up_after=max(60, settings.CHART_MAX_AGE)):
        return
    try:
        queue.refresh_history(pool.slug)
    except Exception as e:  # broker down: recompute here rather than show an ever older chart
        log.warning("pool %s: could not queue a history refresh (%s); computing it in the request",
                    pool.slug, type(e).__name__)
        refresh(pool)


def series(data, type_=None, group=None, *, observation=False):
    """Per-hour counts from stored history data: {"start", "hours": [epoch...], "done": [n...], "error": [n...]}.

    The whole pool, or with `observation=True` only the tokens of (type_, group).
    """
    result = empty_series(data)
    for hour, bucket, t, g, n in data["rows"]:
        if observation and (t, g) != (type_, group):
            continue
        _add(result, hour, bucket, n)
    return result


def series_by_observation(data):
    """{(type, group): series} for every observation with tokens finished in the period, in one pass."""
    result = {}
    for hour, bucket, t, g, n in data["rows"]:
        if (t, g) not in result:
            result[(t, g)] = empty_series(data)
        _add(result[(t, g)], hour, bucket, n)
    return result


def empty_series(data):
    hours = [data["start"] + i * HOUR for i in range(data["hours"])]
    return {"start": data["start"], "step": HOUR, "hours": hours, "done": [0] * len(hours),
            "error": [0] * len(hours), "running": [0] * len(hours)}


def period_series(pool, days, type_=None, group=None, now=None):
    """The series of the `days` up to now computed from the events as asked (the stored history holds the
    default period only): per hour up to a week, per day beyond, so that a chart keeps some 200 bars at most.
    The whole pool, or the tokens of observation (type_, group) when type_ is given."""
    now = time.time() if now is None else now
    step = HOUR if days <= 7 else DAY
    end = int(now) // step * step + step  # the end of the current hour or day (UTC)
    start = end - days * DAY
    periods = events.history(pool.slug, datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC),
                             "hour" if step == HOUR else "day", type_, group)
    return {"start": start, "step": step, "hours": [int(p["start"].timestamp()) for p in periods],
            "done": [p["done"] for p in periods], "error": [p["error"] for p in periods],
            "running": [p["running"] for p in periods]}


def _add(s, hour, bucket, n):
    i = (hour - s["start"]) // HOUR
    if 0 <= i < len(s["hours"]) and bucket in ("done", "error", "running"):
        s[bucket][i] += n  # running: the observations' most at once, summed


# --- what the charts mark: the jobs that ran on the pool and the alerts that fired ---------------------------

ANNOTATIONS_MOST = 200  # marks on one chart: past that, the newest (a chart of thousands of lines says nothing)


def annotations(pool_slug, start, end):
    """[{"at", "end", "kind", "text", "tags", "job", "alert"}] of what happened to the pool between two Unix times:
    each job that started (who or which rule, what, on how many tokens) and each alert that fired, oldest first."""
    since, until = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)
    marks = []
    jobs = Job.objects.filter(pool=pool_slug, started_at__gte=since, started_at__lt=until).select_related("user")
    for job in jobs.order_by("-started_at")[:ANNOTATIONS_MOST]:
        who = f"rule “{job.params.get('rule', '')}”" if job.via == "rule" else \
            job.user.username if job.user else "the command line" if job.via == "cli" else "a removed user"
        if job.via == "rule":  # its expected count is every failure of its kind: say what it left instead
            done = f"{job.changed} reset, {job.skipped} left (given up, held or too recent)" if job.ended else \
                f"{job.status}, {job.changed} reset so far"
        else:
            done = (f"{job.changed} changed" if job.ended else f"{job.status}, {job.changed} changed so far") + \
                f" of {job.preview_count}"
        marks.append({"at": job.started_at, "end": job.finished_at, "kind": "job",
                      "text": f"job {job.pk}: {label(job.action)} by {who}, {done}",
                      "tags": ["job", job.action, "rule" if job.via == "rule" else "operator"], "job": job.pk,
                      "alert": None})
    for alert in Alert.objects.filter(pool=pool_slug, fired_at__gte=since, fired_at__lt=until)[:ANNOTATIONS_MOST]:
        marks.append({"at": alert.fired_at, "end": alert.resolved_at, "kind": "alert",
                      "text": f"alert: {alert.summary}", "tags": ["alert", alert.kind], "job": None,
                      "alert": alert.pk})
    marks.sort(key=lambda m: m["at"])
    return marks[-ANNOTATIONS_MOST:]
