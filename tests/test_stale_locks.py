"""Stale locks: tokens locked longer than N hours, with host and job ids; unknown-age locks apart."""

import re
import time
from html import unescape

import pytest

from tests.api_client import api_as
from tests.conftest import SURF, surf_token

pytestmark = pytest.mark.django_db


def stale(client, slug, **query):
    """The stale-lock page's figures, from its API twin."""
    response = api_as(client).get(f"/api/v1/pools/{slug}/stale", query)
    assert response.status_code == 200, response.json()
    return response.json()


def locked_docs(couch):
    rows = couch(SURF).view("Monitor", "locked", include_docs=True)["rows"]
    return [r["doc"] for r in rows]


def test_it_lists_exactly_the_locks_older_than_the_hours_asked(viewer_client, demo_pools, couch):
    now = time.time()
    expected = {d["_id"] for d in locked_docs(couch) if d["lock"] > 1e9 and now - d["lock"] > 24 * 3600}
    data = stale(viewer_client, SURF, hours=24)
    assert {t["id"] for t in data["tokens"]} == expected and data["count"] == len(expected) > 0
    assert all(t["age_hours"] > 24 and t["hostname"] for t in data["tokens"])
    assert any(t["job_ids"] for t in data["tokens"])


def test_a_smaller_age_finds_the_fresh_locks_too(viewer_client, demo_pools, couch):
    fresh = {d["_id"] for d in locked_docs(couch) if d["lock"] > 1e9}
    data = stale(viewer_client, SURF, hours=0)
    assert {t["id"] for t in data["tokens"]} == fresh


def test_locks_of_unknown_age_are_listed_apart(viewer_client, demo_pools, couch):
    unknown = {d["_id"] for d in locked_docs(couch) if d["lock"] < 1e9}
    data = stale(viewer_client, SURF)
    assert {t["id"] for t in data["unknown"]} == unknown and data["unknown_count"] == len(unknown) > 0


@pytest.mark.parametrize("hours", ["lots", "nan", "inf", "-1", "1e7"])
def test_a_bad_hours_value_is_refused_as_the_api_refuses_it_and_stays_in_the_form(viewer_client, demo_pools, hours):
    page = viewer_client.get(f"/pools/{SURF}/stale/", {"hours": hours})
    html = page.content.decode()
    assert page.status_code == 400 and "Hours must be a number from 0 to 1,000,000" in html
    assert f'name="hours" value="{hours}"' in html  # what was typed, to mend
    assert "Reset these" not in html
    as_json = viewer_client.get(f"/pools/{SURF}/stale/", {"hours": hours, "format": "json"})
    assert as_json.status_code == 406 and "/api/v1/" in as_json.json()["error"]  # pages answer HTML only
    refused = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/stale", {"hours": hours})
    assert refused.status_code == 422 and refused.json()["errors"][0]["loc"][-1] == "hours"


def test_every_lock_the_locked_view_counts_is_on_the_stale_page(viewer_client, scratch_pool):
    """A lock the locked view counts (lock > 0 && done == 0, JavaScript's coercions) is stale or of unknown age:
    a time as text or in a list is a time; true, [5], "5" and fractions are locks of unknown age."""
    old = int(time.time()) - 30 * 3600
    times = {"as_number": old, "as_text": str(old), "in_a_list": [old], "fraction": old + 0.5}
    unknown = {"true": True, "list_of_five": [5], "five_as_text": "5", "small_fraction": 0.25, "one": 1}
    scratch_pool.bulk_docs([surf_token(n, _id=f"lock_{name}", lock=lock)
                            for n, (name, lock) in enumerate({**times, **unknown}.items())])
    data = stale(viewer_client, scratch_pool.database, hours=24)
    assert {t["id"] for t in data["tokens"]} == {f"lock_{n}" for n in times} and data["count"] == len(times)
    assert all(29.9 < t["age_hours"] < 30.1 for t in data["tokens"])
    assert {t["id"] for t in data["unknown"]} == {f"lock_{n}" for n in unknown} == set(
        t["id"] for t in data["unknown"] if t["age_hours"] is None)
    page = viewer_client.get(f"/pools/{scratch_pool.database}/stale/", {"hours": 24}).content.decode()
    assert all(f"lock_{name}" in page for name in {**times, **unknown})


def test_an_age_beyond_every_timestamp_finds_no_stale_lock_and_is_no_error(viewer_client, scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=int(time.time()) - 3600)])
    data = stale(viewer_client, scratch_pool.database, hours=600000)
    assert data["count"] == 0 and data["tokens"] == []


def test_one_stale_lock_is_said_in_the_singular(operator_client, scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=int(time.time()) - 30 * 3600)])
    html = operator_client.get(f"/pools/{scratch_pool.database}/stale/", {"hours": 24}).content.decode()
    assert "1 token locked longer than 24 hours" in html and "Reset this stale lock…" in html
    html = operator_client.get(f"/pools/{scratch_pool.database}/stale/", {"hours": 1}).content.decode()
    assert "1 token locked longer than 1 hour," in html


def test_locks_of_unknown_age_get_a_reset_whose_dry_run_selects_exactly_them(operator_client, scratch_pool):
    scratch_pool.bulk_docs([surf_token(1, lock=True), surf_token(2, lock="5"), surf_token(3, lock=1, status="running"),
                            surf_token(4, lock=int(time.time()) - 30 * 3600), surf_token(5)])
    slug = scratch_pool.database
    html = operator_client.get(f"/pools/{slug}/stale/", {"hours": 24}).content.decode()
    assert "Reset these 3 locks of unknown age…" in html
    assert html.count('<td class="num" data-label="Age">unknown</td>') == 3
    link = html.split("Reset these 3 locks of unknown age")[0].rsplit('href="', 1)[1].split('"')[0]
    preview = operator_client.get(unescape(link)).content.decode()
    assert "this would reset / retry <strong>3</strong> tokens" in preview
    sample = re.findall(r'<li><a href="[^"]*">([^<]*)</a></li>', preview.split('<ul class="ids">')[1].split("</ul>")[0])
    assert set(sample) == {"token_00001", "token_00002", "token_00003"}
