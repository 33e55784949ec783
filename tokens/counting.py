"""The counts of a pool: every token's bucket kept in Django's database (TokenState) and moved forward from the
database's changes feed, and the snapshot of what the pages count from (CountSnapshot), refreshed in the background.

Counts over a whole pool come from grouped reduces of the dashboard's own views. On CouchDB these are
answered from stored reductions in milliseconds, but the embedded server computes them in O(rows)
(seconds at 100k tokens), so pages never run them: they read the latest `CountSnapshot`, and a stale
snapshot is refreshed by a Celery task while the page shows the one it has, with its age.
"""


import hashlib
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Q
from django.utils import timezone

from tokens import events, queue
from tokens.couch import CouchError, TimedOut
from tokens.models import CountSnapshot, TokenState, rows_where_in, upsert_rows
from tokens.pools import all_pools
from tokens.states import (
    OWN_DDOC,
    OWN_VIEW_NAMES,
    SURF,
    UNKNOWN_LOCKS,
    classify,
    describe_design_doc,
    group_of,
    own_design_doc,
    own_doc_is_current,
    stale_locks_range,
    token_types,
    type_of,
)

log = logging.getLogger(__name__)

RECENT_SECONDS = 3600


# --- the snapshot: everything a count on a page comes from ------------------------------------


def ensure_own_views(pool, couch, styles, design_docs):
    """Make sure the dashboard's own design document is current; return whether it can be used."""
    wanted = own_design_doc(styles, pool.group_field)
    existing = next((d for d in design_docs if d["_id"] == wanted["_id"]), None)
    if own_doc_is_current(existing, wanted):
        return True
    if not pool.create_views or not styles:
        return False
    if existing is not None:
        wanted["_rev"] = existing["_rev"]
    couch.put_design(OWN_DDOC, wanted)
    log.info("pool %s: wrote design document _design/%s for types %s", pool.slug, OWN_DDOC, sorted(styles))
    return True


def read_rules(couch):
    """(database info, design documents, the picas ones described, their token types and rules)."""
    info = couch.database_info()
    design_docs = couch.design_docs()
    described = [d for d in map(describe_design_doc, design_docs) if d]
    return info, design_docs, described, token_types(described)


def take_snapshot(pool, errors_changed=False):
    """Read everything the pages count from (the failure groups again if `errors_changed`). Raises CouchError."""
    couch = pool.couch()
    info, design_docs, described, styles = read_rules(couch)
    data = {
        "taken_at": time.time(),
        "doc_count": info.get("doc_count"),
        "design_docs": described,
        "types": styles,
        "group_field": pool.group_field or None,
        "own_views": ensure_own_views(pool, couch, styles, design_docs),
    }
    # Every token once, in one bucket, by the views' rules: from the own `states` view, or without it from the
    # documents themselves (the twin of the rules), kept current from the changes feed either way.
    building = []  # the views the server is still indexing: what comes from them waits, and the page says so
    errors_changed = sync_states(pool, couch, styles, info.get("update_seq"), building,
                                 own_views=data["own_views"]) or errors_changed
    data["buckets"] = [
        [bucket, type_, group, n] for bucket, type_, group, n in
        TokenState.objects.filter(pool=pool.slug).values_list("bucket", "type", "group")
        .annotate(n=Count("id")).order_by("bucket", "type", "group")
    ]
    if data["own_views"]:
        previous = CountSnapshot.objects.filter(pool=pool.slug).values_list("data", flat=True).first() or {}
        if errors_changed or "failures" not in previous or previous.get("indexing"):
            rows = _while_indexed(couch, "failures", building, group_level=4)
            data["failures"] = [[*r["key"], r["value"]] for r in rows] if rows is not None else \
                previous.get("failures", [])
        else:  # no failed token changed: the grouped reduce over every failure would give what we have
            data["failures"] = previous["failures"]
        data["stale_locks"] = _lock_counts(couch, building)
        if any(style != SURF for style in styles.values()):
            rows = _while_indexed(couch, "progress", building, group_level=5)
            data["progress"] = [[*r["key"], r["value"]] for r in rows] if rows is not None else \
                previous.get("progress", [])
    else:  # failure groups, stale locks and GRID_LRT's steps are keyed views of the own design document
        data["failures"] = []
    events.sample_running(pool.slug, data["buckets"])
    if building:
        data["indexing"] = {"views": building, "progress": couch.index_builds()}
    else:  # once, for a pool first seen, after its first counts and with every index built
        events.backfill(pool, couch, styles, token_state, DOCUMENT_PAGE)
    # Throughput and ETA: the tokens that finished in the last hour, from the events (a token that failed and
    # then was done counts twice, as the work it cost); after the backfill, so that a pool's first counts have them.
    since = data["finished_since"] = int(time.time()) - RECENT_SECONDS
    data["finished"] = events.finished_since(pool.slug, since)
    # The black holes as of these counts: judged here, in the background, because it reads every event of
    # the window, which grows with the pool (a page that did it itself grew with it).
    data["black_holes"] = [
        {k: h[k] for k in ("hostname", "failed", "done", "rate", "rest_rate", "running")}
        for h in events.black_holes(events.hosts(pool.slug, *events.black_hole_window(), medians=False))]
    data["events_backfilled"] = CountSnapshot.objects.filter(pool=pool.slug, backfilled=True).exists()
    return data


