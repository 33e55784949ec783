"""Polled pages only read when there is nothing to do: on SQLite every write, even an UPDATE of no rows, waits for
the one writer (a job's batch, a refill of the counts), and fifty viewers poll the pool and job pages."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.api_client import api_as
from tests.conftest import SURF
from tokens import counting, history
from tokens.models import CountSnapshot, Job
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db


def writes(queries):
    return [q["sql"] for q in queries if q["sql"].lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]


def test_a_polled_pool_page_writes_nothing_while_a_refresh_is_already_in_flight(viewer_client, settings, demo_pools):
    # (Claiming a refresh when none is in flight is tested with a real worker in test_background_refresh.py.)
    settings.COUNTS_MAX_AGE = 0
    pool = get_pool(SURF)
    counting.refresh(pool)
    history.refresh(pool)
    CountSnapshot.objects.filter(pool=SURF).update(refresh_requested_at=timezone.now())
    for headers in ({}, {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "observations"}):
        with CaptureQueriesContext(connection) as queries:
            response = viewer_client.get(f"/pools/{SURF}/", **headers)
        assert response.status_code == 200
        assert writes(queries.captured_queries) == []


def test_a_polled_job_page_writes_nothing_while_its_job_runs_and_reports(viewer_client):
    now = timezone.now()
    job = Job.objects.create(pool=SURF, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=10, status=Job.RUNNING, started_at=now, heartbeat_at=now, enqueued_at=now)
    api = api_as(viewer_client)
    # The page, its htmx poll of the progress, and its API twin (what scripts poll).
    for get, url, headers in ((viewer_client.get, f"/jobs/{job.pk}/", {}),
                              (viewer_client.get, f"/jobs/{job.pk}/", {"HX-Request": "true", "HX-Target": "progress"}),
                              (api.get, f"/api/v1/jobs/{job.pk}", {})):
        with CaptureQueriesContext(connection) as queries:
            response = get(url, headers=headers)
        assert response.status_code == 200
        assert writes(queries.captured_queries) == []
    assert Job.objects.get(pk=job.pk).status == Job.RUNNING


def test_a_polled_job_page_still_marks_a_silent_job_interrupted(viewer_client, settings):
    long_ago = timezone.now() - timezone.timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT + 60)
    job = Job.objects.create(pool=SURF, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=10, status=Job.RUNNING, started_at=long_ago, heartbeat_at=long_ago,
                             enqueued_at=long_ago)
    response = viewer_client.get(f"/jobs/{job.pk}/")
    assert response.status_code == 200 and 'class="status interrupted"' in response.content.decode()
    assert Job.objects.get(pk=job.pk).status == Job.INTERRUPTED
    assert api_as(viewer_client).get(f"/api/v1/jobs/{job.pk}").json()["status"] == Job.INTERRUPTED
