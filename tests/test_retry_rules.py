"""Retry rules (tokens/retries.py) against real picas pilots: transient failures retried until done, permanent ones
given up after their attempts, never within the grace period, never beside an operator's job on the same pool."""

import threading
import time

import pytest
from django.utils import timezone

from tests.conftest import surf_token
from tests.test_job_safety import start_pilots
from tests.waiting import PATIENCE, wait_for
from tokens import counting, engine, operations, reading, retries
from tokens.models import GivenUp, Job, JobToken, TokenEvent
from tokens.pools import all_pools
from tokens.selections import Selection

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
TRANSIENT = {"code": 21, "message": "download failed: srm://srm.grid.sara.nl/pnfs/L229585_SB001.tar timed out",
             "times": 2}
PERMANENT = {"code": 3, "message": "bad input: no such subband", "times": -1}


def failed_token(n, code=21, message="download failed", at=NOW - 3600, **fields):
    return surf_token(n, **{"lock": at - 60, "done": at, "exit_code": code, "hostname": "wn-01.grid.surfsara.nl",
                            "error": [{"time": at, "message": message}], **fields})


def pool_counts(pool):
    snap = counting.refresh(pool)
    return reading.pool_totals(snap.data)


def run_due(pool):
    """What the periodic task does, run here: the due rules' jobs, each to its end."""
    return [operations.run_job(job.pk) for job in retries.apply(pools=[pool])]


def test_transient_failures_end_done_and_permanent_ones_are_given_up_after_their_attempts(
        scratch_pool, couch_server, settings, tmp_path):
    settings.JOB_FINISHED_GRACE_SECONDS = 2
    scratch_pool.bulk_docs([surf_token(n) for n in range(10)]
                           + [surf_token(n, simulate=TRANSIENT) for n in range(10, 20)]
                           + [surf_token(n, simulate=PERMANENT) for n in range(20, 30)])
    (pool,) = all_pools()
    retries.make(pool, None, "downloads", "21", None, attempts=4, wait_minutes=2 / 60, per_hour=1000)
    retries.make(pool, None, "bad input", "3", None, attempts=3, wait_minutes=2 / 60, per_hour=1000)
    stop = tmp_path / "stop"
    # Two hosts failing alike: neither is a black hole (the failures are the tokens', not a host's).
    pilots = [p for host in ("wn-01.grid.surfsara.nl", "wn-02.grid.surfsara.nl")
              for p in start_pilots(couch_server, scratch_pool.database, 1, delay=0.01, hostname=host,
                                    stop_file=str(stop))]
    jobs = []

    def settled():
        assert all(p.poll() is None for p in pilots), "a pilot exited while there was work"  # 0 pilot exits
        counts = pool_counts(pool)
        jobs.extend(run_due(pool))
        return counts["done"] == 20 and retries.given_up(pool.slug).count() == 10 and not counts["todo"] \
            and not counts["locked"]

    try:
        wait_for(settled, what="the transient failures done and the permanent ones given up")
    finally:
        stop.touch()
        outputs = [p.communicate(timeout=PATIENCE)[0] for p in pilots]
    assert all(p.returncode == 0 for p in pilots), outputs

    docs = {d["_id"]: d for d in scratch_pool.docs([f"token_{n:05d}" for n in range(30)])}
    transient = [docs[f"token_{n:05d}"] for n in range(10, 20)]
    permanent = [docs[f"token_{n:05d}"] for n in range(20, 30)]
    # picas claims what it read from the view without looking at the state it fetched, so two pilots now and then
    # run one token at once (each run appends its failure): a token's runs are its error list, not a fixed number.
    # Transient: failed its first two runs, retried by rule after each failure, then done with its result.
    assert all(d["done"] > 0 and d["exit_code"] == 0 and d["output"]["result"] for d in transient)  # 0 results lost
    assert all(len(d["error"]) >= 2 for d in transient)
    # Permanent: three runs at least (the rule's attempts), then given up: failed still, recorded, never reset again.
    assert all(d["exit_code"] == 3 and len(d["error"]) >= 3 for d in permanent)
    assert sorted(GivenUp.objects.values_list("doc_id", "failures", "rule_name")) == [
        (d["_id"], len(d["error"]), "bad input") for d in permanent]
    assert all(j.status == Job.SUCCEEDED and j.via == "rule" and j.action == "reset" for j in jobs), \
        [(j.pk, j.status, j.message) for j in jobs]
    changed = JobToken.objects.filter(job__in=jobs, outcome=JobToken.CHANGED)
    for doc in transient + permanent:  # each reset was the rule's, one per failure at most: never one reset twice
        resets = changed.filter(token_id=doc["_id"]).count()
        assert resets == doc["scrub_count"] and 1 <= resets < len(doc["error"]) + (doc["exit_code"] == 0)
    # 0 resets within the grace period: each reset's job started at least the grace after the failure it retried.
    for doc in transient + permanent:
        resets = list(changed.filter(token_id=doc["_id"]).order_by("job_id").values_list("job__started_at",
                                                                                           flat=True))
        for failure, started in zip(doc["error"], resets, strict=False):
            assert started.timestamp() - failure["time"] >= settings.JOB_FINISHED_GRACE_SECONDS, (doc["_id"], resets)
    # The events show every failure: the rule counted them from the token's history.
    assert TokenEvent.objects.filter(pool=pool.slug, doc_id=permanent[0]["_id"], to_state="error").count() >= 1
    # The given-up tokens are not retried again, however often the rules look.
    assert run_due(pool) == []


