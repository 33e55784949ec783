"""Pages show the counts they have and leave refreshing to a Celery worker: never a reduce per request."""


import pytest

from tests.conftest import SURF
from tests.waiting import wait_for
from tokens import counting
from tokens.models import CountSnapshot
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db(transaction=True)


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
        shown = viewer_client.get(f"/pools/{SURF}/", {"format": "json"}).json()["counts"]["todo"]
        # The page answered with the counts it had, and queued a refresh ...
        assert shown == db.total_rows("Monitor", "todo") - 1
        # ... which the worker carries out.
        assert wait_for(lambda: CountSnapshot.objects.get(pool=SURF).taken_at > before)
        after = viewer_client.get(f"/pools/{SURF}/", {"format": "json"}).json()["counts"]["todo"]
        assert after == db.total_rows("Monitor", "todo")
    finally:
        db.bulk_docs([{**db.get("refresh-probe"), "_deleted": True}])
        counting.refresh(pool)

