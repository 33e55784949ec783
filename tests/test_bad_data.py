"""Bad data in pools: tokens whose fields have unexpected types, huge fields, odd and binary attachments, design
documents with broken JavaScript. Every page still renders (200, or a clear 4xx), the odd tokens are flagged, jobs
over them end normally, and nothing answers 500."""

import base64
import html as markup
import re
import time
from urllib.parse import quote

import pytest
from django.test import Client

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.forms import started_job
from tests.test_job_web import wait_until_ended
from tokens.couch import CouchError
from tokens.states import BUCKETS

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
HUGE = 3 * 1024 * 1024
BINARY = bytes(range(256)) * 64
NOT_UTF8 = "Grüße aus Dwingeloo\n".encode("latin-1") * 20 + b"\xff\xfe\x00 end\n"


def attach(content_type, data):
    return {"content_type": content_type, "data": base64.b64encode(data).decode()}


def deep(levels):
    value = "bottom"
    for _ in range(levels):
        value = {"down": value}
    return value


# Each odd token, and what its page must say about it (a piece of the note, or of the state).
ODD = {
    "odd_lock_text": (surf_token(1, lock="claimed"), "lock is text"),
    "odd_lock_numeric_text": (surf_token(2, lock=str(NOW - 30 * 3600)), "lock is text"),
    "odd_lock_null": (surf_token(3, lock=None, done=None), "lock is null"),
    "odd_lock_true": (surf_token(4, lock=True), "lock is a boolean"),
    "odd_done_text": (surf_token(5, lock=NOW - 4000, done="yesterday"), "done is text"),
    "odd_error_text": (surf_token(6, lock=NOW - 4000, done=NOW - 3600, exit_code=1,
                                  error="Segmentation fault at 0x7f3a"), "error is text"),
    "odd_error_object": (surf_token(7, lock=NOW - 4000, done=NOW - 3600, exit_code=2,
                                    error={"message": "boom"}), "error is an object"),
    "odd_error_items": (surf_token(8, lock=NOW - 4000, done=NOW - 3600, exit_code=3,
                                   error=["oops", None, 7, {"time": "soon", "message": ["a", "list"]}]),
                        "entries of error"),
    "odd_exit_code_object": (surf_token(9, lock=NOW - 4000, done=NOW - 3600, exit_code={"code": 0}),
                             "exit_code is an object"),
    "odd_no_type": ({k: v for k, v in surf_token(10).items() if k != "type"}, "no type"),
    "odd_type_list": (surf_token(11, type=["token"]), "type is a list"),
    "odd_type_object": (surf_token(12, type={"name": "token"}), "type is an object"),
    "odd_no_scrub_count": ({k: v for k, v in surf_token(13).items() if k != "scrub_count"}, "no scrub_count"),
    "odd_scrub_count_text": (surf_token(14, scrub_count="3"), "scrub_count is text"),
    "odd_huge": (surf_token(15, input="x" * HUGE, hostname="h" * 100_000, nested=deep(200)), "is huge"),
    "odd_lrt_output_text": ({"_id": "t_odd_lrt", "type": "pref_cal1_L229585", "lock": 0, "done": 0,
                             "status": 5, "output": "abc", "scrub_count": 0}, "status is a number"),
    "odd_attachments": (surf_token(16, _attachments={
        "../../etc/passwd": attach("text/plain", b"root:x:0:0\n"),
        "logs/../../up.log": attach("text/plain", b"up\n"),
        "core.bin": attach("application/octet-stream", BINARY),
        "latin1.log": attach("text/plain", NOT_UTF8),
        "binary-as-text.log": attach("text/plain", BINARY),
        "page.html": attach("text/html", b"<script>alert(1)</script>"),
        "new\nline.txt": attach("text/plain", b"newline in the name\n"),
        "quote\"and\\backslash ?#%&.txt": attach("text/plain", b"odd name\n"),
    }), "attachment name"),
    "odd id/with slash ?#&": ({**surf_token(17), "_id": "odd id/with slash ?#&"}, None),
}
# The ids of the odd tokens as stored (surf_token names them token_NNNNN).
IDS = {key: doc["_id"] for key, (doc, _note) in ODD.items()}

