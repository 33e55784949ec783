"""First counts on a pool whose index the server is still building: from the documents themselves, at once, with
the page saying so; exact, and the same as the view gives once it is built."""

import time

import pytest

from tests.api_client import api_as
from tests.conftest import surf_token
from tokens import counting
from tokens.pools import get_pool
from tokens.states import OWN_DDOC, OWN_VIEW_NAMES

pytestmark = pytest.mark.django_db

NOW = int(time.time())
BEING_INDEXED = "Counted from the documents themselves: the server is"


def pool_api(client, slug):
    """The pool page's figures, from its API twin."""
    response = api_as(client).get(f"/api/v1/pools/{slug}")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.fixture
def big_new_pool(scratch_pool, settings):
    docs = [surf_token(n) for n in range(4_000)]
    docs += [surf_token(n, lock=NOW - 900, done=NOW - 60, exit_code=0) for n in range(4_000, 8_000)]
    docs += [surf_token(n, lock=NOW - 900, done=NOW - 60, exit_code=1, OBSID="L1") for n in range(8_000, 12_000)]
    for start in range(0, len(docs), 5000):
        scratch_pool.bulk_docs(docs[start:start + 5000])
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    return scratch_pool


def test_a_pool_being_indexed_is_counted_from_its_documents_and_says_so(viewer_client, big_new_pool, settings):
    settings.COUNTS_INDEX_WAIT = 0.2  # far less than any server takes to index 12,000 tokens
    settings.COUNTS_MAX_AGE = 3600  # the pages show the counts taken here, not a later refill from the built view
    data = counting.refresh(get_pool(big_new_pool.database)).data
    assert data["indexing"]["views"] == ["states", "failures", "locks", "progress"]  # progress: a GRID_LRT type
    page = pool_api(viewer_client, big_new_pool.database)
    assert {k: v for k, v in page["counts"].items() if v} == {"todo": 4_000, "done": 4_000, "error": 4_000}
    assert page["indexing"]["views"] == ["states", "failures", "locks", "progress"]
    html = viewer_client.get(f"/pools/{big_new_pool.database}/").content.decode()
    assert BEING_INDEXED in html

    # Once the index is built, a recount from the view gives the same counts and the note is gone.
    big_new_pool.view(OWN_DDOC, "states", limit=0, reduce=False, timeout=600)
    big_new_pool.view(OWN_DDOC, "failures", limit=0, reduce=False, timeout=600)
    settings.COUNTS_INDEX_WAIT = 600
    data = counting.recount(get_pool(big_new_pool.database)).data
    assert "indexing" not in data and data["failures"]
    again = pool_api(viewer_client, big_new_pool.database)
    assert again["counts"] == page["counts"]
    assert again["indexing"] is None
    assert BEING_INDEXED not in viewer_client.get(f"/pools/{big_new_pool.database}/").content.decode()


def test_a_chart_taken_before_the_pools_past_was_read_is_taken_again_once_it_has_been(viewer_client, big_new_pool,
                                                                                      settings):
    """The first page of a pool being indexed charts what the events hold so far (nothing of the past); once the
    index is built and the past read, the next page charts it, without waiting CHART_MAX_AGE."""
    settings.COUNTS_INDEX_WAIT, settings.COUNTS_MAX_AGE, settings.CHART_MAX_AGE = 0.2, 3600, 3600
    pool = get_pool(big_new_pool.database)
    counting.refresh(pool)
    first = pool_api(viewer_client, pool.slug)["hourly"]
    assert sum(first["done"]) == 0
    for view in OWN_VIEW_NAMES:
        big_new_pool.with_timeout(600).view(OWN_DDOC, view, limit=0, reduce=False)
    deadline = time.monotonic() + 120
    while not counting.refresh(pool).data.get("events_backfilled") and time.monotonic() < deadline:
        time.sleep(0.5)  # every index built: a refresh reads the pool's past (the backfill)
    later = pool_api(viewer_client, pool.slug)["hourly"]
    assert (sum(later["done"]), sum(later["error_counts"])) == (4_000, 4_000)
