"""Alerts: rules per pool, evaluated by a periodic task against what the dashboard already keeps (the pool's
latest counts, its events and rollups, its jobs); each firing and recovery recorded with its evidence and sent to
the pool's subscribers, by e-mail and webhook.

A rule fires once per subject (the pool, a host, an observation, a job) and stays quiet while its condition holds;
when the condition ends, one recovery message. News that does not end (an observation finished, a job failed) is
a notice, told once. A message that cannot be sent is retried (ALERT_DELIVERY_ATTEMPTS, backing off) and shown on
the alerts page with its error; it is never dropped silently.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.urls import reverse
from django.utils import timezone
from django.utils.module_loading import import_string

from tokens import counting, notify, reading, retries, secretbox
from tokens.models import Alert, AlertRule, Delivery, Job, ObservationHour, Subscription, TokenEvent
from tokens.pools import all_pools

log = logging.getLogger(__name__)

# kind: (what the rule says, which parameters it takes: threshold, hours)
KINDS = {
    AlertRule.ERROR_RATE: ("error rate above a share of the finishes over some hours", ("threshold", "hours")),
    AlertRule.STALE_LOCKS: ("more stale locks than a count", ("threshold",)),
    AlertRule.NO_PROGRESS: ("no token finished for some hours while tokens are left", ("hours",)),
    AlertRule.BLACK_HOLE: ("a host flagged as a black hole", ()),
    AlertRule.OBSERVATION_FINISHED: ("an observation finished", ()),
    AlertRule.JOB_FAILED: ("a job failed", ()),
    AlertRule.GIVEN_UP: ("retry rules gave up on failed tokens (all their attempts used)", ()),
}
MIN_FAILURES = 3  # an error rate is judged on at least this many failures: one failure of one finish is no trend


class RuleError(ValueError):
    pass


def _hours(h):
    return f"{h:g} hour{'s' if h != 1 else ''}"


def describe(rule):
    """A rule in words, as pages and messages say it."""
    if rule.kind == AlertRule.ERROR_RATE:
        return f"error rate above {rule.threshold:.0%} over {_hours(rule.hours)}"
    if rule.kind == AlertRule.STALE_LOCKS:
        return f"more than {rule.threshold:g} lock{'s' if rule.threshold != 1 else ''} older than " \
               f"{_hours(settings.STALE_LOCK_HOURS)}"
    if rule.kind == AlertRule.NO_PROGRESS:
        return f"no token finished for {_hours(rule.hours)} while tokens are left"
    return KINDS[rule.kind][0]


def make_rule(pool, kind, threshold=None, hours=None, user=None):
    """A new rule, checked: its parameters in range, what it would report now taken as already seen for the
    rules that tell news. Raises RuleError with a message for a person."""
    if kind not in KINDS:
        raise RuleError(f"Unknown rule {kind!r}: one of {', '.join(KINDS)}")
    wanted = KINDS[kind][1]
    if "threshold" in wanted:
        if threshold is None:
            raise RuleError("Give the threshold: " + ("a percentage" if kind == AlertRule.ERROR_RATE else "a count"))
        if kind == AlertRule.ERROR_RATE and not 0 < threshold <= 1:
            raise RuleError("The error rate is a percentage above 0 and at most 100")
        if kind == AlertRule.STALE_LOCKS and (threshold < 0 or threshold != int(threshold)):
            raise RuleError("The number of stale locks is a whole number, 0 or more")
    if "hours" in wanted and (hours is None or not 0 < hours <= 24 * 30):
        raise RuleError("Give the hours: more than 0, at most 720 (30 days)")
    rule = AlertRule(pool=pool.slug, kind=kind, threshold=threshold if "threshold" in wanted else None,
                     hours=hours if "hours" in wanted else None, created_by=user)
    if kind == AlertRule.OBSERVATION_FINISHED:
        snap = counting.snapshot(pool)
        rule.seen = sorted(finished_observations(snap.data)) if snap.data else []
    rule.save()
    return rule


# --- what each rule looks at --------------------------------------------------------------------------------


def finished_observations(data):
    return {o.label for o in reading.observations(data) if o.total and not o.remaining}


def _findings(rule, pool, snap, now):
    """{subject: (summary, evidence)} of what the rule finds now; for notices, only what it had not seen."""
    data = snap.data
    if rule.kind == AlertRule.JOB_FAILED:
        jobs = Job.objects.filter(pool=pool.slug, status=Job.FAILED, finished_at__gte=rule.created_at)
        return {str(j.pk): (f"job {j.pk} ({j.action}) failed: {j.message or 'no message'}",
                            {"job": j.pk, "action": j.action, "message": j.message, "changed": j.changed,
                             "failed": j.failed, "url": _link(reverse("job", args=[j.pk]))}) for j in jobs}
    if rule.kind == AlertRule.GIVEN_UP:
        n = retries.given_up(pool.slug).count()
        return {"": (f"{n} failed token{'s' if n != 1 else ''} used all their attempts: the retry rules gave up "
                     f"on {'them' if n != 1 else 'it'}", {"given_up": n,
                                                          "url": _link(reverse("retry_rules", args=[pool.slug]))})
                } if n else {}
    if not data:
        return {}
    if rule.kind == AlertRule.ERROR_RATE:
        since = now - timedelta(hours=rule.hours)
        finishes = dict(TokenEvent.objects.filter(pool=pool.slug, at__gte=since, to_state__in=("done", "error"))
                        .values_list("to_state").annotate(n=Count("pk")).order_by())
        failed, finished = finishes.get("error", 0), sum(finishes.values())
        rate = failed / finished if finished else 0.0
        if failed >= MIN_FAILURES and rate > rule.threshold:
            return {"": (f"{rate:.0%} of the {finished} tokens finished in the last {_hours(rule.hours)} failed "
                         f"({failed}), above {rule.threshold:.0%}",
                         {"failed": failed, "finished": finished, "rate": round(rate, 4), "hours": rule.hours})}
        return {}
    if rule.kind == AlertRule.STALE_LOCKS:
        stale = data.get("stale_locks", {}).get("count", 0)
        if stale > rule.threshold:
            return {"": (f"{stale} lock{'s' if stale != 1 else ''} older than {_hours(settings.STALE_LOCK_HOURS)}, "
                         f"more than {rule.threshold:g}", {"stale_locks": stale, "hours": settings.STALE_LOCK_HOURS,
                                                 "url": _link(reverse("stale", args=[pool.slug]))})}
        return {}
    if rule.kind == AlertRule.NO_PROGRESS:
        totals = reading.pool_totals(data)
        left = reading.remaining(totals)
        since = now - timedelta(hours=rule.hours)
        recent = TokenEvent.objects.filter(pool=pool.slug, at__gte=since, to_state__in=("done", "error")).exists()
        if left and not recent and data.get("events_backfilled"):
            last = (ObservationHour.objects.filter(pool=pool.slug, to_state__in=("done", "error"))
                    .order_by("-hour").values_list("hour", flat=True).first())
            return {"": (f"no token finished in the last {_hours(rule.hours)}; {left} tokens left",
                         {"left": left, "hours": rule.hours, "last_finish_hour": last.isoformat() if last else None})}
        return {}
    if rule.kind == AlertRule.BLACK_HOLE:
        return {h["hostname"]: (f"host {h['hostname']} failed {h['failed']} of the {h['failed'] + h['done']} tokens "
                                f"it finished in the last {_hours(settings.BLACKHOLE_WINDOW_HOURS)} "
                                f"({h['rate']:.0%}; the rest of the pool {h['rest_rate']:.0%})",
                                {**h, "url": _link(reverse("hosts", args=[pool.slug]))})
                for h in data.get("black_holes", [])}
    if rule.kind == AlertRule.OBSERVATION_FINISHED:
        found = {}
        by_label = {o.label: o for o in reading.observations(data)}
        for label in sorted(finished_observations(data) - set(rule.seen)):
            o = by_label[label]
            found[label] = (f"observation {label} finished: {o.counts['done']} of {o.total} tokens done, "
                            f"{o.counts['error'] + o.counts['legacy_error']} failed", {"counts": o.counts})
        return found
    return {}


def _link(path):
    return settings.SITE_URL + path if settings.SITE_URL else None


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(now=None):
    """Evaluate every rule; record what fired, what ended and the notices; queue their messages; send what is
    due. Returns (fired, resolved)."""
    now = now or timezone.now()
    fired = resolved = 0
    pools = {p.slug: p for p in all_pools()}
    for rule in AlertRule.objects.all():
        pool = pools.get(rule.pool)
        if pool is None:
            continue
        snap = counting.snapshot(pool)
        found = _findings(rule, pool, snap, now)
        with transaction.atomic():
            open_ = {a.subject: a for a in Alert.objects.select_for_update()
                     .filter(rule=rule, status=Alert.FIRING)}
            notice = rule.kind in (AlertRule.OBSERVATION_FINISHED, AlertRule.JOB_FAILED)
            told = set(Alert.objects.filter(rule=rule, status=Alert.NOTICE).values_list("subject", flat=True)) \
                if rule.kind == AlertRule.JOB_FAILED else set()
            for subject, (summary, evidence) in found.items():
                if subject in open_ or subject in told:
                    continue  # still firing (or already told): no repeat
                alert = Alert.objects.create(rule=rule, pool=rule.pool, kind=rule.kind, subject=subject,
                                             status=Alert.NOTICE if notice else Alert.FIRING, summary=summary,
                                             evidence=evidence, fired_at=now)
                _queue(alert, alert.status, now)
                fired += 1
            if rule.kind == AlertRule.OBSERVATION_FINISHED and snap.data:
                # Seen: the finished ones; an observation reopened (tokens reset) is news again when it finishes.
                rule.seen = sorted(finished_observations(snap.data))
                rule.save(update_fields=["seen"])
            for subject, alert in open_.items():
                if subject not in found and snap.data is not None and not snap.error:
                    alert.status, alert.resolved_at = Alert.RESOLVED, now
                    alert.resolution = f"resolved: {describe(rule)} no longer holds"
                    alert.save(update_fields=["status", "resolved_at", "resolution"])
                    _queue(alert, Alert.RESOLVED, now)
                    resolved += 1
    deliver(max(now, timezone.now()))
    return fired, resolved


def _queue(alert, message, now):
    # Who may still see the pool (a user who lost the role is not told) is the web side's to say: the roles live
    # there, named by a setting, so that the domain imports nothing of it.
    may_view = import_string(settings.POOL_ACCESS_CHECK)
    for sub in Subscription.objects.filter(pool=alert.pool, user__is_active=True).select_related("user"):
        if not may_view(sub.user, alert.pool):
            continue
        if sub.email and sub.user.email:
            Delivery.objects.create(alert=alert, message=message, channel=Delivery.EMAIL, target=sub.user.email,
                                    next_attempt_at=now)
        if sub.webhook_sealed:  # it stays encrypted on its way
            Delivery.objects.create(alert=alert, message=message, channel=Delivery.WEBHOOK, target=sub.webhook_sealed,
                                    next_attempt_at=now)


def text(delivery):
    """A message's subject line and body, in words."""
    alert = delivery.alert
    rule = describe(alert.rule) if alert.rule else alert.kind
    head = {"firing": "FIRING", "notice": "NOTICE", "resolved": "RESOLVED"}[delivery.message]
    subject = f"[PiCaS {alert.pool}] {head}: {alert.summary}"
    lines = [subject, "", f"Rule: {rule}", f"Since: {alert.fired_at:%Y-%m-%d %H:%M} UTC"]
    if delivery.message == Alert.RESOLVED and alert.resolved_at:
        lines.append(f"Resolved: {alert.resolved_at:%Y-%m-%d %H:%M} UTC")
    link = _link(reverse("alerts", args=[alert.pool]))
    if link:
        lines.append(f"Alerts of the pool: {link}")
    return subject, "\n".join(lines)


