"""The overview: one card per pool, answering a project lead's "are we on track, and does anything need me?".

Everything comes from what the counts already keep (the pool's latest snapshot: counts, the last hour's finishes,
black holes, stale locks) and from the hourly rollups of its events (the last 24 hours), so a card costs a few small
queries however large the pool. Cards are sorted by what needs attention first.
"""

from datetime import timedelta

from django.conf import settings
from django.db.models import Max, Sum
from django.utils import timezone

from tokens import reading, retries
from tokens.models import Alert, ObservationHour, TokenEvent

# Why a pool needs attention, most urgent first: (key, how a card says it).
ATTENTION = ("unreachable", "alert", "black_hole", "failing", "stalled", "stale_locks")
# The calm states of a pool that needs nothing, after the attention ones.
CALM = ("running", "finished", "idle")
STATUS_WORDS = {"unreachable": "unreachable", "alert": "alert firing", "black_hole": "black hole", "stalled": "stalled",
                "failing": "failing",
                "stale_locks": "stale locks", "running": "running", "finished": "finished", "idle": "not started"}
SMALL_BARS = 6  # observations in progress drawn on a card; the rest are counted

# The moves only workers make: a claim, a finish (the dashboard's jobs move tokens to todo, or delete them).
WORKER_MOVES = ("locked", "locked_unknown", "done", "error")


def card(pool, snap, now=None):
    """A pool's card: progress, throughput now and over 24 hours, ETA and its basis, error rate, stale locks,
    flagged hosts, last activity, the observations in progress; and why it needs attention, if it does."""
    now = now or timezone.now()
    c = {"slug": pool.slug, "name": pool.name, "database": pool.database, "error": snap.error or None,
         "counts_age_seconds": round(snap.age(), 1) if snap.data else None, "reasons": []}
    if snap.error:
        c["reasons"].append(("unreachable", f"CouchDB: {snap.error}"))
    firing = Alert.objects.filter(pool=pool.slug, status=Alert.FIRING)
    c["reasons"] += [("alert", f"alert: {a.summary}") for a in firing]
    data = snap.data
    if not data:
        c.update(status="unreachable", total=None)
        return c
    totals = reading.pool_totals(data)
    total = sum(totals.values())
    observations = reading.observations(data)
    remaining = reading.remaining(totals)
    done_hour = sum(o.done_recent for o in observations)
    finished_hour = sum(o.finished_recent for o in observations)
    day = _last_24_hours(pool.slug, now)
    c.update(
        total=total, counts=totals, done=totals["done"], remaining=remaining,
        percent_done=round(100.0 * totals["done"] / total, 1) if total else 0.0,
        bar=[(b, round(100.0 * n / total, 2)) for b, n in totals.items() if n],
        done_last_hour=done_hour, failed_last_hour=finished_hour - done_hour,
        done_per_hour_24h=round(day["done"] / 24, 1), failed_24h=day["error"],
        error_rate_last_hour=round((finished_hour - done_hour) / finished_hour, 3) if finished_hour else None,
        black_holes=[h["hostname"] for h in data.get("black_holes", [])],
        stale_locks=data.get("stale_locks", {}).get("count", 0), stale_hours=settings.STALE_LOCK_HOURS,
        unknown_locks=data.get("stale_locks", {}).get("unknown", 0),
        given_up=retries.given_up(pool.slug).count(),
        # The workers' last claim or finish: an operator's reset (to todo) or delete is not the pool at work.
        last_activity=TokenEvent.objects.filter(pool=pool.slug, to_state__in=WORKER_MOVES)
        .aggregate(at=Max("at"))["at"],
        last_finish_hour=ObservationHour.objects.filter(pool=pool.slug, to_state__in=("done", "error"))
        .aggregate(h=Max("hour"))["h"],
        backfilled=bool(data.get("events_backfilled")),
    )
    c.update(_eta(remaining, finished_hour, day["done"] + day["error"]))
    if not c["backfilled"] and not finished_hour and remaining:
        # The pool's past is still being read from its tokens: no rate to judge by yet, and none to say "none".
        c.update(eta_hours=None, eta_basis="waits for the pool's past")
    in_progress = [o for o in observations if o.remaining and o.total > o.remaining]
    c["observations"] = [{"label": o.label, "type": o.type, "group": o.group, "percent_done": o.percent_done,
                          "total": o.total, "bar": o.bar()} for o in in_progress[:SMALL_BARS]]
    c["more_observations"] = max(0, len(in_progress) - SMALL_BARS)
    c["observations_total"] = len(observations)
    _judge(c, now)
    return c


