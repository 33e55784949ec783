"""New token sets from a GRID_LRT config and a SURL list: exactly GRID_LRT's ids, keys, fields and attachments,
created by a job and then run by real picas workers through the views the set created."""

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from localsite.seeding import picas_python
from tests.api_client import api_as
from tests.forms import started_job
from tests.waiting import wait_for
from tokens import counting, engine, operations, tokensets
from tokens.pools import all_pools
from tokens.tokensets import Options, TokenSetError

FIXTURES = Path(__file__).with_name("fixtures")
CONFIG = (FIXTURES / "pref_cal1.yaml").read_text()
SURLS = (FIXTURES / "L229585_srm.txt").read_text()
TYPE = "pref_cal1_L229585"

pytestmark = pytest.mark.django_db


def pool():
    return all_pools()[0]


def all_docs(db):
    return {r["id"]: r["doc"] for r in db.call(db.client.post_all_docs, db=db.database, include_docs=True,
                                                   attachments=True)["rows"] if not r["id"].startswith("_design/")}


def create(config=CONFIG, items=SURLS, token_type=TYPE, **options):
    job = tokensets.create_job(pool(), None, config, tokensets.save_list(items), Options(token_type=token_type,
                                                                                         **options))
    return operations.run_job(job.pk)


def planned(config, items, options):
    with tokensets.plan(config, tokensets.save_list(items), options) as the_plan:
        return tokensets.preview(pool(), the_plan)


def test_the_fixture_set_has_grid_lrts_ids_keys_fields_and_attachments(scratch_pool):
    scratch_pool.bulk_docs([{**scratch_pool.get(f"_design/{TYPE}"), "_deleted": True}])
    job = create()
    assert (job.status, job.changed, job.skipped) == ("succeeded", 6, 0)
    docs = all_docs(scratch_pool)
    keys = ["100", "110", "120", "130", "140", "150"]
    assert sorted(docs) == [f"t_{TYPE}_L229585_pref_cal1_SB{k}" for k in keys]
    token_section = yaml.safe_load(CONFIG)["Token"]
    surls = list(dict.fromkeys(SURLS.split()))
    for key in keys:
        doc = docs[f"t_{TYPE}_L229585_pref_cal1_SB{key}"]
        assert doc["STARTSB"] == key and doc["type"] == TYPE and doc["OBSID"] == "L229585"
        for field, value in token_section.items():
            if field not in ("STARTSB", "type", "OBSID"):
                assert doc[field] == value, field
        assert (doc["lock"], doc["done"], doc["scrub_count"], doc["hostname"], doc["exit_code"]) == (0, 0, 0, "", "")
        assert "Sandbox" not in doc and "Shell_variables" not in doc and "name" not in doc
        listed = base64.b64decode(doc["_attachments"]["srm.txt"]["data"]).decode().split()
        assert listed == [s for s in surls if 0 <= int(s.split("_SB")[1][:3]) - int(key) < 10]
    assert len(base64.b64decode(docs[f"t_{TYPE}_L229585_pref_cal1_SB150"]["_attachments"]["srm.txt"]["data"])
               .decode().split()) == 1
    assert len(base64.b64decode(docs[f"t_{TYPE}_L229585_pref_cal1_SB110"]["_attachments"]["srm.txt"]["data"])
               .decode().split()) == 9  # subband 117 is missing: a gap, not a shift
    design = scratch_pool.get(f"_design/{TYPE}")
    assert set(design["views"]) >= {"todo", "locked", "done", "error"}


def test_existing_ids_are_reported_and_never_overwritten(scratch_pool):
    create()
    scratch_pool.bulk_docs([{**scratch_pool.get(f"t_{TYPE}_L229585_pref_cal1_SB100"), "lock": 123}])
    seen = planned(CONFIG, SURLS, Options(token_type=TYPE))
    assert seen["existing_count"] == 6
    again = create()
    assert (again.changed, again.skipped) == (0, 6)
    assert scratch_pool.get(f"t_{TYPE}_L229585_pref_cal1_SB100")["lock"] == 123


