"""The JSON API's reading endpoints answer what the pools hold, page by key, filter like the pages, and refuse bad
input with a JSON 4xx. Every answer is validated against the served OpenAPI schema (tests/api_client.py)."""

import time

import pytest

from tests.api_client import Api, token_for
from tests.conftest import LOFAR, SURF

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(schema, viewer):
    return Api(schema, token_for(viewer))


def walk(api, url, params, key="id"):
    """Every row of a paged list, following `next` to the end: (ids, pages)."""
    ids, after, pages = [], None, 0
    while True:
        data = api.get(url, {**params, **({"after": after} if after else {})}).json()
        ids += [t[key] for t in data["tokens"]]
        pages += 1
        if data["next"] is None:
            return ids, pages
        after = data["next"]


def test_the_schema_is_valid_openapi_and_served_without_a_login(schema):
    from openapi_spec_validator import validate

    validate(schema)
    assert {"/api/v1/pools", "/api/v1/pools/{slug}/tokens", "/api/v1/jobs/{job_id}/cancel"} <= set(schema["paths"])


def test_the_pool_list_has_both_demo_pools_with_their_totals(api, demo_pools):
    pools = {p["slug"]: p for p in api.get("/api/v1/pools").json()["pools"]}
    assert {SURF, LOFAR} <= set(pools)
    assert pools[SURF]["health"] == "ok" and pools[SURF]["total"] == sum(pools[SURF]["counts"].values()) > 0


def test_a_pool_answers_its_counts_per_observation(api, demo_pools, couch):
    data = api.get(f"/api/v1/pools/{SURF}").json()
    assert data["own_views"] and data["observations"]
    assert sum(o["total"] for o in data["observations"]) == data["total"]
    monitor = {r["key"]: r["value"] for r in couch(SURF).view("Monitor", "overview_total", group=True)["rows"]}
    counts = data["counts"]
    assert (counts["todo"], counts["locked"] + counts["locked_unknown"], counts["done"], counts["error"]) == (
        monitor["todo"], monitor["locked"], monitor["done"], monitor["error"])


def test_paging_through_a_state_visits_every_token_once(api, settings, demo_pools, couch):
    ids, pages = walk(api, f"/api/v1/pools/{SURF}/tokens", {"state": "done", "limit": 7})
    assert sorted(ids) == sorted(r["id"] for r in couch(SURF).view("Monitor", "done")["rows"])
    assert len(ids) == len(set(ids)) and pages > 3


@pytest.mark.parametrize("params", [{"state": "done", "limit": 7}, {"state": "done", "q": "token_1", "limit": 5}])
def test_paging_back_with_previous_gives_the_same_pages_in_reverse(api, demo_pools, params):
    url, forward, after = f"/api/v1/pools/{SURF}/tokens", [], None
    while True:
        data = api.get(url, {**params, **({"after": after} if after else {})}).json()
        forward.append([t["id"] for t in data["tokens"]])
        if data["next"] is None:
            break
        after = data["next"]
    assert len(forward) > 2
    backward = [forward[-1]]
    while data["previous"] is not None:
        data = api.get(url, {**params, "before": data["previous"]}).json()
        backward.append([t["id"] for t in data["tokens"]])
    assert sum(backward[::-1], []) == sum(forward, [])  # every token once, in the same order, back to the first
    if "q" not in params:  # unfiltered, the very same pages (filtered ones may be cut elsewhere going back)
        assert backward[::-1] == forward
    assert api.get(url, {**params, "before": "[1"}).status_code == 400


def test_paging_through_a_filtered_list_finds_every_match_once(api, demo_pools, couch):
    done = [r["doc"] for r in couch(SURF).view("Monitor", "done", include_docs=True)["rows"]]
    ids, _pages = walk(api, f"/api/v1/pools/{SURF}/tokens", {"state": "done", "q": "token_1", "limit": 5})
    assert sorted(ids) == sorted(d["_id"] for d in done if "token_1" in d["_id"]) and len(ids) == len(set(ids))
    obsid = next(d["OBSID"] for d in done if d.get("OBSID"))
    ids, _pages = walk(api, f"/api/v1/pools/{SURF}/tokens",
                       {"state": "done", "field": "OBSID", "value": obsid, "limit": 5})
    assert sorted(ids) == sorted(d["_id"] for d in done if d.get("OBSID") == obsid)


def test_a_list_can_be_limited_to_one_observation(api, demo_pools):
    data = api.get(f"/api/v1/pools/{LOFAR}/tokens", {
        "state": "todo", "type": "pref_cal1_L229585", "group": "L229585"}).json()
    assert data["tokens"] and all(t["type"] == "pref_cal1_L229585" for t in data["tokens"])


def test_a_failure_group_lists_exactly_its_tokens(api, demo_pools):
    failures = api.get(f"/api/v1/pools/{SURF}/failures").json()
    group = failures["groups"][0]
    assert sum(g["count"] for g in failures["groups"] + failures["other"]) == failures["total"] > 0
    ids, _pages = walk(api, f"/api/v1/pools/{SURF}/tokens", {"code": group["code"], "message": group["message"],
                                                             "limit": 20})
    assert len(ids) == len(set(ids)) == group["count"]


