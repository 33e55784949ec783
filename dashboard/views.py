"""The web UI: function-based views, one template per page, htmx requests get a named partial.

Pages answer HTML; their data as JSON is the API's (/api/v1/, dashboard/api/), made by the same functions
(dashboard.payloads). CouchDB trouble is shown as a banner with the status that fits, never as a traceback.
"""

import math
from datetime import timedelta

from django.conf import settings
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from dashboard import charts
from dashboard.payloads import (
    chart_csv,
    overview_cards,
    pool_page,
    summary,
    token_jobs,
)
from dashboard.web import (
    couch_error,
    counted,
    download_csp,
    labels,
    pool_or_404,
    refuse,
    respond,
    status_of,
)
from tokens import counting, events, exitcodes, overview, reading
from tokens.couch import CouchError, NotFound
from tokens.oddities import oddities, safe_file_name
from tokens.selections import OperationError, list_selection
from tokens.states import BUCKETS, OUT_OF_VIEW, STATES, STYLE_LABELS, failure_key, group_from, style_of


def not_found(request, exception=None):
    # Http404("No such pool") says what is missing; an address that matches no page raises the resolver's 404,
    # whose argument is the URL patterns it tried: never shown (the site's patterns are not a user's business).
    given = exception.args[0] if exception is not None and exception.args else None
    message = given if isinstance(given, str) and given else "There is no page at this address."
    return render(request, "404.html", {"message": message}, status=404)


def wall_grid(n):
    """(columns, rows) of the wall's cards on a 16:9 screen: up to 12 pools fill it without scrolling (4 x 3)."""
    columns = 1 if n <= 1 else 2 if n <= 4 else 3 if n <= 9 else 4
    return columns, min(3, max(1, math.ceil(n / columns))) if n <= 12 else 0  # more than 12: rows as they come


@require_GET
def pools(request):
    """The overview: a card per pool, what needs attention first. `?wall=1`: for a screen on a wall (large type, no
    navigation, refreshing while shown)."""
    cards = overview_cards(request)
    quiet = overview.all_quiet(cards)
    wall = request.GET.get("wall") == "1"
    return respond(request, "pools.html", {"cards": cards, "all_quiet": quiet, "wall": wall,
                                           "wall_grid": wall_grid(len(cards)),
                                           "status_words": overview.STATUS_WORDS,
                                           "refresh_seconds": min(max(settings.COUNTS_MAX_AGE, 10), 60),
                                           **labels()})


@require_GET
@counted
def pool(request, pool, snap):
    """A pool: counts per state and per observation, its chart over a period (`?period=`; `?format=csv`: the
    chart's numbers), ETA, black holes, design documents."""
    try:
        context = pool_page(pool, snap, request.GET)
    except ValueError as e:
        return refuse(request, pool, pool.name, str(e))
    if request.GET.get("format") == "csv":
        return chart_csv(pool, context, pool.slug)
    context.update({
        "pool": pool,
        "snap": snap,
        "data": snap.data,
        "in_two_views": sum(n for o in context["observations"] for n in o.overlaps.values()),
        "style_labels": STYLE_LABELS,
        "out_of_view": OUT_OF_VIEW,
        "refresh_seconds": settings.COUNTS_MAX_AGE,
        "spark_days": settings.CHART_DAYS,
        "black_hole_hours": f"{settings.BLACKHOLE_WINDOW_HOURS:g}",
        **labels(),
    })
    return respond(request, "pool.html", context, status=status_of(snap))


@require_GET
@counted
def tokens(request, pool, snap):
    try:
        selection = list_selection(request.GET, snap.data)
    except OperationError as e:
        return refuse(request, pool, "Tokens", str(e))
    field_name, field_value = request.GET.get("field", "").strip(), request.GET.get("value", "")
    field_filter = (field_name, field_value) if field_name else None
    id_filter = request.GET.get("q", "").strip()
    before = reading.decode_cursor(request.GET.get("before"))
    try:
        page = reading.token_page(
            pool, snap.data, **selection, cursor=None if before else reading.decode_cursor(request.GET.get("after")),
            before=before, id_filter=id_filter, field_filter=field_filter,
        )
    except CouchError as e:
        return couch_error(request, pool, e)
    # Where this page stands in the list: carried in the links (`from`, the first row's number), since a page read
    # by key does not know its offset; 1 on the first page whatever the link said.
    given = request.GET.get("from", "")
    first = int(given) if given.isdigit() and int(given) > 0 and page["previous"] else 1
    shown = len(page["tokens"])
    next_cursor = reading.encode_cursor(page["next"])
    next_query = request.GET.copy()
    for key in ("before", "after"):
        next_query.pop(key, None)
    previous_query = next_query.copy()
    next_query.update({"after": next_cursor, "from": first + shown})
    if page["previous"]:
        previous_query.update({"before": reading.encode_cursor(page["previous"]),
                               "from": max(1, first - settings.PAGE_SIZE)})
    context = {
        "pool": pool,
        "selection": selection,
        "page": page,
        "rows": [summary(doc, snap.data["types"]) for doc in page["tokens"]],
        "next_query": next_query.urlencode() if page["next"] else "",
        "previous_query": previous_query.urlencode() if page["previous"] else "",
        "first": first, "last": first + shown - 1,
        "total": reading.selection_total(snap.data, **selection), "counted_at": snap.taken_at,
        "id_filter": id_filter,
        "field_name": field_name,
        "field_value": field_value,
        "own_views": snap.data["own_views"],
        "states": BUCKETS if snap.data["own_views"] else STATES,
        **labels(),
    }
    return respond(request, "tokens.html", context)


