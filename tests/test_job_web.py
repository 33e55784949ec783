"""Jobs through the browser's forms: operators preview and run them on a real Celery worker; viewers only look."""

import time

import pytest
from django.test import Client

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.forms import started_job
from tests.waiting import wait_for
from tokens.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())


def errored(n):
    return surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=3, hostname="wn",
                      error=[{"time": NOW - 60, "message": f"exit 3 on node {n}"}])


def wait_until_ended(pk):
    """The job once it has ended (a real worker runs it: on a busy machine that can take a while)."""
    wait_for(lambda: Job.objects.get(pk=pk).ended, what=f"job {pk} to end")
    return Job.objects.get(pk=pk)


def test_an_operator_previews_confirms_and_watches_a_reset(operator_client, scratch_pool, celery_worker):
    scratch_pool.bulk_docs([errored(n) for n in range(12)] + [surf_token(n) for n in range(12, 20)])
    slug = scratch_pool.database
    preview = operator_client.get(f"/pools/{slug}/jobs/new/", {"action": "reset", "kind": "state", "bucket": "error"})
    assert preview.status_code == 200
    assert "Dry run" in preview.content.decode() and ">12<" in preview.content.decode()
    pk = started_job(operator_client.post(f"/pools/{slug}/jobs/", {"action": "reset", "kind": "state",
                                                                   "bucket": "error"})).pk
    job = wait_until_ended(pk)
    assert (job.status, job.preview_count, job.changed, job.skipped) == ("succeeded", 12, 12, 0)
    page = operator_client.get(f"/jobs/{pk}/", headers={"HX-Request": "true", "HX-Target": "progress"})
    assert page.status_code == 286  # htmx stops polling a finished job
    assert "succeeded" in page.content.decode()
    api = api_as(operator_client)
    token = api.get(f"/api/v1/pools/{slug}/tokens/token_00003").json()
    assert [j["id"] for j in token["jobs"]] == [pk]
    counts = api.get(f"/api/v1/pools/{slug}").json()["counts"]
    assert counts["error"] == 0 and counts["todo"] == 20


def test_a_job_selected_by_ticked_ids_touches_only_those(operator_client, scratch_pool, celery_worker):
    scratch_pool.bulk_docs([errored(n) for n in range(5)])
    slug = scratch_pool.database
    created = started_job(operator_client.post(f"/pools/{slug}/jobs/",
                                               {"action": "reset", "ids": ["token_00001", "token_00002"]}))
    job = wait_until_ended(created.pk)
    assert job.changed == 2
    assert scratch_pool.get("token_00003")["lock"] > 0 and scratch_pool.get("token_00001")["lock"] == 0


def test_the_count_must_be_typed_above_the_threshold(operator_client, scratch_pool, settings):
    settings.JOB_CONFIRM_THRESHOLD = 3
    scratch_pool.bulk_docs([errored(n) for n in range(5)])
    slug = scratch_pool.database
    form = {"action": "reset", "kind": "state", "bucket": "error"}
    page = operator_client.get(f"/pools/{slug}/jobs/new/", form).content.decode()
    assert 'name="confirmation"' in page
    refused = operator_client.post(f"/pools/{slug}/jobs/", {**form, "confirmation": "4"})
    assert refused.status_code == 400 and "Type the number of tokens (5)" in refused.content.decode()
    assert not Job.objects.exists()
    assert scratch_pool.get("token_00001")["lock"] > 0


