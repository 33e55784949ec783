"""Token events: every move recorded from the changes feed while real picas pilots run under several host names,
the history that a reset does not rewrite, hosts and the black hole, timelines, backfill, restarts, retention."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from localsite.embedded import EmbeddedRedis
from tests.api_client import api_as
from tests.conftest import SURF, server_env, surf_token
from tests.test_job_safety import picas_steps, start_pilots
from tests.waiting import PATIENCE, wait_for
from tokens import counting, events, history, operations, selections
from tokens.models import CountSnapshot, HostHour, ObservationHour, TokenEvent, TokenState
from tokens.pools import all_pools
from tokens.selections import Selection
from tokens.states import classify

pytestmark = pytest.mark.django_db(transaction=True)

GOOD, FLAKY, BLACK_HOLE = "wn-01.grid.surfsara.nl", "wn-02.grid.surfsara.nl", "bh-13.gina.nikhef.nl"
NOW = int(time.time())


def refresh():
    counting.refresh(all_pools()[0])


def follow_while(pilots):
    """Refresh every half second while the pilots run, as the periodic task does, then once more."""
    deadline = time.monotonic() + PATIENCE
    while any(p.poll() is None for p in pilots) and time.monotonic() < deadline:
        refresh()
        time.sleep(0.5)
    for p in pilots:
        p.communicate(timeout=PATIENCE)
    refresh()


def tokens_by_id(db):
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return {r["id"]: r["doc"] for r in rows if not r["id"].startswith("_design/")}


@pytest.fixture
def worked_pool(scratch_pool, couch_server, settings):
    """240 tokens worked by three pilots on three hosts: one good, one failing a tenth, one failing everything."""
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    settings.JOB_CONFIRM_THRESHOLD = 10_000
    refresh()  # the pool is seen before its tokens exist: each token's every move is an event
    scratch_pool.bulk_docs([surf_token(n) for n in range(240)])
    # Each host works its own third of the todo view. picas 1.1.2 claims by reading the view and then getting the
    # document, so two pilots on one view can both claim a token that one of them finished in between (CI saw a
    # black-hole failure claimed again by the good host: an error under its name, then done). The dashboard
    # records that as it happened; the test needs each token's history on one host to check it against the
    # documents.
    thirds = [(f"token_{first:05d}", f"token_{first + 79:05d}") for first in (0, 80, 160)]
    pilots = start_pilots(couch_server, scratch_pool.database, 1, delay=0.02, hostname=GOOD,
                          first=thirds[0][0], last=thirds[0][1])
    pilots += start_pilots(couch_server, scratch_pool.database, 1, delay=0.02, fail_every=10, hostname=FLAKY,
                           first=thirds[1][0], last=thirds[1][1])
    pilots += start_pilots(couch_server, scratch_pool.database, 1, delay=0.005, fail_every=1, hostname=BLACK_HOLE,
                           first=thirds[2][0], last=thirds[2][1])
    follow_while(pilots)
    # picas stamps whole seconds, so a failure is "old enough" for a reset by state one second after its stamp.
    newest = max(d["done"] for d in tokens_by_id(scratch_pool).values())
    time.sleep(max(0.0, newest + 1.1 - time.time()))
    return scratch_pool


def test_the_black_hole_is_flagged_with_its_evidence_and_its_failures_alone_are_retried(worked_pool, operator_client):
    docs = tokens_by_id(worked_pool)
    failed_there = {i for i, d in docs.items() if d["hostname"] == BLACK_HOLE and d["exit_code"] == 1}
    done_there = {i for i, d in docs.items() if d["hostname"] == BLACK_HOLE and d["exit_code"] == 0}
    failed_elsewhere = {i for i, d in docs.items() if d["hostname"] != BLACK_HOLE and d["exit_code"] == 1}
    assert failed_there and not done_there and failed_elsewhere  # the pilots did what they were told
    pool = all_pools()[0]

    rows = {r["hostname"]: r for r in events.hosts(pool.slug, *events.black_hole_window())}
    assert rows[BLACK_HOLE]["failed"] == len(failed_there) and rows[BLACK_HOLE]["done"] == 0
    assert rows[FLAKY]["failed"] == len(failed_elsewhere)
    assert rows[GOOD]["done"] + rows[FLAKY]["done"] == 240 - len(failed_there) - len(failed_elsewhere)
    assert rows[BLACK_HOLE]["site"] == "gina.nikhef.nl" and rows[GOOD]["median_run"] is not None
    holes = events.black_holes(list(rows.values()))
    assert [h["hostname"] for h in holes] == [BLACK_HOLE]
    assert holes[0]["rate"] == 1.0 and holes[0]["rest_rate"] == pytest.approx(
        len(failed_elsewhere) / (240 - len(failed_there)))

    page = operator_client.get(f"/pools/{pool.slug}/hosts/").content.decode()
    n = len(failed_there)
    assert f"Black hole: {BLACK_HOLE}" in page and f"failed {n} of the {n} tokens" in page
    assert "Retry what failed on bh-13.gina.nikhef.nl" in page
    assert f"Black hole: {BLACK_HOLE}" in operator_client.get(f"/pools/{pool.slug}/").content.decode()
    api = api_as(operator_client)
    assert api.get(f"/api/v1/pools/{pool.slug}/hosts").json()["black_holes"][0]["failed"] == len(failed_there)
    # The same hosts download as CSV, the black hole marked.
    csv_file = operator_client.get(f"/pools/{pool.slug}/hosts/", {"window": "7d", "format": "csv"})
    assert f'filename="{pool.slug}-hosts-7d.csv"' in csv_file["Content-Disposition"]
    lines = [line.split(",") for line in b"".join(csv_file.streaming_content).decode().splitlines()]
    assert lines[0][:6] == ["hostname", "site", "running", "claims", "done", "failed"]
    assert lines[0][-1] == "black_hole_last_6h"  # judged over the black-hole window, whatever the file's
    by_host = {cells[0]: dict(zip(lines[0], cells, strict=True)) for cells in lines[1:]}
    assert set(by_host) == set(rows) and by_host[BLACK_HOLE]["black_hole_last_6h"] == "yes"
    assert int(by_host[BLACK_HOLE]["failed"]) == len(failed_there) and by_host[GOOD]["black_hole_last_6h"] == ""

    # The failure group knows when and where: the black hole's failures and the flaky host's share one group.
    groups = api.get(f"/api/v1/pools/{pool.slug}/failures").json()["groups"]
    (exit_1,) = [g for g in groups if g["code"] == "1"]
    assert exit_1["count"] == exit_1["failures_recorded"] == len(failed_there) + len(failed_elsewhere)
    assert exit_1["hosts"][0] == {"hostname": BLACK_HOLE, "failures": len(failed_there)} and exit_1["host_count"] == 2
    assert exit_1["first_seen"] <= exit_1["last_seen"] and sum(exit_1["hours"]) == exit_1["count"]
    assert groups[0]["hosts"] == exit_1["hosts"]
    failures_page = operator_client.get(f"/pools/{pool.slug}/failures/").content.decode()
    assert f"{BLACK_HOLE}: {len(failed_there)}</li>" in failures_page and "2 hosts" in failures_page
    api_hosts = operator_client.get(f"/api/v1/pools/{pool.slug}/hosts", {"window": "6h"}).json()
    assert [h["hostname"] for h in api_hosts["black_holes"]] == [BLACK_HOLE]
    assert operator_client.get(f"/api/v1/pools/{pool.slug}/hosts", {"window": "2h"}).status_code == 422
    periods = operator_client.get(f"/api/v1/pools/{pool.slug}/history").json()["periods"]
    assert len(periods) == 25 and sum(p["done"] + p["error"] for p in periods) == 240  # every finish, once

    # "Retry what failed on host H": the preview and the job select exactly its failures.
    dry_run = operator_client.get(f"/pools/{pool.slug}/jobs/new/", {
        "action": "reset", "kind": "host", "state": "error", "hostname": BLACK_HOLE}).content.decode()
    assert f"this would reset / retry <strong>{len(failed_there)}</strong> tokens" in dry_run
    preview = api.post(f"/api/v1/pools/{pool.slug}/jobs", {
        "action": "reset", "selection": {"kind": "host", "bucket": "error", "hostname": BLACK_HOLE}}).json()
    assert preview["count"] == len(failed_there) and set(preview["sample"]) <= failed_there
    job = operations.run_job(operations.create_job(pool, None, "reset", Selection(
        "host", bucket="error", hostname=BLACK_HOLE), {}).pk)
    assert job.status == "succeeded" and job.changed == len(failed_there)
    after = tokens_by_id(worked_pool)
    assert {i for i, d in after.items() if d["scrub_count"] == 1} == failed_there
    assert all(after[i]["exit_code"] == 1 for i in failed_elsewhere)


def test_a_reset_of_all_errors_leaves_the_past_hours_of_the_charts_as_they_were(worked_pool, couch_server):
    pool = all_pools()[0]
    before = history.take(pool, 1)
    failed = sum(n for _h, bucket, _t, _g, n in before["rows"] if bucket == "error")
    assert failed > 0
    selection = Selection("state", bucket="error")
    job = operations.run_job(operations.create_job(pool, None, "reset", selection, {}).pk)
    assert job.changed == failed
    refresh()
    assert history.take(pool, 1)["rows"] == before["rows"]
    # Retried and done: the failures stay in their hours, and the done ones are added.
    follow_while(start_pilots(couch_server, worked_pool.database, 1, delay=0.01, hostname=GOOD))
    after = history.take(pool, 1)["rows"]
    assert sum(n for _h, b, _t, _g, n in after if b == "error") == failed
    assert sum(n for _h, b, _t, _g, n in after if b == "done") == 240
    assert classify(worked_pool.get("token_00000"), "surf") == "done"


def test_a_tokens_timeline_lists_each_claim_failure_and_reset_in_order(scratch_pool, couch_server, operator_client,
                                                                       settings):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    refresh()
    scratch_pool.bulk_docs([surf_token(1)])
    refresh()

    def step(do, **fields):
        picas_steps(couch_server, scratch_pool.database, {"id": "token_00001", "do": do, "fields": fields})
        refresh()

    step("lock")
    step("done", exit_code=1)
    time.sleep(max(0.0, scratch_pool.get("token_00001")["done"] + 1.1 - time.time()))  # old enough for a reset
    pool = all_pools()[0]
    job = operations.run_job(operations.create_job(pool, None, "reset", Selection("ids", ids=["token_00001"]), {}).pk)
    refresh()
    step("lock")
    step("done", exit_code=0)

    moves = [(e["from_state"], e["to_state"], e["job"]) for e in events.timeline(pool.slug, "token_00001")]
    assert moves == [("", "todo", None), ("todo", "locked", None), ("locked", "error", None),
                     ("error", "todo", job.pk), ("todo", "locked", None), ("locked", "done", None)]
    timeline = events.timeline(pool.slug, "token_00001")
    assert timeline[2]["exit_code"] == "1" and timeline[3]["scrub_count"] == 1
    assert all(timezone.now() - timedelta(minutes=5) < e["at"] <= timezone.now() for e in timeline)
    page = operator_client.get(f"/pools/{pool.slug}/token/", {"id": "token_00001"}).content.decode()
    assert "Timeline" in page and "6 moves" in page and f"job {job.pk}" in page
    api = api_as(operator_client).get(f"/api/v1/pools/{pool.slug}/tokens/token_00001").json()
    assert [m["to_state"] for m in api["timeline"]] == ["todo", "locked", "error", "todo", "locked", "done"]


def test_a_pool_seen_for_the_first_time_is_backfilled_from_its_documents_own_times(scratch_pool):
    hour_ago, two_hours_ago = NOW - 3600, NOW - 7200
    scratch_pool.bulk_docs([
        surf_token(1, lock=two_hours_ago, done=hour_ago, exit_code=0, hostname=GOOD,
                   error=[{"time": two_hours_ago - 600, "message": "exit 1"}], scrub_count=1),
        surf_token(2, lock=hour_ago, done=99, hostname=BLACK_HOLE,
                   error=[{"time": hour_ago + 5, "exception": "RuntimeError"}]),
        surf_token(3, lock=hour_ago, hostname=FLAKY),
        surf_token(4),
    ])
    refresh()
    refresh()  # the first counts, then (no index being built) the backfill
    pool = all_pools()[0]
    past = sorted((e.doc_id, e.from_state, e.to_state, int(e.at.timestamp()), e.hostname)
                  for e in TokenEvent.objects.filter(pool=pool.slug))
    assert past == [
        ("token_00001", "locked", "done", hour_ago, GOOD),
        ("token_00001", "locked", "error", two_hours_ago - 600, ""),
        ("token_00001", "todo", "locked", two_hours_ago, GOOD),
        ("token_00002", "locked", "error", hour_ago + 5, BLACK_HOLE),
        ("token_00002", "todo", "locked", hour_ago, BLACK_HOLE),
        ("token_00003", "todo", "locked", hour_ago, FLAKY),
    ]
    assert set(TokenEvent.objects.values_list("origin", flat=True)) == {"backfill"}
    refresh()
    assert TokenEvent.objects.count() == 6  # once
    rows = history.take(pool, 1)["rows"]
    hour = lambda t: t // 3600 * 3600  # noqa: E731
    charted = {}
    for h, b, _t, _g, n in rows:
        charted[(h, b)] = charted.get((h, b), 0) + n
    expected = {}
    for h, b in ((hour(two_hours_ago - 600), "error"), (hour(hour_ago), "done"), (hour(hour_ago + 5), "error")):
        expected[(h, b)] = expected.get((h, b), 0) + 1  # token 1's earlier failure counts in its own hour
    expected[(hour(int(time.time())), "running")] = 1  # token 3, locked when the counts were taken
    assert charted == expected
    hosts = events.hosts(pool.slug, timezone.now() - timedelta(hours=3), medians=False)

    CountSnapshot.objects.filter(pool=pool.slug).update(backfilled=False)  # as if it had died half-way
    refresh()  # the backfill runs again and replaces what it wrote, rollups included
    assert TokenEvent.objects.count() == 6
    assert history.take(pool, 1)["rows"] == rows
    assert events.hosts(pool.slug, timezone.now() - timedelta(hours=3), medians=False) == hosts


def test_a_site_restart_in_the_middle_loses_no_event_and_duplicates_none(scratch_pool, couch_server, tmp_path):
    """A real Celery worker with its beat follows the pool while pilots run; it is killed, and a new one takes
    over from the sequence the first one left."""
    refresh()
    scratch_pool.bulk_docs([surf_token(n) for n in range(300)])
    broker = EmbeddedRedis(tmp_path / "redis").start()
    env = server_env(couch_server, scratch_pool, broker.url, EVENTS_FOLLOW_SECONDS="1")

    def follower():
        return subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "-B", "--pool", "solo",
                                 "--loglevel", "WARNING", "--schedule", str(tmp_path / "beat-schedule")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # its beat is a child process: signals go to the group

    def kill(worker, sig):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, sig)

    worker = follower()
    pilots = start_pilots(couch_server, scratch_pool.database, 2, delay=0.05, fail_every=7, hostname=GOOD)
    try:
        assert wait_for(lambda: TokenEvent.objects.filter(to_state="done").count() >= 30, seconds=120)
        kill(worker, signal.SIGKILL)  # the worker and its beat, as a machine going down takes both
        worker.wait()
        time.sleep(3)  # the pilots go on while nobody follows
        worker = follower()
        for p in pilots:
            p.communicate(timeout=PATIENCE)
        docs = tokens_by_id(scratch_pool)
        finished = {i for i, d in docs.items() if classify(d, "surf") in ("done", "error")}
        assert len(finished) == 300
        assert wait_for(lambda: TokenEvent.objects.filter(to_state__in=("done", "error")).count() >= 300,
                        seconds=120)
    finally:
        kill(worker, signal.SIGTERM)
        try:
            worker.wait(30)
        finally:
            kill(worker, signal.SIGKILL)  # whatever of the group is left: no worker outlives the test
            broker.stop()
    moves = list(TokenEvent.objects.order_by("pk").values_list("doc_id", "from_state", "to_state", "rev"))
    assert len(moves) == len(set(moves))  # none recorded twice
    per_token = {}
    for doc_id, from_state, to_state, _rev in moves:
        per_token.setdefault(doc_id, []).append((from_state, to_state))
    for doc_id, chain in per_token.items():
        assert chain[0][0] == "" and all(a[1] == b[0] for a, b in zip(chain, chain[1:], strict=False)), chain
        assert chain[-1][1] == classify(docs[doc_id], "surf")  # the last move is where the token is
    finishes = TokenEvent.objects.filter(to_state__in=("done", "error"))
    assert finishes.count() == 300 and finishes.values("doc_id").distinct().count() == 300


def test_events_past_their_retention_are_deleted_while_their_hourly_rollups_still_count(db, settings):
    settings.EVENTS_KEEP_DAYS, settings.EVENTS_ROLLUP_DAYS = 90, 365
    now = timezone.now()
    old, older, ancient = now - timedelta(days=100), now - timedelta(days=120), now - timedelta(days=400)
    events.record(
        [TokenEvent(pool="p", doc_id=f"t{n}", type="token", at=old, from_state="locked", to_state="done",
                    hostname=GOOD) for n in range(5)]
        + [TokenEvent(pool="p", doc_id="t9", type="token", at=older, from_state="locked", to_state="error",
                      exit_code="1", hostname=BLACK_HOLE)]
        + [TokenEvent(pool="p", doc_id="t7", type="token", at=ancient, from_state="locked", to_state="done")]
        + [TokenEvent(pool="p", doc_id="t8", type="token", at=now, from_state="todo", to_state="locked")])
    window = (now - timedelta(days=200), now + timedelta(hours=1))
    counted = events.per_hour("p", *window)
    hosts = events.hosts("p", *window)

    assert events.prune(now) == 7
    assert TokenEvent.objects.count() == 1  # this hour's event stays raw
    assert events.per_hour("p", *window) == counted  # the rollups still count what was deleted
    assert sorted(counted.values()) == [1, 5]
    assert [(h["hostname"], h["done"], h["failed"]) for h in events.hosts("p", *window, medians=False)] == [
        (h["hostname"], h["done"], h["failed"]) for h in hosts] == [(BLACK_HOLE, 0, 1), (GOOD, 5, 0)]
    assert not ObservationHour.objects.filter(hour__lt=now - timedelta(days=365)).exists()  # the year-old hour
    assert not HostHour.objects.filter(hour__lt=now - timedelta(days=365)).exists()
    assert events.prune(now) == 0


def test_rows_a_killed_recount_staged_are_counted_nowhere_and_pruned_a_day_later(db):
    now = timezone.now()
    left = [f"{TokenState.STAGING}{int(now.timestamp()) - days * 86400}~abcd1234" for days in (2, 0)]
    TokenState.objects.create(pool="p", doc_id="t1", bucket="done", type="token")
    for staging in left:
        TokenState.objects.create(pool=staging, doc_id="t1", bucket="error", type="token")
    assert list(TokenState.objects.filter(pool="p").values_list("bucket", flat=True)) == ["done"]
    events.prune(now)
    assert sorted(TokenState.objects.values_list("pool", flat=True)) == sorted(["p", left[1]])  # one in progress


def test_the_hourly_rollups_count_every_event_once_and_exactly_at_the_edges_of_a_window(db):
    """A window that starts or ends inside an hour is counted from the raw events there and from the rollups in
    between; a failure group's first and last seen are the events' own times, not their hours."""
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    times = [start + timedelta(minutes=m) for m in (10, 50, 70, 130, 200, 290)]
    failures = [TokenEvent(pool="p", doc_id=f"t{n}", type="token", group="L1", at=at, from_state="locked",
                           to_state="error", exit_code="3", message="boom", hostname=BLACK_HOLE)
                for n, at in enumerate(times)]
    events.record(failures[1:])
    events.record(failures[:1])  # recorded later, into an hour that has a row: it adds up, its time the first
    events.record([TokenEvent(pool="p", doc_id="t9", type="token", group=None, at=times[0], from_state="locked",
                              to_state="done", hostname=GOOD)])

    def failed(since, until):
        return {h["hostname"]: h["failed"] for h in events.hosts("p", since, until, medians=False) if h["failed"]}

    assert failed(start + timedelta(minutes=30), start + timedelta(minutes=140)) == {BLACK_HOLE: 3}
    assert failed(start, start + timedelta(hours=5)) == {BLACK_HOLE: 6}
    assert failed(start + timedelta(minutes=11), start + timedelta(minutes=49)) == {}
    [group] = events.failure_history("p", [{"code": "3", "message": "boom"}], start, start + timedelta(hours=6))
    assert (group["first_seen"], group["last_seen"], group["failures_recorded"]) == (times[0], times[-1], 6)
    assert group["hours"][:5] == [2, 1, 1, 1, 1] and group["hosts"] == [{"hostname": BLACK_HOLE, "failures": 6}]
    assert group["observations"] == 1
    assert events.per_hour("p", start, start + timedelta(hours=6))[(start, "done", "token", None)] == 1


def test_the_states_view_carries_the_host_that_the_table_keeps(scratch_pool):
    refresh()
    scratch_pool.bulk_docs([surf_token(1, lock=NOW, hostname=FLAKY), surf_token(2)])
    refresh()
    pool = all_pools()[0]
    assert dict(TokenState.objects.filter(pool=pool.slug).values_list("doc_id", "hostname")) == {
        "token_00001": FLAKY, "token_00002": ""}
    assert selections.preview(pool, Selection("host", bucket="locked", hostname=FLAKY))["sample"] == ["token_00001"]


def test_an_unknown_hosts_window_is_refused_as_the_api_refuses_it(viewer_client, demo_pools):
    page = viewer_client.get(f"/pools/{SURF}/hosts/", {"window": "2h"})
    assert page.status_code == 400 and "Unknown window &#x27;2h&#x27;: one of 6h, 24h, 7d, 30d" in page.content.decode()
    assert viewer_client.get(f"/api/v1/pools/{SURF}/hosts", {"window": "2h"}).status_code == 422
