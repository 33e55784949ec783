"""Counts follow the changes feed: a refresh costs what changed, and still equals what the views count."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tests.conftest import surf_token
from tests.test_job_safety import start_pilots
from tokens import counting
from tokens.models import CountSnapshot, TokenEvent, TokenState
from tokens.pools import all_pools
from tokens.states import OWN_DDOC

pytestmark = pytest.mark.django_db(transaction=True)


def view_counts(db, view="states", level=3):
    """What the own view's grouped reduce counts: the answer a full recount would give."""
    return sorted([*r["key"], r["value"]] for r in db.view(OWN_DDOC, view, group_level=level)["rows"])


def snapshot_counts(snap, part="buckets"):
    return sorted(snap.data[part])


def refresh():
    snap = counting.refresh(all_pools()[0])
    assert not snap.error, snap.error
    return snap


def counted_and_read_in_pages(db, monkeypatch, docs):
    """A pool of `docs`, counted, its index built, whose recounts read the view 100 rows a page: (pool, when it was
    filled, the real page reader, for a test to wrap)."""
    db.bulk_docs(docs)
    pool = all_pools()[0]
    refresh()
    db.view(OWN_DDOC, "states", limit=0, reduce=False, timeout=600)
    monkeypatch.setattr(counting, "FILL_PAGE", 100)
    return pool, CountSnapshot.objects.get(pool=pool.slug).filled_at, counting.states_from_view


def test_counts_follow_real_pilots_from_the_changes_feed_without_counting_the_pool_again(scratch_pool, couch_server):
    scratch_pool.bulk_docs([surf_token(n) for n in range(60)])
    first = refresh()
    assert snapshot_counts(first) == [["todo", "token", None, 60]]
    filled_at = CountSnapshot.objects.get(pool=first.pool).filled_at

    pilots = start_pilots(couch_server, scratch_pool.database, 2, delay=0.01, fail_every=4)
    try:
        while any(p.poll() is None for p in pilots):
            refresh()  # while they write: each refresh applies the changes since the one before
    finally:
        for p in pilots:
            p.wait(60)
    snap = refresh()

    assert CountSnapshot.objects.get(pool=snap.pool).filled_at == filled_at  # never recounted whole
    assert snapshot_counts(snap) == view_counts(scratch_pool)
    assert snapshot_counts(snap, "failures") == view_counts(scratch_pool, "failures", 4)
    assert {b for b, *_ in snap.data["buckets"]} == {"done", "error"}


def test_deleted_and_retyped_tokens_leave_the_counts(scratch_pool):
    scratch_pool.bulk_docs([surf_token(n) for n in range(5)])
    refresh()
    gone, retyped = scratch_pool.get("token_00000"), scratch_pool.get("token_00001")
    scratch_pool.bulk_docs([{**gone, "_deleted": True}, {**retyped, "type": "log"}])

    snap = refresh()

    assert snapshot_counts(snap) == [["todo", "token", None, 3]] == view_counts(scratch_pool)
    assert not TokenState.objects.filter(pool=snap.pool, doc_id__in=["token_00000", "token_00001"]).exists()


def test_a_token_that_stops_failing_is_taken_out_of_its_failure_group(scratch_pool):
    failed = [surf_token(n, lock=1_700_000_000, done=1_700_000_100, exit_code=3,
                         error=[{"time": 1_700_000_100, "message": "disk full"}]) for n in range(4)]
    scratch_pool.bulk_docs(failed)
    assert snapshot_counts(refresh(), "failures") == [["3", "disk full", "token", None, 4]]
    doc = scratch_pool.get("token_00002")
    scratch_pool.bulk_docs([{**doc, "lock": 0, "done": 0, "exit_code": ""}])  # reset by someone's script

    snap = refresh()

    assert snapshot_counts(snap, "failures") == [["3", "disk full", "token", None, 3]]
    assert snapshot_counts(snap) == [["error", "token", None, 3], ["todo", "token", None, 1]]


