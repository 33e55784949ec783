"""The token page: every field, errors newest first, times and ages, job ids, attachments inline and streamed."""

import time
from urllib.parse import quote

import pytest

from tests.api_client import api_as
from tests.conftest import LOFAR, SURF, surf_token
from tokens.reading import JOB_ID_FIELDS

pytestmark = pytest.mark.django_db


def docs(couch, database):
    db = couch(database)
    return [r["doc"] for r in db.call(db.client.post_all_docs, db=database, include_docs=True)["rows"]]


def test_it_shows_the_error_history_newest_first(viewer_client, demo_pools, couch):
    doc = next(d for d in docs(couch, SURF) if isinstance(d.get("error"), list) and len(d["error"]) >= 2)
    data = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens/{quote(doc['_id'], safe='')}").json()
    assert [e["time"] for e in data["errors"]] == [e["time"] for e in reversed(doc["error"])]
    assert data["token"] == doc
    html = viewer_client.get(f"/pools/{SURF}/token/", {"id": doc["_id"]}).content.decode()
    assert "Scrub count" in html and "Raw JSON" in html


def test_it_shows_lock_and_done_times_with_ages_and_job_ids(viewer_client, demo_pools, couch):
    doc = next(d for d in docs(couch, SURF) if d.get("slurm_job_id") and isinstance(d.get("done"), int)
               and d["done"] > 1e9)
    data = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens/{quote(doc['_id'], safe='')}").json()
    assert data["lock"]["epoch"] == doc["lock"] and data["done"]["age_hours"] >= 0
    # Every job id the token holds: two pilots that claimed it at once (picas does not re-check the lock) both
    # left theirs.
    assert data["job_ids"] == {f: doc[f] for f in JOB_ID_FIELDS if doc.get(f)} and "slurm_job_id" in data["job_ids"]
    assert data["bucket"] in ("done", "error")


def test_attachments_with_slashes_colons_and_spaces_are_shown_and_downloaded(viewer_client, demo_pools, couch):
    doc = next(d for d in docs(couch, SURF) if any("/" in n for n in d.get("_attachments", {})))
    name = next(n for n in doc["_attachments"] if "/" in n)
    html = viewer_client.get(f"/pools/{SURF}/token/", {"id": doc["_id"]}).content.decode()
    assert 'class="log">' in html
    response = viewer_client.get(f"/pools/{SURF}/attachment/", {"id": doc["_id"], "name": name})
    assert response.status_code == 200 and response.streaming
    body = b"".join(response.streaming_content)
    assert len(body) == doc["_attachments"][name]["length"]
    assert name.replace("/", "-") in response["Content-Disposition"]


def test_a_lofar_tokens_srm_list_is_shown_inline(viewer_client, demo_pools, couch):
    doc = next(d for d in docs(couch, LOFAR) if "srm.txt" in d.get("_attachments", {}))
    html = viewer_client.get(f"/pools/{LOFAR}/token/", {"id": doc["_id"]}).content.decode()
    assert "srm://" in html


def test_an_html_attachment_is_never_served_as_html(viewer_client, demo_pools, couch):
    db = couch(SURF)
    db.bulk_docs([{"_id": "html-attachment", "type": "token", "_attachments": {
        "x.html": {"content_type": "text/html", "data": "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="}}}])
    response = viewer_client.get(f"/pools/{SURF}/attachment/", {"id": "html-attachment", "name": "x.html",
                                                               "inline": "1"})
    assert response["Content-Type"].startswith("text/plain") and response["X-Content-Type-Options"] == "nosniff"
    db.bulk_docs([{**db.get("html-attachment"), "_deleted": True}])


@pytest.mark.parametrize("token_id", ["..", "_all_docs"])
def test_an_id_that_names_another_couchdb_resource_is_not_a_token(viewer_client, demo_pools, token_id):
    page = viewer_client.get(f"/pools/{SURF}/token/", {"id": token_id})
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
    response = api_as(viewer_client).get(f"/api/v1/pools/{SURF}/tokens/{quote(token_id, safe='')}")
    assert response.status_code == 404 and response.json()["detail"] == "No such token"


def test_picas_exception_marker_99_is_explained_not_shown_as_a_time(viewer_client, scratch_pool):
    now = int(time.time())
    scratch_pool.bulk_docs([surf_token(1, lock=99, done=99, error=[
        {"time": now - 60, "message": "Exception <class 'KeyError'> occurred during processing: 'inputs'"}])])
    page = viewer_client.get(f"/pools/{scratch_pool.database}/token/", {"id": "token_00001"}).content.decode()
    assert "picas's marker, not a time: the worker's code raised an exception" in page
    assert "1970" not in page
