"""Generated input for the HTML side, as the API has from its schema: every page the site links to, found by
following the links from the overview (never a list kept by hand), asked again with odd headers and odd query
values; every form those pages offer, sent with one field at a time odd. Never a 5xx; a refusal is a 400 page
that says what was wrong and keeps what was typed."""

import re
import time
from collections import deque
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import pytest
from django.utils import timezone

from tests.api_client import token_for
from tests.browsing import failing
from tests.conftest import surf_token
from tests.forms import BASE, SHAPING, crawl, local, read
from tokens import counting
from tokens.models import AlertRule, Job
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
ODD_HEADERS = [
    {"HX-Request": "true", "HX-Target": "nope"},
    {"HX-Request": "true", "HX-Target": ""},
    {"HX-Request": "true", "HX-Target": "x" * 300},
    {"HX-Request": "true", "HX-Target": "../../templates/base.html"},
    {"HX-Request": "true", "HX-Target": "table", "HX-Boosted": "true"},
    {"HX-Request": "true"},
    {"Accept": "application/json"},
    {"Accept": "text/csv"},
    {"Accept": "*/*;q=0.1, application/x-nonsense"},
    {"Accept": "application/json, text/html"},
]
ODD_QUERY_VALUES = ["", "-1", "1" + "0" * 23, "1e400", "\x00", "日本語", "<b>x</b>", "y" * 5000]
RAW_QUERY_VALUES = ["%zz", "%", "%E0%A4%A", "%C0%AF"]  # bad percent-escapes, sent as they are
ALWAYS_TRIED = ("state", "hours", "after", "before", "type", "group", "code", "message", "q", "field", "value",
                "format", "id", "period", "from", "outcome", "kind", "action", "page", "wall")
ODD_FIELD_VALUES = ["", "-1", "1" + "0" * 23, "1e400", "\x00", "z" * 100_000, "<script>alert(1)</script>",
                    "Ελληνικά 中文"]


@pytest.fixture
def lived_in_pool(scratch_pool, settings, operator):
    """A pool with something on every page: failures in groups and on a black-hole host, stale locks and locks of
    unknown age, running, done and todo tokens, a GRID_LRT token."""
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    settings.JOB_CONFIRM_THRESHOLD = 1000
    docs = [{**failing(n, 21, "Download failed"), "hostname": "wn-black-hole"} for n in range(12)]
    docs += [failing(n, 137, "Killed") for n in range(12, 16)]
    docs += [surf_token(n, lock=NOW - 40 * 3600, hostname="wn-dead") for n in range(16, 19)]
    docs += [surf_token(n, lock="Infinity", hostname="wn-odd") for n in range(19, 20)]
    docs += [surf_token(n, lock=NOW - 60, hostname="wn-black-hole") for n in range(20, 22)]
    docs += [surf_token(n, lock=NOW - 7200, done=NOW - 3600, exit_code=0) for n in range(22, 30)]
    docs += [surf_token(n) for n in range(30, 40)]
    docs += [{"_id": "lrt_1", "type": "pref_cal1_L229585", "lock": 0, "done": 0, "status": "todo", "OBSID": "L1"}]
    assert not [r for r in scratch_pool.bulk_docs(docs) if r.get("error")]
    counting.refresh(get_pool(scratch_pool.database))
    # And one of each thing that has a page or a form of its own: a job (queued: no worker runs in this test), an
    # alert rule, an API token.
    slug = scratch_pool.database
    # Running (a worker of the test suite's would take a queued one and end it, and an ended job offers no cancel).
    Job.objects.create(pool=slug, action="reset", user=operator, preview_count=4, status=Job.RUNNING,
                       started_at=timezone.now(), heartbeat_at=timezone.now(),
                       selection={"kind": "failure", "code": "137", "message": "Killed"})
    AlertRule.objects.create(pool=slug, kind=AlertRule.STALE_LOCKS, threshold=1, created_by=operator)
    token_for(operator)
    return scratch_pool


def assert_answered(response, where):
    assert response.status_code < 500, (where, response.status_code, response.content[:300])
    if response.status_code == 400 and response["Content-Type"].startswith("text/html"):
        text = response.content.decode()
        assert 'role="alert"' in text, (where, "a refusal says why on the page")


def test_every_linked_page_answers_odd_headers_and_odd_query_values_without_a_server_error(operator_client,
                                                                                          lived_in_pool):
    pages, _, _ = crawl(operator_client)
    paths = {urlsplit(p).path for p in pages}
    slug = lived_in_pool.database
    for must in ("/", f"/pools/{slug}/", f"/pools/{slug}/failures/", f"/pools/{slug}/stale/",
                 f"/pools/{slug}/hosts/", f"/pools/{slug}/tokens/", f"/pools/{slug}/token/",
                 f"/pools/{slug}/jobs/new/", "/jobs/", "/account/"):
        assert must in paths, (must, sorted(paths))
    tried = 0
    for page in pages:
        parts = urlsplit(page)
        given = parse_qsl(parts.query, keep_blank_values=True)
        for headers in ODD_HEADERS:
            response = operator_client.get(page, headers=headers)
            assert_answered(response, (page, headers))
            if "Accept" in headers:  # pages answer HTML only, whatever is asked for (JSON is the API's)
                assert response["Content-Type"].startswith("text/html"), (page, headers, response["Content-Type"])
            tried += 1
        own = [k for k, _ in given]
        for n, name in enumerate(dict.fromkeys(own + list(ALWAYS_TRIED))):
            rest = [(k, v) for k, v in given if k != name]
            # Every odd value for the page's own names; for the others, one, a different one on each page.
            values = ODD_QUERY_VALUES if name in own else ODD_QUERY_VALUES[(n + len(page)) % 8:][:1]
            for value in values:
                url = parts.path + "?" + urlencode([*rest, (name, value)])
                assert_answered(operator_client.get(url), url[:300])
                tried += 1
            for raw in RAW_QUERY_VALUES if name in own else ():
                url = parts.path + "?" + "&".join([urlencode(rest), f"{quote(name)}={raw}"]).lstrip("&")
                assert_answered(operator_client.get(url), url[:300])
                tried += 1
    assert tried > 800


