"""Jobs through the API: a dry run by default, then a real job on the real Celery worker that changes the real
pool; the same confirmation rules as the web UI; progress, cancel and the audit list, paged by id."""

import pytest

from tests.api_client import Api, openapi, token_for
from tests.conftest import surf_token
from tests.test_job_web import errored, wait_until_ended
from tokens.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

ERRORS = {"kind": "state", "bucket": "error"}


@pytest.fixture
def api(operator):
    return Api(openapi(), token_for(operator))


@pytest.fixture
def pool(scratch_pool):
    scratch_pool.bulk_docs([errored(n) for n in range(12)] + [surf_token(n) for n in range(12, 20)])
    return scratch_pool


def jobs_url(pool):
    return f"/api/v1/pools/{pool.database}/jobs"


def test_a_dry_run_is_the_default_and_writes_nothing(api, pool):
    before = pool.get("token_00003")
    response = api.post(jobs_url(pool), {"action": "reset", "selection": ERRORS})
    data = response.json()
    assert response.status_code == 200 and data["dry_run"] is True
    assert data["count"] == 12 and len(data["sample"]) == 10 and data["needs_confirmation"] is False
    assert data["description"] == "error tokens"
    assert not Job.objects.exists() and pool.get("token_00003") == before


def test_an_operator_runs_a_reset_on_the_worker_and_watches_it(api, operator, pool, celery_worker):
    response = api.post(jobs_url(pool), {"action": "reset", "selection": ERRORS, "dry_run": False})
    created = response.json()
    assert response.status_code == 201 and created["via"] == "api" and created["user"] == operator.username
    assert created["preview_count"] == 12 and created["action"] == "reset"
    wait_until_ended(created["id"])
    job = api.get(f"/api/v1/jobs/{created['id']}").json()
    assert (job["status"], job["changed"], job["skipped"], job["percent"]) == ("succeeded", 12, 0, 100)
    assert all(pool.get(f"token_{n:05d}")["lock"] == 0 for n in range(12))
    assert pool.get("token_00003")["scrub_count"] == 1
    token = api.get(f"/api/v1/pools/{pool.database}/tokens/token_00003").json()
    assert token["bucket"] == "todo" and [j["id"] for j in token["jobs"]] == [created["id"]]
    assert api.get(f"/api/v1/pools/{pool.database}").json()["counts"]["todo"] == 20


def test_set_field_writes_any_json_value_to_the_selected_ids(api, pool, celery_worker):
    value = {"nodes": [1, 2], "queue": "long"}
    response = api.post(jobs_url(pool), {"action": "set_field", "dry_run": False,
                                         "selection": {"kind": "ids", "ids": ["token_00013", "token_00014"]},
                                         "params": {"field": "resources", "value": value}})
    job = wait_until_ended(response.json()["id"])
    assert job.changed == 2
    assert pool.get("token_00013")["resources"] == value and "resources" not in pool.get("token_00015")


def test_the_count_must_be_confirmed_above_the_threshold(api, pool, settings, celery_worker):
    settings.JOB_CONFIRM_THRESHOLD = 3
    body = {"action": "reset", "selection": ERRORS, "dry_run": False}
    assert api.post(jobs_url(pool), {**body, "dry_run": True}).json()["needs_confirmation"] is True
    for confirm in (None, 11):
        refused = api.post(jobs_url(pool), {**body, "confirm": confirm})
        assert refused.status_code == 400 and "Type the number of tokens (12)" in refused.json()["detail"]
        assert 'send "confirm": 12' in refused.json()["detail"]
    assert not Job.objects.exists() and pool.get("token_00001")["lock"] > 0
    created = api.post(jobs_url(pool), {**body, "confirm": 12})
    assert created.status_code == 201 and wait_until_ended(created.json()["id"]).changed == 12


def test_deleting_always_needs_the_count_and_leaves_tombstones(api, pool, celery_worker):
    body = {"action": "delete", "selection": {"kind": "ids", "ids": ["token_00015", "token_00016"]},
            "dry_run": False}
    refused = api.post(jobs_url(pool), body)
    assert refused.status_code == 400 and "deleting them" in refused.json()["detail"]
    created = api.post(jobs_url(pool), {**body, "confirm": 2})
    assert wait_until_ended(created.json()["id"]).changed == 2
    assert pool.docs(["token_00015", "token_00016", "token_00017"])[:2] == [None, None]
    assert pool.get("token_00017")["_id"] == "token_00017"