def test_the_preview_shows_the_first_token_in_full_and_writes_nothing(scratch_pool):
    scratch_pool.bulk_docs([{**scratch_pool.get(f"_design/{TYPE}"), "_deleted": True}])
    seen = planned(CONFIG, SURLS, Options(token_type=TYPE))
    assert seen["count"] == 6 and seen["keys"] == ["100", "110", "120", "130", "140", "150"]
    assert seen["first"]["_id"] == f"t_{TYPE}_L229585_pref_cal1_SB100"
    assert seen["attachment"]["text"].count("srm://") == 10
    assert seen["create_views"] == f"_design/{TYPE}"
    assert all_docs(scratch_pool) == {}


def test_a_plain_list_is_cut_in_order(scratch_pool):
    job = create(items="a\nb\nc\nd\ne\n", token_type="sky_model", per_token=2, id_suffix="plain")
    assert job.changed == 3
    docs = all_docs(scratch_pool)
    assert sorted(d["STARTSB"] for d in docs.values()) == ["000", "002", "004"]


def test_a_surf_style_set_gets_the_monitor_views_with_the_exact_code(scratch_pool):
    scratch_pool.bulk_docs([{**scratch_pool.get("_design/Monitor"), "_deleted": True}])
    create(token_type="token")
    from tokens.worker_views import surf_design_doc

    assert scratch_pool.get("_design/Monitor")["views"] == surf_design_doc()["views"]


def test_existing_design_documents_are_never_changed(scratch_pool):
    before = scratch_pool.get("_design/Monitor")
    create(token_type="token")
    assert scratch_pool.get("_design/Monitor") == before


@pytest.mark.parametrize("config, items, options, message", [
    ("Token: [unclosed", SURLS, {}, "not valid YAML or JSON at line 1"),
    ('{"Token": {"a": 1}', SURLS, {}, "not valid YAML or JSON"),
    ("Sandbox: {}\n", SURLS, {}, "no Token: section"),
    ("Token:\n  when: 2026-11-22\n", SURLS, {}, "Token.when: a value of type date"),
    ("Token:\n  blob: !!binary aGk=\n", SURLS, {}, "Token.blob: a value of type bytes"),
    (CONFIG, "\n  \n# nothing\n", {}, "The input list is empty"),
    (CONFIG, SURLS + "srm://srm.grid.sara.nl/pnfs/L999999_SB001_uv.MS.tar\n", {}, "mixes observations"),
    (CONFIG, SURLS, {"per_token": 0}, "a whole number from 1 to 1,000,000, not 0"),
    (CONFIG, SURLS, {"per_token": 10**23}, "a whole number from 1 to 1,000,000, not one that large"),
    (CONFIG, SURLS, {"id_template": "t_{type}_{obsid}"}, "gives several tokens the same id"),
    (CONFIG, SURLS, {"id_template": "t_{nope}{key}"}, "is not valid"),
    (CONFIG, SURLS + "just a line\n", {}, "1 of the 51 items is not like the rest \\(SURLs\\): line 51: just a line"),
    (CONFIG, "a\nb\n", {}, "token type pref_cal1_L229585 names observation L229585, but the input list holds no"),
    (CONFIG.replace('OBSID: ""', "OBSID: L230461", 1), SURLS, {},
     "The SURLs are of observation L229585, but the config's OBSID names L230461"),
])
def test_bad_input_gets_a_clear_message_and_writes_nothing(scratch_pool, config, items, options, message):
    before = all_docs(scratch_pool), scratch_pool.design_docs()
    with pytest.raises(TokenSetError, match=message):
        tokensets.create_job(pool(), None, config, tokensets.save_list(items), Options(token_type=TYPE, **options))
    assert (all_docs(scratch_pool), scratch_pool.design_docs()) == before


def test_surls_of_another_observation_than_the_token_types_are_refused(scratch_pool):
    with pytest.raises(TokenSetError, match="are of observation L229585, but the token type pref_cal1_L230461 names"):
        tokensets.create_job(pool(), None, CONFIG, tokensets.save_list(SURLS), Options(token_type="pref_cal1_L230461"))
    assert all_docs(scratch_pool) == {}


def test_an_oversized_input_is_refused(scratch_pool, settings):
    settings.TOKENSET_INPUT_MAX_BYTES = 100
    with pytest.raises(TokenSetError, match="the limit is 100"):
        tokensets.create_job(pool(), None, CONFIG, tokensets.save_list(SURLS), Options(token_type=TYPE))
    assert all_docs(scratch_pool) == {}


