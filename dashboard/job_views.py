"""Jobs in the web UI: preview, confirm, watch, cancel, re-run, and the audit list.

Operators act; viewers get 403 on every one of these except reading a job and the audit list.
"""

import json

from django.contrib.auth.models import User
from django.db.models import Count
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat, pluralize
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from dashboard import roles
from dashboard.export_views import csv_download
from dashboard.web import couch_error, object_or_404, pool_or_404, refuse, respond, wants_json
from tokens import actions, operations, selections, uploads
from tokens.couch import CouchError
from tokens.models import Job, JobToken
from tokens.selections import OperationError, Selection
from tokens.states import BUCKET_LABELS

OPERATION_LABELS = {"reset": "Reset / retry", "set_field": "Set a field", "attach": "Attach a file",
                    "delete": "Delete"}  # the actions on selected tokens
ACTION_LABELS = {**OPERATION_LABELS, "create_tokens": "New token set"}
VIA_LABELS = {"web": "in the browser", "api": "through the API", "cli": "from the command line"}
VALUE_TYPE_WORDS = {"string": "text", "number": "a number", "boolean": "true or false", "json": "JSON"}


def params_in_words(job):
    """What the job was told to do beyond its selection, as sentences (the job page; never a dict)."""
    p = job.params
    if job.action == "reset":
        return ["Attachments deleted" if p.get("delete_attachments") else "Attachments kept; error history kept"]
    if job.action == "set_field":
        value = p.get("value")
        # The web form and the CLI say the value's type; the API sends JSON, whose value has its own.
        value_type = p.get("value_type") or json_type(value)
        shown = "true" if value is True else "false" if value is False else json.dumps(value) \
            if value_type == "json" else str(value)
        words = [f"Set “{p.get('field')}” to {shown} ({VALUE_TYPE_WORDS.get(value_type, 'text')})"]
        if p.get("allow_state_fields"):
            words.append("state fields allowed")
        return words
    if job.action == "attach":
        return [f"Attach “{p.get('name')}” ({filesizeformat(p.get('size') or 0)}, {p.get('content_type')}); a "
                "token that already has this file under this name is left as it is"]
    if job.action == "delete":
        return ["Deleted tokens leave tombstones (never purged)"]
    if job.action == "create_tokens":
        o = p.get("options", {})
        per = o.get("per_token", 1)
        return [f"Tokens of type “{o.get('token_type')}”, {per} item{pluralize(per)} each, keyed by "
                f"“{o.get('key_field')}”" + (f", each with “{o['attachment']}” attached" if o.get("attachment")
                                             else "") + ("; views created where absent" if o.get("create_views")
                                                         else "; no views created")]
    return []


def json_type(value):
    """The value type (as the web form names them) of a JSON value."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return "string" if isinstance(value, str) else "json"


def duration_in_words(seconds):
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def params_from(request, action):
    """The action's parameters from the confirmation form; an upload is saved to disk for the worker."""
    post = request.POST
    if action == "reset":
        return {"delete_attachments": post.get("delete_attachments") == "on"}
    if action == "set_field":
        params = {"field": post.get("field", "").strip(), "value_type": post.get("value_type", "string"),
                  "allow_state_fields": post.get("allow_state_fields") == "on"}
        params["value"] = actions.parse_value(post.get("value", ""), params["value_type"])
        return params
    if action == "attach":
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise OperationError("Choose a file to attach")
        upload_id, size, digest = uploads.save_upload(uploaded)
        return {"name": post.get("name", "").strip() or uploaded.name, "upload": upload_id, "size": size,
                "digest": digest, "content_type": uploaded.content_type or "application/octet-stream"}
    return {}


@require_GET
def job_new(request, slug):
    """The dry run: how many tokens, which ones, and the form that starts the job."""
    return dry_run(request, pool_or_404(request, slug, operate=True), request.GET.get("action", "reset"),
                   request.GET)


