"""Jobs while real picas workers run: re-checks on 409, no worker result lost, cancel, CouchDB going away."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localsite.embedded import EmbeddedCouch
from localsite.seeding import picas_python
from tests.api_client import api_as
from tests.conftest import own_couch_server, server_env, surf_token
from tests.forms import started_job
from tests.waiting import PATIENCE, wait_for
from tokens import actions, operations, selections
from tokens.couch import Couch, NotFound
from tokens.models import Job, JobToken
from tokens.pools import all_pools
from tokens.selections import OperationError, Selection
from tokens.states import classify

NOW = int(time.time())
STALE = NOW - 30 * 3600


def errored(n, **fields):
    return surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=1, hostname="wn",
                      error=[{"time": NOW - 60, "message": "exit 1"}], **fields)


def picas_env(server, database, **extra):
    return dict(os.environ, PICAS_URL=server.url, PICAS_DB=database, PICAS_USER=server.username,
                PICAS_PASSWORD=server.password, **extra)


def picas_steps(server, database, *steps):
    """Change tokens with the real picas client, as a pilot does (tests/picas_steps.py says what a step is); it runs
    in picas's own environment, as the pilots do."""
    subprocess.run([picas_python(), str(Path(__file__).with_name("picas_steps.py"))], env=picas_env(server, database),
                   input=json.dumps(steps), text=True, check=True, capture_output=True)


