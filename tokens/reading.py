"""Reading a pool for a page: observations and their counts (from the snapshot tokens.counting keeps), token lists,
failure groups, stale locks, a token's detail, GRID_LRT's own overview. Lists, stale locks and token detail are read
live, one key-range page at a time.
"""


import json
import time
from dataclasses import dataclass, field

from django.conf import settings

from tokens.couch import NotFound, Page
from tokens.states import (
    BUCKETS,
    OWN_DDOC,
    STATES,
    SURF,
    TIME_MIN,
    UNKNOWN_LOCKS,
    classify,
    group_label,
    group_of,
    lock_time,
    placement,
    stage_of,
    stale_locks_range,
    style_of,
)

JOB_ID_FIELDS = ("dirac_job_id", "wms_job_id", "cream_job_id", "pbs_job_id", "slurm_job_id")


@dataclass
class Observation:
    type: str
    group: str | None
    label: str
    counts: dict
    done_recent: int = 0
    finished_recent: int = 0
    # GRID_LRT's: the held tokens by step {stage: n}, and the tokens a second worker view lists {(bucket, also): n}
    stages: dict = field(default_factory=dict)
    overlaps: dict = field(default_factory=dict)

    @property
    def total(self):
        return sum(self.counts.values())

    @property
    def remaining(self):
        return remaining(self.counts)

    @property
    def not_locked(self):
        """The tokens an operator's job on the whole observation may act on (a locked one's worker may hold it)."""
        return self.total - self.counts.get("locked", 0)

    @property
    def failed_recent(self):
        return self.finished_recent - self.done_recent

    @property
    def percent_done(self):
        return round(100.0 * self.counts["done"] / self.total, 1) if self.total else 0.0

    @property
    def eta_hours(self):
        """Hours until todo and locked are finished at the last hour's rate; None if nothing finished."""
        if not self.remaining:
            return 0.0
        return round(self.remaining / self.finished_recent, 2) if self.finished_recent else None

    def bar(self):
        """Percent widths of the stacked bar: the four states, out-of-view buckets last."""
        total = self.total or 1
        return [(b, round(100.0 * self.counts[b] / total, 2)) for b in BUCKETS if self.counts[b]]

    def overlap_notes(self):
        """[(bucket, n, note)] for the tokens counted in one bucket that a second worker view lists too."""
        order = {b: i for i, b in enumerate(BUCKETS)}
        return [(bucket, n, overlap_note(bucket, also, n))
                for (bucket, also), n in sorted(self.overlaps.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))]

    def as_json(self):
        return {
            "type": self.type,
            "group": self.group,
            "label": self.label,
            "counts": self.counts,
            "stages": self.stages or None,
            "also_in": [{"counted_as": bucket, "also_in": also.split("+"), "count": n}
                        for (bucket, also), n in sorted(self.overlaps.items())],
            "total": self.total,
            "percent_done": self.percent_done,
            "done_last_hour": self.done_recent,
            "finished_last_hour": self.finished_recent,
            "failed_last_hour": self.failed_recent,
            "eta_hours": self.eta_hours,
        }


def overlap_note(bucket, also, n=1):
    """What an operator reads beside a count (or a token) that a second worker view lists too."""
    views = [v for v in also.split("+") if v]
    says = f"also in the workers' {' and '.join(views)} view{'s' if len(views) > 1 else ''}"
    one = n == 1
    if bucket == "todo":
        return f"{says}; the pilots will take {'it' if one else 'them'} again (lock and done are 0)"
    if bucket in ("locked", "locked_unknown"):
        return f"{says}; a pilot still holds {'it' if one else 'them'} (lock set, done 0): its pilot closes " \
               f"{'it' if one else 'them'}, or {'it is a stale lock' if one else 'they are stale locks'} if it died"
    return f"{says} too"


OVERVIEW_KEYS = ("todo", "waiting", "downloading", "running", "done", "error")


def worker_overview(pool, data, type_):
    """GRID_LRT's own figures for a token type, as its tools show them: its design document's count view
    (overview_view; 0.5: overview_total) reduced now. None for a SURF type or a design document without one.
    Raises CouchError."""
    d = next((d for d in data["design_docs"] if d["type"] == type_ and d["style"] != SURF and d["count_view"]), None)
    if d is None:
        return None
    figures = dict.fromkeys(OVERVIEW_KEYS, 0)
    for row in pool.couch().view(d["name"], d["count_view"], group=True)["rows"]:
        if row.get("key") in figures and isinstance(row.get("value"), int | float):
            figures[row["key"]] = row["value"]
    return {"design_doc": d["name"], "view": d["count_view"], "figures": figures}