# --- the table of token states: counts that cost what changed, not what the pool holds ----------
#
# A grouped reduce of the `states` view is answered from stored reductions by CouchDB, but costs O(rows) on
# pouchdb-server (seconds at 100k tokens, more while pilots write). So the bucket of every token is kept in
# Django's database (TokenState): filled whole from the `states` view, then moved forward from the changes feed,
# re-classifying each changed token with the Python twin of the view's rules (states.classify). A refresh then
# costs the tokens changed since the last one. The table is filled whole again when the own design document
# changes, and recounted every COUNTS_REFILL_SECONDS by a worker beside the refreshes (a bound on any drift).

FILL_PAGE = 10_000
DOCUMENT_PAGE = 2_000  # whole documents: a smaller page than the view's rows
CHANGES_BATCH = 1_000
STAGED_DELETE = 20_000
STATE_FIELDS = ("pool", "doc_id", "bucket", "type", "group", "hostname")  # a TokenState row, as token_state gives it
ERROR_BUCKETS = {"error", "legacy_error"}


class Overtaken(Exception):
    """Another refresh moved the table forward first: it has done this work."""


def _while_indexed(couch, view, building, **params):
    """The rows of a query of an own view, or None (and the view noted in `building`) while the server is still
    building its index: the query waits COUNTS_INDEX_WAIT s, and the build goes on on the server meanwhile."""
    if "states" in building:  # built in the same pass (CouchDB) or just as new (pouchdb-server): not waited for
        building.append(view)
        return None
    try:
        return couch.view(OWN_DDOC, view, timeout=settings.COUNTS_INDEX_WAIT, **params)["rows"]
    except TimedOut:
        building.append(view)
        return None


def _lock_counts(couch, building):
    """How many locks are older than STALE_LOCK_HOURS, and how many of unknown age (reduced counts of a key range
    of the `locks` view: the overview's figures; the stale page lists them)."""
    hours = settings.STALE_LOCK_HOURS
    stale_range = stale_locks_range(time.time() - hours * 3600)
    stale = _while_indexed(couch, "locks", building, start_key=stale_range[0], end_key=stale_range[1]) \
        if stale_range else []
    unknown = None if stale is None else \
        _while_indexed(couch, "locks", building, start_key=UNKNOWN_LOCKS[0], end_key=UNKNOWN_LOCKS[1])
    return {"hours": hours, "count": stale[0]["value"] if stale else 0,
            "unknown": unknown[0]["value"] if unknown else 0, "counted": stale is not None and unknown is not None}


def token_state(doc, styles, group_field):
    """(bucket, type, group, hostname) of a document as the own `states` view emits it (the hostname is its value),
    or None where it emits nothing."""
    type_ = type_of(doc, styles)
    if type_ is None:
        return None
    return classify(doc, styles[type_]), type_, group_of(doc, group_field), events.hostname_of(doc)


