"""Pages show the counts they have and leave refreshing to a Celery worker: never a reduce per request."""

import re

import pytest

from tests.api_client import api_as
from tests.conftest import SURF
from tests.waiting import wait_for
from tokens import counting
from tokens.models import CountSnapshot
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db(transaction=True)


def todo_shown(page):
    """The number of todo tokens a pool page shows in its legend."""
    return int(re.search(r'<span class="swatch todo"></span><a [^>]*>[^<]*</a> <strong>(\d+)</strong>', page)[1])


def test_a_stale_snapshot_is_shown_and_refreshed_by_the_worker(viewer_client, settings, demo_pools, couch,
                                                               celery_worker):
    settings.COUNTS_MAX_AGE = 0
    pool = get_pool(SURF)
    counting.refresh(pool)
    db = couch(SURF)
    token = {"_id": "refresh-probe", "type": "token", "lock": 0, "done": 0, "hostname": "", "scrub_count": 0,
             "input": "", "exit_code": "", "output": {}, "uploads": {}, "error": []}
    db.bulk_docs([token])
    try:
        before = CountSnapshot.objects.get(pool=SURF).taken_at
        response = viewer_client.get(f"/pools/{SURF}/")
        assert response.status_code == 200
        shown = todo_shown(response.content.decode())
        # The page answered with the counts it had, and queued a refresh ...
        assert shown == db.total_rows("Monitor", "todo") - 1
        # ... which the worker carries out.
        assert wait_for(lambda: CountSnapshot.objects.get(pool=SURF).taken_at > before)
        after = api_as(viewer_client).get(f"/api/v1/pools/{SURF}").json()["counts"]["todo"]
        assert after == db.total_rows("Monitor", "todo")
        assert todo_shown(viewer_client.get(f"/pools/{SURF}/").content.decode()) == after
    finally:
        db.bulk_docs([{**db.get("refresh-probe"), "_deleted": True}])
        counting.refresh(pool)

