"""The overview (home page): a card per pool, what needs attention first, its API twin, wall mode, phones.

Five pools in the conditions a lead meets: finished, running, failing, stalled, holding stale locks and fed by a
black-hole host. Their tokens are written as picas leaves them, with their own times; the dashboard reads them
through its counts and events (the backfill of a pool seen for the first time) like any pool.
"""

import html
import re
import time
import uuid

import pytest
from playwright.sync_api import expect

from dashboard.roles import VIEWERS
from dashboard.templatetags.picas import hours
from localsite import demo
from tests.api_client import api_as
from tests.browsing import WIDTHS, log_in, overflow, shoot
from tests.conftest import index_own_views, make_user, surf_token
from tokens import counting, overview
from tokens.pools import all_pools

NOW = int(time.time())
BLACK_HOLE, GOOD = "wn-666.gina.surfsara.nl", "wn-01.gina.surfsara.nl"


def done(n, minutes_ago, host=GOOD, **fields):
    return surf_token(n, lock=NOW - 60 * minutes_ago - 600, done=NOW - 60 * minutes_ago, exit_code=0, hostname=host,
                      **fields)


def failed(n, minutes_ago, host=GOOD, **fields):
    t = NOW - 60 * minutes_ago
    return surf_token(n, lock=t - 30, done=t, exit_code=1, hostname=host, error=[{"time": t, "message": "exit 1"}],
                      **fields)


CONDITIONS = {
    "finished": [done(n, 150 + n) for n in range(20)],
    "running": [done(n, 5 + n) for n in range(10)] + [surf_token(n) for n in range(10, 40)],
    # Failures spread over hosts (none fails more than the others: no black hole), 6 of the last hour's 8 finishes.
    "failing": [failed(n, 10 + n, f"wn-0{n % 3}.gina.surfsara.nl") for n in range(6)]
    + [done(n, 20, f"wn-0{n % 3}.gina.surfsara.nl") for n in range(6, 8)] + [surf_token(n) for n in range(8, 18)],
    "stalled": [done(n, 6 * 60 + n) for n in range(10)] + [surf_token(n) for n in range(10, 30)],
    # 8 of the last hour's 38 finishes failed (not failing), all on one host (a black hole); 3 locks from yesterday.
    "stale": [done(n, 3 + n, OBSID="L1") for n in range(30)]
    + [failed(n, 4 + n, BLACK_HOLE, OBSID="L2") for n in range(30, 38)]
    + [surf_token(n, lock=NOW - 30 * 3600, hostname="wn-dead", OBSID="L2") for n in range(38, 41)]
    + [surf_token(n, OBSID="L2") for n in range(41, 48)],
}


@pytest.fixture
def five_pools(couch_server, couch, settings):
    """{condition: database}: the pools counted, indexed and backfilled as a running site has them."""
    names = {c: f"ov-{c}-{uuid.uuid4().hex[:6]}" for c in CONDITIONS}
    settings.COUCHDB_DATABASES = list(names.values())
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    for condition, name in names.items():
        db = couch(name)
        db.create_database()
        demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, name)
        db.bulk_docs(CONDITIONS[condition])
        index_own_views(db, "OBSID")
    for pool in all_pools():
        counting.refresh(pool)  # the first counts
        counting.refresh(pool)  # and, every index built, the pool's past from its tokens' own times
    yield names
    for name in names.values():
        couch(name).delete_database()


def cards_by_condition(client, names):
    data = api_as(client).get("/api/v1/overview").json()
    by_db = {c["database"]: c for c in data["pools"]}
    return data, {condition: by_db[name] for condition, name in names.items()}


def test_each_pool_card_says_how_far_it_is_and_what_needs_attention_first(viewer_client, five_pools):
    data, cards = cards_by_condition(viewer_client, five_pools)
    assert not data["all_quiet"]
    assert {c: card["status"] for c, card in cards.items()} == {
        "finished": "finished", "running": "running", "failing": "failing", "stalled": "stalled",
        "stale": "black_hole"}
    # Attention first: the black hole (with its stale locks as a second reason), failing, stalled; then the calm.
    assert [c["database"] for c in data["pools"]] == [five_pools[c] for c in
                                                      ("stale", "failing", "stalled", "running", "finished")]
    finished, running, failing = cards["finished"], cards["running"], cards["failing"]
    assert (finished["percent_done"], finished["done"], finished["total"], finished["eta_basis"]) == (
        100.0, 20, 20, "complete")
    assert (running["done_last_hour"], running["remaining"], running["eta_hours"], running["eta_basis"]) == (
        10, 30, 3.0, "last hour")
    assert running["percent_done"] == 25.0 and running["reasons"] == []
    assert (failing["failed_last_hour"], failing["done_last_hour"], failing["error_rate_last_hour"]) == (6, 2, 0.75)
    assert failing["reasons"][0]["text"] == "75% of the last hour's finishes failed (6)"
    stalled = cards["stalled"]
    assert stalled["eta_basis"] == "last 24 hours" and stalled["done_last_hour"] == 0
    assert re.fullmatch(r"no token finished in [56] hours, 20 left", stalled["reasons"][0]["text"])
    stale = cards["stale"]
    assert stale["black_holes"] == [BLACK_HOLE] and stale["stale_locks"] == 3
    assert [r["kind"] for r in stale["reasons"]] == ["black_hole", "stale_locks"]
    assert stale["reasons"][1]["text"] == "3 locks older than 24 hours"
    assert [o["label"] for o in stale["observations"]] == ["L2"]  # L1 is all finished: not in progress
    assert stale["last_activity"] is not None