def sync_states(pool, couch, styles, update_seq, building, recount=False, own_views=True):
    """Bring the pool's TokenState rows up to date. Returns whether a failed token may have changed. Notes "states"
    in `building` if it counted from the documents because the server is building the view's index.

    A pool seen first (or under new rules) is counted whole here. The hourly recount (COUNTS_REFILL_SECONDS) is
    asked of a worker of its own and this refresh goes on with the changes: at a million tokens a recount reads
    for minutes, and the counts must not wait for it (`recount`: this is that worker). Without `own_views` (a pool
    whose design documents the dashboard may not write) every count comes from the documents."""
    snap, _ = CountSnapshot.objects.get_or_create(pool=pool.slug)
    rules = own_design_doc(styles, pool.group_field)["views"]
    fingerprint = hashlib.sha256(json.dumps([rules, "view" if own_views else "documents"], sort_keys=True).encode()
                                 ).hexdigest()
    first = snap.filled_for != fingerprint or snap.filled_at is None
    due = not first and (recount or (timezone.now() - snap.filled_at).total_seconds() > settings.COUNTS_REFILL_SECONDS)
    try:
        touched = counted_whole = False
        if first or (due and (recount or not _queue_recount(pool, snap))):
            if snap.seq:  # the changes waiting first: each move an event with its host and exit code
                touched = _apply_all(pool, couch, styles, snap, snap.filled_for)
            building_states = _fill(pool, couch, snap, fingerprint, update_seq, styles, own_views) if first else \
                _recount(pool, couch, snap, update_seq, styles, own_views)
            if building_states:
                building.append("states")
            snap.refresh_from_db()
            counted_whole = True
        return _apply_all(pool, couch, styles, snap, fingerprint) or touched or counted_whole
    except Overtaken:  # a fill or recount overtaken: new rules, or another fill first
        return True


def _apply_all(pool, couch, styles, snap, rules):
    """Apply every change waiting, whoever else applies some meanwhile: a refresh overtaken by another (a worker's
    recount beside it, or a refresh whose claim was given up) goes on from where that one got, so that the counts it
    then takes hold every change made before it began; unless the table was filled under other rules than `rules`
    (a fingerprint) meanwhile: this refresh's rules are old. Returns whether a failed token may have changed; `snap`
    is read again."""
    touched = False
    while True:
        try:
            touched |= apply_changes(pool, couch, styles, snap.seq, snap.events_from)
            snap.refresh_from_db()  # where this refresh left the feed
            return touched
        except Overtaken:
            snap.refresh_from_db()
            if snap.filled_for != rules:
                return True
            touched = True  # what the other refresh applied is not known here: count the failures again


def _queue_recount(pool, snap):
    """Ask a worker for the pool's recount, unless one was asked for within the last hour (or
    COUNTS_REFILL_SECONDS, if longer: a recount whose worker died is asked for again then). Returns False when
    the broker cannot be reached: the caller recounts itself."""
    now = timezone.now()
    give_up = now - timedelta(seconds=max(3600, settings.COUNTS_REFILL_SECONDS))
    if snap.recount_started_at and snap.recount_started_at >= give_up:
        return True  # one is on its way (known without a write: on SQLite a write waits for the one writer)
    if not CountSnapshot.objects.filter(pk=snap.pk).filter(
            Q(recount_started_at__isnull=True) | Q(recount_started_at__lt=give_up)).update(recount_started_at=now):
        return True  # another refresh asked first
    try:
        queue.recount_counts(pool.slug, now.isoformat())
    except Exception as e:  # broker down: recount here rather than never
        log.warning("pool %s: could not queue a recount (%s); recounting in this refresh", pool.slug,
                    type(e).__name__)
        return False
    return True


