"""WCAG 2.1 AA (EN 301 549, which public research institutions are held to).

Every page of the site that a browser test opens is judged by axe-core at that test's window size
(tests/accessibility.py, through the `open_page` fixture): the main pages at 1280 and 390 px in tests/test_browser.py,
the wall at 1920x1080 in tests/test_overview.py, and every page the action walk and the other browser tests reach.
Here: that the judging happens and can fail, and what axe does not judge: the states' colours in graphics
(1.4.11, 3:1) and the charts' SVG text (1.4.3, 4.5:1), read from the stylesheet that is their one definition."""

import re
from pathlib import Path

import pytest

from dashboard.roles import VIEWERS
from tests import accessibility
from tests.browsing import log_in
from tests.conftest import SURF, make_user
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
CSS = (ROOT / "static" / "css" / "site.css").read_text()
STATES = ("todo", "locked", "done", "error", "odd")


def six(hex_colour):
    """#fff -> #ffffff."""
    return "#" + "".join(c * 2 for c in hex_colour[1:]) if len(hex_colour) == 4 else hex_colour


def luminance(hex_colour):
    hex_colour = six(hex_colour)
    channels = [int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b):
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def variables():
    root = re.search(r":root\s*{([^}]*)}", CSS).group(1)
    return dict(re.findall(r"--([\w-]+):\s*(#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3}\b)", root))


def colour(value):
    """A declaration's colour as #rrggbb: a hex colour or one of the :root variables."""
    value = value.strip()
    named = re.fullmatch(r"var\(--([\w-]+)\)", value)
    return variables()[named.group(1)] if named else value


def declarations(selector_part, prop):
    """(selector, colour) of each rule whose selector contains selector_part and which sets prop to a colour."""
    for selectors, body in re.findall(r"([^{}]+){([^{}]*)}", CSS):
        if selector_part in selectors:
            for value in re.findall(rf"(?:^|;)\s*{prop}:\s*([^;]+)", body):
                if value.strip().startswith(("#", "var(")):
                    yield selectors.strip(), colour(value)


def test_each_states_colour_stands_out_three_to_one_from_the_page_and_from_an_empty_bar():
    named = variables()
    bar = re.search(r"\.bar\s*{[^}]*background:\s*(#[0-9a-fA-F]{6})", CSS).group(1)
    ratios = {state: (round(contrast(named[state], named["bg"]), 2), round(contrast(named[state], bar), 2))
              for state in STATES}
    assert all(min(pair) >= 3 for pair in ratios.values()), ratios


def test_every_line_bar_and_mark_of_a_chart_stands_out_three_to_one_from_the_page():
    page = variables()["bg"]
    drawn = [*declarations("figure.chart", "fill"), *declarations("figure.chart", "stroke"),
             *declarations("svg.spark", "fill"), *declarations("svg.spark", "stroke")]
    graphics = [(selector, c) for selector, c in drawn if " text" not in selector and "marknum" not in selector]
    assert len(graphics) >= 10  # the charts' colours are in the stylesheet, not lost in a rename
    weak = [(selector, c, round(contrast(c, page), 2)) for selector, c in graphics if contrast(c, page) < 3]
    assert weak == []


def test_the_charts_text_reads_four_and_a_half_to_one_against_the_page():
    page = variables()["bg"]
    texts = [*declarations("figure.chart text", "fill"), *declarations("marknum", "fill"),
             *declarations("figure.chart figcaption", "color")]
    assert len(texts) >= 4
    weak = [(selector, c, round(contrast(c, page), 2)) for selector, c in texts if contrast(c, page) < 4.5]
    assert weak == []


def test_no_template_paints_its_own_colour_so_the_stylesheet_is_the_one_place_they_are_judged():
    painted = [(path.name, line.strip()[:80]) for path in (ROOT / "templates").rglob("*.html")
               for line in path.read_text().splitlines()
               if re.search(r"""(fill|stroke|color|background)\s*[=:]\s*["']?#[0-9a-fA-F]{3}""", line)]
    assert painted == []


def test_axe_names_what_a_page_breaks(open_page):
    page = open_page()
    page.set_content('<html lang="en"><title>t</title><main><img src="x.png"><input type="text"></main></html>')
    found = accessibility.violations(page)
    assert any(line.startswith("image-alt (critical)") for line in found), found
    assert any(line.startswith("label (critical)") for line in found), found


@pytest.mark.django_db(transaction=True)
def test_a_page_a_browser_test_opens_is_judged_without_being_listed(live_server, demo_pools, open_page):
    make_user("victor", VIEWERS)
    size = (391, 844)  # a window no other test uses: this test's pages are judged here, not found judged before
    page = open_page(size)
    log_in(page, live_server.url, "victor")
    page.goto(f"{live_server.url}/pools/{SURF}/failures/")
    key = (accessibility.kind_of_page(page.url), "391x844")
    # The judging runs when the browser reports the page loaded, between this test's own calls to the browser.
    wait_for(lambda: page.title() and key in accessibility.JUDGED, what="axe to judge the failures page")