@require_GET
@counted
def failures(request, pool, snap):
    type_ = request.GET.get("type") or None
    group = group_from(request.GET)
    result = reading.failure_groups(snap.data, type_, group)
    now = timezone.now()
    since = now - timedelta(days=settings.CHART_DAYS)
    events.failure_history(pool.slug, result["groups"], since, now, type_, group)
    for g in result["groups"]:
        g["spark"] = charts.sparkline({"hours": g["hours"], "done": [0] * len(g["hours"]), "error": g["hours"]})
    context = {"pool": pool, "snap": snap, "result": result, "type": type_, "group": group,
               "own_views": snap.data["own_views"], "chart_days": settings.CHART_DAYS,
               "spark_hours": charts.SPARK_HOURS, "meanings": exitcodes.meanings(pool.slug, snap.data.get("types"))}
    return respond(request, "failures.html", context, status=status_of(snap))


@require_GET
@counted
def stale(request, pool, snap):
    given = request.GET.get("hours", "").strip()
    try:
        hours = float(given) if given else settings.STALE_LOCK_HOURS
    except ValueError:
        hours = None
    # nan and inf would reach the view query as invalid JSON; the API's bounds are the same
    if hours is None or not math.isfinite(hours) or not 0 <= hours <= reading.MAX_HOURS:
        problem = f"Hours must be a number from 0 to {reading.MAX_HOURS:,.0f}, not {given!r}"
        context = {"pool": pool, "hours": given, "problem": problem, "result": None}
        return respond(request, "stale.html", context, status=400)
    try:
        result = reading.stale_locks(pool, snap.data, hours, cursor=reading.decode_cursor(request.GET.get("after")))
    except CouchError as e:
        return couch_error(request, pool, e)
    next_query = ""
    if result and result["next"]:
        q = request.GET.copy()
        q["after"] = reading.encode_cursor(result["next"])
        next_query = q.urlencode()
    # "24", "0.5": as a person writes hours, in the text, the form and the links
    shown = format(hours, "f").rstrip("0").rstrip(".") or "0"
    context = {"pool": pool, "hours": shown, "result": result, "next_query": next_query}
    return respond(request, "stale.html", context)


@require_GET
def token(request, slug):
    pool = pool_or_404(request, slug)
    doc_id = request.GET.get("id", "")
    if not doc_id:
        raise Http404("No token id")
    try:
        doc = reading.get_token(pool, doc_id)
    except NotFound:
        raise Http404("No such token") from None
    except CouchError as e:
        return couch_error(request, pool, e)
    snap = counting.snapshot(pool)
    facts = reading.token_facts(doc, snap.data["types"] if snap.data else {})

    touched = token_jobs(pool.slug, doc_id)
    odd = oddities(doc, snap.data["types"] if snap.data else None)
    timeline = events.timeline(pool.slug, doc_id)
    context = {"pool": pool, "doc": doc, "facts": facts, "touched": touched, "odd": odd, "timeline": timeline,
               "follow_seconds": settings.EVENTS_FOLLOW_SECONDS,
               "meanings": exitcodes.meanings(pool.slug, snap.data["types"] if snap.data else {}), **labels()}
    style = style_of(doc, snap.data["types"] if snap.data else {})
    if facts["bucket"] in ("error", "legacy_error") and style:
        context["failure_code"] = failure_key(doc, style)[0]
        context["failure_meaning"] = context["meanings"].get(context["failure_code"], "")
    context["inline"] = inline_attachments(pool, doc, facts["attachments"])
    return respond(request, "token.html", context)


TEXT_TYPES = ("text/", "application/json", "application/x-yaml", "application/xml")


def inline_attachments(pool, doc, attachments):
    """Small text attachments read for showing inline (bigger ones are only linked)."""
    shown = {}
    for a in attachments:
        small = (a.get("length") or 0) <= settings.INLINE_ATTACHMENT_BYTES
        if small and (a.get("content_type") or "").startswith(TEXT_TYPES):
            try:
                chunks, _type, _length = pool.couch().attachment(doc["_id"], a["name"])
                shown[a["name"]] = b"".join(chunks).decode("utf-8", errors="replace")
            except CouchError:
                pass
    return shown


@require_GET
@download_csp
def attachment(request, slug):
    """Stream an attachment through the site (up to 1 GiB: never read whole)."""
    pool = pool_or_404(request, slug)
    doc_id, name = request.GET.get("id", ""), request.GET.get("name", "")
    if not doc_id or not name:
        raise Http404("No attachment named")
    try:
        chunks, content_type, length = pool.couch().attachment(doc_id, name)
    except NotFound:
        raise Http404("No such attachment") from None
    except CouchError as e:
        return couch_error(request, pool, e)
    inline = request.GET.get("inline") == "1" and content_type.startswith("text/")
    # Shown inline only as plain text: an HTML attachment must never run in the site's origin.
    response = StreamingHttpResponse(chunks, content_type="text/plain; charset=utf-8" if inline else content_type)
    if length is not None:
        response["Content-Length"] = str(length)
    # Old pilots name logs like "22/11/2026_10:00:00_logs_x.out": keep the whole name, minus the slashes (and
    # control characters, which a header cannot carry).
    response["Content-Disposition"] = content_disposition_header(not inline, safe_file_name(name))
    response["X-Content-Type-Options"] = "nosniff"
    return response
