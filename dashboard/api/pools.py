"""Pools: the list with their totals, and one pool's counts per state and per observation."""

from typing import Any, Literal

from ninja import Router, Schema

from dashboard import views
from dashboard.api.common import READ_ERRORS, Counts, CountsMeta, Slug, errors, pool_of, snapshot_of
from tokens import reading

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


@router.get("/pools", response={200: PoolList, **errors(401, 500)}, tags=["pools"])
def list_pools(request):
    """Every pool with its totals per state, from its latest counts."""
    return {"pools": [views.pool_row_json(r) for r in views.pool_rows()]}


@router.get("/pools/{slug}", response={200: PoolDetail, **READ_ERRORS}, tags=["pools"])
def get_pool(request, slug: Slug):
    """A pool's counts per state and per observation (token type and group), with the age of those counts."""
    pool = pool_of(slug)
    snap = snapshot_of(pool)
    return views.pool_payload(pool, snap, reading.observations(snap.data), reading.pool_totals(snap.data))
