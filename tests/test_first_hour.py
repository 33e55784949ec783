"""A new user's first hour (issue 15), in a real browser: Debian's Chromium driven by Playwright against the site
served by pytest-django's live server, on the test database, a real CouchDB-compatible server, Redis and a Celery
worker. One test per item that is about a page (items 11 and 15 are in test_browser.py); at 390 px, and then
without sideways scrolling, where the item is about layout.

2 styled error pages · 5 a selection that can match nothing refused · 6 bogus filters refused · 7 acting on all of a
list · 8 a refused form keeps what was typed · 9 a token set's observations must agree · 10 a token set that exists
already · 12 the job page and list · 13 unknown-age locks, and where a long list stands · 14 wording."""

import re
from pathlib import Path

import pytest
from django.core.management import call_command

from dashboard.roles import OPERATORS, VIEWERS
from tests.api_client import Api, openapi, token_for
from tests.browsing import NOW, failing, log_in, overflow, shoot
from tests.conftest import make_user, surf_token
from tokens import counting
from tokens.models import Job
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db(transaction=True)

FIXTURES = Path(__file__).with_name("fixtures")
CONFIG = (FIXTURES / "pref_cal1.yaml").read_text()
SURLS = (FIXTURES / "L229585_srm.txt").read_text()
TYPE = "pref_cal1_L229585"  # the GRID_LRT token type scratch_pool has a design document for


def main_text(page):
    return page.locator("main").inner_text()


def alert(page):
    return page.get_by_role("alert").inner_text()


def fact(page, term):
    """The text a job page's facts give for a term ("Started by", "What it does", ...)."""
    return page.locator("dl.facts dt", has_text=term).locator("xpath=following-sibling::dd[1]").inner_text()


def range_shown(page):
    return page.locator("p.range").inner_text().split(" (")[0]


def no_python_none(page):
    """No Python None shows through ("Unknown state None", an empty cell said as "None.")."""
    return not re.search(r"\bNone\b", page.locator("body").inner_text())


def submit(page, button, path_part):
    """Click a form's button; the response of the POST it sends (to assert its status)."""
    with page.expect_response(lambda r: path_part in r.url and r.request.method == "POST") as answer:
        button.click()
    page.wait_for_load_state()
    return answer.value


@pytest.fixture
def olga(db):
    return make_user("olga", OPERATORS)


# --- 2: the site's own error pages -------------------------------------------------------------------------------


def test_a_wrong_address_a_missing_pool_and_a_forbidden_page_are_the_sites_own_styled_pages(
        live_server, scratch_pool, open_page, settings):
    settings.DEBUG = False  # as `make run` serves them
    make_user("victor", VIEWERS)
    page = open_page("phone")
    log_in(page, live_server.url, "victor")
    pages = {
        "/no/such/page/": (404, "Not found", "There is no page at this address"),
        "/pools/no-such-pool/": (404, "Not found", "No such pool"),
        f"/pools/{scratch_pool.database}/tokensets/new/": (403, "Not allowed", "Only operators of this pool can do "
                                                           "this. Your account can look at this pool but not change "
                                                           "its tokens"),
    }
    for path, (status, title, says) in pages.items():
        response = page.goto(live_server.url + path)
        assert response.status == status, path
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert page.locator("main h1").inner_text() == title
        assert says in main_text(page), path
        # Not Django's own page: the site's header and stylesheet (which the CSP lets apply), and no internals.
        assert page.locator("header.top").evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(16, 42, 67)"
        assert page.locator("form.who").inner_text().startswith("Signed in as victor (read only)")
        for internal in ("URLconf", "URLPattern", "DEBUG = True", "Traceback", "Request Method"):
            assert internal not in page.content(), (path, internal)
        assert page.get_by_role("link", name="All pools").is_visible()
        assert overflow(page) <= 1
    shoot(page, "forbidden-phone")


# --- 5: a selection that can match nothing by construction ---------------------------------------------------------


