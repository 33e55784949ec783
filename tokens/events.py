"""Token events: every move of a token between states, recorded as the changes feed shows it.

The counts (tokens.counting) follow the database's changes feed; each change that moves a token to another state
(or to another host while locked: a new claim) is also written here as a TokenEvent, in the same transaction that
advances the feed's sequence, so that a refresh that dies records nothing and the next one records it once.
Charts, throughput, failure history and the hosts page read these events, never the tokens' current state, so a
reset does not rewrite the past. A pool seen for the first time is backfilled from its documents' own times.
"""

import hashlib
import itertools
import json
import math
import statistics
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, Max, Min, Q, Sum, Value, When
from django.db.models.functions import Substr, TruncHour
from django.utils import timezone

from tokens.models import (
    CountSnapshot,
    HostHour,
    JobToken,
    ObservationHour,
    TokenEvent,
    TokenState,
    insert_rows,
    upsert_rows,
)
from tokens.states import TIME_MAX, TIME_MIN, failed_at, failure_key, js_number, lock_time

FINISHED = ("done", "error", "legacy_error")
RUNNING = "running"  # not a move: ObservationHour's sample of the tokens locked in an hour (sample_running)
FAILED = ("error", "legacy_error")
BATCH = 2_000
MEDIAN_RUNS = 1_000  # a host's median run time is that of its newest runs in the window: what it does now


def hour_of(field):
    """The hour a time falls in, computed by the database. On SQLite, Django's TruncHour calls back into Python for
    every row (seconds over a month of events); the first 13 characters of the stored UTC text, "YYYY-MM-DD HH",
    are the same hour at SQLite's own speed. as_hour reads either back."""
    return Substr(field, 1, 13) if connection.vendor == "sqlite" else TruncHour(field)


def as_hour(value):
    return datetime.strptime(value, "%Y-%m-%d %H").replace(tzinfo=UTC) if isinstance(value, str) else value


def hostname_of(doc):
    """The host a token names (picas writes socket.gethostname() when it claims it); "" when it names none."""
    value = doc.get("hostname")
    return value if isinstance(value, str) else ""


def _time(value):
    seconds = js_number(value) if isinstance(value, (int, float, str)) and not isinstance(value, bool) else math.nan
    return seconds if TIME_MIN <= seconds < TIME_MAX else None


def finished_at(doc, bucket):
    """When a finished token finished by its own fields: `done` when it is a time, else (picas's exception
    marker done = 99) the newest failure time; None when the token says nothing."""
    done = _time(doc.get("done"))
    if done is None and bucket in FAILED:
        return failed_at(doc)
    return done


def _event(pool, doc_id, state, from_state, to_state, at, doc=None, style=None, rev="", origin=TokenEvent.CHANGE):
    bucket, type_, group, hostname = state
    event = TokenEvent(pool=pool, doc_id=doc_id, type=type_, group=group, at=at, from_state=from_state,
                       to_state=to_state, hostname=hostname, rev=rev, origin=origin)
    if doc is not None:
        scrubs = js_number(doc.get("scrub_count", 0))
        event.scrub_count = int(scrubs) if math.isfinite(scrubs) and abs(scrubs) < 2**31 else None
        if to_state in FAILED:
            event.exit_code, event.message = failure_key(doc, style)
        if to_state in FINISHED:
            lock, done = lock_time(doc), finished_at(doc, to_state)
            if lock is not None and done is not None and done >= lock:
                event.run_seconds = done - lock
    return event


def _moment(doc, bucket, now, earliest):
    """When a move happened: the token's own time for its new state when that lies between the time events began
    and now (a worker's clock may be off, a field may be stale), else the time the dashboard saw it."""
    if doc is None:
        return now
    if bucket in ("locked", "locked_unknown"):
        seconds = lock_time(doc)
    elif bucket in FINISHED:
        seconds = finished_at(doc, bucket)
    else:
        seconds = None
    if seconds is None:
        return now
    at = datetime.fromtimestamp(seconds, UTC)
    return at if (earliest is None or at >= earliest) and at <= now + timedelta(seconds=60) else now


