"""A pool's alerts: its rules (operators add and remove them), what fires now, the history with its evidence and
the messages sent (or not, and why), and the user's own subscription (anyone who may see the pool)."""

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.views.decorators.http import require_GET, require_POST

from dashboard.payloads import HISTORY, alert_json, form_number
from dashboard.web import object_or_404, pool_or_404, respond
from tokens import alerts, notify
from tokens.models import Alert, AlertRule, Subscription


def _page(request, pool, form=None, problem=None, status=200):
    rules = [{"rule": r, "words": alerts.describe(r)} for r in AlertRule.objects.filter(pool=pool.slug)]
    history = list(Alert.objects.filter(pool=pool.slug).prefetch_related("deliveries")[:HISTORY])
    for a in history:
        a.sent = alert_json(a)["messages"]
    mine = Subscription.objects.filter(user=request.user, pool=pool.slug).first()
    context = {"pool": pool, "rules": rules, "alerts": history, "firing": [a for a in history if a.status == "firing"],
               "kinds": [(k, words) for k, (words, _params) in alerts.KINDS.items()], "mine": mine,
               "mine_webhook": notify.where(mine.webhook_url) if mine and mine.webhook_url else "",
               "mail_configured": bool(settings.EMAIL_HOST), "form": form or {}, "problem": problem,
               "every": settings.ALERTS_EVALUATE_SECONDS}
    return respond(request, "alerts.html", context, status=status)


@require_GET
def pool_alerts(request, slug):
    return _page(request, pool_or_404(request, slug))


@require_POST
def rule_create(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    form = {k: request.POST.get(k, "") for k in ("kind", "threshold", "hours")}
    try:
        kind = form["kind"]
        threshold = form_number(form["threshold"], percent=kind == AlertRule.ERROR_RATE)
        rule = alerts.make_rule(pool, kind, threshold, form_number(form["hours"]), request.user)
    except alerts.RuleError as e:
        return _page(request, pool, form, str(e), status=400)  # what was typed is kept
    messages.success(request, f"Rule added: {alerts.describe(rule)}. It is checked every "
                              f"{settings.ALERTS_EVALUATE_SECONDS} s.")
    return redirect("alerts", slug=pool.slug)


@require_POST
def rule_delete(request, slug, pk):
    pool = pool_or_404(request, slug, operate=True)
    rule = object_or_404(AlertRule.objects.filter(pool=pool.slug), pk, f"No such alert rule on {pool.slug}: {pk}.")
    words = alerts.describe(rule)
    rule.delete()  # its alerts stay in the history
    messages.success(request, f"Rule removed: {words}.")
    return redirect("alerts", slug=pool.slug)


@require_POST
def subscription(request, slug):
    pool = pool_or_404(request, slug)
    if request.POST.get("action") == "unsubscribe":
        alerts.unsubscribe(request.user, pool)
        messages.success(request, f"You will no longer be told of {pool.name}'s alerts.")
        return redirect("alerts", slug=pool.slug)
    email = request.POST.get("email") == "on"
    webhook = request.POST.get("webhook_url", "").strip()
    form = {"email": email, "webhook_url": webhook}
    if webhook and not webhook.startswith(("https://", "http://")):
        return _page(request, pool, form, "The webhook address must start with https:// (or http://)", status=400)
    if not email and not webhook:
        return _page(request, pool, form, "Choose e-mail, a webhook, or both", status=400)
    if email and not request.user.email:
        return _page(request, pool, form, "Your account has no e-mail address: ask an admin to set one, or use a "
                                          "webhook", status=400)
    alerts.subscribe(request.user, pool, email, webhook)
    messages.success(request, f"Subscribed to {pool.name}'s alerts.")
    return redirect("alerts", slug=pool.slug)
