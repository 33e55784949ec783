"""The site's requirements carry only what the site and its workers import, each at the newest release the package
index serves (the one the suite passes with), and nothing that a test's tool forces on them: the real picas client,
which pins an old cryptography, has an environment of its own (requirements-picas.txt, .venv-picas)."""

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from localsite.seeding import picas_python

ROOT = Path(__file__).resolve().parent.parent


def pins(name):
    """{package name, lower case: (version, the comment lines just above it)} of a requirements file."""
    found, comments = {}, []
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("#"):
            comments.append(line)
        elif match := re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", line):
            found[match[1].lower()] = (match[3], comments)
            comments = []
        elif line and not line.startswith("-r"):
            raise AssertionError(f"{name}: not pinned with ==: {line}")
        else:
            comments = []
    return found


def test_the_sites_requirements_hold_nothing_that_picas_or_the_tests_need():
    site, dev, picas = pins("requirements.txt"), pins("requirements-dev.txt"), pins("requirements-picas.txt")
    assert "picas" in picas and "picas" not in site and "picas" not in dev
    assert set(site) & set(dev) == set()  # the tests' list adds to the site's, never re-pins it
    assert site["cryptography"][0] != picas["cryptography"][0]  # the site is not held at picas's cryptography


def test_the_site_runs_without_picas_and_picas_runs_apart_from_it():
    in_site = subprocess.run([sys.executable, "-c", "import picas"], capture_output=True)
    assert in_site.returncode != 0
    versions = subprocess.run([picas_python(), "-c", "import picas, cryptography; print(cryptography.__version__)"],
                              capture_output=True, text=True, check=True)
    assert versions.stdout.strip() == pins("requirements-picas.txt")["cryptography"][0]


def newest(package):
    """The newest release the package index serves (pip's own configuration), or None if it does not answer."""
    out = subprocess.run([sys.executable, "-m", "pip", "index", "versions", package, "--disable-pip-version-check"],
                         capture_output=True, text=True, timeout=120)
    match = re.search(r"\((\S+)\)", out.stdout.splitlines()[0]) if out.returncode == 0 and out.stdout else None
    return match[1] if match else None


def test_no_runtime_requirement_is_older_than_the_newest_release_the_index_serves_unless_it_says_why():
    site = pins("requirements.txt")
    with ThreadPoolExecutor(8) as pool:
        served = dict(zip(site, pool.map(newest, site), strict=True))
    if not any(served.values()):
        pytest.skip("the package index does not answer here: nothing to compare the pins with")
    # A pin may stay behind only with a comment above it saying so ("Held at X: ..."), as a test failing with the
    # newer release would be the reason.
    behind = {name: (version, served[name]) for name, (version, comments) in site.items()
              if served[name] and served[name] != version and not any(c.startswith("# Held at") for c in comments)}
    assert behind == {}, f"pinned older than the index's newest release (pinned, newest): {behind}"
