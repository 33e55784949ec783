"""Exports: any token list as CSV or JSON lines, streamed page by page, safe to open, equal to the pool's documents."""

import csv
import html
import io
import json
import time
import tracemalloc
from datetime import UTC, datetime

import pytest

from tests.api_client import api_as
from tests.conftest import surf_token
from tokens import exports

pytestmark = pytest.mark.django_db

NOW = int(time.time())
HOSTILE = {
    "hostname": "<script>alert('x')</script>",
    "input": "=cmd|' /C calc'!A0",
    "plus": "+1",
    "at": "@SUM(1)",
    "minus_text": "-1",
    "minus_number": -1,
    "tab": "\tTAB",
    "cr": "\rCR",
    "lines": 'line one\nline two\r\nline, "three"',
    "unicode": "ünïcødé ✓ 日本語 \u2028 after a JavaScript line separator",
    "nested": {"html": "<img src=x onerror=alert(1)>", "list": [1, "=2"]},
    "flag": True,
    "nothing": None,
    "error": [{"time": NOW - 60, "message": '=HYPERLINK("http://evil.example/?x")', "exception": "<b>tb</b>"}],
}
HOSTILE_FIELDS = [k for k in HOSTILE if k != "error"]
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def build_pool(db):
    """Tokens in every kind of list, with their states set by construction: {list name: [token ids]}."""
    tokens = {
        "todo": [surf_token(i, OBSID="L1") for i in range(12)],
        "hostile": [surf_token(i, OBSID="L1", **HOSTILE) for i in range(12, 17)]
        + [{**surf_token(0, OBSID="L1", **HOSTILE), "_id": '=HYPERLINK("x")<b>id</b>',
            "_attachments": {"<b>log</b> =1.txt": {"content_type": "text/plain", "data": "aGk="}}}],
        "done": [surf_token(i, OBSID="L2", lock=NOW - 7200, done=NOW - 3600, exit_code=0, hostname="wn1")
                 for i in range(20, 28)],
        "disk": [surf_token(i, OBSID="L2", lock=NOW - 7200, done=NOW - 3600, exit_code=3, hostname="wn2",
                            error=[{"time": NOW - 3600, "message": f"disk full on /scratch/job{i}"}])
                 for i in range(30, 35)],
        "timeout": [surf_token(i, OBSID="L1", lock=NOW - 7200, done=NOW - 3600, exit_code=7,
                               error=[{"time": NOW - 3600, "message": "<b>timeout</b> after 3600 s"}])
                    for i in range(40, 44)],
        "stale": [surf_token(i, OBSID="L2", lock=NOW - 48 * 3600, hostname="wn-dead", slurm_job_id=f"123_{i}")
                  for i in range(50, 56)],
        "fresh_lock": [surf_token(i, OBSID="L2", lock=NOW - 600, hostname="wn3") for i in range(60, 63)],
    }
    db.bulk_docs([t for group in tokens.values() for t in group])
    return {name: sorted(t["_id"] for t in group) for name, group in tokens.items()}


@pytest.fixture
def pool(scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.ids = build_pool(scratch_pool)
    return scratch_pool


@pytest.fixture
def small_pages(monkeypatch):
    monkeypatch.setattr(exports, "BATCH_SIZE", 4)  # every test list spans several pages


def export(client, db, **params):
    return client.get(f"/pools/{db.database}/export/", {"format": "csv", **params})


def body(response):
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content)


def csv_rows(response):
    return list(csv.DictReader(io.StringIO(body(response).decode("utf-8"), newline="")))


def jsonl_rows(response):
    text = body(response).decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]  # splitlines also splits on U+2028: none may be raw


def documents(db, ids):
    return {d["_id"]: d for d in db.docs(ids)}


def from_cell(cell, original):
    """What a CSV cell holds, read as the value it was exported from: text without the quote that guards a formula,
    other values as JSON, absent and null as an empty cell."""
    if original is None:
        return None if cell == "" else cell
    if isinstance(original, str):
        return cell[1:] if cell.startswith("'") and cell[1:].startswith(FORMULA) else cell
    return json.loads(cell)


