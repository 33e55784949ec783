"""On a phone (390 px) the pages that list things (failure groups, token lists, stale locks, a pool's observations)
read as cards: nothing wider than the screen, every figure and action of a row on it (the pools made by the demo's
workers: picas for SURF's, GRID_LRT for LOFAR's)."""

import pytest

from dashboard.roles import OPERATORS
from tests.browsing import log_in, shoot
from tests.conftest import LOFAR, SURF, make_user
from tokens import counting
from tokens.pools import all_pools

pytestmark = pytest.mark.django_db(transaction=True)

# Elements whose right edge passes the window's, outside a box that scrolls sideways on purpose (a chart).
TOO_WIDE = """() => [...document.querySelectorAll('body *')].filter(e => {
    for (let p = e.parentElement; p; p = p.parentElement) {
        const x = getComputedStyle(p).overflowX;
        if (x === 'auto' || x === 'scroll') return false;
    }
    const r = e.getBoundingClientRect();
    return r.width > 0 && r.right > window.innerWidth + 1;
}).map(e => e.tagName + '.' + e.className + ': ' + (e.innerText || '').slice(0, 40))"""


def on_screen(page, locator):
    box = locator.bounding_box()
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= page.viewport_size["width"] + 1


def test_on_a_phone_failures_token_lists_and_observations_are_cards_with_nothing_off_screen(
        live_server, demo_pools, open_page):
    for pool in all_pools():
        counting.refresh(pool)
    make_user("olga", OPERATORS)
    page = open_page("phone")
    log_in(page, live_server.url, "olga")
    for slug in (SURF, LOFAR):
        page.goto(f"{live_server.url}/pools/{slug}/")
        row = page.locator("table.observations tbody tr").first
        for label in ("% done", "ETA", "done last hour"):
            cell = row.locator(f'td[data-label="{label}"]')
            assert cell.is_visible() and on_screen(page, cell), (slug, label)
        assert page.evaluate(TOO_WIDE) == [], slug
        shoot(page, f"phone-pool-{slug[:10]}")

        page.goto(f"{live_server.url}/pools/{slug}/failures/")
        first = page.locator("table.stack tbody tr").first
        assert on_screen(page, first.locator("td.err")) and first.locator("td.err").inner_text().strip()
        retry = first.get_by_role("link", name="Retry this group…")
        assert retry.is_visible() and on_screen(page, retry)
        assert page.evaluate(TOO_WIDE) == [], slug
        shoot(page, f"phone-failures-{slug[:10]}")

        page.goto(f"{live_server.url}/pools/{slug}/tokens/?state=error")
        token = page.locator("table.stack tbody tr").first
        for label in ("Exit code / output", "Host", "Last error"):
            assert on_screen(page, token.locator(f'td[data-label="{label}"]')), (slug, label)
        assert page.evaluate(TOO_WIDE) == [], slug
        shoot(page, f"phone-tokens-{slug[:10]}")

        page.goto(f"{live_server.url}/pools/{slug}/stale/")
        for table in page.locator("table.stack").all():
            lock = table.locator("tbody tr").first
            for label in ("Age", "Host", "Job ids"):
                assert on_screen(page, lock.locator(f'td[data-label="{label}"]')), (slug, label)
        assert page.evaluate(TOO_WIDE) == [], slug
        shoot(page, f"phone-stale-{slug[:10]}")

    # The way on from a card: the failure group's retry opens its preview.
    page.goto(f"{live_server.url}/pools/{SURF}/failures/")
    page.locator("table.stack tbody tr").first.get_by_role("link", name="Retry this group…").click()
    page.wait_for_url("**/jobs/new/?action=reset&kind=failure*")
    assert page.evaluate(TOO_WIDE) == []
