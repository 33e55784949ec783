"""Stale locks: tokens locked longer than N hours, with host and job ids; unknown-age locks apart."""

import time

import pytest

from tests.conftest import SURF

pytestmark = pytest.mark.django_db


def locked_docs(couch):
    rows = couch(SURF).view("Monitor", "locked", include_docs=True)["rows"]
    return [r["doc"] for r in rows]


def test_it_lists_exactly_the_locks_older_than_the_hours_asked(viewer_client, demo_pools, couch):
    now = time.time()
    expected = {d["_id"] for d in locked_docs(couch) if d["lock"] > 1e9 and now - d["lock"] > 24 * 3600}
    data = viewer_client.get(f"/pools/{SURF}/stale/", {"hours": 24, "format": "json"}).json()
    assert {t["id"] for t in data["tokens"]} == expected and data["count"] == len(expected) > 0
    assert all(t["age_hours"] > 24 and t["hostname"] for t in data["tokens"])
    assert any(t["job_ids"] for t in data["tokens"])


def test_a_smaller_age_finds_the_fresh_locks_too(viewer_client, demo_pools, couch):
    fresh = {d["_id"] for d in locked_docs(couch) if d["lock"] > 1e9}
    data = viewer_client.get(f"/pools/{SURF}/stale/", {"hours": 0, "format": "json"}).json()
    assert {t["id"] for t in data["tokens"]} == fresh


def test_locks_of_unknown_age_are_listed_apart(viewer_client, demo_pools, couch):
    unknown = {d["_id"] for d in locked_docs(couch) if d["lock"] < 1e9}
    data = viewer_client.get(f"/pools/{SURF}/stale/", {"format": "json"}).json()
    assert {t["id"] for t in data["unknown"]} == unknown and data["unknown_count"] == len(unknown) > 0


def test_a_bad_hours_value_falls_back_to_the_default(viewer_client, demo_pools):
    assert viewer_client.get(f"/pools/{SURF}/stale/", {"hours": "lots", "format": "json"}).json()["hours"] == 24
