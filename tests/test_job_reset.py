"""Reset/retry: exactly resetTokens.py's fields, by state or lock age, idempotent, preview equal to the effect."""

import time

import pytest

from tests.conftest import surf_token
from tokens import operations, selections
from tokens.models import Job, JobToken
from tokens.pools import all_pools
from tokens.selections import OperationError, Selection

pytestmark = pytest.mark.django_db

NOW = int(time.time())


def pool():
    return all_pools()[0]


def run(action, selection, params=None, confirmation=None, user=None):
    job = operations.create_job(pool(), user, action, selection, params or {}, confirmation=confirmation)
    return operations.run_job(job.pk, batch_size=7)


def errored(n, **fields):
    return surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=1, hostname="wn1", slurm_job_id="77",
                      error=[{"time": NOW - 60, "message": "boom"}], **fields)


def test_reset_writes_exactly_the_surf_fields_and_keeps_the_error_history(scratch_pool):
    scratch_pool.bulk_docs([errored(1, _attachments={"logs.out": {"content_type": "text/plain", "data": "aGk="}})])
    before = scratch_pool.get("token_00001")
    job = run("reset", Selection("state", bucket="error"))
    after = scratch_pool.get("token_00001")
    assert job.status == Job.SUCCEEDED and job.changed == 1
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)} - {"_rev"}
    assert changed == {"lock", "done", "hostname", "exit_code", "scrub_count"}
    assert (after["lock"], after["done"], after["hostname"], after["exit_code"], after["scrub_count"]) == (
        0, 0, "", "", 1)
    assert after["error"] == before["error"] and after["_attachments"] == before["_attachments"]


def test_reset_can_delete_attachments_when_asked(scratch_pool):
    scratch_pool.bulk_docs([errored(1, _attachments={"logs.out": {"content_type": "text/plain", "data": "aGk="}})])
    run("reset", Selection("state", bucket="error"), {"delete_attachments": True})
    assert "_attachments" not in scratch_pool.get("token_00001")


def test_a_missing_scrub_count_counts_as_zero(scratch_pool):
    doc = errored(1)
    del doc["scrub_count"]
    scratch_pool.bulk_docs([doc])
    run("reset", Selection("state", bucket="error"))
    assert scratch_pool.get("token_00001")["scrub_count"] == 1


def test_grid_lrt_tokens_also_get_status_todo_and_an_empty_output(scratch_pool):
    scratch_pool.bulk_docs([{"_id": "t_lrt", "type": "pref_cal1_L229585", "lock": NOW - 900, "done": NOW - 100,
                             "status": "error", "output": 21, "hostname": "wn", "scrub_count": 0,
                             "times": {"error": NOW - 100}}])
    job = run("reset", Selection("state", bucket="error", type="pref_cal1_L229585"))
    after = scratch_pool.get("t_lrt")
    assert job.changed == 1
    assert (after["status"], after["output"], after["lock"], after["done"], after["scrub_count"]) == (
        "todo", "", 0, 0, 1)
    assert after["times"] == {"error": NOW - 100}


def test_locked_tokens_are_reset_by_lock_age_only(scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=NOW - 30 * 3600, hostname="dead"),
                            surf_token(2, lock=NOW - 600, hostname="alive")])
    job = run("reset", Selection("stale", hours=24))
    assert job.changed == 1
    assert scratch_pool.get("token_00001")["lock"] == 0
    assert scratch_pool.get("token_00002")["lock"] == NOW - 600


def test_the_preview_count_equals_what_is_then_changed(scratch_pool):
    scratch_pool.bulk_docs([errored(n) for n in range(40)] + [surf_token(n) for n in range(40, 60)])
    selection = Selection("state", bucket="error")
    seen = selections.preview(pool(), selection)
    job = run("reset", selection)
    assert seen["count"] == job.preview_count == job.changed == 40
    assert JobToken.objects.filter(job=job, outcome="changed").count() == 40


def test_running_the_same_reset_twice_changes_nothing_the_second_time_and_records_no_job(scratch_pool):
    scratch_pool.bulk_docs([errored(n) for n in range(10)])
    run("reset", Selection("state", bucket="error"))
    revs = {d["id"]: d["value"]["rev"] for d in scratch_pool.call(
        scratch_pool.client.post_all_docs, db=scratch_pool.database)["rows"]}
    with pytest.raises(OperationError, match="No token is in this selection now: nothing to do"):
        run("reset", Selection("state", bucket="error"))
    assert Job.objects.count() == 1
    assert revs == {d["id"]: d["value"]["rev"] for d in scratch_pool.call(
        scratch_pool.client.post_all_docs, db=scratch_pool.database)["rows"]}


def test_more_than_the_threshold_needs_the_count_typed(scratch_pool, settings):
    settings.JOB_CONFIRM_THRESHOLD = 5
    scratch_pool.bulk_docs([errored(n) for n in range(8)])
    with pytest.raises(OperationError, match=r"Type the number of tokens \(8\)"):
        operations.create_job(pool(), None, "reset", Selection("state", bucket="error"), {})
    job = operations.create_job(pool(), None, "reset", Selection("state", bucket="error"), {}, confirmation="8")
    assert job.preview_count == 8