def assert_safe_for_spreadsheets(rows):
    for row in rows:
        for cell in row.values():
            if cell.startswith("-"):
                assert isinstance(json.loads(cell), (int, float)), cell  # only a number may start with a minus
            else:
                assert not cell.startswith(FORMULA), cell


def test_a_state_as_json_lines_is_the_pools_documents(viewer_client, pool, small_pages):
    rows = jsonl_rows(export(viewer_client, pool, state="todo", format="jsonl", fields="*"))
    expected = pool.ids["todo"] + pool.ids["hostile"]
    assert sorted(r["_id"] for r in rows) == sorted(expected)
    assert {r["_id"]: r for r in rows} == documents(pool, expected)


def test_a_state_as_csv_holds_the_chosen_fields_of_each_document(viewer_client, pool, small_pages):
    fields = ["_id", "input", "OBSID", "scrub_count", "output", "error"]
    response = export(viewer_client, pool, state="done", format="csv", fields=",".join(fields))
    rows = csv_rows(response)
    docs = documents(pool, pool.ids["done"])
    assert sorted(r["_id"] for r in rows) == pool.ids["done"]
    for row in rows:
        assert list(row) == fields
        assert {f: from_cell(row[f], docs[row["_id"]][f]) for f in fields} == {f: docs[row["_id"]][f] for f in fields}


def test_a_failure_group_exports_exactly_its_tokens(viewer_client, pool, small_pages):
    groups = api_as(viewer_client).get(f"/api/v1/pools/{pool.database}/failures").json()["groups"]
    disk = next(g for g in groups if g["code"] == "3")
    rows = jsonl_rows(export(viewer_client, pool, code=disk["code"], message=disk["message"], format="jsonl",
                             fields="*"))
    assert {r["_id"]: r for r in rows} == documents(pool, pool.ids["disk"])
    csv_ids = [r["_id"] for r in csv_rows(export(viewer_client, pool, code=disk["code"], message=disk["message"]))]
    assert sorted(csv_ids) == pool.ids["disk"]


def test_stale_locks_export_the_locks_older_than_the_hours_with_their_times(viewer_client, pool, small_pages):
    rows = csv_rows(export(viewer_client, pool, hours="24", fields="_id,hostname,job_id,lock_time,lock_age_hours"))
    assert sorted(r["_id"] for r in rows) == pool.ids["stale"]
    docs = documents(pool, pool.ids["stale"])
    for row in rows:
        lock = docs[row["_id"]]["lock"]
        assert datetime.fromisoformat(row["lock_time"]) == datetime.fromtimestamp(lock, UTC)
        assert 47.9 < float(row["lock_age_hours"]) < 48.5
        assert row["job_id"] == docs[row["_id"]]["slurm_job_id"] and row["hostname"] == "wn-dead"
    everything_locked = csv_rows(export(viewer_client, pool, hours="0", fields="_id"))
    assert sorted(r["_id"] for r in everything_locked) == sorted(pool.ids["stale"] + pool.ids["fresh_lock"])


def test_an_observation_exports_its_tokens_in_every_state(viewer_client, pool, small_pages):
    rows = jsonl_rows(export(viewer_client, pool, kind="observation", type="token", group="L2", format="jsonl",
                             fields="_id,state,observation"))
    by_construction = {**dict.fromkeys(pool.ids["done"], "done"), **dict.fromkeys(pool.ids["disk"], "error"),
                       **dict.fromkeys(pool.ids["stale"] + pool.ids["fresh_lock"], "locked")}
    assert {r["_id"]: r["state"] for r in rows} == by_construction
    shown = api_as(viewer_client).get(f"/api/v1/pools/{pool.database}").json()["observations"]
    assert {r["observation"] for r in rows} == {o["label"] for o in shown if (o["type"], o["group"]) == ("token", "L2")}


def test_without_the_dashboards_views_a_state_of_an_observation_exports(viewer_client, scratch_pool, settings):
    settings.COUCHDB_CREATE_VIEWS = False
    ids = build_pool(scratch_pool)
    rows = csv_rows(export(viewer_client, scratch_pool, state="error", type="token", fields="_id,exit_code"))
    assert sorted(r["_id"] for r in rows) == sorted(ids["disk"] + ids["timeout"])
    unnamed = export(viewer_client, scratch_pool, state="error")
    assert unnamed.status_code == 400 and "name the observation" in unnamed.content.decode()
    refused = export(viewer_client, scratch_pool, hours="24")
    assert refused.status_code == 400 and "own design document" in refused.content.decode()


