"""What the pages and the API show, apart from the views that answer: each page's data, made once here as its
template's context and as its API twin's answer (/api/v1/, the site's one JSON surface). Views and API modules import
this module; they never import one another."""

import time
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Count
from django.http import Http404
from django.urls import reverse
from django.utils import timezone

from dashboard import charts, roles
from dashboard.web import (
    csv_download,
    object_or_404,
    snapshot_meta,
    visible_pools,
)
from tokens import alerts, counting, events, exports, history, notify, overview, reading, retries, search, selections
from tokens.couch import CouchError
from tokens.models import Job, JobToken, RetryRule
from tokens.oddities import oddities
from tokens.states import BUCKET_LABELS, group_from


def pool_rows(request):
    """Every pool the request may see, with its latest totals and health (the API's list of pools)."""
    rows = []
    for pool in visible_pools(request):
        snap = counting.snapshot(pool)
        totals = reading.pool_totals(snap.data) if snap.data else None
        rows.append({
            "pool": pool,
            "totals": totals,
            "total": sum(totals.values()) if totals else None,
            "health": "error" if snap.error else "ok",
            "error": snap.error,
            "age": snap.age(),
            "own_views": snap.data["own_views"] if snap.data else None,
        })
    return rows


def pool_row_json(r):
    return {
        "slug": r["pool"].slug,
        "name": r["pool"].name,
        "database": r["pool"].database,
        "health": r["health"],
        "error": r["error"] or None,
        "counts": r["totals"],
        "total": r["total"],
        "counts_age_seconds": round(r["age"], 1) if r["age"] is not None else None,
    }


def overview_cards(request):
    """The overview's cards for the pools the request may see, attention first (the home page, its wall mode and
    the API)."""
    return overview.order([overview.card(pool, counting.snapshot(pool)) for pool in visible_pools(request)])


def card_json(c):
    return {**c, "health": "error" if c["error"] else "ok",
            "reasons": [{"kind": k, "text": t} for k, t in c["reasons"]],
            "last_activity": c["last_activity"].isoformat() if c.get("last_activity") else None,
            "last_finish_hour": c["last_finish_hour"].isoformat() if c.get("last_finish_hour") else None}


def pool_payload(pool, snap, observations, totals):
    """A pool's counts per observation (the API's pool, the first part of the pool page's figures)."""
    return {
        "pool": pool.slug,
        **snapshot_meta(snap),
        "own_views": snap.data["own_views"],
        "counts": totals,
        "total": sum(totals.values()),
        "observations": [o.as_json() for o in observations],
        "design_documents": snap.data["design_docs"],
    }


def summary(doc, styles):
    """The columns of a token list; `also_in`: what a second worker view that lists it says (GRID_LRT)."""
    errors = doc.get("error")
    last_error = errors[-1] if isinstance(errors, list) and errors and isinstance(errors[-1], dict) else {}
    second = reading.second_views(doc, styles)
    return {
        "id": doc["_id"],
        "type": doc.get("type"),
        "lock": doc.get("lock"),
        "done": doc.get("done"),
        "exit_code": doc.get("exit_code"),
        "status": doc.get("status"),
        "output": doc.get("output") if not isinstance(doc.get("output"), dict) else None,
        "hostname": doc.get("hostname"),
        "scrub_count": doc.get("scrub_count"),
        "last_error": str(last_error.get("message", ""))[:200],
        "odd": oddities(doc),
        "also_in": second[1],
        "also_views": second[0].replace("+", " and "),
    }


def token_payload(pool, doc, facts, touched, timeline, odd):
    """A token, what is derived from it, what is odd about it, the jobs that touched it and its events (the token
    page's figures, as the API answers them)."""
    return {"pool": pool.slug, "token": doc, **{k: v for k, v in facts.items() if k != "fields"}, "odd": odd,
            "jobs": [{"id": t.job_id, "action": t.job.action, "outcome": t.outcome, "reason": t.reason}
                     for t in touched],
            "timeline": [events.as_json(e) for e in timeline]}


VIA_LABELS = {"web": "in the browser", "api": "through the API", "cli": "from the command line",
              "rule": "by a retry rule"}


