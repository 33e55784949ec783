"""The search box: a token id or its start, an observation, a host, a job, a user, text in a token's fields and
field:value, across the pools the user may see; the page and the API answer the same, and refuse alike."""

import json

import pytest
from django.test import Client

from dashboard.models import PoolRole
from dashboard.roles import OPERATORS, VIEWERS
from tests.api_client import api_as
from tests.conftest import LOFAR, SURF, make_user
from tokens import counting, operations
from tokens.pools import all_pools
from tokens.search import MOST, field_text, natural
from tokens.selections import Selection
from tokens.states import classify, style_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def counted(demo_pools):
    """Both demo pools counted once: their table of states and hosts filled, as any page visit does."""
    for pool in all_pools():
        counting.refresh(pool)


def found(client, q):
    answer = api_as(client).get("/api/v1/search", {"q": q})
    assert answer.status_code == 200, answer.content
    return answer.json()


def documents(couch, database):
    rows = couch(database).call(couch(database).client.post_all_docs, db=database, include_docs=True)["rows"]
    return {r["id"]: r["doc"] for r in rows if not r["id"].startswith("_design/")}


def test_the_start_of_a_token_id_finds_those_tokens_in_every_pool_with_the_state_the_documents_give(
        viewer_client, counted, couch):
    docs = documents(couch, SURF)
    assert "token_1" in docs and "token_127" in docs
    data = found(viewer_client, "token_1")
    tokens = [m for m in data["matches"] if m["kind"] == "token"]
    first = sorted(i for i in docs if i.startswith("token_1"))[:MOST]  # the index's first, in its order
    assert sorted(m["label"] for m in tokens) == first and {m["pool"] for m in tokens} == {SURF}
    labels = [m["label"] for m in tokens]
    assert labels == sorted(first, key=lambda i: (i != "token_1", natural(i)))  # the exact one, then as people count
    assert labels.index("token_11") < labels.index("token_100")
    styles = counting.snapshot(next(p for p in all_pools() if p.slug == SURF)).data["types"]
    for m in tokens:
        assert m["state"] == classify(docs[m["label"]], style_of(docs[m["label"]], styles))
    assert viewer_client.get(tokens[0]["url"]).status_code == 200  # the token's own page

    exact = found(viewer_client, "token_24")["matches"][0]
    assert (exact["kind"], exact["label"], exact["pool"]) == ("token", "token_24", SURF)


def test_an_observation_a_host_a_job_and_a_user_are_found_by_name_and_lead_to_their_pages(
        operator_client, counted, demo_pools):
    pool = next(p for p in all_pools() if p.slug == LOFAR)
    observations = [m for m in found(operator_client, "229585")["matches"] if m["kind"] == "observation"]
    assert LOFAR in {m["pool"] for m in observations} and all("229585" in m["label"] for m in observations)
    assert "done" in observations[0]["detail"]
    assert operator_client.get(observations[0]["url"]).status_code == 200

    hosts = [m for m in found(operator_client, "snellius")["matches"] if m["kind"] == "host"]
    assert hosts and all("snellius" in m["label"] for m in hosts)
    assert operator_client.get(hosts[0]["url"]).status_code == 200

    from django.contrib.auth.models import User

    job = operations.create_job(pool, User.objects.get(username="olga"), "reset", Selection("state", bucket="error"),
                                {}, confirmation="999999")
    for q in (str(job.pk), f"#{job.pk}"):
        jobs = [m for m in found(operator_client, q)["matches"] if m["kind"] == "job"]
        assert [m["label"] for m in jobs] == [f"Job {job.pk}"]
        assert operator_client.get(jobs[0]["url"]).status_code == 200
    people = [m for m in found(operator_client, "olg")["matches"] if m["kind"] == "user"]
    assert [(m["label"], m["detail"]) for m in people] == [("olga", "1 job")]
    assert b"olga" in operator_client.get(people[0]["url"]).content


def test_a_surl_or_a_file_name_is_found_in_the_tokens_fields(viewer_client, counted, couch):
    # A subband's measurement set as the demo's workers write it in a token's output: the truth from the documents.
    docs = {**{(SURF, i): d for i, d in documents(couch, SURF).items()},
            **{(LOFAR, i): d for i, d in documents(couch, LOFAR).items()}}
    name = next(d["output"]["ms"] for d in docs.values() if isinstance(d.get("output"), dict) and
                d["output"].get("ms"))
    holding = {key for key, d in docs.items()
               if any(name.lower() in field_text(v).lower() for k, v in d.items() if not k.startswith("_"))}
    data = found(viewer_client, name)
    tokens = {(m["pool"], m["label"]) for m in data["matches"] if m["kind"] == "token"}
    assert tokens == holding if len(holding) <= MOST else tokens < holding and len(tokens) == MOST
    assert all(name.lower() in m["detail"].lower() for m in data["matches"] if m["kind"] == "token")