def overview_beside(o, theirs):
    """[(key, GRID_LRT's figure, the dashboard's, why they differ or "")]: GRID_LRT's overview rows against the
    dashboard's counts of the same observation. Its conditions overlap (contract, section 6), ours do not."""
    held = o.stages
    ours = {"todo": o.counts["todo"], "waiting": held.get("waiting", 0), "downloading": held.get("downloading", 0),
            "running": held.get("waiting", 0) + held.get("running", 0), "done": o.counts["done"],
            "error": o.counts["error"]}
    why = {
        "todo": "",
        "waiting": "GRID_LRT counts status launched on closed tokens too",
        "downloading": "GRID_LRT counts status downloading on closed tokens too",
        "running": "GRID_LRT's running is every held token not downloading: the waiting ones too",
        "done": "GRID_LRT's overview counts closed tokens with output 0, whatever their status; the dashboard "
                "counts its done view's tokens that no pilot takes or holds",
        "error": "GRID_LRT's overview counts every held token whose output is not 0 (a running one has none yet); "
                 "the dashboard counts its error view's tokens that no pilot takes or holds",
    }
    return [(k, theirs[k], ours[k], why[k] if theirs[k] != ours[k] else "") for k in OVERVIEW_KEYS]


def second_views(doc, styles):
    """(the worker views that list a token besides the one it is counted in, "error", "done" or "error+done" as the
    progress view keys them; what that says, in words): ("", "") for nearly every token."""
    bucket, also = placement(doc, style_of(doc, styles or {}))
    return ("+".join(also), overlap_note(bucket, "+".join(also))) if also else ("", "")


def remaining(counts):
    """The tokens still to finish among counts per bucket: waiting, or claimed and not yet done."""
    return counts["todo"] + counts["locked"] + counts["locked_unknown"]


def empty_counts():
    return dict.fromkeys(BUCKETS, 0)


def ungrouped_type_problem(data, type_, group):
    """Why a selection of token type `type_` without a group can match nothing by construction, or None: in a
    pool grouped by a field, a type whose tokens all carry a group (the CLI's --type without --group, the API's
    ?type= alone). A selection that can match and happens to match nothing is no problem: its list says so."""
    if not type_ or group is not None or not data or not data.get("group_field"):
        return None
    groups = sorted(o.group for o in observations(data) if o.type == type_ and o.group is not None)
    if not groups or any(o.type == type_ and o.group is None for o in observations(data)):
        return None
    shown = ", ".join(groups[:5]) + (f" and {len(groups) - 5} more" if len(groups) > 5 else "")
    return (f"Every token of type {type_!r} has a {data['group_field']}: name the group too "
            f"(group {shown})")


def observations(data):
    """One Observation per (token type, group), in the order of their labels."""
    by_key = {}
    names = {}
    for d in data["design_docs"]:
        names.setdefault(d["type"], []).append(d["name"])

    def obs(type_, group):
        key = (type_, group)
        if key not in by_key:
            if data["group_field"]:
                label = group_label(group, data["group_field"])
                if len(data["types"]) > 1:
                    label = f"{label} · {type_}"
            else:
                label = ", ".join(names.get(type_, [type_]))
            by_key[key] = Observation(type_, group, label, empty_counts())
        return by_key[key]

    for bucket, type_, group, n in data["buckets"]:
        obs(type_, group).counts[bucket] += n
    for type_, group, bucket, also, stage, n in data.get("progress", []):
        o = obs(type_, group)
        if stage:
            o.stages[stage] = o.stages.get(stage, 0) + n
        if also:
            o.overlaps[(bucket, also)] = o.overlaps.get((bucket, also), 0) + n
    for _slot, bucket, type_, group, n in data.get("finished", []):
        o = obs(type_, group)
        o.finished_recent += n
        if bucket == "done":
            o.done_recent += n
    return sorted(by_key.values(), key=lambda o: (o.label or "", o.type))


def pool_totals(data):
    totals = empty_counts()
    for bucket, _t, _g, n in data["buckets"]:
        totals[bucket] += n
    return totals


def failure_groups(data, type_=None, group=None):
    """Error tokens grouped by code and normalised message, largest first, small groups folded."""
    groups = {}
    for code, msg, t, g, n in data.get("failures", []):
        if type_ is not None and (t, g) != (type_, group):
            continue
        groups[(code, msg)] = groups.get((code, msg), 0) + n
    total = sum(groups.values())
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))
    shown, other = [], []
    for (code, msg), n in ranked:
        if total and n / total < settings.FAILURE_GROUP_MIN_SHARE and len(ranked) > 1:
            other.append({"code": code, "message": msg, "count": n})
        else:
            shown.append({"code": code, "message": msg, "count": n})
    return {"total": total, "groups": shown, "other": other, "other_count": sum(o["count"] for o in other)}


