"""Set field, delete and attach: their exact effect, and what they refuse."""

import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import surf_token
from tokens import actions, operations, uploads
from tokens.couch import NotFound
from tokens.models import JobToken
from tokens.pools import all_pools
from tokens.selections import OperationError, Selection

pytestmark = pytest.mark.django_db

NOW = int(time.time())


def run(action, selection, params, confirmation=None):
    job = operations.create_job(all_pools()[0], None, action, selection, params, confirmation=confirmation)
    return operations.run_job(job.pk, batch_size=4)


def done_tokens(db, n):
    db.bulk_docs([surf_token(i, lock=NOW - 100, done=NOW - 10, exit_code=0) for i in range(n)])


@pytest.mark.parametrize("text, value_type, value", [
    ("16", "number", 16), ("2.5", "number", 2.5), ("true", "boolean", True), ("007", "string", "007"),
    ('{"avg": [4, 8]}', "json", {"avg": [4, 8]}),
])
def test_set_field_writes_the_typed_value_on_every_selected_token(scratch_pool, text, value_type, value):
    done_tokens(scratch_pool, 6)
    job = run("set_field", Selection("state", bucket="done"),
              {"field": "priority", "value": actions.parse_value(text, value_type), "value_type": value_type})
    assert job.changed == 6
    assert all(scratch_pool.get(f"token_{i:05d}")["priority"] == value for i in range(6))
    assert scratch_pool.get("token_00000")["lock"] == NOW - 100  # nothing else moves


def test_set_field_refuses_state_fields_unless_told(scratch_pool):
    done_tokens(scratch_pool, 2)
    with pytest.raises(OperationError, match="decides the token's state"):
        run("set_field", Selection("state", bucket="done"), {"field": "done", "value": 0})
    job = run("set_field", Selection("state", bucket="done"), {"field": "status", "value": "x",
                                                                "allow_state_fields": True})
    assert job.changed == 2


@pytest.mark.parametrize("field", ["_id", "_rev", "_attachments", "_deleted"])
def test_set_field_never_sets_couchdbs_own_fields(scratch_pool, field):
    with pytest.raises(OperationError, match="CouchDB's own field"):
        run("set_field", Selection("state", bucket="done"), {"field": field, "value": 1, "allow_state_fields": True})


def test_bad_typed_values_are_refused_with_a_message():
    for text, value_type in (("ten", "number"), ("maybe", "boolean"), ("{oops", "json"), ("nan", "number")):
        with pytest.raises(OperationError):
            actions.parse_value(text, value_type)


def test_set_field_twice_changes_nothing_the_second_time(scratch_pool):
    done_tokens(scratch_pool, 3)
    run("set_field", Selection("state", bucket="done"), {"field": "p", "value": 1})
    again = run("set_field", Selection("state", bucket="done"), {"field": "p", "value": 1})
    assert (again.changed, again.skipped) == (0, 3)


def test_delete_leaves_tombstones_and_always_wants_the_count_typed(scratch_pool):
    done_tokens(scratch_pool, 3)
    with pytest.raises(OperationError, match="Type the number"):
        run("delete", Selection("state", bucket="done"), {})
    job = run("delete", Selection("state", bucket="done"), {}, confirmation="3")
    assert job.changed == 3
    with pytest.raises(NotFound):
        scratch_pool.get("token_00000")
    # A tombstone, not a purge: the deleting revision is there to read.
    rev = JobToken.objects.get(job=job, token_id="token_00000").rev_after
    tombstone = scratch_pool.call(scratch_pool.client.get_document, db=scratch_pool.database,
                                   doc_id="token_00000", rev=rev)
    assert tombstone["_deleted"] is True
    design = {d["_id"] for d in scratch_pool.design_docs()}
    assert "_design/Monitor" in design  # only tokens go


def test_attach_streams_one_file_to_every_selected_token_under_its_name(scratch_pool):
    done_tokens(scratch_pool, 5)
    content = b"srm://a\nsrm://b\n" * 5000
    upload_id, size, digest = uploads.save_upload(SimpleUploadedFile("list.txt", content))
    params = {"name": "inputs/srm list.txt", "upload": upload_id, "size": size, "digest": digest,
              "content_type": "text/plain"}
    job = run("attach", Selection("state", bucket="done"), params)
    assert job.changed == 5
    chunks, _type, _length = scratch_pool.attachment("token_00002", "inputs/srm list.txt")
    assert b"".join(chunks) == content
    again = run("attach", Selection("state", bucket="done"), params)
    assert (again.changed, again.skipped) == (0, 5)  # same file already there


def test_an_upload_over_the_limit_is_refused(settings):
    settings.JOB_UPLOAD_MAX_BYTES = 10
    with pytest.raises(OperationError, match="the limit is 10"):
        uploads.save_upload(SimpleUploadedFile("big.txt", b"x" * 11))


def test_the_management_command_runs_the_same_reset(scratch_pool, capsys):
    from django.core.management import call_command

    scratch_pool.bulk_docs([surf_token(i, lock=NOW - 7200, done=NOW - 3600, exit_code=2) for i in range(3)])
    call_command("tokens", "reset", "--pool", scratch_pool.database, "--state", "error", "--dry-run")
    assert '"count": 3' in capsys.readouterr().out
    assert scratch_pool.get("token_00000")["lock"] > 0
    call_command("tokens", "reset", "--pool", scratch_pool.database, "--state", "error")
    assert "3 changed" in capsys.readouterr().out
    assert scratch_pool.get("token_00000")["lock"] == 0




def test_an_attach_jobs_upload_is_removed_when_it_ends(scratch_pool):
    done_tokens(scratch_pool, 1)
    upload_id, size, digest = uploads.save_upload(SimpleUploadedFile("x.txt", b"x"))
    run("attach", Selection("state", bucket="done"), {"name": "x.txt", "upload": upload_id, "size": size,
                                                       "digest": digest})
    assert not uploads.upload_path(upload_id).exists()


def test_a_refused_attach_job_keeps_nothing_it_uploaded(scratch_pool, operator_client, settings):
    from pathlib import Path

    done_tokens(scratch_pool, 2)
    folder = Path(settings.JOB_UPLOAD_DIR)
    before = set(folder.glob("*")) if folder.is_dir() else set()
    refused = operator_client.post(f"/pools/{scratch_pool.database}/jobs/", {
        "action": "attach", "kind": "state", "bucket": "done", "expected": "7", "name": "notes.txt",
        "file": SimpleUploadedFile("notes.txt", b"looked at by olga")})
    assert refused.status_code == 400 and "it was 7 tokens, it is 2 now" in refused.content.decode()
    assert set(folder.glob("*")) == before  # the refused job's copy of the file is gone
