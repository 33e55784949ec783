"""An unreachable or unauthorised CouchDB shows a banner (HTML) or a JSON error with a status, never a traceback."""

import pytest

from dashboard.embedded import free_port
from tests.conftest import STRANGER, SURF
from tokens import reading
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db


def test_an_unreachable_server_shows_a_banner_and_a_503(viewer_client, settings):
    settings.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    response = viewer_client.get(f"/pools/{SURF}/")
    assert response.status_code == 503
    assert "is unreachable" in response.content.decode() and 'class="banner error"' in response.content.decode()
    data = viewer_client.get(f"/pools/{SURF}/?format=json").json()
    assert "is unreachable" in data["error"]


def test_refused_credentials_show_a_banner_without_the_password(viewer_client, settings):
    settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = STRANGER, "wrong-password-123"
    response = viewer_client.get(f"/pools/{SURF}/", {"format": "json"})
    assert response.status_code == 502
    assert "refused the credentials" in response.json()["error"]
    html = viewer_client.get(f"/pools/{SURF}/").content.decode()
    assert "refused the credentials" in html and "wrong-password-123" not in html


def test_the_pools_page_marks_an_unreachable_pool_and_still_lists_the_others(viewer_client, settings, demo_pools):
    settings.COUCHDB_DATABASES = [SURF, "no-such-db"]
    pools = {p["slug"]: p for p in viewer_client.get("/?format=json").json()["pools"]}
    assert pools[SURF]["health"] == "ok"
    assert pools["no-such-db"]["health"] == "error" and "not found" in pools["no-such-db"]["error"]


def test_counts_taken_before_an_outage_are_shown_with_the_error(viewer_client, settings, demo_pools):
    reading.refresh(get_pool(SURF))
    settings.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    reading.refresh(get_pool(SURF))
    response = viewer_client.get(f"/pools/{SURF}/")
    html = response.content.decode()
    assert response.status_code == 503
    assert "is unreachable" in html and "showing the counts from" in html
