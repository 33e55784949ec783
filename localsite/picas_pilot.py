"""A demo pool's picas worker: a real picas 1.1.2 client in a process of its own, as a pilot job on a grid node runs it.

Run by the Python of picas's own environment (`.venv-picas`, `make install` makes it: picas pins an old cryptography
that the site must not carry), as a script: `python localsite/picas_pilot.py`, its settings as JSON on stdin
(credentials never on the command line), protocol lines "DEMO ..." on stdout. It imports nothing of the site:
localsite/seeding.py starts and watches it, localsite/demo.py says what each worker does.
"""

import json
import logging
import os
import random
import re
import socket
import sys
import time
import zlib
from datetime import UTC, datetime


def iso(t):
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# What a token's command does when a worker runs it: decided by its input, so a rerun behaves the same.
# (share of tokens in per mille, outcome)
OUTCOMES = ((700, "ok"), (750, "srm"), (785, "missing"), (820, "oom"), (920, "flaky"), (965, "exception"),
            (978, "no_exit_code"), (1000, "ok"))


def _outcome(command):
    value = zlib.crc32(command.encode()) % 1000
    return next(outcome for limit, outcome in OUTCOMES if value < limit)


def _worker_main():
    """Entry point of a worker process: settings as JSON on stdin, protocol lines "DEMO ..." on stdout."""
    spec = json.load(sys.stdin)
    if spec["role"] == "views":
        return _create_views(spec)
    # Each worker plays a different grid node: picas writes socket.gethostname() into the tokens it locks.
    socket.gethostname = lambda: spec["hostname"]
    # picas after that: what it learns of its host at import time must be the node's name too.
    from couchdb.http import ResourceConflict
    from picas.actors import RunActor
    from picas.clients import CouchDB
    from picas.iterators import TaskViewIterator

    logging.disable(logging.WARNING)  # picas logs every token at INFO; the caller wants a short summary
    client = CouchDB(url=spec["url"], db=spec["database"], username=spec["username"], password=spec["password"])

    if spec["role"] == "claim":
        # Pilots that claimed a token and died before doing anything with it.
        iterator = TaskViewIterator(client, "todo")
        for _ in range(spec["claims"]):
            try:
                task = next(iterator)
            except StopIteration:
                break
            print(f"DEMO CLAIMED {task.id}", flush=True)
        return

    class DemoActor(RunActor):
        """Runs a token's command (simulated): logs attached, exit code and errors recorded as users do."""

        rng = random.Random(spec.get("seed", 0))

        def process_task(self, task):
            if spec.get("hang_after") is not None and self.tasks_processed >= spec["hang_after"]:
                print(f"DEMO HANG {task.id}", flush=True)
                time.sleep(spec["hang_seconds"])  # until the SIGKILL; the limit only guards against orphans
                os._exit(3)
            _run_command(task, self.rng, spec)

    actor = DemoActor(client, view="todo", design_doc=spec["design"], **spec.get("view_params", {}))
    try:
        actor.run(max_tasks=spec.get("max_tasks"), max_scrub=spec.get("max_scrub", 0))
    except (ResourceConflict, OSError):
        # picas's scrub save is not conflict-safe, and claiming gives up after 10 conflicts: either ends
        # a pilot on a grid too, so it ends this worker quietly.
        pass
    print(f"DEMO END {actor.tasks_processed}", flush=True)


def _create_views(spec):
    """What SURF's create_views(db, design_doc_name, logic_appendix) writes, for each design document named in
    spec["design_docs"] ({name: the appendix to each view's condition}), with couchdb-python as SURF's script does."""
    import couchdb
    from couchdb.design import ViewDefinition

    server = couchdb.Server(spec["url"])
    server.resource.credentials = (spec["username"], spec["password"])
    db = server[spec["database"]]
    for design_doc_name, logic_appendix in spec["design_docs"].items():
        conditions = {name: cond + logic_appendix for name, cond in spec["conditions"].items()}
        views = [ViewDefinition(design_doc_name, name, spec["view_code"].format(condition=cond))
                 for name, cond in conditions.items()]
        views.append(ViewDefinition(design_doc_name, "overview_total", spec["overview_code"].format(**conditions),
                                    spec["overview_reduce"]))
        for ok, doc_id, reason in ViewDefinition.sync_many(db, views):
            if not ok:
                sys.exit(f"could not write {doc_id}: {reason}")