def test_a_type_named_without_its_group_is_refused_on_the_page_as_the_api_refuses_it(
        live_server, scratch_pool, open_page, settings, olga):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([failing(n, 3, "Disk quota exceeded", OBSID=f"L{1 + n % 2}") for n in range(6)])
    slug = scratch_pool.database
    counting.refresh(get_pool(slug))
    message = "Every token of type 'token' has a OBSID: name the group too (group L1, L2)"
    page = open_page()
    log_in(page, live_server.url, "olga")

    response = page.goto(live_server.url + f"/pools/{slug}/tokens/?state=error&type=token")
    assert response.status == 400
    assert alert(page) == f"This cannot be shown as asked: {message}"
    assert page.locator("table.grid").count() == 0  # no list of nothing
    response = page.goto(live_server.url + f"/pools/{slug}/jobs/new/?action=reset&kind=observation&type=token")
    assert response.status == 400 and alert(page) == message
    assert page.locator("form.jobform").count() == 0  # nothing to start

    api = Api(openapi(), token_for(olga))
    listed = api.get(f"/api/v1/pools/{slug}/tokens", {"state": "error", "type": "token"})
    assert listed.status_code == 400 and listed.json()["detail"] == message
    job = api.post(f"/api/v1/pools/{slug}/jobs", {"action": "reset", "selection": {"kind": "observation",
                                                                                   "type": "token"}})
    assert job.status_code == 400 and job.json()["detail"] == message
    assert not Job.objects.exists()

    # Named with its group it lists that group; a selection that can match but matches nothing says so.
    page.goto(live_server.url + f"/pools/{slug}/tokens/?state=error&type=token&group=L1")
    assert range_shown(page) == "Tokens 1–3 of 3"
    page.goto(live_server.url + f"/pools/{slug}/tokens/?state=todo&type=token&group=L1")
    assert range_shown(page) == "This list is empty"
    assert page.locator("table.grid tbody").inner_text().strip() == "No tokens."


# --- 6: bogus filters -------------------------------------------------------------------------------------------


def test_bogus_filters_on_the_web_lists_are_refused_with_the_message_on_the_page_as_the_api_refuses_them(
        live_server, scratch_pool, open_page, olga):
    scratch_pool.bulk_docs([surf_token(n) for n in range(3)] + [surf_token(3, lock=NOW - 30 * 3600)])
    slug = scratch_pool.database
    api = Api(openapi(), token_for(olga))
    page = open_page()
    log_in(page, live_server.url, "olga")

    response = page.goto(live_server.url + f"/pools/{slug}/tokens/?state=bogus")
    assert response.status == 400
    assert alert(page).startswith("This cannot be shown as asked: Unknown state 'bogus': one of todo, locked, done")
    assert page.locator("table.grid").count() == 0  # not the todo list instead
    assert api.get(f"/api/v1/pools/{slug}/tokens", {"state": "bogus"}).status_code == 422

    response = page.goto(live_server.url + f"/pools/{slug}/stale/?hours=abc")
    assert response.status == 400
    assert alert(page) == "This cannot be shown as asked: Hours must be a number from 0 to 1,000,000, not 'abc'"
    assert page.get_by_label("Locked longer than").input_value() == "abc"  # kept to be corrected, not 24
    assert "locked longer than 24 hours" not in main_text(page)
    assert api.get(f"/api/v1/pools/{slug}/stale", {"hours": "abc"}).status_code == 422
    page.get_by_label("Locked longer than").fill("24")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**/stale/?hours=24")
    assert "1 token locked longer than 24 hours" in main_text(page)

    response = page.goto(live_server.url + "/jobs/?status=bogus")
    assert response.status == 400
    assert alert(page).startswith("This cannot be shown as asked: Unknown status 'bogus': one of queued, running")
    assert api.get("/api/v1/jobs", {"status": "bogus"}).status_code == 422

    response = page.goto(live_server.url + f"/pools/{slug}/?period=bogus")
    assert response.status == 400 and "Unknown chart period 'bogus'" in alert(page)


# --- 7: acting on all of a list ---------------------------------------------------------------------------------


@pytest.fixture
def observations(scratch_pool, settings):
    """Observation L229585 with 6 failed, 4 done and 5 todo tokens; L230461 with 2 failed."""
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    docs = [failing(n, 3, "Disk quota exceeded", OBSID="L229585") for n in range(6)]
    docs += [surf_token(n, lock=NOW - 7200, done=NOW - 3600, exit_code=0, OBSID="L229585") for n in range(6, 10)]
    docs += [surf_token(n, OBSID="L229585") for n in range(10, 15)]
    docs += [failing(n, 3, "Disk quota exceeded", OBSID="L230461") for n in range(15, 17)]
    scratch_pool.bulk_docs(docs)
    return scratch_pool


