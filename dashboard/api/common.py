"""What every resource of the API shares: input types with their limits, error answers, a pool or its counts
or a 4xx, operators only."""

import json
import math
from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Path, Query, Schema
from ninja.errors import HttpError
from pydantic import AfterValidator, create_model

from dashboard import web
from tokens import counting, reading
from tokens.states import BUCKETS

MAX_LIMIT = 1000  # rows per page a caller may ask for
MAX_IDS = 10_000  # token ids in one job's selection
MAX_HOURS = reading.MAX_HOURS
MAX_ID = 2**63 - 1  # the largest primary key every database takes


class Error(Schema):
    detail: str
    errors: list[dict[str, Any]] | None = None


def errors(*codes):
    return dict.fromkeys(codes, Error)


READ_ERRORS = errors(401, 404, 422, 500, 502, 503)


def pool_of(request, slug, operate=False):
    """The pool if the caller may see it (else 404, as if there were none); with `operate`, a 403 for a viewer of
    it or for a read-only token."""
    return web.pool_or_404(request, slug, operate=operate)


def plain_text(value):
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


Text = Annotated[str, Field(max_length=2000), AfterValidator(plain_text)]
Slug = Annotated[str, Path(max_length=100, pattern=r"^[-a-zA-Z0-9_]+$")]
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
Bucket = Literal[BUCKETS]
Limit = Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="Rows per page (default PAGE_SIZE)")]
After = Annotated[Text | None, Query(description="The `next` of the previous page", max_length=20000)]
Before = Annotated[Text | None, Query(description="The `previous` of a page: the page before it", max_length=20000)]


def snapshot_of(pool):
    """The pool's latest counts; an error status when there are none at all yet."""
    snap = counting.snapshot(pool)
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


def cursor_from(text, name="after"):
    """A key cursor as a page handed it out; a malformed one is refused rather than read as 'start'."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        value = None
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[1], str)):
        given = "the `next` of the previous page" if name == "after" else "the `previous` of the page after it"
        raise HttpError(400, f"Malformed cursor `{name}`: pass back {given} unchanged")
    return value


Counts = create_model("Counts", __base__=Schema, **dict.fromkeys(BUCKETS, (int, 0)))


class Indexing(Schema):
    views: list[str] = Field(description="The dashboard's views whose index the server is building")
    progress: str = Field(description="What CouchDB 3 says of the build (_active_tasks, to admins), or empty")


class CountsMeta(Schema):
    pool: str
    counts_age_seconds: float = Field(description="Age of the snapshot the counts come from")
    counts_taken_at: datetime
    error: str | None = Field(description="The latest refresh failed with this; the counts are older")
    error_at: datetime | None
    indexing: Indexing | None = Field(None, description="While the server builds a new index: counted from the "
                                      "documents meanwhile; which views wait for it, and how far it is")
    own_views: bool
