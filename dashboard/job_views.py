"""Jobs in the web UI: preview, confirm, watch, cancel, re-run, and the audit list.

Operators act; viewers get 403 on every one of these except reading a job and the audit list.
"""


from django.contrib.auth.models import User
from django.http import Http404
from django.shortcuts import redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseStopPolling

from dashboard import roles
from dashboard.payloads import (
    VIA_LABELS,
    duration_in_words,
    filtered_jobs,
    job_description,
    job_or_404,
    job_problems,
    outcome_counts,
)
from dashboard.web import couch_error, csv_download, pool_or_404, refuse, respond, start
from tokens import actions, operations, selections
from tokens.couch import CouchError
from tokens.models import Job, JobToken
from tokens.selections import OperationError, Selection
from tokens.states import BUCKET_LABELS


def params_from(request, action):
    """The action's parameters from the confirmation form (an upload is saved to disk for the worker)."""
    return actions.read_params(action, {**request.POST.dict(), "value_type": request.POST.get("value_type", "string")},
                               request.FILES.get("file"))


@require_GET
def job_new(request, slug):
    """The dry run: how many tokens, which ones, and the form that starts the job."""
    return dry_run(request, pool_or_404(request, slug, operate=True), request.GET.get("action", "reset"),
                   request.GET)


def dry_run(request, pool, action, data, problem=None, status=200):
    """The dry-run page for a selection given as query or form data. After a refused job (`problem`) it comes
    again with the message and with every value the operator typed in its form (a file must be chosen again)."""
    context = {"pool": pool, "action": action, "action_label": actions.label(action),
               "action_verb": actions.verb(action)}
    try:
        if action not in actions.TOKEN_ACTIONS:
            raise OperationError(f"Unknown action {action!r}")
        selection = Selection.from_query(data)
        seen = selections.preview(pool, selection)
    except OperationError as e:
        return respond(request, "job_new.html", {**context, "problem": str(e)}, status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    context.update(selection=selection, description=selection.describe(), preview=seen,
                   action_labels=actions.labels(actions.TOKEN_ACTIONS), query_without_action=selection.as_query(),
                   typed=selections.needs_typed_confirmation(action, seen["count"]),
                   state_fields=sorted(actions.STATE_FIELDS), value_types=actions.VALUE_TYPES,
                   problem=problem, form=data if problem else {},
                   choose_again=problem and action == "attach" and request.FILES.get("file"))
    return respond(request, "job_new.html", context, status=status)


@require_POST
def job_create(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    action = request.POST.get("action", "")
    if action not in actions.TOKEN_ACTIONS:
        return refuse(request, pool, "New job", f"Unknown action {action!r}: one of {', '.join(actions.TOKEN_ACTIONS)}")
    try:
        selection = Selection.from_query(request.POST)
        job = operations.create_job(pool, request.user, action, selection, params_from(request, action),
                                    confirmation=request.POST.get("confirmation"),
                                    expected=request.POST.get("expected"))
    except OperationError as e:
        return dry_run(request, pool, action, request.POST, problem=str(e), status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    return start(job)


@require_GET
def job(request, pk):
    operations.tend_jobs()
    job = job_or_404(request, pk)
    problems = job_problems(job)
    end = job.finished_at or (timezone.now() if job.started_at else None)
    context = {"job": job, "description": job_description(job),
               "via_label": VIA_LABELS.get(job.via, job.via),
               "params_words": actions.params_in_words(job.action, job.params),
               "duration": duration_in_words((end - job.started_at).total_seconds()) if end else None,
               "waited": duration_in_words((job.started_at - job.created_at).total_seconds())
               if job.started_at else None,
               "rerun_query": operations.rerun_query(job),
               "action_label": actions.label(job.action), "problems": problems[:500],
               "problem_count": problems.count(), "bucket_labels": BUCKET_LABELS}
    context["is_operator"] = roles.access(request).can_operate(job.pool)
    response = respond(request, "job.html", context)
    if request.htmx and job.ended:
        # 286 tells htmx to stop polling; the final state is in this response.
        return HttpResponseStopPolling(response.content)
    return response


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
               "action_label": actions.label(job.action)}
    return respond(request, "job_tokens.html", context)


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
    for name, allowed in (("action", actions.ACTIONS), ("status", Job.QUEUED_TO_ENDED), ("via", VIA_LABELS)):
        if q.get(name) and q[name] not in allowed:  # refused as the API refuses it, never a list of nothing
            return refuse(request, None, "Jobs", f"Unknown {name} {q[name]!r}: one of {', '.join(allowed)}")
    seen = filtered_jobs(pools=roles.access(request).pool_filter())
    found = filtered_jobs(pool=q.get("pool"), user=q.get("user"), action=q.get("action"), status=q.get("status"),
                          via=q.get("via"), pools=roles.access(request).pool_filter())[:200]
    for j in found:
        j.description = job_description(j)
    context = {"jobs": found, "filters": q, "action_labels": actions.labels(), "via_labels": VIA_LABELS,
               "statuses": Job.QUEUED_TO_ENDED,
               "pools": seen.values_list("pool", flat=True).distinct().order_by("pool"),
               "users": User.objects.filter(job__in=seen).distinct().order_by("username")}
    return respond(request, "jobs.html", context)