def test_acting_on_all_of_a_list_acts_on_the_state_in_view_and_the_preview_says_so_in_words(
        live_server, observations, open_page, olga):
    slug = observations.database
    page = open_page("phone")
    log_in(page, live_server.url, "olga")

    def dry_run():
        assert page.locator("main h1").is_visible()
        assert overflow(page) <= 1, page.url
        assert no_python_none(page), page.url
        return page.locator("p.dryrun").inner_text()

    page.goto(live_server.url + f"/pools/{slug}/obs/?type=token&group=L229585")
    assert overflow(page) <= 1
    page.get_by_role("link", name="Retry its 6 failed tokens…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert dry_run() == ("Dry run: this would reset / retry 6 tokens — error tokens of L229585. "
                         "Nothing has been written.")
    assert page.get_by_role("button", name="Reset / retry 6 tokens").is_visible()
    shoot(page, "retry-observation-phone")

    page.goto(live_server.url + f"/pools/{slug}/obs/?type=token&group=L229585")
    page.get_by_role("link", name="Act on its 15 tokens in every state but locked…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert dry_run() == ("Dry run: this would reset / retry 15 tokens — all tokens of L229585 in every state but "
                         "locked (a worker may hold those: use Stale locks). Nothing has been written.")

    # A list's "act on all" (nothing ticked) is that list: its state, its observation, and the action chosen.
    for state, action, says in (
            ("error", None, "reset / retry 6 tokens — error tokens of L229585"),
            ("done", "Set a field", "set a field on 4 tokens — done tokens of L229585")):
        page.goto(live_server.url + f"/pools/{slug}/tokens/?state={state}&type=token&group=L229585")
        act = page.locator("form.act")
        assert act.get_by_label("Act on the ticked tokens").input_value() == "reset"  # the default action
        if action:
            act.get_by_label("Act on the ticked tokens").select_option(label=action)
        assert overflow(page) <= 1
        act.get_by_role("button", name="Preview…").click()
        page.wait_for_url(re.compile(rf"/jobs/new/\?.*bucket={state}"))
        assert f"this would {says}. Nothing" in dry_run()
    page.goto(live_server.url + f"/pools/{slug}/tokens/?state=error")
    page.locator("form.act").get_by_role("button", name="Preview…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert "this would reset / retry 8 tokens — error tokens. Nothing" in dry_run()  # both observations
    # A preview that names no state asks for one: never every state, never "Unknown state None".
    response = page.goto(live_server.url + f"/pools/{slug}/jobs/new/?action=reset&kind=state")
    assert response.status == 400 and alert(page).startswith("Name the state of the tokens to act on: one of todo")
    assert no_python_none(page)
    assert not Job.objects.exists()


# --- 8, 9, 10: forms and token sets -----------------------------------------------------------------------------


def tokenset_form(page):
    return page.locator("form[enctype='multipart/form-data']")


def fill_tokenset(page, config, items=None, token_type=TYPE, list_file=None):
    form = tokenset_form(page)
    form.locator("textarea[name=config]").fill(config)
    if items is not None:
        form.locator("textarea[name=input_list]").fill(items)
    if list_file:
        form.locator("input[name=input_list_file]").set_input_files(list_file)
    form.get_by_label("Token type / observation").fill(token_type)
    return submit(page, form.get_by_role("button", name="Preview…"), "/tokensets/new/")


def tokens_in(db):
    return [r["id"] for r in db.call(db.client.post_all_docs, db=db.database)["rows"]
            if not r["id"].startswith("_design/")]


def test_a_refused_form_keeps_what_was_typed_and_says_which_file_to_choose_again(
        live_server, scratch_pool, open_page, settings, olga):
    settings.JOB_CONFIRM_THRESHOLD = 3
    scratch_pool.bulk_docs([surf_token(n) for n in range(5)])
    slug = scratch_pool.database
    page = open_page()
    log_in(page, live_server.url, "olga")

    page.goto(live_server.url + f"/pools/{slug}/jobs/new/?action=set_field&kind=state&bucket=todo")
    form = page.locator("form.jobform")
    form.locator("input[name=field]").fill("priority")
    form.locator("input[name=value]").fill("five")
    form.locator("select[name=value_type]").select_option("number")
    form.get_by_label("Type 5 to confirm").fill("5")
    assert submit(page, form.get_by_role("button", name="Set a field 5 tokens"), "/jobs/").status == 400
    assert alert(page) == "'five' is not a number"
    assert [form.locator(f"[name={name}]").input_value() for name in ("field", "value", "value_type", "confirmation")
            ] == ["priority", "five", "number", "5"]
    assert "Dry run: this would set a field on 5 tokens — todo tokens" in page.locator("p.dryrun").inner_text()

    page.goto(live_server.url + f"/pools/{slug}/jobs/new/?action=attach&kind=state&bucket=todo")
    form = page.locator("form.jobform")
    form.locator("input[name=file]").set_input_files({"name": "notes.txt", "mimeType": "text/plain",
                                               "buffer": b"calibrated with the 2026 model\n"})
    form.get_by_label("Attachment name").fill("run-notes.txt")
    form.get_by_label("Type 5 to confirm").fill("4")
    assert submit(page, form.get_by_role("button", name="Attach a file 5 tokens"), "/jobs/").status == 400
    assert alert(page).startswith("Type the number of tokens (5)")
    assert ("Choose the file (notes.txt) again: a browser never fills in a file field. Everything else is kept."
            in page.locator(".banner.warn").inner_text())
    assert form.get_by_label("Attachment name").input_value() == "run-notes.txt"
    assert form.get_by_label("Type 5 to confirm").input_value() == "4"
    assert form.locator("input[name=file]").evaluate("e => e.files.length") == 0  # to be chosen again, as it says

    page.goto(live_server.url + f"/pools/{slug}/tokensets/new/")
    tokenset_form(page).get_by_label("Items per token").fill("5")
    response = fill_tokenset(page, CONFIG, list_file={"name": "list.bin", "mimeType": "application/octet-stream",
                                                      "buffer": b"\xff\xfe\x00binary"})
    assert response.status == 400
    assert ("The file list.bin could not be read and must be chosen again (a browser never fills in a file field); "
            "everything typed is kept below.") in alert(page)
    form = tokenset_form(page)
    assert form.locator("textarea[name=config]").input_value().strip() == CONFIG.strip()
    assert form.get_by_label("Token type / observation").input_value() == TYPE
    assert form.get_by_label("Items per token").input_value() == "5"
    assert not Job.objects.exists() and all(d.get("lock") == 0 for d in map(scratch_pool.get, tokens_in(scratch_pool)))
    assert not any("_attachments" in scratch_pool.get(i) for i in tokens_in(scratch_pool))


def test_a_token_set_whose_observations_disagree_names_the_bad_lines_and_writes_nothing(
        live_server, scratch_pool, open_page, olga):
    slug = scratch_pool.database
    page = open_page()
    log_in(page, live_server.url, "olga")
    page.goto(live_server.url + f"/pools/{slug}/tokensets/new/")

    other_obsid = CONFIG.replace('OBSID: ""', "OBSID: L230461", 1)
    assert fill_tokenset(page, other_obsid, SURLS).status == 400
    assert alert(page) == ("The SURLs are of observation L229585, but the config's OBSID names L230461: one token set "
                           "is one observation. Nothing was written; everything typed or "
                           "uploaded is kept below.")
    assert "OBSID: L230461" in tokenset_form(page).locator("textarea[name=config]").input_value()

    lines = SURLS.splitlines()
    lines.insert(2, "L229585_SB102_uv.dppp.MS.tar")
    lines.insert(6, "srm.txt")
    assert fill_tokenset(page, CONFIG, "\n".join(lines)).status == 400
    assert alert(page).startswith("2 of the 52 items are not like the rest (SURLs): line 3: L229585_SB102_uv.dppp.MS"
                                  ".tar; line 7: srm.txt. A list is either all SURLs or plain items")
    assert "srm.txt" in tokenset_form(page).locator("textarea[name=input_list]").input_value()

    assert fill_tokenset(page, CONFIG, SURLS, token_type="pref_cal1_L230461").status == 400
    assert alert(page).startswith("The SURLs are of observation L229585, but the token type pref_cal1_L230461 names "
                                  "L230461")
    assert page.locator("section.dryrun").count() == 0
    assert tokens_in(scratch_pool) == [] and not Job.objects.exists()


def test_a_token_set_that_exists_already_says_so_and_offers_nothing_to_create(
        live_server, scratch_pool, open_page, celery_worker, olga):
    slug = scratch_pool.database
    page = open_page("phone")
    log_in(page, live_server.url, "olga")
    page.goto(live_server.url + f"/pools/{slug}/tokensets/new/")
    assert overflow(page) <= 1

    assert fill_tokenset(page, CONFIG, SURLS).status == 200
    assert page.locator("section.dryrun p").first.inner_text().startswith(
        "Dry run: 6 tokens for observation L229585, keyed 100, 110, 120, 130, 140, 150. Nothing has been written.")
    create = page.locator("form[action$='/tokensets/']")
    assert create.locator("textarea").count() == 1 and not create.locator("textarea").is_visible()  # the config
    assert create.locator("input[name=input_list_upload]").count() == 1  # the list waits on the server
    assert overflow(page) <= 1
    create.get_by_role("button", name="Create 6 tokens").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.locator("#progress .status.succeeded").wait_for()
    assert page.locator("#progress table.counts tr").nth(1).locator("td").nth(1).inner_text() == "6"
    assert len(tokens_in(scratch_pool)) == 6

    page.goto(live_server.url + f"/pools/{slug}/tokensets/new/")
    assert fill_tokenset(page, CONFIG, SURLS).status == 200
    assert page.get_by_role("status").inner_text().startswith("All 6 tokens exist already: there is nothing to "
                                                              "create.")
    assert "6 of these ids exist already" in page.locator("section.dryrun").inner_text()
    assert page.locator("form[action$='/tokensets/']").count() == 0
    assert page.get_by_role("button", name=re.compile("^Create")).count() == 0
    assert tokenset_form(page).locator("textarea[name=config]").input_value().strip() == CONFIG.strip()  # to change
    shoot(page, "tokenset-exists-phone")
    assert overflow(page) <= 1
    assert Job.objects.count() == 1


def test_a_list_file_of_thousands_of_surls_is_previewed_from_the_server_and_created_never_put_in_the_page(
        live_server, scratch_pool, open_page, celery_worker, olga, tmp_path, settings):
    settings.JOB_CONFIRM_THRESHOLD = 1000
    surls = [f"srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229585/"
             f"L229585_SB{n:03d}_uv.dppp.MS_2b1cf5e8.tar" for n in range(20_000)]
    listing = tmp_path / "L229585_all.txt"
    listing.write_text("# all subbands\n" + "\n".join(surls[::-1] + surls[:100]) + "\n")  # unsorted, repeats
    slug = scratch_pool.database
    for width in ("desktop", "phone"):
        page = open_page(width)
        log_in(page, live_server.url, "olga")
        page.goto(live_server.url + f"/pools/{slug}/tokensets/new/")
        assert fill_tokenset(page, CONFIG, list_file=str(listing)).status == 200
        assert page.locator("section.dryrun p").first.inner_text().startswith(
            "Dry run: 2000 tokens from the list file L229585_all.txt for observation L229585, keyed 000, 010, 020, "
            "030, 040, 050, 060, 070, 080, 090, 100, 110 … 19990. Nothing has been written.")
        assert "kept on the server" in tokenset_form(page).inner_text()
        assert len(page.content()) < 200_000 and "SB19999_" not in page.content()  # 2.6 MB of SURLs stay away
        shoot(page, f"tokenset-list-file-{width}")
        assert overflow(page) <= 1
    create = page.locator("form[action$='/tokensets/']")
    create.get_by_label("Type 2000 to confirm").fill("2000")
    create.get_by_role("button", name="Create 2000 tokens").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.locator("#progress .status.succeeded").wait_for()
    assert len(tokens_in(scratch_pool)) == 2000
    last = scratch_pool.get(f"t_{TYPE}_L229585_pref_cal1_SB19990")
    assert last["STARTSB"] == "19990"


# --- 12: the job page and the jobs list ---------------------------------------------------------------------------


def test_a_job_page_says_when_it_finished_how_long_it_ran_what_it_did_and_who_started_it_how(
        live_server, scratch_pool, open_page, celery_worker, olga):
    docs = [failing(n, 3, "Disk quota exceeded") for n in range(3)]
    docs += [surf_token(n, lock=NOW - 7200, done=NOW - 3600, exit_code=0) for n in range(3, 7)]
    docs += [surf_token(7, lock=NOW - 30 * 3600, hostname="wn-dead.example.org"), surf_token(8)]
    scratch_pool.bulk_docs(docs)
    slug = scratch_pool.database
    page = open_page("phone")
    log_in(page, live_server.url, "olga")

    def ended(pk):
        page.goto(live_server.url + f"/jobs/{pk}/")
        page.locator("#progress .status.succeeded").wait_for()
        assert overflow(page) <= 1
        return page

    # In the browser: reset the failed tokens.
    page.goto(live_server.url + f"/pools/{slug}/tokens/?state=error")
    page.locator("form.act").get_by_role("button", name="Preview…").click()
    page.get_by_role("button", name="Reset / retry 3 tokens").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    web = int(page.url.rstrip("/").rsplit("/", 1)[1])
    # Through the API: a number in a field.
    made = Api(openapi(), token_for(olga)).post(f"/api/v1/pools/{slug}/jobs", {
        "action": "set_field", "selection": {"kind": "state", "bucket": "done"},
        "params": {"field": "priority", "value": 5}, "dry_run": False})
    assert made.status_code == 201
    api = made.json()["id"]
    # From the command line: the stale lock.
    call_command("tokens", "reset", "--pool", slug, "--stale-hours", "24", "--user", "olga")
    cli = Job.objects.get(via="cli").pk
    login = Job.objects.get(pk=cli).shell_user
    shell_login = f" (shell login {login})" if login and login != "olga" else ""

    expected = {
        web: ("error tokens", "olga, in the browser, on ", "Attachments kept; error history kept",
              "3 tokens matched when the job was made"),
        api: ("done tokens", "olga, through the API, on ", "Set “priority” to 5 (a number)",
              "4 tokens matched when the job was made"),
        # The shell's login beside the dashboard user the command was told (--user), where they differ.
        cli: ("tokens locked longer than 24 hours", f"olga{shell_login}, from the command line, on ",
              "Attachments kept; error history kept", "1 token matched when the job was made"),
    }
    for pk, (selection, started_by, does, dry) in expected.items():
        ended(pk)
        assert fact(page, "Selection") == selection
        assert fact(page, "Started by").startswith(started_by) and fact(page, "Started by").endswith(" UTC")
        assert fact(page, "What it does") == does
        assert fact(page, "Dry run") == dry
        assert re.fullmatch(r"Finished \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, after running (\d+ min )?\d+ s"
                            r"( \(queued (\d+ min )?\d+ s before a worker took it\))?\.",
                            page.locator("#progress p.muted").first.inner_text()), pk
        assert no_python_none(page)
    shoot(page, "job-cli-phone")

    page.goto(live_server.url + "/jobs/")
    rows = page.locator("table.grid tbody tr")
    assert page.locator("table.grid thead th").nth(3).inner_text() == "Via"
    via = {int(rows.nth(i).locator("td").nth(0).inner_text()): rows.nth(i).locator("td").nth(3).inner_text()
           for i in range(rows.count())}
    assert via == {web: "in the browser", api: "through the API", cli: "from the command line"}
    assert overflow(page) <= 1
    page.get_by_label("Via").select_option(label="from the command line")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/jobs/\?.*via=cli"))
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())] == [str(cli)]
    assert page.get_by_label("Via").input_value() == "cli"  # the filter stays shown
    page.get_by_label("Via").select_option("")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"/jobs/\?.*status=failed"))
    assert rows.count() == 1 and rows.first.inner_text() == "No job matches these filters."
    shoot(page, "jobs-filtered-phone")
    assert overflow(page) <= 1