# --- live reads: lists, stale locks, a token -------------------------------------------------


MAX_SCAN = 2000  # rows a filtered list reads per request before it offers "continue"


def selection_total(data, bucket=None, type_=None, group=None, failure=None):
    """How many tokens a list selection holds, from the snapshot's counts (as old as the snapshot)."""
    if failure is not None:
        return sum(n for code, msg, t, g, n in data.get("failures", [])
                   if (code, msg) == tuple(failure) and (type_ is None or (t, g) == (type_, group)))
    return sum(n for b, t, g, n in data.get("buckets", [])
               if b == bucket and (type_ is None or (t, g) == (type_, group)))


def token_page(pool, data, *, bucket=None, type_=None, group=None, failure=None,
               cursor=None, before=None, id_filter="", field_filter=None, limit=None):
    """One page of tokens, paged by key: from `cursor` on, or the page that ends just before `before` (the first
    row of the page the operator was on). Returns {"tokens", "next", "previous", "scanned"}, where
    "previous" is the cursor to pass as `before` for the page before this one (None on the first page).

    Selection: a bucket (optionally of one observation), or a failure group (code, message).
    Filters (id substring, field=value) are applied to the rows read; a filtered page reads at most
    MAX_SCAN rows and then hands back a cursor to go on from.
    """
    limit = limit or settings.PAGE_SIZE
    couch = pool.couch()
    keep = None
    if data["own_views"]:
        if failure is not None:
            code, msg = failure
            prefix = [code, msg] + ([type_, group] if type_ is not None else [])
            ddoc_view = (OWN_DDOC, "failures")
        else:
            prefix = [bucket] + ([type_, group] if type_ is not None else [])
            ddoc_view = (OWN_DDOC, "states")
        start, end = prefix, prefix + [{}]
    else:
        ddoc_view, keep = worker_state_view(data, bucket, type_, group)
        if ddoc_view is None:
            return {"tokens": [], "next": None, "previous": None, "scanned": 0}
        start, end = None, None
    if before:  # backwards from the row before `before` (the first row read is `before` itself)
        rows, more, scanned = _scan(couch, ddoc_view, before, start, True, id_filter, field_filter, limit + 1, keep)
        rows = [r for r in rows if [r["key"], r["id"]] != before]
        earlier = more is not None or len(rows) > limit
        rows = rows[:limit][::-1]
        return {"tokens": [r["doc"] for r in rows], "next": before, "scanned": scanned,
                "previous": [rows[0]["key"], rows[0]["id"]] if rows and earlier else None}
    rows, more, scanned = _scan(couch, ddoc_view, cursor or [start, None], end, False, id_filter, field_filter, limit,
                                keep)
    return {"tokens": [r["doc"] for r in rows], "next": more, "scanned": scanned,
            "previous": [rows[0]["key"], rows[0]["id"]] if cursor and rows else cursor}


def worker_state_view(data, bucket, type_, group):
    """Without the own views, where a bucket of one observation is read: ((design document, view), keep), the
    state view of the type's worker design document and which of its documents are in that bucket and observation
    (a token in two of GRID_LRT's views is in one bucket); (None, None) for a bucket no worker view holds."""
    names = [d["name"] for d in data["design_docs"] if d["type"] == type_]
    if bucket not in STATES or not names:
        return None, None
    ddoc = type_ if type_ in names else "Monitor" if "Monitor" in names else names[0]
    styles, group_field = data["types"], data["group_field"]

    def keep(doc):
        style = style_of(doc, styles)
        return classify(doc, style) == bucket and group_of(doc, group_field) == group

    return (ddoc, bucket), keep


def _scan(couch, ddoc_view, cursor, end, descending, id_filter, field_filter, limit, keep=None):
    """Rows of the view from `cursor` ([key, docid]) towards `end` whose documents match the filters (and `keep`):
    a page of `limit` rows, or with filters pages until `limit` match or MAX_SCAN rows were read. Returns (rows,
    where to go on or None, rows read)."""
    start_key, start_docid = cursor
    filtering = bool(id_filter or field_filter or keep)
    found, scanned = [], 0
    while True:
        page = couch.page(*ddoc_view, limit=limit, start_key=start_key, start_docid=start_docid, end_key=end,
                          include_docs=True, descending=descending)
        for row in page.rows:
            scanned += 1
            doc = row.get("doc")  # None: deleted meanwhile
            if doc is not None and matches(doc, id_filter, field_filter) and (keep is None or keep(doc)):
                found.append(row)
        if not page.has_next:
            return found, None, scanned
        start_key, start_docid = page.next_key, page.next_docid
        if len(found) >= limit or not filtering or scanned >= MAX_SCAN:
            return found, [start_key, start_docid], scanned


