"""Demo token pools, so that the dashboard has something real to show without a grid.

Two pools are seeded in a CouchDB-compatible server:

- `seed_surf`: a SURF PiCaS pool. Its design documents are SURF's `create_views.py` views (`Monitor`, plus the
  `SingleCore` / `MultiCore` slices of the autopilot example). Its tokens are processed by *real* picas 1.1.2
  workers (`picas.clients.CouchDB` and a `picas.actors.RunActor` subclass) running in separate processes, so the
  documents carry exactly what picas writes: lock and done times, host names, job ids, error entries, scrubs
  and retries, attachments. One worker is SIGKILLed mid-task and another only claims tokens, which leaves locks
  that no worker will ever release; those are then aged to look like a node that died yesterday. One worker
  plays a grid node without its software (a "black hole": every token it takes fails in seconds). Then the
  finished tokens' times are spread as a survey's would be: three observations at different stages over three
  days, the black hole's failures in a wave a few hours ago (the simulated commands take milliseconds). Last, the
  token shapes that no worker view shows (legacy errors, old scrubs, GRID_LRT-style `lock = 1`) are written
  directly, with two picas `log` documents to be ignored.
- `seed_lofar`: a GRID_LRT pool of LOFAR `pref_cal1` tokens, one design document per observation (GRID_LRT 0.5
  views, one observation with the 1.x views), built the way GRID_LRT's TokenSet builds them from a list of SURLs.
  The LOFAR launcher is not picas, so its progress is simulated with plain `_bulk_docs` writes.

Both are "first start only": a database that already holds documents is left alone and `{}` is returned.
Otherwise they return how many tokens ended in each dashboard bucket (`tokens.states.BUCKETS`).

The workers are `localsite/picas_pilot.py`, run by the Python of picas's own environment (`.venv-picas`, made by
`make install`): picas 1.1.2 pins an old cryptography that the site must not carry, and importing it calls
`logging.basicConfig(level=INFO)`, which would make the calling process log everything at INFO.
"""

import copy
import os
import random
import re
import time

import yaml

from localsite import seeding
from tokens.worker_views import (
    SURF_CONDITIONS,
    SURF_OVERVIEW_CODE,
    SURF_OVERVIEW_REDUCE,
    SURF_VIEW_CODE,
    lrt_design_doc,
)

# --------------------------------------------------------------------------------------------------------------
# SURF pool

# SURF create_views.py, stored the way its couchdb-python ViewDefinition stores it (first newline stripped).
SURF_DESIGN_DOCS = {"Monitor": "", "SingleCore": " && doc.cores == 1", "MultiCore": " && doc.cores > 1"}

OBSIDS = ("L229585", "L230001", "L231777")
# A survey's observations at different stages: the tokens of each in turn (picas claims in the todo view's key
# order, the token ids', within a window of 100), so that the first is about finished, the second half done and
# the third just begun. (observation, share of the tokens, the hours ago its work spread over)
STAGES = (("L229585", 0.40, (72, 30)), ("L230001", 0.35, (28, 0.2)), ("L231777", 0.25, (3, 0.1)))
# A grid node whose software area is not mounted: it takes tokens and fails each in seconds (a "black hole"),
# in a wave some hours ago, as an operator finds it in the morning.
BLACK_HOLE = "wn-lot-066.gina.surfsara.nl"
WAVE_HOURS_AGO = (4.5, 3.7)