def test_a_set_cancelled_with_a_batch_on_its_way_records_every_token_it_created(scratch_pool, monkeypatch):
    from tokens.models import Job, JobToken

    job = tokensets.create_job(pool(), None, CONFIG, tokensets.save_list(SURLS), Options(token_type=TYPE, per_token=1))
    checks = []

    def operator_cancels_after_two_batches(job):
        checks.append(job.pk)
        if len(checks) == 3:  # batches 1 and 2 sent, one of them still on its way to CouchDB
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)
        if Job.objects.filter(pk=job.pk, cancel_requested=True).exists():
            raise engine.Cancelled

    monkeypatch.setattr(engine, "check_cancel", operator_cancels_after_two_batches)
    job = operations.run_job(job.pk, batch_size=5)
    created = sorted(all_docs(scratch_pool))
    assert (job.status, job.changed, len(created)) == ("cancelled", 10, 10)
    assert sorted(JobToken.objects.filter(job=job, outcome="changed").values_list("token_id", flat=True)) == created


def test_real_picas_workers_run_every_created_token_and_the_pool_shows_it_complete(scratch_pool, couch_server,
                                                                                    viewer_client):
    create(per_token=1)
    env = dict(os.environ, PICAS_URL=couch_server.url, PICAS_DB=scratch_pool.database,
               PICAS_USER=couch_server.username, PICAS_PASSWORD=couch_server.password, PICAS_DELAY="0",
               PICAS_DESIGN=TYPE, PICAS_GRID_LRT="1")
    script = Path(__file__).with_name("picas_worker.py")
    pilots = [subprocess.Popen([picas_python(), str(script)], env=env) for _ in range(2)]
    assert all(p.wait(timeout=120) == 0 for p in pilots)
    docs = all_docs(scratch_pool)
    assert len(docs) == 49 and all(d["status"] == "done" and d["done"] > 0 for d in docs.values())
    counting.refresh(pool())
    rows = api_as(viewer_client).get(f"/api/v1/pools/{scratch_pool.database}").json()["observations"]
    row = next(r for r in rows if r["type"] == TYPE)
    assert (row["counts"]["done"], row["total"], row["percent_done"], row["eta_hours"]) == (49, 49, 100.0, 0.0)
    assert time.time() - min(d["done"] for d in docs.values()) < 300


@pytest.mark.django_db(transaction=True)
def test_an_operator_creates_a_set_in_the_browser_forms(operator_client, scratch_pool, celery_worker):
    from tokens.models import Job

    slug = scratch_pool.database
    assert operator_client.get(f"/pools/{slug}/tokensets/new/").status_code == 200
    form = {"config": CONFIG, "input_list": SURLS, "token_type": TYPE, "per_token": "10", "key_field": "STARTSB",
            "id_prefix": "SB", "attachment": "srm.txt", "create_views": "on"}
    preview = operator_client.post(f"/pools/{slug}/tokensets/new/", form)
    html = preview.content.decode()
    assert preview.status_code == 200 and "Dry run" in html and "100, 110, 120, 130, 140, 150" in html
    assert all_docs(scratch_pool) == {}
    pk = started_job(operator_client.post(f"/pools/{slug}/tokensets/", form)).pk
    wait_for(lambda: Job.objects.get(pk=pk).ended, what=f"job {pk} to end")
    assert (Job.objects.get(pk=pk).status, Job.objects.get(pk=pk).changed) == ("succeeded", 6)
    assert len(all_docs(scratch_pool)) == 6


def test_a_bad_config_in_the_form_shows_the_message_and_keeps_the_input(operator_client, scratch_pool):
    response = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/",
                                    {"config": "Token: [oops", "input_list": SURLS, "token_type": TYPE})
    html = response.content.decode()
    assert response.status_code == 400 and "not valid YAML or JSON" in html and "L229585_SB100" in html


FORM = {"token_type": TYPE, "per_token": "10", "key_field": "STARTSB", "id_prefix": "SB", "attachment": "srm.txt",
        "create_views": "on"}


def test_a_set_that_exists_already_offers_nothing_to_create_and_says_so(operator_client, scratch_pool):
    create()
    html = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/",
                                {**FORM, "config": CONFIG, "input_list": SURLS}).content.decode()
    assert "All 6 tokens exist already: there is nothing to create" in html
    assert "tokensets/\"" not in html and "Create 6 tokens" not in html  # no form that creates