def moves(pool, before, changes, styles, earliest, now=None):
    """The events of a batch of changes. `before`: {id: (bucket, type, group, hostname)} as the table had them;
    `changes`: [(id, rev, doc or None, state or None)] with the state the twin of the views gives now."""
    now = now or timezone.now()
    events = []
    for doc_id, rev, doc, state in changes:
        old = before.get(doc_id)
        if state is None:
            if old is not None:
                events.append(_event(pool, doc_id, old, old[0], TokenEvent.DELETED, now, rev=rev))
            continue
        bucket, hostname = state[0], state[3]
        if old is not None and old[0] == bucket and not (bucket == "locked" and old[3] != hostname):
            continue  # no move (a field written, a log attached); a new host on a locked token is a new claim
        style = styles.get(state[1])
        events.append(_event(pool, doc_id, state, old[0] if old else TokenEvent.CREATED, bucket,
                             _moment(doc, bucket, now, earliest), doc, style, rev))
    return events


def recounted(pool, before, states, now=None):
    """Events for the tokens a whole recount found elsewhere than the table had them: moves the changes feed did
    not show (none, normally). Their time is the recount's."""
    now = now or timezone.now()
    events = []
    for doc_id, state in states.items():
        old = before.get(doc_id)
        if old is None or old[0] != state[0]:
            events.append(_event(pool, doc_id, state, old[0] if old else TokenEvent.CREATED, state[0], now,
                                 origin=TokenEvent.RECOUNT))
    for doc_id, old in before.items():
        if doc_id not in states:
            events.append(_event(pool, doc_id, old, old[0], TokenEvent.DELETED, now, origin=TokenEvent.RECOUNT))
    return events


EVENT_FIELDS = ("pool", "doc_id", "type", "group", "at", "from_state", "to_state", "hostname", "exit_code", "message",
                "scrub_count", "run_seconds", "rev", "origin")


OBSERVATION_HOUR = ("pool", "hour", "key", "type", "group", "to_state", "exit_code", "message", "backfill", "count")
HOST_HOUR = ("pool", "hour", "key", "hostname", "to_state", "exit_code", "message", "backfill", "count", "first",
             "last")


def rollup_key(*fields):
    """The rollups' upsert target: a digest of a row's fields other than pool and hour (group may be null, and
    a unique constraint does not match nulls)."""
    return hashlib.blake2b(json.dumps(fields).encode(), digest_size=16).hexdigest()


def record(events):
    """Write events, a batch at a time (inside the caller's transaction), one executemany each, and add them to
    the hourly rollups."""
    adapt = connection.ops.adapt_datetimefield_value  # as Django stores a time (UTC text on SQLite)
    it = iter(events)
    while batch := list(itertools.islice(it, BATCH)):
        with transaction.atomic():  # the events and their rollups together, or neither
            _record(batch, adapt)


def _record(batch, adapt):
    insert_rows(TokenEvent, EVENT_FIELDS, [
        (e.pool, e.doc_id, e.type, e.group, adapt(e.at), e.from_state, e.to_state, e.hostname, e.exit_code,
         e.message, e.scrub_count, e.run_seconds, e.rev, e.origin) for e in batch])
    per_observation, per_host = {}, {}
    for e in batch:
        hour, backfilled = e.at.replace(minute=0, second=0, microsecond=0), e.origin == TokenEvent.BACKFILL
        key = (e.pool, hour, e.type, e.group, e.to_state, e.exit_code, e.message, backfilled)
        per_observation[key] = per_observation.get(key, 0) + 1
        key = (e.pool, hour, e.hostname, e.to_state, e.exit_code, e.message, backfilled)
        n, first, last = per_host.get(key, (0, e.at, e.at))
        per_host[key] = (n + 1, min(first, e.at), max(last, e.at))
    upsert_rows(ObservationHour, OBSERVATION_HOUR, ("pool", "hour", "key"), [
        (pool, adapt(hour), rollup_key(*rest), *rest, n) for (pool, hour, *rest), n in per_observation.items()],
        merge={"count": "add"})
    upsert_rows(HostHour, HOST_HOUR, ("pool", "hour", "key"), [
        (pool, adapt(hour), rollup_key(*rest), *rest, n, adapt(first), adapt(last))
        for (pool, hour, *rest), (n, first, last) in per_host.items()],
        merge={"count": "add", "first": "min", "last": "max"})


