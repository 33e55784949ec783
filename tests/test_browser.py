"""End to end in a real browser: Debian's Chromium driven by Playwright against the site served by a real server
thread (pytest-django's live_server), on the same test database, CouchDB, Redis and Celery worker as the other tests.

An operator logs in, follows the largest failure group to a token and its log, resets the group and watches the job
end; a viewer sees no action controls; every main page is screenshot at desktop and phone width into
test-artifacts/screenshots/ and must not overflow the window sideways.

Chromium is Debian's (`apt-get install -y chromium`; `make test` installs it when it can). Without it these tests
fail, unless SKIP_BROWSER_TESTS=true says to skip them. The browser fixtures are in conftest.py, the helpers in
browsing.py (shared with test_first_hour.py).
"""

import re

import pytest
from playwright.sync_api import expect

from dashboard.roles import OPERATORS, VIEWERS
from tests.browsing import NOW, TIMEOUT_MS, WIDTHS, failing, log_in, overflow, shoot
from tests.conftest import LOFAR, SURF, index_own_views, make_user, surf_token
from tokens.models import Job, JobToken
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db(transaction=True)

# Anything a viewer must not see: job previews, token sets, job forms (start, cancel), ticks to select tokens.
ACTION_CONTROLS = "a[href*='/jobs/new/'], a[href*='/tokensets/new/'], form[action*='/jobs/'], input[name=ids]"


def error_locator(page):
    return page.locator("ul.legend li", has=page.locator("a[href$='?state=error']")).locator("strong")


def error_count(page):
    return int(error_locator(page).inner_text())


@pytest.fixture
def busy_pool(scratch_pool):
    """A pool mid-run: done, todo, locked and stale tokens, and three failure groups of different sizes."""
    docs = [failing(n, 3, f"Disk quota exceeded writing /scratch/run_{n}/out.fits on wn-{n}.example.org")
            for n in range(0, 40)]
    docs += [failing(n, 1, f"Segmentation fault at 0x7f3a{n:04x}") for n in range(40, 52)]
    docs += [failing(n, 21, "Download failed: srm://srm.grid.example.org/lofar/L229585 not staged")
             for n in range(52, 58)]
    docs += [surf_token(n, lock=NOW - 7200, done=NOW - 3000 - n, exit_code=0, hostname="wn-1.example.org")
             for n in range(58, 88)]
    docs += [surf_token(n, lock=NOW - 300, hostname="wn-2.example.org") for n in range(88, 93)]
    docs += [surf_token(n, lock=NOW - 30 * 3600, hostname="wn-dead.example.org") for n in range(93, 96)]
    docs += [surf_token(n) for n in range(96, 116)]
    assert not [r for r in scratch_pool.bulk_docs(docs) if r.get("error")]
    # Settled, as a pool is after its first minutes: a page read while the server still builds the index shows no
    # failure groups yet (a busy machine took longer than the test's first look; a pool being indexed has tests
    # of its own).
    index_own_views(scratch_pool, get_pool(scratch_pool.database).group_field)
    return scratch_pool


def test_an_operator_follows_the_largest_failure_group_resets_it_and_watches_the_job_end(
        live_server, busy_pool, open_page, settings, celery_worker):
    settings.JOB_CONFIRM_THRESHOLD = 20  # the group is 40: the count must be typed
    settings.JOB_BATCH_SIZE = 5  # several batches, so the job page has progress to show
    settings.COUNTS_MAX_AGE = 2  # as in production: the pool page polls and refreshes its counts every few seconds
    make_user("olga", OPERATORS)
    slug = busy_pool.database
    page = open_page()
    expect.set_options(timeout=TIMEOUT_MS)
    log_in(page, live_server.url, "olga")

    page.get_by_role("link", name=slug, exact=True).first.click()
    page.wait_for_url(f"**/pools/{slug}/")
    bars = page.locator("#observations .bar")
    assert bars.count() >= 1 and bars.first.locator(".seg.error").is_visible()
    assert bars.first.locator(".seg.done").is_visible() and bars.first.locator(".seg.todo").is_visible()
    errors_before = error_count(page)
    assert errors_before == 58

    page.locator("nav.poolnav").get_by_role("link", name="Failures").click()
    largest = page.locator("table.grid tbody tr").first
    assert largest.locator("td").first.inner_text() == "40"
    assert "Disk quota exceeded" in largest.inner_text()
    largest.locator("td").first.get_by_role("link").click()
    page.wait_for_url(re.compile(r"/tokens/\?code=3&"))
    assert page.locator("table.grid tbody tr").count() == 40

    page.locator("table.grid tbody tr").first.locator("a[href*='/token/']").click()
    page.wait_for_url(re.compile(r"/token/\?id="))
    token_id = page.locator("h1.tokenid").inner_text()
    n = int(token_id.rsplit("_", 1)[1])
    assert page.locator("pre.log").first.inner_text().startswith(f"starting run {n}")
    page.get_by_role("link", name="view").first.click()
    page.wait_for_url(re.compile(r"/attachment/\?.*inline=1"))
    assert "Disk quota exceeded" in page.locator("body").inner_text()
    page.go_back()
    page.go_back()
    page.go_back()

    page.wait_for_url("**/failures/")
    page.locator("table.grid tbody tr").first.get_by_role("link", name="Retry this group…").click()
    page.wait_for_url(re.compile(r"/jobs/new/\?"))
    assert re.search(r"Dry run: this would reset / retry 40 tokens", page.locator("p.dryrun").inner_text())
    page.get_by_label("Type 40 to confirm").fill("40")
    page.get_by_role("button", name="Reset / retry 40 tokens").click()

    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.evaluate("window.notReloaded = true")  # the bar must move by htmx polling, not by reloading the page
    page.locator("#progress progress[value='100']").wait_for()
    page.locator("#progress .status.succeeded").wait_for()
    assert page.evaluate("window.notReloaded") is True
    counts = page.locator("#progress table.counts tr").nth(1).locator("td")
    assert counts.nth(0).inner_text() == "40 / 40" and counts.nth(1).inner_text() == "40"
    job = Job.objects.get()
    assert (job.status, job.changed, job.user.username) == ("succeeded", 40, "olga")

    page.get_by_role("link", name=f"Back to {slug}").click()
    page.wait_for_url(f"**/pools/{slug}/")
    # The counts were refreshed after the job, or the page's own polling brings them within COUNTS_MAX_AGE.
    expect(error_locator(page)).to_have_text(str(errors_before - 40))
    assert busy_pool.get(token_id)["lock"] == 0