def dry_run(request, pool, action, data, problem=None, status=200):
    """The dry-run page for a selection given as query or form data. After a refused job (`problem`) it comes
    again with the message and with every value the operator typed in its form (a file must be chosen again)."""
    context = {"pool": pool, "action": action, "action_label": ACTION_LABELS.get(action, action)}
    try:
        if action not in OPERATION_LABELS:
            raise OperationError(f"Unknown action {action!r}")
        selection = Selection.from_query(data)
        seen = selections.preview(pool, selection)
    except OperationError as e:
        return respond(request, "job_new.html", {**context, "problem": str(e)}, {"error": str(e)}, status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    context.update(selection=selection, description=selection.describe(), preview=seen,
                   action_labels=OPERATION_LABELS, query_without_action=selection.as_query(),
                   typed=selections.needs_typed_confirmation(action, seen["count"]),
                   state_fields=sorted(actions.STATE_FIELDS), value_types=actions.VALUE_TYPES,
                   problem=problem, form=data if problem else {},
                   choose_again=problem and action == "attach" and request.FILES.get("file"))
    payload = {"action": action, "selection": selection.as_dict(), "count": seen["count"], "sample": seen["sample"],
               "needs_typed_confirmation": context["typed"]}
    return respond(request, "job_new.html", context, payload, status=status)


@require_POST
def job_create(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    action = request.POST.get("action", "")
    if action not in OPERATION_LABELS:
        return JsonResponse({"error": f"Unknown action {action!r}"}, status=400)
    try:
        selection = Selection.from_query(request.POST)
        job = operations.create_job(pool, request.user, action, selection, params_from(request, action),
                                    confirmation=request.POST.get("confirmation"),
                                    expected=request.POST.get("expected"))
    except OperationError as e:
        if wants_json(request):
            return JsonResponse({"error": str(e)}, status=400)
        return dry_run(request, pool, action, request.POST, problem=str(e), status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    return start(request, job)


def start(request, job):
    """Queue a recorded job and answer with it: 201 + the job (JSON), or the job's page."""
    operations.enqueue(job)
    job.refresh_from_db()
    if wants_json(request):
        return JsonResponse(job_json(job), status=201)
    return redirect("job", job.pk)


def job_json(job):
    return {
        "id": job.pk, "pool": job.pool, "user": job.user.username if job.user else None, "via": job.via,
        "action": job.action, "selection": job.selection, "params": {k: v for k, v in job.params.items()
                                                                     if k != "upload"},
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


@require_GET
def job(request, pk):
    operations.tend_jobs()
    job = job_or_404(request, pk)
    problems = job_problems(job)
    end = job.finished_at or (timezone.now() if job.started_at else None)
    context = {"job": job, "description": Selection.from_dict(job.selection).describe(),
               "via_label": VIA_LABELS.get(job.via, job.via), "params_words": params_in_words(job),
               "duration": duration_in_words((end - job.started_at).total_seconds()) if end else None,
               "waited": duration_in_words((job.started_at - job.created_at).total_seconds())
               if job.started_at else None,
               "rerun_query": operations.rerun_query(job),
               "action_label": ACTION_LABELS.get(job.action, job.action), "problems": problems[:500],
               "problem_count": problems.count(), "bucket_labels": BUCKET_LABELS}
    payload = {**job_json(job), "problems": [problem_json(p) for p in problems[:500]]}
    context["is_operator"] = roles.access(request).can_operate(job.pool)
    response = respond(request, "job.html", context, payload)
    if request.htmx and job.ended:
        # 286 tells htmx to stop polling; the final state is in this response.
        return HttpResponseStopPolling(response.content)
    return response


def job_problems(job):
    """The tokens a job did not simply change: skipped, failed, or changed after a conflict."""
    return JobToken.objects.filter(job=job).exclude(outcome=JobToken.CHANGED, conflicted=False)


JOB_TOKENS_PAGE = 200


@require_GET
def job_tokens(request, pk):
    """Every token a job changed (or skipped, or failed on), a page at a time in the order the job met them, with
    each one's revisions before and after; as CSV for the whole list; a link that selects them for a new job."""
    job = job_or_404(request, pk)
    outcome = request.GET.get("outcome", JobToken.CHANGED)
    if outcome not in selections.JOB_OUTCOMES:
        raise Http404("outcome is changed, skipped or failed")
    records = JobToken.objects.filter(job=job, outcome=outcome).order_by("pk")
    if request.GET.get("format") == "csv":
        return csv_download(f"job-{job.pk}-{outcome}.csv", ("token", "outcome", "reason", "after_conflict",
                                                           "rev_before", "rev_after"),
                            ((r.token_id, r.outcome, r.reason, r.conflicted, r.rev_before, r.rev_after)
                             for r in records.iterator(chunk_size=2000)))
    after = request.GET.get("after", "")
    if after.isdigit():
        records = records.filter(pk__gt=int(after))
    page = list(records[:JOB_TOKENS_PAGE + 1])
    more = page[JOB_TOKENS_PAGE - 1].pk if len(page) > JOB_TOKENS_PAGE else None
    page = page[:JOB_TOKENS_PAGE]
    counts = outcome_counts(job)
    context = {"job": job, "outcome": outcome, "outcomes": selections.JOB_OUTCOMES, "counts": counts,
               "is_operator": roles.access(request).can_operate(job.pool),
               "records": page, "next": more, "page_size": JOB_TOKENS_PAGE,
               "action_label": ACTION_LABELS.get(job.action, job.action)}
    payload = {"job": job.pk, "outcome": outcome, "count": counts[outcome], "next": more,
               "tokens": [token_record_json(r) for r in page]}
    return respond(request, "job_tokens.html", context, payload)


def outcome_counts(job):
    """{outcome: tokens} from the job's records (the page and the API count alike)."""
    return dict.fromkeys(selections.JOB_OUTCOMES, 0) | dict(
        JobToken.objects.filter(job=job).values_list("outcome").annotate(n=Count("id")).values_list("outcome", "n"))


def token_record_json(r):
    return {"id": r.token_id, "outcome": r.outcome, "reason": r.reason, "conflicted": r.conflicted,
            "rev_before": r.rev_before, "rev_after": r.rev_after}


def problem_json(p):
    return {"id": p.token_id, "outcome": p.outcome, "reason": p.reason, "conflicted": p.conflicted}


@require_POST
def job_cancel(request, pk):
    job = job_or_404(request, pk, operate=True)
    operations.cancel_job(job.pk)
    return redirect("job", job.pk)


@require_GET
def jobs(request):
    """The audit list: every job, newest first, filterable by pool, user and action."""
    operations.tend_jobs()
    q = request.GET
    for name, allowed in (("action", ACTION_LABELS), ("status", Job.QUEUED_TO_ENDED), ("via", VIA_LABELS)):
        if q.get(name) and q[name] not in allowed:  # refused as the API refuses it, never a list of nothing
            return refuse(request, None, "Jobs", f"Unknown {name} {q[name]!r}: one of {', '.join(allowed)}")
    seen = filtered_jobs(pools=roles.access(request).pool_filter())
    found = filtered_jobs(pool=q.get("pool"), user=q.get("user"), action=q.get("action"), status=q.get("status"),
                          via=q.get("via"), pools=roles.access(request).pool_filter())[:200]
    context = {"jobs": found, "filters": q, "action_labels": ACTION_LABELS, "via_labels": VIA_LABELS,
               "statuses": Job.QUEUED_TO_ENDED,
               "pools": seen.values_list("pool", flat=True).distinct().order_by("pool"),
               "users": User.objects.filter(job__in=seen).distinct().order_by("username")}
    return respond(request, "jobs.html", context, {"jobs": [job_json(j) for j in found]})


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

