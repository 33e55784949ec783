"""Real servers for the tests: a CouchDB server and the demo pools in it, seeded by real picas workers.

The server is the embedded pouchdb-server, started once per test session and stopped after it, or the one that
COUCHDB_TEST_URL names (http://user:password@host:port, e.g. an Apache CouchDB 3). Every database a test makes
is named uniquely and deleted after, so two runs can share one server."""

import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from dashboard.roles import OPERATORS, VIEWERS
from localsite.embedded import EmbeddedCouch, EmbeddedRedis, free_port
from tests.waiting import wait_for
from tokens.couch import Couch, split_credentials

RUN = uuid.uuid4().hex[:6]  # this session's databases carry it
SURF, LOFAR = f"demo-surf-{RUN}", f"demo-lofar-{RUN}"
# A user name no server knows: tests of refused credentials use it, never the admin's, because CouchDB 3 locks a
# user out (for minutes, from this address) after 5 failed logins.
STRANGER = "no-such-user"
TEST_CLIENT_TIMEOUT = 300  # seconds: the tests' own CouchDB clients (set-up, the truth), never the site's


@dataclass
class OutsideCouch:
    """A CouchDB server that this session did not start (COUCHDB_TEST_URL)."""

    url: str
    username: str
    password: str


class CouchDB3:
    """An Apache CouchDB 3 of a test's own, from the `couchdb3` start/stop script that COUCHDB3 names
    (tests that must stop or break their server); the same interface as EmbeddedCouch."""

    def __init__(self, workdir, script):
        self.workdir, self.script, self.port = Path(workdir), script, free_port()
        self.url, self.username, self.password = "", "admin", "admin"

    def start(self):
        out = subprocess.run([self.script, "start", str(self.workdir), str(self.port)], check=True,
                             capture_output=True, text=True, env=dict(os.environ, COUCHDB3_LOCKOUT="off"))
        self.url, self.username, self.password = split_credentials(out.stdout.strip().splitlines()[-1])
        return self

    def stop(self):
        subprocess.run([self.script, "stop", str(self.workdir)], check=True, capture_output=True)


def couchdb3_script():
    return os.environ.get("COUCHDB3") or shutil.which("couchdb3")


def own_couch_server(workdir):
    """A server a test may stop and start (its data kept on disk): a CouchDB 3 when the run is on one and its
    script is at hand, else the embedded server. Not started yet."""
    if os.environ.get("COUCHDB_TEST_URL") and couchdb3_script():
        return CouchDB3(workdir, couchdb3_script())
    return EmbeddedCouch(workdir)