# One worker process per entry: the design document it iterates on, how many tasks it does before its job
# ends (a fraction of the pool), picas's max_scrub, and what makes it look like a job on some grid node.
SURF_WORKERS = (
    {"design": "Monitor", "share": 0.20, "max_scrub": 1, "hostname": "tcn1187.local.snellius.surf.nl",
     "env": {"SLURM_ARRAY_JOB_ID": "9120345", "SLURM_ARRAY_TASK_ID": "1"}},
    {"design": "Monitor", "share": 0.20, "max_scrub": 1, "hostname": "tcn1203.local.snellius.surf.nl",
     "env": {"SLURM_ARRAY_JOB_ID": "9120345", "SLURM_ARRAY_TASK_ID": "2"}},
    {"design": "Monitor", "share": 0.18, "max_scrub": 0, "hostname": "wn-lot-031.gina.surfsara.nl",
     "env": {"DIRACJOBID": "48213345"}},
    # The multi-core pilot of SURF's autopilot example; its wrapper reports exit codes as strings.
    {"design": "MultiCore", "share": 0.10, "max_scrub": 0, "hostname": "wn-hb-207.gina.surfsara.nl",
     "env": {"SLURM_JOB_ID": "9120417"}, "string_exit_codes": True},
    {"design": "Monitor", "share": 0.08, "max_scrub": 0, "hostname": BLACK_HOLE, "env": {"DIRACJOBID": "48213377"},
     "black_hole": True},
)
# Last, a pilot started for the first observation alone (its ids' range of the todo view) finishes what is left of it.
SURF_SWEEPER = {"design": "Monitor", "max_scrub": 0, "hostname": "tcn1187.local.snellius.surf.nl",
                "env": {"SLURM_JOB_ID": "9120502"}}
# A pilot that processes a few tokens and then dies (SIGKILL) in the middle of one: a lock nobody releases.
SURF_DOOMED = {"design": "Monitor", "hang_after": 6, "hostname": "tcn0418.local.snellius.surf.nl",
               "env": {"SLURM_JOB_ID": "9119876"}}
# Pilots killed right after claiming: 4 of these locks are aged to yesterday, 3 to a few minutes ago.
SURF_CLAIMER = {"claims": 7, "hostname": "wn-sc-044.gina.surfsara.nl", "env": {"PBS_JOBID": "4471023.batch1.gina"}}
STALE_AGE = 30 * 3600


def surf_design_docs(url, username, password, database):
    """SURF's design documents, written as SURF's create_views.py writes them: by couchdb-python's ViewDefinition
    (each view's code, one design-document update per document), which lives in picas's environment
    (localsite/picas_pilot.py, role "views")."""
    seeding.run_worker({"url": url, "database": database, "username": username, "password": password}, {
        "role": "views", "design_docs": SURF_DESIGN_DOCS, "conditions": SURF_CONDITIONS, "view_code": SURF_VIEW_CODE,
        "overview_code": SURF_OVERVIEW_CODE, "overview_reduce": SURF_OVERVIEW_REDUCE})


def _new_token(number, **fields):
    """A token with every field picas reads (a missing scrub_count crashes a picas worker)."""
    token = {"_id": f"token_{number}", "type": "token", "lock": 0, "done": 0, "hostname": "", "scrub_count": 0,
             "input": "", "exit_code": "", "output": {}, "uploads": {}, "error": []}
    token.update(fields)
    return token


def _stage_of(n_tokens):
    """{token number: observation}: each observation takes the next share of the tokens in their ids' order."""
    ordered = sorted(range(1, n_tokens + 1), key=lambda number: f"token_{number}")
    stage, start = {}, 0
    for obsid, share, _hours in STAGES:
        end = len(ordered) if obsid == STAGES[-1][0] else start + round(share * len(ordered))
        stage.update((number, obsid) for number in ordered[start:end])
        start = end
    return stage


def _surf_tokens(n_tokens, rng):
    tokens = []
    stage = _stage_of(n_tokens)
    for number in range(1, n_tokens + 1):
        obsid = stage[number]
        cores = 4 if rng.random() < 0.3 else 1
        subband = rng.randrange(0, 244)
        command = f"bash run_dppp.sh --obsid {obsid} --subband {subband:03d} --cores {cores} --avg 4"
        tokens.append(_new_token(number, input=command, cores=cores, OBSID=obsid))
    return tokens