def page_cards(page):
    """(slug, status, percent done, ETA) of each card the overview shows, in its order."""
    shown = []
    for status, slug in re.findall(r'<li class="card (\w+)">\s*<h2><a href="/pools/([^/]+)/">', page):
        card = page[page.index(f'<h2><a href="/pools/{slug}/">'):]
        card = card[:card.index("</dl>")]
        percent = re.search(r"<strong>([\d.]+)% done</strong>", card)[1]
        eta = re.sub(r"<[^>]+>", "", re.search(r"<dt>ETA</dt><dd>(.*?)</dd>", card, re.S)[1])
        shown.append((slug, status, float(percent), " ".join(html.unescape(eta).split())))
    return shown


def eta_words(card):
    """The ETA as a card says it."""
    if card["eta_basis"] == "complete":
        return "complete"
    if card["eta_hours"] is None:
        return card["eta_basis"]
    rate = "last hour's" if card["eta_basis"] == "last hour" else "last 24 hours'"
    return f"{hours(card['eta_hours'])} at the {rate} rate"


def test_the_page_and_its_api_twin_give_the_same_cards(viewer_client, five_pools):
    api, _ = cards_by_condition(viewer_client, five_pools)
    response = viewer_client.get("/")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert page_cards(page) == [(c["slug"], c["status"], c["percent_done"], eta_words(c)) for c in api["pools"]]
    assert len(api["pools"]) == 5 and all(c["health"] == "ok" for c in api["pools"])
    assert "No counts yet" not in page
    # The page answers HTML only: asked for JSON, it says where the JSON is (the API), or answers its HTML.
    refused = viewer_client.get("/?format=json")
    assert refused.status_code == 406 and "/api/v1/" in refused.json()["error"]
    accepted = viewer_client.get("/", headers={"Accept": "application/json"})
    assert accepted.status_code == 200 and accepted["Content-Type"].startswith("text/html")
    assert page_cards(accepted.content.decode()) == page_cards(page)


def test_pools_that_need_nothing_are_all_quiet(viewer_client, couch_server, couch, settings):
    name = f"ov-quiet-{uuid.uuid4().hex[:6]}"
    settings.COUCHDB_DATABASES, settings.COUCHDB_GROUP_FIELD = [name], "OBSID"
    db = couch(name)
    db.create_database()
    try:
        demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, name)
        db.bulk_docs([done(n, 30 + n) for n in range(8)] + [surf_token(n) for n in range(8, 12)])
        index_own_views(db, "OBSID")
        [pool] = all_pools()
        counting.refresh(pool)
        counting.refresh(pool)
        data = api_as(viewer_client).get("/api/v1/overview").json()
        assert data["all_quiet"] and data["pools"][0]["status"] == "running"
        html = viewer_client.get("/").content.decode()
        assert "All quiet." in html and "No pool needs attention" in html
    finally:
        db.delete_database()


def test_an_unreachable_pool_comes_first_and_says_why(viewer_client, five_pools, settings):
    settings.COUCHDB_DATABASES = [*five_pools.values(), "ov-missing-pool"]
    data = api_as(viewer_client).get("/api/v1/overview").json()
    first = data["pools"][0]
    assert first["database"] == "ov-missing-pool" and first["status"] == "unreachable"
    assert first["reasons"][0]["text"].startswith("CouchDB: ")


def test_every_attention_kind_has_words_for_the_page():
    assert set(overview.STATUS_WORDS) == set(overview.ATTENTION + overview.CALM)