def test_computed_fields_describe_each_token(viewer_client, pool):
    rows = jsonl_rows(export(viewer_client, pool, state="todo", format="jsonl",
                             fields="_id,error_count,last_error,attachments,lock_time,state"))
    by_id = {r["_id"]: r for r in rows}
    hostile_id = '=HYPERLINK("x")<b>id</b>'
    assert by_id[hostile_id] == {"_id": hostile_id, "error_count": 1, "last_error": HOSTILE["error"][0]["message"],
                                 "attachments": ["<b>log</b> =1.txt"], "lock_time": None, "state": "todo"}
    assert by_id["token_00001"]["error_count"] == 0 and by_id["token_00001"]["last_error"] is None


def test_only_the_chosen_fields_are_exported_in_the_order_asked(viewer_client, pool):
    response = export(viewer_client, pool, state="todo", format="jsonl", fields="OBSID,_id,OBSID,nothing")
    for row in jsonl_rows(response):
        # null where the document has null, left out where it has no such field
        hostile = row["_id"] in pool.ids["hostile"]
        assert list(row) == ["OBSID", "_id", "nothing"] if hostile else ["OBSID", "_id"]
    header = body(export(viewer_client, pool, state="todo", fields="OBSID,_id")).split(b"\r\n")[0]
    assert header == b"OBSID,_id"


def test_without_fields_the_default_set_is_exported(viewer_client, pool):
    rows = csv_rows(export(viewer_client, pool, state="done"))
    assert list(rows[0]) == list(exports.DEFAULT_FIELDS)


def test_the_forms_ticked_fields_and_typed_fields_combine(viewer_client, pool):
    response = viewer_client.get(f"/pools/{pool.database}/export/?state=done&fields=_id&fields=state"
                                 "&fields=OBSID,+hostname&fields=&format=csv")
    assert list(csv_rows(response)[0]) == ["_id", "state", "OBSID", "hostname"]


def test_hostile_values_round_trip_through_csv_and_cannot_run_as_formulas(viewer_client, pool, small_pages):
    fields = ["_id", *HOSTILE_FIELDS, "last_error", "attachments"]
    rows = csv_rows(export(viewer_client, pool, state="todo", format="csv", fields=",".join(fields)))
    assert_safe_for_spreadsheets(rows)
    docs = documents(pool, pool.ids["hostile"])
    assert sorted(from_cell(r["_id"], "") for r in rows) == sorted(pool.ids["todo"] + pool.ids["hostile"])
    hostile_rows = [r for r in rows if from_cell(r["_id"], "") in docs]
    assert '=HYPERLINK("x")<b>id</b>' not in {r["_id"] for r in rows}  # quoted, not a formula
    for row in hostile_rows:
        doc = docs[from_cell(row["_id"], "")]
        assert {f: from_cell(row[f], doc.get(f)) for f in HOSTILE_FIELDS} == {f: doc.get(f) for f in HOSTILE_FIELDS}
        assert from_cell(row["last_error"], "") == HOSTILE["error"][0]["message"]
        assert json.loads(row["attachments"]) == sorted(doc.get("_attachments") or {})
    assert {r["minus_number"] for r in hostile_rows} == {"-1"} and {r["minus_text"] for r in hostile_rows} == {"'-1"}


def test_hostile_values_round_trip_through_json_lines_with_nothing_a_browser_takes_for_html(
        viewer_client, pool, small_pages):
    response = export(viewer_client, pool, state="todo", format="jsonl", fields="*")
    raw = body(response)
    assert b"<" not in raw and b">" not in raw and "\u2028".encode() not in raw
    assert response["Content-Type"].startswith("application/x-ndjson")
    assert response["X-Content-Type-Options"] == "nosniff"
    rows = [json.loads(line) for line in raw.decode().splitlines()]
    assert {r["_id"]: r for r in rows if r["_id"] in pool.ids["hostile"]} == documents(pool, pool.ids["hostile"])