def matches(doc, id_filter, field_filter):
    if id_filter and id_filter.lower() not in doc["_id"].lower():
        return False
    if field_filter:
        name, value = field_filter
        if name not in doc:
            return False
        actual = doc[name]
        if isinstance(actual, (dict, list)):
            actual = json.dumps(actual)
        if str(actual) != value:
            return False
    return True


def encode_cursor(cursor):
    return json.dumps(cursor, separators=(",", ":")) if cursor else ""


def decode_cursor(text):
    """A cursor from a URL; anything malformed means "from the start"."""
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], str):
        return value
    return None


MAX_HOURS = 1_000_000.0  # the largest lock age one may ask about (some 114 years): pages, API and jobs agree


def stale_locks(pool, data, hours, cursor=None, limit=None):
    """Tokens locked longer than `hours`, oldest first, and the locks whose age is unknown."""
    limit = limit or settings.PAGE_SIZE
    if not data["own_views"]:
        return None
    couch = pool.couch()
    now = time.time()
    stale_range = stale_locks_range(now - hours * 3600)
    page, count = Page([]), []
    if stale_range:
        start_key, start_docid = cursor if cursor else (stale_range[0], None)
        page = couch.page(OWN_DDOC, "locks", limit=limit, start_key=start_key, start_docid=start_docid,
                          end_key=stale_range[1], include_docs=True)
        count = couch.view(OWN_DDOC, "locks", start_key=stale_range[0], end_key=stale_range[1])["rows"]
    stale = [lock_row(r["doc"], now) for r in page.rows if r.get("doc")]
    start, end = UNKNOWN_LOCKS
    unknown = couch.page(OWN_DDOC, "locks", limit=limit, start_key=start, end_key=end, include_docs=True)
    unknown_count = couch.view(OWN_DDOC, "locks", start_key=start, end_key=end)["rows"]
    return {
        "hours": hours,
        "count": count[0]["value"] if count else 0,
        "tokens": stale,
        "next": [page.next_key, page.next_docid] if page.has_next else None,
        "unknown": [lock_row(r["doc"], now) for r in unknown.rows if r.get("doc")],
        "unknown_count": unknown_count[0]["value"] if unknown_count else 0,
    }


def lock_row(doc, now):
    lock = lock_time(doc)
    age = now - lock if lock is not None else None
    return {
        "id": doc["_id"],
        "type": doc.get("type"),
        "lock": doc.get("lock"),
        "age_hours": round(age / 3600, 1) if age is not None else None,
        "hostname": doc.get("hostname", ""),
        "status": doc.get("status"),
        "job_ids": {f: doc[f] for f in JOB_ID_FIELDS if doc.get(f)},
    }


def get_token(pool, doc_id):
    """A token document and what the detail page derives from it. Raises NotFound."""
    doc = pool.couch().get(doc_id)
    # An id like ".." or "_all_docs" reaches another resource of the server, which answers without our _id.
    if doc.get("_id") != doc_id or doc_id.startswith("_design/"):
        raise NotFound("not a token")
    return doc


def token_facts(doc, styles):
    """Derived facts for the detail page: the bucket, times and ages, errors newest first."""
    now = time.time()

    def when(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= TIME_MIN:
            return {"epoch": value, "age_hours": round((now - value) / 3600, 2)}
        return None

    errors = doc.get("error")
    # Hand-edited and old tokens hold one error as text or an object instead of a list: shown all the same.
    history = list(reversed(errors)) if isinstance(errors, list) else [errors] if errors not in (None, "") else []
    style = style_of(doc, styles)
    bucket, also = placement(doc, style)
    return {
        "bucket": bucket,
        "also_in": overlap_note(bucket, "+".join(also)) if also else "",
        "stage": stage_of(doc, style, bucket),
        "lock": when(doc.get("lock")),
        "done": when(doc.get("done")),
        "errors": [e if isinstance(e, dict) else {"message": str(e)} for e in history],
        "job_ids": {f: doc[f] for f in JOB_ID_FIELDS if doc.get(f)},
        "attachments": sorted(
            ({"name": name, **{k: v for k, v in (meta or {}).items() if k in ("content_type", "length")}}
             for name, meta in (doc.get("_attachments") or {}).items()),
            key=lambda a: a["name"],
        ),
        "fields": {k: v for k, v in sorted(doc.items()) if k not in ("_attachments",)},
    }
