"""Watching the dashboard from outside and over time: /metrics, /healthz, an observation's page with its chart, and
the worker hosts of a pool."""

import hmac
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from dashboard import charts, health, roles
from dashboard.export_views import csv_download
from dashboard.models import ApiToken
from dashboard.web import (
    labels,
    pool_or_404,
    refuse,
    respond,
    snapshot_meta,
    snapshot_or_error,
    status_of,
    visible_pools,
)
from tokens import events, exports, history, metrics, overview, reading
from tokens.couch import CouchError
from tokens.models import CountSnapshot
from tokens.states import STATES, group_from


@login_not_required
@never_cache
@require_GET
def metrics_view(request):
    """Prometheus metrics. The bearer token METRICS_TOKEN (the site's own Prometheus) gets every pool; a user's API
    token gets the pools it may see, and the jobs on them. Anyone else gets 401: counts of a project's pools are
    not for anyone who finds the URL."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip() if scheme.lower() == "bearer" else ""
    if given and settings.METRICS_TOKEN and hmac.compare_digest(given.encode(), settings.METRICS_TOKEN.encode()):
        pools = None
    else:
        token = ApiToken.find(given) if given else None
        if token is None:
            response = HttpResponse("A bearer token is required: METRICS_TOKEN, or an API token made on /account/ "
                                    "(Authorization: Bearer <token>).\n",
                                    status=401, content_type="text/plain; charset=utf-8")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        roles.act_as(request, token)
        pools = visible_pools(request)
    # The classic text format (0.0.4), which every Prometheus version reads; the names are plain ASCII either way.
    return HttpResponse(generate_latest(metrics.registry(pools)), content_type=CONTENT_TYPE_PLAIN_0_0_4)


@login_not_required
@never_cache
@require_safe
def healthz(request):
    """For load balancers: 200 when the site, its database, the broker and every pool's CouchDB answer, else 503."""
    ok, checks = health.check_all()
    # Pools are named only to those who may see them (a logged-in user: theirs); the rest are counted, so a load
    # balancer still learns that something failed, and nobody learns which pools exist.
    mine = roles.access(request)
    hidden = [c for slug, c in checks["pools"].items() if not mine.can_view(slug)]
    checks["pools"] = {slug: c for slug, c in checks["pools"].items() if mine.can_view(slug)}
    if hidden:
        checks["other_pools"] = {"checked": len(hidden), "failing": sum(c["status"] != "ok" for c in hidden)}
    return JsonResponse({"status": "ok" if ok else "fail", "checks": checks}, status=200 if ok else 503)


def chart_periods():
    """({key: days} of the periods a chart offers, shortest first; the default's key). The default is CHART_DAYS, the
    period kept ready in the stored history; 24 hours, 7 and 30 days are computed from the events when asked."""
    # Beyond EVENTS_ROLLUP_DAYS there are no events to count.
    periods = {k: d for k, d in {"24h": 1, "7d": 7, "30d": 30}.items() if d <= settings.EVENTS_ROLLUP_DAYS}
    default = next((k for k, d in periods.items() if d == settings.CHART_DAYS), f"{settings.CHART_DAYS}d")
    periods[default] = settings.CHART_DAYS
    return dict(sorted(periods.items(), key=lambda kv: kv[1])), default


def chart_context(pool, data, query, type_=None, group=None, observation=False):
    """(context with the stored history and the chart of the pool or of one observation over the period in the
    query (`period`, a key of chart_periods), its series); without a history (no own views) the context holds only
    `history` and the series is None. Raises ValueError for an unknown period."""
    periods, default = chart_periods()
    period = query.get("period") or default
    if period not in periods:
        raise ValueError(f"Unknown chart period {period!r}: one of {', '.join(periods)}")
    record = history.history(pool, data)
    if record is None or record.data is None:
        return {"history": record}, None
    if period == default:
        series = history.series(record.data, type_, group, observation=observation)
        computed_at, error = record.data["computed_at"], record.error
    else:
        series = history.period_series(pool, periods[period], *((type_, group) if observation else (None, None)))
        # As fresh as the events: a failed read of the feed (kept with the stored history) holds for them too.
        computed_at, error = time.time(), record.error
    links = []
    q = query.copy()
    q.pop("format", None)
    for key, days in periods.items():
        q["period"] = key
        links.append({"key": key, "label": "24 hours" if days == 1 else f"{days} days", "current": key == period,
                      "href": f"?{q.urlencode()}#chart"})
    q["period"], q["format"] = period, "csv"
    chart_id = "chart-obs" if observation else "chart-pool"
    return {"history": record, "chart": charts.hourly_chart(series, chart_id), "series": series, "period": period,
            "period_links": links, "csv_href": f"?{q.urlencode()}", "chart_computed_at": computed_at,
            "chart_error": error}, series