# --- backfill: a pool's past, from its documents -------------------------------------------------------------


def backfill(pool, couch, styles, token_state, page_size):
    """Record, once, what a pool's documents tell of their past: each claim (lock), each failure in error[] and
    the last finish (done), up to the time events began. Re-run after a crash, it replaces what it wrote."""
    snap = CountSnapshot.objects.get(pool=pool.slug)
    if snap.backfilled or snap.events_from is None:
        return 0
    until = snap.events_from.timestamp()
    with transaction.atomic():
        TokenEvent.objects.filter(pool=pool.slug, origin=TokenEvent.BACKFILL).delete()
        ObservationHour.objects.filter(pool=pool.slug, backfill=True).delete()
        HostHour.objects.filter(pool=pool.slug, backfill=True).delete()
    written, start = 0, None
    while True:
        page = couch.documents(page_size, start_id=start)
        events = []
        for row in page.rows:
            doc = row.get("doc")
            state = token_state(doc, styles, pool.group_field) if doc else None
            if state is not None:
                events += _past(pool.slug, doc, state, styles.get(state[1]), until)
        record(events)
        written += len(events)
        if not page.has_next:
            break
        start = page.next_key
    CountSnapshot.objects.filter(pk=snap.pk).update(backfilled=True)
    return written


def _past(slug, doc, state, style, until):
    bucket = state[0]
    found = []  # (seconds, from, to, facts from the document)
    lock = lock_time(doc)
    if lock is not None and bucket in ("locked", *FINISHED):
        found.append((lock, "todo", "locked", False))
    final = finished_at(doc, bucket) if bucket in FINISHED else None
    for entry in doc.get("error") if isinstance(doc.get("error"), list) else []:
        seconds = _time(entry.get("time")) if isinstance(entry, dict) else None
        if seconds is not None and not (bucket in FAILED and seconds == final):
            found.append((seconds, "locked", "error", False))  # an earlier failure, retried since
    if final is not None:
        found.append((final, "locked", bucket, True))
    events = []
    for seconds, from_state, to_state, current in sorted(found, key=lambda f: f[0]):
        if seconds < until:
            event = _event(slug, doc["_id"], state if current or to_state == "locked" else (*state[:3], ""),
                           from_state, to_state, datetime.fromtimestamp(seconds, UTC),
                           doc if current else None, style, origin=TokenEvent.BACKFILL)
            events.append(event)
    return events


# --- reading them ------------------------------------------------------------------------------------------


def timeline(pool, doc_id, limit=200):
    """A token's events, oldest first, each with the dashboard job that made it (by the revision it wrote)."""
    # In the order recorded: the feed shows a token's moves in the order they happened, while their times may
    # tie or cross within a second (a worker's whole-second lock after the dashboard's reset). Backfilled ones
    # (recorded later, but all from before the pool was first seen) first.
    live = Case(When(origin=TokenEvent.BACKFILL, then=Value(0)), default=Value(1))
    events = list(TokenEvent.objects.filter(pool=pool, doc_id=doc_id).annotate(live=live)
                  .order_by("-live", "-pk")[:limit])[::-1]
    revs = [e.rev for e in events if e.rev]
    jobs = dict(JobToken.objects.filter(pool=pool, token_id=doc_id, rev_after__in=revs)
                .values_list("rev_after", "job_id")) if revs else {}
    return [{"at": e.at, "from_state": e.from_state, "to_state": e.to_state, "hostname": e.hostname,
             "exit_code": e.exit_code, "scrub_count": e.scrub_count, "run_seconds": e.run_seconds,
             "job": jobs.get(e.rev), "origin": e.origin} for e in events]