def deliver(now=None):
    """Send the messages that are due; a failure is kept with its error and tried again later (1, 2, 4 ...
    minutes), up to ALERT_DELIVERY_ATTEMPTS times. Returns how many were sent."""
    now = now or timezone.now()
    sent = 0
    for d in Delivery.objects.filter(status=Delivery.PENDING, next_attempt_at__lte=now).select_related(
            "alert", "alert__rule"):
        subject, body = text(d)
        try:
            if d.channel == Delivery.EMAIL:
                if not settings.EMAIL_HOST:
                    raise notify.NotifyError("no mail server is configured (EMAIL_HOST)")
                notify.email(d.target, subject, body)
            else:
                notify.webhook(d.address, body)
        except (notify.NotifyError, secretbox.SecretError) as e:
            d.attempts += 1
            d.last_error = str(e)
            if d.attempts >= settings.ALERT_DELIVERY_ATTEMPTS:
                d.status = Delivery.FAILED
            d.next_attempt_at = now + timedelta(minutes=2 ** (d.attempts - 1))
            log.warning("alert %s: %s delivery failed (attempt %d): %s", d.alert_id, d.channel, d.attempts, e)
        else:
            d.attempts += 1
            d.status, d.sent_at, d.last_error = Delivery.SENT, now, ""
            sent += 1
        d.save(update_fields=["attempts", "status", "sent_at", "last_error", "next_attempt_at"])
    return sent


def firing(pool_slug=None):
    """The alerts firing now (all pools, or one)."""
    alerts = Alert.objects.filter(status=Alert.FIRING)
    return alerts.filter(pool=pool_slug) if pool_slug else alerts


def subscribe(user, pool, email, webhook_url):
    Subscription.objects.update_or_create(user=user, pool=pool.slug,
                                          defaults={"email": email, "webhook_url": webhook_url})


def unsubscribe(user, pool):
    Subscription.objects.filter(user=user, pool=pool.slug).delete()

