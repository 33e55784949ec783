"""A pool as LOFAR's GRID_LRT 1.0.7 makes it (its own TokenList, caToken, TokenDictBuilder, add_token_views,
add_attachment and Token.reset), worked by GRID_PiCaS_Launcher-like pilots, with every overlap of its views:
status "error" or "done" on a token that a picas-style reset put back in todo, and on a token a pilot still holds.
Each token is counted once, in the bucket that says what the pilots do with it next; the other view is named beside
it; GRID_LRT's steps and its own overview figures are shown; the buckets add up to the documents."""

import uuid

import pytest

from tests.api_client import api_as
from tests.conftest import delete_database, index_own_views
from tests.grid_lrt import every_overlap
from tokens import counting, reading
from tokens.models import CountSnapshot
from tokens.pools import all_pools

pytestmark = pytest.mark.django_db(transaction=True)

TYPE, OBSID = "pref_cal1_L229585", "L229585"


def view_ids(couch, view):
    return {r["id"] for r in couch.view(TYPE, view, reduce=False)["rows"]}


@pytest.fixture
def lrt_pool(couch_server, couch, settings, tmp_path):
    name = "lrt-" + uuid.uuid4().hex[:8]
    own = couch(name)
    own.create_database()
    settings.COUCHDB_DATABASES = [name]
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    client = every_overlap(couch_server, name, TYPE, OBSID, tmp_path)
    index_own_views(own, "OBSID")
    counting.refresh(all_pools()[0])
    yield own
    client.disconnect()
    delete_database(own)


def test_a_token_in_two_grid_lrt_views_is_counted_once_where_the_pilots_take_it_next(lrt_pool, operator_client):
    views = {v: view_ids(lrt_pool, v) for v in ("todo", "locked", "done", "error")}
    documents = {r["id"] for r in lrt_pool.call(lrt_pool.client.post_all_docs, db=lrt_pool.database)["rows"]
                 if not r["id"].startswith("_design/")}
    assert len(documents) == 40
    # GRID_LRT's views overlap: each overlap is there, as its own views list it.
    assert len(views["todo"] & views["error"]) == 3 and len(views["todo"] & views["done"]) == 2
    assert len(views["locked"] & views["error"]) == 2 and len(views["locked"] & views["done"]) == 1
    added_up = sum(len(ids) for ids in views.values())
    assert added_up == 48  # the four views added up count 8 tokens twice

    (o,) = reading.observations(CountSnapshot.objects.get(pool=lrt_pool.database).data)
    taken = views["todo"] | views["locked"]
    assert o.counts["todo"] == len(views["todo"]) == 12 + 3 + 2 + 1
    assert o.counts["locked"] == len(views["locked"]) == 2 + 2 + 2 + 1 + 2 + 1
    assert o.counts["error"] == len(views["error"] - taken) and o.counts["done"] == len(views["done"] - taken)
    assert o.total == len(documents) == 40  # every token once
    assert o.overlaps == {("todo", "error"): 3, ("todo", "done"): 2, ("locked", "error"): 2, ("locked", "done"): 1}
    assert o.stages == {"waiting": 2, "downloading": 2, "running": 2 + 1 + 2 + 1}

    # The observation page says it, and shows GRID_LRT's own overview beside the dashboard's counts.
    query = {"type": TYPE, "group": OBSID}
    page = operator_client.get(f"/pools/{lrt_pool.database}/obs/", query).content.decode()
    assert "3 todo tokens: also in the workers&#x27; error view; the pilots will take them again" in page
    assert "1 locked token: also in the workers&#x27; done view; a pilot still holds it" in page
    assert "2 waiting (launched) · 2 downloading · 6 running" in page
    answer = api_as(operator_client).get(f"/api/v1/pools/{lrt_pool.database}/observation", query).json()
    theirs = {r["key"]: r["value"] for r in lrt_pool.view(TYPE, "overview_view", group=True)["rows"]}
    assert {k: answer["grid_lrt_overview"][k] for k in theirs} == theirs
    assert theirs["running"] == 2 + 6 and answer["stages"] == {"waiting": 2, "downloading": 2, "running": 6}
    assert {(a["counted_as"], "+".join(a["also_in"])): a["count"] for a in answer["also_in"]} == o.overlaps
    # GRID_LRT's overview counts the 2 held tokens that reported exit code 21 as error too; the page says why.
    assert theirs["error"] == o.counts["error"] + 2
    assert "GRID_LRT&#x27;s overview counts every held token whose output is not 0" in page

    # A list and a token page name the other view; the API's list and pool say the same.
    todo = operator_client.get(f"/pools/{lrt_pool.database}/tokens/", {**query, "state": "todo"}).content.decode()
    assert todo.count('title="Also in the workers&#x27; error view; the pilots will take it again') == 3
    reset_by_picas = sorted(views["todo"] & views["error"])[0]
    token = operator_client.get(f"/pools/{lrt_pool.database}/token/", {"id": reset_by_picas}).content.decode()
    assert "Also in the workers&#x27; error view; the pilots will take it again" in token
    assert "srm.txt" in lrt_pool.get(reset_by_picas)["_attachments"] and "srm.txt" in token  # GRID_LRT attached it
    api = api_as(operator_client).get(f"/api/v1/pools/{lrt_pool.database}").json()
    assert api["observations"][0]["stages"] == answer["stages"] and api["total"] == 40


def test_with_the_workers_views_only_each_token_is_still_counted_once_and_listed_once(lrt_pool, operator_client,
                                                                                       settings):
    with_own = reading.observations(CountSnapshot.objects.get(pool=lrt_pool.database).data)[0].counts
    own = lrt_pool.get("_design/picas-dashboard")
    lrt_pool.call(lrt_pool.client.delete_design_document, db=lrt_pool.database, ddoc="picas-dashboard",
                  rev=own["_rev"])
    settings.COUCHDB_CREATE_VIEWS = False
    data = counting.refresh(all_pools()[0]).data
    assert data["own_views"] is False
    (o,) = reading.observations(data)
    assert o.counts == with_own and o.total == 40  # GRID_LRT's four views add up to 48
    # A list reads the worker view and keeps the tokens of its bucket: the overlaps are listed where they count.
    views = {v: view_ids(lrt_pool, v) for v in ("todo", "locked", "error")}
    query = {"type": TYPE, "group": OBSID}
    api = api_as(operator_client)
    listed = {state: {t["id"] for t in api.get(f"/api/v1/pools/{lrt_pool.database}/tokens",
                                               {**query, "state": state}).json()["tokens"]}
              for state in ("todo", "error")}
    assert listed["todo"] == views["todo"]
    assert listed["error"] == views["error"] - views["todo"] - views["locked"] and len(listed["error"]) == 4
