"""Which tokens a job touches, and the re-check that every token passes again right before it is written.

A selection is a state, stale locks, a failure group, an observation, explicit ids, or what an earlier job did.
`Selection.holds` is asked of every token as it is read and again after a 409; `preview` counts a selection
without writing. The rules (which token types the pool's design documents define, its grouping field) come from
the pool's design documents.
"""

import math
import time
from dataclasses import asdict, dataclass, field

from django.conf import settings
from django.db.models import Exists, OuterRef

from tokens.counting import ensure_own_views
from tokens.models import CountSnapshot, Job, JobToken, TokenState
from tokens.reading import MAX_HOURS, ungrouped_type_problem
from tokens.states import (
    BUCKET_LABELS,
    BUCKETS,
    OWN_DDOC,
    STATES,
    SURF,
    classify,
    describe_design_doc,
    failed_at,
    failure_key,
    group_of,
    js_string,
    lock_time,
    stale_locks_range,
    style_of,
    token_types,
    type_of,
)

HOST_BUCKETS = ("error", "locked")
JOB_OUTCOMES = {"changed": "changed", "skipped": "skipped", "failed": "failed on"}
KINDS = ("state", "stale", "failure", "observation", "ids", "job", "host", "given_up")
FAILED = ("error", "legacy_error")
MAX_JOB = 2**63 - 1  # the largest primary key every database takes
MAX_IDS = 10_000  # token ids in one selection
MAX_TEXT = 2000  # characters in any one value of a selection
PREVIEW_READ_MOST = 20_000  # an earlier job's tokens are read for its dry run up to this many (else counted)


class OperationError(Exception):
    """A job cannot be created or run as asked; the message is for the operator."""


def infer_kind(data):
    """The kind of a selection whose query does not say it, from what it names: a failure group (code), stale locks
    (hours), a job's tokens (job), a host's (hostname), a state, or a whole observation (type alone); None when it
    names none of these."""
    for name, kind in (("code", "failure"), ("hours", "stale"), ("job", "job"), ("hostname", "host"),
                       ("bucket", "state"), ("state", "state"), ("type", "observation")):
        if data.get(name) not in (None, ""):
            return kind
    return None