def test_a_set_that_partly_exists_offers_to_create_the_new_ones(operator_client, scratch_pool):
    create(items="\n".join(line for line in SURLS.splitlines() if "_SB10" in line))  # the first token only
    html = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/",
                                {**FORM, "config": CONFIG, "input_list": SURLS}).content.decode()
    assert "Create 5 tokens" in html and "the 1 that exist already are left as they are" in html


def test_an_uploaded_list_is_kept_on_the_server_when_the_config_is_refused_and_used_by_the_next_preview(
        operator_client, scratch_pool):
    import re

    from django.core.files.uploadedfile import SimpleUploadedFile

    url = f"/pools/{scratch_pool.database}/tokensets/new/"
    response = operator_client.post(url, {
        **FORM, "config": "Token: [oops", "input_list_file": SimpleUploadedFile("L229585.txt", SURLS.encode())})
    html = response.content.decode()
    assert response.status_code == 400 and "must be chosen again" not in html
    assert "the file <strong>L229585.txt</strong>, kept on the server" in html
    assert "L229585_SB100" not in html  # a list file is never put in the page (it may be a gigabyte)
    kept = dict(re.findall(r'name="(input_list_upload)" value="([^"]*)"', html))
    assert 'name="input_list_name"' not in html  # the file's name is the server's to keep, not the form's

    # A name sent back by the browser is not taken: the server says the name it kept with the upload.
    again = operator_client.post(url, {**FORM, "config": CONFIG, **kept,
                                       "input_list_name": "<b>other.txt</b>"}).content.decode()
    assert "Dry run: <strong>6</strong> tokens from the list file <strong>L229585.txt</strong>" in again
    assert "other.txt" not in again
    create_form = again.split('action="/pools/')[1]
    upload = re.search(r'name="input_list_upload" value="([0-9a-f]+)"', create_form).group(1)
    created = started_job(operator_client.post(f"/pools/{scratch_pool.database}/tokensets/",
                                               {**FORM, "config": CONFIG, "input_list_upload": upload}))
    job = operations.run_job(created.pk)
    assert (job.status, job.changed) == ("succeeded", 6)


def test_an_unreadable_file_is_named_to_be_chosen_again(operator_client, scratch_pool):
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/", {
        **FORM, "config": CONFIG, "input_list_file": SimpleUploadedFile("list.bin", b"\xff\xfe\x00binary")})
    html = response.content.decode()
    assert response.status_code == 400 and "list.bin could not be read and must be chosen again" in html
    assert "Token:" in html  # the typed config is kept


def test_viewers_cannot_open_or_post_token_sets(viewer_client, scratch_pool):
    slug = scratch_pool.database
    assert viewer_client.get(f"/pools/{slug}/tokensets/new/").status_code == 403
    assert viewer_client.post(f"/pools/{slug}/tokensets/", {"config": CONFIG, "input_list": SURLS,
                                                              "token_type": TYPE}).status_code == 403
    assert all_docs(scratch_pool) == {}


def test_a_list_out_of_order_with_duplicates_comments_and_crlf_is_cut_as_grid_lrt_cuts_it(scratch_pool):
    lines = SURLS.split()
    shuffled = lines[::-1] + lines[:5]  # reversed, five repeated
    text = "# made by ls\r\n\r\n" + "\r\n".join(shuffled) + "\r\n"
    job = create(items=text)
    docs = all_docs(scratch_pool)
    assert (job.status, job.changed, len(docs)) == ("succeeded", 6, 6)
    first = base64.b64decode(docs[f"t_{TYPE}_L229585_pref_cal1_SB100"]["_attachments"]["srm.txt"]["data"]).decode()
    assert first.split() == sorted(s for s in set(lines) if "_SB10" in s)  # by subband, each once


def test_a_refused_line_is_named_by_its_line_number_in_the_file():
    text = "# header\n\n" + SURLS + "\n# end of calibrator\nsrm.txt\n"
    with pytest.raises(TokenSetError, match="1 of the 51 items is not like the rest \\(SURLs\\): line 55: srm.txt"):
        tokensets.plan(CONFIG, tokensets.save_list(text), Options(token_type=TYPE))
    with pytest.raises(TokenSetError, match="SURL on line 3 names no subband"):
        tokensets.plan(CONFIG, tokensets.save_list("#\n\nsrm://host/L229585_uv.MS.tar\n"), Options(token_type=TYPE))


