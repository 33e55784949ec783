"""The site as production runs it: gunicorn with 4 processes and 2 Celery worker processes (one with beat), started
for real on the test run's kind of database (SQLite, or PostgreSQL when the suite runs on it). Counts, login
throttling, job records and token events stay consistent across processes, and killing one gunicorn process or
one Celery worker in the middle of a job loses nothing."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from dashboard.embedded import free_port
from tests.conftest import surf_token
from tests.test_deploy import BASE_DIR, Proxy, errored, manage, production_env, wait_for
from tokens.couch import Couch

TOKENS = 2000  # enough for a job of many batches, so that a worker can be killed in its middle
FAILED = 1500
CELERY = [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool", "solo", "--loglevel", "INFO"]


def site_database(tmp):
    """A database of the site's own, of the kind this test run uses; and how to drop it."""
    from django.db import connection

    if connection.vendor == "sqlite":
        return f"sqlite:///{tmp / 'site.sqlite3'}", lambda: None
    import psycopg

    name = "picas_processes_" + uuid.uuid4().hex[:8]
    given = connection.settings_dict
    admin = dict(host=given["HOST"] or "localhost", port=given["PORT"] or 5432, user=given["USER"],
                 password=given["PASSWORD"] or None, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(**admin) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    login = given["USER"] + (f":{given['PASSWORD']}" if given["PASSWORD"] else "")
    return f"postgres://{login}@{admin['host']}:{admin['port']}/{name}", drop


def start(command, env, log):
    return subprocess.Popen(command, env=env, cwd=BASE_DIR, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process):
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def children(pid):
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture(scope="module")
def site(tmp_path_factory, couch_server, redis_server, django_db_blocker):
    from tokens import demo

    tmp = tmp_path_factory.mktemp("processes")
    database = "processes-" + uuid.uuid4().hex[:8]
    couch = Couch(couch_server.url, database, couch_server.username, couch_server.password)
    couch.create_database()
    demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, database)
    docs = [errored(n) for n in range(FAILED)] + [surf_token(n) for n in range(FAILED, TOKENS)]
    for first in range(0, TOKENS, 500):
        couch.bulk_docs(docs[first:first + 500])
    with django_db_blocker.unblock():
        database_url, drop = site_database(tmp)
    (tmp / "couchdb_password").write_text(couch_server.password + "\n")
    env = production_env(
        tmp, DATABASE_URL=database_url, COUCHDB_URL=couch_server.url, COUCHDB_USER=couch_server.username,
        COUCHDB_PASSWORD_FILE=str(tmp / "couchdb_password"), COUCHDB_DATABASES=database, COUCHDB_CREATE_VIEWS="true",
        CELERY_BROKER_URL=redis_server.url.rsplit("/", 1)[0] + "/8", COUNTS_MAX_AGE="1", EVENTS_FOLLOW_SECONDS="2",
        LOGIN_MAX_FAILURES="3", LOGIN_MAX_FAILURES_PER_IP="100", JOB_BATCH_SIZE="50", JOB_FINISHED_GRACE_SECONDS="0",
        JOB_CONFIRM_THRESHOLD="100000",
        # A task whose worker died goes to the other worker after this many seconds (production: 600).
        CELERY_VISIBILITY_TIMEOUT="15",
    )
    for command in (["migrate", "--no-input"], ["collectstatic", "--no-input"], ["shell", "-c", (
            "from django.contrib.auth.models import Group, User; "
            "u = User.objects.create_user('olga', password='olga-pw-123'); "
            "u.groups.add(Group.objects.get_or_create(name='operators')[0])")]):
        result = manage(env, *command)
        assert result.returncode == 0, result.stderr
    port = free_port()
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("gunicorn", "worker1", "worker2")}
    processes = {
        "gunicorn": start([sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}",
                           "--workers", "4", "--access-logfile", "-"], env, logs["gunicorn"]),
        "worker1": start([*CELERY, "-B", "--hostname", "one@%h", "--schedule", str(tmp / "beat-schedule")], env,
                         logs["worker1"]),
        "worker2": start([*CELERY, "--hostname", "two@%h"], env, logs["worker2"]),
    }
    try:
        wait_for(lambda: _answers(port))
        operator = Proxy(port)
        assert operator.log_in("olga", "olga-pw-123").status == 302
        yield {"port": port, "env": env, "database": database, "couch": couch, "processes": processes,
               "operator": operator, "tmp": tmp}
    finally:
        for process in processes.values():
            stop(process)
        for log in logs.values():
            log.close()
        couch.delete_database()
        with django_db_blocker.unblock():
            drop()


def _answers(port):
    try:
        return Proxy(port).get("/accounts/login/").status == 200
    except OSError:
        return False