def test_a_token_answers_in_full_with_its_errors_newest_first(api, demo_pools, couch):
    rows = couch(SURF).view("Monitor", "error", include_docs=True)["rows"]
    doc = next(r["doc"] for r in rows if isinstance(r["doc"].get("error"), list) and len(r["doc"]["error"]) >= 2)
    data = api.get(f"/api/v1/pools/{SURF}/tokens/{doc['_id']}").json()
    assert data["token"] == doc and data["bucket"] == "error"
    assert [e["time"] for e in data["errors"]] == [e["time"] for e in reversed(doc["error"])]


def test_a_token_id_with_slashes_and_spaces_is_found(api, demo_pools, couch):
    db = couch(SURF)
    db.bulk_docs([{"_id": "odd/id with space", "type": "token", "lock": 0, "done": 0}])
    try:
        assert api.get(f"/api/v1/pools/{SURF}/tokens/odd%2Fid%20with%20space").json()["token"]["_id"] == \
            "odd/id with space"
    finally:
        db.bulk_docs([{**db.get("odd/id with space"), "_deleted": True}])


def test_stale_locks_are_those_older_than_the_hours_asked(api, demo_pools, couch):
    now = time.time()
    locked = [r["doc"] for r in couch(SURF).view("Monitor", "locked", include_docs=True)["rows"]]
    expected = {d["_id"] for d in locked if d["lock"] > 1e9 and now - d["lock"] > 24 * 3600}
    data = api.get(f"/api/v1/pools/{SURF}/stale", {"hours": 24}).json()
    assert data["count"] == len(expected) > 0 and data["unknown_count"] > 0
    ids, _pages = walk(api, f"/api/v1/pools/{SURF}/stale", {"hours": 24, "limit": 2})
    assert sorted(ids) == sorted(expected)


@pytest.mark.parametrize("url, params, status, says", [
    ("/api/v1/pools/no-such-pool", {}, 404, "No such pool"),
    ("/api/v1/pools/no-such-pool/tokens", {}, 404, "No such pool"),
    (f"/api/v1/pools/{SURF}/tokens/no-such-token", {}, 404, "No such token"),
    (f"/api/v1/pools/{SURF}/tokens/_design/Monitor", {}, 404, "No such token"),
    (f"/api/v1/pools/{SURF}/tokens/..", {}, 404, "No such token"),
    (f"/api/v1/pools/{SURF}/tokens/a%00b", {}, 422, "NUL"),
    ("/api/v1/pools/not%20a%20slug", {}, 422, "slug"),
    (f"/api/v1/pools/{SURF}/tokens", {"state": "sleeping"}, 422, "state"),
    (f"/api/v1/pools/{SURF}/tokens", {"limit": 0}, 422, "limit"),
    (f"/api/v1/pools/{SURF}/tokens", {"limit": "many"}, 422, "limit"),
    (f"/api/v1/pools/{SURF}/tokens", {"after": "[not json"}, 400, "cursor"),
    (f"/api/v1/pools/{SURF}/tokens", {"after": '[NaN, "x"]'}, 400, "cursor"),
    (f"/api/v1/pools/{SURF}/tokens", {"q": "a\x00b"}, 422, "NUL"),
    (f"/api/v1/pools/{SURF}/stale", {"hours": "nan"}, 422, "hours"),
    (f"/api/v1/pools/{SURF}/stale", {"hours": "-1"}, 422, "hours"),
    (f"/api/v1/pools/{SURF}/stale", {"hours": "inf"}, 422, "hours"),
    ("/api/v1/jobs/99999999", {}, 404, "No such job among those you may see"),
    ("/api/v1/jobs/99999999999999999999999", {}, 422, "job_id"),
    ("/api/v1/jobs", {"status": "sleeping"}, 422, "status"),
    # a parameter given twice is refused, not read as its last value
    (f"/api/v1/pools/{SURF}/tokens", {"state": ["error", "todo"]}, 422, "query.state"),
    (f"/api/v1/pools/{SURF}/failures", {"group": ["a", "b"]}, 422, "query.group"),
    ("/api/v1/jobs", {"limit": [1, 2]}, 422, "query.limit"),
    ("/api/v1/nothing/here", {}, 404, "No API endpoint"),
    ("/api/v1/", {}, 404, "openapi.json"),
])
def test_bad_requests_get_a_json_error_with_a_message(api, demo_pools, url, params, status, says):
    response = api.get(url, params)
    assert response.status_code == status and says in response.json()["detail"], response.json()


def test_a_wrong_method_gets_a_json_405(api, demo_pools):
    response = api.call("delete", "/api/v1/pools")
    assert response.status_code == 405 and response.json()["detail"].startswith("Method not allowed")


def test_couchdb_trouble_is_a_json_502_or_503(api, settings, demo_pools, couch_server):
    settings.COUCHDB_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.COUCHDB_TIMEOUT = 2
    response = api.get(f"/api/v1/pools/{SURF}/tokens/token_1")
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]
    assert "127.0.0.1:9" in response.json()["detail"] and couch_server.password not in response.content.decode()


def test_an_unexpected_failure_is_a_json_500_without_a_traceback(api, demo_pools):
    from django.utils import timezone

    from tokens.models import CountSnapshot

    # A snapshot row that no refresh wrote (say, by a botched manual edit) breaks the pool's answer.
    CountSnapshot.objects.update_or_create(pool=SURF, defaults={"data": {"broken": True}, "taken_at": timezone.now()})
    response = api.get(f"/api/v1/pools/{SURF}")
    assert response.status_code == 500 and response.json() == {"detail": "Internal error; it has been logged."}