def as_json(entry):
    return {**entry, "at": entry["at"].isoformat()}


def sample_running(pool, buckets, now=None):
    """Note the tokens running (locked) now per observation in this hour's rollup, as to_state "running": the most
    seen at a count in the hour (merged with MAX, not added). Counts are taken every EVENTS_FOLLOW_SECONDS, so a
    chart's running row is sampled, not every claim; hours before the dashboard followed the pool have none."""
    adapt = connection.ops.adapt_datetimefield_value
    hour = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    running = {}
    for bucket, type_, group, n in buckets:
        if bucket == "locked" and n:
            running[(type_, group)] = running.get((type_, group), 0) + n
    rest = [(type_, group, RUNNING, "", "", False) for type_, group in running]
    upsert_rows(ObservationHour, OBSERVATION_HOUR, ("pool", "hour", "key"), [
        (pool, adapt(hour), rollup_key(*r), *r, running[r[:2]]) for r in rest], merge={"count": "max"})


def per_hour(pool, since, until, to_states=FINISHED, type_=None, group=None, by_observation=True):
    """{(hour, to_state, type, group): n} of the events in the hours from the one `since` falls in to `until`,
    from the hourly rollups; {(hour, to_state): n} when not by_observation."""
    where = Q(pool=pool, hour__gte=since.replace(minute=0, second=0, microsecond=0), hour__lt=until,
              to_state__in=to_states)
    if type_ is not None:
        where &= Q(type=type_, group=group)
    fields = ("hour", "to_state", "type", "group") if by_observation else ("hour", "to_state")
    return {row[:-1]: row[-1] for row in ObservationHour.objects.filter(where).values_list(*fields)
            .annotate(n=Sum("count")).order_by()}


def history(pool, since, until, bucket="hour", type_=None, group=None):
    """Finishes (done, error) per hour or per day in [since, until), oldest first, every period listed: the
    charts' figures and the API's history. Raises ValueError for a range of more than EVENTS_ROLLUP_DAYS."""
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = since.replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    if until <= start or until - start > timedelta(days=settings.EVENTS_ROLLUP_DAYS + 1):
        raise ValueError(f"since must be before until, at most {settings.EVENTS_ROLLUP_DAYS} days apart")
    periods = {}
    at = start
    while at < until:
        periods[at] = {"start": at, "done": 0, "error": 0, RUNNING: 0}
        at += step
    for (hour, to_state), n in per_hour(pool, start, until, ("done", "error", RUNNING), type_, group, False).items():
        key = hour if bucket == "hour" else hour.replace(hour=0)
        if key in periods:
            if to_state == RUNNING:  # the most at once: a day's is its busiest hour's
                periods[key][RUNNING] = max(periods[key][RUNNING], n)
            else:
                periods[key][to_state] += n
    return list(periods.values())