def series_json(context):
    series = context.get("series")
    if series is None:
        return None
    return {
        "period": context["period"],
        "step_seconds": series["step"],
        "computed_at": context["chart_computed_at"],
        "error": context["chart_error"] or None,
        "hours": [charts.start_label(series, h) for h in series["hours"]],  # days when step_seconds is 86400
        "hour_starts": series["hours"],
        "done": series["done"],
        "error_counts": series["error"],
        "running": series["running"],  # the most locked at once in the hour (sampled with the counts)
    }


def chart_csv(pool, context, name):
    """The chart's numbers as a CSV file, one row per hour or day of the period; `name` says whose they are."""
    series = context.get("series")
    if series is None:
        raise Http404("No chart in this pool: charts need the dashboard's own design document")
    rows = ((exports.iso_time(h), d, e, r) for h, d, e, r in zip(series["hours"], series["done"], series["error"],
                                                                  series["running"], strict=True))
    return csv_download(f"{name}-history-{context['period']}.csv",
                        (f"{context['chart']['unit']}_start_utc", "done", "failed", "running_at_most"), rows)


@require_GET
def observation(request, slug):
    """One observation (a token type, and a group when the pool has a grouping field): counts, chart, ETA, links."""
    pool = pool_or_404(request, slug)
    snap, error = snapshot_or_error(request, pool)
    if error:
        return error
    type_ = request.GET.get("type", "")
    if not type_:
        raise Http404("Which observation? Give its type (and its group, if it has one).")
    group = group_from(request.GET)
    found = next((o for o in reading.observations(snap.data) if (o.type, o.group) == (type_, group)), None)
    if found is None:
        raise Http404("No such observation in this pool")
    try:
        context, series = chart_context(pool, snap.data, request.GET, type_, group, observation=True)
    except ValueError as e:
        return refuse(request, pool, found.label, str(e))
    if request.GET.get("format") == "csv":
        return chart_csv(pool, context, "-".join(str(p) for p in (pool.slug, type_, group) if p is not None))
    context.update(progress(pool, series, found.counts, found.finished_recent, type_, group))
    payload = {"pool": pool.slug, **snapshot_meta(snap), **found.as_json(), "hourly": series_json(context),
               "eta": context.get("eta")}
    try:
        theirs = reading.worker_overview(pool, snap.data, type_)
    except CouchError as e:
        theirs, context["overview_error"] = None, str(e)
    if theirs is not None:
        context["worker_overview"] = {**theirs, "rows": reading.overview_beside(found, theirs["figures"])}
        payload["grid_lrt_overview"] = {"design_doc": theirs["design_doc"], "view": theirs["view"],
                                        **theirs["figures"]}
    context.update({"pool": pool, "snap": snap, "o": found, "own_views": snap.data["own_views"],
                    "states": STATES, **labels()})
    return respond(request, "observation.html", context, payload, status=status_of(snap))


def progress(pool, series, counts, finished_hour, type_=None, group=None):
    """The progress chart (done in total, projected to the total) of a pool or an observation, and its ETA."""
    if series is None:
        return {}
    eta = overview.eta(pool.slug, reading.remaining(counts), finished_hour, type_, group)
    chart_id = "progress-obs" if type_ is not None else "progress-pool"
    return {"progress": charts.progress_chart(series, counts["done"], sum(counts.values()), eta["eta_hours"],
                                              eta["eta_basis"], chart_id), "eta": eta}


