"""Who may use the API: per-user tokens made and revoked on the account page, or the browser's session; viewers
read, operators act; everyone else gets a JSON 401, never the login page."""

import pytest
from django.test import Client

from dashboard.models import ApiToken, digest
from tests.api_client import Api, token_for
from tests.conftest import SURF
from tokens.models import Job

pytestmark = pytest.mark.django_db

READS = ["/api/v1/pools", f"/api/v1/pools/{SURF}", f"/api/v1/pools/{SURF}/tokens", f"/api/v1/pools/{SURF}/failures",
         f"/api/v1/pools/{SURF}/stale", f"/api/v1/pools/{SURF}/tokens/token_1", "/api/v1/jobs",
         "/api/v1/jobs/{job}"]
ACTS = [(f"/api/v1/pools/{SURF}/jobs", {"action": "reset", "selection": {"kind": "state", "bucket": "error"}}),
        (f"/api/v1/pools/{SURF}/jobs", {"action": "reset", "selection": {"kind": "state", "bucket": "error"},
                                        "dry_run": False}),
        ("/api/v1/jobs/{job}/cancel", {})]


def test_a_user_creates_a_token_on_the_account_page_and_sees_its_secret_once(viewer_client, viewer):
    page = viewer_client.get("/account/")
    assert page.status_code == 200 and "API tokens" in page.content.decode()
    created = viewer_client.post("/account/tokens/", {"name": "nightly report"}, follow=True)
    html = created.content.decode()
    token = ApiToken.objects.get(user=viewer)
    secret = html.split('id="new-secret">')[1].split("<")[0]
    assert created.redirect_chain == [("/account/", 302)]  # post/redirect/get: a reload makes no second token
    assert created.status_code == 200 and created["Cache-Control"] == "no-store"
    assert secret.startswith("pcs_") and token.name == "nightly report" and secret not in created.redirect_chain[0][0]
    assert token.key_hash == digest(secret) and secret not in str(ApiToken.objects.values())  # only its hash
    assert secret not in viewer_client.get("/account/").content.decode()  # shown once
    assert ApiToken.objects.count() == 1


def test_revoking_a_token_asks_first_and_says_what_follows(viewer_client, viewer):
    token, _secret = ApiToken.issue(viewer, "nightly report")
    listed = viewer_client.get("/account/").content.decode()
    assert f'href="/account/tokens/{token.pk}/revoke/"' in listed
    asked = viewer_client.get(f"/account/tokens/{token.pk}/revoke/").content.decode()
    assert "Revoke the API token “nightly report”" in asked and "refused (401)" in asked
    token.refresh_from_db()
    assert token.revoked_at is None  # asking revokes nothing
    assert viewer_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_refused_token_name_keeps_what_was_typed(viewer_client):
    response = viewer_client.post("/account/tokens/", {"name": "x" * 101})
    assert response.status_code == 400 and 'value="' + "x" * 101 + '"' in response.content.decode()


def test_a_token_works_until_its_owner_revokes_it(schema, viewer_client, viewer, demo_pools):
    viewer_client.post("/account/tokens/", {"name": "script"})
    shown = viewer_client.post("/account/tokens/", {"name": "other"}, follow=True).content.decode()
    secret = shown.split('id="new-secret">')[1].split("<")[0]
    api = Api(schema, secret)
    assert api.get("/api/v1/pools").status_code == 200
    token = ApiToken.objects.get(name="other")
    assert token.last_used_at is not None
    assert viewer_client.post(f"/account/tokens/{token.pk}/revoke/").status_code == 302
    refused = api.get("/api/v1/pools")
    assert refused.status_code == 401 and refused.json()["detail"].startswith("Unknown, revoked or expired API token")
    assert ApiToken.objects.get(name="script").revoked_at is None  # the user's other token is untouched


def test_nobody_can_revoke_someone_elses_token(viewer_client, operator):
    theirs, _secret = ApiToken.issue(operator, "theirs")
    assert viewer_client.post(f"/account/tokens/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_a_token_needs_a_name(viewer_client):
    response = viewer_client.post("/account/tokens/", {"name": "  "})
    assert response.status_code == 400 and not ApiToken.objects.exists()


@pytest.mark.parametrize("url", READS)
@pytest.mark.parametrize("who", ["anonymous", "unknown token", "revoked token", "inactive user"])
def test_callers_without_a_valid_token_get_a_json_401(schema, viewer, job, who, url):
    token = None if who == "anonymous" else "pcs_not-a-token" if who == "unknown token" else token_for(viewer)
    if who == "revoked token":
        ApiToken.objects.get(user=viewer).revoke()
    if who == "inactive user":
        viewer.is_active = False
        viewer.save()
    response = Api(schema, token).get(url.format(job=job.pk))
    assert response.status_code == 401 and response.json()["detail"]


@pytest.mark.parametrize("url, body", ACTS)
def test_anonymous_callers_cannot_act(schema, job, url, body):
    response = Api(schema).post(url.format(job=job.pk), body)
    assert response.status_code == 401
    assert Job.objects.count() == 1 and not Job.objects.get().cancel_requested


@pytest.mark.parametrize("url", READS)
def test_viewers_read_everything(schema, viewer, job, demo_pools, url):
    assert Api(schema, token_for(viewer)).get(url.format(job=job.pk)).status_code == 200


@pytest.mark.parametrize("url, body", ACTS)
def test_viewers_get_a_json_403_on_every_action(schema, viewer, job, demo_pools, url, body):
    response = Api(schema, token_for(viewer)).post(url.format(job=job.pk), body)
    assert response.status_code == 403 and response.json()["detail"] == "Only operators of this pool can do this."
    assert Job.objects.count() == 1 and not Job.objects.get().cancel_requested


def test_the_browser_session_reads_and_acts_with_its_csrf_token(schema, operator, job):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    api = Api(schema, client=client)
    assert api.get("/api/v1/jobs").status_code == 200
    refused = api.post(f"/api/v1/jobs/{job.pk}/cancel")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    client.get("/account/")  # sets the CSRF cookie, as any page does
    csrf = client.cookies["csrftoken"].value
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel", headers={"X-CSRFToken": csrf}).status_code == 200
    assert Job.objects.get().status == Job.CANCELLED


def test_a_token_needs_no_csrf_token(schema, operator, job):
    api = Api(schema, token_for(operator), client=Client(enforce_csrf_checks=True))
    assert api.post(f"/api/v1/jobs/{job.pk}/cancel").status_code == 200


def test_the_account_link_is_in_the_header(viewer_client, demo_pools):
    assert 'href="/account/"' in viewer_client.get("/").content.decode()