def test_a_rule_gives_way_to_an_operators_job_and_an_operators_job_waits_for_a_rules(scratch_pool, monkeypatch):
    scratch_pool.bulk_docs([failed_token(n) for n in range(40)])
    (pool,) = all_pools()
    pool_counts(pool)
    # (all 40 failed on one host, which makes it a black hole: not what this test is about)
    rule = retries.make(pool, None, "downloads", "21", None, attempts=5, wait_minutes=1, per_hour=1000,
                        hold_black_holes=False)

    # An operator's job queued or running on the pool: the rule starts nothing.
    mine = operations.create_job(pool, None, "set_field", Selection("state", bucket="error"),
                                 {"field": "note", "value": "looked at"})
    assert retries.apply(pools=[pool]) == []
    # A rule's job that meets a running job gives way, writing nothing.
    Job.objects.filter(pk=mine.pk).update(status=Job.RUNNING, heartbeat_at=timezone.now())
    ruled = Job.objects.create(pool=pool.slug, via="rule", rule=rule, action="reset",
                               selection=retries.selection(rule).as_dict(), params=retries.params(rule, 100),
                               preview_count=40)
    ruled = operations.run_job(ruled.pk)
    assert ruled.status == Job.CANCELLED and "Gave way" in ruled.message and ruled.changed == 0
    Job.objects.filter(pk=mine.pk).update(status=Job.CANCELLED)

    # A rule's job runs (held after its first batch); an operator's job on the same tokens waits for it, says so,
    # and then finds nothing left to reset: no token is written by both.
    gate, held = threading.Event(), threading.Event()
    save = engine.save_batch

    def hold_first(job, records):
        save(job, records)
        if job.via == "rule" and not held.is_set():
            held.set()
            gate.wait(PATIENCE)

    monkeypatch.setattr(engine, "save_batch", hold_first)
    (ruled,) = retries.apply(pools=[pool])
    operator_job = Job.objects.create(pool=pool.slug, action="reset", selection={"kind": "state", "bucket": "error"},
                                      preview_count=40)
    results = {}
    threads = [threading.Thread(target=lambda k=k, j=j: results.__setitem__(k, run_isolated(j, batch_size=10)))
               for k, j in (("rule", ruled), ("operator", operator_job))]
    threads[0].start()
    held.wait(PATIENCE)
    threads[1].start()
    wait_for(lambda: "Waiting for job" in Job.objects.get(pk=operator_job.pk).message,
             what="the operator's job saying it waits for the rule's")
    assert JobToken.objects.filter(job=operator_job).count() == 0
    gate.set()
    for t in threads:
        t.join(PATIENCE)
    assert results["rule"].status == results["operator"].status == Job.SUCCEEDED
    by_rule = set(JobToken.objects.filter(job=ruled, outcome="changed").values_list("token_id", flat=True))
    by_operator = set(JobToken.objects.filter(job=operator_job, outcome="changed").values_list("token_id", flat=True))
    assert len(by_rule) == 40 and not by_rule & by_operator


def run_isolated(job, batch_size):
    from django.db import connection

    try:
        return operations.run_job(job.pk, batch_size=batch_size)
    finally:
        connection.close()


