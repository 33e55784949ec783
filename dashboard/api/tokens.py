"""Tokens: a state's (or failure group's) list paged by key, one token in full, failure groups, stale locks."""

from datetime import datetime, timedelta
from typing import Annotated, Any

from django.conf import settings
from django.http import Http404
from django.utils import timezone
from ninja import Field, Path, Query, Router, Schema
from ninja.errors import HttpError

from dashboard import payloads, web
from dashboard.api.common import (
    MAX_HOURS,
    READ_ERRORS,
    After,
    Before,
    Bucket,
    CountsMeta,
    Limit,
    Slug,
    Text,
    cursor_from,
    errors,
    pool_of,
    snapshot_of,
)
from tokens import counting, events, reading
from tokens.couch import NotFound
from tokens.oddities import oddities
from tokens.selections import OperationError, list_selection

router = Router(tags=["tokens"])


class TokenSummary(Schema):
    id: str
    type: Any
    lock: Any
    done: Any
    exit_code: Any
    status: Any
    output: Any
    hostname: Any
    scrub_count: Any
    last_error: str
    also_in: str = Field(description="GRID_LRT: what a second worker view that lists the token says; \"\" if none")
    odd: list[str] = Field(description="What is odd about the token, for an operator (as its list marks it)")


class TokenSelection(Schema):
    bucket: str
    type_: str | None
    group: str | None
    failure: list[str] | None = Field(description="[exit code, normalised message] of a failure group")


class TokenList(Schema):
    pool: str
    selection: TokenSelection
    tokens: list[TokenSummary]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page")
    previous: str | None = Field(description="Pass as `before` for the page before; null on the first page")
    scanned: int = Field(description="Rows read for this page (filters may drop some)")


class When(Schema):
    epoch: float
    age_hours: float


class AttachmentInfo(Schema):
    name: str
    content_type: str | None = None
    length: int | None = None


class TouchedBy(Schema):
    id: int
    action: str
    outcome: str
    reason: str


class Move(Schema):
    """One move of the token between states, as the dashboard saw it (origin "change"), as its own times told
    when its pool was first seen ("backfill"), or as a whole recount found it ("recount")."""

    at: str
    from_state: str
    to_state: str
    hostname: str
    exit_code: str
    scrub_count: int | None
    run_seconds: float | None
    job: int | None
    origin: str


class TokenDetail(Schema):
    pool: str
    token: dict[str, Any]
    bucket: str | None
    also_in: str = Field("", description="GRID_LRT: what a second worker view that lists the token says")
    stage: str = Field("", description="GRID_LRT: the step of a locked token (waiting, downloading, running)")
    lock: When | None
    done: When | None
    errors: list[dict[str, Any]]
    job_ids: dict[str, Any]
    attachments: list[AttachmentInfo]
    odd: list[str] = Field(description="What is odd about the token, for an operator (a field of an unusual shape)")
    jobs: list[TouchedBy]
    timeline: list[Move]


class HostFailures(Schema):
    hostname: str
    failures: int


class FailureGroup(Schema):
    code: str
    message: str
    count: int = Field(description="Tokens failed with it now")
    first_seen: datetime | None = Field(None, description="Its first failure the dashboard recorded")
    last_seen: datetime | None = None
    failures_recorded: int = Field(0, description="Failures recorded (a token that failed twice counts twice)")
    hours_start: datetime | None = Field(None, description="The hour `hours` starts at")
    hours: list[int] = Field(default_factory=list, description="Failures per hour over the last CHART_DAYS days")
    hosts: list[HostFailures] = Field(default_factory=list, description="The five hosts with most failures")
    host_count: int = 0
    observations: int = Field(0, description="Observations it struck")
    retried_done: int = Field(0, description="Its tokens that were retried and are done now")


class Failures(CountsMeta):
    total: int
    groups: list[FailureGroup]
    other: list[FailureGroup] = Field(description="Groups too small to show, folded")
    other_count: int


class Lock(Schema):
    id: str
    type: Any
    lock: Any
    age_hours: float | None
    hostname: Any
    status: Any
    job_ids: dict[str, Any]


class StaleLocks(Schema):
    pool: str
    hours: float
    own_views: bool = Field(description="Without the dashboard's own views stale locks cannot be listed")
    count: int | None
    tokens: list[Lock]
    next: str | None
    unknown: list[Lock] = Field(description="Locked tokens whose lock age is unknown (first page)")
    unknown_count: int | None


