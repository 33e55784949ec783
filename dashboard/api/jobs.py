"""Jobs: a dry run or a new job, the audit list, a job's progress and tokens, cancel. Operators act; viewers read."""

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError
from pydantic import field_validator

from dashboard import payloads, roles
from dashboard.api.common import (
    MAX_HOURS,
    MAX_ID,
    MAX_IDS,
    READ_ERRORS,
    Bucket,
    JobId,
    Slug,
    Text,
    errors,
    plain_text,
    pool_of,
)
from tokens import actions, operations, selections
from tokens.models import Job
from tokens.selections import OperationError, Selection

router = Router(tags=["jobs"])


class JobOut(Schema):
    id: int
    pool: str
    user: str | None
    via: str
    shell_user: str | None = Field(None, description="The shell's login that ran a command-line job (via \"cli\")")
    rule: str | None = Field(None, description="The retry rule that started it (via \"rule\")")
    action: str
    selection: dict[str, Any]
    description: str = Field(description="The selection in words: which tokens the job was applied to")
    params: dict[str, Any]
    preview_count: int
    status: Literal[Job.QUEUED_TO_ENDED]
    message: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    read: int
    changed: int
    skipped: int
    conflicts: int
    failed: int
    percent: int


class Problem(Schema):
    id: str
    outcome: str
    reason: str
    conflicted: bool
    unconfirmed: bool = Field(description="Written, but on fewer copies than the CouchDB cluster's quorum (202)")


class JobDetail(JobOut):
    problems: list[Problem] = Field(description="Tokens skipped, failed, changed after a conflict or written "
                                    "without a quorum's confirmation (first 500)")
    problem_count: int


class JobToken(Schema):
    id: str
    outcome: str
    reason: str
    conflicted: bool
    unconfirmed: bool = Field(description="Written, but on fewer copies than the CouchDB cluster's quorum (202)")
    rev_before: str
    rev_after: str


class JobTokens(Schema):
    job: int
    outcome: str
    count: int
    next: int | None = Field(description="Pass as `after` for the next page; null on the last page")
    tokens: list[JobToken]


class JobList(Schema):
    jobs: list[JobOut]
    next: int | None = Field(description="Pass as `before` for the next page; null on the last page")


class Preview(Schema):
    dry_run: Literal[True]
    action: str
    selection: dict[str, Any]
    description: str
    count: int
    sample: list[str] = Field(description="The first token ids")
    needs_confirmation: bool = Field(description="Creating it needs `confirm` equal to `count`")


class SelectionIn(Schema):
    kind: Literal[selections.KINDS]
    bucket: Bucket | None = None
    type: Text | None = None
    group: Text | None = None
    hours: float | None = Field(None, ge=0, le=MAX_HOURS, allow_inf_nan=False)
    code: Text | None = None
    message: Text | None = None
    ids: list[Text] = Field(default_factory=list, max_length=MAX_IDS)
    job: int | None = Field(None, ge=1, le=MAX_ID, description="kind job: the job whose tokens to select")
    outcome: Literal["changed", "skipped", "failed"] | None = Field(
        None, description="kind job: the tokens it changed, skipped or failed on")
    hostname: Text | None = Field(None, description="kind host: the host (with bucket error or locked)")


class ParamsIn(Schema):
    delete_attachments: bool = Field(False, description="reset: also delete the tokens' attachments")
    field: Text | None = Field(None, description="set_field: the field's name")
    value: Any = Field(None, description="set_field: any JSON value")
    allow_state_fields: bool = Field(False, description="set_field: allow fields that decide the state")

    @field_validator("value")
    @classmethod
    def json_value(cls, value):
        _check_json(value)
        return value


