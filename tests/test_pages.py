"""Every page answers HTML to a logged-in user (its data as JSON is in the API); anonymous users are sent to log
in."""

import pytest
from django.urls import reverse

from tests.api_client import api_as
from tests.conftest import LOFAR, SURF

pytestmark = pytest.mark.django_db

PAGES = [
    ("pools", {}),
    ("pool", {"slug": SURF}),
    ("pool", {"slug": LOFAR}),
    ("tokens", {"slug": SURF}),
    ("failures", {"slug": SURF}),
    ("stale", {"slug": SURF}),
]


@pytest.mark.parametrize("name, kwargs", PAGES)
def test_anonymous_users_are_sent_to_log_in(client, demo_pools, name, kwargs):
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name, kwargs", PAGES)
def test_a_viewer_sees_each_page(viewer_client, demo_pools, name, kwargs):
    response = viewer_client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("name, kwargs", PAGES)
def test_a_page_refuses_json_by_query_and_answers_html_to_an_accept_header(viewer_client, demo_pools, name, kwargs):
    url = reverse(name, kwargs=kwargs)
    by_query = viewer_client.get(url, {"format": "json"})
    assert by_query.status_code == 406 and by_query["Content-Type"].startswith("application/json")
    assert "/api/v1/" in by_query.json()["error"]
    by_header = viewer_client.get(url, headers={"Accept": "application/json"})
    assert by_header.status_code == 200 and by_header["Content-Type"].startswith("text/html")
    assert "<html" in by_header.content.decode()


def test_the_pools_page_lists_both_pools_with_health_and_totals(viewer_client, demo_pools):
    html = viewer_client.get("/").content.decode()
    assert f"/pools/{SURF}/" in html and f"/pools/{LOFAR}/" in html
    pools = {p["slug"]: p for p in api_as(viewer_client).get("/api/v1/pools").json()["pools"]}
    assert set(pools) == {SURF, LOFAR}
    assert all(p["health"] == "ok" and p["total"] > 100 for p in pools.values())


def test_the_pool_page_shows_a_row_per_observation_with_progress(viewer_client, demo_pools):
    data = api_as(viewer_client).get(f"/api/v1/pools/{LOFAR}").json()
    rows = {o["group"]: o for o in data["observations"]}
    assert set(rows) == {"L229585", "L230461", "L232875"}
    for row in rows.values():
        assert row["percent_done"] == round(100 * row["counts"]["done"] / row["total"], 1)
    html = viewer_client.get(f"/pools/{LOFAR}/").content.decode()
    assert 'class="bar"' in html and "L229585" in html
    assert 'hx-trigger="every' in html  # polls with htmx, and
    assert 'http-equiv="refresh"' in html  # refreshes without JavaScript too


def test_an_htmx_poll_gets_only_the_observations_partial(viewer_client, demo_pools):
    response = viewer_client.get(f"/pools/{SURF}/", headers={"HX-Request": "true", "HX-Target": "observations"})
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="observations"')
    assert "<html" not in html


def test_an_unknown_pool_is_not_found(viewer_client, demo_pools):
    assert viewer_client.get("/pools/no-such-pool/").status_code == 404


def test_a_missing_token_is_a_404_page_and_a_json_404_in_the_api(viewer_client, demo_pools):
    response = viewer_client.get(f"/pools/{SURF}/token/", {"id": "no-such-token"})
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")
    assert "No such token" in response.content.decode()
    response = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens/no-such-token")
    assert response.status_code == 404 and response.json() == {"detail": "No such token"}


def test_the_header_says_who_is_signed_in_and_whether_they_may_act(client, viewer, operator, demo_pools):
    client.force_login(viewer)
    assert "Signed in as victor (read only)" in client.get("/pools/").content.decode()
    client.force_login(operator)
    assert "Signed in as olga (may act)" in client.get("/pools/").content.decode()
