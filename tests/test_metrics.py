"""/metrics: Prometheus text that prometheus_client parses, with the pools' true counts, for bearer token holders."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from localsite.embedded import free_port
from tests.conftest import LOFAR, SURF
from tests.test_counts import all_docs, true_counts
from tokens import counting
from tokens.models import Job
from tokens.pools import get_pool
from tokens.states import BUCKETS

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"


@pytest.fixture
def metrics_on(settings):
    settings.METRICS_TOKEN = TOKEN
    return settings


def scrape(client, token=TOKEN):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family, *labels, name=None):
    """{(values of `labels`): value} of one family's samples (those named `name`, by default the family's name)."""
    return {tuple(s.labels[k] for k in labels): s.value for s in family.samples if s.name == (name or family.name)}


def group_of(doc):
    return str(doc["OBSID"]) if "OBSID" in doc else None


def test_token_counts_per_observation_and_state_equal_the_truth(client, metrics_on, demo_pools, couch):
    for database in (SURF, LOFAR):
        counting.refresh(get_pool(database))
    families = scrape(client)
    shown = samples(families["picas_tokens"], "pool", "type", "group", "state")
    for database in (SURF, LOFAR):
        truth = true_counts(all_docs(couch(database)), lambda d: (d["type"], group_of(d)))
        mine, states = {}, {}
        for (p, t, g, b), value in shown.items():
            if p == database:
                states.setdefault((t, g), set()).add(b)
                if value:
                    mine.setdefault((t, g or None), {})[b] = value
        assert mine == truth
        # Every state of every observation is there, zeros included, so series do not come and go.
        assert all(s == set(BUCKETS) for s in states.values()) and len(states) == len(truth)


def test_pool_totals_and_the_done_counter_equal_the_truth(client, metrics_on, demo_pools, couch):
    for database in (SURF, LOFAR):
        counting.refresh(get_pool(database))
    families = scrape(client)
    totals = samples(families["picas_pool_tokens"], "pool", "state")
    done = samples(families["picas_tokens_done"], "pool", name="picas_tokens_done_total")
    assert families["picas_tokens_done"].type == "counter"
    for database in (SURF, LOFAR):
        per_bucket = {}
        for counts in true_counts(all_docs(couch(database)), lambda d: (d["type"], group_of(d))).values():
            for b, n in counts.items():
                per_bucket[b] = per_bucket.get(b, 0) + n
        assert {b: totals[(database, b)] for b in BUCKETS if totals[(database, b)]} == per_bucket
        assert done[(database,)] == per_bucket["done"] > 0


def test_stale_locks_are_the_locks_older_than_the_setting(client, metrics_on, demo_pools, couch):
    now = time.time()
    locked = [r["doc"] for r in couch(SURF).view("Monitor", "locked", include_docs=True)["rows"]]
    stale = [d for d in locked if d["lock"] > 1e9 and now - d["lock"] > metrics_on.STALE_LOCK_HOURS * 3600]
    unknown = [d for d in locked if d["lock"] < 1e9]
    families = scrape(client)
    assert samples(families["picas_stale_locks"], "pool")[(SURF,)] == len(stale) > 0
    assert samples(families["picas_locks_unknown_age"], "pool")[(SURF,)] == len(unknown) > 0
    metrics_on.STALE_LOCK_HOURS = 0
    fresh = [d for d in locked if d["lock"] > 1e9]
    assert samples(scrape(client)["picas_stale_locks"], "pool")[(SURF,)] == len(fresh) > len(stale)


def test_couchdb_reachability_is_one_per_pool_that_answers(client, metrics_on, demo_pools):
    metrics_on.COUCHDB_DATABASES = [SURF, "no-such-db"]
    up = samples(scrape(client)["picas_couchdb_up"], "pool")
    assert up == {(SURF,): 1.0, ("no-such-db",): 0.0}
    metrics_on.COUCHDB_URL = f"http://127.0.0.1:{free_port()}"
    families = scrape(client)
    assert samples(families["picas_couchdb_up"], "pool") == {(SURF,): 0.0, ("no-such-db",): 0.0}
    # The counts taken before are still served, with their age; the failed refresh is said too.
    assert samples(families["picas_counts_refresh_ok"], "pool")[("no-such-db",)] == 0.0


def make_job(action, status, seconds=None):
    started = timezone.now() - timedelta(hours=1)
    return Job.objects.create(
        pool=SURF, action=action, selection={}, preview_count=1, status=status,
        started_at=started if seconds is not None or status == Job.RUNNING else None,
        finished_at=started + timedelta(seconds=seconds) if seconds is not None else None,
        heartbeat_at=timezone.now())


def test_jobs_are_counted_by_action_and_outcome_with_their_durations(client, metrics_on, demo_pools):
    for seconds in (0.5, 3, 3, 200):
        make_job("reset", Job.SUCCEEDED, seconds)
    make_job("reset", Job.FAILED, 20)
    make_job("delete", Job.CANCELLED, 7200)
    make_job("set_field", Job.RUNNING)
    make_job("set_field", Job.QUEUED)
    families = scrape(client)
    ended = samples(families["picas_jobs_ended"], "action", "outcome", name="picas_jobs_ended_total")
    assert ended == {("reset", "succeeded"): 4, ("reset", "failed"): 1, ("delete", "cancelled"): 1}
    active = samples(families["picas_jobs_active"], "action", "status")
    assert active == {("set_field", "running"): 1, ("set_field", "queued"): 1}
    durations = families["picas_job_duration_seconds"]
    buckets = {(s.labels["action"], s.labels["le"]): s.value for s in durations.samples if s.name.endswith("_bucket")}
    assert buckets[("reset", "1.0")] == 1 and buckets[("reset", "5.0")] == 3 and buckets[("reset", "15.0")] == 3
    assert buckets[("reset", "60.0")] == 4 and buckets[("reset", "300.0")] == 5 and buckets[("reset", "+Inf")] == 5
    assert buckets[("delete", "3600.0")] == 0 and buckets[("delete", "14400.0")] == 1
    sums = samples(durations, "action", name="picas_job_duration_seconds_sum")
    assert sums[("reset",)] == pytest.approx(0.5 + 3 + 3 + 200 + 20) and sums[("delete",)] == pytest.approx(7200)


def test_without_a_bearer_token_metrics_are_refused(client, metrics_on, demo_pools):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer"})
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in response.content.decode()


def test_without_the_setting_no_token_opens_them_but_a_users_own(client, settings, demo_pools):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics").status_code == 401


def test_the_token_may_come_from_a_file(tmp_path):
    (tmp_path / "token").write_text(TOKEN + "\n")
    env = {**os.environ, "DEBUG": "true", "METRICS_TOKEN_FILE": str(tmp_path / "token")}
    env.pop("METRICS_TOKEN", None)
    code = "from dashboard import settings; print(settings.METRICS_TOKEN)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == TOKEN