def failure_history(pool, groups, since, until, type_=None, group=None):
    """For each failure group ({"code", "message", ...}, as reading.failure_groups gives them), from its failure
    events: first and last seen, failures per hour over [since, until) ("hours": [n...]), the hosts (most failures
    first) and observations it struck, and how many of its tokens were retried and are done now. From the hourly
    rollups, or for one observation (type_, group) from its raw events."""
    start = since.replace(minute=0, second=0, microsecond=0)
    hours = int((until - start).total_seconds() // 3600) + 1
    for g in groups:
        failures = TokenEvent.objects.filter(pool=pool, to_state__in=FAILED, exit_code=g["code"],
                                             message=g["message"])
        if type_ is None:
            rolled = HostHour.objects.filter(pool=pool, to_state__in=FAILED, exit_code=g["code"], message=g["message"])
            seen = rolled.aggregate(first=Min("first"), last=Max("last"), n=Sum("count"))
            sparkline = rolled.filter(hour__gte=start, hour__lt=until).values("hour").annotate(n=Sum("count"))
            struck = rolled.exclude(hostname="").values("hostname").annotate(n=Sum("count"))
            observations = (ObservationHour.objects.filter(pool=pool, to_state__in=FAILED, exit_code=g["code"],
                                                           message=g["message"])
                            .values("type", "group").distinct().count())
        else:
            failures = failures.filter(type=type_, group=group)
            seen = failures.aggregate(first=Min("at"), last=Max("at"), n=Count("pk"))
            sparkline = (failures.filter(at__gte=start, at__lt=until).annotate(hour=hour_of("at")).values("hour")
                         .annotate(n=Count("pk")))
            struck = failures.exclude(hostname="").values("hostname").annotate(n=Count("pk"))
            observations = 1 if seen["n"] else 0
        per_hour = [0] * hours
        for row in sparkline.order_by():
            i = int((as_hour(row["hour"]) - start).total_seconds() // 3600)
            if 0 <= i < hours:
                per_hour[i] += row["n"]
        hosts = sorted(((r["hostname"], r["n"]) for r in struck.order_by()), key=lambda h: (-h[1], h[0]))
        g.update(first_seen=seen["first"], last_seen=seen["last"], failures_recorded=seen["n"] or 0,
                 hours=per_hour, hours_start=start,
                 hosts=[{"hostname": h, "failures": n} for h, n in hosts[:5]], host_count=len(hosts),
                 observations=observations,
                 retried_done=TokenState.objects.filter(pool=pool, bucket="done",
                                                        doc_id__in=failures.values("doc_id")).count())
    return groups


def finished_since(pool, since):
    """[[since, to_state, type, group, n]]: the finishes (done, error) per observation since `since` (epoch)."""
    rows = (TokenEvent.objects.filter(pool=pool, at__gte=datetime.fromtimestamp(since, UTC),
                                      to_state__in=("done", "error"))
            .values_list("to_state", "type", "group").annotate(n=Count("pk")).order_by())
    return [[since, *row] for row in rows]


def _whole_hours(since, until):
    """[since, until) as (raw ranges, (first, end) of the whole hours between): the rollups count whole hours;
    the part-hours at either end are counted from the raw events, where those are still kept."""
    def floor(t):
        return t.replace(minute=0, second=0, microsecond=0)

    first, end = floor(since), floor(until)
    if since > first and since >= timezone.now() - timedelta(days=settings.EVENTS_KEEP_DAYS):
        first += timedelta(hours=1)
    if first >= end:
        return [(since, until)], None
    return [r for r in ((since, first), (end, until)) if r[0] < r[1]], (first, end)


def hosts(pool, since, until=None, medians=True):
    """Per host over [since, until): claims, done, failed, failure rate, median run time (lock to done, of its
    newest MEDIAN_RUNS runs), first and last seen; and running now (the locked tokens that name it). Sorted by
    failures, then name."""
    until = until or timezone.now()
    raw, whole = _whole_hours(since, until)
    figures = {"claims": Q(to_state="locked"), "done": Q(to_state="done"), "failed": Q(to_state__in=FAILED)}
    found = []
    for start, end in raw:
        found += (TokenEvent.objects.filter(pool=pool, at__gte=start, at__lt=end).exclude(hostname="")
                  .values("hostname").annotate(**{k: Count("pk", filter=q) for k, q in figures.items()},
                                               first=Min("at"), last=Max("at")).order_by())
    if whole:
        found += (HostHour.objects.filter(pool=pool, hour__gte=whole[0], hour__lt=whole[1]).exclude(hostname="")
                  .values("hostname").annotate(**{k: Sum("count", filter=q, default=0) for k, q in figures.items()},
                                               first=Min("first"), last=Max("last")).order_by())
    rows = {}
    for r in found:
        row = rows.setdefault(r["hostname"], {"hostname": r["hostname"], "claims": 0, "done": 0, "failed": 0,
                                              "first": None, "last": None, "running": 0})
        for k in figures:
            row[k] += r[k]
        row["first"] = min(t for t in (row["first"], r["first"]) if t is not None)
        row["last"] = max(t for t in (row["last"], r["last"]) if t is not None)
    for host, n in (TokenState.objects.filter(pool=pool, bucket="locked").exclude(hostname="")
                    .values_list("hostname").annotate(n=Count("pk")).order_by()):
        rows.setdefault(host, {"hostname": host, "claims": 0, "done": 0, "failed": 0, "first": None,
                               "last": None})["running"] = n
    for host, row in rows.items():
        finished = row["done"] + row["failed"]
        row["failure_rate"] = row["failed"] / finished if finished else None
        row["site"] = host.split(".", 1)[1] if "." in host.strip(".") else ""
        row["median_run"] = None
        if medians and finished:
            runs = list(TokenEvent.objects.filter(pool=pool, hostname=host, at__gte=since, at__lt=until,
                                                  to_state__in=FINISHED, run_seconds__isnull=False)
                        .order_by("-at").values_list("run_seconds", flat=True)[:MEDIAN_RUNS])
            row["median_run"] = statistics.median(runs) if runs else None
    return sorted(rows.values(), key=lambda r: (-r["failed"], r["hostname"]))


def sites(host_rows):
    """The hosts' figures added up per site (the hostname's domain)."""
    per_site = {}
    for r in host_rows:
        site = per_site.setdefault(r["site"], {"site": r["site"], "hosts": 0, "running": 0, "claims": 0, "done": 0,
                                               "failed": 0, "last": None})
        site["hosts"] += 1
        for k in ("running", "claims", "done", "failed"):
            site[k] += r[k]
        if r["last"] and (site["last"] is None or r["last"] > site["last"]):
            site["last"] = r["last"]
    for site in per_site.values():
        finished = site["done"] + site["failed"]
        site["failure_rate"] = site["failed"] / finished if finished else None
    return sorted(per_site.values(), key=lambda r: (-r["failed"], r["site"]))


def black_hole_window():
    now = timezone.now()
    return now - timedelta(hours=settings.BLACKHOLE_WINDOW_HOURS), now


def black_holes(host_rows):
    """The hosts that fail far more than the pool: at least BLACKHOLE_MIN_FAILURES failures, a failure rate of at
    least BLACKHOLE_RATE and BLACKHOLE_FACTOR times the rate of the rest of the pool. Each with its evidence."""
    flagged = []
    done = sum(r["done"] for r in host_rows)
    failed = sum(r["failed"] for r in host_rows)
    for r in host_rows:
        finished = r["done"] + r["failed"]
        if r["failed"] < settings.BLACKHOLE_MIN_FAILURES or not finished:
            continue
        rest_done, rest_failed = done - r["done"], failed - r["failed"]
        rest_rate = rest_failed / (rest_done + rest_failed) if rest_done + rest_failed else 0.0
        rate = r["failed"] / finished
        if rate >= settings.BLACKHOLE_RATE and rate >= settings.BLACKHOLE_FACTOR * rest_rate:
            flagged.append({**r, "rest_rate": rest_rate, "rate": rate})
    return flagged


# --- retention -------------------------------------------------------------------------------------------


def prune(now=None):
    """Delete the raw events older than EVENTS_KEEP_DAYS and the hourly rollups older than EVENTS_ROLLUP_DAYS
    (the rollups were written with the events). Returns how many events it deleted."""
    now = now or timezone.now()
    deleted, _ = TokenEvent.objects.filter(at__lt=now - timedelta(days=settings.EVENTS_KEEP_DAYS)).delete()
    old = now - timedelta(days=settings.EVENTS_ROLLUP_DAYS)
    ObservationHour.objects.filter(hour__lt=old).delete()
    HostHour.objects.filter(hour__lt=old).delete()
    # The rows a fill or recount staged when its process was killed in the middle (tokens.counting), a day on.
    staging = TokenState.STAGING
    TokenState.objects.filter(pool__startswith=staging, pool__lt=f"{staging}{int(now.timestamp()) - 86400}").delete()
    return deleted