# --- 13: unknown-age locks; where a long list stands ---------------------------------------------------------------


def test_locks_of_unknown_age_get_a_reset_like_stale_ones_with_their_age_said_unknown(
        live_server, scratch_pool, open_page, celery_worker, olga):
    scratch_pool.bulk_docs([surf_token(1, lock=NOW - 30 * 3600, hostname="wn-dead.example.org"),
                            surf_token(2, lock=NOW - 300, hostname="wn-2.example.org")]
                           + [surf_token(n, lock=1, hostname="wn-3.example.org") for n in range(3, 6)]
                           + [surf_token(n) for n in range(6, 9)])
    slug = scratch_pool.database
    page = open_page("phone")
    log_in(page, live_server.url, "olga")
    page.goto(live_server.url + f"/pools/{slug}/stale/")
    assert page.get_by_label("Locked longer than").input_value() == "24"
    text = main_text(page)
    assert "1 token locked longer than 24 hours, oldest first." in text
    assert "Locks of unknown age (3)" in text
    stale_rows, unknown_rows = page.locator("table.grid").nth(0), page.locator("table.grid").nth(1)
    assert stale_rows.locator("tbody tr").count() == 1 and "wn-dead.example.org" in stale_rows.inner_text()
    ages = [unknown_rows.locator("tbody tr").nth(i).locator("td").nth(3).inner_text() for i in range(3)]
    assert ages == ["unknown"] * 3
    # The same actions as old locks: a reset (a dry run first) and an export, each.
    assert page.get_by_role("link", name="Reset this stale lock…").is_visible()
    assert page.get_by_role("link", name="Reset these 3 locks of unknown age…").is_visible()
    assert page.locator("details.export").count() == 2
    shoot(page, "stale-unknown-phone")
    assert overflow(page) <= 1

    page.get_by_role("link", name="Reset this stale lock…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert page.locator("p.dryrun").inner_text() == ("Dry run: this would reset / retry 1 token — tokens locked "
                                                    "longer than 24 hours. Nothing has been written.")
    page.go_back()
    page.get_by_role("link", name="Reset these 3 locks of unknown age…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert page.locator("p.dryrun").inner_text() == ("Dry run: this would reset / retry 3 tokens — locked, age unknown "
                                                    "tokens. Nothing has been written.")
    assert overflow(page) <= 1
    page.get_by_role("button", name="Reset / retry 3 tokens").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.locator("#progress .status.succeeded").wait_for()
    assert [scratch_pool.get(f"token_{n:05d}")["lock"] for n in range(1, 6)] == [NOW - 30 * 3600, NOW - 300, 0, 0, 0]


