"""The site as production runs it: the systemd units of deploy/systemd (gunicorn with 4 processes, 2 Celery
workers, one beat), their commands started for real on the test run's kind of database (SQLite, or PostgreSQL when
the suite runs on it). Counts, login throttling, job records and token events stay consistent across processes, and
killing one gunicorn process or one Celery worker in the middle of a job loses nothing. The units pass systemd's
own check."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localsite.embedded import free_port
from tests.conftest import TEST_CLIENT_TIMEOUT, surf_token
from tests.test_deploy import BASE_DIR, Proxy, errored, first_start, manage, production_env
from tests.waiting import wait_for
from tokens.couch import Couch

TOKENS = 2000  # enough for a job of many batches, so that a worker can be killed in its middle
FAILED = 1500
UNITS = BASE_DIR / "deploy" / "systemd"
RELEASE, SERVICE_DATA = "/opt/picas-dashboard", "/srv/picas-dashboard"


def installed_here(unit, data_dir):
    """A unit's text as if installed on this machine: the release is this checkout (its venv the one running the
    tests), /srv/picas-dashboard and the environment file in data_dir."""
    text = (UNITS / unit).read_text().replace(f"{RELEASE}/.venv/bin/", f"{Path(sys.executable).parent}/")
    text = text.replace(RELEASE, str(BASE_DIR)).replace("/etc/picas-dashboard/env", str(data_dir / "env"))
    return text.replace(SERVICE_DATA, str(data_dir))


def unit_command(unit, data_dir, port=8000, instance=""):
    """A unit's ExecStart as systemd would run it here, %i and %H filled in; the site's port the test's."""
    exec_start = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", installed_here(unit, data_dir), re.M).group(1)
    command = exec_start.replace("\\\n", " ").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    return shlex.split(command.replace("%i", instance).replace("%H", socket.gethostname()))


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
    from localsite import demo

    tmp = tmp_path_factory.mktemp("processes")
    database = "processes-" + uuid.uuid4().hex[:8]
    couch = Couch(couch_server.url, database, couch_server.username, couch_server.password,
                  timeout=TEST_CLIENT_TIMEOUT)
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
        # A job whose worker died shows as interrupted after this many seconds without a heartbeat (production: 300).
        JOB_HEARTBEAT_TIMEOUT="10", PYTHONUNBUFFERED="1",
    )
    first_start(env)
    port = free_port()
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("gunicorn", "worker1", "worker2", "beat")}
    processes = {
        "gunicorn": start(unit_command("picas-dashboard.service", tmp, port=port), env, logs["gunicorn"]),
        "worker1": start(unit_command("picas-dashboard-worker@.service", tmp, instance="1"), env, logs["worker1"]),
        "worker2": start(unit_command("picas-dashboard-worker@.service", tmp, instance="2"), env, logs["worker2"]),
        "beat": start(unit_command("picas-dashboard-beat.service", tmp), env, logs["beat"]),
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
    """The pool page's counts, from its API twin; {} while it has none to show (on a busy machine the first refresh
    of a new pool can answer with the CouchDB problem it met; a later call asks again), the answer kept for a
    failure's message."""
    site["last_answer"] = json.loads(site["operator"].get(f"/api/v1/pools/{site['database']}").body)
    return site["last_answer"].get("counts") or {}


def test_every_gunicorn_process_serves_the_same_counts_as_they_change(site):
    try:
        wait_for(lambda: counts(site).get("error") == FAILED)
    except AssertionError:
        raise AssertionError(f"the pool page last answered {site.get('last_answer')}") from None
    # A worker outside (as a pilot would) marks ten tokens done; every process must show it within seconds.
    couch, now = site["couch"], int(time.time())
    todo = [d["doc"] for d in couch.documents(TOKENS + 10).rows if d["id"].startswith("token_")][FAILED:FAILED + 10]
    couch.bulk_docs([{**d, "lock": now - 60, "done": now, "exit_code": 0} for d in todo])
    wait_for(lambda: counts(site).get("done") == 10, seconds=30)
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


def reset_failed(site, count):
    created = site["operator"].post(f"/pools/{site['database']}/jobs/", {
        "action": "reset", "kind": "state", "bucket": "error", "confirmation": str(count)})
    assert created.status == 302, created.body[-2000:]
    job_url = created.getheader("Location")  # the job's page, /jobs/<id>/; its figures: its API twin
    assert re.fullmatch(r"/jobs/\d+/", job_url), job_url
    return lambda: json.loads(site["operator"].get("/api/v1" + job_url.rstrip("/")).body)


def reset_tokens(site):
    """{token id: its revision number} of the tokens a reset has changed (error -> todo)."""
    docs = [d["doc"] for d in site["couch"].documents(TOKENS + 10).rows if d["id"].startswith("token_")]
    return {d["_id"]: int(d["_rev"].split("-")[0]) for d in docs[:FAILED] if not d["done"]}


def job_records(site, job_id):
    return ask_site(site, (
        "import json; from tokens.models import JobToken; "
        f"print(json.dumps(list(JobToken.objects.filter(job_id={job_id}, outcome='changed')"
        ".values_list('token_id', flat=True))))"))


def test_a_worker_killed_mid_job_and_a_dead_gunicorn_process_lose_nothing(site):
    """As docs/deploy.md (section 6) says: a job whose worker dies is shown as interrupted once its heartbeat
    stops (not resumed in place: the selection may have changed); what it wrote is recorded, but for the one batch
    in flight; running it again (a new dry run) resets the rest, each token once."""
    progress = reset_failed(site, FAILED)
    wait_for(lambda: (j := progress())["status"] == "running" and j["changed"] > 0, seconds=60)
    runner = wait_for(lambda: next((name for name in ("worker1", "worker2")
                                    if "tokens.tasks.run_job[" in log_of(site, name)), None))  # "received"
    os.killpg(site["processes"][runner].pid, signal.SIGKILL)  # no goodbye
    os.kill(children(site["processes"]["gunicorn"].pid)[0], signal.SIGKILL)  # gunicorn starts another
    cut = progress()
    assert cut["status"] == "running" and 0 < cut["changed"] < FAILED, cut  # killed in the middle

    stopped = wait_for(lambda: (j := progress())["status"] != "running" and j, seconds=60)
    assert stopped["status"] == "interrupted", stopped
    written, recorded = reset_tokens(site), job_records(site, stopped["id"])
    # Records are saved before the job's counters: the counters may be a batch behind, never ahead.
    assert set(recorded) <= set(written) and stopped["changed"] <= len(recorded)
    # The batch in flight when the worker died may be written but not yet recorded: at most one.
    assert len(written) - len(recorded) <= int(site["env"]["JOB_BATCH_SIZE"]), (len(written), len(recorded))

    left = FAILED - len(written)
    rerun = reset_failed(site, left)
    done = wait_for(lambda: (j := rerun())["status"] not in ("queued", "running") and j, seconds=120)
    assert done["status"] == "succeeded" and done["changed"] == left, done
    assert set(reset_tokens(site).values()) == {2}  # every failed token reset, none twice
    assert len(reset_tokens(site)) == FAILED
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


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not on this machine")
def test_the_units_pass_systemds_own_check_where_their_commands_exist(tmp_path):
    """`systemd-analyze verify`: the syntax, the keys and that each command can be run. Checked as installed on a
    host (the release at /opt/picas-dashboard) here: with this checkout in its place."""
    (tmp_path / "env").write_text("DEBUG=false\n")
    installed = []
    for unit in sorted(UNITS.glob("*.service")):
        name = unit.name.replace("@.", "@1.")  # a template is checked as an instance
        (tmp_path / name).write_text(installed_here(unit.name, tmp_path))
        installed.append(str(tmp_path / name))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *installed], capture_output=True, text=True,
                            cwd=tmp_path, timeout=60)
    assert result.returncode == 0 and "not executable" not in result.stderr, result.stderr
    assert len(installed) == 3
