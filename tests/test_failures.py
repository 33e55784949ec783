"""Failures are grouped by exit code and normalised first error line, largest first, and link to their tokens."""

import time

import pytest

from tests.api_client import api_as
from tests.conftest import LOFAR, SURF, surf_token

pytestmark = pytest.mark.django_db


def test_groups_fold_numbers_hosts_paths_and_times(viewer_client, demo_pools):
    data = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/failures").json()
    groups = data["groups"] + data["other"]
    assert sum(g["count"] for g in groups) == data["total"] > 0
    counts = [g["count"] for g in data["groups"]]
    assert counts == sorted(counts, reverse=True)
    messages = " ".join(g["message"] for g in groups)
    assert "srm.grid.sara.nl" not in messages and "2026-" not in messages
    assert "<url>" in messages or "<path>" in messages


def test_the_error_total_equals_the_error_and_legacy_error_buckets(viewer_client, demo_pools):
    pool = api_as(viewer_client).get(f"/api/v1/pools/{SURF}").json()
    failures = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/failures").json()
    assert failures["total"] == pool["counts"]["error"] + pool["counts"]["legacy_error"]


def test_a_group_links_to_exactly_its_tokens(viewer_client, demo_pools):
    group = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/failures").json()["groups"][0]
    data = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens", {
        "code": group["code"], "message": group["message"]}).json()
    assert len(data["tokens"]) == min(group["count"], 50)


def test_grid_lrt_failures_are_grouped_by_output_code(viewer_client, demo_pools):
    data = api_as(viewer_client).get(f"/api/v1/pools/{LOFAR}/failures").json()
    codes = {g["code"] for g in data["groups"] + data["other"]}
    assert codes and codes <= {"20", "21", "22", "96", "97", "98", "99", "1", "3"}


def test_small_groups_are_folded_into_other(viewer_client, settings, demo_pools):
    settings.FAILURE_GROUP_MIN_SHARE = 0.2
    data = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/failures").json()
    assert data["other"] and all(g["count"] / data["total"] < 0.2 for g in data["other"])


def test_html_in_an_error_message_is_not_taken_for_a_path(viewer_client, scratch_pool, settings):
    # The demo carries no markup (a user's first look); this pool has one failure whose message has some.
    now = int(time.time())
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([{**surf_token(1, OBSID="L1"), "lock": now - 5000, "done": now - 4200, "exit_code": 1,
                             "error": [{"time": now - 4200, "message": "<b>bold</b> failure in /tmp/<x>/data"}]}])
    data = api_as(viewer_client).get(f"/api/v1/pools/{scratch_pool.database}/failures").json()
    html_group = next(g for g in data["groups"] + data["other"] if "<b>" in g["message"])
    assert "</b>" in html_group["message"]