def _fill(pool, couch, snap, fingerprint, update_seq, styles, own_views=True):
    """Count every token afresh; returns whether the server is still building the `states` index.

    The states are written a page at a time to rows of their own (a staging name in the pool column), then take the
    place of the pool's rows in one transaction: memory stays flat however large the pool (a million tokens held
    in a dict took a worker past 600 MB)."""
    staging = _staging_name()
    try:
        # Read after update_seq was taken, so it holds every change up to it; changes after it that it also holds
        # are applied again from the changes feed, which is harmless (it sets, never adds).
        if not own_views:
            count = _stage(staging, _states_from_documents(couch, styles, pool.group_field))
            source, building = "documents", False
        elif snap.filled_for != fingerprint:
            # A new pool, or a new version of the own views: the server has no index for them yet and builds it on
            # the first query, 6 to 11 minutes at 100,000 tokens on pouchdb-server, whose one thread then also
            # serves every other request slowly. So count first from the documents themselves, by the same rules
            # (the differential test holds the twin to the server's JavaScript). Then start the build; later refills
            # read it.
            count = _stage(staging, _states_from_documents(couch, styles, pool.group_field))
            source, building = "documents", not _index_ready(couch)
        else:  # the rules' index was built before (filled_at was lost): read it
            count, source, building = _stage_all(pool, couch, styles, staging, own_views)
        now = timezone.now()
        with transaction.atomic():
            if not CountSnapshot.objects.filter(pk=snap.pk, seq=snap.seq, filled_for=snap.filled_for).update(
                    seq=str(update_seq), filled_for=fingerprint, filled_at=now, events_from=snap.events_from or now,
                    recount_started_at=None):  # a recount asked for under the old rules would compare in vain
                raise Overtaken
            TokenState.objects.filter(pool=pool.slug).delete()
            TokenState.objects.filter(pool=staging).update(pool=pool.slug)
    finally:
        _drop_staged(staging)  # what a fill that failed had staged
    _log_count(pool, count, source, building)
    return building


def _recount(pool, couch, snap, update_seq, styles, own_views=True):
    """Count every token again under the same rules, beside the refreshes that follow the changes feed meanwhile;
    returns whether the server is rebuilding the `states` index. A token found elsewhere than its row says moved
    without the feed showing it: recorded as a recount event.

    The rows are staged as by _fill and compared with the pool's in the database: only the rows that differ are
    written (none, normally), so that the refreshes beside it wait for no million-row swap (SQLite has one writer).
    A token changed after `update_seq` (which the staged pages were read after) keeps the row the refreshes gave it
    or will give it: its staged row may be older. So the feed is not held back, and a recount is never thrown away
    because the feed moved on; it is if the rules changed while it read (its later pages may come from an index
    under new rules): a fill under them counts every token."""
    staging = _staging_name()
    changed = set()
    try:
        rules = _own_rev(couch)
        count, source, building = _stage_all(pool, couch, styles, staging, own_views)
        changed, seq = _changed_since(couch, update_seq)
        now = timezone.now()
        with transaction.atomic():
            # The snapshot's row first: it holds back a batch of the feed (PostgreSQL: that row; SQLite: the one
            # writer) between the last read of the feed here and the end of the comparison.
            if not CountSnapshot.objects.filter(pk=snap.pk, filled_for=snap.filled_for).update(
                    filled_at=now, recount_started_at=None) or _own_rev(couch) != rules:
                raise Overtaken
            changed |= _changed_since(couch, seq)[0]
            _delete_ids(staging, changed)
            had, found = _differences(pool.slug, staging, changed)
            events.record(events.recounted(pool.slug, had, found, now))
            upsert_rows(TokenState, STATE_FIELDS, ("pool", "doc_id"),
                        [(pool.slug, i, *state) for i, state in found.items()])
            _delete_ids(pool.slug, [i for i in had if i not in found])
    except BaseException:
        # Asked for again at the next refresh past the interval, not an hour later.
        CountSnapshot.objects.filter(pk=snap.pk).update(recount_started_at=None)
        raise
    finally:
        _drop_staged(staging)  # compared (or what a recount that failed left)
    _log_count(pool, count, source, building, len(changed))
    return building


def _own_rev(couch):
    """The revision of the dashboard's own design document (its rules), or None."""
    return next((d.get("_rev") for d in couch.design_docs() if d.get("_id") == f"_design/{OWN_DDOC}"), None)


def _delete_ids(pool_name, ids):
    ids = sorted(ids)
    for start in range(0, len(ids), 500):
        TokenState.objects.filter(pool=pool_name, doc_id__in=ids[start:start + 500]).delete()


def _drop_staged(staging):
    """Delete staged rows a slice at a time: a million in one statement would hold SQLite's one writer for seconds."""
    while TokenState.objects.filter(
            pk__in=TokenState.objects.filter(pool=staging).values("pk")[:STAGED_DELETE]).delete()[0]:
        pass


