"""A pool on a 3-node CouchDB 3 cluster behind haproxy (tests/cluster.py), with real picas pilots working it through
the load balancer: counts, events and jobs as on one server, while nodes stop and come back."""

import io
import threading
import time
import uuid

import pytest

from tests.cluster import CouchCluster, usable
from tests.conftest import couchdb3_script, delete_database, surf_token
from tests.test_job_safety import start_pilots
from tests.waiting import PATIENCE, wait_for
from tokens import counting, engine, operations, reading
from tokens.couch import Couch
from tokens.models import Job, JobToken, TokenEvent
from tokens.pools import all_pools
from tokens.selections import Selection
from tokens.states import classify

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.skipif(bool(usable()), reason=usable())]

TOKENS = 300
NOW = int(time.time())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = CouchCluster(tmp_path_factory.mktemp("cluster"), couchdb3_script()).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_pool(cluster, settings):
    """A fresh pool with SURF's Monitor views on the cluster; the site and the pilots reach it through the load
    balancer only."""
    from localsite import demo

    name = "cl-" + uuid.uuid4().hex[:8]
    db = Couch(cluster.url, name, cluster.username, cluster.password)
    db.create_database()
    demo.surf_design_docs(cluster.url, cluster.username, cluster.password, name)
    settings.COUCHDB_URL, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = cluster.url, cluster.username, \
        cluster.password
    settings.COUCHDB_DATABASES, settings.COUCHDB_GROUP_FIELD = [name], ""
    settings.JOB_CONFIRM_THRESHOLD = 100_000
    yield db
    cluster.start_all()  # a test that failed with nodes down leaves none down for the next
    delete_database(db)


def documents(db):
    """Every token as it is (a GET through the balancer reads r = 2 copies: never a stale answer)."""
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return {r["id"]: r["doc"] for r in rows if not r["id"].startswith("_design/")}


def truth(db):
    counts = reading.empty_counts()
    for doc in documents(db).values():
        counts[classify(doc, "surf")] += 1
    return counts


def totals(pool):
    snap = counting.refresh(pool)
    return reading.pool_totals(snap.data) if snap.data else None


def failure(n):
    """A token that failed an hour ago, as a picas pilot leaves it."""
    return surf_token(n, lock=NOW - 3700, done=NOW - 3600, exit_code=1, hostname="wn-01.grid.surfsara.nl",
                      error=[{"time": NOW - 3600, "message": "exit 1"}])


# How picas 1.1.2 ends when the node answering it goes away in the middle of an answer: it does not ask again, so
# the pilot exits (its held token becomes a stale lock), as on the grid. Nothing the dashboard does.
NODE_LOST = ("IncompleteRead", "RemoteDisconnected", "ConnectionResetError", "ConnectionRefusedError", "BadStatusLine",
             "ServerError: (502", "ServerError: (503", "ServerError: (504", "'nodedown'")


def finish(pilots, node_lost=False):
    """Wait for the pilots; each must end well, or (`node_lost`) by the loss of a node under it."""
    for p in pilots:
        out, _ = p.communicate(timeout=PATIENCE)
        assert p.returncode == 0 or node_lost and any(sign in out for sign in NODE_LOST), out[-2000:]


def test_while_pilots_work_through_the_balancer_every_count_adds_up_and_every_move_is_recorded_once(cluster_pool,
                                                                                                    cluster):
    (pool,) = all_pools()
    counting.refresh(pool)  # seen before its tokens exist: each token's every move is an event
    cluster_pool.bulk_docs([surf_token(n) for n in range(TOKENS)])
    wait_for(lambda: sum((totals(pool) or {}).values()) == TOKENS, what="the new tokens in the counts")
    pilots = start_pilots(cluster, cluster_pool.database, 3, delay=0.01, fail_every=9)
    sums = []
    while any(p.poll() is None for p in pilots):
        # Each refresh reads the views and _changes through the balancer: another node each time.
        sums.append(sum(totals(pool).values()))
    finish(pilots)
    assert len(sums) > 3 and set(sums) == {TOKENS}  # never a token counted twice, or lost, while it moved
    # Quiet: a view read right after the last write may still miss it on a cluster; the counts are exact once the
    # copies have it, without anything but the usual refreshes.
    expected = truth(cluster_pool)
    assert expected["done"] + expected["error"] == TOKENS
    wait_for(lambda: totals(pool) == expected, what="the counts equal to the documents")

    moves = list(TokenEvent.objects.filter(pool=pool.slug).order_by("pk")
                 .values_list("doc_id", "from_state", "to_state", "rev"))
    assert len(moves) == len(set(moves))  # none recorded twice, whichever node answered each read of _changes
    chains = {}
    for doc_id, from_state, to_state, _rev in moves:
        chains.setdefault(doc_id, []).append((from_state, to_state))
    docs = documents(cluster_pool)
    for doc_id, chain in chains.items():
        assert chain[0][0] == "" and all(a[1] == b[0] for a, b in zip(chain, chain[1:], strict=False)), chain
        assert chain[-1][1] == classify(docs[doc_id], "surf")
    # Every token finished. picas 1.1.2 claims from the todo view and then reads the document; on a cluster the view
    # can come from a copy that has not seen a finish yet, so a pilot may claim a finished token again and run it
    # twice (seen: 1 in 300): its chain above shows both runs, continuous, as they happened.
    finishes = TokenEvent.objects.filter(pool=pool.slug, to_state__in=("done", "error"))
    assert finishes.values("doc_id").distinct().count() == TOKENS


