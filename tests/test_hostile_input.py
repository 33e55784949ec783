"""Hostile input: markup in every part of a token is shown as text on every page, and query parameters are only
ever values inside the pool's own key ranges, never a way to reach other documents or databases."""

import json
import time
from urllib.parse import quote

import pytest

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.forms import started_job
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(2)>'
PAYLOAD = SCRIPT + IMG


def hostile_tokens():
    """Markup in the id, the observation, every field a page shows, an error message and an attachment name,
    in every state a page lists."""
    fields = dict(hostname=PAYLOAD, input=PAYLOAD, output={"note": PAYLOAD}, OBSID="L1" + PAYLOAD,
                  slurm_job_id=PAYLOAD, note=PAYLOAD)
    attachment = {f"log{PAYLOAD}.txt": {"content_type": "text/html", "data": "PHNjcmlwdD5hbGVydCgzKTwvc2NyaXB0Pg=="}}
    return [
        {**surf_token(1, **fields), "_id": "todo" + PAYLOAD, "_attachments": attachment},
        {**surf_token(2, **fields), "_id": "error" + PAYLOAD, "lock": NOW - 7200, "done": NOW - 3600,
         "exit_code": PAYLOAD, "error": [{"time": NOW - 3600, "message": PAYLOAD, "exception": PAYLOAD}],
         "_attachments": attachment},
        {**surf_token(3, **fields), "_id": "stale" + PAYLOAD, "lock": NOW - 48 * 3600},
        {**surf_token(4, **fields), "_id": "done" + PAYLOAD, "lock": NOW - 7200, "done": NOW - 3600, "exit_code": 0},
    ]