def _last_24_hours(slug, now, type_=None, group=None):
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=23)
    rows = ObservationHour.objects.filter(pool=slug, hour__gte=since, to_state__in=("done", "error"))
    if type_ is not None:
        rows = rows.filter(type=type_, group=group)
    sums = dict(rows.values_list("to_state").annotate(n=Sum("count")).order_by())
    return {"done": sums.get("done", 0), "error": sums.get("error", 0)}


def eta(slug, remaining, finished_hour, type_=None, group=None, now=None):
    """{"eta_hours", "eta_basis"} of a pool or of one observation (type_, group): see _eta."""
    day = _last_24_hours(slug, now or timezone.now(), type_, group)
    return _eta(remaining, finished_hour, day["done"] + day["error"])


def _eta(remaining, finished_hour, finished_day):
    """Hours to finish what is left, and on what rate: the last hour's, else the last 24 hours' average; "no
    progress in 24 hours" when nothing finished in them (never a number then)."""
    if not remaining:
        return {"eta_hours": 0.0, "eta_basis": "complete"}
    if finished_hour:
        return {"eta_hours": round(remaining / finished_hour, 1), "eta_basis": "last hour"}
    if finished_day:
        return {"eta_hours": round(remaining / (finished_day / 24), 1), "eta_basis": "last 24 hours"}
    return {"eta_hours": None, "eta_basis": "no progress in 24 hours"}


def _judge(c, now):
    reasons = c["reasons"]
    if c["black_holes"]:
        hosts = c["black_holes"]
        reasons.append(("black_hole", f"black hole{'s' if len(hosts) > 1 else ''}: {', '.join(hosts)}"))
    last = c["last_finish_hour"]
    if c["remaining"] and last is not None and not c["done_last_hour"] and not c["failed_last_hour"] \
            and now - last >= timedelta(hours=settings.OVERVIEW_STALL_HOURS + 1):
        hours = int((now - last) / timedelta(hours=1)) - 1  # the hour of the last finish is over
        reasons.append(("stalled", f"no token finished in {hours} hours, {c['remaining']} left"))
    rate = c["error_rate_last_hour"]
    if rate is not None and rate >= settings.OVERVIEW_ERROR_RATE and c["failed_last_hour"] >= 2:
        reasons.append(("failing", f"{rate:.0%} of the last hour's finishes failed ({c['failed_last_hour']})"))
    if c["stale_locks"]:
        n, hours = c["stale_locks"], f"{c['stale_hours']:g}"
        reasons.append(("stale_locks", f"{n} lock{'s' if n != 1 else ''} older than {hours} "
                                       f"hour{'s' if hours != '1' else ''}"))
    if reasons:
        c["status"] = min((r[0] for r in reasons), key=ATTENTION.index)
    elif c["remaining"] and (c["last_finish_hour"] is not None or not c["backfilled"]):
        c["status"] = "running"  # (or not known yet: a pool whose past is still being read is not "not started")
    elif c["remaining"]:
        c["status"] = "idle"
    else:
        c["status"] = "finished" if c["total"] else "idle"  # idle: no tokens, or none begun


def order(cards):
    """Attention first (most urgent reason, then the most reasons), then running, finished, idle; by name."""
    rank = {k: i for i, k in enumerate(ATTENTION + CALM)}
    return sorted(cards, key=lambda c: (rank[c["status"]], -len(c["reasons"]), c["name"]))


def all_quiet(cards):
    return bool(cards) and not any(c["reasons"] for c in cards)