def test_a_refused_job_comes_back_as_its_preview_with_every_value_typed(operator_client, scratch_pool, settings):
    settings.JOB_CONFIRM_THRESHOLD = 3
    scratch_pool.bulk_docs([surf_token(n) for n in range(5)])
    slug = scratch_pool.database
    form = {"action": "set_field", "kind": "state", "bucket": "todo", "field": "priority", "value": "five",
            "value_type": "number", "confirmation": "5"}
    refused = operator_client.post(f"/pools/{slug}/jobs/", form)
    page = refused.content.decode()
    assert refused.status_code == 400 and "&#x27;five&#x27; is not a number" in page
    assert 'name="field" required value="priority"' in page and 'name="value" value="five"' in page
    assert "<option selected>number</option>" in page and 'value="5"' in page  # the type and the typed count
    assert "Dry run: this would set a field on <strong>5</strong> tokens" in page  # the preview again, not a dead end
    assert not Job.objects.exists()


@pytest.mark.parametrize("method, url", [
    ("get", "/pools/{slug}/jobs/new/?action=reset&kind=state&bucket=error"),
    ("post", "/pools/{slug}/jobs/"),
    ("post", "/jobs/{job}/cancel/"),
])
def test_viewers_get_403_on_every_job_action(viewer_client, scratch_pool, method, url):
    job = Job.objects.create(pool=scratch_pool.database, action="reset", selection={"kind": "state",
                                                                                       "bucket": "error"},
                             preview_count=0, status=Job.FAILED)
    target = url.format(slug=scratch_pool.database, job=job.pk)
    data = {"action": "reset", "kind": "state", "bucket": "error"} if method == "post" else None
    response = getattr(viewer_client, method)(target, data) if data else getattr(viewer_client, method)(target)
    assert response.status_code == 403
    assert Job.objects.count() == 1 and not Job.objects.get().cancel_requested


def test_viewers_see_no_action_controls(viewer_client, operator, scratch_pool):
    scratch_pool.bulk_docs([errored(1), surf_token(2, lock=NOW - 30 * 3600)])
    slug = scratch_pool.database
    as_operator = Client()
    as_operator.force_login(operator)
    assert "jobs/new" in as_operator.get(f"/pools/{slug}/stale/").content.decode()  # the control exists
    slug = scratch_pool.database
    for url in (f"/pools/{slug}/tokens/?state=error", f"/pools/{slug}/failures/", f"/pools/{slug}/stale/?hours=0"):
        html = viewer_client.get(url).content.decode()
        assert "jobs/new" not in html and 'name="ids"' not in html


def test_a_form_without_its_csrf_token_is_refused(operator, scratch_pool):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    response = client.post(f"/pools/{scratch_pool.database}/jobs/", {"action": "reset", "kind": "state",
                                                                      "bucket": "error"})
    assert response.status_code == 403 and not Job.objects.exists()


def test_the_audit_list_filters_by_pool_user_and_action(operator_client, operator, viewer_client):
    Job.objects.create(pool="a", user=operator, action="reset", selection={}, preview_count=1)
    Job.objects.create(pool="b", user=operator, action="delete", selection={}, preview_count=1)
    Job.objects.create(pool="a", action="set_field", via="cli", selection={}, preview_count=1)

    def listed(**filters):
        jobs = api_as(viewer_client).get("/api/v1/jobs", filters).json()["jobs"]
        return [(j["pool"], j["action"]) for j in jobs]

    assert len(listed()) == 3
    assert listed(pool="a") == [("a", "set_field"), ("a", "reset")]
    assert listed(user=operator.username) == [("b", "delete"), ("a", "reset")]
    assert listed(action="delete") == [("b", "delete")]


def test_the_audit_list_says_what_each_job_was_applied_to(viewer_client, operator):
    for selection in ({"kind": "state", "bucket": "error"}, {"kind": "stale", "hours": 6}):
        Job.objects.create(pool="a", user=operator, action="reset", selection=selection, preview_count=1,
                           status=Job.SUCCEEDED)
    Job.objects.create(pool="a", via="cli", shell_user="lofarops", action="delete",
                       selection={"kind": "ids", "ids": ["t1", "t2"]}, preview_count=2, status=Job.SUCCEEDED)
    page = viewer_client.get("/jobs/").content.decode()
    assert "Error tokens" in page and "Tokens locked longer than 6 hours" in page  # two resets, told apart
    assert "lofarops <span class=\"muted\">(shell login)</span>" in page and "2 selected tokens" in page
    jobs = api_as(viewer_client).get("/api/v1/jobs").json()["jobs"]
    assert {j["description"] for j in jobs} == {"error tokens", "tokens locked longer than 6 hours",
                                                "2 selected tokens"}
    assert {j["shell_user"] for j in jobs} == {None, "lofarops"}