def test_a_new_grouping_field_fills_the_table_again(scratch_pool, settings):
    scratch_pool.bulk_docs([surf_token(n, OBSID=f"L{n % 2}") for n in range(6)])
    first = refresh()
    assert snapshot_counts(first) == [["todo", "token", None, 6]]
    filled_at = CountSnapshot.objects.get(pool=first.pool).filled_at

    settings.COUCHDB_GROUP_FIELD = "OBSID"  # the own design document changes with it
    snap = refresh()

    assert snapshot_counts(snap) == [["todo", "token", "L0", 3], ["todo", "token", "L1", 3]] == view_counts(
        scratch_pool)
    assert CountSnapshot.objects.get(pool=snap.pool).filled_at > filled_at


def test_after_the_refill_interval_a_worker_counts_every_token_again_and_mends_what_the_feed_did_not_show(
        scratch_pool, settings, celery_worker, caplog):
    from tests.waiting import wait_for

    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    pool = all_pools()[0]
    refresh()
    before = CountSnapshot.objects.get(pool=pool.slug).filled_at
    rows = TokenState.objects.filter(pool=pool.slug)
    rows.filter(doc_id="token_00000").update(bucket="done")  # wrong, as if a move was missed
    rows.filter(doc_id="token_00001").update(group="")  # wrong: no group is not the group ""
    rows.filter(doc_id="token_00002").update(hostname="wn9")  # wrong, not a move
    TokenState.objects.create(pool=pool.slug, doc_id="token_09999", bucket="todo", type="token")  # no such token
    settings.COUNTS_REFILL_SECONDS = 0

    refresh()

    # The recount's own line, not only its filled_at: the worker writes the line after the transaction that moves
    # filled_at, so on a busy machine the one can be seen before the other.
    recounts = wait_for(lambda: [r for r in caplog.records if "changed meanwhile" in r.getMessage()])
    assert CountSnapshot.objects.get(pool=pool.slug).filled_at > before
    settings.COUNTS_REFILL_SECONDS = 3600
    assert recounts and all(r.threadName != threading.main_thread().name for r in recounts)  # the worker's
    assert snapshot_counts(refresh()) == [["todo", "token", None, 3]] == view_counts(scratch_pool)
    assert sorted(TokenState.objects.filter(pool=pool.slug).values_list("doc_id", "group", "hostname")) == [
        ("token_00000", None, ""), ("token_00001", None, ""), ("token_00002", None, "")]
    assert sorted(TokenEvent.objects.filter(pool=pool.slug).values_list(
        "doc_id", "from_state", "to_state", "origin")) == [
        ("token_00000", "done", "todo", TokenEvent.RECOUNT), ("token_09999", "todo", "deleted", TokenEvent.RECOUNT)]


def test_while_a_recount_is_on_its_way_refreshes_go_on_with_the_changes_and_ask_for_no_other(scratch_pool,
                                                                                               settings):
    """At a million tokens a recount reads for minutes: the refreshes meanwhile neither wait for it nor start
    another."""
    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    pool = all_pools()[0]
    refresh()
    filled = CountSnapshot.objects.get(pool=pool.slug).filled_at
    settings.COUNTS_REFILL_SECONDS = 0
    asked = timezone.now() - timedelta(minutes=5)  # a worker has been recounting for five minutes
    CountSnapshot.objects.filter(pool=pool.slug).update(recount_started_at=asked)
    doc = scratch_pool.get("token_00001")
    scratch_pool.bulk_docs([{**doc, "lock": 1_700_000_000}])

    snap = refresh()

    assert snapshot_counts(snap) == [["locked", "token", None, 1], ["todo", "token", None, 2]]
    after = CountSnapshot.objects.get(pool=pool.slug)
    assert (after.recount_started_at, after.filled_at) == (asked, filled)  # none asked for, none done here


