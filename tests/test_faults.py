"""Faults around a job: the broker going away with jobs in its queue, the site restarting while a job runs."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.contrib.auth.models import Group, User

from dashboard.roles import OPERATORS
from localsite.embedded import EmbeddedRedis, free_port
from tests.conftest import server_env, use_broker
from tests.test_job_safety import errored, reset_in_couch
from tests.waiting import wait_for
from tokens import operations
from tokens.models import Job
from tokens.pools import all_pools
from tokens.selections import Selection

pytestmark = pytest.mark.django_db(transaction=True)
BASE = Path(__file__).resolve().parent.parent


def start_worker(env, tmp_path):
    return subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--pool", "solo",
                             "--loglevel", "WARNING", "--hostname", f"fault-{os.getpid()}@%h"],
                            env=env, stdout=open(tmp_path / "worker.log", "w"), stderr=subprocess.STDOUT)


def scrub_counts(db):
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return [r["doc"].get("scrub_count", 0) for r in rows if not r["id"].startswith("_design/")]


def test_jobs_queued_when_the_broker_stops_run_once_when_it_is_back(operator_client, scratch_pool, couch_server,
                                                                    settings, tmp_path):
    from dashboard.celery import app

    settings.JOB_CONFIRM_THRESHOLD = 10_000
    scratch_pool.bulk_docs([errored(n) for n in range(60)])
    port = free_port()
    broker = EmbeddedRedis(tmp_path / "redis", port=port).start()
    session_broker = app.conf.broker_url
    use_broker(broker.url)  # no worker listens there yet: the job waits in this broker's queue
    worker = None
    try:
        first = operations.create_job(all_pools()[0], None, "reset", Selection("state", bucket="error"), {})
        assert operations.enqueue(first)
        broker.stop()  # and its queue with it: the embedded Redis keeps nothing on disk

        # The operator starts a second reset of the same tokens while the broker is down.
        response = operator_client.post(f"/pools/{scratch_pool.database}/jobs/",
                                        {"action": "reset", "kind": "state", "bucket": "error", "confirmation": "60"})
        second = Job.objects.exclude(pk=first.pk).get()
        assert response.status_code == 302
        page = operator_client.get(f"/jobs/{second.pk}/").content.decode()
        assert "queued" in page and "Waiting for the broker" in page and "Nothing has been written" in page
        assert reset_in_couch(scratch_pool) == 0

        broker = EmbeddedRedis(tmp_path / "redis", port=port).start()  # back, empty
        worker = start_worker(server_env(couch_server, scratch_pool, broker.url, JOB_BATCH_SIZE="10"), tmp_path)

        # The starting worker takes over both jobs; they run one after the other and reset each token once.
        assert wait_for(lambda: all(j.ended for j in Job.objects.all()), seconds=90), (
            (tmp_path / "worker.log").read_text()[-2000:])
        jobs = {j.pk: j for j in Job.objects.all()}
        assert {j.status for j in jobs.values()} == {"succeeded"}
        assert sorted(j.changed for j in jobs.values()) == [0, 60]
        assert reset_in_couch(scratch_pool) == 60 and max(scrub_counts(scratch_pool)) == 1
    finally:
        if worker:
            worker.terminate()
            worker.wait(30)
        broker.stop()
        use_broker(session_broker)


def test_a_job_page_left_by_a_site_restart_finds_the_job_running_or_done(scratch_pool, couch_server, redis_server,
                                                                          celery_worker, tmp_path):
    """The site runs no job: stopping it mid-job loses nothing, and the restarted site shows the job's progress."""
    scratch_pool.bulk_docs([errored(n) for n in range(300)])
    operator = User.objects.create_user("restart-op", password="pw-restart-op")
    operator.groups.add(Group.objects.get_or_create(name=OPERATORS)[0])
    port = free_port()
    env = server_env(couch_server, scratch_pool, redis_server.url, JOB_BATCH_SIZE="5")

    def start_site():
        site = subprocess.Popen([sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
                                cwd=BASE, env=env, stdout=open(tmp_path / "site.log", "a"), stderr=subprocess.STDOUT)
        assert wait_for(lambda: _answers(port), seconds=30), (tmp_path / "site.log").read_text()[-2000:]
        return site

    site = start_site()
    try:
        browser = requests.Session()
        url = f"http://127.0.0.1:{port}"
        login = browser.get(f"{url}/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post(f"{url}/accounts/login/", data={"username": "restart-op", "password": "pw-restart-op",
                                                       "csrfmiddlewaretoken": token})
        assert "sessionid" in browser.cookies
        form = {"action": "reset", "kind": "state", "bucket": "error", "confirmation": "300",
                "csrfmiddlewaretoken": browser.cookies["csrftoken"]}
        created = browser.post(f"{url}/pools/{scratch_pool.database}/jobs/", data=form, allow_redirects=False)
        assert created.status_code == 302, created.text[:500]
        job_url = url + created.headers["Location"]  # the job's page; its figures: its API twin
        api_url = f"{url}/api/v1" + created.headers["Location"].rstrip("/")
        assert wait_for(lambda: Job.objects.get().changed > 0, seconds=60)

        site.terminate()  # the site goes down in the middle of the job ...
        site.wait(30)
        during = Job.objects.get()
        site = start_site()  # ... and comes back
        page = browser.get(job_url)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert re.search(r'<strong class="status (running|succeeded)">', page.text), page.text[-2000:]
        first_look = browser.get(api_url).json()

        assert first_look["status"] in ("running", "succeeded") and first_look["changed"] >= during.changed
        assert wait_for(lambda: browser.get(api_url).json()["status"] == "succeeded", seconds=120)
        final = browser.get(api_url).json()
        assert final["changed"] == 300 == reset_in_couch(scratch_pool)
        assert max(scrub_counts(scratch_pool)) == 1
    finally:
        site.terminate()
        site.wait(30)


def _answers(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=1).status_code == 200
    except requests.RequestException:
        return False
