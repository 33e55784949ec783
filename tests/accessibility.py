"""WCAG 2.1 A and AA, judged by axe-core on every page of the site that a browser test opens.

The `open_page` fixture (conftest.py) watches each page it opens: whenever a page of ours has loaded, axe-core
(node_modules, pinned in package.json; injected by the test, never served by the site) judges it at the window's size,
and the test that opened it fails if axe found a violation. A new page is therefore checked as soon as any browser
test visits it, without being listed here. Each kind of page (its path with numbers and ids folded, the names of its
query's fields) is judged once per window size and session: the same template with other data is not judged again.
"""

import functools
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import Error as PlaywrightError

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
CHECKED = set()  # (kind of page, window size) being judged or judged this session
JUDGED = set()  # of those, the ones axe has finished

# Only the site's own pages: they load its stylesheet (the OpenID provider's sign-in page does not, nor Django's
# admin, whose pages are Django's).
OURS = ("!!document.querySelector('link[rel=stylesheet][href*=\"/css/site\"]')"
        " && !location.pathname.startsWith('/admin/')")


def kind_of_page(url):
    """/pools/demo-surf-3fa2b1/tokens/token_17?state=error&page=2 -> '/pools/demo-surf-X/tokens/token_N?page&state'."""
    parts = urlsplit(url)
    path = re.sub(r"[0-9a-f]{6,}", "X", parts.path)
    path = re.sub(r"\d+", "N", path)
    fields = sorted({name for name, _ in parse_qsl(parts.query, keep_blank_values=True)})
    return path + ("?" + "&".join(fields) if fields else "")


@functools.cache
def axe_source():
    return AXE.read_text()


def violations(page):
    """axe-core's WCAG 2.1 A/AA violations on the page as it is now, each in a line a person can act on."""
    if not page.evaluate("() => !!window.axe"):
        # Evaluated through the browser's debugging protocol, which the site's Content-Security-Policy (no inline
        # scripts, no eval) does not govern; a <script> tag would be refused, as it should be.
        page.evaluate(axe_source())
    found = page.evaluate("rules => axe.run(document, {runOnly: {type: 'tag', values: rules}})", WCAG_21_AA)
    return [f"{v['id']} ({v['impact']}): {v['help']} — at {', '.join(str(n['target']) for n in v['nodes'][:4])}"
            + (f" and {len(v['nodes']) - 4} more" if len(v["nodes"]) > 4 else "") for v in found["violations"]]


def watch(page, size, found):
    """Judge each of our pages once it has loaded (per kind and window size); what axe finds goes into `found`."""

    def loaded():
        key = (kind_of_page(page.url), size)
        if key in CHECKED:
            return
        try:
            if not page.evaluate(f"() => {OURS}"):
                return
            CHECKED.add(key)
            found.extend(f"{page.url} at {size}: {line}" for line in violations(page))
            JUDGED.add(key)
        except PlaywrightError:
            # The page went on to another before axe finished (a form's redirect, a test's next click): that page
            # is judged when it loads; this one again when a test next stays on it.
            CHECKED.discard(key)

    page.on("load", loaded)