def log_of(site, name):
    return (site["tmp"] / f"{name}.log").read_text()


def ask_site(site, code):
    """Run Python in the site's environment (its database); what it prints, as JSON."""
    result = manage(site["env"], "shell", "-c", code)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def counts(site):
    return json.loads(site["operator"].get(f"/pools/{site['database']}/?format=json").body)["counts"]


def test_every_gunicorn_process_serves_the_same_counts_as_they_change(site):
    wait_for(lambda: counts(site)["error"] == FAILED)
    # A worker outside (as a pilot would) marks ten tokens done; every process must show it within seconds.
    couch, now = site["couch"], int(time.time())
    todo = [d["doc"] for d in couch.documents(TOKENS + 10).rows if d["id"].startswith("token_")][FAILED:FAILED + 10]
    couch.bulk_docs([{**d, "lock": now - 60, "done": now, "exit_code": 0} for d in todo])
    wait_for(lambda: counts(site)["done"] == 10, seconds=30)
    with ThreadPoolExecutor(16) as pool:  # concurrent: several of the four processes answer
        seen = list(pool.map(lambda _: (counts(site)["done"], counts(site)["error"]), range(48)))
    assert set(seen) == {(10, FAILED)}


def test_login_throttling_holds_across_the_four_processes(site):
    browsers = [Proxy(site["port"], client_ip=f"198.51.100.{n}") for n in range(1, 5)]
    # Three addresses, each request on a connection of its own, to whichever process accepts it.
    answers = [b.log_in("olga", "wrong").status for b in browsers[:3]]
    assert answers == [200, 200, 429]
    assert all(b.log_in("olga", "olga-pw-123").status == 429 for b in browsers)
    assert manage(site["env"], "axes_reset").returncode == 0
    assert browsers[3].log_in("olga", "olga-pw-123").status == 302


def test_a_job_survives_its_worker_being_killed_and_a_gunicorn_process_dying(site):
    operator, db = site["operator"], site["database"]
    created = operator.post(f"/pools/{db}/jobs/", {"action": "reset", "kind": "state", "bucket": "error",
                                                   "confirmation": str(FAILED)})
    assert created.status == 302, created.body[-2000:]
    job_url = created.getheader("Location")

    def progress():
        return json.loads(operator.get(job_url + "?format=json").body)

    wait_for(lambda: (j := progress())["status"] == "running" and j["changed"] > 0, seconds=60)
    # Kill the Celery worker running it (SIGKILL: no goodbye), and one of gunicorn's processes.
    runner, other = sorted(("worker1", "worker2"), key=lambda name: "run_job" not in log_of(site, name))
    os.killpg(site["processes"][runner].pid, signal.SIGKILL)
    os.kill(children(site["processes"]["gunicorn"].pid)[0], signal.SIGKILL)
    cut = progress()
    assert cut["status"] == "running" and 0 < cut["changed"] < FAILED  # killed in the middle

    done = wait_for(lambda: (j := progress())["status"] in ("succeeded", "failed", "interrupted") and j, seconds=180)
    assert done["status"] == "succeeded", done
    assert "run_job" in log_of(site, other)  # the broker handed the task to the other worker
    assert done["changed"] + done["skipped"] == FAILED
    # Every failed token was reset exactly once: none left, none written twice.
    couch = site["couch"]
    docs = [d["doc"] for d in couch.documents(TOKENS + 10).rows if d["id"].startswith("token_")]
    assert sum(1 for d in docs if d["error"] and d["done"]) == 0
    assert {int(d["_rev"].split("-")[0]) for d in docs[:FAILED]} == {2}
    records = ask_site(site, (
        "import json; from django.db.models import Count; from tokens.models import JobToken; "
        f"rows = JobToken.objects.filter(job_id={done['id']}); "
        "print(json.dumps([rows.count(), rows.values('token_id').distinct().count()]))"))
    assert records == [FAILED, FAILED]  # one record per token, none twice
    wait_for(lambda: counts(site)["error"] == 0, seconds=60)


def test_token_events_are_recorded_once_however_many_processes_follow_the_pool(site):
    db = site["database"]
    # Pages in four processes and the beat's follower all read the changes; each move is recorded once.
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: site["operator"].get(f"/pools/{db}/"), range(16)))
    moves = wait_for(lambda: (m := ask_site(site, (
        "import json; from django.db.models import Count; from tokens.models import TokenEvent; "
        f"rows = TokenEvent.objects.filter(pool='{db}', origin='change', to_state='todo'); "
        "print(json.dumps([rows.count(), rows.values('doc_id').distinct().count()]))")))[0] >= FAILED and m,
        seconds=60)
    assert moves == [FAILED, FAILED]
