"""Watching the dashboard from outside and over time: /metrics, /healthz, an observation's page with its chart, and
the worker hosts of a pool."""

import hmac

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_safe
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

from dashboard import health, roles
from dashboard.models import ApiToken
from dashboard.payloads import HOST_WINDOWS, chart_csv, hosts_csv, hosts_payload, observation_page
from dashboard.web import (
    counted,
    labels,
    refuse,
    respond,
    status_of,
    visible_pools,
)
from tokens import metrics
from tokens.models import CountSnapshot
from tokens.states import STATES


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


@require_GET
@counted
def observation(request, pool, snap):
    """One observation (a token type, and a group when the pool has a grouping field): counts, chart (`?format=csv`:
    its numbers), ETA, GRID_LRT's own overview beside them, links."""
    try:
        context = observation_page(pool, snap, request.GET)
    except ValueError as e:
        return refuse(request, pool, request.GET.get("type", ""), str(e))
    if request.GET.get("format") == "csv":
        name = "-".join(str(p) for p in (pool.slug, context["o"].type, context["o"].group) if p is not None)
        return chart_csv(pool, context, name)
    context.update({"pool": pool, "snap": snap, "own_views": snap.data["own_views"], "states": STATES, **labels()})
    return respond(request, "observation.html", context, status=status_of(snap))


@require_GET
@counted
def hosts(request, pool, snap):
    """The worker hosts of a pool, from its events: per host and per site, and the black holes."""
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
    return respond(request, "hosts.html", context, status=status_of(snap))


