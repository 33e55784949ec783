"""An unreachable or unauthorised CouchDB shows a banner (HTML) or, in the API, a JSON error with a status, never a
traceback."""

import uuid

import pytest

from localsite.embedded import free_port
from tests.api_client import api_as
from tests.conftest import STRANGER, SURF, surf_token
from tokens import counting
from tokens.couch import Couch, TimedOut
from tokens.pools import get_pool
from tokens.states import OWN_DDOC, own_design_doc
from tokens.states import SURF as SURF_STYLE

pytestmark = pytest.mark.django_db


def test_an_unreachable_server_shows_a_banner_and_a_503(viewer_client, settings):
    settings.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    response = viewer_client.get(f"/pools/{SURF}/")
    assert response.status_code == 503
    assert "is unreachable" in response.content.decode() and 'class="banner error"' in response.content.decode()
    response = api_as(viewer_client).get(f"/api/v1/pools/{SURF}")
    assert response.status_code == 503 and "is unreachable" in response.json()["detail"]


def test_refused_credentials_show_a_banner_without_the_password(viewer_client, settings):
    settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = STRANGER, "wrong-password-123"
    response = api_as(viewer_client).get(f"/api/v1/pools/{SURF}")
    assert response.status_code == 502
    assert "refused the credentials" in response.json()["detail"] and b"wrong-password-123" not in response.content
    response = viewer_client.get(f"/pools/{SURF}/")
    html = response.content.decode()
    assert response.status_code == 502 and 'class="banner error"' in html
    assert "refused the credentials" in html and "wrong-password-123" not in html


def test_the_pools_page_marks_an_unreachable_pool_and_still_lists_the_others(viewer_client, settings, demo_pools):
    settings.COUCHDB_DATABASES = [SURF, "no-such-db"]
    pools = {p["slug"]: p for p in api_as(viewer_client).get("/api/v1/pools").json()["pools"]}
    assert pools[SURF]["health"] == "ok"
    assert pools["no-such-db"]["health"] == "error" and "not found" in pools["no-such-db"]["error"]
    html = viewer_client.get("/").content.decode()
    assert f'href="/pools/{SURF}/"' in html and 'href="/pools/no-such-db/"' in html and "not found" in html


def test_counts_taken_before_an_outage_are_shown_with_the_error(viewer_client, settings, demo_pools):
    counting.refresh(get_pool(SURF))
    settings.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    counting.refresh(get_pool(SURF))
    response = viewer_client.get(f"/pools/{SURF}/")
    html = response.content.decode()
    assert response.status_code == 503
    assert "is unreachable" in html and "showing the counts from" in html


def test_a_server_busy_building_its_index_is_reported_slow_not_unreachable(couch, settings):
    """A view query on a fresh index waits for the build; past the timeout the page says so, and on CouchDB 3
    (whose _active_tasks lists index builds) which index is being built and how far it is."""
    name = f"slow-{uuid.uuid4().hex[:8]}"
    db = couch(name)
    db.create_database()
    try:
        for start in range(0, 30_000, 10_000):
            db.bulk_docs([surf_token(n) for n in range(start, start + 10_000)])
        own = own_design_doc({"token": SURF_STYLE}, None)
        db.put_design(OWN_DDOC, {k: v for k, v in own.items() if k != "_id"})
        slow = Couch(db.url, name, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD, timeout=0.3)
        with pytest.raises(TimedOut) as caught:
            slow.view(OWN_DDOC, "states", group_level=1)
        message = str(caught.value)
        assert message.startswith(f"CouchDB at {db.url} did not answer within 0.3 s") and "unreachable" not in message
        if "couchdb" in db.server_info():  # Apache CouchDB (pouchdb-server has no index tasks to show)
            assert f"building the index of _design/{OWN_DDOC}" in message and "% done" in message
    finally:
        db.delete_database()


def test_couchdbs_own_request_timeout_is_reported_as_a_slow_server_building_its_index(couch, couch_server,
                                                                                     settings):
    """CouchDB 3 gives up on a request itself after its fabric request_timeout (a 500 "timeout"), e.g. a view whose
    index it builds for longer than that: the same slow-server message as our own read timeout, with the build's
    progress. pouchdb-server has no such limit: the test needs CouchDB 3."""
    import requests

    section = couch_server.url + "/_node/_local/_config/fabric"
    auth = (couch_server.username, couch_server.password)
    if not requests.get(section, auth=auth, timeout=10).ok:
        pytest.skip("a CouchDB 3 whose request timeout can be set (pouchdb-server has none)")
    config = section + "/request_timeout"
    name = f"slow-{uuid.uuid4().hex[:8]}"
    db = couch(name)
    db.create_database()
    for start in range(0, 30_000, 10_000):
        db.bulk_docs([surf_token(n) for n in range(start, start + 10_000)])
    own = own_design_doc({"token": SURF_STYLE}, None)
    db.put_design(OWN_DDOC, {k: v for k, v in own.items() if k != "_id"})
    before = requests.put(config, json="300", auth=auth, timeout=10).json()  # ms; "" where it was not set
    try:
        patient = Couch(db.url, name, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD, timeout=60)
        with pytest.raises(TimedOut) as caught:
            patient.view(OWN_DDOC, "states", group_level=1)
        message = str(caught.value)
        assert message.startswith(f"CouchDB at {db.url} gave up on the request after its own time limit: it is "
                                  f"building the index of _design/{OWN_DDOC} (")
    finally:
        if before:
            requests.put(config, json=before, auth=auth, timeout=10)
        else:
            requests.delete(config, auth=auth, timeout=10)
        db.delete_database()


def test_seeding_the_demo_on_an_unreachable_or_refusing_server_says_so_without_the_password(couch_server):
    from localsite import demo, seeding

    with pytest.raises(seeding.DemoError, match="is unreachable") as unreachable:
        demo.seed_surf(f"http://127.0.0.1:{free_port()}", "admin", "secret-pw-42", database="demo-nowhere")
    with pytest.raises(seeding.DemoError, match="refused the credentials") as refused:
        demo.seed_lofar(couch_server.url, STRANGER, "secret-pw-42", database=f"demo-{uuid.uuid4().hex[:8]}")
    assert "secret-pw-42" not in str(unreachable.value) + str(refused.value)