def _staging_name():
    return f"{TokenState.STAGING}{int(time.time())}~{uuid.uuid4().hex[:8]}"


def _stage_all(pool, couch, styles, staging, own_views=True):
    """Stage every token's state from the `states` view, or from the documents while the server rebuilds its index
    (it lost it, or compacts it) or without the view: (count, source, whether the index is being built)."""
    if not own_views:
        return _stage(staging, _states_from_documents(couch, styles, pool.group_field)), "documents", False
    try:
        return _stage(staging, states_from_view(couch)), "view", False
    except TimedOut:
        _drop_staged(staging)
        return _stage(staging, _states_from_documents(couch, styles, pool.group_field)), "documents", True


def _changed_since(couch, seq):
    """({ids} the changes feed lists after `seq`, its last seq), without the documents."""
    ids = set()
    while True:
        results, last = couch.changes(seq, CHANGES_BATCH * 10, docs=False)
        ids.update(r["id"] for r in results)
        if len(results) < CHANGES_BATCH * 10:
            return ids, str(last)
        seq = str(last)


def _log_count(pool, count, source, building, changed=None):
    log.info("pool %s: counted %d tokens from the %s%s", pool.slug, count,
             "states view" if source == "view" else
             "documents (the states view is being built)" if building else "documents",
             "" if changed is None else f" ({changed} changed meanwhile, as the feed has them)")


def _stage(staging, pages):
    """Write pages of (id, (bucket, type, group, hostname)) as the staging name's rows; returns how many tokens."""
    for page in pages:
        # A token that moved while the view was paged is seen twice: the later row wins.
        upsert_rows(TokenState, STATE_FIELDS, ("pool", "doc_id"), [(staging, i, *state) for i, state in page])
    return TokenState.objects.filter(pool=staging).count()


def _differences(slug, staging, changed):
    """({id: state} of the pool's rows that a recount found otherwise or not at all, {id: state} of what it found
    for the tokens new or otherwise than the pool's rows say), compared in the database. The tokens in `changed`
    (their staged rows dropped) are not compared: their pool rows stand."""
    quote = connection.ops.quote_name
    table = quote(TokenState._meta.db_table)
    column = {f: quote(TokenState._meta.get_field(f).column) for f in ("doc_id", "bucket", "type", "group",
                                                                        "hostname")}
    columns = ", ".join(f"{{t}}.{c}" for c in column.values())
    differs = " OR ".join(f"o.{column[f]} <> n.{column[f]}" for f in ("bucket", "type", "hostname"))
    group = column["group"]  # no group (null) differs from "", and null <> x is null, never true
    differs += f" OR ((o.{group} IS NULL) <> (n.{group} IS NULL)) OR o.{group} <> n.{group}"
    found, had = {}, {}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns.format(t='n')}, {columns.format(t='o')} FROM {table} n "
                       f"LEFT JOIN {table} o ON o.pool = %s AND o.doc_id = n.doc_id "
                       f"WHERE n.pool = %s AND (o.doc_id IS NULL OR {differs})", [slug, staging])
        for row in cursor.fetchall():
            found[row[0]] = tuple(row[1:5])
            if row[5] is not None:
                had[row[0]] = tuple(row[6:10])
        cursor.execute(f"SELECT {columns.format(t='o')} FROM {table} o WHERE o.pool = %s AND NOT EXISTS "
                       f"(SELECT 1 FROM {table} n WHERE n.pool = %s AND n.doc_id = o.doc_id)", [slug, staging])
        for row in cursor.fetchall():
            if row[0] not in changed:
                had[row[0]] = tuple(row[1:5])
    return had, found


def _index_ready(couch):
    """Whether the `states` index is built, asked with a query that waits a second at most (the counts are there
    already; later refreshes ask the other views with the full COUNTS_INDEX_WAIT). A query that times out leaves
    the server building the index."""
    try:
        couch.view(OWN_DDOC, "states", timeout=min(1.0, settings.COUNTS_INDEX_WAIT), limit=0, reduce=False)
        ready = True
    except TimedOut:
        ready = False
    # CouchDB builds every view of a design document in one pass; pouchdb-server builds each on its first query.
    # Ask for the others now too (a fifth of a second each), or their builds start on the next refreshes and
    # hold the counts back while pilots run.
    for name in OWN_VIEW_NAMES:
        if name != "states":
            try:
                couch.view(OWN_DDOC, name, timeout=0.2, limit=0, reduce=False)
            except TimedOut:
                ready = False
    return ready