BROKEN_LRT = {"language": "javascript", "PICAS_API_VERSION": "0.5", "views": {
    "todo": {"map": 'function(doc) { if(doc.type == "broken_lrt") { if(doc.lock == 0 && ) emit(doc._id, doc._id); } }'},
    "locked": {"map": 'function(doc) { if(doc.type == "broken_lrt") { emit(doc.nope.deeper, 1); } }'},
    "done": {"map": 'function(doc) { if(doc.type == "broken_lrt") { if(doc.status == "done" emit(doc._id, 1) } }'},
    "error": {"map": 'function(doc) { if(doc.type == "broken_lrt") { if(doc.output != 0) emit(doc._id, doc.output) }'},
    "overview_total": {"map": "function(doc) { emit(", "reduce": "function(k, v) { return sum(v) "},
}}
# CouchDB 3 compiles map functions when a design document is saved and refuses syntax errors (pouchdb-server
# stores anything): there, the broken design document is one whose functions all fail as they run.
FAILING = 'function(doc) { if(doc.type == "broken_lrt") { if(doc.lock == 0) emit(doc.nope.deeper, 1); } }'
BROKEN_LRT_AT_RUN_TIME = {"language": "javascript", "PICAS_API_VERSION": "0.5", "views": {
    **{view: {"map": FAILING} for view in ("todo", "locked", "done", "error")},
    "overview_total": {"map": FAILING, "reduce": "function(k, v) { return v.nope.deeper; }"},
}}
# Design documents that are not PiCaS state documents at all, but odd in shape (CouchDB 3 refuses these).
ODD_SHAPES = {"views_a_list": {"language": "javascript", "views": ["todo", "done"]},
              "views_text": {"language": "javascript", "views": {"todo": "function(doc) {}", "locked": 5, "done": None,
                                                                 "error": {"map": 7}}}}


@pytest.fixture
def odd_pool(scratch_pool):
    """A scratch pool holding the odd tokens, a few ordinary ones, and broken design documents."""
    normal = [surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=1,
                         error=[{"time": NOW - 3600, "message": f"exit 1 on node {n}"}]) for n in range(100, 105)]
    normal += [surf_token(n) for n in range(105, 110)]
    broken_lrt_token = {"_id": "t_broken_lrt_1", "type": "broken_lrt", "lock": 0, "done": 0, "status": "queued",
                        "output": 0, "scrub_count": 0}
    results = scratch_pool.bulk_docs([doc for doc, _note in ODD.values()] + normal + [broken_lrt_token])
    assert not [r for r in results if r.get("error")]
    try:
        scratch_pool.put_design("broken_lrt", BROKEN_LRT)
    except CouchError as refused:
        assert "compilation" in str(refused).lower()
        scratch_pool.put_design("broken_lrt", BROKEN_LRT_AT_RUN_TIME)
    for name, ddoc in ODD_SHAPES.items():
        try:
            scratch_pool.put_design(name, ddoc)
        except CouchError as refused:
            assert "must have object type" in str(refused)
    return scratch_pool


def url(pool, page):
    return f"/pools/{pool.database}/{page}"


def api_url(pool, path=""):
    """The API twin of a pool's page (`path`: "/failures", "/tokens", ...)."""
    return f"/api/v1/pools/{pool.database}{path}"


def token_api(pool, doc_id):
    return api_url(pool, "/tokens/" + quote(doc_id, safe=""))


def test_every_page_renders_and_counts_the_odd_tokens_in_their_own_buckets(viewer_client, odd_pool):
    api = api_as(viewer_client)
    for page, twin in (("/", "/api/v1/overview"), (url(odd_pool, ""), api_url(odd_pool)),
                       (url(odd_pool, "failures/"), api_url(odd_pool, "/failures")),
                       (url(odd_pool, "stale/?hours=0"), api_url(odd_pool, "/stale?hours=0"))):
        assert viewer_client.get(page).status_code == 200, page
        assert api.get(twin).status_code == 200, twin
    counts = api.get(api_url(odd_pool)).json()["counts"]
    # lock "claimed", null/null and a done "yesterday" fit no view; lock true is a lock whose age is unknown.
    assert counts["other"] == 3 and counts["locked_unknown"] == 1
    html = viewer_client.get(url(odd_pool, "")).content.decode()
    assert "in no view" in html and "_design/broken_lrt" in html
    listed = set()
    for bucket in BUCKETS:
        assert viewer_client.get(url(odd_pool, "tokens/"), {"state": bucket}).status_code == 200, bucket
        response = api.get(api_url(odd_pool, "/tokens"), {"state": bucket})
        assert response.status_code == 200, bucket
        listed |= {t["id"] for t in response.json()["tokens"]}
    in_no_list = {IDS[k] for k in ("odd_no_type", "odd_type_object")}
    assert listed >= set(IDS.values()) - in_no_list
    # No view counts a document without a type, or with an object for one; ["token"] == "token" in the views'
    # JavaScript, so a list holding the type's name is a token, as the workers' views count it.
    assert not listed & in_no_list and IDS["odd_type_list"] in listed