def pool_charts(pool, data, observations, query):
    """The pool page's chart and a sparkline for each observation (set as o.spark, always over the default
    period): (context, JSON payload)."""
    context, series = chart_context(pool, data, query)
    if series is None:
        return context, {"hourly": None}
    record = context["history"]
    per_obs = history.series_by_observation(record.data)
    empty = history.empty_series(record.data)
    for o in observations:
        o.spark = charts.sparkline(per_obs.get((o.type, o.group), empty))
    return context, {"hourly": series_json(context)}


HOST_WINDOWS = {"6h": ("the last 6 hours", 6), "24h": ("the last 24 hours", 24), "7d": ("the last 7 days", 168),
                "30d": ("the last 30 days", 720)}


@require_GET
def hosts(request, slug):
    """The worker hosts of a pool, from its events: per host and per site, and the black holes."""
    pool = pool_or_404(request, slug)
    snap, error = snapshot_or_error(request, pool)
    if error:
        return error
    window = request.GET.get("window") or "24h"
    if window not in HOST_WINDOWS:
        return refuse(request, pool, "Hosts", f"Unknown window {window!r}: one of {', '.join(HOST_WINDOWS)}")
    payload = hosts_payload(pool, snap, window)
    if request.GET.get("format") == "csv":
        return hosts_csv(pool, payload, window)
    context = {"pool": pool, "snap": snap, "window": window, "window_label": HOST_WINDOWS[window][0],
               "windows": HOST_WINDOWS, "rows": payload["hosts"], "sites": payload["sites"],
               "holes": payload["black_holes"], "rule": payload["black_hole_rule"],
               "black_hole_hours": f"{settings.BLACKHOLE_WINDOW_HOURS:g}",
               "events_from": CountSnapshot.objects.filter(pool=pool.slug).values_list("events_from", flat=True)
               .first()}
    return respond(request, "hosts.html", context, payload, status=status_of(snap))


def hosts_csv(pool, payload, window):
    """The hosts over the window as a CSV file. Whether a host is a black hole is judged over the black-hole
    window (BLACKHOLE_WINDOW_HOURS), whatever the file's: the column's name says so."""
    columns = ("hostname", "site", "running", "claims", "done", "failed", "failure_rate", "median_run", "first",
               "last")
    holes = {h["hostname"] for h in payload["black_holes"]}

    def cell(value):
        if isinstance(value, datetime):
            return exports.iso_time(value.timestamp())
        return round(value, 4) if isinstance(value, float) else value

    rows = ([*(cell(h[c]) for c in columns), "yes" if h["hostname"] in holes else ""] for h in payload["hosts"])
    flag = f"black_hole_last_{settings.BLACKHOLE_WINDOW_HOURS:g}h"
    return csv_download(f"{pool.slug}-hosts-{window}.csv", (*columns, flag), rows)


def hosts_payload(pool, snap, window):
    """The hosts of a pool over a window (a key of HOST_WINDOWS), per site, and the black holes: the hosts page's
    JSON and the API's."""
    now = timezone.now()
    since = now - timedelta(hours=HOST_WINDOWS[window][1])
    rows = events.hosts(pool.slug, since, now)
    holes = events.black_holes(events.hosts(pool.slug, *events.black_hole_window()))
    return {"pool": pool.slug, **snapshot_meta(snap), "own_views": snap.data["own_views"], "window": window,
            "since": since, "hosts": rows, "sites": events.sites(rows), "black_holes": holes,
            "black_hole_rule": black_hole_rule()}


def black_hole_rule():
    return (f"at least {settings.BLACKHOLE_MIN_FAILURES} failures in the last {settings.BLACKHOLE_WINDOW_HOURS:g} "
            f"hours, at least {settings.BLACKHOLE_RATE:.0%} of the tokens it finished, and at least "
            f"{settings.BLACKHOLE_FACTOR:g} times the failure rate of the rest of the pool")
