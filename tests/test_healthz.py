"""/healthz for load balancers: no login, JSON, 200 when everything answers and 503 with the failing check if not."""

import pytest

from localsite.embedded import free_port
from tests.conftest import LOFAR, STRANGER, SURF

pytestmark = pytest.mark.django_db


@pytest.fixture
def broker_up(settings, redis_server):
    settings.CELERY_BROKER_URL = redis_server.url
    return settings


def test_it_answers_200_without_login_when_everything_answers(client, broker_up, demo_pools):
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok" and data["checks"]["broker"]["status"] == "ok"
    # Without a login no pool is named (nobody learns which exist), but they are counted and checked.
    assert data["checks"]["pools"] == {} and data["checks"]["other_pools"] == {"checked": 2, "failing": 0}
    assert SURF not in response.content.decode()


def test_a_viewer_sees_the_checks_of_their_pools_by_name(viewer_client, broker_up, demo_pools):
    client = viewer_client
    response = client.get("/healthz")
    assert response.status_code == 200
    data = response.json()
    assert data["status"] == "ok"
    assert {k: v["status"] for k, v in data["checks"].items() if k != "pools"} == {
        "site": "ok", "database": "ok", "broker": "ok"}
    assert {slug: c["status"] for slug, c in data["checks"]["pools"].items()} == {SURF: "ok", LOFAR: "ok"}
    assert client.head("/healthz").status_code == 200


def test_an_unreachable_pool_fails_it_with_503(viewer_client, broker_up, demo_pools):
    client = viewer_client
    broker_up.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    response = client.get("/healthz")
    assert response.status_code == 503
    data = response.json()
    assert data["status"] == "fail" and data["checks"]["broker"]["status"] == "ok"
    assert data["checks"]["pools"][SURF] == {"status": "fail", "ms": data["checks"]["pools"][SURF]["ms"],
                                             "error": "unreachable"}


def test_a_missing_database_fails_only_its_own_pool(viewer_client, broker_up, demo_pools):
    client = viewer_client
    broker_up.COUCHDB_DATABASES = [SURF, "no-such-db"]
    response = client.get("/healthz")
    pools = response.json()["checks"]["pools"]
    assert response.status_code == 503
    assert pools[SURF]["status"] == "ok" and pools["no-such-db"]["error"] == "database not found"


def test_a_broker_nobody_listens_on_fails_it(client, settings, demo_pools):
    settings.CELERY_BROKER_URL = f"redis://:broker-password-42@127.0.0.1:{free_port()}/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    broker = response.json()["checks"]["broker"]
    assert broker["status"] == "fail" and broker["error"].startswith("unreachable")
    assert "broker-password-42" not in response.content.decode() and "127.0.0.1" not in response.content.decode()


def test_refused_credentials_fail_it_without_showing_them(viewer_client, broker_up, demo_pools):
    client = viewer_client
    broker_up.COUCHDB_USER, broker_up.COUCHDB_PASSWORD = STRANGER, "wrong-password-123"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["pools"][SURF]["error"] == "credentials refused"
    body = response.content.decode()
    assert "wrong-password-123" not in body and broker_up.COUCHDB_URL not in body


def test_a_pool_added_in_the_admin_is_checked_too(viewer_client, broker_up, demo_pools, couch_server):
    client = viewer_client
    from tokens.models import PoolConfig

    PoolConfig.objects.create(slug="admin-pool", url=couch_server.url, database=LOFAR,
                              username=couch_server.username, password=couch_server.password)
    pools = client.get("/healthz").json()["checks"]["pools"]
    assert pools["admin-pool"]["status"] == "ok" and set(pools) == {SURF, LOFAR, "admin-pool"}