def test_with_the_broker_down_a_refresh_past_the_interval_recounts_itself(scratch_pool, settings, redis_server):
    from localsite.embedded import free_port
    from tests.conftest import use_broker

    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    pool = all_pools()[0]
    refresh()
    filled = CountSnapshot.objects.get(pool=pool.slug).filled_at
    TokenState.objects.filter(pool=pool.slug, doc_id="token_00000").update(bucket="done")
    settings.COUNTS_REFILL_SECONDS = 0
    use_broker(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        snap = refresh()
    finally:
        use_broker(redis_server.url)

    assert snapshot_counts(snap) == [["todo", "token", None, 3]] == view_counts(scratch_pool)
    after = CountSnapshot.objects.get(pool=pool.slug)
    assert after.filled_at > filled and after.recount_started_at is None


def test_a_recount_keeps_what_the_feed_changed_while_it_read_and_records_each_move_once(scratch_pool, monkeypatch):
    """A pilot claims a token the recount has read already, and a refresh applies that claim from the feed, while
    the recount reads on: the recount is not thrown away, and the claim stands (its row from the feed, not the older
    one the recount read), recorded as one change."""
    pool, filled, read_pages = counted_and_read_in_pages(scratch_pool, monkeypatch,
                                                         [surf_token(n) for n in range(300)])
    read_until = []

    def pages_with_a_claim_between(couch):
        for n, page in enumerate(read_pages(couch)):
            yield page
            if n == 0:  # token_00010 was read as todo; now a pilot claims it and a refresh sees that
                doc = scratch_pool.get("token_00010")
                scratch_pool.bulk_docs([{**doc, "lock": int(time.time())}])
                assert snapshot_counts(refresh()) == [["locked", "token", None, 1], ["todo", "token", None, 299]]
        read_until.append(timezone.now())

    monkeypatch.setattr(counting, "states_from_view", pages_with_a_claim_between)

    snap = counting.recount(pool)

    assert not snap.error and CountSnapshot.objects.get(pool=pool.slug).filled_at > filled
    assert snap.taken_at > read_until[0]  # the counts shown are taken after the recount, not when it began
    assert snapshot_counts(snap) == [["locked", "token", None, 1], ["todo", "token", None, 299]] == view_counts(
        scratch_pool)
    assert list(TokenEvent.objects.filter(pool=pool.slug).exclude(origin=TokenEvent.BACKFILL).values_list(
        "doc_id", "to_state", "origin")) == [
        ("token_00010", "locked", TokenEvent.CHANGE)]
    assert TokenState.objects.filter(pool=pool.slug).count() == 300
    assert not TokenState.objects.exclude(pool=pool.slug).exists()  # nothing staged left


def test_two_refreshes_at_once_leave_exact_counts(scratch_pool):
    scratch_pool.bulk_docs([surf_token(n) for n in range(300)])
    refresh()
    docs = [scratch_pool.get(f"token_{n:05d}") for n in range(0, 300, 2)]
    scratch_pool.bulk_docs([{**d, "lock": 1_700_000_000} for d in docs])  # 150 claimed, far in the past
    pool = all_pools()[0]

    def refresh_in_a_thread():
        try:
            counting.refresh(pool)
        finally:
            connection.close()  # the thread's own: PostgreSQL's test database is dropped at the end of the run

    threads = [threading.Thread(target=refresh_in_a_thread) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = refresh()

    assert snapshot_counts(snap) == [["locked", "token", None, 150], ["todo", "token", None, 150]] == view_counts(
        scratch_pool)
    assert TokenState.objects.filter(pool=pool.slug).count() == 300


def test_a_refresh_that_started_from_an_older_sequence_writes_nothing(scratch_pool):
    """The compare-and-set that keeps two refreshes apart: a refresh overtaken by another one gives way instead of
    writing what it read (which may be older than what the other one wrote)."""
    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    pool = all_pools()[0]
    refresh()
    older = CountSnapshot.objects.get(pool=pool.slug).seq
    doc = scratch_pool.get("token_00000")
    scratch_pool.bulk_docs([{**doc, "lock": 1_700_000_000}])
    refresh()
    before = sorted(TokenState.objects.filter(pool=pool.slug).values_list("doc_id", "bucket"))

    with pytest.raises(counting.Overtaken):
        counting.apply_changes(pool, pool.couch(), {"token": "surf"}, older, None)

    assert sorted(TokenState.objects.filter(pool=pool.slug).values_list("doc_id", "bucket")) == before


def test_a_refresh_overtaken_by_another_goes_on_from_where_that_one_got(scratch_pool, monkeypatch):
    """Two refreshes of one pool at once (a worker's recount beside the refreshes, a claim given up): the one
    that finds the feed moved on applies the rest, so that its counts hold every change made before it began."""
    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    refresh()
    for n in (0, 1):  # two claims, two changes in the feed
        doc = scratch_pool.get(f"token_{n:05d}")
        scratch_pool.bulk_docs([{**doc, "lock": 1_700_000_000}])
    real = counting.apply_changes

    def another_refresh_applies_one_first(pool, couch, styles, seq, events_from):
        monkeypatch.setattr(counting, "apply_changes", real)
        results, last = couch.changes(seq, 1)
        counting.apply_batch(pool, styles, seq, events_from, results, last)
        return real(pool, couch, styles, seq, events_from)  # from the sequence it read before: overtaken

    monkeypatch.setattr(counting, "apply_changes", another_refresh_applies_one_first)

    assert snapshot_counts(refresh()) == [["locked", "token", None, 2], ["todo", "token", None, 1]]


def test_counts_that_began_later_are_never_replaced_by_counts_that_began_earlier(scratch_pool, monkeypatch):
    scratch_pool.bulk_docs([surf_token(n) for n in range(3)])
    refresh()
    real = counting.take_snapshot

    def slow_refresh(pool, errors_changed=False):
        # Taken; before it is stored, a pilot claims a token and another refresh stores that.
        data = real(pool, errors_changed)
        monkeypatch.setattr(counting, "take_snapshot", real)
        doc = scratch_pool.get("token_00000")
        scratch_pool.bulk_docs([{**doc, "lock": 1_700_000_000}])
        assert snapshot_counts(refresh()) == [["locked", "token", None, 1], ["todo", "token", None, 2]]
        return data

    monkeypatch.setattr(counting, "take_snapshot", slow_refresh)

    snap = refresh()

    assert snapshot_counts(snap) == [["locked", "token", None, 1], ["todo", "token", None, 2]]


def test_a_recount_during_which_the_rules_change_is_dropped_and_wipes_nothing(scratch_pool, monkeypatch, settings):
    """Someone's new rules (a grouping field, a new token type) are written while a recount reads: its later pages
    would come from an index under the new rules, not built yet. It must not take the tokens it did not read for
    deleted."""
    from tokens.pools import get_pool

    pool, filled, read_pages = counted_and_read_in_pages(scratch_pool, monkeypatch,
                                                         [surf_token(n, OBSID=f"L{n % 2}") for n in range(300)])

    def pages_with_new_rules_between(couch):
        for n, page in enumerate(read_pages(couch)):
            yield page
            if n == 0:
                settings.COUCHDB_GROUP_FIELD = "OBSID"
                _info, design_docs, _described, styles = counting.read_rules(couch)
                assert counting.ensure_own_views(get_pool(pool.slug), couch, styles, design_docs)

    monkeypatch.setattr(counting, "states_from_view", pages_with_new_rules_between)

    counting.recount(pool)

    after = CountSnapshot.objects.get(pool=pool.slug)
    assert after.filled_at == filled and after.recount_started_at is None  # dropped, to be asked for again
    assert not TokenEvent.objects.filter(pool=pool.slug, origin=TokenEvent.RECOUNT).exists()
    assert TokenState.objects.filter(pool=pool.slug).count() == 300
    # The next refresh (the site's settings now name the new field) counts every token under the new rules.
    assert snapshot_counts(refresh()) == [["todo", "token", "L0", 150], ["todo", "token", "L1", 150]]