def test_an_htmx_request_for_a_part_the_page_does_not_have_gets_the_whole_page(operator_client, lived_in_pool):
    slug = lived_in_pool.database
    whole = operator_client.get(f"/pools/{slug}/")
    odd = operator_client.get(f"/pools/{slug}/", headers={"HX-Request": "true", "HX-Target": "nope"})
    assert odd.status_code == 200 and "<h1" in odd.content.decode() and "<h1" in whole.content.decode()
    part = operator_client.get(f"/pools/{slug}/", headers={"HX-Request": "true", "HX-Target": "observations"})
    assert part.status_code == 200 and "<h1" not in part.content.decode()


FIXTURES = Path(__file__).resolve().parent / "fixtures"
# What a person types into a field of this name when it is empty: the baseline each odd value replaces, so that
# an odd value reaches the code behind the fields before it (a token set's items per token needs a config and a
# list that pass). A list of fields, not of forms: the forms are found on the pages.
TYPED = {"config": (FIXTURES / "pref_cal1.yaml").read_text(), "input_list": (FIXTURES / "L229585_srm.txt").read_text(),
         "token_type": "pref_cal1_L229585", "field": "note", "value": "1", "name": "ci", "threshold": "5",
         "hours": "1", "days": "30", "email": "ops@example.org"}


def kind_of(form):
    """A form's kind: its address (numbers folded), the fields a person fills in, its action."""
    return (re.sub(r"/\d+/", "/N/", urlsplit(form.action).path), tuple(form.names()),
            dict((n, v) for n, v, _ in form.fields).get("action"))


def send(client, form, data):
    target = local(form.action)
    return client.post(target, data) if form.method == "post" else client.get(target, data)


def baseline(form):
    data = {}
    for n, v, kind in form.fields:
        if kind not in ("checkbox-off", "file"):
            data.setdefault(n, []).append(v if v or kind == "hidden" else TYPED.get(n, v))
    return data


def test_every_form_takes_one_odd_field_at_a_time_without_a_server_error_and_keeps_what_was_typed(
        operator_client, lived_in_pool):
    _, found, _ = crawl(operator_client, shaping=SHAPING)
    queue, kinds, sent = deque(found), set(), 0
    while queue:
        page, form = queue.popleft()
        if "/logout/" in form.action or kind_of(form) in kinds:
            continue
        kinds.add(kind_of(form))
        for name in dict.fromkeys(n for n, _, kind in form.fields if kind != "file"):
            for value in ODD_FIELD_VALUES:
                data = {**baseline(form), name: [value]}
                response = send(operator_client, form, data)
                where = (page, form.action, name, value[:40])
                assert_answered(response, where)
                sent += 1
                if response.status_code == 400 and response["Content-Type"].startswith("text/html"):
                    assert_kept(response, form, name, value, where)
        # What the form leads to when filled in as a person would (a dry run's confirmation, say) is tried too.
        response = send(operator_client, form, baseline(form))
        assert_answered(response, (page, form.action, "as typed"))
        if response.status_code == 200 and response["Content-Type"].startswith("text/html"):
            queue.extend((local(form.action), f) for f in read(response.content.decode(), BASE + local(form.action))[0])
    actions = {re.sub(r"/\d+/", "/N/", path.replace(lived_in_pool.database, "P")) for path, _, _ in kinds}
    for must in ("/pools/P/jobs/", "/pools/P/jobs/new/", "/pools/P/tokensets/new/", "/pools/P/tokensets/",
                 "/pools/P/alerts/rules/", "/pools/P/alerts/rules/N/delete/", "/pools/P/alerts/subscription/",
                 "/account/tokens/", "/account/tokens/N/revoke/", "/jobs/N/cancel/", "/pools/P/stale/",
                 "/pools/P/export/", "/jobs/"):
        assert must in actions, (must, sorted(actions))
    assert sent > 200


def assert_kept(response, form, name, value, where):
    """A refused form comes back with what was typed in it (a box emptied by a refusal loses the operator's work)."""
    kind = {n: k for n, _, k in form.fields}[name]
    if kind not in ("text", "number", "textarea", "search", "email", "url"):
        return
    if "\x00" in value:  # refused, and not a character a page can show
        return
    text = response.content.decode()
    again = [f for f in read(text, BASE + local(form.action))[0] if name in f.names()]
    if not again and "Dry run: " in text and "<strong>0</strong> token" in text:
        return  # a job the test sent earlier took every token (a worker runs them): no form is offered for nothing
    assert again, (where, "the form is not on the refusal's page")
    assert {n: v for f in again for n, v, _ in f.fields}.get(name) == value, (where, "what was typed is kept")