def states_from_view(couch):
    """Pages of (id, (bucket, type, group, hostname)) from the `states` view; TimedOut while its index is being
    built."""
    start, stale = None, False
    while True:
        page = couch.page(OWN_DDOC, "states", limit=FILL_PAGE, start_key=start, stale=stale,
                          timeout=None if stale else settings.COUNTS_INDEX_WAIT)
        yield [(row["key"][3], (*row["key"][:3], row["value"] if isinstance(row["value"], str) else ""))
               for row in page.rows]
        if not page.has_next:
            return
        start, stale = page.next_key, True  # the index is current since the first page


def _states_from_documents(couch, styles, group_field):
    """Pages of (id, (bucket, type, group, hostname)) from the documents themselves, by the views' twin."""
    start = None
    while True:
        page = couch.documents(DOCUMENT_PAGE, start_id=start)
        states = ((row["id"], token_state(row["doc"], styles, group_field)) for row in page.rows if row.get("doc"))
        yield [(doc_id, state) for doc_id, state in states if state is not None]
        if not page.has_next:
            return
        start = page.next_key


def apply_changes(pool, couch, styles, seq, events_from):
    """Apply the changes after `seq`, a batch per transaction, each move recorded as an event in the same
    transaction. Returns whether a failed token changed."""
    touched_errors = False
    # The next batch is read while this one is applied (the client is used by that one thread meanwhile).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="changes-reader") as reader:
        pending = reader.submit(couch.changes, seq, CHANGES_BATCH)
        while True:
            results, last_seq = pending.result()
            pending = reader.submit(couch.changes, str(last_seq), CHANGES_BATCH) \
                if len(results) >= CHANGES_BATCH else None
            touched_errors |= apply_batch(pool, styles, seq, events_from, results, last_seq)
            if pending is None:
                return touched_errors
            seq = str(last_seq)


def apply_batch(pool, styles, seq, events_from, results, last_seq):
    """One batch of changes, in one transaction with its events; returns whether a failed token changed."""
    touched_errors = False
    ids = [r["id"] for r in results]
    before = {i: (b, t, g, h) for i, b, t, g, h in
              rows_where_in(TokenState, ("doc_id", "bucket", "type", "group", "hostname"), pool.slug, "doc_id", ids)}
    upserts, gone, changed = [], [], []
    for r in results:
        doc = None if r.get("deleted") else r.get("doc")
        state = token_state(doc, styles, pool.group_field) if doc else None
        changed.append((r["id"], (r.get("changes") or [{}])[-1].get("rev", ""), doc, state))
        if state is None:
            gone.append(r["id"])
        else:
            upserts.append((pool.slug, r["id"], *state))
        old = before.get(r["id"])
        if (old and old[0] in ERROR_BUCKETS) or (state and state[0] in ERROR_BUCKETS):
            touched_errors = True
    moved = events.moves(pool.slug, before, changed, styles, events_from)
    with transaction.atomic():
        if not CountSnapshot.objects.filter(pool=pool.slug, seq=seq).update(seq=str(last_seq)):
            raise Overtaken
        TokenState.objects.filter(pool=pool.slug, doc_id__in=gone).delete()
        upsert_rows(TokenState, STATE_FIELDS, ("pool", "doc_id"), upserts)
        events.record(moved)
    return touched_errors


