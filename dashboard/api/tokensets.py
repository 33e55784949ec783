"""New token sets through the API: the web form's and `manage.py tokenset`'s checks and words (tokens.tokensets),
a dry run by default, a job with `dry_run: false`. Operators only."""

from typing import Annotated, Any

from ninja import Field, Router, Schema
from pydantic import AfterValidator

from dashboard import payloads
from dashboard.api.common import READ_ERRORS, Slug, Text, errors, plain_text, pool_of
from dashboard.api.jobs import JobOut
from tokens import operations, selections, tokensets, uploads

router = Router(tags=["jobs"])
LongText = Annotated[str, AfterValidator(plain_text)]  # bounded by the site's settings, not the schema


class TokenSetIn(Schema):
    token_type: Text = Field(description="The GRID_LRT token type (or \"token\" for SURF's)")
    config: LongText = Field(description="The step's configuration: YAML or JSON text (at most "
                             "TOKENSET_CONFIG_MAX_BYTES)")
    input_list: LongText = Field(description="The SURLs (or any items), one a line; at most TOKENSET_INPUT_MAX_BYTES")
    per_token: int | str = Field(10, description="Items per token")
    key_field: Text = Field("STARTSB")
    id_prefix: Text = Field("SB")
    id_suffix: Text = Field("")
    id_template: Text = Field("")
    attachment: Text = Field("srm.txt", description="The attachment holding a token's items "
                            "(\"\": none)")
    create_views: bool = Field(True, description="Create the token type's design document if it is missing")
    dry_run: bool = Field(True, description="true (the default): only count and show; false: create and queue")
    confirm: int | None = Field(None, ge=0, le=2**63 - 1, description="The count, typed, when needs_confirmation")


class TokenSetPreview(Schema):
    dry_run: bool
    count: int
    observation: str | None
    keys: list[str]
    last_key: str
    first: dict[str, Any] = Field(description="The first token in full (its attachment apart)")
    attachment: dict[str, Any] | None
    existing: list[str] = Field(description="Ids of the set that exist already (never overwritten)")
    existing_count: int
    to_create: int
    create_views: str | None = Field(description="The design document it would create, if any")
    needs_confirmation: bool


@router.post("/pools/{slug}/tokensets", response={200: TokenSetPreview, 201: JobOut, **errors(400, 403, 413),
                                                  **READ_ERRORS})
def create_tokenset(request, slug: Slug, body: TokenSetIn):
    """A new token set: a dry run (the default: how many tokens, their keys, the first in full, the ids that exist;
    nothing written), or, with `dry_run: false`, a job that creates it. Refused as the form and `manage.py
    tokenset` refuse it, with the same words; more than JOB_CONFIRM_THRESHOLD tokens need `confirm`."""
    pool = pool_of(request, slug, operate=True)
    options = tokensets.options(body.token_type, str(body.per_token), body.key_field, body.id_prefix, body.id_suffix,
                                body.id_template, body.attachment, create_views=body.create_views)
    tokensets.config_limit_check(len(body.config.encode()))
    upload = tokensets.save_list(text=body.input_list)
    try:
        if body.dry_run:
            with tokensets.plan(body.config, upload, options) as the_plan:
                seen = tokensets.preview(pool, the_plan)
            return 200, {**{k: v for k, v in seen.items() if k != "ids"}, "dry_run": True,
                         "to_create": seen["count"] - seen["existing_count"],
                         "needs_confirmation": selections.needs_typed_confirmation("create", seen["count"])}
        job = tokensets.create_job(pool, request.auth, body.config, upload, options, confirmation=body.confirm,
                                   via="api")
    finally:
        uploads.forget(upload)  # the job has a link of its own to the list; a dry run keeps nothing
    operations.enqueue(job)
    job.refresh_from_db()
    return 201, payloads.job_json(job)
