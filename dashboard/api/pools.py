"""Pools: the list with their totals, and one pool's counts per state and per observation."""

from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import QueryDict
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, Counts, CountsMeta, Slug, Text, errors, pool_of, snapshot_of
from tokens import overview

router = Router(tags=["pools"])


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


class Stages(Schema):
    waiting: int = Field(0, description="Held, status launched: the pilot's job has not started the work")
    downloading: int = Field(0, description="Held, status downloading")
    running: int = Field(0, description="Held, any later status (the pipeline's steps, uploading)")


class AlsoIn(Schema):
    counted_as: str = Field(description="The bucket the tokens are counted in: what the pilots do with them next")
    also_in: list[Literal["error", "done"]] = Field(description="The other worker views that list them too")
    count: int


class Observation(Schema):
    type: str
    group: str | None
    label: str | None
    counts: Counts = Field(description="Every token in one bucket: the buckets add up to the documents")
    stages: Stages | None = Field(description="GRID_LRT: the locked tokens by the step their status names")
    also_in: list[AlsoIn] = Field(description="GRID_LRT: tokens that a second worker view lists too")
    total: int
    percent_done: float
    done_last_hour: int
    finished_last_hour: int
    failed_last_hour: int
    eta_hours: float | None


class Annotation(Schema):
    at: datetime
    end: datetime | None = Field(description="When the job ended or the alert resolved; null: not yet, or news")
    kind: Literal["job", "alert"]
    text: str
    tags: list[str]
    job: int | None
    alert: int | None


class Hourly(Schema):
    period: str = Field(description="The chart's period: 24h, 3d (the default, CHART_DAYS), 7d or 30d")
    step_seconds: int = Field(description="3600 (hours) or 86400 (days, for the 30-day period)")
    computed_at: float = Field(description="Unix time the figures were read from the events")
    error: str | None
    hours: list[str] = Field(description="Each hour's (or day's) start as the chart labels it")
    hour_starts: list[int] = Field(description="Each hour's (or day's) start, Unix time")
    done: list[int]
    error_counts: list[int] = Field(description="Tokens that failed in the hour")
    running: list[int] = Field(description="The most tokens locked at once in the hour (sampled with the counts)")
    annotations: list[Annotation] = Field(description="What the chart marks: the jobs that started on the pool "
                                                      "and the alerts that fired in the period")


ETA_BASES = Literal["complete", "last hour", "last 24 hours", "no progress in 24 hours", "waits for the pool's past"]


class Eta(Schema):
    eta_hours: float | None
    eta_basis: ETA_BASES


class PoolDetail(CountsMeta):
    counts: Counts
    total: int
    observations: list[Observation]
    design_documents: list[dict[str, Any]]
    black_holes: list[str] = Field(description="Hosts judged black holes (BLACKHOLE_* settings)")
    given_up: int = Field(description="Failed tokens the retry rules gave up on (all their attempts used)")
    hourly: Hourly | None = Field(description="The pool's chart: null without the dashboard's own views")
    eta: Eta | None


class WorkerOverview(Schema):
    design_doc: str
    view: str
    todo: int | None = None
    waiting: int | None = None
    downloading: int | None = None
    running: int | None = None
    done: int | None = None
    error: int | None = None


class ObservationDetail(CountsMeta, Observation):
    hourly: Hourly | None
    eta: Eta | None
    grid_lrt_overview: WorkerOverview | None = Field(
        description="GRID_LRT: its own count view's figures for the type, as its tools show them")


class Reason(Schema):
    kind: Literal[overview.ATTENTION]
    text: str


class ObservationBar(Schema):
    label: str | None
    type: str
    group: str | None
    percent_done: float
    total: int
    bar: list[tuple[str, float]]


class Card(Schema):
    """A pool's card on the overview (the home page), its figures as the page shows them."""

    slug: str
    name: str
    database: str
    health: Literal["ok", "error"]
    error: str | None
    status: Literal[overview.ATTENTION + overview.CALM]
    reasons: list[Reason]
    counts_age_seconds: float | None
    total: int | None
    counts: Counts | None = None
    done: int | None = None
    remaining: int | None = None
    percent_done: float | None = None
    done_last_hour: int | None = None
    failed_last_hour: int | None = None
    done_per_hour_24h: float | None = None
    failed_24h: int | None = None
    error_rate_last_hour: float | None = None
    eta_hours: float | None = None
    eta_basis: ETA_BASES | None = None
    black_holes: list[str] = []
    stale_locks: int | None = None
    stale_hours: float | None = None
    unknown_locks: int | None = None
    given_up: int | None = None
    last_activity: datetime | None = None
    last_finish_hour: datetime | None = None
    observations: list[ObservationBar] = []
    more_observations: int = 0
    observations_total: int = 0


class Overview(Schema):
    pools: list[Card]
    all_quiet: bool


@router.get("/overview", response={200: Overview, **errors(401, 500)}, tags=["pools"])
def get_overview(request):
    """The overview's cards, those that need attention first: progress, throughput, ETA and its basis, error
    rate, stale locks, black-hole hosts, last activity, observations in progress; `all_quiet` when none needs it."""
    cards = payloads.overview_cards(request)
    return {"pools": [payloads.card_json(c) for c in cards], "all_quiet": overview.all_quiet(cards)}


@router.get("/pools", response={200: PoolList, **errors(401, 500)}, tags=["pools"])
def list_pools(request):
    """Every pool with its totals per state, from its latest counts."""
    return {"pools": [payloads.pool_row_json(r) for r in payloads.pool_rows(request)]}


Period = Annotated[Text | None, Query(description="The chart's period: 24h, 3d, 7d or 30d (default CHART_DAYS)")]


@router.get("/pools/{slug}", response={200: PoolDetail, **errors(400, *READ_ERRORS)}, tags=["pools"])
def get_pool(request, slug: Slug, period: Period = None):
    """A pool's counts per state and per observation (token type and group), with the age of those counts, its
    chart over the period and its ETA: the pool page's figures."""
    pool = pool_of(request, slug)
    return _page(payloads.pool_page, payloads.pool_answer, pool, period=period or "")


@router.get("/pools/{slug}/observation", response={200: ObservationDetail, **errors(400, *READ_ERRORS)},
            tags=["pools"])
def get_observation(request, slug: Slug, type: Annotated[Text, Query(min_length=1, description="Its token type")],
                    group: Annotated[Text | None, Query(description="Its group, if the pool groups")] = None,
                    period: Period = None):
    """One observation: its counts, GRID_LRT steps and overlaps, its chart over the period, its ETA and, for
    GRID_LRT, its own count view's figures: the observation page's."""
    pool = pool_of(request, slug)
    return _page(payloads.observation_page, payloads.observation_answer, pool, type=type, period=period or "",
                 **({} if group is None else {"group": group}))


def _page(page, answer, pool, **query):
    """A page's answer from the function that also makes its context (given the query as the page is); an unknown
    period is a 400, as on the page."""
    as_page = QueryDict(mutable=True)
    as_page.update(query)
    try:
        snap = snapshot_of(pool)
        context = page(pool, snap, as_page)
    except ValueError as e:
        raise HttpError(400, str(e)) from None
    return answer(pool, snap, context)