def test_field_value_looks_in_that_field_and_says_when_it_read_only_part_of_a_pool(viewer_client, counted, couch,
                                                                                   settings):
    docs = documents(couch, SURF)
    codes = sorted({field_text(d.get("exit_code")) for d in docs.values() if d.get("exit_code") not in ("", None)})
    code = codes[0]
    data = found(viewer_client, f"exit_code:{code}")
    assert data["field"] == "exit_code" and not data["notes"]  # the demo pools are smaller than the bound
    labels = {m["label"] for m in data["matches"] if m["pool"] == SURF}
    holding = {i for i, d in docs.items() if code in field_text(d.get("exit_code"))}
    assert labels and labels <= holding and len(labels) == min(len(holding), MOST)

    settings.SEARCH_SCAN_MOST = 50
    data = found(viewer_client, f"exit_code:{code}")
    note = " ".join(data["notes"])
    assert "No index holds field 'exit_code'" in note and "(50 of " in note
    assert len([m for m in data["matches"] if m["pool"] == SURF]) <= 50


def test_a_user_finds_nothing_in_a_pool_they_may_not_see(counted):
    user = make_user("lena", VIEWERS)
    user.groups.clear()
    PoolRole.objects.create(user=user, pool=LOFAR, role="viewer")
    client = Client()
    client.force_login(user)
    data = found(client, "L229585")  # an observation of both demo pools
    assert data["matches"] and {m["pool"] for m in data["matches"]} == {LOFAR}


@pytest.mark.parametrize("q, says", [
    ("", "Type what to look for"),
    (" ", "Type what to look for"),
    ("x" * 600, "at most 500 characters"),
    ("a\x00b", "without NUL"),
    ("OBSID:", "Give a value after OBSID:"),
])
def test_a_query_that_cannot_be_searched_is_refused_alike_by_page_and_api_keeping_what_was_typed(
        viewer_client, counted, q, says):
    answer = api_as(viewer_client).get("/api/v1/search", {"q": q})
    if "\x00" in q:
        assert answer.status_code == 422  # the API's text never holds NUL (every text parameter)
    else:
        assert answer.status_code == 400 and says in answer.json()["detail"], answer.content
    page = viewer_client.get("/search/", {"q": q})
    if "\x00" in q:
        assert page.status_code == 400  # refused before any view, as every page refuses NUL
    elif q.strip():
        assert page.status_code == 400
        body = page.content.decode()
        assert says in body and f'value="{q[:50]}' in body.replace("&#x27;", "'")  # kept in the box
    else:
        assert page.status_code == 200  # the box alone, with its examples


def test_the_page_groups_matches_by_kind_and_links_each_and_an_empty_answer_says_what_to_try(viewer_client, counted):
    body = viewer_client.get("/search/", {"q": "token_2"}).content.decode()
    assert "<h2>Tokens" in body and f"/pools/{SURF}/token/?id=token_2\"" in body
    assert "the first 20: type more to narrow" in body
    body = viewer_client.get("/search/", {"q": "no-such-thing-anywhere"}).content.decode()
    assert "Nothing found for “no-such-thing-anywhere”" in body
    assert "None" not in body.split("<main>")[1]


def test_in_a_browser_the_headers_box_finds_a_token_and_leads_to_its_page(live_server, counted, open_page):
    from tests.browsing import WIDTHS, log_in, overflow, shoot

    make_user("olga", OPERATORS)
    for width in WIDTHS:
        page = open_page(width)
        log_in(page, live_server.url, "olga")
        box = page.get_by_role("searchbox", name="Search every pool")
        box.fill("token_24")
        box.press("Enter")
        page.wait_for_url("**/search/?q=token_24")
        assert overflow(page) <= 1
        shoot(page, f"search-{width}")
        page.locator("ul.matches").get_by_role("link", name="token_24", exact=True).click()
        page.wait_for_url("**/token/?id=token_24")
        assert "token_24" in page.locator("h1").inner_text()
        page.goto(f"{live_server.url}/search/?q={json.dumps('L229585')[1:-1]}")
        assert "Observations" in page.locator("main").inner_text()
        assert overflow(page) <= 1
        shoot(page, f"search-observation-{width}")