@pytest.mark.parametrize("body, status, says", [
    ({"action": "explode", "selection": ERRORS}, 422, "action"),
    ({"action": "reset", "selection": {"kind": "everything"}}, 422, "kind"),
    ({"action": "reset"}, 422, "selection"),
    ({"action": "reset", "selection": {"kind": "state", "bucket": "locked"}}, 400, "lock age"),
    ({"action": "reset", "selection": {"kind": "state"}}, 400, "Name the state of the tokens to act on: one of todo"),
    ({"action": "reset", "selection": {"kind": "stale"}}, 400, "lock age in hours"),
    ({"action": "reset", "selection": {"kind": "stale", "hours": -2}}, 422, "hours"),
    ({"action": "reset", "selection": {"kind": "state", "bucket": "error", "ids": ["a"]}}, 400, "ids"),
    ({"action": "set_field", "selection": ERRORS, "params": {"field": "_rev", "value": 1}}, 400, "CouchDB's own"),
    ({"action": "set_field", "selection": ERRORS, "params": {"field": "lock", "value": 1}}, 400, "state"),
    ({"action": "set_field", "selection": ERRORS, "params": {"field": "priority"}}, 400, "value"),
    ({"action": "reset", "selection": ERRORS, "confirm": -1}, 422, "confirm"),
])
def test_bad_job_requests_get_a_json_error_and_create_nothing(api, pool, body, status, says):
    response = api.post(jobs_url(pool), {**body, "dry_run": False})
    assert response.status_code == status and says in response.json()["detail"], response.json()
    assert not Job.objects.exists()


@pytest.mark.parametrize("raw, status", [
    ('{"action": "set_field", "selection": {"kind": "state", "bucket": "error"}, '
     '"params": {"field": "priority", "value": NaN}}', 422),
    ('{"action": "reset", "selection": {"kind": "stale", "hours": Infinity}}', 422),
    ('{"action": "reset", ', 400),
    ("", 422),
])
def test_a_body_that_is_not_plain_json_is_refused(api, pool, raw, status):
    response = api.call("post", jobs_url(pool), raw, content_type="application/json")
    assert response.status_code == status and response.json()["detail"]
    assert not Job.objects.exists()


def test_a_job_on_an_unknown_pool_is_a_404(api, db):
    response = api.post("/api/v1/pools/nowhere/jobs", {"action": "reset", "selection": ERRORS})
    assert response.status_code == 404


def test_a_queued_job_is_cancelled_once(api):
    job = Job.objects.create(pool="p", action="reset", selection=ERRORS, preview_count=3)
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = api.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert again.status_code == 409 and "already ended (cancelled)" in again.json()["detail"]
    assert api.post("/api/v1/jobs/987654/cancel").status_code == 404


def test_a_running_job_is_asked_to_stop_between_batches(api):
    job = Job.objects.create(pool="p", action="reset", selection=ERRORS, preview_count=3, status=Job.RUNNING)
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert Job.objects.get(pk=job.pk).cancel_requested


def test_the_job_list_filters_and_pages_by_id_without_gaps(api, operator, viewer):
    made = []
    for n in range(7):
        made.append(Job.objects.create(pool="a" if n % 2 else "b", user=operator if n < 5 else viewer,
                                       action="reset" if n != 3 else "delete", selection={}, preview_count=n,
                                       status=Job.SUCCEEDED if n != 4 else Job.FAILED, via="api").pk)
    seen, before, pages = [], None, 0
    while True:
        data = api.get("/api/v1/jobs", {"limit": 2, **({"before": before} if before else {})}).json()
        seen += [j["id"] for j in data["jobs"]]
        pages += 1
        if data["next"] is None:
            break
        before = data["next"]
    assert seen == sorted(made, reverse=True) and pages == 4

    def listed(**filters):
        return [j["id"] for j in api.get("/api/v1/jobs", filters).json()["jobs"]]

    assert listed(pool="a") == [pk for pk in reversed(made) if made.index(pk) % 2]
    assert listed(user=viewer.username) == made[6:4:-1]
    assert listed(action="delete") == [made[3]]
    assert listed(status="failed") == [made[4]]
    assert listed(pool="a", action="reset", user=operator.username) == [made[1]]
