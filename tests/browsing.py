"""What the browser tests share (tests/test_browser.py, tests/test_first_hour.py): where Chromium is, the two window
sizes, logging in, screenshots, how far a page overflows its window, and a failed token as a picas worker leaves it.
The `browser` and `open_page` fixtures are in conftest.py.

Chromium is Debian's (`apt-get install -y chromium`; `make test` installs it when it can). Without it the browser
tests fail, unless SKIP_BROWSER_TESTS=true says to skip them."""

import base64
import os
import re
import time
from pathlib import Path

from tests.conftest import surf_token
from tests.waiting import PATIENCE

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# `make screenshots` points this at docs/screenshots/ (the README's pictures); a test run leaves them aside.
SHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parent.parent / "test-artifacts" /
             "screenshots")
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}
# The machine is shared: pages and jobs can be slow, never wrong; a browser waits as long as any test waits
# (tests/waiting.py). BROWSER_TIMEOUT_MS shortens it, to debug a test.
TIMEOUT_MS = int(os.environ.get("BROWSER_TIMEOUT_MS") or PATIENCE * 1000)
NOW = int(time.time())


def log_in(page, base, username):
    page.goto(base + "/")
    assert "/accounts/login/" in page.url  # login is required everywhere
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("pw-" + username)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/accounts/login/)"))
    assert page.locator("form.who").inner_text().startswith(f"Signed in as {username} (")


def shoot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def overflow(page):
    """How many pixels the page is wider than the window (a sideways-scrolling page is unreadable on a phone)."""
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth")


def failing(n, code, message, minutes_ago=60, **fields):
    """An error token as a picas worker leaves it, with its log attached."""
    log = f"starting run {n}\n{message}\n".encode()
    return surf_token(n, lock=NOW - 60 * minutes_ago - 600, done=NOW - 60 * minutes_ago, exit_code=code,
                      hostname=f"wn-{n % 7}.example.org", slurm_job_id=f"4711_{n}",
                      error=[{"time": NOW - 60 * minutes_ago, "message": message, "exception": "Traceback ..."}],
                      _attachments={f"logs_token_{n:05d}.err": {"content_type": "text/plain",
                                                               "data": base64.b64encode(log).decode()}}, **fields)