def _check_json(value, depth=0):
    if depth > 50:
        raise ValueError("nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, str):
        plain_text(value)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            plain_text(k)
            _check_json(v, depth + 1)


class JobIn(Schema):
    action: Literal[actions.API_ACTIONS]
    selection: SelectionIn
    params: ParamsIn = Field(default_factory=ParamsIn)
    dry_run: bool = Field(True, description="true (the default): only count and list; false: create and queue")
    confirm: int | None = Field(None, ge=0, le=MAX_ID, description="The count, typed, when needs_confirmation")


def job_detail(job):
    problems = payloads.job_problems(job)
    return {**payloads.job_json(job), "problems": [payloads.problem_json(p) for p in problems[:500]],
            "problem_count": problems.count()}


def selection_of(body):
    s = body.selection
    if s.ids and s.kind != "ids":
        raise OperationError("Token ids select by themselves: use kind \"ids\"")
    return Selection.from_query(s.model_dump())


def params_of(body):
    p = body.params
    given = {"delete_attachments": p.delete_attachments, "field": p.field, "allow_state_fields": p.allow_state_fields}
    if "value" in p.model_fields_set:
        given["value"] = p.value  # a JSON value as it is: no value_type
    return actions.read_params(body.action, given)


@router.post("/pools/{slug}/jobs", response={200: Preview, 201: JobOut, **errors(400, 403, *READ_ERRORS)},
          tags=["jobs"])
def create_job(request, slug: Slug, body: JobIn):
    """A dry run (the default: how many tokens, the first ids, nothing written), or, with `dry_run: false`, a job
    created and queued. Deleting, or acting on more than JOB_CONFIRM_THRESHOLD tokens, needs `confirm` set to the
    count the dry run gave. Operators only."""
    pool = pool_of(request, slug, operate=True)
    selection = selection_of(body)
    params = params_of(body)
    if body.dry_run:
        actions.check_params(body.action, params)
        seen = selections.preview(pool, selection)
        return 200, {"dry_run": True, "action": body.action, "selection": selection.as_dict(),
                     "description": selection.describe(), "count": seen["count"], "sample": seen["sample"],
                     "needs_confirmation": selections.needs_typed_confirmation(body.action, seen["count"])}
    job = operations.create_job(pool, request.auth, body.action, selection, params, confirmation=body.confirm,
                                via="api")
    operations.enqueue(job)
    job.refresh_from_db()
    return 201, payloads.job_json(job)


@router.get("/jobs", response={200: JobList, **errors(401, 422, 500)}, tags=["jobs"])
def list_jobs(
    request,
    pool: Annotated[Text | None, Query(description="Pool slug")] = None,
    user: Annotated[Text | None, Query(description="Username of who created it")] = None,
    action: Annotated[Literal[tuple(actions.ACTIONS)] | None, Query()] = None,
    status: Annotated[Literal[Job.QUEUED_TO_ENDED] | None, Query()] = None,
    via: Annotated[Literal[tuple(payloads.VIA_LABELS)] | None, Query(description="How it was started")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    """The audit list, newest first, paged by job id."""
    operations.tend_jobs()
    found = payloads.filtered_jobs(pool=pool, user=user, action=action, status=status, via=via,
                                    pools=roles.access(request).pool_filter()).order_by("-pk")
    if before is not None:
        found = found.filter(pk__lt=before)
    page = list(found[:limit + 1])
    return {"jobs": [payloads.job_json(j) for j in page[:limit]], "next": page[limit - 1].pk if len(page) > limit
            else None}


@router.get("/jobs/{job_id}", response={200: JobDetail, **errors(401, 404, 422, 500)}, tags=["jobs"])
def get_job(request, job_id: JobId):
    """A job's progress and outcome (poll until `status` is no longer queued or running)."""
    operations.tend_jobs()
    return job_detail(payloads.job_or_404(request, job_id))


@router.get("/jobs/{job_id}/tokens", response={200: JobTokens, **errors(401, 404, 422, 500)}, tags=["jobs"])
def get_job_tokens(
    request,
    job_id: JobId,
    outcome: Annotated[Literal["changed", "skipped", "failed"], Query()] = "changed",
    after: Annotated[int | None, Query(ge=1, le=MAX_ID, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
):
    """Every token a job changed (or skipped, or failed on), in the order it met them, paged. To act on them
    again, create a job with the selection {"kind": "job", "job": job_id, "outcome": ...}."""
    job = payloads.job_or_404(request, job_id)
    records = job.tokens.filter(outcome=outcome).order_by("pk")
    if after is not None:
        records = records.filter(pk__gt=after)
    page = list(records[:limit + 1])
    return {"job": job.pk, "outcome": outcome, "count": payloads.outcome_counts(job)[outcome],
            "next": page[limit - 1].pk if len(page) > limit else None,
            "tokens": [payloads.token_record_json(r) for r in page[:limit]]}


@router.post("/jobs/{job_id}/cancel", response={200: JobDetail, **errors(401, 403, 404, 409, 422, 500)},
          tags=["jobs"])
def cancel_job(request, job_id: JobId):
    """Stop a job: a queued one at once, a running one between two batches. Operators only."""
    job = payloads.job_or_404(request, job_id, operate=True)
    if job.ended:
        raise HttpError(409, f"The job has already ended ({job.status})")
    operations.cancel_job(job.pk)
    return job_detail(Job.objects.select_related("user").get(pk=job.pk))