def test_the_file_is_an_attachment_named_after_the_pool_and_selection(viewer_client, pool):
    response = export(viewer_client, pool, code="7", message="<b>timeout</b> after <n> s", format="csv")
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and f"{pool.database}-failure-code-7" in disposition
    assert "<" not in disposition and "/" not in disposition.split("filename=")[1]
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body(response)


@pytest.mark.parametrize("params, message", [
    ({"state": "todo", "format": "xlsx"}, "Unknown format"),
    ({"state": "todo", "fields": "_id,OBSDI"}, "Unknown field 'OBSDI'"),
    ({"state": "todo", "fields": " , "}, "at least one field"),
    ({"state": "todo", "fields": "*"}, "needs format=jsonl"),
    ({"state": "doing", "format": "csv"}, "Unknown state 'doing'"),
    ({"hours": "lots", "format": "csv"}, "number of hours"),
    ({"hours": "nan", "format": "csv"}, "number of hours"),
    ({"kind": "everything", "format": "csv"}, "Unknown selection"),
    ({"kind": "observation", "format": "csv"}, "token type"),
    ({"format": "csv"}, "Say what to export"),
])
def test_bad_parameters_get_a_400_with_a_message(viewer_client, pool, params, message):
    page = export(viewer_client, pool, **params)
    assert page.status_code == 400 and message in html.unescape(page.content.decode())
    # Asking for JSON changes nothing: a page answers HTML (a script's export is the API's, with its own refusals).
    as_json = viewer_client.get(f"/pools/{pool.database}/export/", {"format": "csv", **params},
                                headers={"Accept": "application/json"})
    assert as_json.status_code == 400 and as_json["Content-Type"].startswith("text/html")
    assert message in html.unescape(as_json.content.decode())


def test_an_unknown_pool_is_not_found(viewer_client, pool):
    assert viewer_client.get("/pools/no-such-pool/export/", {"state": "todo", "format": "csv"}).status_code == 404


