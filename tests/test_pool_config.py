"""Pools come from the environment and from the admin-managed list; credentials never leave the server."""

import logging

import pytest

from tests.api_client import api_as
from tests.conftest import LOFAR, STRANGER, SURF
from tokens import counting
from tokens.models import PoolConfig
from tokens.pools import all_pools, get_pool

pytestmark = pytest.mark.django_db


def test_an_admin_added_pool_is_listed_and_read(viewer_client, couch_server, demo_pools):
    PoolConfig.objects.create(slug="lofar-copy", name="LOFAR (admin)", url=couch_server.url, database=LOFAR,
                              username=couch_server.username, password=couch_server.password, create_views=True)
    assert "lofar-copy" in [p.slug for p in all_pools()]
    assert viewer_client.get("/pools/lofar-copy/").status_code == 200
    data = api_as(viewer_client).get("/api/v1/pools/lofar-copy").json()
    assert data["total"] > 100 and len(data["observations"]) == 3


def test_the_admin_form_never_sends_a_stored_password_back(admin_client, couch_server):
    config = PoolConfig.objects.create(slug="p", url=couch_server.url, database=SURF,
                                       username="admin", password="stored-secret-42")
    html = admin_client.get(f"/admin/tokens/poolconfig/{config.pk}/change/").content.decode()
    assert "stored-secret-42" not in html


def test_no_page_and_no_log_line_holds_the_couchdb_password(viewer_client, couch_server, demo_pools, caplog,
                                                             settings):
    caplog.set_level(logging.DEBUG)
    password = couch_server.password
    pages = [viewer_client.get(url, params) for url, params in [
        ("/", {}), (f"/pools/{SURF}/", {}), (f"/pools/{SURF}/tokens/", {"state": "error"}),
        (f"/pools/{SURF}/failures/", {}), (f"/pools/{SURF}/stale/", {}), (f"/api/v1/pools/{SURF}", {}),
        (f"/api/v1/pools/{SURF}/tokens", {"state": "error"}), (f"/api/v1/pools/{SURF}/tokens/token_1", {}),
    ]]
    settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = STRANGER, "a-wrong-password"  # the error path logs too
    counting.refresh(get_pool(SURF))
    pages.append(viewer_client.get(f"/pools/{SURF}/"))
    assert [p.status_code for p in pages[:-1]] == [200] * 8  # every one shows the pool's data
    assert all(password not in p.content.decode() for p in pages)
    assert password not in caplog.text and "a-wrong-password" not in caplog.text
    assert "refused the credentials" in caplog.text  # the failure itself was logged