def seed_surf(url, username, password, database="demo-surf", n_tokens=300, now=None):
    """Seed a SURF PiCaS pool processed by real picas workers. Returns {bucket: count}, or {} if it existed.

    Lock and done times written by the workers are the real clock's; `now` (default: the clock) is the time
    the seed's own writes are relative to (aged locks, out-of-view tokens).
    """
    now = time.time() if now is None else float(now)
    rng = random.Random(229585)
    db = seeding.Database(url, database, username, password)
    if not db.prepare():
        return {}
    surf_design_docs(url, username, password, database)
    db.bulk(_surf_tokens(n_tokens, rng))

    credentials = {"url": db.server, "database": database, "username": username, "password": password}
    doomed = _run_surf_workers(credentials, n_tokens)
    first = sorted(f"token_{number}" for number, obsid in _stage_of(n_tokens).items() if obsid == STAGES[0][0])
    seeding.run_worker(credentials, {**SURF_SWEEPER, "role": "run", "seed": 7, "max_tasks": len(first),
                                     "view_params": {"startkey": first[0], "endkey": first[-1]}})
    db.bulk(_spread_over_days(db, now, rng))
    claimed = seeding.run_worker(credentials, {"role": "claim", **SURF_CLAIMER}).claimed()
    stale, fresh = doomed + claimed[:4], claimed[4:]
    for doc_id in stale:
        _set_lock(db, doc_id, int(now - STALE_AGE - rng.uniform(0, 2 * 3600)))
    for doc_id in fresh:
        _set_lock(db, doc_id, int(now - rng.uniform(2 * 60, 40 * 60)))

    db.bulk(_surf_extras(n_tokens, now, rng))
    return seeding.summary(db, {"token": "surf"})


def _spread_over_days(db, now, rng):
    """The finished tokens with their times moved to when a survey would have done them: each observation's over
    its stage's hours (in the order the workers did them), the black hole's in a wave, each run taking minutes
    (the simulated commands take milliseconds). Failure times move with them. Returns the documents to write."""
    finished = {}
    for doc in db.all_docs():
        end = doc.get("done") if doc.get("done") not in (0, 99) else max(
            [e["time"] for e in doc.get("error") or [] if isinstance(e, dict)], default=None)
        if doc.get("type") == "token" and isinstance(end, (int, float)) and end > 0:
            window = WAVE_HOURS_AGO if doc.get("hostname") == BLACK_HOLE else next(
                hours for obsid, _share, hours in STAGES if obsid == doc.get("OBSID"))
            finished.setdefault(window, []).append((end, doc))
    docs = []
    for (first, last), found in finished.items():
        found.sort(key=lambda f: (f[0], f[1]["_id"]))
        for i, (end, doc) in enumerate(found):
            when = now - 3600 * (first - (first - last) * (i + rng.random()) / len(found))
            run = rng.uniform(15, 50) if doc["hostname"] == BLACK_HOLE else rng.uniform(8 * 60, 25 * 60)
            delta = int(when) - int(end)
            if doc["done"] not in (0, 99):
                doc["done"] = int(when)
            if doc["lock"] not in (0, 99):
                doc["lock"] = int(when - run)
            for entry in doc.get("error") or []:
                if isinstance(entry, dict) and isinstance(entry.get("time"), (int, float)):
                    entry["time"] = int(entry["time"]) + delta
            docs.append(doc)
    return docs


def _set_lock(db, doc_id, lock):
    """Back-date the lock of a token a dead pilot holds (no live worker writes it any more)."""
    doc = db.get(doc_id)
    if doc["done"] == 0 and doc["lock"] > 0:
        doc["lock"] = lock
        db.put(doc)


def _run_surf_workers(credentials, n_tokens):
    """Run the picas workers side by side; returns the ids of the tokens held by pilots that were SIGKILLed."""
    deadline = time.monotonic() + seeding.WORKER_DEADLINE
    workers = []
    try:
        for number, spec in enumerate(SURF_WORKERS):
            spec = {**spec, "role": "run", "seed": number, "max_tasks": max(1, int(spec["share"] * n_tokens))}
            workers.append(seeding.start_worker(credentials, spec))
        doomed = seeding.start_worker(credentials, {**SURF_DOOMED, "role": "run", "seed": 99})
        workers.append(doomed)
        held = []
        line = doomed.read_line(deadline)
        if line.startswith("HANG "):
            held.append(line.split(" ", 1)[1])
            doomed.process.kill()  # SIGKILL: no signal handler runs, the token stays locked
        doomed.finish(deadline, killed=bool(held))
        for worker in workers[:-1]:
            worker.finish(deadline)
        return held
    finally:
        for worker in workers:  # only after an error: leave no worker behind
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait()