@dataclass
class Selection:
    """Which tokens a job touches. kind: state, stale, failure, observation (all its tokens), ids, job (the
    tokens an earlier job changed, skipped or failed: `job` its id, `outcome` which), host (the failed or
    locked tokens that name `hostname`: what a black hole failed, or what it holds), given_up (the failed tokens
    retry rules gave up on: tokens.retries), or retry (what a retry rule retries: failures of its group, `code`
    and `message` (None: any), failed at least `hours` ago; only a rule's job selects so)."""

    kind: str
    bucket: str | None = None
    type: str | None = None
    group: str | None = None
    hours: float | None = None
    code: str | None = None
    message: str | None = None
    ids: list = field(default_factory=list)
    job: int | None = None
    outcome: str | None = None
    hostname: str | None = None

    def as_dict(self):
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}

    @classmethod
    def from_query(cls, data):
        """The one way in: a form's fields, a link's query string (a QueryDict), an API body or the command line's
        options (a dict). Every value is checked here, once: a number out of range, a NUL or an overlong text is
        an OperationError that names the field. `state` is the token lists' name for `bucket`; ticked ids make
        the selection those ids (narrowed to the list's state, as the list showed them)."""
        ids = data.getlist("ids") if hasattr(data, "getlist") else data.get("ids") or []
        if isinstance(ids, str):
            ids = [ids]
        if len(ids) > MAX_IDS:
            raise OperationError(f"Select at most {MAX_IDS:,} tokens by id at a time (there were {len(ids):,})")
        selection = cls(
            kind=_text(data, "kind") or infer_kind(data) or "state",
            bucket=_text(data, "bucket") or _text(data, "state") or None,
            type=_text(data, "type") or None,
            group=_text(data, "group"),  # absent: the tokens without a group; "" is a group of its own
            hours=_number(data, "hours", "The lock age must be a number of hours", MAX_HOURS),
            code=_text(data, "code"),
            message=_text(data, "message") or "",
            ids=[i for i in (_checked_text(str(v), "ids") for v in ids) if i],
            job=_number(data, "job", "Name the job by its number, a whole number", MAX_JOB, whole=True, least=1),
            outcome=_text(data, "outcome") or None,
            hostname=_text(data, "hostname") or None,
        )
        if selection.ids:
            selection.kind = "ids"
        selection.validate()
        return selection

    def as_fields(self):
        """The one way out: [(name, value)] that from_query reads back as this selection; the hidden inputs of a
        form, a link's query (`as_query`), the API body's selection (`as_dict`) name the same fields."""
        fields = []
        for name, value in asdict(self).items():
            if name == "ids":
                fields += [("ids", i) for i in value]
            elif value is not None and (value != "" or name == "group"):
                fields.append((name, f"{value:g}" if name == "hours" else str(value)))
        return fields

    def as_query(self):
        """The selection as a link's query string (urlencoded)."""
        from urllib.parse import urlencode

        return urlencode(self.as_fields())

    @classmethod
    def from_dict(cls, data):
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def validate(self):
        if self.kind == "state" and self.bucket not in BUCKETS:
            raise OperationError(f"Unknown state {self.bucket!r}: one of {', '.join(BUCKETS)}" if self.bucket else
                                 f"Name the state of the tokens to act on: one of {', '.join(BUCKETS)}")
        if self.kind == "stale" and (self.hours is None or not math.isfinite(self.hours) or self.hours < 0):
            raise OperationError("A stale-lock selection needs a lock age in hours (0 or more)")
        if self.kind == "failure" and self.code is None:
            raise OperationError("A failure-group selection needs an exit code")
        if self.kind == "ids" and not self.ids:
            raise OperationError("Select at least one token")
        if self.kind == "observation" and not self.type:
            raise OperationError("Name the observation (token type, and group if the pool has one)")
        if self.kind == "stale" and self.type:
            raise OperationError("Stale locks are selected across the whole pool (no observation)")
        self.ids = list(dict.fromkeys(self.ids))  # a token listed twice is still one token
        if self.kind == "job":
            self._validate_job()
        if self.kind == "host" and (not self.hostname or self.bucket not in HOST_BUCKETS):
            raise OperationError("A host selection names the host and the state: error (what failed there) or "
                                 "locked (what runs there now)")
        if self.kind == "retry" and (self.hours is None or not math.isfinite(self.hours) or self.hours < 0):
            raise OperationError("A retry rule's selection needs the least time since the failure")
        if self.kind not in (*KINDS, "tokenset", "retry"):
            raise OperationError(f"Unknown selection {self.kind!r}")

    def refuse_to_act(self):
        """What a job may not select though a list or an export may: the locked tokens by state (a live worker
        may hold them; a job selects them by lock age)."""
        if self.kind == "state" and self.bucket == "locked":
            raise OperationError("Locked tokens are acted on by lock age (a live worker may hold them): "
                                 "use Stale locks, or --stale-hours")

    def _validate_job(self):
        if self.outcome not in JOB_OUTCOMES:
            raise OperationError("Name the outcome: the tokens a job changed, skipped or failed")
        try:
            self.job = int(self.job)
        except (TypeError, ValueError):
            raise OperationError("Name the job by its number") from None
        if not Job.objects.filter(pk=self.job).exists():
            raise OperationError(f"There is no job {self.job}")

    def host_tokens(self, pool):
        """The tokens of this selection (kind host) as the dashboard's table of states has them: each is read and
        re-checked before it is written, so a token that moved since is skipped."""
        return TokenState.objects.filter(pool=pool, bucket=self.bucket, hostname=self.hostname)

    def given_up_tokens(self, pool):
        """The records of the given-up tokens (kind given_up) whose tokens are failed still, as the table of
        states has them; each is re-checked when read."""
        from tokens.models import GivenUp

        still = TokenState.objects.filter(pool=pool, doc_id=OuterRef("doc_id"), bucket__in=FAILED)
        return GivenUp.objects.filter(pool=pool).filter(Exists(still))

    def job_tokens(self):
        """The records of the tokens this selection names (kind job), in the order the job met them."""
        return JobToken.objects.filter(job_id=self.job, outcome=self.outcome).order_by("pk")

    def describe(self):
        where = ""
        if self.type:
            where = f" of {self.group or self.type}"
        if self.kind == "state":
            return f"{BUCKET_LABELS[self.bucket]} tokens{where}"
        if self.kind == "stale":
            return f"tokens{where} locked longer than {self.hours:g} hour{'' if self.hours == 1 else 's'}"
        if self.kind == "failure":
            return f"failed tokens{where} with exit code {self.code} and error “{self.message or '(no message)'}”"
        if self.kind == "observation":
            return f"all tokens{where} in every state but locked (a worker may hold those: use Stale locks)"
        if self.kind == "tokenset":
            return f"a new token set of type {self.type}"
        if self.kind == "job":
            return f"the tokens job {self.job} {JOB_OUTCOMES.get(self.outcome, self.outcome)}"
        if self.kind == "host":
            what = "failed" if self.bucket == "error" else "running (locked)"
            return f"{what} tokens{where} on host {self.hostname}"
        if self.kind == "given_up":
            return "failed tokens the retry rules gave up on (all their attempts used)"
        if self.kind == "retry":
            return f"failed tokens with {self.failures_in_words()}, failed at least {_minutes(self.hours * 60)} ago"
        return f"{len(self.ids)} selected token{'s' if len(self.ids) != 1 else ''}"

    def view_ranges(self, now, held=False):
        """[(view, start key, end key)] of the dashboard's own views that hold the selection. A whole observation's
        locked tokens are left out (a job never acts on what a worker may hold) unless `held` (an export reads them)."""
        scope = [self.type, self.group] if self.type else []
        if self.kind == "state":
            return [("states", [self.bucket, *scope], [self.bucket, *scope, {}])]
        if self.kind == "observation":
            return [("states", [b, *scope], [b, *scope, {}]) for b in BUCKETS if held or b != "locked"]
        if self.kind == "failure":
            return [("failures", [self.code, self.message or "", *scope], [self.code, self.message or "", *scope, {}])]
        if self.kind == "stale":
            stale_range = stale_locks_range(now - self.hours * 3600)
            return [("locks", *stale_range)] if stale_range else []
        if self.kind == "retry":
            if self.code is None:
                return [("states", [b], [b, {}]) for b in FAILED]
            key = [self.code] if self.message is None else [self.code, self.message]
            return [("failures", key, [*key, {}])]
        raise ValueError(self.kind)

    def holds(self, doc, rules, now):
        """Whether a token (as just read) is still in the selection: the re-check before every write."""
        style = rules.style_of(doc)
        if style is None or doc["_id"].startswith("_design/"):
            return False
        bucket = classify(doc, style)
        if self.type and type_of(doc, rules.styles) != self.type:
            return False
        if self.type and group_of(doc, rules.group_field) != self.group:
            return False  # another observation (None: the tokens without a group)
        if self.kind == "host" and (doc.get("hostname") != self.hostname or bucket != self.bucket):
            return False
        if bucket == "locked" and self.kind not in ("stale", "host"):
            return False  # a worker may hold it: writing now would make the worker drop its result
        if self.kind == "retry":
            return bucket in FAILED and self._retry_holds(doc, style, now)
        if self.kind == "given_up":
            return bucket in FAILED and (bucket != "error" or _failed_long_enough(doc, now, explicit=True))
        if bucket == "error" and not _failed_long_enough(doc, now, explicit=self.kind in ("ids", "job")):
            return False  # just failed: picas's max_scrub retry may be scrubbing it this very moment
        if self.kind == "state" or (self.kind == "ids" and self.bucket):
            return bucket == self.bucket
        if self.kind == "stale":
            taken = lock_time(doc)  # None for a lock of "Infinity": locked, but of no age
            return bucket == "locked" and taken is not None and now - taken > self.hours * 3600
        if self.kind == "failure":
            code = doc.get("exit_code") if style == SURF else doc.get("output")
            code = js_string(code) if code not in (None, "") else "(none)"  # as the failures view keys it
            return bucket in ("error", "legacy_error") and code == self.code
        return True  # explicit ids, a whole observation: whatever state they are in


    def failures_in_words(self):
        """The failures a retry rule's selection names (None: any), as pages and jobs say them."""
        if self.code is None:
            return "any failure"
        if self.message is None:
            return f"exit code {self.code} (any message)"
        return f"exit code {self.code} with error “{self.message or '(no message)'}”"

    def names_failure(self, code, message):
        """Whether a failure group (code, normalised message) is one a retry rule's selection names."""
        return (self.code is None or code == self.code) and (self.message is None or message == self.message)

    def _retry_holds(self, doc, style, now):
        return self.names_failure(*failure_key(doc, style)) and self.retry_due(doc, now)

    def retry_due(self, doc, now):
        """Whether a failed token of a retry rule's failures failed long enough ago to be retried."""
        failed = failed_at(doc)  # never a failure of unknown time: nobody has looked at it
        wait = max(settings.JOB_FINISHED_GRACE_SECONDS, self.hours * 3600)
        return failed is not None and now - (failed + 1) >= wait