def test_a_long_list_says_which_tokens_of_how_many_it_shows_and_pages_back(
        live_server, scratch_pool, open_page, settings):
    settings.PAGE_SIZE = 10
    scratch_pool.bulk_docs([surf_token(n) for n in range(25)] + [surf_token(25, lock=NOW - 60)])
    make_user("victor", VIEWERS)
    page = open_page("phone")
    log_in(page, live_server.url, "victor")
    page.goto(live_server.url + f"/pools/{scratch_pool.database}/tokens/?state=todo")
    rows = page.locator("table.grid tbody tr")

    def shown():
        assert overflow(page) <= 1
        ids = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
        return range_shown(page), ids[0], ids[-1], [link.inner_text() for link in page.locator("p.pager a").all()]

    def follow(name):
        page.get_by_role("link", name=name).click()
        page.wait_for_load_state()

    assert shown() == ("Tokens 1–10 of 25", "token_00000", "token_00009", ["Next page →"])
    assert "UTC; workers move tokens meanwhile" in page.locator("p.range").inner_text()
    follow("Next page →")
    assert shown() == ("Tokens 11–20 of 25", "token_00010", "token_00019", ["← Previous page", "Next page →"])
    shoot(page, "tokens-page-2-phone")
    follow("Next page →")
    assert shown() == ("Tokens 21–25 of 25", "token_00020", "token_00024", ["← Previous page"])
    follow("← Previous page")
    assert shown() == ("Tokens 11–20 of 25", "token_00010", "token_00019", ["← Previous page", "Next page →"])
    follow("← Previous page")
    assert shown() == ("Tokens 1–10 of 25", "token_00000", "token_00009", ["Next page →"])


