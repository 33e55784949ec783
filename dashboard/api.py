"""The JSON API under /api/v1/, for scripts. Its OpenAPI schema is generated from this code (/api/v1/openapi.json).

It calls the same functions as the pages (tokens.reading, tokens.operations, the views' payload helpers), with
stricter input checks than the pages: a page falls back to a default on a bad parameter, the API answers 4xx with
a message. Every error, its own or CouchDB's or an unexpected one, is JSON {"detail": ...} with its status.

Callers authenticate with `Authorization: Bearer <token>` (tokens are made on /account/) or the browser's session
(then CSRF applies to unsafe methods). Viewers read; operators also act, exactly as in the web UI.
"""

import json
import logging
import math
from datetime import datetime
from functools import wraps
from typing import Annotated, Any, Literal

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse, QueryDict
from django.shortcuts import get_object_or_404
from django.urls import URLPattern
from django.views.decorators.http import require_safe
from ninja import Field, NinjaAPI, Path, Query, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer
from ninja.security.apikey import APIKeyCookie
from ninja.utils import check_csrf
from pydantic import AfterValidator, create_model, field_validator

from dashboard import export_views, job_views, views, web
from dashboard.models import ApiToken
from dashboard.roles import is_operator
from tokens import actions, exports, operations, reading, selections
from tokens.couch import CouchError, NotFound
from tokens.models import Job
from tokens.selections import OperationError, Selection
from tokens.states import BUCKETS, STATES

log = logging.getLogger(__name__)

MAX_LIMIT = 1000  # rows per page a caller may ask for
MAX_IDS = 10_000  # token ids in one job's selection
MAX_HOURS = 1_000_000.0
MAX_ID = 2**63 - 1  # the largest primary key every database takes


# --- authentication ---------------------------------------------------------------------------


class BearerToken(HttpBearer):
    """A per-user API token. An unknown or revoked one is refused outright (401), not passed on to the session."""

    def authenticate(self, request, token):
        user = ApiToken.user_for(token) if token else None
        if user is None:
            raise AuthenticationError(message="Unknown or revoked API token")
        request.user = user
        return user