def duration_in_words(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def job_description(job):
    """What a job was applied to, in words (the jobs list, a job's page, the API): two resets differ here."""
    try:
        return selections.Selection.from_dict(job.selection).describe()
    except (TypeError, KeyError, ValueError):  # a job row written by hand (the admin, a test) without a selection
        return "(no selection recorded)"


def job_json(job):
    return {
        "id": job.pk, "pool": job.pool, "user": job.user.username if job.user else None, "via": job.via,
        "shell_user": job.shell_user or None,
        "rule": job.params.get("rule") if job.via == "rule" else None,
        "action": job.action, "selection": job.selection, "description": job_description(job),
        "params": {k: v for k, v in job.params.items() if k != "upload"},
        "preview_count": job.preview_count, "status": job.status, "message": job.message,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "read": job.total, "changed": job.changed, "skipped": job.skipped, "conflicts": job.conflicts,
        "failed": job.failed, "percent": job.percent,
    }


def job_or_404(request, pk, operate=False):
    """A job on a pool this request may see (its pool's roles decide); otherwise it does not exist for them."""
    missing = f"No such job among those you may see: {pk}."
    job = object_or_404(Job.objects.select_related("user"), pk, missing)
    roles.require(request, job.pool, operate, missing)
    return job


def job_problems(job):
    """The tokens a job did not simply change: skipped, failed, changed after a conflict, or written without a
    cluster's quorum confirming it."""
    return JobToken.objects.filter(job=job).exclude(outcome=JobToken.CHANGED, conflicted=False, unconfirmed=False)


def outcome_counts(job):
    """{outcome: tokens} from the job's records (the page and the API count alike)."""
    return dict.fromkeys(selections.JOB_OUTCOMES, 0) | dict(
        JobToken.objects.filter(job=job).values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))


def token_record_json(r):
    return {"id": r.token_id, "outcome": r.outcome, "reason": r.reason, "conflicted": r.conflicted,
            "unconfirmed": r.unconfirmed, "rev_before": r.rev_before, "rev_after": r.rev_after}


def problem_json(p):
    return {"id": p.token_id, "outcome": p.outcome, "reason": p.reason, "conflicted": p.conflicted,
            "unconfirmed": p.unconfirmed}


def filtered_jobs(pool=None, user=None, action=None, status=None, via=None, pools=None):
    """Jobs, newest first, narrowed by whichever filters are given (the audit list and the API); `pools`: only
    those on these pools (the caller's, dashboard.roles), None: on any."""
    found = Job.objects.select_related("user")
    if pools is not None:
        found = found.filter(pool__in=pools)
    if pool:
        found = found.filter(pool=pool)
    if user:
        found = found.filter(user__username=user)
    if action:
        found = found.filter(action=action)
    if status:
        found = found.filter(status=status)
    if via:
        found = found.filter(via=via)
    return found


def token_jobs(pool_slug, token_id):
    """The jobs that touched a token, newest first (for the token page)."""
    return (JobToken.objects.filter(pool=pool_slug, token_id=token_id).select_related("job", "job__user")
            .order_by("-job__created_at")[:50])


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
    first = series["hours"][0] if series["hours"] else time.time()
    marks = history.annotations(pool.slug, first, first + series["step"] * len(series["hours"]))
    return {"history": record, "chart": charts.hourly_chart(series, chart_id, marks), "series": series,
            "period": period,
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
        "annotations": [annotation_json(m) for m in context["chart"]["marks"]],
    }


def annotation_json(mark):
    return {"at": mark["at"].isoformat(), "end": mark["end"].isoformat() if mark["end"] else None,
            "kind": mark["kind"], "text": mark["text"], "tags": mark["tags"], "job": mark["job"],
            "alert": mark["alert"]}


def chart_csv(pool, context, name):
    """The chart's numbers as a CSV file, one row per hour or day of the period; `name` says whose they are."""
    series = context.get("series")
    if series is None:
        raise Http404("No chart in this pool: charts need the dashboard's own design document")
    rows = ((exports.iso_time(h), d, e, r) for h, d, e, r in zip(series["hours"], series["done"], series["error"],
                                                                  series["running"], strict=True))
    return csv_download(f"{name}-history-{context['period']}.csv",
                        (f"{context['chart']['unit']}_start_utc", "done", "failed", "running_at_most"), rows)


def progress(pool, series, counts, finished_hour, type_=None, group=None, marks=()):
    """The progress chart (done in total, projected to the total) of a pool or an observation, with the hourly
    chart's `marks`, and its ETA."""
    if series is None:
        return {}
    eta = overview.eta(pool.slug, reading.remaining(counts), finished_hour, type_, group)
    chart_id = "progress-obs" if type_ is not None else "progress-pool"
    return {"progress": charts.progress_chart(series, counts["done"], sum(counts.values()), eta["eta_hours"],
                                              eta["eta_basis"], chart_id, marks), "eta": eta}


