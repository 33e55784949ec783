"""Reading never modifies a pool: every document keeps its _rev, the workers' design documents included."""

from urllib.parse import quote

import pytest
from django.urls import reverse

from tests.api_client import api_as
from tests.conftest import LOFAR, RUN, SURF
from tokens import counting
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db


def revisions(db):
    rows = db.call(db.client.post_all_docs, db=db.database)["rows"]
    return {r["id"]: r["value"]["rev"] for r in rows}


def test_reading_every_page_changes_no_revision(viewer_client, demo_pools, couch):
    for database in (SURF, LOFAR):
        counting.refresh(get_pool(database))  # may create the dashboard's own design document once
        before = revisions(couch(database))
        api = api_as(viewer_client)
        token_id = next(i for i in before if not i.startswith("_design/"))
        for name, twin in (("pool", ""), ("tokens", "/tokens"), ("failures", "/failures"), ("stale", "/stale")):
            assert viewer_client.get(reverse(name, kwargs={"slug": database})).status_code == 200, name
            assert api.get(f"/api/v1/pools/{database}{twin}").status_code == 200, twin
        assert viewer_client.get(reverse("token", kwargs={"slug": database}), {"id": token_id}).status_code == 200
        assert api.get(f"/api/v1/pools/{database}/tokens/{quote(token_id, safe='')}").status_code == 200
        counting.refresh(get_pool(database))
        assert revisions(couch(database)) == before


def test_the_workers_design_documents_are_never_written(demo_pools, couch, settings):
    for database in (SURF, LOFAR):
        db = couch(database)
        workers = {d["_id"]: d for d in db.design_docs() if d["_id"] != "_design/picas-dashboard"}
        settings.COUCHDB_GROUP_FIELD = "cores"  # our own design document changes; theirs must not
        counting.refresh(get_pool(database))
        assert {d["_id"]: d for d in db.design_docs() if d["_id"] != "_design/picas-dashboard"} == workers


def test_without_permission_it_creates_no_design_document(couch, settings):
    settings.COUCHDB_CREATE_VIEWS = False
    name = f"fresh-pool-{RUN}"
    settings.COUCHDB_DATABASES = [name]
    db = couch(name)
    db.create_database()
    try:
        code = 'function(doc) { if(doc.type == "token") { emit(doc._id, doc._id); } }'
        db.put_design("Monitor", {"views": {v: {"map": code} for v in ("todo", "locked", "done", "error")}})
        before = revisions(db)
        data = counting.refresh(get_pool(name)).data
        assert data["own_views"] is False
        assert revisions(db) == before
    finally:
        db.delete_database()


def test_a_viewer_sent_to_an_operators_page_is_told_why_and_where_to_go(viewer_client, demo_pools):
    response = viewer_client.get(f"/pools/{SURF}/jobs/new/", {"action": "reset", "kind": "state", "bucket": "error"})
    assert response.status_code == 403
    html = response.content.decode()
    assert "Only operators of this pool can do this." in html and "operators" in html and 'href="/"' in html