@pytest.mark.django_db(transaction=True)
def test_the_overview_reads_at_a_glance_on_a_desktop_a_phone_and_a_wall(live_server, five_pools, open_page,
                                                                          settings):
    settings.COUNTS_MAX_AGE = 2  # the wall polls every 10 s (its floor)
    make_user("victor", VIEWERS)
    for width in WIDTHS:
        page = open_page(width)
        log_in(page, live_server.url, "victor")
        cards = page.locator("ul.cards > li.card")
        expect(cards).to_have_count(5)
        first = cards.first
        assert "black hole" in first.locator("h2 .status").inner_text()
        assert BLACK_HOLE in first.locator("ul.reasons").inner_text()
        assert "3 locks older than 24 hours" in first.inner_text()
        assert "finished" in cards.last.locator("h2 .status").inner_text()
        assert "100.0% done" in cards.last.inner_text() and "20 of 20 tokens" in cards.last.inner_text()
        assert overflow(page) <= 1
        shoot(page, f"overview-{width}")
        first.locator("h2 a").click()
        page.wait_for_url(f"**/pools/{five_pools['stale']}/")

        wall = open_page(width)
        log_in(wall, live_server.url, "victor")
        wall.goto(live_server.url + "/?wall=1")
        assert wall.locator("header.top").count() == 0  # no navigation on a wall
        assert float(wall.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")) > 16
        assert overflow(wall) <= 1
        shoot(wall, f"overview-wall-{width}")
        # It keeps refreshing itself while shown: htmx swaps the cards in place, the page is not reloaded.
        wall.evaluate("window.notReloaded = true")
        with wall.expect_response(lambda r: "wall=1" in r.url and r.request.headers.get("hx-request") == "true"):
            pass
        assert wall.evaluate("window.notReloaded") is True
        expect(wall.locator("ul.cards > li.card")).to_have_count(5)


def test_last_activity_is_the_workers_last_move_not_an_operators_reset(viewer_client, five_pools):
    from tokens import operations
    from tokens.selections import Selection

    _, cards = cards_by_condition(viewer_client, five_pools)
    before = cards["failing"]["last_activity"]
    pool = next(p for p in all_pools() if p.database == five_pools["failing"])
    job = operations.create_job(pool, None, "reset", Selection("ids", ids=("token_00000",)), {})
    operations.run_job(job.pk)
    counting.refresh(pool)  # the reset, read from the changes feed: a move to todo, now
    _, cards = cards_by_condition(viewer_client, five_pools)
    assert cards["failing"]["last_activity"] == before  # still the workers' last finish, 10 minutes ago
    assert "Workers' last claim or finish" in viewer_client.get("/").content.decode()


@pytest.fixture
def twelve_pools(couch_server, couch, settings, demo_pools):
    """Eleven pools in the five conditions, and the demo's LOFAR pool made by GRID_LRT (its observations' long
    names): a survey's wall."""
    from tests.conftest import LOFAR

    names = [f"wall-{n:02d}-{uuid.uuid4().hex[:4]}" for n in range(11)]
    settings.COUCHDB_DATABASES = [*names, LOFAR]
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    conditions = list(CONDITIONS.values())
    for n, name in enumerate(names):
        db = couch(name)
        db.create_database()
        demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, name)
        db.bulk_docs(conditions[n % len(conditions)])
        index_own_views(db, "OBSID")
    for pool in all_pools():
        counting.refresh(pool)
        counting.refresh(pool)
    yield names
    for name in names:
        couch(name).delete_database()


def test_on_a_wall_twelve_pools_fill_the_screen_without_scrolling_readable_from_across_the_room(
        live_server, twelve_pools, open_page, viewer_client):
    wall = open_page((1920, 1080))  # victor is viewer_client's user
    log_in(wall, live_server.url, "victor")
    wall.goto(live_server.url + "/?wall=1")
    cards = wall.locator("ul.cards > li.card")
    expect(cards).to_have_count(12)
    shoot(wall, "overview-wall-1920x1080")
    sizes = wall.evaluate("""() => ({
        height: document.documentElement.scrollHeight, width: document.documentElement.scrollWidth,
        bottom: Math.max(...[...document.querySelectorAll('li.card')].map(c => c.getBoundingClientRect().bottom)),
        headline: Math.min(...[...document.querySelectorAll('.headline .big, .figs dd, li.card h2')]
                             .map(e => parseFloat(getComputedStyle(e).fontSize))),
        cut: [...document.querySelectorAll('li.card .label, li.card h2 .name')]
             .filter(e => e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1).length,
        overflowing: [...document.querySelectorAll('li.card')]
             .filter(c => c.scrollHeight > c.clientHeight + 1).length})""")
    assert sizes["height"] <= 1080 and sizes["width"] <= 1920, sizes  # no scrolling either way
    assert sizes["bottom"] >= 1080 * 0.9, sizes  # the cards fill the screen: no half left empty
    assert sizes["headline"] >= 28, sizes  # figures readable from 3 m
    assert sizes["cut"] == 0 and sizes["overflowing"] == 0, sizes  # names whole, nothing hidden in a card
    overview = api_as(viewer_client).get("/api/v1/overview").json()["pools"]
    shown = wall.locator("li.card .label").all_inner_texts()
    lofar = next(c for c in overview if c["observations"] and " · " in c["observations"][0]["label"])
    assert lofar["observations"][0]["label"] in shown  # "L229585 · pref_cal1_L229585", not cut