def flagged(page_html):
    """{token id: whether its row is flagged odd} of a token list page."""
    rows = re.findall(r'<td[^>]*><a href="[^"]*/token/\?id=[^"]*">([^<]*)</a>( <span class="odd")?', page_html)
    return {markup.unescape(token_id): bool(odd) for token_id, odd in rows}


def test_odd_tokens_are_flagged_in_lists(viewer_client, odd_pool):
    other = viewer_client.get(url(odd_pool, "tokens/"), {"state": "other"}).content.decode()
    assert flagged(other) == {IDS["odd_lock_text"]: True, IDS["odd_lock_null"]: True, IDS["odd_done_text"]: True}
    html = viewer_client.get(url(odd_pool, "tokens/"), {"state": "todo"}).content.decode()
    # These four, the one whose type is ["token"], and the GRID_LRT 0.5 token with lock = done = 0 and output "abc"
    # (in the todo view and in the error view: counted where the pilots take it next) are todo and odd.
    assert html.count('class="odd"') == 6


@pytest.mark.parametrize("key", list(ODD))
def test_each_odd_tokens_page_renders_and_says_what_is_odd(viewer_client, odd_pool, key):
    note = ODD[key][1]
    response = viewer_client.get(url(odd_pool, "token/"), {"id": IDS[key]})
    assert response.status_code == 200
    html = response.content.decode()
    if note:
        assert 'class="banner warn odd"' in html and note in html
    else:
        assert 'class="banner warn odd"' not in html
    data = api_as(viewer_client).get(token_api(odd_pool, IDS[key])).json()
    assert data["token"]["_id"] == IDS[key]
    assert bool(data["odd"]) == bool(note)


def test_a_huge_field_is_cut_on_the_page_but_whole_in_json(viewer_client, odd_pool):
    html = viewer_client.get(url(odd_pool, "token/"), {"id": IDS["odd_huge"]}).content.decode()
    assert len(html) < HUGE // 4
    # The page links the token as JSON (its API twin), which holds it whole.
    link = re.search(r'<a href="(/api/v1/pools/[^"]+)">the token as JSON</a>', html)
    assert link and markup.unescape(link[1]) == token_api(odd_pool, IDS["odd_huge"])
    data = api_as(viewer_client).get(markup.unescape(link[1])).json()
    assert len(data["token"]["input"]) == HUGE


def test_error_histories_of_any_shape_are_shown(viewer_client, odd_pool):
    api = api_as(viewer_client)

    def errors(key):
        return api.get(token_api(odd_pool, IDS[key])).json()["errors"]

    assert [e["message"] for e in errors("odd_error_text")] == ["Segmentation fault at 0x7f3a"]
    assert [e["message"] for e in errors("odd_error_object")] == ["boom"]
    assert len(errors("odd_error_items")) == 4
    failures = api.get(api_url(odd_pool, "/failures")).json()
    messages = {g["message"] for g in failures["groups"]} | {o["message"] for o in failures["other"]}
    assert "Segmentation fault at <hex>" in messages and "boom" in messages


@pytest.mark.parametrize("name", list(ODD["odd_attachments"][0]["_attachments"]))
def test_odd_attachments_download_byte_for_byte_under_a_safe_name(viewer_client, odd_pool, name):
    sent = base64.b64decode(ODD["odd_attachments"][0]["_attachments"][name]["data"])
    response = viewer_client.get(url(odd_pool, "attachment/"), {"id": IDS["odd_attachments"], "name": name})
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == sent
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and "/" not in disposition and "\n" not in disposition
    inline = viewer_client.get(url(odd_pool, "attachment/"), {"id": IDS["odd_attachments"], "name": name,
                                                               "inline": "1"})
    assert not inline["Content-Type"].startswith("text/html")


