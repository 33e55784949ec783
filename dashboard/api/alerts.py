"""A pool's alert rules and its alerts (firings, notices, recoveries) with their evidence and messages: the alerts
page's figures. Rules are set on the page (operators); this is read-only."""

from datetime import datetime
from typing import Any, Literal

from ninja import Router, Schema

from dashboard.api.common import READ_ERRORS, Slug, pool_of
from dashboard.payloads import HISTORY, alert_json, rule_json
from tokens.models import Alert, AlertRule

router = Router(tags=["alerts"])


class Rule(Schema):
    id: int
    kind: Literal[AlertRule.KINDS]
    threshold: float | None
    hours: float | None
    description: str


class Message(Schema):
    message: Literal["firing", "notice", "resolved"]
    channel: Literal["email", "webhook"]
    to: str
    status: Literal["pending", "sent", "failed"]
    attempts: int
    error: str


class AlertOut(Schema):
    id: int
    kind: Literal[AlertRule.KINDS]
    subject: str
    status: Literal["firing", "resolved", "notice"]
    summary: str
    evidence: dict[str, Any]
    fired_at: datetime
    resolved_at: datetime | None
    messages: list[Message]


class Alerts(Schema):
    pool: str
    rules: list[Rule]
    alerts: list[AlertOut]


@router.get("/pools/{slug}/alerts", response={200: Alerts, **READ_ERRORS})
def get_alerts(request, slug: Slug):
    """The pool's alert rules, and its alerts newest first (the last 50): what fired, with its evidence, and each
    message (e-mail or webhook, the webhook's address without its secret path) with its outcome."""
    pool = pool_of(request, slug)
    rows = Alert.objects.filter(pool=pool.slug).prefetch_related("deliveries")[:HISTORY]
    return {"pool": pool.slug, "rules": [rule_json(r) for r in AlertRule.objects.filter(pool=pool.slug)],
            "alerts": [alert_json(a) for a in rows]}
