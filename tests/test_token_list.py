"""Token lists are paged by key and filter on id and on fields."""

import pytest

from tests.api_client import api_as
from tests.conftest import LOFAR, SURF

pytestmark = pytest.mark.django_db


def listed(client, slug, **query):
    """A token list's figures, from its API twin."""
    response = api_as(client).get(f"/api/v1/pools/{slug}/tokens", query)
    assert response.status_code == 200, response.content
    return response.json()


def walk(client, slug, params):
    """Every token id of a list, following its next links."""
    ids, after, pages = [], "", 0
    while True:
        data = listed(client, slug, **params, **({"after": after} if after else {}))
        ids += [t["id"] for t in data["tokens"]]
        pages += 1
        if not data["next"]:
            return ids, pages
        after = data["next"]


def test_paging_through_a_state_visits_every_token_once(viewer_client, settings, demo_pools, couch):
    settings.PAGE_SIZE = 7
    ids, pages = walk(viewer_client, SURF, {"state": "done"})
    monitor_done = couch(SURF).view("Monitor", "done")["rows"]
    assert sorted(ids) == sorted(r["id"] for r in monitor_done)
    assert len(ids) == len(set(ids)) and pages > 3


def test_a_list_can_be_limited_to_one_observation(viewer_client, demo_pools):
    data = listed(viewer_client, LOFAR, state="todo", type="pref_cal1_L229585", group="L229585")
    assert data["tokens"] and all(t["type"] == "pref_cal1_L229585" for t in data["tokens"])


def test_the_id_filter_keeps_matching_tokens(viewer_client, demo_pools):
    data = listed(viewer_client, SURF, state="done", q="token_1")
    assert data["tokens"] and all("token_1" in t["id"] for t in data["tokens"])


def test_the_field_filter_keeps_tokens_whose_field_equals_the_value(viewer_client, demo_pools):
    data = listed(viewer_client, SURF, state="done", field="OBSID", value="L230001")
    assert data["tokens"]
    ids = {t["id"] for t in data["tokens"]}
    other = listed(viewer_client, SURF, state="done", field="OBSID", value="L231777")
    assert ids.isdisjoint(t["id"] for t in other["tokens"])


def test_out_of_view_buckets_have_their_own_lists(viewer_client, demo_pools):
    for bucket in ("legacy_error", "done_unlocked", "locked_unknown"):
        data = listed(viewer_client, SURF, state=bucket)
        assert data["tokens"], bucket


def test_a_malformed_cursor_starts_from_the_beginning(viewer_client, demo_pools):
    import re

    response = viewer_client.get(f"/pools/{SURF}/tokens/", {"state": "done", "after": "[not json"})
    assert response.status_code == 200
    page = response.content.decode()
    first = viewer_client.get(f"/pools/{SURF}/tokens/", {"state": "done"}).content.decode()
    assert re.search(r"Tokens 1–\d+ of \d+", page)
    ids = re.findall(r'token/\?id=([^"]+)"', page)
    assert ids and ids == re.findall(r'token/\?id=([^"]+)"', first)  # the first page
    # The API refuses it: a script passes back the cursor it was given.
    refused = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens", {"state": "done", "after": "[not json"})
    assert refused.status_code == 400 and refused.json()["detail"].startswith("Malformed cursor `after`")


@pytest.mark.parametrize("state", ["bogus", "TODO", "error "])
def test_an_unknown_state_is_refused_as_the_api_refuses_it(viewer_client, demo_pools, state):
    page = viewer_client.get(f"/pools/{SURF}/tokens/", {"state": state})
    assert page.status_code == 400
    assert f"Unknown state &#x27;{state}&#x27;: one of todo, locked, done, error" in page.content.decode()
    # A page asked for JSON still answers its HTML refusal; the JSON one is the API's.
    asked_json = viewer_client.get(f"/pools/{SURF}/tokens/", {"state": state}, headers={"Accept": "application/json"})
    assert asked_json.status_code == 400 and asked_json["Content-Type"].startswith("text/html")
    assert f"Unknown state &#x27;{state}&#x27;: one of todo, locked, done, error" in asked_json.content.decode()
    assert viewer_client.get(f"/api/v1/pools/{SURF}/tokens", {"state": state}).status_code == 422


def test_a_list_says_which_tokens_of_how_many_it_shows_and_pages_back_to_the_start(viewer_client, settings,
                                                                                    demo_pools):
    import html
    import re

    settings.PAGE_SIZE = 7
    url = f"/pools/{SURF}/tokens/"
    total = api_as(viewer_client).get(f"/api/v1/pools/{SURF}").json()["counts"]["done"]

    def visit(query):
        page = viewer_client.get(url + query).content.decode()
        ids = re.findall(r'name="ids" value="([^"]+)"', page) or re.findall(r'token/\?id=([^"]+)"', page)
        shown = re.search(r"Tokens (\d+)–(\d+) of (\d+)", page).groups()
        links = {label: html.unescape(href) for href, label in
                 re.findall(r'<a class="button" href="(\?[^"]+)">(← Previous page|Next page →)</a>', page)}
        return ids, tuple(map(int, shown)), links

    forward, query = [], "?state=done"
    while True:
        ids, shown, links = visit(query)
        forward.append((ids, shown))
        if "Next page →" not in links:
            break
        query = links["Next page →"]
    assert len(forward) > 3 and forward[0][1] == (1, 7, total) and forward[-1][1][1] == total
    assert [s for _ids, s in forward] == [(1 + 7 * n, min(7 * n + 7, total), total) for n in range(len(forward))]
    backward = [forward[-1]]
    while "← Previous page" in links:
        ids, shown, links = visit(links["← Previous page"])
        backward.append((ids, shown))
    assert backward[::-1] == forward  # the same pages, the same ranges, back to the first (which has no way back)