def _run_command(task, rng, spec):
    """Pretend to run the token's command; fill in what a user's process_task fills in."""
    doc_id, command = task.id, task["input"]
    obsid, subband = re.search(r"--obsid (\S+)", command).group(1), int(re.search(r"--subband (\d+)", command)[1])
    host, job = spec["hostname"], next(iter(spec.get("env", {}).values()), "0")
    started = time.time()
    outcome = "not_mounted" if spec.get("black_hole") else _outcome(command)
    if outcome == "flaky":  # fails the first time only: a retry after a scrub succeeds
        outcome = "srm_timeout" if task["scrub_count"] == 0 else "ok"
    surl = (f"srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_035/{obsid[1:]}/"
            f"{obsid}_SB{subband:03d}_uv.dppp.MS_{zlib.crc32(obsid.encode()):08x}.tar")
    scratch = f"/scratch/slurm.{job}/{doc_id}"
    out = [f"{iso(started)} starting {command}", f"host {host}, scratch {scratch}", f"fetching {surl}"]
    err = []
    exit_code, message = 0, None
    if outcome == "srm":
        exit_code = 1
        message = f"srm copy failed for {surl} at {iso(started)} (attempt {rng.randint(1, 5)})"
    elif outcome == "srm_timeout":
        exit_code = 1
        message = (f"gfal-copy: Transfer timed out after {rng.randint(600, 3600)} s: "
                   f"gsiftp://gridftp.grid.sara.nl:2811/pnfs/grid.sara.nl/data/lofar/ops/{obsid}_SB{subband:03d}.tar")
    elif outcome == "missing":
        exit_code = 2
        message = (f"run_dppp.sh: line {rng.randint(20, 140)}: {scratch}/{obsid}_SB{subband:03d}.parset: "
                   "No such file or directory")
    elif outcome == "not_mounted":
        exit_code = 127
        message = "run_dppp.sh: line 12: /cvmfs/softdrive.nl/lofar_sw/LOFAR/2.20.2-centos7/bin/DPPP: not found"
    elif outcome == "oom":
        exit_code = 137
        message = (f"Killed: process {rng.randint(2000, 65000)} (DPPP) on {host} used "
                   f"{rng.randint(8000, 64000)} MB at {iso(started)}, out of memory")
    elif outcome == "exception":
        err.append(f"Traceback (most recent call last): checksum of {obsid}_SB{subband:03d}.tar")
        task.put_attachment(f"logs_{doc_id}.err", "\n".join(err) + "\n")
        # RunActor catches this and calls task.error(): lock = done = 99, exit_code untouched.
        raise RuntimeError(f"checksum mismatch for {scratch}/{obsid}_SB{subband:03d}.tar: "
                           f"adler32 {rng.getrandbits(32):08x} != {rng.getrandbits(32):08x}")
    if message:
        err.append(message)
        task["error"].append({"time": int(time.time()), "message": message})
    out.append(f"exit status {exit_code}")
    if outcome == "no_exit_code":  # the wrapper died before reporting: done, but exit_code stays ""
        out.append("wrapper: lost the exit status of DPPP")
    else:
        task["exit_code"] = str(exit_code) if spec.get("string_exit_codes") else exit_code
    if exit_code == 0 and outcome != "no_exit_code":
        result = f"gsiftp://gridftp.grid.sara.nl:2811/pnfs/grid.sara.nl/data/lofar/user/results/{obsid}_SB{subband:03d}.MS"
        task.output = {"ms": f"{obsid}_SB{subband:03d}.MS", "size_mb": rng.randint(300, 2400)}
        task.uploads = {"ms": result}
    task.put_attachment(f"logs_{doc_id}.out", "\n".join(out) + "\n")
    task.put_attachment(f"logs_{doc_id}.err", "\n".join(err) + "\n")
    if zlib.crc32(doc_id.encode()) % 16 == 0:
        # Old pilots named their logs after the date: '/', ':' and spaces in attachment names.
        stamp = datetime.fromtimestamp(started, UTC)
        task.put_attachment(f"{stamp:%d/%m/%Y_%H:%M:%S}_logs_{doc_id}.out", "\n".join(out) + "\n")
        task.put_attachment(f"pilot {stamp:%d/%m/%Y %H:%M:%S} {doc_id}.err", "\n".join(err) + "\n")
    task.done()


if __name__ == "__main__":
    _worker_main()
