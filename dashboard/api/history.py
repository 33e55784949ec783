"""A pool's past, from its token events: finishes per hour or day, the worker hosts with the black holes, and the
jobs and alerts its charts mark (for Grafana too)."""

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.errors import HttpError

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, CountsMeta, Slug, Text, errors, pool_of, snapshot_of
from dashboard.web import visible_pools
from tokens import events
from tokens import history as tokens_history

router = Router(tags=["history"])


class Host(Schema):
    hostname: str
    site: str
    running: int
    claims: int
    done: int
    failed: int
    failure_rate: float | None
    median_run: float | None = Field(None, description="Seconds from claim to finish, the median of the host's "
                                     "newest 1,000 runs in the window")
    first: datetime | None
    last: datetime | None


class BlackHole(Host):
    rate: float
    rest_rate: float


class Site(Schema):
    site: str
    hosts: int
    running: int
    claims: int
    done: int
    failed: int
    failure_rate: float | None
    last: datetime | None


class Hosts(CountsMeta):
    window: str
    since: datetime
    hosts: list[Host]
    sites: list[Site]
    black_holes: list[BlackHole]
    black_hole_rule: str


class Period(Schema):
    start: datetime
    done: int
    error: int
    running: int = Field(description="The most tokens locked at once in the period, sampled with the counts "
                                     "(summed over observations)")


class History(Schema):
    pool: str
    bucket: str
    since: datetime
    until: datetime
    type: str | None
    group: str | None
    periods: list[Period]


@router.get("/pools/{slug}/hosts", response={200: Hosts, **READ_ERRORS})
def list_hosts(request, slug: Slug, window: Literal["6h", "24h", "7d", "30d"] = "24h"):
    """Per worker host (and site, the host name's domain) over the window: running now, claims, done, failed,
    failure rate, median run time (lock to done), first and last seen; and the hosts flagged as black holes."""
    pool = pool_of(request, slug)
    return payloads.hosts_payload(pool, snapshot_of(pool), window)


@router.get("/pools/{slug}/history", response={200: History, **errors(400, *READ_ERRORS)})
def get_history(
    request,
    slug: Slug,
    bucket: Literal["hour", "day"] = "hour",
    since: Annotated[datetime | None, Query(description="ISO 8601; default 24 hours (bucket day: 30 days) ago")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; default now")] = None,
    type: Annotated[Text | None, Query(description="Token type of one observation")] = None,
    group: Annotated[Text | None, Query(description="Group of one observation (with type)")] = None,
):
    """Tokens finished (done, failed) per hour or day, from the pool's events: a reset does not change the past,
    and a token that failed and then was done counts in both periods."""
    pool = pool_of(request, slug)
    until = _aware(until) or timezone.now()
    since = _aware(since) or until - (timedelta(days=30) if bucket == "day" else timedelta(hours=24))
    try:
        periods = events.history(pool.slug, since, until, bucket, type or None, group or None)
    except ValueError as e:
        raise HttpError(400, str(e)) from None
    return {"pool": pool.slug, "bucket": bucket, "since": since, "until": until, "type": type or None,
            "group": group or None, "periods": periods}


def _aware(value):
    """A time without a zone is UTC, as every time the dashboard shows; one with a zone is taken to UTC, as the
    database is asked in it (PostgreSQL refuses offsets beyond 15:59, which ISO 8601 and Python allow)."""
    if value is None:
        return None
    if timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise HttpError(400, "since and until must be times between the years 1 and 9999 in UTC") from None


class AnnotationRow(Schema):
    pool: str
    time: int = Field(description="When the job started or the alert fired, Unix milliseconds (Grafana's time)")
    time_end: int | None = Field(description="When the job ended or the alert resolved, Unix milliseconds")
    kind: Literal["job", "alert"]
    text: str
    tags: list[str]
    job: int | None
    alert: int | None


class Annotations(Schema):
    annotations: list[AnnotationRow]


@router.get("/annotations", response={200: Annotations, **errors(401, 422, 500)})
def annotations(request,
                pools: Annotated[str | None, Query(max_length=2000, description="Pools by slug, comma-separated "
                                                   "(Grafana's ${pool:csv}); absent: every pool you may see")] = None,
                start: Annotated[float | None, Query(ge=0, le=1e11, description="Unix seconds; default a day "
                                                    "before `end`")] = None,
                end: Annotated[float | None, Query(ge=0, le=1e11, description="Unix seconds; default now")] = None):
    """What the charts mark, for a Grafana annotation query (docs/grafana): each job that started on the pools
    (who or which rule, what, on how many tokens) and each alert that fired, oldest first."""
    end = end if end is not None else time.time()
    start = start if start is not None else end - 86400
    wanted = {p.strip() for p in pools.split(",")} if pools else None
    rows = []
    for pool in visible_pools(request):
        if wanted is None or pool.slug in wanted:
            rows += [{"pool": pool.slug, "time": int(m["at"].timestamp() * 1000),
                      "time_end": int(m["end"].timestamp() * 1000) if m["end"] else None,
                      **{k: m[k] for k in ("kind", "text", "tags", "job", "alert")}}
                     for m in tokens_history.annotations(pool.slug, start, end)]
    return {"annotations": sorted(rows, key=lambda r: r["time"])}
