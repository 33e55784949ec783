"""Pools: the list with their totals, and one pool's counts per state and per observation."""

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Router, Schema

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, Counts, CountsMeta, Slug, errors, pool_of, snapshot_of
from tokens import overview, reading

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


class PoolDetail(CountsMeta):
    counts: Counts
    total: int
    observations: list[Observation]
    design_documents: list[dict[str, Any]]


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
    eta_basis: Literal["complete", "last hour", "last 24 hours", "no progress in 24 hours",
                       "waits for the pool's past"] | None = None
    black_holes: list[str] = []
    stale_locks: int | None = None
    stale_hours: float | None = None
    unknown_locks: int | None = None
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


@router.get("/pools/{slug}", response={200: PoolDetail, **READ_ERRORS}, tags=["pools"])
def get_pool(request, slug: Slug):
    """A pool's counts per state and per observation (token type and group), with the age of those counts."""
    pool = pool_of(request, slug)
    snap = snapshot_of(pool)
    return payloads.pool_payload(pool, snap, reading.observations(snap.data), reading.pool_totals(snap.data))