def _minutes(minutes):
    if minutes < 120:
        return f"{minutes:g} minute{'' if minutes == 1 else 's'}"
    return f"{minutes / 60:g} hours"


def _text(data, name):
    """A text value of a selection, checked; None when absent (or null in an API body)."""
    value = data.get(name)
    return None if value is None else _checked_text(str(value), name)


def _checked_text(value, name):
    if "\x00" in value:
        raise OperationError(f"{name}: a NUL character is not allowed")
    if len(value) > MAX_TEXT:
        raise OperationError(f"{name}: at most {MAX_TEXT:,} characters (there were {len(value):,})")
    return value


def _number(data, name, must, most, whole=False, least=0):
    """A number of a selection, range-checked where it is read: None when absent or empty."""
    given = data.get(name)
    if given is None or given == "":
        return None
    words = f"{must} from {least} to {most:,.0f}"
    try:
        number = int(str(given).strip()) if whole else float(given)
    except (TypeError, ValueError, OverflowError):
        raise OperationError(f"{words}, not {_shown(given)}") from None
    if not math.isfinite(number) or not least <= number <= most:
        raise OperationError(f"{words}, not {_shown(given)}")
    return number


def _shown(value):
    """A value the operator gave, as a message quotes it (never thousands of characters)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _failed_long_enough(doc, now, explicit=False):
    """Whether a failed token failed more than the grace period before `now`. A failure of unknown time is never
    old enough for a selection by state or group; an operator who names the token by id has looked at it."""
    failed = failed_at(doc)
    if failed is None:
        return explicit
    # picas stamps whole seconds (int(time.time())): the failure happened up to a second after its stamp.
    return now - (failed + 1) >= settings.JOB_FINISHED_GRACE_SECONDS


@dataclass
class Rules:
    """What a pool's design documents say: {token type: style}, and the pool's grouping field."""

    styles: dict
    group_field: str | None
    own_views: bool

    def style_of(self, doc):
        """The token's style; None for a document of no known type (a type that is not text included)."""
        return style_of(doc, self.styles)