def test_an_odd_tokens_page_shows_its_text_attachments_inline(viewer_client, odd_pool):
    html = viewer_client.get(url(odd_pool, "token/"), {"id": IDS["odd_attachments"]}).content.decode()
    assert "root:x:0:0" in html and "Gr\ufffd\ufffde aus Dwingeloo" in html
    assert "<script>alert(1)" not in html


def test_a_missing_attachment_or_token_is_a_clear_404(viewer_client, odd_pool):
    missing_attachment, missing_token = "No such attachment", "No such token"
    for page, query, message in (("attachment/", {"id": IDS["odd_attachments"], "name": "../nope"}, missing_attachment),
                                 ("attachment/", {"id": "../nope", "name": "x"}, missing_attachment),
                                 ("token/", {"id": "../../_all_docs"}, missing_token),
                                 ("token/", {"id": "_design/broken_lrt"}, missing_token)):
        response = viewer_client.get(url(odd_pool, page), query)
        assert response.status_code == 404 and response["Content-Type"].startswith("text/html"), query
        assert message in response.content.decode(), query
        if page == "token/":  # and the token's API twin
            missing = api_as(viewer_client).get(token_api(odd_pool, query["id"]))
            assert missing.status_code == 404 and missing.json()["detail"] == message


def test_pages_render_without_the_dashboards_views_despite_the_broken_design_documents(viewer_client, odd_pool,
                                                                                     settings):
    settings.COUCHDB_CREATE_VIEWS = False
    response = viewer_client.get(url(odd_pool, ""))
    assert response.status_code in (200, 502, 503)  # counts, or a clear banner if the server refused a view
    assert "_design/broken_lrt" in response.content.decode() or "CouchDB problem" in response.content.decode()
    for page in ("failures/", "stale/", "tokens/?state=todo"):
        assert viewer_client.get(url(odd_pool, page)).status_code in (200, 502, 503), page


def test_a_reset_over_odd_tokens_previews_and_runs_to_its_end(odd_pool, operator, celery_worker):
    client = Client()
    client.force_login(operator)
    ids = list(IDS.values())
    preview = client.get(url(odd_pool, "jobs/new/"), {"action": "reset", "ids": ids})
    assert preview.status_code == 200
    job = wait_until_ended(started_job(client.post(url(odd_pool, "jobs/"), {"action": "reset", "ids": ids})).pk)
    assert job.status == "succeeded", job.message
    assert job.total == len(ids) and job.failed == 0
    # Tokens of no known type are never written; odd tokens of a known type are reset like any other.
    assert odd_pool.get(IDS["odd_no_type"])["scrub_count"] == 0
    assert odd_pool.get(IDS["odd_type_list"])["scrub_count"] == 1  # ["token"] is of type "token" to the views
    assert odd_pool.get(IDS["odd_lock_text"])["lock"] == 0
    assert odd_pool.get(IDS["odd_scrub_count_text"])["scrub_count"] == 4

    other = client.post(url(odd_pool, "jobs/"), {"action": "reset", "kind": "state", "bucket": "error"})
    job = wait_until_ended(started_job(other).pk)
    assert job.status == "succeeded", job.message
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200


def test_a_job_under_a_broken_validate_function_reports_each_refused_token(odd_pool, operator, celery_worker):
    odd_pool.put_design("no_views", {"language": "javascript", "validate_doc_update": "function( {"})
    client = Client()
    client.force_login(operator)
    ids = [IDS["odd_lock_text"], IDS["odd_error_text"]]
    created = client.post(url(odd_pool, "jobs/"), {"action": "reset", "ids": ids})
    job = wait_until_ended(started_job(created).pk)
    assert job.status == "succeeded" and job.failed == 2
    problems = api_as(client).get(f"/api/v1/jobs/{job.pk}").json()["problems"]
    assert {p["id"] for p in problems} == set(ids) and all(p["reason"] for p in problems)
    assert odd_pool.get(IDS["odd_lock_text"])["lock"] == "claimed"