def test_a_form_sent_twice_makes_two_jobs_each_with_its_own_copy_of_the_list(scratch_pool):
    upload = tokensets.save_list(SURLS)
    first = tokensets.create_job(pool(), None, CONFIG, upload, Options(token_type=TYPE))
    second = tokensets.create_job(pool(), None, CONFIG, upload, Options(token_type=TYPE))
    assert len({upload, first.params["items_upload"], second.params["items_upload"]}) == 3
    assert operations.run_job(first.pk).changed == 6
    second = operations.run_job(second.pk)  # its list is still there: the first deleted only its own
    assert (second.status, second.changed, second.skipped) == ("succeeded", 0, 6)  # found made: never rewritten


def test_lists_kept_for_forms_are_swept_after_a_day_unless_a_job_still_needs_them(scratch_pool, settings):
    from tokens import uploads

    left = tokensets.save_list(SURLS)  # previewed, never sent
    young = tokensets.save_list(SURLS)
    waiting = tokensets.create_job(pool(), None, CONFIG, tokensets.save_list(SURLS), Options(token_type=TYPE))
    day_old = time.time() - 25 * 3600
    for upload in (left, waiting.params["items_upload"]):
        os.utime(uploads.upload_path(upload), (day_old, day_old))
    assert operations.sweep_uploads() >= 1
    assert not uploads.upload_path(left).exists()
    assert uploads.upload_path(young).exists() and uploads.upload_path(waiting.params["items_upload"]).exists()
    assert operations.run_job(waiting.pk).changed == 6
    assert not uploads.upload_path(waiting.params["items_upload"]).exists()  # the job's own, gone when it ended


@pytest.mark.django_db(transaction=True)
def test_an_api_client_previews_and_creates_a_set_as_the_form_and_the_shell_do(operator_client, scratch_pool,
                                                                               celery_worker, viewer, tmp_path):
    import json

    from django.core.management import call_command
    from django.test import Client

    from tests.api_client import api_as
    from tokens.models import Job

    slug = scratch_pool.database
    body = {"config": CONFIG, "input_list": SURLS, "token_type": TYPE}
    api = api_as(operator_client)
    before = kept()
    dry = api.post(f"/api/v1/pools/{slug}/tokensets", body)
    assert dry.status_code == 200, dry.content
    out = []

    class Out:
        def write(self, text):
            out.append(text)

    config, items = tmp_path / "config.yaml", tmp_path / "srm.txt"
    config.write_text(CONFIG)
    items.write_text(SURLS)
    call_command("tokenset", "--pool", slug, "--type", TYPE, "--config", str(config), "--list", str(items),
                 "--dry-run", stdout=Out())
    shell = json.loads("".join(out))
    answer = dry.json()
    assert {k: answer[k] for k in shell} == shell  # the same dry run, word for word
    assert (answer["count"], answer["to_create"], answer["needs_confirmation"]) == (6, 6, False)
    assert all_docs(scratch_pool) == {} and not Job.objects.exists()

    refused = api.post(f"/api/v1/pools/{slug}/tokensets", {**body, "config": "Token: [oops"})
    assert kept() == before  # nothing of the API's requests stays on the server
    form = operator_client.post(f"/pools/{slug}/tokensets/new/", {**body, "config": "Token: [oops"})
    before = kept()  # the form keeps the list for its next try
    assert refused.status_code == 400 and form.status_code == 400
    from django.utils.html import escape

    assert escape(refused.json()["detail"]) in form.content.decode()  # the form's words

    viewer_api = api_as(Client())
    viewer_api.client.force_login(viewer)
    assert viewer_api.post(f"/api/v1/pools/{slug}/tokensets", body).status_code == 403

    made = api.post(f"/api/v1/pools/{slug}/tokensets", {**body, "dry_run": False})
    assert made.status_code == 201, made.content
    pk = made.json()["id"]
    wait_for(lambda: Job.objects.get(pk=pk).ended, what=f"job {pk} to end")
    job = Job.objects.get(pk=pk)
    assert (job.status, job.changed, job.via, job.action) == ("succeeded", 6, "api", "create_tokens")
    assert len(all_docs(scratch_pool)) == 6
    assert kept() <= before | {job.params["items_upload"]}  # the request's own copy is gone


def kept():
    from django.conf import settings

    folder = Path(settings.JOB_UPLOAD_DIR)
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()