def start_pilots(server, database, count, delay, fail_every=0, raise_every=0, max_scrub=0, cleanup=0, first="",
                 last="", hostname="", stop_file=""):
    env = picas_env(server, database, PICAS_DELAY=str(delay), PICAS_FAIL_EVERY=str(fail_every),
               PICAS_RAISE_EVERY=str(raise_every), PICAS_MAX_SCRUB=str(max_scrub), PICAS_CLEANUP=str(cleanup),
               PICAS_FIRST=first, PICAS_LAST=last, PICAS_HOSTNAME=hostname, PICAS_STOP_FILE=stop_file)
    script = Path(__file__).with_name("picas_worker.py")
    return [subprocess.Popen([picas_python(), str(script)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(count)]


@pytest.mark.django_db
def test_a_token_changed_by_a_worker_after_the_job_read_it_is_rechecked_not_overwritten(scratch_pool, couch_server):
    scratch_pool.bulk_docs([surf_token(1, lock=STALE, hostname="slow-but-alive"), errored(2), errored(3)])
    pool = all_pools()[0]
    couch = pool.couch()
    rules = selections.pool_rules(pool, couch)
    stale_job = Job.objects.create(pool=pool.slug, action="reset", selection={"kind": "stale", "hours": 24},
                                   preview_count=1)
    error_job = Job.objects.create(pool=pool.slug, action="reset", selection={"kind": "state", "bucket": "error"},
                                   preview_count=2)
    read_by_job = {d["_id"]: d for d in selections.fetch(couch, ["token_00001", "token_00002", "token_00003"])}

    # Meanwhile the real picas client: the slow pilot finishes token 1, a pilot's max_scrub retry scrubs
    # token 2, and someone annotates token 3 (which stays in error).
    picas_steps(couch_server, scratch_pool.database,
                {"id": "token_00001", "do": "done", "fields": {"exit_code": 0}}, {"id": "token_00002", "do": "scrub"},
                {"id": "token_00003", "do": "set", "fields": {"note": "looked at"}})

    actions.process_batch(stale_job, couch, Selection("stale", hours=24), rules, [read_by_job["token_00001"]],
                          time.time())
    actions.process_batch(error_job, couch, Selection("state", bucket="error"), rules,
                          [read_by_job["token_00002"], read_by_job["token_00003"]], time.time())

    token1 = scratch_pool.get("token_00001")
    assert token1["done"] > 0 and token1["exit_code"] == 0  # the worker's result stands
    assert scratch_pool.get("token_00002")["scrub_count"] == 1  # scrubbed once, by picas only
    token3 = scratch_pool.get("token_00003")
    assert (token3["lock"], token3["note"], token3["scrub_count"]) == (0, "looked at", 1)
    outcomes = {t.token_id: (t.outcome, t.conflicted, t.reason) for t in JobToken.objects.all()}
    assert outcomes["token_00001"] == ("skipped", True, "changed meanwhile (now done)")
    assert outcomes["token_00002"] == ("skipped", True, "changed meanwhile (now todo)")
    assert outcomes["token_00003"] == ("changed", True, "after a conflict")
    assert (stale_job.conflicts, error_job.conflicts) == (1, 2)


@pytest.mark.django_db
def test_resetting_errors_and_stale_locks_while_pilots_run_loses_no_result(scratch_pool, couch_server, settings):
    """Pilots claim, fail and scrub tokens while error and stale-lock resets run over and over."""
    # The scrubbing pilot takes 0.5 s of clean-up between saving a failure and scrubbing it, and its save itself
    # takes a while on a busy machine (picas stamps the failure before it saves): well within a 3 s grace period, so
    # only a reset that measured the failure's age wrongly (from done = 99, say) can hit the token in between.
    settings.JOB_FINISHED_GRACE_SECONDS = 3
    tokens = [errored(n) for n in range(60)] + [surf_token(n, lock=STALE, hostname="dead") for n in range(60, 80)]
    tokens += [surf_token(n) for n in range(80, 400)]
    scratch_pool.bulk_docs(tokens)
    pool = all_pools()[0]
    # Two pilots leave their failures in error, one scrubs and retries them itself (picas max_scrub). Failures
    # of both kinds: an exit code (done = now), and an exception (lock = done = 99, the time only in error[]).
    # The scrubbing pilot has tokens 300-399 to itself: picas claims what it read from the view without looking
    # at the state it fetched, so two pilots sometimes claim one token; the second one's save then makes the
    # first one's scrub save fail with a 409 that picas does not handle. That is picas against picas, not us.
    pilots = start_pilots(couch_server, scratch_pool.database, 2, delay=0.01, fail_every=3, raise_every=5,
                          last="token_00299")
    pilots += start_pilots(couch_server, scratch_pool.database, 1, delay=0.01, fail_every=2, raise_every=3,
                           max_scrub=1, cleanup=0.5, first="token_00300")
    jobs = []
    try:
        while any(p.poll() is None for p in pilots) and len(jobs) < 60:
            for selection in (Selection("state", bucket="error"), Selection("stale", hours=24)):
                count = selections.preview(pool, selection)["count"]
                if count == 0:  # nothing to reset now: no job is recorded for nothing
                    continue
                with contextlib.suppress(OperationError):  # the count moved since the preview: nothing written
                    jobs.append(operations.run_job(operations.create_job(
                        pool, None, "reset", selection, {}, confirmation=str(count)).pk, batch_size=5))
    finally:
        outputs = [p.communicate(timeout=PATIENCE)[0] for p in pilots]
    # No pilot crashed: a reset never hit a pilot's own scrub save (picas does not handle a 409 there).
    crashed = [out for p, out in zip(pilots, outputs, strict=True) if p.returncode != 0]
    assert not crashed, "a pilot crashed:\n" + "\n----\n".join(out[-4000:] for out in crashed)
    for job in jobs:
        assert job.status == "succeeded"
        assert job.total == job.changed + job.skipped + job.failed
        assert job.conflicts >= JobToken.objects.filter(job=job, conflicted=True).count()
    # Every token a job changed was, in the revision it replaced, still in the selected state: never a token
    # a pilot had finished, scrubbed or held freshly.
    changed = JobToken.objects.filter(outcome="changed")
    assert changed.count() >= 80
    # CouchDB 3 compacts a database this busy within seconds, and a compacted revision's body is gone; the
    # embedded server keeps them all.
    compacted = 0
    for record in changed:
        try:
            replaced = scratch_pool.call(scratch_pool.client.get_document, db=scratch_pool.database,
                                          doc_id=record.token_id, rev=record.rev_before)
        except NotFound:
            compacted += 1
            continue
        state = classify(replaced, "surf")
        assert state == record.job.selection.get("bucket", "locked"), record.token_id
        if state == "locked":
            assert time.time() - replaced["lock"] > 24 * 3600
    assert compacted == 0 or not isinstance(couch_server, EmbeddedCouch)
    # A pilot's result is never undone (reset keeps `output`, so a reset done token would show here), and
    # every token is still there.
    docs = [r["doc"] for r in scratch_pool.call(scratch_pool.client.post_all_docs, db=scratch_pool.database,
                                                 include_docs=True)["rows"] if not r["id"].startswith("_design/")]
    assert len(docs) == 400
    # The pilots' exceptions happened (the failures picas marks lock = done = 99), and some were reset.
    raised = {d["_id"] for d in docs if any("pilot raised" in str(e.get("message")) for e in d.get("error") or [])}
    assert raised and raised & {r.token_id for r in changed}
    for doc in docs:
        if isinstance(doc.get("output"), dict) and doc["output"].get("result"):
            assert classify(doc, "surf") == "done", doc["_id"]
    print(f"{len(jobs)} reset jobs, {sum(j.changed for j in jobs)} resets, "
          f"{sum(j.conflicts for j in jobs)} conflicts, {sum(j.skipped for j in jobs)} skipped")


def reset_in_couch(db):
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return sum(1 for r in rows if r["doc"].get("scrub_count") == 1)


@pytest.mark.django_db(transaction=True)
def test_a_cancelled_job_stops_between_batches_and_says_exactly_what_it_wrote(operator_client, scratch_pool,
                                                                              settings, celery_worker):
    settings.JOB_BATCH_SIZE = 5
    settings.JOB_CONFIRM_THRESHOLD = 1000
    scratch_pool.bulk_docs([errored(n) for n in range(300)])
    pk = started_job(operator_client.post(f"/pools/{scratch_pool.database}/jobs/",
                                          {"action": "reset", "kind": "state", "bucket": "error"})).pk
    assert wait_for(lambda: Job.objects.get(pk=pk).changed > 0)
    operator_client.post(f"/jobs/{pk}/cancel/")
    assert wait_for(lambda: Job.objects.get(pk=pk).ended)
    job = Job.objects.get(pk=pk)
    assert job.status == "cancelled" and 0 < job.changed < 300
    assert reset_in_couch(scratch_pool) == job.changed == JobToken.objects.filter(job=job, outcome="changed").count()


@pytest.mark.django_db(transaction=True)
def test_couchdb_going_away_mid_job_fails_it_with_an_exact_account_and_a_safe_rerun(
        operator_client, settings, celery_worker, tmp_path):
    server = own_couch_server(tmp_path / "couch").start()  # on disk: its data survives the restart
    try:
        settings.COUCHDB_URL, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = (
            server.url, server.username, server.password)
        settings.COUCHDB_DATABASES = ["outage"]
        settings.JOB_BATCH_SIZE, settings.JOB_RETRIES, settings.JOB_RETRY_BACKOFF = 5, 3, 0.2
        settings.JOB_CONFIRM_THRESHOLD = 1000
        db = Couch(server.url, "outage", server.username, server.password)
        db.create_database()
        from localsite import demo

        demo.surf_design_docs(server.url, server.username, server.password, "outage")
        db.bulk_docs([errored(n) for n in range(300)])
        pk = started_job(operator_client.post("/pools/outage/jobs/",
                                              {"action": "reset", "kind": "state", "bucket": "error"})).pk
        assert wait_for(lambda: Job.objects.get(pk=pk).changed > 0)
        server.stop()
        assert wait_for(lambda: Job.objects.get(pk=pk).ended)
        job = Job.objects.get(pk=pk)
        assert job.status == "failed" and "is unreachable" in job.message and "gave up after 3 tries" in job.message
        page = operator_client.get(f"/jobs/{pk}/").content.decode()
        assert "is unreachable" in page and "Re-run" in page

        server.start()
        written = reset_in_couch(db)
        # Every write the job recorded is there; at most the one batch in flight is unaccounted for.
        assert job.changed <= written <= job.changed + 5
        rerun_link = operations.rerun_query(job)
        assert operator_client.get(f"/pools/outage/jobs/new/?{rerun_link}").status_code == 200  # a new dry run
        new_pk = started_job(operator_client.post("/pools/outage/jobs/",
                                                  {"action": "reset", "kind": "state", "bucket": "error"})).pk
        assert wait_for(lambda: Job.objects.get(pk=new_pk).ended)
        assert Job.objects.get(pk=new_pk).status == "succeeded"
        assert reset_in_couch(db) == 300  # every token reset exactly once
    finally:
        server.stop()


@pytest.mark.django_db
def test_a_job_whose_worker_stopped_reporting_is_shown_interrupted_and_reruns_safely(scratch_pool, settings):
    scratch_pool.bulk_docs([errored(n) for n in range(10)])
    pool = all_pools()[0]
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {})
    actions.process_batch(job, pool.couch(), Selection("state", bucket="error"),
                          selections.pool_rules(pool, pool.couch()),
                          selections.fetch(pool.couch(), [f"token_{n:05d}" for n in range(4)]), time.time())
    Job.objects.filter(pk=job.pk).update(status=Job.RUNNING, heartbeat_at=job.created_at.replace(year=2000))
    assert operations.mark_interrupted() == 1
    assert Job.objects.get(pk=job.pk).status == "interrupted"
    assert operations.run_job(job.pk).status == "interrupted"  # never resumed in place
    again = operations.run_job(operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {}).pk)
    assert (again.preview_count, again.changed, again.status) == (6, 6, "succeeded")
    assert reset_in_couch(scratch_pool) == 10


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_job_leaves_an_interrupted_job_that_reruns_safely(
        operator_client, scratch_pool, couch_server, redis_server, settings):
    """A real Celery worker process, SIGKILLed while it runs a reset: the job shows as interrupted, the record
    matches what is in CouchDB, and a re-run finishes the rest without resetting anything twice."""
    import signal

    settings.JOB_CONFIRM_THRESHOLD = 10_000
    scratch_pool.bulk_docs([errored(n) for n in range(400)])
    env = server_env(couch_server, scratch_pool, redis_server.url, JOB_BATCH_SIZE="5")
    queue = f"doomed-{os.getpid()}"  # its own queue: the tests' worker thread must not take this job
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool", "solo",
                               "--loglevel", "WARNING", "--hostname", f"{queue}@%h", "-Q", queue],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from dashboard.celery import app
        from tokens.tasks import run_job

        # A starting worker hands every queued job to the broker again (tend_jobs): let it start before the job
        # exists, so that this job goes to it alone.
        assert wait_for(lambda: any(name.startswith(queue) for reply in app.control.ping(timeout=0.5)
                                    for name in reply), seconds=60)
        pk = operations.create_job(all_pools()[0], None, "reset", Selection("state", bucket="error"), {}).pk
        run_job.apply_async((pk,), queue=queue)
        assert wait_for(lambda: Job.objects.get(pk=pk).changed >= 20, seconds=60)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    finally:
        if worker.poll() is None:
            worker.kill()
    settings.JOB_HEARTBEAT_TIMEOUT = 1
    api = api_as(operator_client)
    # Reading the job marks it interrupted once its last heartbeat is older than the timeout.
    shown = wait_for(lambda: (answer := api.get(f"/api/v1/jobs/{pk}").json())["status"] != "running" and answer,
                     what="the killed worker's job to stop showing as running")
    assert shown["status"] == "interrupted" and "stopped" in shown["message"]
    job = Job.objects.get(pk=pk)
    written = reset_in_couch(scratch_pool)
    assert job.changed <= written <= job.changed + 5  # the record is exact up to the batch being written
    rerun = operations.run_job(operations.create_job(all_pools()[0], None, "reset",
                                                     Selection("state", bucket="error"), {},
                                                     confirmation=str(400 - written)).pk)
    assert rerun.status == "succeeded" and rerun.changed == 400 - written
    assert reset_in_couch(scratch_pool) == 400
    rows = scratch_pool.call(scratch_pool.client.post_all_docs, db=scratch_pool.database, include_docs=True)["rows"]
    assert max(r["doc"].get("scrub_count", 0) for r in rows) == 1  # nothing was reset twice
