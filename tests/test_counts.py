"""Counts shown for the demo pools equal the truth, computed here from every document of the pool."""

import math
import re
import time

import pytest

from tests.conftest import LOFAR, SURF
from tokens import counting, reading
from tokens.models import CountSnapshot
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db


def all_docs(db):
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return [r["doc"] for r in rows]


def js_num(doc, field):
    """JavaScript's loose comparison of a field with a number, for the values tokens hold."""
    if field not in doc:
        return math.nan
    v = doc[field]
    if v is None or v == "":
        return 0.0
    if isinstance(v, (bool, int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def truth_surf(doc):
    lock, done = js_num(doc, "lock"), js_num(doc, "done")
    exit_ok = re.match(r"\s*[+-]?0*\d", str(doc.get("exit_code", ""))) and int(
        re.match(r"\s*([+-]?\d+)", str(doc["exit_code"])).group(1)) == 0
    if lock == 0 and done == 0:
        return "todo"
    if lock > 0 and done == 0:
        return "locked" if lock > 1e9 else "locked_unknown"
    if lock > 0 and done > 0:
        return "done" if exit_ok else "error"
    if lock == -1 and done == -1:
        return "legacy_error"
    if lock == 0 and done > 0:
        return "done_unlocked"
    return "other"


def truth_lrt(doc, style):
    if doc.get("status") == "error" or (style == "lrt05" and js_num(doc, "output") != 0):
        return "error"
    if doc.get("status") == "done":
        return "done"
    return truth_surf({k: v for k, v in doc.items() if k != "exit_code"})


def true_counts(docs, key):
    """{(type, OBSID): {bucket: n}} for the token documents of a pool."""
    counts = {}
    for doc in docs:
        if doc["_id"].startswith("_design/"):
            continue
        if doc.get("type") == "token":
            bucket = truth_surf(doc)
        elif str(doc.get("type", "")).startswith("pref_cal1_"):
            style = "lrt1" if doc["type"].endswith("L232875") else "lrt05"
            bucket = truth_lrt(doc, style)
        else:
            continue  # logs, jobs: not tokens
        group = counts.setdefault(key(doc), {})
        group[bucket] = group.get(bucket, 0) + 1
    return counts


def shown_counts(pool_slug):
    snap = counting.refresh(get_pool(pool_slug))
    assert not snap.error
    return {(o.type, o.group): {b: n for b, n in o.counts.items() if n} for o in reading.observations(snap.data)}


def test_surf_counts_equal_the_truth_per_observation_and_bucket(demo_pools, couch):
    docs = all_docs(couch(SURF))
    truth = true_counts(docs, lambda d: (d["type"], str(d["OBSID"]) if "OBSID" in d else None))
    assert shown_counts(SURF) == truth
    buckets = {b for group in truth.values() for b in group}
    # The demo holds every bucket, so each one is checked above.
    assert {"todo", "locked", "done", "error", "locked_unknown", "legacy_error", "done_unlocked"} <= buckets


def test_lofar_counts_equal_the_truth_per_observation(demo_pools, couch):
    docs = all_docs(couch(LOFAR))
    truth = true_counts(docs, lambda d: (d["type"], d.get("OBSID")))
    assert shown_counts(LOFAR) == truth
    assert len(truth) == 3


def test_counts_add_up_to_the_number_of_tokens(demo_pools, couch):
    for database in (SURF, LOFAR):
        docs = all_docs(couch(database))
        tokens = [d for d in docs if d.get("type") == "token" or str(d.get("type", "")).startswith("pref_cal1_")]
        totals = reading.pool_totals(counting.refresh(get_pool(database)).data)
        assert sum(totals.values()) == len(tokens)


def test_the_four_states_equal_the_workers_monitor_views(demo_pools, couch):
    db = couch(SURF)
    totals = reading.pool_totals(counting.refresh(get_pool(SURF)).data)
    assert totals["todo"] == db.total_rows("Monitor", "todo")
    assert totals["locked"] + totals["locked_unknown"] == db.total_rows("Monitor", "locked")
    assert totals["done"] == db.total_rows("Monitor", "done")
    assert totals["error"] == db.total_rows("Monitor", "error")
    overview = {r["key"]: r["value"] for r in db.view("Monitor", "overview_total", group=True)["rows"]}
    assert overview.get("error", 0) == totals["error"]


def test_without_own_views_each_token_is_counted_once_as_the_own_views_count_it(demo_pools, couch, settings):
    with_own = {(o.type, o.group): o.counts for o in reading.observations(counting.refresh(get_pool(SURF)).data)}
    settings.COUCHDB_CREATE_VIEWS = False
    settings.COUCHDB_DATABASES = [f"{SURF}-copy"]
    copy = couch(f"{SURF}-copy")
    copy.create_database()
    try:
        source = [d for d in all_docs(couch(SURF)) if not d["_id"].startswith("_design/picas-dashboard")]
        copy.bulk_docs([{k: v for k, v in d.items() if k not in ("_rev", "_attachments")} for d in source])
        data = counting.refresh(get_pool(f"{SURF}-copy")).data
        assert data["own_views"] is False
        # Counted from the documents by the views' rules: the same observations and buckets as with the own views,
        # the slices (SingleCore, MultiCore) not counted again on top of Monitor, tokens in no view counted too.
        assert {(o.type, o.group): o.counts for o in reading.observations(data)} == with_own
        tokens = [d for d in source if d.get("type") == "token"]
        assert sum(reading.pool_totals(data).values()) == len(tokens)
        assert reading.pool_totals(data)["done"] == copy.total_rows("Monitor", "done")
        assert not any(d["_id"] == "_design/picas-dashboard" for d in copy.design_docs())
    finally:
        copy.delete_database()


def test_done_last_hour_counts_tokens_finished_in_the_last_hour(demo_pools, couch):
    # Finishes are counted from the pool's events; those from before the dashboard first saw the pool are
    # backfilled from the tokens' own times by the first refresh that finds every index built.
    for _ in range(60):
        data = counting.refresh(get_pool(LOFAR)).data
        if CountSnapshot.objects.get(pool=get_pool(LOFAR).slug).backfilled:
            break
        time.sleep(1)
    data = counting.refresh(get_pool(LOFAR)).data
    docs = all_docs(couch(LOFAR))
    hour_ago = data["finished_since"]  # an hour before the snapshot
    assert 3599 <= data["taken_at"] - hour_ago <= 3601
    recent = sum(
        1 for d in docs
        if d.get("status") == "done" and isinstance(d.get("done"), (int, float)) and d["done"] >= hour_ago
    )
    observations = reading.observations(data)
    assert sum(o.done_recent for o in observations) == recent
    assert recent > 0


def test_the_python_classifier_agrees_with_the_view_on_every_demo_token(demo_pools, couch):
    for database in (SURF, LOFAR):
        db = couch(database)
        data = counting.refresh(get_pool(database)).data
        by_id = {r["key"][3]: r["key"][0] for r in db.view("picas-dashboard", "states", reduce=False)["rows"]}
        for doc in all_docs(db):
            if doc["_id"] in by_id:
                assert reading.classify(doc, data["types"][doc["type"]]) == by_id[doc["_id"]], doc["_id"]


ODD_VALUES = [
    {"lock": "1795366106", "done": 0}, {"lock": "1_700_000_000", "done": 0}, {"lock": None, "done": 0},
    {"lock": [], "done": ""}, {"lock": True, "done": False}, {"lock": 1795366106, "done": 1795366200, "exit_code": [0]},
    {"lock": 1795366106, "done": 1795366200, "exit_code": "0x1"}, {"lock": 1795366106, "done": 1795366200},
    {"lock": 1795366106, "done": 1795366200, "exit_code": " 0 "}, {"lock": {"a": 1}, "done": 0},
    {"lock": -1, "done": "-1"}, {"lock": 0, "done": "12"}, {"lock": "0x10", "done": 0}, {"done": 0},
]


def test_the_classifier_follows_javascript_on_odd_field_values(scratch_pool, couch):
    from tests.conftest import surf_token

    docs = []
    for n, fields in enumerate(ODD_VALUES):
        doc = surf_token(n)
        doc.pop("lock")
        doc.update(fields)
        docs.append(doc)
    lrt = [{"_id": f"lrt{n}", "type": "pref_cal1_L229585", "lock": 0, "done": 0, **fields} for n, fields in enumerate(
        [{"status": ["error"]}, {"output": "0"}, {"output": None}, {"output": []}, {"status": "done", "output": 3}])]
    scratch_pool.bulk_docs(docs + lrt)
    data = counting.refresh(get_pool(scratch_pool.database)).data
    by_id = {r["key"][3]: r["key"][0] for r in scratch_pool.view("picas-dashboard", "states", reduce=False)["rows"]}
    for doc in docs + lrt:
        assert reading.classify(doc, data["types"][doc["type"]]) == by_id[doc["_id"]], doc
