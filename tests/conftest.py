"""Real servers for the tests: the embedded CouchDB-compatible server and the demo pools in it,
seeded by real picas workers. Started once per test session and stopped after it."""

import os
import uuid

import pytest
from django.contrib.auth.models import Group, User

from dashboard.embedded import EmbeddedCouch, EmbeddedRedis
from dashboard.roles import OPERATORS, VIEWERS
from tokens.couch import Couch

SURF, LOFAR = "demo-surf", "demo-lofar"


@pytest.fixture(scope="session")
def couch_server(tmp_path_factory):
    server = EmbeddedCouch(tmp_path_factory.mktemp("couchdb"), memory=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_pools(couch_server):
    """Both demo pools, seeded once: {database: seed summary}."""
    from tokens import demo

    credentials = (couch_server.url, couch_server.username, couch_server.password)
    return {SURF: demo.seed_surf(*credentials, database=SURF), LOFAR: demo.seed_lofar(*credentials, database=LOFAR)}


@pytest.fixture
def couch(couch_server):
    """A client for test set-up and for computing the truth independently of the dashboard."""
    return lambda database: Couch(couch_server.url, database, couch_server.username, couch_server.password)


@pytest.fixture(autouse=True)
def pool_settings(settings, couch_server):
    settings.COUCHDB_URL = couch_server.url
    settings.COUCHDB_USER = couch_server.username
    settings.COUCHDB_PASSWORD = couch_server.password
    settings.COUCHDB_DATABASES = [SURF, LOFAR]
    settings.COUCHDB_CREATE_VIEWS = True
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    # Pages in tests read counts fresh unless a test says otherwise.
    settings.COUNTS_MAX_AGE = 3600
    return settings


def make_user(username, group):
    user = User.objects.create_user(username, password="pw-" + username)
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def operator(db):
    return make_user("olga", OPERATORS)


@pytest.fixture
def viewer(db):
    return make_user("victor", VIEWERS)


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


def use_broker(url):
    """Point this process's Celery app at a broker. The app makes its connection pools on first use and they keep
    the URL they were made with, so they are dropped too (what Celery itself does after a fork)."""
    from dashboard.celery import app

    app.conf.broker_url = app.conf.result_backend = url
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory):
    """The embedded Redis, from the first test on: a page that queues a refresh before any test has started the
    worker must queue it here, never on a Redis this machine happens to run on the default port."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    use_broker(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_worker(redis_server, django_db_setup, django_db_blocker):
    """A real Celery worker (in a thread of this process, so it shares the test database) on the embedded Redis."""
    from celery.contrib.testing.worker import start_worker

    from dashboard.celery import app

    with django_db_blocker.unblock(), start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield app


def server_env(couch_server, pool, broker_url, **extra):
    """The environment of a site or Celery worker process of a test's own, on the test database and one pool."""
    from django.db import connection

    return dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
                DATABASE_URL=f"sqlite:///{connection.settings_dict['NAME']}", CELERY_BROKER_URL=broker_url,
                COUCHDB_URL=couch_server.url, COUCHDB_USER=couch_server.username,
                COUCHDB_PASSWORD=couch_server.password, COUCHDB_DATABASES=pool.database, COUCHDB_CREATE_VIEWS="true",
                **extra)


def surf_token(n, **fields):
    """A token as SURF's tools create it: every field picas reads."""
    return {"_id": f"token_{n:05d}", "type": "token", "lock": 0, "done": 0, "hostname": "", "scrub_count": 0,
            "input": f"run {n}", "exit_code": "", "output": {}, "uploads": {}, "error": [], **fields}


@pytest.fixture
def scratch_pool(couch_server, couch, settings):
    """A fresh pool with SURF's Monitor views and one GRID_LRT design document; returns its client."""
    from tokens import demo

    name = "ops-" + uuid.uuid4().hex[:8]
    db = couch(name)
    db.create_database()
    demo._surf_design_docs(couch_server.url, couch_server.username, couch_server.password, name)
    from tokens.worker_views import lrt_design_doc

    lrt = lrt_design_doc("pref_cal1_L229585", "0.5")
    db.put_design(lrt["_id"][len("_design/"):], {k: v for k, v in lrt.items() if k != "_id"})
    settings.COUCHDB_DATABASES = [name]
    settings.COUCHDB_GROUP_FIELD = ""
    yield db
    db.delete_database()