# Things only the seed writes: what old picas versions and other tools left behind, and attached logs.
def _surf_extras(n_tokens, now, rng):
    number = n_tokens
    docs = []

    def token(**fields):
        nonlocal number
        number += 1
        obsid = OBSIDS[number % len(OBSIDS)]
        fields.setdefault("input", f"bash run_dppp.sh --obsid {obsid} --subband {number % 244:03d} --cores 1")
        fields.setdefault("OBSID", obsid)
        docs.append(_new_token(number, cores=1, **fields))
        return docs[-1]

    # Legacy errors (lock = done = -1): old picas and SURF's picas.tar marked failures this way.
    for i, message in enumerate((
        "Exception <class 'OSError'> occurred during processing: [Errno 28] No space left on device: "
        "'/tmp/slurm.8812345/L229585_SB071.MS'",
        "Exception <class 'OSError'> occurred during processing: [Errno 28] No space left on device: "
        "'/tmp/slurm.8812391/L230001_SB112.MS'",
        "Exception <class 'KeyError'> occurred during processing: 'inputs'",
    )):
        when = int(now - 20 * 86400 - i * 3600)
        token(lock=-1, done=-1, hostname=f"wn-lot-0{12 + i}.gina.surfsara.nl", exit_code=1 if i < 2 else "",
              error=[{"time": when, "message": message}])
    # lock == 0 and done > 0: scrubbed by an old BasicTokenModifier.scrub(), which did not reset done.
    for i in range(3):
        done = int(now - 3 * 86400 - i * 1800)
        token(lock=0, done=done, scrub_count=1, hostname=f"wn-hb-1{10 + i}.gina.surfsara.nl", exit_code=i % 2,
              error=[] if i % 2 == 0 else [{"time": done, "message": f"srm copy failed (exit {i + 1})"}])
    # lock == 1 with a status: GRID_LRT's set_view_to_status was run on this pool; the lock age is unknown.
    for status in ("running", "processing"):
        token(lock=1, status=status, hostname="wn-lot-007.gina.surfsara.nl")
    # Logs that a pilot attached: a finished token's stdout, a failed one's stderr (markup in tokens is the
    # escaping tests' business, not the demo's).
    token(lock=int(now - 4000), done=int(now - 3500), exit_code=0, hostname="wn-lot-021.gina.surfsara.nl",
          _attachments={f"logs_token_{number + 1}.out": seeding.inline(
              "DPPP: reading 244 subbands\nDPPP: averaging 4 channels\nDPPP finished in 4 min 12 s\n")})
    token(lock=int(now - 5000), done=int(now - 4200), exit_code=1, hostname="wn-lot-028.gina.surfsara.nl",
          error=[{"time": int(now - 4200), "message": "srmcp: SRM_FILE_BUSY: file is being written by another "
                                                       "client"}],
          _attachments={f"logs_token_{number + 2}.err": seeding.inline(
              "globus-url-copy: error: SRM_FILE_BUSY\nexit 1\n")})
    # Not tokens: picas's CouchDBLogger writes these into the pool database.
    for i in range(2):
        created = now - 7200 + i * 60
        docs.append({"_id": f"wn-lot-031.gina.surfsara.nl:{int(created)}", "type": "log", "lvl": 20,
                     "msg": "Iterator is waiting for work...", "created": created, "func": "__next__",
                     "host": "wn-lot-031.gina.surfsara.nl", "trance_nr": 48213 + i})
    return docs


# --------------------------------------------------------------------------------------------------------------
# LOFAR (GRID_LRT) pool

# The step configuration, as in shared/fixtures/pref_cal1.yaml (the repository must seed without shared/).
PREF_CAL1_YAML = """\
Token:
    OBSID: ""
    STARTSB: 000
    SBXloc: "SKSP/prefactor/pref_cal1.tar"
    lock: 0
    done: 0
    hostname: ""
    output: 0
    LOFAR_PATH: "/cvmfs/softdrive.nl/lofar_sw/LOFAR/2.20.2-centos7"
    PIPELINE_STEP: "pref_cal1"
    progress: ""
    scrub_count: 0
    status: queued
    RESULTS_DIR: "gsiftp://gridftp.grid.sara.nl:2811/pnfs/grid.sara.nl/data/lofar/user/sksp/pipelines/SKSP/pref_cal1"
    times: {}
    type: test
Sandbox:
    name: pref_cal1
    loc: "/SKSP/prefactor/"
    remove_when_done: True
Shell_variables:
    '_id': '$TOKEN'
    OBSID: '$OBSID'
    STARTSB: '$STARTSB'
    PIPELINE_STEP: '$PIPELINE_STEP'
    RESULTS_DIR: '$RESULTS_DIR'
    '_attachments': {srm.txt: srm.txt}
"""