@pytest.fixture
def hostile_pool(scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs(hostile_tokens())
    return scratch_pool


def assert_inert(response, where):
    """HTML pages carry the payload only escaped; JSON is served as JSON, which browsers do not render."""
    assert response.status_code < 500, (where, response.status_code)
    kind = response["Content-Type"]
    text = response.content.decode() if not response.streaming else b"".join(response.streaming_content).decode()
    if response.get("Content-Disposition", "").startswith("attachment"):  # a download, never shown by the browser
        assert response["Content-Security-Policy"].startswith("default-src 'none'") and "sandbox" in response[
            "Content-Security-Policy"], where
    elif kind.startswith("text/html"):
        assert "<script>alert" not in text and "<img src=x" not in text, where
    else:
        assert kind.startswith(("application/json", "text/plain", "text/csv", "application/x-ndjson",
                                "application/octet-stream")), (where, kind)
        assert response["X-Content-Type-Options"] == "nosniff" or kind.startswith("application/json"), where
    return text


def test_markup_in_every_part_of_a_token_is_inert_on_every_page(operator_client, hostile_pool, celery_worker):
    slug = hostile_pool.database
    client = operator_client
    api = api_as(client)
    group = "L1" + PAYLOAD
    # Each page, and its API twin (the one JSON surface): {name: (page, query, twin, twin's query)}.
    pages = {
        "pool": ("/pools/{}/", {}, "", {}),
        "observation": ("/pools/{}/obs/", {"type": "token", "group": group}, "/observation",
                        {"type": "token", "group": group}),
        "todo list": ("/pools/{}/tokens/", {"state": "todo"}, "/tokens", {"state": "todo"}),
        "error list": ("/pools/{}/tokens/", {"state": "error", "type": "token", "group": group}, "/tokens",
                       {"state": "error", "type": "token", "group": group}),
        "filtered list": ("/pools/{}/tokens/", {"state": "error", "q": "error<", "field": "note", "value": PAYLOAD},
                          "/tokens", {"state": "error", "q": "error<", "field": "note", "value": PAYLOAD}),
        "failures": ("/pools/{}/failures/", {}, "/failures", {}),
        "stale locks": ("/pools/{}/stale/", {"hours": "24"}, "/stale", {"hours": "24"}),
        "token": ("/pools/{}/token/", {"id": "error" + PAYLOAD}, "/tokens/" + quote("error" + PAYLOAD, safe=""), {}),
        "dry run": ("/pools/{}/jobs/new/", {"action": "reset", "kind": "state", "bucket": "error"}, None, None),
        "export form": ("/pools/{}/export/", {"state": "error"}, "/export", {"state": "error", "format": "jsonl",
                                                                            "fields": "*"}),
        "CSV": ("/pools/{}/export/", {"state": "error", "format": "csv", "fields": "_id,hostname,last_error"},
                None, None),
        "attachment": ("/pools/{}/attachment/", {"id": "error" + PAYLOAD, "name": f"log{PAYLOAD}.txt"}, None, None),
        "attachment shown": ("/pools/{}/attachment/", {"id": "error" + PAYLOAD, "name": f"log{PAYLOAD}.txt",
                                                      "inline": "1"}, None, None),
    }
    seen = {}
    for name, (url, params, twin, twin_params) in pages.items():
        seen[name, False] = assert_inert(client.get(url.format(slug), params), name)
        if name not in ("CSV", "attachment", "attachment shown"):
            # A page asked for JSON says where the JSON is, and echoes nothing of the request.
            refused = client.get(url.format(slug), {**params, "format": "json"})
            assert refused.status_code == 406 and "/api/v1/" in refused.json()["error"], name
            assert "<" not in assert_inert(refused, name), name
        if twin is not None:
            response = (api.get if twin != "/export" else client.get)(f"/api/v1/pools/{slug}{twin}", twin_params)
            assert response.status_code == 200, (name, response.content[:300])
            seen[name, True] = assert_inert(response, name)
    dry_run = api.post(f"/api/v1/pools/{slug}/jobs", {"action": "reset", "selection": {"kind": "state",
                                                                                       "bucket": "error"}})
    assert dry_run.status_code == 200 and dry_run.json()["count"] == 1
    seen["dry run", True] = assert_inert(dry_run, "dry run")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in seen["token", False]  # shown, as text
    assert "&lt;script&gt;" in seen["failures", False] and "&lt;script&gt;" in seen["pool", False]
    assert json.loads(seen["token", True])["token"]["hostname"] == PAYLOAD  # the JSON answer holds the value as it is
    assert seen["attachment shown", False] == "<script>alert(3)</script>"  # as text/plain, nosniff

    # A job over these tokens: its page, the audit list and the token's history name them as text too.
    created = client.post(f"/pools/{slug}/jobs/", {"action": "reset", "kind": "state", "bucket": "error"})
    job = started_job(created)
    job_url = created["Location"]
    wait_for(lambda: api.get(f"/api/v1/jobs/{job.pk}").json()["status"] in ("succeeded", "failed"), seconds=5,
             what=f"job {job.pk} to end")
    for url in (job_url, "/jobs/", f"/pools/{slug}/token/?id=error{PAYLOAD}"):
        assert_inert(client.get(url), url)


@pytest.mark.parametrize("params", [
    {"state": '"error","zzz"'},
    {"state": "todo", "type": '{"$gt": null}'},
    {"state": "todo", "type": "token", "group": "\u0000"},
    {"state": "todo", "type": "token", "group": '["todo",{}]'},
    {"state": "todo", "q": "_design/"},
    {"state": "todo", "field": "_id", "value": "_design/Monitor"},
    {"state": "todo", "after": "not-a-cursor"},
    {"state": "todo", "after": "W10="},
    {"kind": "failure", "code": "]", "message": "\\u0000"},
])
def test_list_filters_stay_inside_the_pool_whatever_they_hold(viewer_client, hostile_pool, params):
    page = viewer_client.get(f"/pools/{hostile_pool.database}/tokens/", params)
    assert page.status_code in (200, 400, 404) and page["Content-Type"].startswith("text/html"), page.content[:300]
    response = api_as(viewer_client).get(f"/api/v1/pools/{hostile_pool.database}/tokens", params)
    assert response.status_code in (200, 400, 404, 422), response.content[:300]
    if response.status_code == 200:
        ids = [t["id"] for t in response.json()["tokens"]]
        assert all(not i.startswith("_") for i in ids)  # never a design document or a server path
        assert set(ids) <= {d["_id"] for d in hostile_tokens()}


@pytest.mark.parametrize("doc_id", ["..", "../_all_dbs", "_all_docs", "_users", "%2e%2e", "_design/../_all_dbs",
                                    "_local/x", "/_config"])
def test_a_token_id_cannot_name_anything_but_a_token(viewer_client, hostile_pool, doc_id):
    page = viewer_client.get(f"/pools/{hostile_pool.database}/token/", {"id": doc_id})
    api = api_as(viewer_client).get(f"/api/v1/pools/{hostile_pool.database}/tokens/{quote(doc_id, safe='')}")
    for response in (page, api):
        assert response.status_code in (400, 404), (doc_id, response.status_code, response.content[:200])
        text = response.content.decode()
        assert "Welcome" not in text and "express-pouchdb" not in text and "uuid" not in text  # not the server root