# --- 14: wording ------------------------------------------------------------------------------------------------


def test_counts_are_said_with_their_plurals_exit_codes_and_picas_99_explained_and_never_none(
        live_server, scratch_pool, open_page, olga):
    picas_error = surf_token(1, lock=99, done=99, hostname="wn-4.example.org",
                             error=[{"time": NOW - 3600, "message": "ValueError: no such subband",
                                     "exception": "Traceback ..."}])
    scratch_pool.bulk_docs([failing(0, 137, "Killed"), picas_error,
                            surf_token(2, lock=NOW - 30 * 3600, hostname="wn-dead.example.org"),
                            surf_token(3), surf_token(4, lock=NOW - 7200, done=NOW - 3600, exit_code=0)])
    slug = scratch_pool.database
    page = open_page()
    log_in(page, live_server.url, "olga")
    assert page.locator("form.who span").inner_text() == "Signed in as olga (may act)"  # not "operator · operator"

    page.goto(live_server.url + f"/pools/{slug}/failures/")
    text = main_text(page)
    assert "2 failed tokens, grouped by exit code" in text
    assert "exit code 137: killed (SIGKILL: often out of memory, or the batch system's limit)" in text
    assert "no exit code: the worker's code raised (picas marks lock = done = 99)" in text
    assert no_python_none(page)

    page.goto(live_server.url + f"/pools/{slug}/stale/?hours=1")
    text = main_text(page)
    assert "1 token locked longer than 1 hour, oldest first." in text and "Locks of unknown age (0)" in text
    assert page.get_by_role("link", name="Reset this stale lock…").is_visible()
    assert no_python_none(page)  # an empty table says what it lacks
    page.get_by_role("link", name="Reset this stale lock…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert page.locator("p.dryrun").inner_text() == ("Dry run: this would reset / retry 1 token — tokens locked "
                                                    "longer than 1 hour. Nothing has been written.")
    assert page.get_by_role("button", name="Reset / retry 1 token").is_visible()

    page.goto(live_server.url + f"/pools/{slug}/token/?id=token_00001")
    locked = page.locator("dl.facts dt", has_text="Locked").locator("xpath=following-sibling::dd[1]").inner_text()
    assert locked == ("99 picas's marker, not a time: the worker's code raised an exception (its time and traceback "
                      "are under Errors)")
    assert fact(page, "Done") == "99 picas's marker, not a time (see Locked)"
    assert no_python_none(page)  # no job touched it: said in words

    for path in (f"/pools/{slug}/", f"/pools/{slug}/tokens/?state=error", "/jobs/"):
        page.goto(live_server.url + path)
        assert page.locator("main h1").is_visible() and no_python_none(page), path