class Pauses:
    """Holds a running job at the end of chosen batches until the test lets it go: the faults come between batches
    at the same place however fast the machine is."""

    def __init__(self, monkeypatch, at):
        self.at, self.batches = set(at), 0
        self.reached, self.go = threading.Event(), threading.Event()
        save = engine.save_batch

        def save_then_wait(job, records):
            save(job, records)
            self.batches += 1
            if self.batches in self.at:
                self.reached.set()
                self.go.wait(PATIENCE)
                self.go.clear()

        monkeypatch.setattr(engine, "save_batch", save_then_wait)

    def wait(self):
        assert self.reached.wait(PATIENCE), "the job did not reach its pause"
        self.reached.clear()

    def release(self):
        self.go.set()


def run_in_thread(job):
    result = {}

    def run():
        from django.db import connection

        try:
            result["job"] = operations.run_job(job.pk, batch_size=100)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_a_reset_that_loses_a_node_and_gets_it_back_mid_job_resets_each_failure_once_and_records_every_token(
        cluster_pool, cluster, monkeypatch):
    failed = [failure(n) for n in range(300, 1500)]
    cluster_pool.bulk_docs([surf_token(n) for n in range(300)])
    cluster_pool.bulk_docs(failed)
    (pool,) = all_pools()
    wait_for(lambda: (totals(pool) or {}).get("error") == len(failed), what="the failures in the counts")
    # Pilots work the first 600 ids meanwhile: their 300 todo tokens, then the failures the job puts back.
    pilots = start_pilots(cluster, cluster_pool.database, 2, delay=0.01, first="token_00000", last="token_00599")
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {})
    assert job.preview_count == len(failed)
    pauses = Pauses(monkeypatch, at=(3, 6))
    thread, result = run_in_thread(job)
    pauses.wait()
    cluster.stop_node(2)  # a node goes down after the third batch ...
    pauses.release()
    pauses.wait()
    cluster.start_node(2)  # ... and is back after the sixth
    pauses.release()
    thread.join(PATIENCE)
    finish(pilots, node_lost=True)

    job = result["job"]
    assert job.status == Job.SUCCEEDED, job.message
    records = list(JobToken.objects.filter(job=job).values_list("token_id", "outcome"))
    assert job.total == len(failed), (job.total, job.message)  # every failure read
    assert len(records) == len({t for t, _ in records}) == len(failed)  # every token's outcome, once
    assert {o for _, o in records} == {JobToken.CHANGED} and job.changed == len(failed)
    docs = documents(cluster_pool)
    assert all(docs[d["_id"]]["scrub_count"] == 1 for d in failed)  # 0 reset twice
    # The pilots' results are all there: what they finished is done with its output, never reset by the job (a pilot
    # that a lost node ended leaves its token locked, and the rest of its share todo).
    worked = [d for i, d in docs.items() if i <= "token_00599" and d["done"] > 0]
    assert worked and all(d["exit_code"] == 0 and d["output"].get("result") for d in worked)
    assert all(d["scrub_count"] == 0 for d in worked if d["_id"] < "token_00300")