@router.get("/pools/{slug}/tokens", response={200: TokenList, **errors(400, *READ_ERRORS)}, tags=["tokens"])
def list_tokens(
    request,
    slug: Slug,
    state: Annotated[Bucket | None, Query(description="Default todo (error for a failure group)")] = None,
    type: Annotated[Text | None, Query(description="Token type of one observation")] = None,
    group: Annotated[Text | None, Query(description="Group of one observation (with type)")] = None,
    code: Annotated[Text | None, Query(description="Exit code of a failure group")] = None,
    message: Annotated[Text, Query(description="Normalised message of a failure group")] = "",
    q: Annotated[Text, Query(description="Keep ids containing this")] = "",
    field: Annotated[Text, Query(description="Keep tokens whose field ...")] = "",
    value: Annotated[Text, Query(description="... equals this")] = "",
    after: After = None,
    before: Before = None,
    limit: Limit = None,
):
    """One page of a state's tokens (or a failure group's), paged by key: follow `next` until it is null (or
    `previous`, as `before`, back to the first page)."""
    pool = pool_of(request, slug)
    snap = snapshot_of(pool)
    try:
        selection = list_selection({"state": state, "type": type, "group": group, "code": code, "message": message},
                                   snap.data)
    except OperationError as e:
        raise HttpError(400, str(e)) from None
    failure = selection["failure"]
    page = reading.token_page(pool, snap.data, **selection, cursor=cursor_from(after),
                              before=cursor_from(before, "before"), id_filter=q.strip(),
                              field_filter=(field.strip(), value) if field.strip() else None, limit=limit)
    return {
        "pool": pool.slug,
        "selection": {**selection, "failure": list(failure) if failure else None},
        "tokens": [payloads.summary(doc, snap.data["types"]) for doc in page["tokens"]],
        "next": reading.encode_cursor(page["next"]) or None,
        "previous": reading.encode_cursor(page["previous"]) or None,
        "scanned": page["scanned"],
    }


@router.get("/pools/{slug}/tokens/{path:token_id}", response={200: TokenDetail, **READ_ERRORS}, tags=["tokens"])
def get_token(request, slug: Slug, token_id: Annotated[Text, Path(min_length=1)]):
    """A token in full, with its state, lock and finish times, errors newest first, and the jobs that touched it."""
    pool = pool_of(request, slug)
    if token_id.startswith("_") or token_id in (".", ".."):  # CouchDB's own documents and paths: never tokens
        raise Http404("No such token")
    try:
        doc = reading.get_token(pool, token_id)
    except NotFound:
        raise Http404("No such token") from None
    snap = counting.snapshot(pool)
    facts = reading.token_facts(doc, snap.data["types"] if snap.data else {})
    types = snap.data["types"] if snap.data else None
    return payloads.token_payload(pool, doc, facts, payloads.token_jobs(pool.slug, token_id),
                                  events.timeline(pool.slug, token_id), oddities(doc, types))


@router.get("/pools/{slug}/failures", response={200: Failures, **READ_ERRORS}, tags=["tokens"])
def list_failures(
    request,
    slug: Slug,
    type: Annotated[Text | None, Query(description="Token type of one observation")] = None,
    group: Annotated[Text | None, Query(description="Group of one observation (with type)")] = None,
):
    """Failed tokens grouped by exit code and normalised first error line, largest first."""
    pool = pool_of(request, slug)
    snap = snapshot_of(pool)
    result = reading.failure_groups(snap.data, type or None, group or None)
    now = timezone.now()
    events.failure_history(pool.slug, result["groups"], now - timedelta(days=settings.CHART_DAYS), now,
                           type or None, group or None)
    return {"pool": pool.slug, **web.snapshot_meta(snap), "own_views": snap.data["own_views"], **result}


@router.get("/pools/{slug}/stale", response={200: StaleLocks, **errors(400, *READ_ERRORS)}, tags=["tokens"])
def list_stale_locks(
    request,
    slug: Slug,
    hours: Annotated[float | None, Query(ge=0, le=MAX_HOURS, allow_inf_nan=False,
                                         description="Lock age in hours (default STALE_LOCK_HOURS)")] = None,
    after: After = None,
    limit: Limit = None,
):
    """Tokens locked longer than `hours`, oldest first (paged by key), and the locks of unknown age."""
    pool = pool_of(request, slug)
    snap = snapshot_of(pool)
    hours = settings.STALE_LOCK_HOURS if hours is None else hours
    result = reading.stale_locks(pool, snap.data, hours, cursor=cursor_from(after), limit=limit)
    answer = {"pool": pool.slug, "hours": hours, "own_views": snap.data["own_views"], "count": None, "tokens": [],
              "next": None, "unknown": [], "unknown_count": None}
    if result:
        answer.update({k: result[k] for k in ("count", "tokens", "unknown", "unknown_count")})
        answer["next"] = reading.encode_cursor(result["next"]) or None
    return answer
