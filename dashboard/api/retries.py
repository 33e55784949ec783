"""A pool's retry rules (tokens.retries): read them with what each did in the last 24 hours and the tokens they
gave up on; operators add, change, pause and remove them, and ask any rule for its dry run. The same checks as
the rules page: a rule refused here is refused there, with the same message."""

from datetime import datetime

from ninja import Field, Router, Schema
from ninja.errors import HttpError

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, JobId, Slug, Text, errors, pool_of
from tokens import retries
from tokens.models import RetryRule

router = Router(tags=["retry rules"])
WRITE_ERRORS = errors(400, 403, *READ_ERRORS)


class Last24h(Schema):
    jobs: list[int] = Field(description="The rule's jobs in the last 24 hours, newest first")
    retried: int = Field(description="Tokens those jobs reset")
    given_up: int = Field(description="Tokens those jobs found with all their attempts used")


class RuleOut(Schema):
    id: int
    name: str
    code: str | None = Field(description="The exit code it retries, as the failure groups show it; null: any")
    message: str | None = Field(description="The normalised error message (with the code: one failure group); "
                                            "null: any message")
    attempts: int = Field(description="Runs a token gets in all, the first included")
    wait_minutes: float = Field(description="Least time after the failure")
    per_hour: int = Field(description="At most this many tokens retried an hour")
    hold_black_holes: bool
    enabled: bool
    description: str
    failures: str
    changed_by: str | None
    changed_at: datetime
    last_24h: Last24h


class GivenUpOut(Schema):
    id: str
    failures: int
    rule: str
    code: str
    message: str
    at: datetime


class RetryRules(Schema):
    pool: str
    paused: bool = Field(description="The pool's one switch: true, no rule acts")
    paused_by: str | None
    paused_at: datetime | None
    every_seconds: int = Field(description="How often the rules look at the pool")
    grace_seconds: int = Field(description="No failure is retried sooner after it happened")
    rules: list[RuleOut]
    given_up_count: int = Field(description="Failed tokens the rules gave up on (failed still)")
    given_up: list[GivenUpOut] = Field(description="The first 50 of them, by id")


class RuleIn(Schema):
    name: Text
    code: Text | None = Field(None, description="null or absent: any failure")
    message: Text | None = Field(None, description="null or absent: any message of the code")
    attempts: int
    wait_minutes: float
    per_hour: int
    hold_black_holes: bool = True
    enabled: bool = True


class RuleChange(Schema):
    name: Text | None = None
    code: Text | None = None
    message: Text | None = None
    attempts: int | None = None
    wait_minutes: float | None = None
    per_hour: int | None = None
    hold_black_holes: bool | None = None
    enabled: bool | None = None


class HeldHost(Schema):
    hostname: str
    count: int


class GivenUpSample(Schema):
    id: str
    failures: int


class DryRun(Schema):
    rule_id: int
    would_retry: int = Field(description="Tokens it would reset now (within its hour's limit)")
    retry_sample: list[str]
    quota: int = Field(description="Tokens it may still reset in this hour")
    beyond_quota: int = Field(description="More it would retry, waiting for the next hour")
    given_up: int
    given_up_sample: list[GivenUpSample]
    held: int = Field(description="Failures on black-hole hosts it holds")
    held_hosts: list[HeldHost]
    waiting: int = Field(description="Failures too recent for its wait")
    unknown_time: int = Field(description="Failures of unknown time: left to an operator")
    read: int
    read_most: int
    complete: bool = Field(description="false: it read `read_most` failures and stopped; there are more")
    paused: bool
    enabled: bool
    last_24h: Last24h


class Paused(Schema):
    paused: bool


def _rule(pool, rule_id):
    rule = RetryRule.objects.filter(pool=pool.slug, pk=rule_id).first()
    if rule is None:
        raise HttpError(404, f"No such retry rule on {pool.slug}: {rule_id}")
    return rule


def _page(pool):
    return {"pool": pool.slug, **payloads.retries_page(pool)}


@router.get("/pools/{slug}/retry-rules", response={200: RetryRules, **READ_ERRORS})
def get_retry_rules(request, slug: Slug):
    """The pool's retry rules, each with what it did in the last 24 hours; the pool's switch; the tokens given up."""
    return _page(pool_of(request, slug))


@router.post("/pools/{slug}/retry-rules", response={201: RuleOut, **WRITE_ERRORS})
def create_retry_rule(request, slug: Slug, body: RuleIn):
    """A new rule (operators). Refused with 400 and a reason, as the rules page refuses it."""
    pool = pool_of(request, slug, operate=True)
    try:
        rule = retries.make(pool, request.user, **body.model_dump())
    except retries.RuleError as e:
        raise HttpError(400, str(e)) from None
    return 201, payloads.retry_rule_json(rule)


@router.post("/pools/{slug}/retry-rules/pause", response={200: RetryRules, **WRITE_ERRORS})
def pause_retry_rules(request, slug: Slug, body: Paused):
    """The pool's one switch (operators): `"paused": true` pauses every rule (a rule's job running now stops after
    its batch), false resumes them."""
    pool = pool_of(request, slug, operate=True)
    retries.pause(pool, request.user, body.paused)
    return _page(pool)


@router.patch("/pools/{slug}/retry-rules/{rule_id}", response={200: RuleOut, **WRITE_ERRORS})
def change_retry_rule(request, slug: Slug, rule_id: JobId, body: RuleChange):
    """Change a rule (operators): the fields given replace its own; `"enabled": false` pauses it alone."""
    pool = pool_of(request, slug, operate=True)
    rule = _rule(pool, rule_id)
    try:
        rule = retries.change(rule, pool, request.user, **body.model_dump(exclude_unset=True))
    except retries.RuleError as e:
        raise HttpError(400, str(e)) from None
    return payloads.retry_rule_json(rule)


@router.delete("/pools/{slug}/retry-rules/{rule_id}", response={204: None, **WRITE_ERRORS})
def delete_retry_rule(request, slug: Slug, rule_id: JobId):
    """Remove a rule (operators); its jobs stay, named by the rule."""
    pool = pool_of(request, slug, operate=True)
    _rule(pool, rule_id).delete()
    return 204, None


@router.get("/pools/{slug}/retry-rules/{rule_id}/dry-run", response={200: DryRun, **READ_ERRORS})
def retry_rule_dry_run(request, slug: Slug, rule_id: JobId):
    """What the rule would do now, writing nothing, and what it did in the last 24 hours."""
    pool = pool_of(request, slug)
    return payloads.dry_run(_rule(pool, rule_id), pool)