def test_with_every_node_down_the_pages_say_so_a_job_waits_and_all_resumes_when_they_are_back(
        cluster_pool, cluster, monkeypatch, settings, operator_client):
    settings.JOB_RETRIES, settings.JOB_RETRY_BACKOFF = 12, 0.25  # up to about 17 minutes of waiting, doubling
    failed = [failure(n) for n in range(600)]
    cluster_pool.bulk_docs(failed)
    (pool,) = all_pools()
    wait_for(lambda: (totals(pool) or {}).get("error") == len(failed), what="the failures in the counts")
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {})
    pauses = Pauses(monkeypatch, at=(2,))
    thread, result = run_in_thread(job)
    pauses.wait()
    cluster.stop_all()
    pauses.release()  # the job meets a cluster with no node up

    snap = counting.refresh(pool)
    assert snap.error and "unreachable" in snap.error.lower(), snap.error
    page = operator_client.get(f"/pools/{pool.slug}/")
    assert page.status_code == 503 and "unreachable" in page.content.decode().lower()
    shown = operator_client.get(f"/api/v1/pools/{pool.slug}").json()  # the older counts, and why they are older
    assert "unreachable" in shown["error"] and shown["counts"]["error"] == len(failed)

    cluster.start_all()
    thread.join(PATIENCE)
    job = result["job"]
    # The nodes come back one after another: what the job wrote while only one answered was taken without a
    # quorum (202), and the job says so rather than call it done.
    unconfirmed = JobToken.objects.filter(job=job, unconfirmed=True).count()
    assert job.status == Job.SUCCEEDED if not unconfirmed else (
        job.status == Job.FAILED and f"{unconfirmed} of them not confirmed" in job.message), job.message
    assert JobToken.objects.filter(job=job, outcome=JobToken.CHANGED).count() == len(failed)
    assert all(d["scrub_count"] == 1 for d in documents(cluster_pool).values())
    wait_for(lambda: totals(pool) == {**reading.empty_counts(), "todo": len(failed)},
             what="the counts again, by themselves")
    assert operator_client.get(f"/pools/{pool.slug}/").status_code == 200


def test_writes_a_cluster_accepts_without_a_quorum_are_neither_lost_nor_called_done(cluster_pool, cluster,
                                                                                     operator_client):
    failed = [failure(n) for n in range(300, 600)]
    cluster_pool.bulk_docs([surf_token(n) for n in range(300)])
    cluster_pool.bulk_docs(failed)
    (pool,) = all_pools()
    wait_for(lambda: (totals(pool) or {}).get("error") == len(failed), what="the failures in the counts")
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {})
    cluster.stop_node(2)
    cluster.stop_node(3)  # one copy of each shard left: CouchDB takes writes with 202, accepted, not on a quorum
    # Pilots work the 300 todo tokens on the one node meanwhile (their writes are taken with 202 too, which picas
    # counts as saved), and then the failures the job puts back.
    pilots = start_pilots(cluster, cluster_pool.database, 2, delay=0.01)
    job = operations.run_job(job.pk, batch_size=100)

    unconfirmed = JobToken.objects.filter(job=job, unconfirmed=True)
    assert job.status == Job.FAILED and unconfirmed.count() == len(failed), job.message
    assert f"{len(failed)} of them not confirmed" in job.message
    page = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "not confirmed" in page and failed[0]["_id"] in page
    problems = operator_client.get(f"/api/v1/jobs/{job.pk}").json()["problems"]
    assert len(problems) == len(failed) and all(p["unconfirmed"] for p in problems)

    # An attachment, which goes one request per token (an attach job's way), is marked the same.
    token = cluster_pool.get(failed[0]["_id"])
    rev = cluster_pool.put_attachment(token["_id"], "note.txt", io.BytesIO(b"checked"), "text/plain", token["_rev"])
    assert rev.accepted_only

    finish(pilots)
    cluster.start_node(2)
    cluster.start_node(3)  # back: the copies catch up, and every reset is there, once, and every pilot's result
    docs = documents(cluster_pool)
    finished = [d for d in docs.values() if d["done"] > 0]
    assert all(d["exit_code"] == 0 and d["output"].get("result") for d in finished)  # nothing lost on one node
    assert {d["_id"] for d in finished} >= {f"token_{n:05d}" for n in range(300)}
    # Each failure reset once; a pilot has run it since, or it waits in todo for the next one.
    again = [docs[d["_id"]] for d in failed]
    assert all(d["scrub_count"] == 1 and (d["done"] > 0 or d["lock"] == 0) for d in again)
    for node in cluster.node_urls:  # and through every node
        db = Couch(node, cluster_pool.database, cluster.username, cluster.password)
        wait_for(lambda db=db: documents(db) == docs, what="every node reading the resets and the results")