@pytest.fixture(scope="session")
def couch_server(tmp_path_factory):
    if os.environ.get("COUCHDB_TEST_URL"):
        yield OutsideCouch(*split_credentials(os.environ["COUCHDB_TEST_URL"]))
        return
    server = EmbeddedCouch(tmp_path_factory.mktemp("couchdb"), memory=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def demo_pools(couch_server):
    """Both demo pools, seeded once: {database: seed summary}; deleted after the session."""
    from localsite import demo

    credentials = (couch_server.url, couch_server.username, couch_server.password)
    seeded = {SURF: demo.seed_surf(*credentials, database=SURF), LOFAR: demo.seed_lofar(*credentials, database=LOFAR)}
    for name in seeded:
        index_own_views(Couch(couch_server.url, name, couch_server.username, couch_server.password,
                              timeout=TEST_CLIENT_TIMEOUT), "OBSID")
    yield seeded
    for name in (SURF, LOFAR):
        Couch(couch_server.url, name, couch_server.username, couch_server.password).delete_database()


def index_own_views(db, group_field):
    """Write the dashboard's own design document and wait until the server has built its indexes, as the demo's
    pools are after their first minutes: the tests that read them expect a settled pool, not one being indexed (a
    pool being indexed has tests of its own)."""
    from tokens.states import OWN_DDOC, OWN_VIEW_NAMES, describe_design_doc, own_design_doc, token_types

    styles = token_types([d for d in map(describe_design_doc, db.design_docs()) if d])
    db.put_design(OWN_DDOC, own_design_doc(styles, group_field))
    for view in OWN_VIEW_NAMES:
        db.with_timeout(600).view(OWN_DDOC, view, limit=0, reduce=False)


@pytest.fixture
def couch(couch_server):
    """A client for test set-up and for computing the truth independently of the dashboard: patient (a busy
    machine's server can take longer than the site's 10 s to write 10,000 tokens; what is tested is the site)."""
    return lambda database: Couch(couch_server.url, database, couch_server.username, couch_server.password,
                                  timeout=TEST_CLIENT_TIMEOUT)


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
    app._backend_cache = None  # and its result backend (which sending a task subscribes to)
    app._local.__dict__.pop("backend", None)


@pytest.fixture(scope="session", autouse=True)
def redis_server(tmp_path_factory):
    """The embedded Redis, from the first test on: a page that queues a refresh before any test has started the
    worker must queue it here, never on a Redis this machine happens to run on the default port."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    use_broker(server.url)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def celery_session_worker(redis_server, django_db_setup, django_db_blocker):
    """A real Celery worker (in a thread of this process, so it shares the test database) on the embedded Redis."""
    from celery.contrib.testing.worker import start_worker

    from dashboard.celery import app

    with django_db_blocker.unblock(), start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        yield app


@pytest.fixture
def celery_worker(celery_session_worker, redis_server):
    """The session's worker, for one test. When the test ends the worker has done what the test gave it: the test's
    database is emptied after this, and emptying it under a task that still writes (a job a slow machine has not
    finished, a refresh a page asked for) is a deadlock on PostgreSQL and a wait on SQLite."""
    import redis
    from celery.worker import state

    yield celery_session_worker
    queue = redis.Redis.from_url(redis_server.url)
    try:
        wait_for(lambda: not state.active_requests and not state.reserved_requests and not queue.llen("celery"),
                 step=0.05, what="the Celery worker to finish the test's tasks")
    finally:
        queue.close()


def tests_database_url():
    """The URL of the database this test runs on (SQLite's file or PostgreSQL's test database), for processes of
    the test's own."""
    from urllib.parse import quote

    from django.db import connection

    given = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{given['NAME']}"
    login = quote(given["USER"] or "") + (":" + quote(given["PASSWORD"]) if given["PASSWORD"] else "")
    return f"postgres://{login}@{given['HOST'] or 'localhost'}:{given['PORT'] or 5432}/{given['NAME']}"


def server_env(couch_server, pool, broker_url, **extra):
    """The environment of a site or Celery worker process of a test's own, on the test database and one pool."""
    return dict(os.environ, DJANGO_SETTINGS_MODULE="tests.settings",
                DATABASE_URL=tests_database_url(), CELERY_BROKER_URL=broker_url,
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
    from localsite import demo

    name = "ops-" + uuid.uuid4().hex[:8]
    db = couch(name)
    db.create_database()
    demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, name)
    from tokens.worker_views import lrt_design_doc

    lrt = lrt_design_doc("pref_cal1_L229585", "0.5")
    db.put_design(lrt["_id"][len("_design/"):], {k: v for k, v in lrt.items() if k != "_id"})
    settings.COUCHDB_DATABASES = [name]
    settings.COUCHDB_GROUP_FIELD = ""
    yield db
    delete_database(db)


def delete_database(db, patience=60):
    """Delete a test's database. pouchdb-server in memory once dropped the connection of a delete that came while
    it was indexing that database for a page (CI, stop 26); CouchDB does not. A test's clean-up asks again then,
    rather than report a passed test as an error."""
    from tokens.couch import NotFound, Unreachable

    deadline = time.monotonic() + patience
    while True:
        try:
            return db.delete_database()
        except NotFound:  # the dropped request's delete was done
            return None
        except Unreachable:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


# --- the browser tests' browser (tests/browsing.py has their helpers) ---


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright, for one test module."""
    from tests.browsing import CHROMIUM  # here: tests/browsing.py imports this module

    if os.environ.get("SKIP_BROWSER_TESTS", "").lower() in ("1", "true", "yes"):
        pytest.skip("SKIP_BROWSER_TESTS is set")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"No Chromium at {CHROMIUM}: install it with `apt-get install -y chromium` (as make test does), "
                    "or set SKIP_BROWSER_TESTS=true to skip the browser tests", pytrace=False)
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def open_page(browser):
    """open_page(width="desktop") -> a page in a fresh browser context (its own cookies); "phone" is 390 px wide;
    (1920, 1080) a wall's screen. Each of the site's pages it loads is judged by axe-core (tests/accessibility.py):
    the test fails at its end if one broke a WCAG 2.1 A/AA rule."""
    from tests import accessibility
    from tests.browsing import TIMEOUT_MS, WIDTHS

    contexts, violations = [], []

    def open_(width="desktop"):
        w, h = WIDTHS[width] if isinstance(width, str) else width  # a name, or (width, height): a wall's screen
        context = browser.new_context(viewport={"width": w, "height": h})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        accessibility.watch(page, f"{w}x{h}", violations)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not violations, "axe-core found WCAG 2.1 A/AA violations:\n" + "\n".join(violations)


# --- the API tests' shared fixtures ---


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    """The API's OpenAPI schema, which tests/api_client.py checks every answer against."""
    from tests.api_client import openapi

    with django_db_blocker.unblock():
        return openapi()


@pytest.fixture
def job(db):
    """A queued reset of SURF's failed tokens (no worker takes it in these tests)."""
    from tokens.models import Job

    return Job.objects.create(pool=SURF, action="reset", selection={"kind": "state", "bucket": "error"},
                              preview_count=0)


def migrate_around(before, after, add_rows):
    """Migrate back to `before`, let add_rows(apps) write rows as they were then, migrate forward through `after` to
    the newest migration: for tests of data migrations."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    add_rows(executor.loader.project_state(before).apps)
    for target in (after, None):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target or executor.loader.graph.leaf_nodes())
