"""The demo's machinery: a database filled through the CouchDB adapter, picas worker processes started and
watched, and the summary of what a seed made. The story (which pools, tokens, workers and fates) is localsite/demo.py;
its worker processes run `python -m localsite.demo --worker`.
"""

import base64
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tokens.couch import Couch, CouchError, NotFound
from tokens.states import BUCKETS, classify, style_of

BASE_DIR = Path(__file__).resolve().parent.parent
HTTP_TIMEOUT = 60  # seconds; pouchdb-server builds a view index on first query, which takes a while
WORKER_DEADLINE = 40  # seconds for all picas workers together; the seed must stay well under a minute
PILOT = Path(__file__).with_name("picas_pilot.py")  # what a demo worker process runs


class DemoError(Exception):
    """Seeding failed. The message names the server by its URL only, never with credentials."""


class Database:
    """The few calls a seed makes, through the CouchDB adapter; its errors become DemoError."""

    def __init__(self, url, database, username, password):
        self.couch = Couch(url, database, username, password, timeout=HTTP_TIMEOUT)
        self.server = self.couch.url  # without credentials; the workers get those apart

    def prepare(self):
        """Create the database. False if it already holds documents (then it must not be touched)."""
        with _as_demo_error():
            try:
                return self.couch.database_info().get("doc_count", 0) == 0
            except NotFound:
                pass
            try:
                self.couch.create_database()
            except CouchError:  # 412: created meanwhile by someone else; theirs to fill unless still empty
                pass
            return self.couch.database_info().get("doc_count", 0) == 0

    def get(self, doc_id):
        with _as_demo_error():
            return self.couch.get(doc_id)

    def put(self, doc):
        return self.bulk([doc])[0]

    def bulk(self, docs):
        with _as_demo_error():
            results = self.couch.bulk_docs(docs)
        failed = [r for r in results if "error" in r]
        if failed:
            raise DemoError(f"CouchDB at {self.server}: {len(failed)} documents not written, e.g. {failed[0]}")
        return results

    def all_docs(self, page=500):
        """Every document, paged by key (attachments come as stubs)."""
        start = None
        while True:
            with _as_demo_error():
                found = self.couch.documents(page, start)
            yield from (row["doc"] for row in found.rows)
            if not found.has_next:
                return
            start = found.next_key


class _as_demo_error:
    def __enter__(self):
        return self

    def __exit__(self, kind, error, _traceback):
        if isinstance(error, CouchError):
            raise DemoError(str(error)) from None
        return False


def inline(text):
    """An inline attachment as CouchDB takes it in a document body."""
    return {"content_type": "text/plain", "data": base64.b64encode(text.encode()).decode()}


def iso(t):
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def summary(db, styles):
    """{bucket: count} over the tokens of the pool; `styles` maps token type to "surf", "lrt05" or "lrt1".
    Buckets come from tokens.states.classify, the Python twin of the dashboard's own view."""
    counts = dict.fromkeys(BUCKETS, 0)
    for doc in db.all_docs():
        style = style_of(doc, styles)
        if style:
            bucket = classify(doc, style)
            counts[bucket] = counts.get(bucket, 0) + 1
    return counts


class Worker:
    """One picas worker process: localsite/picas_pilot.py in picas's own environment, its settings on stdin."""

    def __init__(self, process, stderr):
        self.process = process
        self.stderr = stderr
        self.lines = []

    def read_line(self, deadline):
        """The next protocol line the worker prints, or "" at its end or the deadline."""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self.process.stdout.readline()
            if not line:
                return ""
            if line.startswith("DEMO "):
                self.lines.append(line[5:].strip())
                return self.lines[-1]
        return ""

    def finish(self, deadline, killed=False):
        """Wait for the worker; past the deadline SIGTERM it (picas then puts its token back to todo)."""
        try:
            out, _ = self.process.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                out, _ = self.process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                out, _ = self.process.communicate()
        self.lines += [line[5:].strip() for line in out.splitlines() if line.startswith("DEMO ")]
        code = self.process.returncode
        if code not in (0, -signal.SIGTERM) and not (killed and code == -signal.SIGKILL):
            self.stderr.seek(0)
            tail = self.stderr.read().decode(errors="replace")[-1500:]
            raise DemoError(f"a picas worker failed (exit {code}):\n{tail}")
        self.stderr.close()
        return self

    def claimed(self):
        return [line.split(" ", 1)[1] for line in self.lines if line.startswith("CLAIMED ")]


def picas_python():
    """The Python of picas's own environment, where the real picas 1.1.2 client is installed apart from the site:
    PICAS_PYTHON, else .venv-picas/bin/python in the checkout (`make install` makes it)."""
    path = os.environ.get("PICAS_PYTHON") or str(BASE_DIR / ".venv-picas" / "bin" / "python")
    if not os.access(path, os.X_OK):
        raise DemoError(f"No picas environment at {path}: `make install` makes it (picas 1.1.2 in an environment of "
                        "its own), or PICAS_PYTHON names a Python that has picas 1.1.2.")
    return path


def start_worker(credentials, spec):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "PBS_", "GLITE_", "CREAM_", "DIRAC")) and k != "PYTHONPATH"}
    env.update(spec.get("env", {}), PYTHONUNBUFFERED="1")
    stderr = tempfile.TemporaryFile()
    process = subprocess.Popen(
        [picas_python(), str(PILOT)], cwd=BASE_DIR, env=env, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
    )
    # Settings (credentials included) go through stdin, never the command line.
    process.stdin.write(json.dumps({**credentials, "hang_seconds": WORKER_DEADLINE + 60, **spec}))
    process.stdin.close()
    process.stdin = None  # so that communicate() does not flush it
    return Worker(process, stderr)


def run_worker(credentials, spec):
    return start_worker(credentials, spec).finish(time.monotonic() + WORKER_DEADLINE)