def test_the_audit_list_filters_by_status_and_how_a_job_was_started_and_refuses_unknown_ones(viewer_client,
                                                                                              operator):
    # Ended jobs: a queued one would be handed to the test's worker again by the page (tend_jobs) and fail there.
    Job.objects.create(pool="a", user=operator, action="reset", selection={}, preview_count=1, status=Job.FAILED)
    Job.objects.create(pool="a", user=operator, via="api", action="reset", selection={}, preview_count=1,
                       status=Job.SUCCEEDED)
    Job.objects.create(pool="a", action="set_field", via="cli", selection={}, preview_count=1, status=Job.CANCELLED)
    api = api_as(viewer_client)
    jobs = api.get("/api/v1/jobs", {"via": "cli"}).json()["jobs"]
    assert [j["via"] for j in jobs] == ["cli"]
    assert [j["status"] for j in api.get("/api/v1/jobs", {"status": "failed"}).json()["jobs"]] == ["failed"]
    page = viewer_client.get("/jobs/").content.decode()
    assert "<th>Via</th>" in page and "through the API" in page and "from the command line" in page
    for bogus in ({"status": "done"}, {"via": "email"}, {"action": "reboot"}):
        refused = viewer_client.get("/jobs/", bogus)
        assert refused.status_code == 400 and "Unknown" in refused.content.decode(), bogus
        assert api.get("/api/v1/jobs", bogus).status_code == 422, bogus  # the API refuses them too


def test_a_job_page_says_who_started_it_how_what_it_does_and_how_long_it_ran(viewer_client, operator):
    from datetime import timedelta

    from django.utils import timezone

    made = timezone.now() - timedelta(minutes=10)
    job = Job.objects.create(pool="a", user=operator, via="api", action="set_field", selection={"kind": "state",
                             "bucket": "todo"}, preview_count=31, created_at=made,
                             params={"field": "priority", "value": 5, "value_type": "number"},
                             started_at=made + timedelta(seconds=2), finished_at=made + timedelta(seconds=136),
                             status=Job.SUCCEEDED, total=31, changed=31)
    page = viewer_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f"{operator.username}, through the API" in page
    assert "Set “priority” to 5 (a number)" in page and "{" not in page.split("What it does")[1].split("</dd>")[0]
    assert "31 tokens matched when the job was made" in page
    assert "after running 2 min 14 s" in page and "queued 2 s" in page


def test_an_observation_offers_to_retry_its_failed_tokens_and_says_what_acting_on_all_means(operator_client,
                                                                                          scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([{**errored(n), "OBSID": "L229585"} for n in range(3)]
                           + [surf_token(n, OBSID="L229585") for n in range(3, 5)]
                           + [surf_token(5, OBSID="L229585", lock=NOW - 60, hostname="wn")])  # a worker holds it
    page = operator_client.get(f"/pools/{scratch_pool.database}/obs/", {"type": "token", "group": "L229585"})
    html = page.content.decode()
    retry = "?action=reset&amp;kind=state&amp;bucket=error&amp;type=token&amp;group=L229585"
    assert f'{retry}">Retry its 3 failed tokens…</a>' in html
    assert "Act on its 5 tokens in every state but locked…" in html
    preview = operator_client.get(f"/pools/{scratch_pool.database}/jobs/new/" + retry.replace("&amp;", "&"))
    assert "this would reset / retry <strong>3</strong> tokens — error tokens of L229585" in preview.content.decode()