def test_anonymous_users_are_sent_to_log_in(client, pool):
    response = client.get(f"/pools/{pool.database}/export/", {"state": "todo", "format": "csv"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_viewers_and_operators_may_both_export(viewer_client, operator, pool):
    assert len(csv_rows(export(viewer_client, pool, state="done"))) == len(pool.ids["done"])
    viewer_client.force_login(operator)
    assert len(csv_rows(export(viewer_client, pool, state="done"))) == len(pool.ids["done"])


def test_a_pool_that_fails_before_the_first_row_gets_an_error_page_not_a_download(viewer_client, pool):
    viewer_client.get(f"/pools/{pool.database}/")  # counts are taken while the database exists
    pool.delete_database()
    try:
        response = export(viewer_client, pool, state="todo", format="csv")
        assert response.status_code == 404 and not response.streaming
        assert "not found" in response.content.decode()
    finally:
        pool.create_database()  # for the fixture to delete


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_a_failure_half_way_ends_the_file_with_a_line_saying_it_is_incomplete(
        viewer_client, pool, small_pages, couch_server, fmt):
    response = export(viewer_client, pool, state="todo", format=fmt, fields="_id")
    chunks = iter(response.streaming_content)
    head = next(chunks) + (next(chunks) if fmt == "csv" else b"")
    pool.delete_database()
    try:
        tail = b"".join(chunks).decode()
    finally:
        pool.create_database()  # for the fixture to delete
    assert head.count(b"\n") == (5 if fmt == "csv" else 4)
    assert tail.count("\n") == 1 and "EXPORT INCOMPLETE: stopped after 4 rows" in tail and "not found" in tail
    assert couch_server.password not in tail


def test_the_list_pages_offer_an_export_form(viewer_client, pool):
    slug = pool.database
    action = f'action="/pools/{slug}/export/"'
    tokens = viewer_client.get(f"/pools/{slug}/tokens/", {"state": "error", "q": "token"}).content.decode()
    assert action in tokens and 'name="state" value="error"' in tokens and 'name="q" value="token"' in tokens
    failures = viewer_client.get(f"/pools/{slug}/failures/").content.decode()
    assert failures.count(action) == 2 and 'name="code" value="3"' in failures
    assert 'name="message" value="&lt;b&gt;timeout&lt;/b&gt; after &lt;n&gt; s"' in failures
    stale = viewer_client.get(f"/pools/{slug}/stale/", {"hours": "24"}).content.decode()
    assert action in stale and 'name="hours" value="24"' in stale
    observation = viewer_client.get(f"/pools/{slug}/obs/", {"type": "token", "group": "L2"}).content.decode()
    assert f"/pools/{slug}/export/?kind=observation&amp;type=token&amp;group=L2" in observation
    form = viewer_client.get(f"/pools/{slug}/export/", {"kind": "observation", "type": "token", "group": "L2"})
    page = form.content.decode()
    assert form.status_code == 200 and action in page and 'name="group" value="L2"' in page
    assert 'name="fields" value="state" checked' in page


def test_a_list_of_ten_thousand_tokens_streams_in_the_memory_of_one_thousand(viewer_client, scratch_pool, settings):
    settings.COUCHDB_TIMEOUT = 300  # the first export indexes 11,000 new tokens
    # Counts are taken while the pool is small, as when a pool grows under a running dashboard: only the view the
    # export reads is indexed at the larger size.
    viewer_client.get(f"/pools/{scratch_pool.database}/")
    scratch_pool.bulk_docs([surf_token(i, input=f"run {i} " + "x" * 300) for i in range(1000)])
    for start in range(1000, 11000, 2500):
        scratch_pool.bulk_docs([surf_token(i, lock=NOW - 7200, done=NOW - 3600, exit_code=0, hostname="wn1",
                                           input=f"run {i} " + "x" * 300) for i in range(start, start + 2500)])
    body(export(viewer_client, scratch_pool, state="todo", fields="_id"))  # indexes them; one-time allocations

    def measure(state):
        tracemalloc.start()
        try:
            response = export(viewer_client, scratch_pool, state=state, fields="_id,input,state,lock_time,hostname")
            rows, size = 0, 0
            for chunk in response.streaming_content:
                rows += chunk.count(b"\r\n")
                size += len(chunk)
            return rows - 1, size, tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small_rows, small_size, small_peak = measure("todo")
    big_rows, big_size, big_peak = measure("done")
    assert (small_rows, big_rows) == (1000, 10000)
    assert big_size > 9 * small_size
    assert big_peak < 1.5 * small_peak, (small_peak, big_peak)
    assert big_peak < big_size  # the file never was in memory whole


def test_a_script_exports_through_the_api_with_its_token_what_the_web_export_gives(viewer_client, viewer, pool,
                                                                                    small_pages):
    from django.test import Client

    from tests.api_client import token_for

    script = Client(headers={"Authorization": f"Bearer {token_for(viewer)}"})
    params = {"state": "error", "fields": "_id,exit_code,last_error,hostname"}
    by_api = script.get(f"/api/v1/pools/{pool.database}/export", {**params, "format": "csv"})
    by_web = export(viewer_client, pool, **params)

    assert by_api["Content-Type"].startswith("text/csv") and "attachment" in by_api["Content-Disposition"]
    content = body(by_api)
    assert content == body(by_web)
    rows = list(csv.DictReader(io.StringIO(content.decode())))
    assert sorted(r["_id"] for r in rows) == sorted(pool.ids["disk"] + pool.ids["timeout"])


def test_the_api_export_refuses_bad_parameters_and_strangers_with_json(viewer, pool):
    from django.test import Client

    from tests.api_client import token_for

    script = Client(headers={"Authorization": f"Bearer {token_for(viewer)}"})
    bad = script.get(f"/api/v1/pools/{pool.database}/export", {"hours": "1", "type": "token"})
    assert bad.status_code == 400 and "detail" in bad.json()
    missing = script.get(f"/api/v1/pools/{pool.database}/export", {"fields": "no such field, nor this"})
    assert missing.status_code == 400 and missing.json()["detail"]
    stranger = Client().get(f"/api/v1/pools/{pool.database}/export", {"state": "error"})
    assert stranger.status_code == 401 and stranger["Content-Type"].startswith("application/json")