def test_a_viewer_sees_no_action_controls(live_server, busy_pool, open_page):
    make_user("olga", OPERATORS)
    make_user("victor", VIEWERS)
    slug = busy_pool.database
    job = Job.objects.create(pool=slug, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=1, status=Job.FAILED, message="for the test")
    JobToken.objects.create(job=job, pool=slug, token_id="token_00001", outcome=JobToken.FAILED, reason="test")
    pages = [f"/pools/{slug}/", f"/pools/{slug}/failures/", f"/pools/{slug}/tokens/?state=error",
             f"/pools/{slug}/stale/?hours=1", f"/pools/{slug}/token/?id=token_00001", f"/jobs/{job.pk}/",
             f"/jobs/{job.pk}/tokens/?outcome=failed"]
    as_operator = open_page()
    log_in(as_operator, live_server.url, "olga")
    as_viewer = open_page()
    log_in(as_viewer, live_server.url, "victor")
    for path in pages:
        as_operator.goto(live_server.url + path)
        as_viewer.goto(live_server.url + path)
        assert as_viewer.locator("main h1").is_visible()
        if "/token/" not in path:  # the token page has no controls for anyone
            assert as_operator.locator(ACTION_CONTROLS).count() > 0, path
        assert as_viewer.locator(ACTION_CONTROLS).count() == 0, path
        assert "(read only)" in as_viewer.locator("form.who").inner_text()


def test_a_pool_the_server_is_still_indexing_says_its_counts_come_from_the_documents(live_server, scratch_pool,
                                                                                      open_page, settings):
    from tokens import counting
    from tokens.pools import get_pool

    settings.COUCHDB_GROUP_FIELD = "OBSID"
    settings.COUNTS_INDEX_WAIT = 0.2  # far less than any server takes to index 12,000 tokens
    settings.COUNTS_MAX_AGE = 3600  # the page shows the counts taken here, not a later refill from the built view
    docs = [surf_token(n, OBSID=f"L{229585 + n % 3}") for n in range(6_000)]
    docs += [surf_token(n, lock=NOW - 900, done=NOW - 60, exit_code=n % 2, OBSID=f"L{229585 + n % 3}")
             for n in range(6_000, 12_000)]
    for start in range(0, len(docs), 5000):
        scratch_pool.bulk_docs(docs[start:start + 5000])
    assert counting.refresh(get_pool(scratch_pool.database)).data["indexing"]
    make_user("victor", VIEWERS)
    for width in WIDTHS:
        page = open_page(width)
        log_in(page, live_server.url, "victor")
        page.goto(live_server.url + f"/pools/{scratch_pool.database}/")
        banner = page.locator(".banner.warn[role=status]")
        assert banner.inner_text().startswith("Counted from the documents themselves: the server is")
        assert page.locator("ul.legend").inner_text().count("3,000") + page.locator(
            "ul.legend").inner_text().count("3000") >= 2  # done and error, 3,000 each
        # While the pool's past is still being read (after the index is built), the last hour's figures say they
        # wait, never a 0 that reads as "nothing finished".
        first_row = page.locator("table.observations tbody tr").first.locator("td")
        assert [first_row.nth(i).inner_text() for i in (-2, -1)] == ["…", "…"]
        shoot(page, f"pool-indexing-{width}")
        assert overflow(page) <= 1
        page.get_by_role("link", name="L229585 · token").click()
        assert "ETA: waits for the pool's past" in page.locator("#counts").inner_text()
        assert page.locator(".banner.warn[role=status]").is_visible()


