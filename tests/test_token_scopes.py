"""API tokens carry their own limits: read-only or operate, some pools, an end date; last use is shown. A token
never does more than its owner may, and a read-only one is refused every write even when its owner operates."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard.models import ApiToken
from tests.api_client import Api, token_for
from tests.conftest import LOFAR, SURF, migrate_around
from tokens.models import Job

pytestmark = pytest.mark.django_db

WRITES = [(f"/api/v1/pools/{SURF}/jobs", {"action": "reset", "selection": {"kind": "state", "bucket": "error"}}),
          (f"/api/v1/pools/{SURF}/jobs", {"action": "reset", "selection": {"kind": "state", "bucket": "error"},
                                          "dry_run": False}),
          ("/api/v1/jobs/{job}/cancel", {})]


@pytest.mark.parametrize("url, body", WRITES)
def test_a_read_only_token_of_an_operator_gets_403_on_every_write(schema, operator, job, demo_pools, url, body):
    api = Api(schema, token_for(operator, scope=ApiToken.READ))
    response = api.post(url.format(job=job.pk), body)
    assert response.status_code == 403 and "read-only" in response.json()["detail"]
    assert Job.objects.count() == 1 and not Job.objects.get().cancel_requested
    assert api.get(f"/api/v1/pools/{SURF}").status_code == 200  # it still reads


def test_an_operate_token_of_a_viewer_still_cannot_act(schema, viewer, job, demo_pools):
    api = Api(schema, token_for(viewer, scope=ApiToken.OPERATE))
    response = api.post(f"/api/v1/jobs/{job.pk}/cancel", {})
    assert response.status_code == 403 and response.json()["detail"] == "Only operators of this pool can do this."


def test_a_token_limited_to_one_pool_does_not_see_the_others(schema, operator, demo_pools):
    api = Api(schema, token_for(operator, pools=[SURF]))
    assert api.get(f"/api/v1/pools/{SURF}").status_code == 200
    assert api.get(f"/api/v1/pools/{LOFAR}").status_code == 404
    assert [p["slug"] for p in api.get("/api/v1/pools").json()["pools"]] == [SURF]
    metrics = Client().get("/metrics", headers={"Authorization": f"Bearer {token_for(operator, pools=[SURF])}"})
    assert metrics.status_code == 200 and SURF in metrics.content.decode() and LOFAR not in metrics.content.decode()


def test_an_expired_token_is_refused_and_the_account_page_says_so(schema, viewer_client, viewer, demo_pools):
    token, secret = ApiToken.issue(viewer, "old script", expires_at=timezone.now() - timedelta(minutes=1))
    refused = Api(schema, secret).get("/api/v1/pools")
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    row = next(r for r in viewer_client.get("/account/").content.decode().split("<tr>") if "old script" in r)
    assert "expired" in row


def test_the_account_page_makes_a_limited_token_and_shows_its_limits_and_last_use(
        schema, operator_client, operator, demo_pools):
    made = operator_client.post("/account/tokens/", {"name": "nightly", "scope": "operate", "pools": [SURF],
                                                     "days": "30"}, follow=True)
    assert made.redirect_chain == [("/account/", 302)] and made.status_code == 200
    secret = made.content.decode().split('id="new-secret">')[1].split("<")[0]
    token = ApiToken.objects.get(name="nightly")
    assert token.scope == "operate" and token.pools == [SURF]
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert token.last_used_at is None
    assert Api(schema, secret).get(f"/api/v1/pools/{SURF}").status_code == 200
    html = operator_client.get("/account/").content.decode()
    row = next(r for r in html.split("<tr>") if "<td>nightly</td>" in r)
    assert "read and act" in row and SURF in row and token.expires_at.strftime("%Y-%m-%d") in row
    assert ApiToken.objects.get(name="nightly").last_used_at is not None and "never" not in row.split("</td>")[6]


def test_the_token_form_refuses_what_it_cannot_give_and_keeps_what_was_typed(viewer_client, viewer, demo_pools):
    refused = viewer_client.post("/account/tokens/", {"name": "mine", "scope": "operate", "pools": [SURF]})
    assert refused.status_code == 400 and "You operate none of these pools" in refused.content.decode()
    for days in ("0", "many", "99999"):
        refused = viewer_client.post("/account/tokens/", {"name": "mine", "days": days, "pools": [SURF]})
        html = refused.content.decode()
        assert refused.status_code == 400 and "whole number of days" in html
        assert 'value="mine"' in html and f'value="{days}"' in html and f'value="{SURF}" checked' in html
    unknown = viewer_client.post("/account/tokens/", {"name": "mine", "pools": ["no-such-pool"]})
    assert unknown.status_code == 400 and "No such pool among those you may see: no-such-pool." in (
        unknown.content.decode())
    assert not ApiToken.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_token_made_before_scopes_keeps_what_it_could_do_and_new_ones_read_only(operator):
    def old_token(apps):
        apps.get_model("dashboard", "ApiToken").objects.create(user_id=operator.pk, name="old script",
                                                               hint="pcs_abcd", key_hash="0" * 64)

    migrate_around([("dashboard", "0002_api_tokens")], [("dashboard", "0003_pool_roles_and_token_limits")],
                   old_token)
    assert ApiToken.objects.get(name="old script").scope == ApiToken.OPERATE
    assert ApiToken.issue(operator, "new")[0].scope == ApiToken.READ