def pool_page(pool, snap, query):
    """A pool's counts per observation with its chart over the period in the query and its ETA: the page's context
    (pool_answer makes the API's answer of it). Raises ValueError for an unknown period."""
    data = snap.data
    observations = reading.observations(data)
    totals = reading.pool_totals(data)
    chart, series = chart_context(pool, data, query)
    if series is not None:
        per_obs = history.series_by_observation(chart["history"].data)
        empty = history.empty_series(chart["history"].data)
        for o in observations:
            o.spark = charts.sparkline(per_obs.get((o.type, o.group), empty))
    context = {"observations": observations, "totals": totals, "total": sum(totals.values()),
               "holes": data.get("black_holes", []),  # judged with the counts, in the background
               "given_up": retries.given_up(pool.slug).count(),
               **chart, **progress(pool, series, totals, sum(o.finished_recent for o in observations),
                                   marks=chart["chart"]["marks"] if series is not None else ())}
    return context


def pool_answer(pool, snap, context):
    """The pool page's figures as the API answers them (GET /api/v1/pools/{slug})."""
    return {**pool_payload(pool, snap, context["observations"], context["totals"]),
            "black_holes": [h["hostname"] for h in context["holes"]], "given_up": context["given_up"],
            "hourly": series_json(context),
            "eta": context.get("eta")}


def observation_page(pool, snap, query):
    """One observation (a token type, and a group when the pool has a grouping field): its counts, chart, ETA and,
    for GRID_LRT, the workers' own overview beside them: the page's context (observation_answer makes the API's
    answer of it). Raises Http404 for an observation the pool does not have, ValueError for an unknown period."""
    type_ = query.get("type", "")
    if not type_:
        raise Http404("Which observation? Give its type (and its group, if it has one).")
    group = group_from(query)
    found = next((o for o in reading.observations(snap.data) if (o.type, o.group) == (type_, group)), None)
    if found is None:
        raise Http404("No such observation in this pool")
    context, series = chart_context(pool, snap.data, query, type_, group, observation=True)
    context.update(progress(pool, series, found.counts, found.finished_recent, type_, group,
                            context["chart"]["marks"] if series is not None else ()))
    context["o"] = found
    try:
        theirs = reading.worker_overview(pool, snap.data, type_)
    except CouchError as e:
        theirs, context["overview_error"] = None, str(e)
    if theirs is not None:
        context["worker_overview"] = {**theirs, "rows": reading.overview_beside(found, theirs["figures"])}
    return context


def observation_answer(pool, snap, context):
    """The observation page's figures as the API answers them (GET /api/v1/pools/{slug}/observation)."""
    theirs = context.get("worker_overview")
    return {"pool": pool.slug, **snapshot_meta(snap), "own_views": snap.data["own_views"], **context["o"].as_json(),
            "hourly": series_json(context), "eta": context.get("eta"),
            "grid_lrt_overview": {"design_doc": theirs["design_doc"], "view": theirs["view"], **theirs["figures"]}
            if theirs else None}


HOST_WINDOWS = {"6h": ("the last 6 hours", 6), "24h": ("the last 24 hours", 24), "7d": ("the last 7 days", 168),
                "30d": ("the last 30 days", 720)}


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
    figures and the API's answer."""
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


HISTORY = 50


def form_number(value, percent=False):
    """A typed number, or None when blank; RuleError when it is not a number."""
    value = (value or "").strip().rstrip("%").strip()
    if not value:
        return None
    try:
        n = float(value)
    except ValueError:
        raise alerts.RuleError(f"{value!r} is not a number") from None
    return n / 100 if percent else n


def rule_json(rule):
    return {"id": rule.pk, "kind": rule.kind, "threshold": rule.threshold, "hours": rule.hours,
            "description": alerts.describe(rule)}


def alert_json(a):
    """An alert with its messages, as the page and the API show it (a webhook without its secret path)."""
    return {"id": a.pk, "kind": a.kind, "subject": a.subject, "status": a.status, "summary": a.summary,
            "evidence": a.evidence, "fired_at": a.fired_at, "resolved_at": a.resolved_at,
            "messages": [{"message": d.message, "channel": d.channel, "status": d.status, "attempts": d.attempts,
                          "error": d.last_error, "to": d.target if d.channel == "email" else notify.where(d.address)}
                         for d in a.deliveries.all()]}