class Session(APIKeyCookie):
    """The browser's login session. Unlike ninja's SessionAuth, an anonymous caller gets 401, not a CSRF 403."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request):
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request, key):
        if not request.user.is_authenticated:
            return None
        if check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header with a session")
        return request.user


class QueryParser(Parser):
    """A query parameter given twice is refused (422), not read as its last value: `state=error&state=todo` must not
    quietly list only the todo tokens. Handing validation the list makes it fail where a single value is declared."""

    def parse_querydict(self, data, list_fields, request):
        return {key: data.getlist(key) if key in list_fields or len(data.getlist(key)) > 1 else data[key]
                for key in data}


class API(NinjaAPI):
    def get_openapi_operation_id(self, operation):
        return operation.view_func.__name__  # listPools-style ids, without the module path


api = API(
    title="PiCaS dashboard API",
    version="1",
    description="Pools, counts, tokens, failure groups, stale locks and jobs. Viewers read; operators act.",
    auth=[BearerToken(), Session()],
    parser=QueryParser(),
    docs_url=None,  # a docs page would load its scripts from a CDN: the site makes no external requests
    urls_namespace="api",
)


def require_operator(request):
    if not is_operator(request.auth):
        raise HttpError(403, "Only operators can do this.")


# --- errors: always JSON ----------------------------------------------------------------------


class Error(Schema):
    detail: str
    errors: list[dict[str, Any]] | None = None


def errors(*codes):
    return dict.fromkeys(codes, Error)


@api.exception_handler(CouchError)
def couch_error(request, exc):
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


@api.exception_handler(OperationError)
def operation_error(request, exc):
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(Http404)
def not_found(request, exc):
    return api.create_response(request, {"detail": str(exc) or "Not found"}, status=404)


@api.exception_handler(ValidationError)
def invalid(request, exc):
    # ninja puts the body parameter's own name after "body" in every location: drop it
    locs = [tuple(e.get("loc", ())) for e in exc.errors]
    locs = [loc[:1] + loc[2:] if loc[:2] == ("body", "body") else loc for loc in locs]
    for e, loc in zip(exc.errors, locs, strict=True):
        e["loc"] = list(loc)
    where = [".".join(str(p) for p in loc) for loc in locs]
    first = exc.errors[0] if exc.errors else {}
    detail = f"Invalid {where[0]}: {first.get('msg', 'invalid value')}" if where else "Invalid request"
    listed = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors]
    return api.create_response(request, {"detail": detail, "errors": listed}, status=422)


@api.exception_handler(Exception)
def unexpected(request, exc):
    log.exception("API %s %s failed", request.method, request.path)
    return api.create_response(request, {"detail": "Internal error; it has been logged."}, status=500)


def urls():
    """The API's URL patterns, each open to callers without a login session (the API answers 401 itself, where
    LoginRequiredMiddleware would redirect to the login page) and answering JSON where ninja would not."""
    patterns, app_name, namespace = api.urls
    def view(p):
        if p.name == "api-root":
            return unknown_path
        # ninja serves the schema to any method; reading it is all there is to do
        return _json_always(require_safe(p.callback) if p.name == "openapi-json" else p.callback)

    wrapped = [URLPattern(p.pattern, view(p), p.default_args, p.name) for p in patterns]
    return wrapped, app_name, namespace


def _json_always(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as e:
            return JsonResponse({"detail": str(e) if e.args else "Not found"}, status=404)
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            response = JsonResponse({"detail": f"Method not allowed; use {allowed}"}, status=405)
            response["Allow"] = allowed
        return response

    wrapper.csrf_exempt = True  # the session auth checks CSRF itself, token callers need none
    return login_not_required(wrapper)


@login_not_required
def unknown_path(request, rest=""):
    return JsonResponse({"detail": f"No API endpoint at {request.path}; the API is described at "
                                   f"/api/v1/openapi.json"}, status=404)


# --- input types ------------------------------------------------------------------------------


def _plain_text(value):
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, Field(max_length=2000), AfterValidator(_plain_text)]
Slug = Annotated[str, Path(max_length=100, pattern=r"^[-a-zA-Z0-9_]+$")]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
Bucket = Literal[BUCKETS]
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="Rows per page (default PAGE_SIZE)")]
After = Annotated[Text | None, Query(description="The `next` of the previous page", max_length=20000)]


def pool_of(slug):
    return web.pool_or_404(slug)


def snapshot_of(pool):
    """The pool's latest counts; an error status when there are none at all yet."""
    snap = reading.snapshot(pool)
    if snap.data is None:
        raise HttpError(snap.error_status or 503, snap.error or "No counts for this pool yet")
    return snap


def _finite(text):
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