def test_the_demo_looks_like_a_survey_at_work_observations_at_stages_days_of_work_a_wave_stale_locks_hosts(
        live_server, demo_pools, open_page):
    """Item 3: what a user first sees. SURF's demo pool, as its pages show it."""
    from tests.conftest import SURF

    make_user("victor", VIEWERS)
    page = open_page("desktop")
    log_in(page, live_server.url, "victor")
    answer = page.request.get(f"{live_server.url}/api/v1/pools/{SURF}")  # the pool page's figures, its API twin
    assert answer.status == 200, answer.text()
    data = answer.json()
    done = {o["label"]: o["percent_done"] for o in data["observations"]}
    assert set(done) == {"L229585", "L230001", "L231777"}
    assert done["L229585"] > done["L230001"] > done["L231777"]  # three stages
    finished = {o["label"]: o["counts"]["todo"] for o in data["observations"]}
    assert finished["L229585"] == 0 and finished["L231777"] > finished["L230001"] > 0
    assert data["black_holes"] == ["wn-lot-066.gina.surfsara.nl"]  # the wave of a few hours ago

    page.goto(f"{live_server.url}/pools/{SURF}/")
    assert "Black hole: wn-lot-066.gina.surfsara.nl" in page.locator(".banner").first.inner_text()
    days = {rect.get_attribute("data-hour")[:10] for rect in
            page.locator("figure.chart").first.locator("g[data-series=done] rect.col").all()}
    assert len(days) >= 3  # work spread over the days of the chart, not one burst
    page.goto(f"{live_server.url}/pools/{SURF}/stale/")
    assert re.search(r"\d+ tokens? locked longer than 24 hours", page.locator("main").inner_text())
    page.goto(f"{live_server.url}/pools/{SURF}/hosts/?window=7d")
    assert page.locator("table.grid").first.locator("tbody tr").count() >= 5  # several hosts
    text = page.locator("main").inner_text()
    assert "<script" not in text and "onerror" not in text  # hostile strings are the tests' business