def pool_rules(pool, couch):
    design_docs = couch.design_docs()
    styles = token_types([d for d in map(describe_design_doc, design_docs) if d])
    return Rules(styles, pool.group_field or None, ensure_own_views(pool, couch, styles, design_docs))


def why_not(doc, rules, now):
    bucket = classify(doc, rules.style_of(doc))
    if bucket is None:
        return "not a token of this pool's types"
    if bucket == "locked":
        return "locked: a worker may hold it (act on locks by age)"
    if bucket == "error" and failed_at(doc) is None:
        return "failed at an unknown time (no done time, error time or status time): select it by id to act on it"
    if bucket == "error" and not _failed_long_enough(doc, now):
        return "failed moments ago: its pilot may still retry it"
    return f"not in the selection (now {bucket})"


def preview(pool, selection, sample_size=10):
    """The number of tokens a job would touch now, and the first ids, without writing anything."""
    selection.validate()
    selection.refuse_to_act()
    counted = CountSnapshot.objects.filter(pool=pool.slug).values_list("data", flat=True).first()
    if problem := ungrouped_type_problem(counted, selection.type, selection.group):
        raise OperationError(problem)
    couch = pool.couch()
    rules = pool_rules(pool, couch)
    now = time.time()
    if selection.kind == "ids":
        docs = [d for d in fetch(couch, selection.ids) if selection.holds(d, rules, now)]
        return {"count": len(docs), "sample": [d["_id"] for d in docs[:sample_size]]}
    if selection.kind in ("host", "given_up"):  # the table of states; each is re-checked when read, as always
        records = selection.host_tokens(pool.slug) if selection.kind == "host" else \
            selection.given_up_tokens(pool.slug)
        return {"count": records.count(), "sample": list(records.order_by("doc_id")
                                                         .values_list("doc_id", flat=True)[:sample_size])}
    if selection.kind == "job":
        if Job.objects.get(pk=selection.job).pool != pool.slug:
            raise OperationError(f"Job {selection.job} was on another pool")
        records = selection.job_tokens()
        if records.count() > PREVIEW_READ_MOST:  # counted from the job's records; each is re-checked when read
            return {"count": records.count(), "sample": list(records.values_list("token_id", flat=True)
                                                             [:sample_size])}
        # Read as a job would read them: a token deleted since, or in another state now, is not promised.
        ids = list(records.values_list("token_id", flat=True))
        count, sample = 0, []
        for start in range(0, len(ids), 1000):
            held = [d["_id"] for d in fetch(couch, ids[start:start + 1000]) if selection.holds(d, rules, now)]
            count += len(held)
            sample += held[:sample_size - len(sample)]
        return {"count": count, "sample": sample}
    if not rules.own_views:
        raise OperationError("Jobs on a state need the dashboard's own design document (COUCHDB_CREATE_VIEWS)")
    count, sample = 0, []
    for view, start, end in selection.view_ranges(now):
        rows = couch.view(OWN_DDOC, view, start_key=start, end_key=end, reduce=True)["rows"]
        count += rows[0]["value"] if rows else 0
        if len(sample) < sample_size:
            page = couch.page(OWN_DDOC, view, limit=sample_size - len(sample), start_key=start, end_key=end)
            sample += [r["id"] for r in page.rows]
    return {"count": count, "sample": sample}


