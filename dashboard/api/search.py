"""Search across the pools the caller may see: the header's box as JSON (tokens.search)."""

from typing import Annotated

from ninja import Query, Router, Schema
from ninja.errors import HttpError

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, Text, errors
from tokens.search import SearchError

router = Router(tags=["search"])


class Match(Schema):
    kind: str
    pool: str
    pool_name: str
    label: str
    state: str
    state_label: str
    detail: str
    url: str


class Found(Schema):
    query: str
    field: str | None
    matches: list[Match]
    notes: list[str]


@router.get("/search", response={200: Found, **READ_ERRORS, **errors(400, 504)})
def search(request, q: Annotated[Text, Query(description="A token id (or its start), an "
                                              "observation, a host, a job number, a user, a SURL or file name, "
                                              "or field:value")]):
    """Tokens, observations, hosts, jobs and people matching `q`, in the pools the caller may see."""
    try:
        return payloads.search_page(request, q)
    except SearchError as e:
        raise HttpError(400, str(e)) from None