def test_a_whole_observation_can_be_selected_across_its_states(scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([errored(1, OBSID="L1"), surf_token(2, OBSID="L1"),
                            surf_token(3, OBSID="L1", lock=NOW - 5, done=NOW, exit_code=0), errored(4, OBSID="L2")])
    selection = Selection("observation", type="token", group="L1")
    assert selections.preview(pool(), selection)["count"] == 3
    job = run("set_field", selection, {"field": "campaign", "value": "c7"})
    assert job.changed == 3
    assert "campaign" not in scratch_pool.get("token_00004")


def test_fresh_locks_are_never_written_whatever_the_selection(scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=NOW - 60, hostname="alive", OBSID="L1"), errored(2, OBSID="L1")])
    with pytest.raises(OperationError, match="by lock age"):
        run("reset", Selection("state", bucket="locked"))
    ticked = run("reset", Selection("ids", ids=["token_00001", "token_00002"]))
    assert (ticked.changed, ticked.skipped) == (1, 1)
    assert scratch_pool.get("token_00001")["lock"] == NOW - 60
    # A whole observation leaves its locked tokens out from the dry run on: the fresh lock is not even read.
    assert selections.preview(pool(), Selection("observation", type="token"))["count"] == 1
    whole = run("set_field", Selection("observation", type="token"), {"field": "x", "value": 1})
    assert "x" not in scratch_pool.get("token_00001") and (whole.total, whole.changed) == (1, 1)


def test_a_token_ticked_twice_is_changed_once(scratch_pool):
    scratch_pool.bulk_docs([errored(1)])
    job = run("reset", Selection("ids", ids=["token_00001", "token_00001", "token_00001"]))
    assert (job.total, job.changed) == (1, 1)
    assert scratch_pool.get("token_00001")["scrub_count"] == 1


def test_stale_locks_are_selected_pool_wide_only():
    with pytest.raises(OperationError, match="whole pool"):
        Selection("stale", hours=24, type="token").validate()


def test_a_lost_answer_to_a_write_is_settled_by_reading_back(scratch_pool, monkeypatch, settings):
    """CouchDB applies a _bulk_docs but the answer never arrives: the job must not write again or miscount."""
    from tokens.couch import Couch, Unreachable

    settings.JOB_RETRY_BACKOFF = 0.01
    scratch_pool.bulk_docs([errored(n) for n in range(6)])
    real = Couch.bulk_docs
    lost = []

    def answer_lost_once(self, docs):
        result = real(self, docs)
        if not lost:
            lost.append(len(docs))
            raise Unreachable("CouchDB at test is unreachable")
        return result

    monkeypatch.setattr(Couch, "bulk_docs", answer_lost_once)
    job = run("reset", Selection("ids", ids=[f"token_{n:05d}" for n in range(6)]))
    assert lost == [6]
    assert (job.status, job.changed, job.conflicts) == ("succeeded", 6, 0)
    assert all(scratch_pool.get(f"token_{n:05d}")["scrub_count"] == 1 for n in range(6))


def test_a_token_that_raised_seconds_ago_is_left_to_its_pilot_though_picas_wrote_done_99(scratch_pool):
    """picas's Task.error() writes lock = done = 99 and the time only into error[]: the failure is seconds old."""
    now = int(time.time())
    raised = surf_token(1, lock=99, done=99, error=[{"time": NOW - 7200, "message": "old"},
                                                     {"time": now, "message": "Exception ... occurred"}])
    long_ago = surf_token(2, lock=99, done=99, error=[{"time": now - 3600, "message": "Exception ..."}])
    scratch_pool.bulk_docs([raised, long_ago])
    job = run("reset", Selection("state", bucket="error"))
    assert scratch_pool.get("token_00001")["lock"] == 99 and scratch_pool.get("token_00002")["lock"] == 0
    reasons = {t.token_id: (t.outcome, t.reason) for t in JobToken.objects.filter(job=job)}
    assert reasons == {"token_00001": ("skipped", "failed moments ago: its pilot may still retry it"),
                       "token_00002": ("changed", "")}


def test_a_failure_of_unknown_time_is_never_old_unless_named_by_id(scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=99, done=99, error=[]), surf_token(2, lock=5, done=5, exit_code=1)])
    job = run("reset", Selection("state", bucket="error"))
    assert (job.changed, job.skipped) == (0, 2)
    assert {t.reason for t in JobToken.objects.filter(job=job)} == {
        "failed at an unknown time (no done time, error time or status time): select it by id to act on it"}
    job = run("reset", Selection("ids", ids=["token_00001", "token_00002"]))
    assert job.changed == 2 and scratch_pool.get("token_00001")["lock"] == 0