def fetch(couch, ids):
    """Documents by id, one _all_docs request; missing and deleted ones are left out."""
    return [doc for doc in couch.docs(ids) if doc is not None]


def needs_typed_confirmation(action, count):
    return action == "delete" or count > settings.JOB_CONFIRM_THRESHOLD


def list_selection(params, data):
    """What a token list shows (the list page's query, the API's parameters): a bucket, or a failure group, of the
    pool or of one observation, read as every selection is. {"bucket", "type_", "group", "failure"} for
    reading.token_page; OperationError for a state unknown or one this pool's views cannot list."""
    failure = params.get("code") is not None
    query = {"kind": "failure" if failure else "state",
             "state": params.get("state") or ("error" if failure else "todo"), "type": params.get("type"),
             "code": params.get("code"), "message": params.get("message") or ""}
    if params.get("group") is not None:
        query["group"] = params["group"]  # absent: the tokens without a group; "" is a group of its own
    selection = Selection.from_query(query)
    bucket = query["state"]
    if bucket not in BUCKETS:
        raise OperationError(f"Unknown state {bucket!r}: one of {', '.join(BUCKETS)}")
    if not data["own_views"] and bucket not in STATES:
        raise OperationError(f"State {bucket!r} needs the dashboard's own views in this pool")
    if problem := ungrouped_type_problem(data, selection.type, selection.group):
        raise OperationError(problem)
    return {"bucket": bucket, "type_": selection.type, "group": selection.group,
            "failure": (selection.code, selection.message) if failure else None}