def cursor_from(after):
    """A key cursor as the previous page handed it out; a malformed one is refused rather than read as 'start'."""
    if after is None:
        return None
    try:
        value = json.loads(after, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        raise HttpError(400, "Malformed cursor `after`: pass back the `next` of the previous page unchanged")
    return value


# --- schemas of the answers --------------------------------------------------------------------


Counts = create_model("Counts", __base__=Schema, **dict.fromkeys(BUCKETS, (int, 0)))


class PoolSummary(Schema):
    slug: str
    name: str
    database: str
    health: Literal["ok", "error"]
    error: str | None
    counts: Counts | None
    total: int | None
    counts_age_seconds: float | None


class PoolList(Schema):
    pools: list[PoolSummary]


class CountsMeta(Schema):
    pool: str
    counts_age_seconds: float = Field(description="Age of the snapshot the counts come from")
    counts_taken_at: datetime
    error: str | None = Field(description="The latest refresh failed with this; the counts are older")
    error_at: datetime | None
    own_views: bool


class Observation(Schema):
    type: str
    group: str | None
    label: str | None
    counts: Counts
    total: int
    percent_done: float
    done_last_hour: int
    finished_last_hour: int
    eta_hours: float | None


class PoolDetail(CountsMeta):
    counts: Counts
    total: int
    observations: list[Observation]
    design_documents: list[dict[str, Any]]


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


class TokenDetail(Schema):
    pool: str
    token: dict[str, Any]
    bucket: str | None
    lock: When | None
    done: When | None
    errors: list[dict[str, Any]]
    job_ids: dict[str, Any]
    attachments: list[AttachmentInfo]
    jobs: list[TouchedBy]


class FailureGroup(Schema):
    code: str
    message: str
    count: int


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


class JobOut(Schema):
    id: int
    pool: str
    user: str | None
    via: str
    action: str
    selection: dict[str, Any]
    params: dict[str, Any]
    preview_count: int
    status: Literal[Job.QUEUED, Job.RUNNING, Job.SUCCEEDED, Job.FAILED, Job.CANCELLED, Job.INTERRUPTED]
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


class JobDetail(JobOut):
    description: str
    problems: list[Problem] = Field(description="Tokens skipped, failed or changed after a conflict (first 500)")
    problem_count: int


class JobToken(Schema):
    id: str
    outcome: str
    reason: str
    conflicted: bool
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


# --- schemas of job requests ------------------------------------------------------------------


class SelectionIn(Schema):
    kind: Literal["state", "stale", "failure", "observation", "ids", "job"]
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
        _plain_text(value)
    elif isinstance(value, list):
        for v in value:
            _check_json(v, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            _plain_text(k)
            _check_json(v, depth + 1)


class JobIn(Schema):
    action: Literal["reset", "set_field", "delete"]
    selection: SelectionIn
    params: ParamsIn = Field(default_factory=ParamsIn)
    dry_run: bool = Field(True, description="true (the default): only count and list; false: create and queue")
    confirm: int | None = Field(None, ge=0, le=MAX_ID, description="The count, typed, when needs_confirmation")


# --- reading ----------------------------------------------------------------------------------

READ_ERRORS = errors(401, 404, 422, 500, 502, 503)


@api.get("/pools", response={200: PoolList, **errors(401, 500)}, tags=["pools"])
def list_pools(request):
    """Every pool with its totals per state, from its latest counts."""
    return {"pools": [views.pool_row_json(r) for r in views.pool_rows()]}


@api.get("/pools/{slug}", response={200: PoolDetail, **READ_ERRORS}, tags=["pools"])
def get_pool(request, slug: Slug):
    """A pool's counts per state and per observation (token type and group), with the age of those counts."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    return views.pool_payload(pool, snap, reading.observations(snap.data), reading.pool_totals(snap.data))


@api.get("/pools/{slug}/tokens", response={200: TokenList, **errors(400, *READ_ERRORS)}, tags=["tokens"])
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
    limit: Limit = None,
):
    """One page of a state's tokens (or a failure group's), paged by key: follow `next` until it is null."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    failure = (code, message) if code is not None else None
    bucket = state or ("error" if failure else "todo")
    if not snap.data["own_views"] and bucket not in STATES:
        raise HttpError(400, f"State {bucket!r} needs the dashboard's own views in this pool")
    selection = {"bucket": bucket, "type_": type or None, "group": group, "failure": failure}
    page = reading.token_page(pool, snap.data, **selection, cursor=cursor_from(after), id_filter=q.strip(),
                              field_filter=(field.strip(), value) if field.strip() else None, limit=limit)
    return {
        "pool": pool.slug,
        "selection": {**selection, "failure": list(failure) if failure else None},
        "tokens": [views.summary(doc) for doc in page["tokens"]],
        "next": reading.encode_cursor(page["next"]) or None,
        "scanned": page["scanned"],
    }


@api.get("/pools/{slug}/tokens/{path:token_id}", response={200: TokenDetail, **READ_ERRORS}, tags=["tokens"])
def get_token(request, slug: Slug, token_id: Annotated[Text, Path(min_length=1)]):
    """A token in full, with its state, lock and finish times, errors newest first, and the jobs that touched it."""
    pool = pool_of(slug)
    if token_id.startswith("_") or token_id in (".", ".."):  # CouchDB's own documents and paths: never tokens
        raise Http404("No such token")
    try:
        doc = reading.get_token(pool, token_id)
    except NotFound:
        raise Http404("No such token") from None
    snap = reading.snapshot(pool)
    facts = reading.token_facts(doc, snap.data["types"] if snap.data else {})
    return views.token_payload(pool, doc, facts, job_views.token_jobs(pool.slug, token_id))


@api.get("/pools/{slug}/failures", response={200: Failures, **READ_ERRORS}, tags=["tokens"])
def list_failures(
    request,
    slug: Slug,
    type: Annotated[Text | None, Query(description="Token type of one observation")] = None,
    group: Annotated[Text | None, Query(description="Group of one observation (with type)")] = None,
):
    """Failed tokens grouped by exit code and normalised first error line, largest first."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    result = reading.failure_groups(snap.data, type or None, group or None)
    return {"pool": pool.slug, **web.snapshot_meta(snap), "own_views": snap.data["own_views"], **result}


@api.get("/pools/{slug}/stale", response={200: StaleLocks, **errors(400, *READ_ERRORS)}, tags=["tokens"])
def list_stale_locks(
    request,
    slug: Slug,
    hours: Annotated[float | None, Query(ge=0, le=MAX_HOURS, allow_inf_nan=False,
                                         description="Lock age in hours (default STALE_LOCK_HOURS)")] = None,
    after: After = None,
    limit: Limit = None,
):
    """Tokens locked longer than `hours`, oldest first (paged by key), and the locks of unknown age."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    hours = settings.STALE_LOCK_HOURS if hours is None else hours
    result = reading.stale_locks(pool, snap.data, hours, cursor=cursor_from(after), limit=limit)
    answer = {"pool": pool.slug, "hours": hours, "own_views": snap.data["own_views"], "count": None, "tokens": [],
              "next": None, "unknown": [], "unknown_count": None}
    if result:
        answer.update({k: result[k] for k in ("count", "tokens", "unknown", "unknown_count")})
        answer["next"] = reading.encode_cursor(result["next"]) or None
    return answer


EXPORT_CONTENT = {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}


@api.get("/pools/{slug}/export", response={400: Error, **READ_ERRORS}, tags=["tokens"],
         openapi_extra={"responses": {"200": {"description": "The tokens, streamed", "content": EXPORT_CONTENT}}})
def export_tokens(
    request,
    slug: Slug,
    format: Annotated[Literal["csv", "jsonl"], Query(description="CSV or JSON lines")] = "csv",
    fields: Annotated[Text | None, Query(description="Comma-separated fields (computed ones too); * with jsonl "
                                                     "for whole documents")] = None,
    state: Annotated[Bucket | None, Query(description="Tokens in this state")] = None,
    code: Annotated[Text | None, Query(description="A failure group's exit code")] = None,
    message: Annotated[Text | None, Query(description="A failure group's normalised message")] = None,
    hours: Annotated[float | None, Query(ge=0, le=MAX_HOURS, allow_inf_nan=False,
                                         description="Stale locks older than this many hours")] = None,
    type: Annotated[Text | None, Query(description="Token type of one observation")] = None,
    group: Annotated[Text | None, Query(description="Group of one observation (with type)")] = None,
    q: Annotated[Text | None, Query(description="Token id contains")] = None,
    field: Annotated[Text | None, Query(description="Field name for `value`")] = None,
    value: Annotated[Text | None, Query(description="Only tokens whose `field` equals this")] = None,
):
    """Any token list (a state, a failure group, stale locks, an observation) as CSV or JSON lines, streamed a page
    at a time: the web UI's export (tokens/exports.py), with an API token."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    given = {"format": format, "fields": fields, "state": state, "code": code, "message": message, "hours": hours,
             "type": type, "group": group, "q": q, "field": field, "value": value}
    query = QueryDict(mutable=True)
    for key, given_value in given.items():
        if given_value is not None:
            query[key] = str(given_value)
    try:
        made = exports.open_export(pool, snap.data, query)
    except exports.ExportError as e:
        raise HttpError(400, str(e)) from None
    return export_views.download(made)


# --- jobs -------------------------------------------------------------------------------------


def job_detail(job):
    problems = job_views.job_problems(job)
    return {**job_views.job_json(job), "description": Selection.from_dict(job.selection).describe(),
            "problems": [job_views.problem_json(p) for p in problems[:500]], "problem_count": problems.count()}


def selection_of(body):
    s = body.selection
    if s.ids and s.kind != "ids":
        raise OperationError("Token ids select by themselves: use kind \"ids\"")
    return Selection(kind=s.kind, bucket=s.bucket, type=s.type or None, group=s.group, hours=s.hours,
                     code=s.code, message=s.message or "", ids=list(s.ids), job=s.job, outcome=s.outcome)


def params_of(body):
    p = body.params
    if body.action == "reset":
        return {"delete_attachments": p.delete_attachments}
    if body.action == "set_field":
        params = {"field": (p.field or "").strip(), "allow_state_fields": p.allow_state_fields}
        if "value" in p.model_fields_set:
            params["value"] = p.value
        return params
    return {}


@api.post("/pools/{slug}/jobs", response={200: Preview, 201: JobOut, **errors(400, 403, *READ_ERRORS)},
          tags=["jobs"])
def create_job(request, slug: Slug, body: JobIn):
    """A dry run (the default: how many tokens, the first ids, nothing written), or, with `dry_run: false`, a job
    created and queued. Deleting, or acting on more than JOB_CONFIRM_THRESHOLD tokens, needs `confirm` set to the
    count the dry run gave. Operators only."""
    require_operator(request)
    pool = pool_of(slug)
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
    return 201, job_views.job_json(job)


@api.get("/jobs", response={200: JobList, **errors(401, 422, 500)}, tags=["jobs"])
def list_jobs(
    request,
    pool: Annotated[Text | None, Query(description="Pool slug")] = None,
    user: Annotated[Text | None, Query(description="Username of who created it")] = None,
    action: Annotated[Literal[Job.ACTIONS] | None, Query()] = None,
    status: Annotated[Literal[Job.QUEUED, Job.RUNNING, Job.SUCCEEDED, Job.FAILED, Job.CANCELLED,
                              Job.INTERRUPTED] | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    """The audit list, newest first, paged by job id."""
    operations.tend_jobs()
    found = job_views.filtered_jobs(pool=pool, user=user, action=action, status=status).order_by("-pk")
    if before is not None:
        found = found.filter(pk__lt=before)
    page = list(found[:limit + 1])
    return {"jobs": [job_views.job_json(j) for j in page[:limit]], "next": page[limit - 1].pk if len(page) > limit
            else None}


@api.get("/jobs/{job_id}", response={200: JobDetail, **errors(401, 404, 422, 500)}, tags=["jobs"])
def get_job(request, job_id: JobId):
    """A job's progress and outcome (poll until `status` is no longer queued or running)."""
    operations.tend_jobs()
    return job_detail(get_object_or_404(Job.objects.select_related("user"), pk=job_id))


@api.get("/jobs/{job_id}/tokens", response={200: JobTokens, **errors(401, 404, 422, 500)}, tags=["jobs"])
def get_job_tokens(
    request,
    job_id: JobId,
    outcome: Annotated[Literal["changed", "skipped", "failed"], Query()] = "changed",
    after: Annotated[int | None, Query(ge=1, le=MAX_ID, description="The `next` of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
):
    """Every token a job changed (or skipped, or failed on), in the order it met them, paged. To act on them
    again, create a job with the selection {"kind": "job", "job": job_id, "outcome": ...}."""
    job = get_object_or_404(Job, pk=job_id)
    records = job.tokens.filter(outcome=outcome).order_by("pk")
    if after is not None:
        records = records.filter(pk__gt=after)
    page = list(records[:limit + 1])
    return {"job": job.pk, "outcome": outcome, "count": job_views.outcome_counts(job)[outcome],
            "next": page[limit - 1].pk if len(page) > limit else None,
            "tokens": [job_views.token_record_json(r) for r in page[:limit]]}


@api.post("/jobs/{job_id}/cancel", response={200: JobDetail, **errors(401, 403, 404, 409, 422, 500)},
          tags=["jobs"])
def cancel_job(request, job_id: JobId):
    """Stop a job: a queued one at once, a running one between two batches. Operators only."""
    require_operator(request)
    job = get_object_or_404(Job, pk=job_id)
    if job.ended:
        raise HttpError(409, f"The job has already ended ({job.status})")
    operations.cancel_job(job.pk)
    return job_detail(Job.objects.select_related("user").get(pk=job.pk))