def _fixture_srm_list():
    """shared/fixtures/L229585_srm.txt: subbands 100-150 without 117 and 131, and SB103 once more at the end."""
    base = "srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/229585/L229585_SB{:03d}"
    subbands = [sb for sb in range(100, 151) if sb not in (117, 131)] + [103]
    return [base.format(sb) + "_uv.dppp.MS_2b1cf5e8.tar" for sb in subbands]


def _synthetic_srm_list(obsid, site, subbands):
    return [site.format(obsid=obsid, num=obsid[1:], sb=sb) for sb in subbands]


# observation: (SURLs, subbands per token, GRID_LRT API, share of tokens done / error / locked)
def _observations():
    juelich = ("srm://lofar-srm.fz-juelich.de:8443/pnfs/fz-juelich.de/data/lofar/ops/projects/lc3_012/{num}/"
               "{obsid}_SB{sb:03d}_uv.dppp.MS_7c3e1a02.tar")
    poznan = "srm://lta-head.lofar.psnc.pl:8443/lofar/ops/projects/lt10_004/{num}/{obsid}_SB{sb:03d}_uv.MS_a91f03bc.tar"
    return {
        "L229585": (_fixture_srm_list(), 1, "0.5", (0.55, 0.12, 0.10)),
        "L230461": (_synthetic_srm_list("L230461", juelich, [sb for sb in range(80) if sb not in (17, 44, 45)]),
                    2, "0.5", (0.30, 0.08, 0.20)),
        "L232875": (_synthetic_srm_list("L232875", poznan, [sb for sb in range(62) if sb not in (13, 38)]),
                    1, "1.0.7", (0.45, 0.15, 0.10)),
    }


def _subband_chunks(surls, size):
    """GRID_LRT srmlist.sbn_dict + slice_dicts: de-duplicate, key by subband, chunks of `size` consecutive
    subbands keyed by the chunk's first subband ("%03d"); missing subbands leave gaps, empty chunks go."""
    by_subband = {}
    for surl in dict.fromkeys(surls):
        match = re.search(r"SB(\d+)_", surl)
        if match:
            by_subband[int(match.group(1))] = surl
    first = min(by_subband)
    chunks = {}
    for sb in sorted(by_subband):
        key = first + (sb - first) // size * size
        chunks.setdefault(f"{key:03d}", []).append(by_subband[sb])
    return chunks


def _lrt_tokens(obsid, surls, size, api, config):
    """GRID_LRT TokenSet.create_dict_tokens(chunks, id_prefix="SB", id_append=OBSID, key_name="STARTSB",
    file_upload="srm.txt") for one observation; type and OBSID set on every token (add_keys_to_list)."""
    token_type = f"{config['PIPELINE_STEP']}_{obsid}"
    tokens = []
    for key, chunk in _subband_chunks(surls, size).items():
        token = copy.deepcopy(config)
        token.update(type=token_type, OBSID=obsid, STARTSB=f"{int(key):03d}")
        step = f"_{token['PIPELINE_STEP']}" if token.get("PIPELINE_STEP") else ""
        token["_id"] = f"t_{token_type}_{obsid}{step}_SB{int(key):03d}"
        if api != "0.5":
            token["PICAS_API_VERSION"] = api
        token["_attachments"] = {
            "srm.txt": seeding.inline("\n".join(chunk) + "\n"),
            "pref_cal1.parset": seeding.inline(f"# prefactor pre-facet-calibrator, {obsid}\n"
                                        f"! cal_input_pattern = {obsid}*.MS\n! avg_timeresolution = 4.\n"),
        }
        tokens.append(token)
    return token_type, tokens


