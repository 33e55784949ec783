"""A pool's retry rules: the rules (operators add, change, pause and remove them), the pool's one switch, each
rule's dry run and its last 24 hours, and the tokens the rules gave up on (tokens.retries)."""

from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from dashboard import payloads
from dashboard.web import object_or_404, pool_or_404, respond
from tokens import retries
from tokens.couch import CouchError
from tokens.models import RetryRule
from tokens.selections import OperationError

FIELDS = ("name", "code", "message", "attempts", "wait_minutes", "per_hour")


def _page(request, pool, form=None, problem=None, status=200, editing=None):
    context = {"pool": pool, **payloads.retries_page(pool), "form": form or {}, "problem": problem,
               "editing": editing}
    dry = request.GET.get("dry", "")
    if dry.isdigit() and len(dry) < 19:
        rule = RetryRule.objects.filter(pool=pool.slug, pk=int(dry)).first()
        if rule is not None:
            try:
                context["dry"], context["dry_rule"] = payloads.dry_run(rule, pool), rule
            except (CouchError, OperationError) as e:
                context["dry_error"] = str(e)
    return respond(request, "retry_rules.html", context, status=status)


@require_GET
def retry_rules(request, slug):
    pool = pool_or_404(request, slug)
    edit = request.GET.get("edit", "")
    rule = RetryRule.objects.filter(pool=pool.slug, pk=int(edit)).first() if edit.isdigit() and len(edit) < 19 \
        else None
    return _page(request, pool, payloads.retry_rule_form(rule) if rule else None, editing=rule)


def form_fields(post):
    """A rule's fields as the form sends them: the message only when the code is given and the box that keeps
    the failure group is ticked (an empty message is the group of failures without one)."""
    form = {k: post.get(k, "") for k in FIELDS}
    form["exact_message"] = post.get("exact_message") == "on"
    form["hold_black_holes"] = post.get("hold_black_holes") == "on"
    form["enabled"] = post.get("enabled") == "on"
    return form


def _fields(form):
    return {**{k: form[k] for k in FIELDS}, "message": form["message"] if form["exact_message"] else None,
            "hold_black_holes": form["hold_black_holes"], "enabled": form["enabled"]}


@require_POST
def rule_save(request, slug, pk=None):
    pool = pool_or_404(request, slug, operate=True)
    rule = object_or_404(RetryRule.objects.filter(pool=pool.slug), pk, f"No such retry rule on {pool.slug}: {pk}.") \
        if pk is not None else None
    form = form_fields(request.POST)
    try:
        if rule is None:
            rule = retries.make(pool, request.user, **_fields(form))
            done = "added"
        else:
            rule = retries.change(rule, pool, request.user, **_fields(form))
            done = "changed"
    except retries.RuleError as e:
        return _page(request, pool, form, str(e), status=400, editing=rule)  # what was typed is kept
    messages.success(request, f"Rule “{rule.name}” {done}: it {retries.describe(rule)}."
                              + ("" if rule.enabled else " It is paused."))
    return redirect("retry_rules", slug=pool.slug)


@require_POST
def rule_switch(request, slug, pk):
    pool = pool_or_404(request, slug, operate=True)
    rule = object_or_404(RetryRule.objects.filter(pool=pool.slug), pk, f"No such retry rule on {pool.slug}: {pk}.")
    retries.change(rule, pool, request.user, enabled=request.POST.get("enabled") == "on")
    messages.success(request, f"Rule “{rule.name}” {'enabled' if rule.enabled else 'paused'}.")
    return redirect("retry_rules", slug=pool.slug)


@require_POST
def rule_delete(request, slug, pk):
    pool = pool_or_404(request, slug, operate=True)
    rule = object_or_404(RetryRule.objects.filter(pool=pool.slug), pk, f"No such retry rule on {pool.slug}: {pk}.")
    name = rule.name
    rule.delete()  # its jobs stay, named by the rule they came from
    messages.success(request, f"Rule “{name}” removed; its jobs stay in the list.")
    return redirect("retry_rules", slug=pool.slug)


@require_POST
def pause(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    on = request.POST.get("paused") == "on"
    retries.pause(pool, request.user, on)
    messages.success(request, "Every retry rule of this pool is paused; a rule's job running now stops after its "
                              "batch." if on else "Retry rules resumed: the enabled ones act at their next check.")
    return redirect("retry_rules", slug=pool.slug)
