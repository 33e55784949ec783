"""Measure a job's memory at scale: `python bench/job_memory.py reset|tokenset [N]` (default 100,000).

Starts its own embedded CouchDB-compatible server. `reset`: fills a SURF pool with N error tokens and resets them.
`tokenset`: creates a GRID_LRT token set of N tokens (one synthetic SURL each, as srm.txt attachment). The job runs
the way the Celery worker runs it (operations.run_job, in this process) while this process's RSS is sampled every
0.2 s. Prints RSS before, peak, per quarter of the run and at the end, the time and the job's counts.
"""

import os
import sys
import tempfile
import threading
import time
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
workdir = Path(tempfile.mkdtemp(prefix="bench-reset-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"

import django  # noqa: E402
import psutil  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from dashboard.embedded import EmbeddedCouch  # noqa: E402
from tokens import demo, operations, tokensets  # noqa: E402
from tokens.couch import Couch  # noqa: E402
from tokens.operations import Selection  # noqa: E402
from tokens.pools import get_pool  # noqa: E402


def main(mode, n):
    call_command("migrate", verbosity=0)
    server = EmbeddedCouch(workdir / "couch").start()
    try:
        settings.COUCHDB_URL, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = (
            server.url, server.username, server.password)
        settings.COUCHDB_DATABASES, settings.COUCHDB_CREATE_VIEWS = ["bench"], True
        db = Couch(server.url, "bench", server.username, server.password, timeout=600)
        db.create_database()
        demo._surf_design_docs(server.url, server.username, server.password, "bench")
        now = int(time.time())
        started = time.monotonic()
        settings.COUCHDB_TIMEOUT = 600  # the first query builds the view index: minutes on pouchdb-server
        pool = get_pool("bench")
        if mode == "tokenset":
            config = (BASE / "tests" / "fixtures" / "pref_cal1.yaml").read_text()
            surls = "".join(f"srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/"
                            f"229585/L229585_SB{i:03d}_uv.dppp.MS_2b1cf5e8.tar\n" for i in range(n))
            job = tokensets.create_job(pool, None, config, surls, tokensets.Options(
                token_type="pref_cal1_L229585", per_token=1), confirmation=str(n))
            del surls, config
            print(f"planned and previewed {job.preview_count} tokens in {time.monotonic() - started:.1f} s")
            return measure(job)
        for first in range(0, n, 5000):
            db.bulk_docs([{"_id": f"token_{i:07d}", "type": "token", "lock": now - 600, "done": now - 60,
                           "hostname": "wn", "scrub_count": 0, "input": f"run {i}", "exit_code": 1, "output": {},
                           "uploads": {}, "error": [{"time": now - 60, "message": f"exit 1 on {i}"}]}
                          for i in range(first, min(n, first + 5000))])
        print(f"inserted {n} error tokens in {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {}, confirmation=str(n))
        print(f"preview: {job.preview_count} tokens in {time.monotonic() - started:.1f} s (includes the index build)")
        measure(job)
    finally:
        server.stop()


def measure(job):
    """Run the job here, sampling this process's RSS; print time, counts and memory."""
    process = psutil.Process()
    samples = []
    done = threading.Event()

    def sample():
        while not done.is_set():
            samples.append((time.monotonic(), process.memory_info().rss))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    before = process.memory_info().rss
    sampler.start()
    started = time.monotonic()
    job = operations.run_job(job.pk)
    elapsed = time.monotonic() - started
    done.set()
    sampler.join()
    after = process.memory_info().rss
    peak = max(r for _, r in samples)
    quarters = [max(r for t, r in samples if started + q * elapsed / 4 <= t <= started + (q + 1) * elapsed / 4)
                for q in range(4) if any(started + q * elapsed / 4 <= t <= started + (q + 1) * elapsed / 4
                                         for t, _ in samples)]
    mb = 1024 * 1024
    print(f"job {job.status}: {job.changed} changed, {job.skipped} skipped, {job.conflicts} conflicts, "
          f"{job.failed} failed in {elapsed:.1f} s ({job.changed / elapsed:.0f} tokens/s, batch "
          f"{settings.JOB_BATCH_SIZE})")
    print(f"RSS of the job's process: before {before / mb:.0f} MB, peak {peak / mb:.0f} MB, "
          f"after {after / mb:.0f} MB; peak per quarter of the run: "
          + ", ".join(f"{q / mb:.0f}" for q in quarters) + " MB")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reset", int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