# --- retry rules ---------------------------------------------------------------------------------------------

GIVEN_UP_SHOWN = 50


def retry_rule_json(rule, now=None):
    """A rule as the page and the API show it, with what it did in the last 24 hours."""
    did = retries.did(rule, now)
    return {"id": rule.pk, "name": rule.name, "code": rule.code, "message": rule.message, "attempts": rule.attempts,
            "wait_minutes": rule.wait_minutes, "per_hour": rule.per_hour, "hold_black_holes": rule.hold_black_holes,
            "enabled": rule.enabled, "description": retries.describe(rule), "failures": retries.which(rule),
            "changed_by": rule.changed_by.username if rule.changed_by else None, "changed_at": rule.changed_at,
            "last_24h": {"jobs": [j.pk for j in did["jobs"]], "retried": did["retried"],
                         "given_up": did["given_up"]}}


def retries_page(pool):
    """The retry rules page's data (and its API twin's, GET /api/v1/pools/{slug}/retry-rules)."""
    paused = retries.paused(pool)
    given_up = retries.given_up(pool.slug)
    return {"rules": [retry_rule_json(r) for r in RetryRule.objects.filter(pool=pool.slug)
                      .select_related("changed_by")],
            "paused": paused is not None, "paused_by": paused.by.username if paused and paused.by else None,
            "paused_at": paused.at if paused else None, "given_up_count": given_up.count(),
            "given_up": [{"id": g.doc_id, "failures": g.failures, "rule": g.rule_name, "code": g.code,
                          "message": g.message, "at": g.at} for g in given_up.order_by("doc_id")[:GIVEN_UP_SHOWN]],
            "every_seconds": settings.RETRY_RULES_SECONDS, "grace_seconds": settings.JOB_FINISHED_GRACE_SECONDS,
            "given_up_query": selections.Selection("given_up").as_query()}


def dry_run(rule, pool):
    """A rule's dry run (what it would do now, writing nothing) and what it did in the last 24 hours."""
    seen = retries.plan(rule, pool)
    seen.pop("given_up_found")  # (what the periodic task records; the page shows the sample)
    return {**seen, "rule_id": rule.pk, "held_hosts": [{"hostname": h, "count": n}
                                                       for h, n in sorted(seen["held_hosts"].items())],
            "last_24h": retry_rule_json(rule)["last_24h"], "read_most": retries.PLAN_READ_MOST}


def retry_rule_form(rule):
    """The form's fields for a rule being changed."""
    return {"name": rule.name, "code": rule.code or "", "message": rule.message or "",
            "exact_message": rule.message is not None, "attempts": rule.attempts,
            "wait_minutes": f"{rule.wait_minutes:g}", "per_hour": rule.per_hour,
            "hold_black_holes": rule.hold_black_holes, "enabled": rule.enabled}


SEARCH_KINDS = {"token": "Tokens", "observation": "Observations", "host": "Hosts", "job": "Jobs", "user": "People"}


def search_page(request, query):
    """The search's answer (the header's box, and GET /api/v1/search): its matches in the pools this request may
    see, each with the address of its page; SearchError for a query that cannot be searched."""
    pools = visible_pools(request)
    names = {p.slug: p.name for p in pools}
    found = search.search(pools, query)
    matches = [{"kind": m.kind, "pool": m.pool, "pool_name": names.get(m.pool, ""), "label": m.label,
                "state": m.state, "state_label": BUCKET_LABELS.get(m.state, m.state), "detail": m.detail,
                "url": _match_url(m)} for m in found.matches]
    groups = [(title, [m for m in matches if m["kind"] == kind]) for kind, title in SEARCH_KINDS.items()]
    return {"query": found.query, "field": found.field, "matches": matches, "notes": found.notes,
            "groups": [(title, rows) for title, rows in groups if rows]}


def _match_url(m):
    p = m.params
    if m.kind == "token":
        return f"{reverse('token', args=[m.pool])}?{urlencode({'id': p['id']})}"
    if m.kind == "observation":
        query = {"type": p["type"], **({"group": p["group"]} if p["group"] is not None else {})}
        return f"{reverse('observation', args=[m.pool])}?{urlencode(query)}"
    if m.kind == "host":
        return reverse("hosts", args=[m.pool])
    if m.kind == "job":
        return reverse("job", args=[p["pk"]])
    return f"{reverse('jobs')}?{urlencode({'user': p['user']})}"