# Where a failing LOFAR job stops, by its exit code (the codes GRID_LRT documents).
LRT_ERRORS = {20: "downloading", 21: "downloading", 22: "downloading", 96: "extracting", 97: "running",
              98: "running", 99: "running"}
LRT_HOSTS = [f"wn-lot-0{n:02d}.gina.surfsara.nl" for n in range(10, 40, 3)] + ["wn-db-04.gina.surfsara.nl"]


def _launch(token, fate, now, rng):
    """What the GRID_LRT launcher would have written by now into a token with this fate."""
    if fate == "todo":
        return
    token["hostname"] = rng.choice(LRT_HOSTS)
    if fate == "locked":
        lock = now - rng.uniform(3 * 60, 100 * 60)
        status = rng.choice(["downloading", "running", "running"])
        steps = ["launched", "downloading"] + (["running"] if status == "running" else [])
        end = now
    else:
        end = now - rng.uniform(5 * 60, 6 * 3600)  # done times spread over the last six hours
        lock = end - rng.uniform(20 * 60, 90 * 60)
        if fate == "done":
            steps = ["launched", "downloading", "extracting", "running", "uploading results", "done"]
        else:
            code = rng.choice(list(LRT_ERRORS))
            stop = LRT_ERRORS[code]
            all_steps = ["launched", "downloading", "extracting", "running"]
            steps = all_steps[: all_steps.index(stop) + 1] + ["error"]
            token["output"] = code
        token["done"] = int(end)
        status = steps[-1]
    token["lock"] = int(lock)
    # The step times are spread between lock and the end, in order; a finished token's last step is its end.
    marks = sorted(rng.uniform(lock, end) for _ in steps[1:])
    if fate != "locked":
        marks[-1] = end
    token["times"] = dict(zip(steps, [lock, *marks], strict=True))
    token["status"] = status
    if status == "running":
        token["progress"] = rng.choice(["ndppp_prep_cal", "calib_cal", "h5imp_cal", "plot_cal"])


def seed_lofar(url, username, password, database="demo-lofar", now=None):
    """Seed a GRID_LRT (LOFAR) pool, launcher progress simulated. Returns {bucket: count}, or {} if it existed."""
    now = time.time() if now is None else float(now)
    rng = random.Random(230461)
    db = seeding.Database(url, database, username, password)
    if not db.prepare():
        return {}
    config = yaml.safe_load(PREF_CAL1_YAML)["Token"]
    docs, styles = [], {}
    for obsid, (surls, size, api, (done, error, locked)) in _observations().items():
        token_type, tokens = _lrt_tokens(obsid, surls, size, api, config)
        docs.append(lrt_design_doc(token_type, api))
        styles[token_type] = "lrt05" if api == "0.5" else "lrt1"
        for token in tokens:
            draw = rng.random()
            fate = ("done" if draw < done else "error" if draw < done + error
                    else "locked" if draw < done + error + locked else "todo")
            _launch(token, fate, now, rng)
        if obsid == "L230461":
            # Someone ran GRID_LRT's set_view_to_status("locked", "running"): lock = 1, age unknown.
            for token in [t for t in tokens if t["status"] == "queued"][:2]:
                token.update(lock=1, status="running", hostname=rng.choice(LRT_HOSTS))
            # A pilot on a node that died yesterday.
            stale = next(t for t in tokens if t["status"] == "queued")
            stale.update(lock=int(now - STALE_AGE), status="downloading", hostname=rng.choice(LRT_HOSTS),
                         times={"launched": now - STALE_AGE, "downloading": now - STALE_AGE + 40})
        docs.extend(tokens)
    db.bulk(docs)
    return seeding.summary(db, styles)


if __name__ == "__main__":
    # python -m localsite.demo: seed both pools on the server named by COUCHDB_URL / _USER / _PASSWORD.
    for name, seed in (("demo-surf", seed_surf), ("demo-lofar", seed_lofar)):
        began = time.monotonic()
        result = seed(os.environ["COUCHDB_URL"], os.environ.get("COUCHDB_USER", ""),
                      os.environ.get("COUCHDB_PASSWORD", ""), database=name)
        counts = ", ".join(f"{k} {v}" for k, v in result.items()) or "already seeded"
        print(f"pool {name}: {counts} ({time.monotonic() - began:.1f} s)")