def test_a_dry_run_says_what_the_rule_would_do_and_what_it_did(scratch_pool, settings):
    scratch_pool.bulk_docs(
        [failed_token(n) for n in range(6)]  # retried
        + [failed_token(n, error=[{"time": NOW - 3600 * i, "message": "download failed"} for i in (3, 2, 1)])
           for n in range(6, 9)]  # failed 3 times already (the last an hour ago): given up
        + [failed_token(n, hostname="wn-13.grid.surfsara.nl") for n in range(9, 12)]  # on a black hole: held
        + [failed_token(n, at=int(time.time()) - 30) for n in range(12, 14)]  # too recent for the rule's 10 minutes
        + [failed_token(n, code=3, message="bad input") for n in range(14, 16)])  # another group: not the rule's
    (pool,) = all_pools()
    pool_counts(pool)
    snap = counting.snapshot(pool)
    snap.data["black_holes"] = [{"hostname": "wn-13.grid.surfsara.nl", "failed": 3, "done": 0, "rate": 1.0,
                                 "rest_rate": 0.1}]
    snap.save(update_fields=["data"])
    rule = retries.make(pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=4)

    seen = retries.plan(rule, pool)
    assert (seen["would_retry"], seen["beyond_quota"], seen["given_up"], seen["held"], seen["waiting"]) == \
        (4, 2, 3, 3, 2)
    assert seen["held_hosts"] == {"wn-13.grid.surfsara.nl": 3} and seen["complete"]
    assert not JobToken.objects.exists()  # a dry run writes nothing

    (job,) = retries.apply(pools=[pool])
    job = operations.run_job(job.pk)
    assert job.status == Job.SUCCEEDED and job.changed == 4, job.message  # the hour's limit
    reasons = dict(JobToken.objects.filter(job=job, outcome="skipped").values_list("token_id", "reason"))
    assert reasons["token_00006"].startswith("given up: failed 3 times")
    assert reasons["token_00009"].startswith("held: failed on wn-13")
    assert retries.plan(rule, pool)["would_retry"] == 0  # the hour's limit is used
    assert retries.apply(pools=[pool]) == []
    did = retries.did(rule)
    assert did["retried"] == 4 and did["jobs"] == [job]
    assert set(retries.given_up(pool.slug).values_list("doc_id", flat=True)) == {"token_00006", "token_00007",
                                                                                 "token_00008"}


def test_a_paused_pool_or_rule_starts_nothing(scratch_pool):
    scratch_pool.bulk_docs([failed_token(n) for n in range(3)])
    (pool,) = all_pools()
    pool_counts(pool)
    rule = retries.make(pool, None, "downloads", "21", None, attempts=3, wait_minutes=1, per_hour=10)
    retries.pause(pool, None, True)
    assert retries.apply(pools=[pool]) == []
    retries.pause(pool, None, False)
    retries.change(rule, pool, None, enabled=False)
    assert retries.apply(pools=[pool]) == []
    retries.change(rule, pool, None, enabled=True)
    assert len(retries.apply(pools=[pool])) == 1


@pytest.mark.parametrize(("fields", "refusal"), [
    ({"name": ""}, "Give the rule a name"),
    ({"attempts": "0"}, "attempts a token gets in all"),
    ({"attempts": "2.5"}, "a whole number"),
    ({"per_hour": "-1"}, "tokens retried an hour"),
    ({"wait_minutes": "0"}, "at least the grace period"),
    ({"wait_minutes": "nan"}, "at least the grace period"),
    ({"code": "", "message": "timed out"}, "only together with its exit code"),
    ({"name": "x" * 101}, "at most 100 characters"),
])
def test_a_rule_with_bad_fields_is_refused_with_a_reason(scratch_pool, fields, refusal):
    (pool,) = all_pools()
    given = {"name": "downloads", "code": "21", "message": None, "attempts": "3", "wait_minutes": "5",
             "per_hour": "100", **fields}
    with pytest.raises(retries.RuleError, match=refusal):
        retries.make(pool, None, **given)


def test_the_rules_are_applied_by_a_periodic_task_every_retry_rules_seconds():
    from django.conf import settings

    entry = settings.CELERY_BEAT_SCHEDULE["apply-retry-rules"]
    assert entry == {"task": "tokens.tasks.apply_retry_rules", "schedule": float(settings.RETRY_RULES_SECONDS)}