def refresh(pool, errors_changed=False):
    """Take a new snapshot and store it; on failure keep the old counts and store the error.

    Refreshes of one pool may overlap (a claim given up after a minute, a recount's refresh): the one that began
    last stands, whichever ends last (`began_at`; `taken_at` is when it was stored, as the claims compare it with
    when they asked)."""
    try:
        data = take_snapshot(pool, errors_changed)
    except CouchError as e:
        log.warning("pool %s: %s", pool.slug, e)
        snap, _ = CountSnapshot.objects.update_or_create(
            pool=pool.slug, defaults={"error": str(e), "error_status": e.status, "error_at": timezone.now()})
        return snap
    began = datetime.fromtimestamp(data["taken_at"], UTC)
    CountSnapshot.objects.get_or_create(pool=pool.slug)
    CountSnapshot.objects.filter(pool=pool.slug).filter(Q(began_at__isnull=True) | Q(began_at__lt=began)).update(
        data=data, began_at=began, taken_at=timezone.now(), error="", error_status=None, error_at=None)
    return CountSnapshot.objects.get(pool=pool.slug)


def recount(pool, asked=None):
    """What the worker asked for a pool's recount does (see sync_states), then a refresh: the snapshot is taken
    after the recount, not when it began (minutes before, at a million tokens). `asked` is when a refresh asked for
    it: a task the broker hands out a second time (after its visibility timeout, while the first still runs) finds
    the claim taken over and does nothing."""
    if asked is not None and not CountSnapshot.objects.filter(pool=pool.slug, recount_started_at=asked).update(
            recount_started_at=timezone.now()):
        log.info("pool %s: a recount asked for at %s is done or under way; not again", pool.slug, asked)
        return CountSnapshot.objects.filter(pool=pool.slug).first()
    errors_changed = True
    try:
        couch = pool.couch()
        info, design_docs, _described, styles = read_rules(couch)
        errors_changed = sync_states(pool, couch, styles, info.get("update_seq"), [], recount=True,
                                     own_views=ensure_own_views(pool, couch, styles, design_docs))
    except CouchError as e:  # the refresh says so, if it persists; the next refresh past the interval asks again
        log.warning("pool %s: recount: %s", pool.slug, e)
        CountSnapshot.objects.filter(pool=pool.slug).update(recount_started_at=None)
    return refresh(pool, errors_changed)


def snapshot(pool):
    """The pool's counts for a page: fresh enough, or refreshing in the background."""
    snap = CountSnapshot.objects.filter(pool=pool.slug).first()
    if snap is None or snap.data is None:
        return refresh(pool)
    if snap.age() > settings.COUNTS_MAX_AGE:
        _request_refresh(pool, snap)
    return snap


def follow():
    """Refresh every pool whose counts are older than EVENTS_FOLLOW_SECONDS (unless a refresh is in flight): the
    changes feed is read, and its moves recorded as events, while nobody has a page open."""
    for pool in all_pools():
        snap = CountSnapshot.objects.filter(pool=pool.slug).first()
        if snap is None or snap.data is None:
            refresh(pool)
        elif snap.age() > settings.EVENTS_FOLLOW_SECONDS and claim_refresh(snap, "taken_at"):
            refresh(pool)


def claim_refresh(record, taken_field, give_up_after=60):
    """Whether this caller may ask for the record's one background refresh, however many viewers poll: only if none
    was asked for since the record was last taken (or the one asked for is older than `give_up_after` seconds: its
    worker died). The record's model has `refresh_requested_at` and the `taken_field` timestamp."""
    now = timezone.now()
    # The row just read already shows a refresh in flight: nothing to claim. Checked first because a claim is a write,
    # and on SQLite every write waits for the one writer (a refill holds it for seconds) while pages poll.
    asked, taken = record.refresh_requested_at, getattr(record, taken_field)
    if asked and taken and asked > taken and asked > now - timedelta(seconds=give_up_after):
        return False
    with transaction.atomic():
        in_flight = Q(refresh_requested_at__gt=F(taken_field)) & Q(
            refresh_requested_at__gt=now - timedelta(seconds=give_up_after))
        return bool(type(record).objects.filter(pk=record.pk).exclude(in_flight).update(refresh_requested_at=now))


def _request_refresh(pool, snap):
    if not claim_refresh(snap, "taken_at"):
        return
    try:
        queue.refresh_counts(pool.slug)
    except Exception as e:  # broker down: refresh here rather than show ever older counts
        log.warning("pool %s: could not queue a refresh (%s); refreshing in the request", pool.slug, type(e).__name__)
        refresh(pool)


# --- turning a snapshot into what pages show -------------------------------------------------


