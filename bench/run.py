"""`make bench`: the dashboard against what operators use today, side by side, on pools of survey size.

Builds its pools in its own embedded CouchDB-compatible server (on disk, in a temporary folder), measures, and
prints one table. Each figure is a median of several runs unless it is a one-off job; each ratio compares two
figures taken in the same run on the same data. Set BENCH_TOKENS (default 100000) to scale it down.
"""

import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
WORK = Path(tempfile.mkdtemp(prefix="picas-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ["DATABASE_URL"] = f"sqlite:///{WORK / 'bench.sqlite3'}"
os.environ["JOB_UPLOAD_DIR"] = str(WORK / "uploads")

import django  # noqa: E402

django.setup()

import psutil  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from dashboard.models import PoolRole  # noqa: E402
from localsite import seeding  # noqa: E402
from localsite.embedded import EmbeddedCouch, free_port  # noqa: E402
from tokens import counting, events, operations, reading, retries, selections, tokensets, uploads  # noqa: E402
from tokens.couch import Couch, CouchError, NotFound, split_credentials  # noqa: E402
from tokens.models import (  # noqa: E402
    CountSnapshot,
    GivenUp,
    HostHour,
    Job,
    ObservationHour,
    PoolHistory,
    RetryPause,
    RetryRule,
    TokenEvent,
    TokenState,
)
from tokens.pools import get_pool  # noqa: E402
from tokens.selections import Selection  # noqa: E402
from tokens.worker_views import surf_design_doc  # noqa: E402

N = int(os.getenv("BENCH_TOKENS", "100000"))
# pouchdb-server holds an attachment in one JavaScript array and refuses ~128 MB and more ("Invalid array length"),
# so the download is measured at 100 MB here; the site streams it in 1 MiB chunks whatever its size.
ATTACHMENT_MB = int(os.getenv("BENCH_ATTACHMENT_MB", "100"))
COUNTS_MAX_AGE = settings.COUNTS_MAX_AGE  # as configured: the freshness measurement uses it
OBSERVATIONS = 50
ROWS = {}  # {server: [(what, measure, figure, goal, met)]}, the rows in the same order for each server
SERVER = [None]  # the server being measured
CREATED = []  # the databases this run made on it
INDEX_WAIT = settings.COUNTS_INDEX_WAIT


def row(what, measure, figure, goal, met):
    ROWS[SERVER[0]].append((what, measure, figure, goal, "yes" if met else "NO"))
    print(f"  {what}: {measure} = {figure} (goal {goal}) {'met' if met else 'NOT MET'}", flush=True)


def median_time(call, runs=7):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- pools ------------------------------------------------------------------------------------


def fresh_database(server, name):
    """A new database of the bench's (named bench-...): one left by an earlier run on that server goes first."""
    db = Couch(server.url, name, server.username, server.password, timeout=900)
    try:
        db.delete_database()
    except NotFound:
        pass
    db.create_database()
    CREATED.append(db)
    return db


def surf_pool(server, name, n, state_of):
    """A SURF pool with Monitor and n tokens over 50 observations (OBSID); state_of(i) gives lock/done/exit."""
    db = fresh_database(server, name)
    db.put_design("Monitor", surf_design_doc())
    now = int(time.time())
    for first in range(0, n, 5000):
        docs = []
        for i in range(first, min(n, first + 5000)):
            fields = state_of(i, now)
            docs.append({"_id": f"token_{i:07d}", "type": "token", "hostname": "", "scrub_count": 0,
                         "input": f"run {i}", "exit_code": "", "output": {}, "uploads": {}, "error": [],
                         "OBSID": f"L{230000 + i % OBSERVATIONS}", **fields})
        db.bulk_docs(docs)
    return db


def mixed_state(i, now):
    kind = i % 10
    if kind < 3:
        return {"lock": 0, "done": 0}
    if kind < 4:
        return {"lock": now - 600, "done": 0, "hostname": "wn"}
    if kind < 9:
        return {"lock": now - 7200, "done": now - (i % 7200), "exit_code": 0}
    return {"lock": now - 7200, "done": now - 3600, "exit_code": 1,
            "error": [{"time": now - 3600, "message": f"exit 1 on wn{i % 13}.example.org at step {i % 5}"}]}


def configure(server, databases):
    settings.COUCHDB_URL, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD = (
        server.url, server.username, server.password)
    settings.COUCHDB_DATABASES, settings.COUCHDB_CREATE_VIEWS = databases, True
    settings.COUCHDB_GROUP_FIELD, settings.COUCHDB_TIMEOUT = "OBSID", 900


# --- the measurements -------------------------------------------------------------------------


def pull_state_views(db):
    """What operators' counting scripts do: read every row of the four state views."""
    counts = {}
    for state in ("todo", "locked", "done", "error"):
        counts[state] = len(db.view("Monitor", state, reduce=False)["rows"])
    return counts


def pool_page(client, slug):
    response = client.get(f"/pools/{slug}/")
    assert response.status_code == 200, response.status_code
    return response


def bench_pool_page(server, client):
    print(f"pool page: pools of {N // 10} and {N} tokens, {OBSERVATIONS} observations", flush=True)
    surf_pool(server, "bench-small", N // 10, mixed_state)
    big = surf_pool(server, "bench-big", N, mixed_state)
    configure(server, ["bench-small", "bench-big"])
    settings.COUNTS_MAX_AGE = 3600  # the page serves the snapshot; its refresh is measured under freshness
    _, took, peak = measured(_refresh, "bench-big")
    print(f"  first snapshot at {N} tokens (builds the dashboard's views): {took:.0f} s, {peak / 2**20:.0f} MB",
          flush=True)
    _, took, peak = measured(_refresh_all, "bench-big")
    row("recount of every token", f"time and peak RSS of a full recount from the view at {N} tokens (hourly, "
        "COUNTS_REFILL_SECONDS)", f"{took:.0f} s, {peak / 2**20:.0f} MB", "<= 300 MB", peak <= 300 * 2**20)
    counting.refresh(get_pool("bench-small"))
    t_small = median_time(lambda: pool_page(client, "bench-small"), runs=15)
    t_big = median_time(lambda: pool_page(client, "bench-big"), runs=15)
    rows = len(reading.observations(counting.snapshot(get_pool("bench-big")).data))
    pull_state_views(big)  # builds Monitor's indexes (not part of the operators' time)
    # Pulling the views takes minutes at survey size: one run is enough against a page measured in milliseconds.
    t_pull = median_time(lambda: pull_state_views(big), runs=3 if N < 50_000 else 1)
    row("pool page, 50 observations", f"median server time at {N} tokens ({rows} rows)",
        f"{t_big * 1000:.1f} ms", "<= 100 ms", t_big <= 0.1)
    row("pool page vs pulling the state views", "pull time / page time",
        f"{t_pull / t_big:.0f}x ({t_pull:.1f} s vs {t_big * 1000:.1f} ms)", ">= 20x", t_pull / t_big >= 20)
    row("growth", f"page time at {N} / at {N // 10}", f"{t_big / t_small:.2f}", "<= 1.5", t_big / t_small <= 1.5)
    return big


def static_size(url):
    """The size of a static file the page links (as found where the site serves it from)."""
    from django.contrib.staticfiles import finders

    return Path(finders.find(url.removeprefix(settings.STATIC_URL))).stat().st_size


def bench_overview(server, client):
    """The overview (home page) of 20 pools: a card each, from the pools' counts and hourly rollups."""
    pools = 20
    # `make bench-scale` sets 100,000 (issue 18: 20 pools of 100,000 on one site); `make bench` keeps it small.
    size = int(os.getenv("BENCH_OVERVIEW_TOKENS") or max(100, N // 50))
    print(f"overview: {pools} pools of {size} tokens, {OBSERVATIONS} observations each", flush=True)
    names = [f"bench-overview-{i:02d}" for i in range(pools)]
    for name in names:
        surf_pool(server, name, size, mixed_state)
    configure(server, names)
    settings.COUNTS_MAX_AGE = 3600  # the page serves the snapshots (their refresh is measured under freshness)
    for name in names:
        counting.refresh(get_pool(name))
        counting.refresh(get_pool(name))  # the index built: the pools' past from their tokens' own times
    response = client.get("/")
    assert response.status_code == 200 and response.content.count(b'class="card ') == pools
    t = median_time(lambda: client.get("/"), runs=15)
    weight = len(response.content) + sum(static_size(a) for a in
                                         re.findall(r'(?:src|href)="([^"]+\.(?:css|js))"', response.content.decode()))
    row("overview, 20 pools", f"median server time, {pools} pools of {size} tokens; page weight with its assets",
        f"{t * 1000:.1f} ms; {weight / 1024:.0f} KB", "<= 100 ms, <= 150 KB", t <= 0.1 and weight <= 150 * 1024)
    return names


def mark_done(db, ids):
    """What pilots do to todo tokens, written straight to the server: lock, done, exit code 0."""
    now = int(time.time())
    for first in range(0, len(ids), 500):
        docs = [d for d in db.docs(ids[first:first + 500]) if d]
        db.bulk_docs([{**d, "lock": now, "done": now, "exit_code": 0, "hostname": "wn-bench"} for d in docs])


def bench_follow(names):
    """The change follower (the beat's follow_pools: each pool's changes read, moves recorded, counts refreshed)
    with every pool changing at once. First a backlog of changes in all pools and one pass: its rate across the
    pools is the ceiling. Then writers changing all pools at a steady rate while the follower runs pass after pass:
    the longest pass is how old the counts of a pool nobody looks at get (plus the beat's interval)."""
    per_pool = int(os.getenv("BENCH_FOLLOW_CHANGES", "5000"))
    size = int(os.getenv("BENCH_OVERVIEW_TOKENS") or max(100, N // 50))
    todo = [f"token_{i:07d}" for i in range(size) if i % 10 < 3]  # mixed_state's todo tokens
    per_pool = min(per_pool, len(todo) // 2)
    print(f"change follower: {len(names)} pools, {per_pool} changes each at once, then a steady rate", flush=True)
    pools = [get_pool(name) for name in names]
    settings.EVENTS_FOLLOW_SECONDS = 0  # every pass refreshes every pool
    counting.follow()  # from a followed state
    before = TokenEvent.objects.count()
    started = time.perf_counter()
    with ThreadPoolExecutor(len(pools)) as writers:
        list(writers.map(lambda p: mark_done(p.couch(), todo[:per_pool]), pools))
    written = time.perf_counter() - started
    started = time.perf_counter()
    counting.follow()
    ceiling = time.perf_counter() - started
    recorded = TokenEvent.objects.count() - before
    total = per_pool * len(pools)
    row(f"change follower, {len(pools)} pools changing at once",
        f"{total} changes ({per_pool} a pool) read, recorded and counted in one pass of the follower",
        f"{total / ceiling:.0f} changes/s ({ceiling:.1f} s; {recorded} events; the server took the writes at "
        f"{total / written:.0f}/s)", "(the ceiling: said)", recorded == total)
    rate = float(os.getenv("BENCH_FOLLOW_RATE", "10"))  # changes a second in each pool
    seconds = float(os.getenv("BENCH_FOLLOW_SECONDS", "60"))
    stop, passes = threading.Event(), []

    def writer(pool, ids):
        db = pool.couch()
        for first in range(0, len(ids), int(rate)):
            if stop.is_set():
                return
            tick = time.monotonic()
            mark_done(db, ids[first:first + int(rate)])
            time.sleep(max(0.0, 1 - (time.monotonic() - tick)))

    threads = [threading.Thread(target=writer, args=(p, todo[per_pool:])) for p in pools]
    for t in threads:
        t.start()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        counting.follow()
        passes.append(time.perf_counter() - started)
    stop.set()
    for t in threads:
        t.join()
    longest = max(passes)
    row(f"counts of {len(pools)} pools changing at a steady rate", f"longest pass of the follower, {rate:.0f} changes "
        f"a second in each pool ({rate * len(pools):.0f}/s in all) for {seconds:.0f} s",
        f"{longest:.1f} s (median {statistics.median(passes):.1f} s, {len(passes)} passes)",
        "<= 15 s", longest <= 15)


def bench_paging(client, db):
    print("deep paging", flush=True)
    settings.PAGE_SIZE = 50
    deep = 1000 * 50 if N >= 100_000 else N // 4
    rows = db.view("picas-dashboard", "states", start_key=["done"], end_key=["done", {}], reduce=False,
                   skip=deep - 50, limit=1)["rows"]
    cursor = reading.encode_cursor([rows[0]["key"], rows[0]["id"]])
    t_first = median_time(lambda: client.get("/pools/bench-big/tokens/", {"state": "done"}))
    t_deep = median_time(lambda: client.get("/pools/bench-big/tokens/", {"state": "done", "after": cursor}))

    def skip_page(skip):
        return db.view("picas-dashboard", "states", start_key=["done"], end_key=["done", {}], reduce=False,
                       include_docs=True, skip=skip, limit=50)

    s_first = median_time(lambda: skip_page(0), runs=3)
    s_deep = median_time(lambda: skip_page(deep - 50), runs=3)
    row("deep paging", f"token list page {deep // 50} / page 1 (by key)",
        f"{t_deep / t_first:.2f} ({t_deep * 1000:.0f} / {t_first * 1000:.0f} ms); by skip: {s_deep / s_first:.1f} "
        f"({s_deep * 1000:.0f} / {s_first * 1000:.0f} ms)", "<= 2", t_deep / t_first <= 2)


def bench_freshness(server, client, db):
    """Pilots change the pool while a viewer polls the page every second; a real Celery worker refreshes (two
    processes, as the deployed unit runs). Halfway, the hourly recount falls due: the counts must not wait for it."""
    print("freshness: picas pilots run while the page is polled for 60 s (a recount halfway)", flush=True)
    from localsite.embedded import EmbeddedRedis

    redis = EmbeddedRedis(WORK / "redis").start()
    env = dict(os.environ, CELERY_BROKER_URL=redis.url, COUCHDB_URL=server.url, COUCHDB_USER=server.username,
               COUCHDB_PASSWORD=server.password, COUCHDB_DATABASES="bench-small,bench-big", COUCHDB_CREATE_VIEWS="true",
               COUCHDB_GROUP_FIELD="OBSID", COUCHDB_TIMEOUT="900")
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--concurrency", "2",
                               "--loglevel", "ERROR"], cwd=BASE, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    from dashboard.celery import app

    # Celery's connection pools keep the URL they were made with (the previous server's Redis): dropped too.
    app.conf.broker_url = app.conf.result_backend = redis.url
    app._pool = None
    app.amqp._producer_pool = None
    app._backend_cache = None  # and its result backend (which sending a task subscribes to)
    app._local.__dict__.pop("backend", None)
    settings.CELERY_BROKER_URL = redis.url
    settings.COUNTS_MAX_AGE = COUNTS_MAX_AGE
    # Start from the steady state: the snapshot left by the earlier measurements is minutes old, and its first
    # background refreshes (the worker starting, the views catching up, an index still being built) are not what
    # a viewer sees afterwards. The pilots start once a refresh has read every view.
    before = counting.snapshot(get_pool("bench-big")).taken_at
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        client.get("/pools/bench-big/")
        snap = counting.snapshot(get_pool("bench-big"))
        if snap.taken_at != before and not snap.data.get("indexing"):
            break
        time.sleep(0.5)
    pilot_env = dict(os.environ, PICAS_URL=server.url, PICAS_DB="bench-big", PICAS_USER=server.username,
                     PICAS_PASSWORD=server.password, PICAS_DELAY="0.05")
    pilots = [subprocess.Popen([seeding.picas_python(), str(BASE / "tests" / "picas_worker.py")], env=pilot_env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    ages, due, recounted = [], None, None
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            data = client.get("/api/v1/pools/bench-big").json()  # the pool page's figures, from its API twin
            ages.append(data["counts_age_seconds"])
            if due is None and time.monotonic() > end - 30:  # an hour since the last recount, as far as it knows
                due = timezone.now()
                CountSnapshot.objects.filter(pool="bench-big").update(filled_at=due - timedelta(hours=2))
            elif due and recounted is None and CountSnapshot.objects.get(pool="bench-big").filled_at > due:
                recounted = (timezone.now() - due).total_seconds()
            time.sleep(1)
    finally:
        for p in pilots:
            p.terminate()
        for p in pilots:
            # picas's SIGTERM handler scrubs and saves its current token before it exits: on a server busy
            # building an index at 100,000 tokens that save can take longer than half a minute.
            try:
                p.wait(180)
            except subprocess.TimeoutExpired:
                print("  a pilot did not stop within 180 s of SIGTERM; killed", flush=True)
                p.kill()
                p.wait()
    # Idle: the first refresh that starts after the pilots stopped must be exact. (A refresh already running when
    # they stopped may finish later and still show their last moments: that is not the idle state.)
    stopped = time.time()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        client.get("/pools/bench-big/")  # asks for a refresh whenever the counts are older than COUNTS_MAX_AGE
        if counting.snapshot(get_pool("bench-big")).data["taken_at"] > stopped:
            break
        time.sleep(0.5)
    worker.terminate()
    worker.wait(30)
    redis.stop()
    totals = client.get("/api/v1/pools/bench-big").json()["counts"]
    truth = {s: db.total_rows("Monitor", s) for s in ("todo", "locked", "done", "error")}
    exact = all(totals[s] == truth[s] for s in ("todo", "done", "error")) and (
        totals["locked"] + totals["locked_unknown"] == truth["locked"])
    recount = f"the recount done {recounted:.0f} s after it fell due" if recounted is not None else \
        "the recount not done within the 30 s"
    row("freshness", "age of the counts shown while pilots run (max, median), a recount falling due halfway",
        f"{max(ages):.0f} s, {statistics.median(ages):.0f} s ({recount}); idle: {'exact' if exact else 'NOT exact'}",
        "<= 15 s, exact when idle", max(ages) <= 15 and exact)


def _in_child(call, args, queue):
    django.db.connections.close_all()
    queue.put(call(*args))


def measured(call, *args):
    """call(*args) in a child process (as a worker or a web process would run it), sampling that process's RSS:
    (its result, seconds, peak RSS in bytes)."""
    from django.db import connections

    connections.close_all()
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_in_child, args=(call, args, queue))
    started = time.perf_counter()
    child.start()
    process, peak = psutil.Process(child.pid), 0
    while child.is_alive():
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    result = queue.get(timeout=60)
    child.join()
    return result, time.perf_counter() - started, peak


def _run_job(job_id):
    # BENCH_PROFILE=file: the job's profile (cProfile) written there, to see where a job's time goes.
    if os.getenv("BENCH_PROFILE"):
        import cProfile

        cProfile.runctx("operations.run_job(job_id)", globals(), {"job_id": job_id}, os.environ["BENCH_PROFILE"])
    else:
        operations.run_job(job_id)
    return True


def run_job_measured(job):
    """Run a job in a child process (as a worker would) and sample that process's RSS."""
    _, elapsed, peak = measured(_run_job, job.pk)
    job.refresh_from_db()
    return job, elapsed, peak


def raw_rewrite(db, ids, change):
    """The server's own speed: read the documents a page at a time and write them back with _bulk_docs."""
    started = time.perf_counter()
    for first in range(0, len(ids), 500):
        docs = db.docs(ids[first:first + 500])
        db.bulk_docs([change(d) for d in docs if d])
    return time.perf_counter() - started


def bench_reset(server):
    print(f"reset of {N} error tokens", flush=True)
    db = surf_pool(server, "bench-reset", N, lambda i, now: mixed_state(9, now))
    configure(server, ["bench-reset"])
    pool = get_pool("bench-reset")
    # The pool as operators find it: indexed. (A preview on a pool whose index CouchDB is still building waits for
    # it; at 1,000,000 tokens that outlasts CouchDB's own request timeout.)
    selections.pool_rules(pool, db)
    indexed(db, "picas-dashboard", "states", minutes=60)
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {}, confirmation=str(N))
    job, elapsed, peak = run_job_measured(job)
    ids = [f"token_{i:07d}" for i in range(N)]
    raw = raw_rewrite(db, ids, lambda d: {**d, "scrub_count": d.get("scrub_count", 0) + 1})
    # resetTokens.py: for each row of the view, the document is fetched on its own; then one _bulk_docs.
    sample = ids[:2000]
    started = time.perf_counter()
    docs = [db.get(i) for i in sample]
    db.bulk_docs([{**d, "lock": 0, "done": 0} for d in docs])
    per_token = (time.perf_counter() - started) / len(sample)
    job_rate, raw_rate = job.changed / elapsed, N / raw
    row(f"reset of {N} error tokens", "job throughput / raw _bulk_docs rewrite",
        f"{job_rate / raw_rate:.2f} ({job_rate:.0f} vs {raw_rate:.0f} tokens/s; {job.status}, {job.changed} changed)",
        ">= 0.6", job_rate / raw_rate >= 0.6 and job.changed == N)
    row("reset vs resetTokens.py's per-token reads", "job throughput / per-token throughput",
        f"{job_rate * per_token:.1f}x ({1 / per_token:.0f} tokens/s per token)", ">= 5x", job_rate * per_token >= 5)
    row("reset: worker memory", "peak RSS of the process running the job", f"{peak / 2**20:.0f} MB", "<= 300 MB",
        peak <= 300 * 2**20)
    bench_cancel(pool)


def failed_everywhere(i, now):
    """A token that failed an hour ago on one of 13 hosts alike (none a black hole): what a retry rule meets."""
    return {"lock": now - 7200, "done": now - 3600, "exit_code": 21, "hostname": f"wn{i % 13}.example.org",
            "error": [{"time": now - 3600, "message": f"download of SB{i % 244:03d} timed out"}]}


def bench_rule(server):
    """A retry rule over N failed tokens: its check (the dry run at the periodic task, which reads the failures
    until it has its hour's worth), and its job's throughput against raw _bulk_docs, as for an operator's reset."""
    print(f"retry rule over {N} failed tokens", flush=True)
    db = surf_pool(server, "bench-rule", N, failed_everywhere)
    configure(server, ["bench-rule"])
    pool = get_pool("bench-rule")
    # The pool as operators find it: indexed and counted (a rule's job on a pool whose index the server is still
    # building would measure the building).
    selections.pool_rules(pool, db)
    for view in ("states", "failures", "locks"):  # what the counts read (a SURF pool has no GRID_LRT steps)
        indexed(db, "picas-dashboard", view, minutes=60)
    indexed(db, "Monitor", "todo", minutes=60)  # the pilots' view, built in production
    wait_for(lambda: counting.refresh(pool) and CountSnapshot.objects.filter(pool=pool.slug, backfilled=True)
             .exists(), 3600, "the pool's past read from its tokens")
    retries.make(pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=N)
    started = time.perf_counter()
    (job,) = retries.apply(pools=[pool])
    check = time.perf_counter() - started
    job, elapsed, peak = run_job_measured(job)
    # The raw rewrite starts as the job did: with the server's indexes caught up (CouchDB's background indexer
    # works through the job's 100,000 writes otherwise, on the same 2 cores, and halves the raw figure).
    for view in ("states", "failures", "locks"):
        indexed(db, "picas-dashboard", view, minutes=60)
    indexed(db, "Monitor", "todo", minutes=60)
    ids = [f"token_{i:07d}" for i in range(N)]
    raw = raw_rewrite(db, ids, lambda d: {**d, "scrub_count": d.get("scrub_count", 0) + 1})
    job_rate, raw_rate = job.changed / elapsed, N / raw
    row(f"retry rule over {N} failed tokens", "its job's throughput / raw _bulk_docs rewrite",
        f"{job_rate / raw_rate:.2f} ({job_rate:.0f} vs {raw_rate:.0f} tokens/s; {job.status}, {job.changed} changed)",
        ">= 0.85", job_rate / raw_rate >= 0.85 and job.changed == N)
    row("retry rule: its check", "the periodic check that starts the job (reads the failures until it finds one "
        "to retry, and the counts for the job's expected number)", f"{check:.1f} s", "-", True)
    row("retry rule: worker memory", "peak RSS of the process running the rule's job", f"{peak / 2**20:.0f} MB",
        "<= 300 MB", peak <= 300 * 2**20)


def bench_search(server, client):
    """The header's search over a pool of N tokens, its table of states and hosts filled as the counts fill them:
    the page's answer for a token id, the start of one, an observation, a host and a job number (goal 300 ms at a
    million tokens); and a field:value, which reads at most SEARCH_SCAN_MOST documents."""
    print(f"search over {N} tokens", flush=True)

    def on_hosts(i, now):
        return {**mixed_state(i, now), **({"hostname": f"wn-{i % 40:02d}.grid.surfsara.nl"} if i % 10 >= 3 else {})}

    db = surf_pool(server, "bench-search", N, on_hosts)
    configure(server, ["bench-search"])
    pool = get_pool("bench-search")
    selections.pool_rules(pool, db)
    indexed(db, "picas-dashboard", "states", minutes=60)
    wait_for(lambda: counting.refresh(pool) and CountSnapshot.objects.filter(pool=pool.slug, backfilled=True)
             .exists(), 3600, "the pool's past read from its tokens")
    job = operations.create_job(pool, None, "reset", Selection("ids", ids=(f"token_{N - 1:07d}",)), {})
    settings.COUNTS_MAX_AGE = 3600  # the page serves the counts it has, as between two refreshes
    middle = f"token_{N // 2:07d}"
    for what, q, kind in (("a token id", middle, "token"), ("the start of a token id", middle[:-2], "token"),
                          ("an observation", f"L{230000 + 17}", "observation"),
                          ("a host", "wn-17.grid", "host"), ("a job number", f"#{job.pk}", "job")):
        answer = client.get("/api/v1/search", {"q": q}).json()
        hits = [m for m in answer["matches"] if m["kind"] == kind]
        seconds = median_time(lambda q=q: client.get("/search/", {"q": q}))
        row(f"search: {what}", f"the search page's answer at {N:,} tokens (median of 7)",
            f"{seconds * 1000:.0f} ms ({len(hits)} found)", "<= 300 ms", seconds <= 0.3 and hits)
    seconds = median_time(lambda: client.get("/search/", {"q": "input:run 4242"}), runs=3)
    row("search: field:value", f"input:… read from at most {settings.SEARCH_SCAN_MOST:,} documents (no index)",
        f"{seconds:.2f} s", "-", True)


def bench_cancel(pool):
    """An operator cancels a job over the whole pool once it is under way: how much is written after the request
    (goal: at most the batch in flight) and how soon the job stops."""
    params = {"field": "bench_cancel", "value": 1, "value_type": "number", "allow_state_fields": False}
    job = operations.create_job(pool, None, "set_field", Selection("state", bucket="todo"), params,
                                confirmation=str(N))
    django.db.connections.close_all()
    child = multiprocessing.get_context("fork").Process(target=_run_job, args=(job.pk,))
    child.start()
    while Job.objects.get(pk=job.pk).changed < min(N // 10, 50_000):
        time.sleep(0.05)
    at_request = Job.objects.get(pk=job.pk).changed
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    asked = time.perf_counter()
    child.join()
    stopped = time.perf_counter() - asked
    job.refresh_from_db()
    after = job.changed - at_request
    batch = settings.JOB_BATCH_SIZE
    row("cancel of a job over the whole pool",
        f"tokens recorded after the request (batches of {batch}; one may be in flight when it comes); time to stop",
        f"{after} ({job.status}); {stopped:.1f} s", f"<= 2 batches ({2 * batch})",
        job.status == "cancelled" and after <= 2 * batch)


def indexed(db, ddoc, view, minutes=15):
    """Wait until a view's index is built: CouchDB answers a query that waits longer than its own request timeout
    with a 500, while the build goes on."""
    deadline = time.monotonic() + 60 * minutes
    while True:
        try:
            return db.with_timeout(900).view(ddoc, view, limit=0, reduce=False)
        except CouchError as e:  # CouchDB's "500: ... not processed in a reasonable amount of time"
            if isinstance(e, NotFound) or time.monotonic() > deadline:
                raise


def bench_events(server, client):
    """Ingest: a reset moves every token of a pool, and one refresh records the moves as events. Then the pages
    that read events, over 30 days of them."""
    print(f"events: {N} tokens moving, then 30 days of events", flush=True)
    surf_pool(server, "bench-events", N, lambda i, now: mixed_state(9, now))
    configure(server, ["bench-events"])
    pool = get_pool("bench-events")
    counting.refresh(pool)  # the first counts
    get_pool("bench-events").couch().with_timeout(900).view("picas-dashboard", "states", limit=0, reduce=False)
    counting.refresh(pool)  # the index built: the backfill of the pool's past
    job = operations.create_job(pool, None, "reset", Selection("state", bucket="error"), {}, confirmation=str(N))
    run_job_measured(job)
    # The server's own indexes catch up with the 100,000 changed documents first: on the bench's 2 cores CouchDB's
    # background indexer would otherwise take the cores the ingest is measured on (a production CouchDB has its own
    # machine). RESULTS.md gives the figure measured while it indexes too.
    for ddoc, view in (("picas-dashboard", "states"), ("Monitor", "todo")):
        indexed(pool.couch(), ddoc, view)
    before = TokenEvent.objects.filter(pool="bench-events").count()
    me, peak, done = psutil.Process(), [0], threading.Event()
    base = me.memory_info().rss

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], me.memory_info().rss - base)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # The ingest alone: the changes feed read and applied, each move an event (a refresh then also asks the
    # server's views, whose indexes catch up with the 100,000 changed documents: not the dashboard's work).
    snap = CountSnapshot.objects.get(pool="bench-events")
    couch, styles = pool.couch(), snap.data["types"]
    debug, settings.DEBUG = settings.DEBUG, False  # as in production: no copy of every query kept (DEBUG is on here)
    started = time.perf_counter()
    counting.apply_changes(pool, couch, styles, snap.seq, snap.events_from)
    elapsed = time.perf_counter() - started
    settings.DEBUG = debug
    done.set()
    sampler.join()
    recorded = TokenEvent.objects.filter(pool="bench-events").count() - before
    rate = recorded / elapsed
    row("event ingest", f"moves recorded per second ({N} tokens reset, the changes read once, the server's indexes "
        "caught up); memory growth",
        f"{rate:.0f}/s ({recorded} in {elapsed:.1f} s); +{peak[0] / 2**20:.0f} MB", ">= 5000/s, <= 100 MB",
        rate >= 5000 and recorded == N and peak[0] <= 100 * 2**20)

    # 30 days of a survey's events: each token claimed and finished about once a day, on 40 hosts.
    now = timezone.now()
    batch = []
    for n in range(N * 3):
        at = now - timedelta(seconds=(n * 86_400 * 30) // (N * 3))
        failed = n % 11 == 0
        host = f"wn-{n % 40:02d}.grid.surfsara.nl"
        batch.append(TokenEvent(pool="bench-events", doc_id=f"token_{n % N:07d}", type="token",
                                group=f"L{229585 + n % OBSERVATIONS}", at=at, from_state="locked",
                                to_state="error" if failed else "done", hostname=host,
                                exit_code="1" if failed else "", message="exit <n>" if failed else "",
                                run_seconds=600 + n % 300, origin=TokenEvent.BACKFILL))
        if len(batch) == 5000:
            events.record(batch)  # as a refresh records them: the raw events and their hourly rollups
            batch = []
    events.record(batch)
    # 1,000 tokens failing now with that group's code and message, so that the failures page has its history to read.
    db, now_s = pool.couch(), int(time.time())
    failing = db.docs([f"token_{i:07d}" for i in range(1000)])
    db.bulk_docs([{**d, "lock": now_s - 60, "done": now_s, "exit_code": 1, "hostname": "wn-00.grid.surfsara.nl",
                   "error": [{"time": now_s, "message": "exit 7"}]} for d in failing])
    db.with_timeout(900).view("picas-dashboard", "failures", limit=0)  # indexed (after the reset's 100,000 changes)
    counting.refresh(pool)
    settings.CHART_MAX_AGE = 0  # every page computes its history afresh
    t_history = median_time(lambda: client.get("/api/v1/pools/bench-events/history", {"bucket": "day"}), runs=3)
    # The pool page's chart over 30 days is computed from the events on each request (only the default period is
    # kept ready).
    t_chart = median_time(lambda: client.get("/pools/bench-events/", {"period": "30d"}), runs=3)
    t_hosts = median_time(lambda: client.get("/pools/bench-events/hosts/", {"window": "30d"}), runs=3)
    t_failures = median_time(lambda: client.get("/pools/bench-events/failures/"), runs=3)
    assert b"exit &lt;n&gt;" in client.get("/pools/bench-events/failures/").content  # the group was listed
    total = TokenEvent.objects.filter(pool="bench-events").count()
    row("history pages, 30 days of events", f"server time over {total} events: history API (days), pool page "
        "charted over 30 days, hosts (30 days), failure groups",
        " / ".join(f"{t * 1000:.0f}" for t in (t_history, t_chart, t_hosts, t_failures)) + " ms",
        "<= 2000 ms each", max(t_history, t_chart, t_hosts, t_failures) <= 2)
    for model in (TokenEvent, ObservationHour, HostHour):
        model.objects.filter(pool="bench-events").delete()


def bench_tokenset(server):
    """A token set of N tokens from a SURL list on disk (one SURL a token), as an operator uploads it: the list is
    streamed to the server's disk, the dry run and the job read it from there a line at a time."""
    print(f"new token set of {N} tokens with an attachment each, from a list file", flush=True)
    fresh_database(server, "bench-tokenset")
    configure(server, ["bench-tokenset"])
    config = (BASE / "tests" / "fixtures" / "pref_cal1.yaml").read_text()
    listing = WORK / "surls.txt"
    with open(listing, "w") as f:
        for i in range(N):
            f.write(f"srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229585/"
                    f"L229585_SB{i:03d}_uv.dppp.MS_2b1cf5e8.tar\n")
    size = listing.stat().st_size
    options = tokensets.Options(token_type="pref_cal1_L229585", per_token=1)
    upload = tokensets.save_list(uploaded=uploads.LocalFile(listing))
    job_id, dry_run, dry_peak = measured(_tokenset_job, config, upload, options)
    job, elapsed, peak = run_job_measured(Job.objects.get(pk=job_id))
    raw_db = fresh_database(server, "bench-tokenset-raw")
    started, batch = time.perf_counter(), []
    with tokensets.plan(config, upload, options) as plan:
        for doc in plan.tokens():
            batch.append(doc)
            if len(batch) == 500:
                raw_db.bulk_docs(batch)
                batch = []
    if batch:
        raw_db.bulk_docs(batch)
    raw = time.perf_counter() - started
    listing.unlink()
    job_rate, raw_rate = job.changed / elapsed, N / raw
    row(f"new token set of {N} tokens + attachment", "job throughput / raw _bulk_docs insert (the list from a "
        f"{size / 2**20:.0f} MB file)",
        f"{job_rate / raw_rate:.2f} ({job_rate:.0f} vs {raw_rate:.0f} tokens/s; {job.status}, {job.changed} made)",
        ">= 0.6", job_rate / raw_rate >= 0.6 and job.changed == N)
    row("token set: memory", "peak RSS of the process running the job; of the one making the dry run and the job "
        f"record ({dry_run:.0f} s)", f"{peak / 2**20:.0f} MB; {dry_peak / 2**20:.0f} MB", "<= 300 MB each",
        max(peak, dry_peak) <= 300 * 2**20)


def _tokenset_job(config, upload, options):
    return tokensets.create_job(get_pool("bench-tokenset"), None, config, upload, options, confirmation=str(N)).pk


def bench_site(server):
    """A real site process: the attachment download through it, and the pool page's weight."""
    print(f"site: {ATTACHMENT_MB} MB attachment download, page weight", flush=True)
    db = Couch(server.url, "bench-big", server.username, server.password, timeout=900)
    blob = WORK / "blob.bin"
    with open(blob, "wb") as f:
        for _ in range(ATTACHMENT_MB):
            f.write(os.urandom(1024 * 1024))
    doc = db.get("token_0000001")
    with open(blob, "rb") as body:
        db.put_attachment("token_0000001", "big.bin", body, "application/octet-stream", doc["_rev"])
    port = free_port()
    env = dict(os.environ, COUCHDB_URL=server.url, COUCHDB_USER=server.username, COUCHDB_PASSWORD=server.password,
               COUCHDB_DATABASES="bench-big", COUCHDB_GROUP_FIELD="OBSID", COUCHDB_CREATE_VIEWS="true",
               COUCHDB_TIMEOUT="900", COUNTS_MAX_AGE="3600")
    site = subprocess.Popen([sys.executable, str(BASE / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        for _ in range(100):
            try:
                session.get(base + "/accounts/login/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        session.post(base + "/accounts/login/", data={"username": "bench", "password": "bench-password-1",
                                                      "csrfmiddlewaretoken": session.cookies["csrftoken"]},
                     headers={"Referer": base + "/accounts/login/"})
        site_process = psutil.Process(site.pid)
        session.get(base + "/pools/bench-big/")  # warm up
        before = site_process.memory_info().rss
        peak = before
        done = threading.Event()

        def watch():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, site_process.memory_info().rss)
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        def download(url, **kwargs):
            started, size = time.perf_counter(), 0
            with requests.get(url, stream=True, timeout=600, **kwargs) as response:
                for chunk in response.iter_content(1024 * 1024):
                    size += len(chunk)
            return size, time.perf_counter() - started

        via_site = download(base + "/pools/bench-big/attachment/?id=token_0000001&name=big.bin",
                            cookies=session.cookies)
        done.set()
        watcher.join()
        # Uncompressed, as the site asks for it (pouchdb-server gzips on the fly for a client that accepts gzip).
        direct = download(f"{server.url}/bench-big/token_0000001/big.bin", auth=(server.username, server.password),
                          headers={"Accept-Encoding": "identity"})
        assert via_site[0] == direct[0] == ATTACHMENT_MB * 2**20, (via_site[0], direct[0])
        ratio = direct[1] / via_site[1]
        growth = (peak - before) / 2**20
        row(f"attachment download, {ATTACHMENT_MB} MB", "site RSS growth; throughput via site / direct",
            f"{growth:.0f} MB; {ratio:.2f} ({ATTACHMENT_MB / via_site[1]:.0f} vs {ATTACHMENT_MB / direct[1]:.0f} MB/s)",
            "<= 50 MB; >= 0.5", growth <= 50 and ratio >= 0.5)

        page = session.get(base + "/pools/bench-big/")
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:css|js))"', page.text)
        external = [a for a in re.findall(r'(?:src|href)="(https?://[^"]+)"', page.text)
                    if not a.startswith(base)]
        weight = len(page.content) + sum(len(session.get(base + a).content) for a in assets)
        row("pool page weight", "bytes with all assets; external requests",
            f"{weight / 1024:.0f} KB ({len(assets)} assets); {len(external)}", "<= 150 KB, 0",
            weight <= 150 * 1024 and not external)
    finally:
        site.terminate()
        site.wait(30)


# --- load: many viewers on a real server while a job runs -------------------------------------

LOAD_CLIENTS = int(os.getenv("BENCH_LOAD_CLIENTS", "50"))
LOAD_SECONDS = float(os.getenv("BENCH_LOAD_SECONDS", "60"))
# Each client requests its four pages, then waits this long: htmx polls the job page every second.
LOAD_PAUSE = float(os.getenv("BENCH_LOAD_PAUSE", "1"))
# As docs/deploy.md runs the site and the worker.
LOAD_GUNICORN = os.getenv("BENCH_LOAD_GUNICORN", "--workers 4 --timeout 120").split()
LOAD_CELERY = os.getenv("BENCH_LOAD_CELERY", "--concurrency 4").split()


def wait_for(check, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not ready after {seconds:.0f} s")


def stop_process(process, seconds=30):
    """Terminate a child we started; kill it if it has not gone after `seconds`."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def site_session(base, username, password):
    """A logged-in requests.Session, as a browser has after the login form."""
    session = requests.Session()
    session.get(base + "/accounts/login/", timeout=60)
    response = session.post(base + "/accounts/login/", data={
        "username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=60, allow_redirects=False)
    assert response.status_code == 302, f"login of {username}: {response.status_code}"
    return session


def load_client(base, session, job_id, end, samples):
    """Poll the pool page, its htmx partial, the job page and the job's JSON until `end`; record every request."""
    htmx = {"HX-Request": "true", "HX-Target": "observations", "HX-Current-URL": base + "/pools/bench-load/"}
    requests_ = [("pool page", "/pools/bench-load/", {}), ("pool partial", "/pools/bench-load/", htmx),
                 ("job page", f"/jobs/{job_id}/", {}), ("job JSON", f"/api/v1/jobs/{job_id}", {})]
    while time.monotonic() < end:
        for kind, path, headers in requests_:
            started = time.perf_counter()
            try:
                response = session.get(base + path, headers=headers, timeout=120, allow_redirects=False)
                outcome = response.status_code
            except requests.RequestException as e:
                outcome = type(e).__name__
            samples.append((kind, outcome, time.perf_counter() - started))
        time.sleep(LOAD_PAUSE)


def bench_load(server):
    """LOAD_CLIENTS logged-in viewers poll a real site (gunicorn, production settings) for LOAD_SECONDS while a real
    Celery worker resets N error tokens that an operator started through the site."""
    print(f"load: {LOAD_CLIENTS} clients poll the pool and job pages for {LOAD_SECONDS:.0f} s during a reset of "
          f"{N} tokens", flush=True)
    from django.contrib.auth.models import Group

    from dashboard.celery import app
    from localsite.embedded import EmbeddedRedis
    from tokens import history
    from tokens.models import Job

    db = surf_pool(server, "bench-load", N, lambda i, now: mixed_state(9, now))
    configure(server, ["bench-load"])
    pool = get_pool("bench-load")
    started = time.perf_counter()
    counting.refresh(pool)  # builds the dashboard's views: the first page would otherwise wait minutes for them
    history.refresh(pool)
    print(f"  first snapshot and history (builds the dashboard's views): {time.perf_counter() - started:.0f} s",
          flush=True)
    operator = User.objects.create_user("load-operator", password="load-password-1")
    operator.groups.add(Group.objects.get_or_create(name="operators")[0])
    viewer = User.objects.create_user("load-viewer", password="load-password-1")
    viewer.groups.add(Group.objects.get_or_create(name="viewers")[0])

    # Production settings (DEBUG off: WhiteNoise, hashed static files, no debug bookkeeping per request), over plain
    # http on loopback: so no https redirect and no secure-only cookies.
    env = dict(os.environ, DEBUG="false", SECURE_SSL_REDIRECT="false", SECURE_COOKIES="false",
               STATIC_ROOT=str(WORK / "static"), LOG_LEVEL="WARNING", COUCHDB_URL=server.url,
               COUCHDB_USER=server.username, COUCHDB_PASSWORD=server.password, COUCHDB_DATABASES="bench-load",
               COUCHDB_CREATE_VIEWS="true", COUCHDB_GROUP_FIELD="OBSID", COUCHDB_TIMEOUT="900")
    subprocess.run([sys.executable, str(BASE / "manage.py"), "collectstatic", "--no-input", "-v", "0"], env=env,
                   check=True)
    redis = site = worker = None
    site_log, worker_log = open(WORK / "gunicorn.log", "wb"), open(WORK / "celery.log", "wb")
    try:
        redis = EmbeddedRedis(WORK / "load-redis").start()
        env["CELERY_BROKER_URL"] = redis.url
        env.pop("CELERY_RESULT_BACKEND", None)
        app.conf.broker_url = redis.url
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--loglevel", "WARNING",
                                   *LOAD_CELERY], cwd=BASE, env=env, stdout=worker_log, stderr=subprocess.STDOUT)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        site = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "dashboard.wsgi",
                                 "--bind", f"127.0.0.1:{port}", "--control-socket", str(WORK / "gunicorn.ctl"),
                                 *LOAD_GUNICORN], cwd=BASE, env=env,
                                stdout=site_log, stderr=subprocess.STDOUT)
        wait_for(lambda: requests.get(base + "/accounts/login/", timeout=5).status_code == 200, 60, "gunicorn")
        wait_for(lambda: app.control.ping(timeout=1), 60, "celery worker")
        sessions = [site_session(base, "load-viewer", "load-password-1") for _ in range(LOAD_CLIENTS)]
        operating = site_session(base, "load-operator", "load-password-1")
        # The dry run and the job through the API with the operator's session (pages answer HTML only).
        selection = {"kind": "state", "bucket": "error"}
        csrf = {"X-CSRFToken": operating.cookies["csrftoken"], "Referer": base + "/"}
        jobs = base + "/api/v1/pools/bench-load/jobs"
        preview = operating.post(jobs, json={"action": "reset", "selection": selection}, headers=csrf,
                                 timeout=900).json()
        assert preview.get("count") == N, preview
        created = operating.post(jobs, json={
            "action": "reset", "selection": selection, "dry_run": False, "confirm": preview["count"]},
            headers=csrf, timeout=120)
        assert created.status_code == 201, (created.status_code, created.text[:200])
        job_id = created.json()["id"]

        samples, end = [], time.monotonic() + LOAD_SECONDS
        clients = [threading.Thread(target=load_client, args=(base, s, job_id, end, samples), daemon=True)
                   for s in sessions]
        for c in clients:
            c.start()
        # The job as the database has it, once a second: is it moving while the pages are hammered?
        progress, load_started = [], time.monotonic()
        job_deadline = load_started + LOAD_SECONDS + 900 + N / 100
        while time.monotonic() < job_deadline:
            job = Job.objects.get(pk=job_id)
            progress.append((time.monotonic() - load_started, job.status, job.total))
            if job.ended and time.monotonic() >= end:
                break
            time.sleep(1)
        for c in clients:
            c.join(180)
    finally:
        stop_process(site)
        stop_process(worker)
        if redis is not None:
            redis.stop()
        site_log.close()
        worker_log.close()

    job = Job.objects.get(pk=job_id)
    todo = db.total_rows("Monitor", "todo")
    # Longest time the running job's count of tokens read stood still.
    stall, since, last = 0.0, None, None
    for t, status, total in progress:
        if status != Job.RUNNING or total != last:
            since, last = t, total
        stall = max(stall, t - since)
    latencies = sorted(s[2] for s in samples)
    errors = [s for s in samples if not (isinstance(s[1], int) and 200 <= s[1] < 300)]
    p50, p95 = (statistics.quantiles(latencies, n=100)[i] for i in (49, 94))
    for kind in ("pool page", "pool partial", "job page", "job JSON"):
        some = sorted(s[2] for s in samples if s[0] == kind)
        print(f"  {kind}: {len(some)} requests, p50 {statistics.median(some) * 1000:.0f} ms, "
              f"p95 {statistics.quantiles(some, n=100)[94] * 1000:.0f} ms, max {some[-1] * 1000:.0f} ms")
    for kind, outcome, seconds in errors[:10]:
        print(f"  error: {kind}: {outcome} after {seconds:.1f} s")
    ran = [t for t, status, _ in progress if status == Job.RUNNING]
    ok = job.status == Job.SUCCEEDED and job.changed == N and todo == N
    row(f"load: {LOAD_CLIENTS} clients for {LOAD_SECONDS:.0f} s during a reset of {N}",
        "requests, errors; latency p50 / p95 / max; the job",
        f"{len(samples)} ({len(samples) / LOAD_SECONDS:.0f}/s), {len(errors)} errors; {p50 * 1000:.0f} / "
        f"{p95 * 1000:.0f} / {latencies[-1] * 1000:.0f} ms; job {job.status}, {job.changed} changed, {todo} todo, "
        f"ran {ran[-1] - ran[0] if ran else 0:.0f} s, longest stall {stall:.0f} s",
        "0 errors; job finishes, all changed", not errors and ok)


FIRST_GOAL = 30 if N <= 100_000 else 60  # seconds; issue 18 allows 60 at 1,000,000 tokens


def bench_first_counts(server):
    """A new pool: how soon its page has exact counts while the server builds the dashboard's index."""
    print(f"first counts on a new pool of {N} tokens", flush=True)
    db = surf_pool(server, "bench-first", N, mixed_state)
    configure(server, ["bench-first"])
    settings.COUNTS_INDEX_WAIT = INDEX_WAIT
    kinds = [i % 10 for i in range(N)]  # mixed_state's buckets
    expected = {"todo": sum(k < 3 for k in kinds), "locked": kinds.count(3), "done": sum(3 < k < 9 for k in kinds),
                "error": kinds.count(9)}
    started = time.perf_counter()
    data, first, peak = measured(_refresh, "bench-first")  # in a process of its own, as a worker runs it
    counts = {}
    for bucket, _type, _group, n in data["buckets"]:
        counts[bucket] = counts.get(bucket, 0) + n
    exact = counts == expected
    source = "from the documents" if data.get("indexing") else "from the view"
    print(f"  first counts in {first:.1f} s ({source}, {'exact' if exact else 'NOT exact'})", flush=True)
    indexed(db, "picas-dashboard", "states", minutes=60)  # wait for the index (CouchDB: longer than a request)
    built = time.perf_counter() - started
    row("first counts on a new pool", f"time to exact counts at {N} tokens (index not built)",
        f"{first:.1f} s ({source}, {'exact' if exact else 'NOT exact'}); index built after {built:.0f} s",
        f"<= {FIRST_GOAL} s, exact", first <= FIRST_GOAL and exact)
    row("first counts: memory", "peak RSS of the process counting", f"{peak / 2**20:.0f} MB", "<= 300 MB",
        peak <= 300 * 2**20)


def _refresh(slug):
    return counting.refresh(get_pool(slug)).data


def _refresh_all(slug):
    """What the worker asked for the hourly recount does."""
    return counting.recount(get_pool(slug)).data


def servers():
    """The servers to measure: the embedded pouchdb-server, and the CouchDB that --couchdb URL (or
    BENCH_COUCHDB_URL) names, e.g. an Apache CouchDB 3.5: (label, server, whether the bench started it)."""
    url = os.getenv("BENCH_COUCHDB_URL")
    # BENCH_COUCHDB_ONLY=1: that CouchDB alone (a section measured again on it).
    found = [] if url and os.getenv("BENCH_COUCHDB_ONLY") == "1" else [("pouchdb-server 4.2.0", None)]
    if "--couchdb" in sys.argv:
        url = sys.argv[sys.argv.index("--couchdb") + 1]
    if url:
        clean, user, password = split_credentials(url)
        version = requests.get(clean, auth=(user, password), timeout=10).json().get("version", "?")
        found.append((f"CouchDB {version}", Outside(clean, user, password)))
    if os.getenv("BENCH_CLUSTER") == "1":
        # `make bench-cluster`: a single CouchDB 3.5 node and a cluster of three behind haproxy, on this machine,
        # from the shared couchdb3 script (COUCHDB3), as the cluster tests run them (tests/cluster.py).
        from tests.cluster import CouchCluster

        script = os.environ["COUCHDB3"]
        found = [("CouchDB 3.5, one node", SingleNode(WORK / "single", script)),
                 ("CouchDB 3.5, 3 nodes behind haproxy", Started(CouchCluster(WORK / "cluster", script)))]
    return found


class SingleNode:
    """A CouchDB 3.5 node of the bench's own (the couchdb3 script's `start`), started when measured."""

    def __init__(self, workdir, script):
        self.workdir, self.script = workdir, script
        self.url, self.username, self.password = "", "admin", "admin"

    def start(self):
        out = subprocess.run([self.script, "start", str(self.workdir), str(free_port())], check=True,
                             capture_output=True, text=True, env=dict(os.environ, COUCHDB3_LOCKOUT="off"))
        self.url, self.username, self.password = split_credentials(out.stdout.strip().splitlines()[-1])
        return self

    def stop(self):
        subprocess.run([self.script, "stop", str(self.workdir)], capture_output=True)


class Started:
    """A server started when its turn comes (the cluster: three nodes and the balancer)."""

    def __init__(self, server):
        self.server = server

    def start(self):
        return self.server.start()


class Outside:
    """A CouchDB server the bench did not start."""

    def __init__(self, url, username, password):
        self.url, self.username, self.password = url, username, password

    def stop(self):
        pass


def main():
    started = time.monotonic()
    call_command("migrate", verbosity=0)
    # The bench's user operates every pool (roles per pool: a user without one sees none).
    PoolRole.objects.create(user=User.objects.create_user("bench", password="bench-password-1"), pool="*",
                            role="operator")
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    # BENCH_ONLY=freshness,reset (say) runs some sections; the pool page's pools are built for the first four. The
    # load test (`make load`: 50 clients during a reset, 10-20 more minutes at 100,000 tokens) runs only when named,
    # so that the full bench stays within its half hour.
    only = set(filter(None, os.getenv("BENCH_ONLY", "").split(","))) or {
        "page", "paging", "freshness", "site", "first", "reset", "rule", "search", "tokenset", "events", "overview",
        "follow"}
    # What the sections change in the settings (a page that serves its snapshot, a history computed on every
    # request ...) is put back before the next server's run: each server is measured from the same start.
    changed = ("CHART_MAX_AGE", "COUNTS_MAX_AGE", "PAGE_SIZE", "COUNTS_INDEX_WAIT", "CELERY_BROKER_URL",
               "EVENTS_FOLLOW_SECONDS")
    baseline = {name: getattr(settings, name) for name in changed}
    for label, outside in servers():
        for name, value in baseline.items():
            setattr(settings, name, value)
        print(f"=== {label}", flush=True)
        ROWS[label] = []
        SERVER[0] = label
        # The dashboard's own records of the previous server's pools (same names) must not carry over.
        for model in (TokenState, CountSnapshot, PoolHistory, Job, TokenEvent, ObservationHour, HostHour, RetryRule,
                      RetryPause, GivenUp):
            model.objects.all().delete()
        if isinstance(outside, SingleNode | Started):
            WORK.joinpath("cluster").mkdir(exist_ok=True)
            outside = outside.start()
        server = outside or EmbeddedCouch(WORK / "couch", heap_mb=3072).start()  # it keeps a 200 MB attachment
        try:
            if only & {"page", "paging", "freshness", "site"}:
                big = bench_pool_page(server, client)
            if "paging" in only:
                bench_paging(client, big)
            if "freshness" in only:
                bench_freshness(server, client, big)
            if "site" in only:
                bench_site(server)
            if "first" in only:
                bench_first_counts(server)
            if "reset" in only:
                bench_reset(server)
            if "rule" in only:
                bench_rule(server)
            if "search" in only:
                bench_search(server, client)
            if "tokenset" in only:
                bench_tokenset(server)
            if "events" in only:
                bench_events(server, client)
            if only & {"overview", "follow"}:
                names = bench_overview(server, client)
            if "follow" in only:
                bench_follow(names)
            if "load" in only:
                bench_load(server)
        finally:
            for db in CREATED:
                if db.url == server.url:
                    db.delete_database()
            CREATED.clear()
            server.stop()
    print_table(time.monotonic() - started)


def print_table(elapsed):
    memory = psutil.virtual_memory().total / 2**30
    machine = f"{os.cpu_count()} cores, {memory:.0f} GiB, Python {sys.version.split()[0]}"
    labels = list(ROWS)
    lines = [f"Benchmark: {N} tokens, {OBSERVATIONS} observations, on {' and '.join(labels)}; {machine}; "
             f"{elapsed / 60:.1f} min", "",
             "| what | measure | goal | " + " | ".join(f"{label} | met" for label in labels) + " |",
             "|---|---|---|" + "---|---|" * len(labels)]
    first = ROWS[labels[0]]
    for i, (what, measure, _figure, goal, _met) in enumerate(first):
        cells = []
        for label in labels:
            mine = ROWS[label][i] if i < len(ROWS[label]) else None
            cells += [mine[2], mine[4]] if mine else ["(not run)", ""]
        lines.append(f"| {what} | {measure} | {goal} | " + " | ".join(cells) + " |")
    print("\n".join(lines))
    out = os.getenv("BENCH_RESULTS")
    if out:
        Path(out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