def test_every_main_page_fits_a_desktop_and_a_phone_screen(live_server, demo_pools, open_page, couch):
    make_user("olga", OPERATORS)
    surf = couch(SURF)
    error_ids = [r["id"] for r in surf.view("picas-dashboard", "states", start_key=["error"], end_key=["error", {}],
                                            reduce=False, limit=50)["rows"]] if _has_own_views(surf) else []
    token_id = next((i for i in error_ids if surf.get(i).get("_attachments")), None)
    job = Job.objects.create(pool=SURF, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=3, status=Job.SUCCEEDED, total=3, changed=2, skipped=1)
    JobToken.objects.create(job=job, pool=SURF, token_id=token_id or "token_00001", outcome=JobToken.SKIPPED,
                            reason="changed meanwhile (now locked)", conflicted=True)
    for n in (2, 3):
        JobToken.objects.create(job=job, pool=SURF, token_id=f"token_{n:05d}", outcome=JobToken.CHANGED,
                                rev_before=f"{n}-6ada97f388573f94695dc15caeadefd9",
                                rev_after=f"{n + 1}-9c191d46120e05cbb8c04036e827c1f2")
    pages = {
        "pools": "/",
        "pool": f"/pools/{LOFAR}/",
        "pool-surf": f"/pools/{SURF}/",
        "failures": f"/pools/{SURF}/failures/",
        "tokens": f"/pools/{SURF}/tokens/?state=error",
        "stale": f"/pools/{SURF}/stale/?hours=1",
        "hosts": f"/pools/{SURF}/hosts/?window=30d",
        "alerts": f"/pools/{SURF}/alerts/",
        "wall": "/?wall=1",
        "job-dry-run": f"/pools/{SURF}/jobs/new/?action=reset&kind=state&bucket=error",
        "job": f"/jobs/{job.pk}/",
        "job-tokens": f"/jobs/{job.pk}/tokens/?outcome=changed",
        "jobs": "/jobs/",
        "tokenset-form": f"/pools/{LOFAR}/tokensets/new/",
        "account": "/account/",
    }
    too_wide = {}
    for width in WIDTHS:
        anonymous = open_page(width)
        anonymous.goto(live_server.url + "/accounts/login/")
        shoot(anonymous, f"login-{width}")
        too_wide[f"login-{width}"] = overflow(anonymous)
        page = open_page(width)
        log_in(page, live_server.url, "olga")
        visited = dict(pages)
        if token_id is None:  # the pool page creates the dashboard's views; ask again once it has
            page.goto(live_server.url + f"/pools/{SURF}/")
            error_ids = [r["id"] for r in surf.view("picas-dashboard", "states", start_key=["error"],
                                                    end_key=["error", {}], reduce=False, limit=50)["rows"]]
            token_id = next(i for i in error_ids if surf.get(i).get("_attachments"))
        visited["token"] = f"/pools/{SURF}/token/?id={token_id}"
        for name, path in visited.items():
            response = page.goto(live_server.url + path)
            assert response.status == 200, path
            page.wait_for_load_state("networkidle")
            shoot(page, f"{name}-{width}")
            too_wide[f"{name}-{width}"] = overflow(page)
            if name in ("pool", "pool-surf"):  # the chart opens at its newest hour, on a phone too
                assert page.evaluate("""() => {
                    const box = document.querySelector('figure.chart').getBoundingClientRect();
                    const ticks = [...document.querySelector('figure.chart').querySelectorAll('text.tick')];
                    const newest = ticks[ticks.length - 1].getBoundingClientRect();
                    return newest.left >= box.left && newest.right <= box.right + 1; }"""), f"{name}-{width}"
    assert {name: px for name, px in too_wide.items() if px > 1} == {}


def test_a_new_api_token_is_shown_once_with_a_copy_button_and_revoking_it_asks_first(live_server, open_page):
    from dashboard.models import ApiToken

    make_user("victor", VIEWERS)
    for width in WIDTHS:
        page = open_page(width)
        page.context.grant_permissions(["clipboard-read", "clipboard-write"])
        log_in(page, live_server.url, "victor")
        page.goto(live_server.url + "/account/")
        page.get_by_label("Name").fill(f"nightly report ({width})")
        page.get_by_role("button", name="Create token").click()
        secret = page.locator("#new-secret").inner_text().strip()
        assert secret.startswith("pcs_")
        page.get_by_role("button", name="Copy to clipboard").click()
        expect(page.get_by_role("button", name="Copied")).to_be_visible()
        assert page.evaluate("navigator.clipboard.readText()") == secret
        assert overflow(page) <= 1
        shoot(page, f"account-new-token-{width}")
        page.reload()  # a reload is a GET: no second token, and the secret is not shown again
        assert page.locator("#new-secret").count() == 0
        assert ApiToken.objects.filter(name=f"nightly report ({width})").count() == 1
        page.get_by_role("link", name="Revoke…").first.click()
        expect(page.get_by_text("cannot be undone")).to_be_visible()
        shoot(page, f"account-revoke-{width}")
        page.get_by_role("button", name=re.compile("^Revoke")).click()
        expect(page.get_by_text("revoked", exact=False).first).to_be_visible()
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()


def _has_own_views(db):
    try:
        db.get("_design/picas-dashboard")
    except Exception:
        return False
    return True
