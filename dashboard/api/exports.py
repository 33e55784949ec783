"""Exports: any token list as CSV or JSON lines, streamed (the web UI's export, with an API token)."""

from typing import Annotated, Literal

from django.http import QueryDict
from ninja import Query, Router
from ninja.errors import HttpError

from dashboard import web
from dashboard.api.common import MAX_HOURS, READ_ERRORS, Bucket, Error, Slug, Text, pool_of, snapshot_of
from tokens import exports

router = Router(tags=["tokens"])


EXPORT_CONTENT = {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}


@router.get("/pools/{slug}/export", response={400: Error, **READ_ERRORS}, tags=["tokens"],
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
    pool = pool_of(request, slug)
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
    return web.download(made)
