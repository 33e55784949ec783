"""A pilot job as users write them with the real picas 1.1.2 client: claim from Monitor/todo, run, save.

Run as a separate process by the tests: `python tests/picas_worker.py` with PICAS_URL, PICAS_DB, PICAS_USER,
PICAS_PASSWORD (never on the command line) and PICAS_DELAY (seconds of "work" per token) in the environment.
Failures come in picas's two kinds: PICAS_FAIL_EVERY=n makes every n-th first try exit 1 (the task sets exit_code
and done = now); PICAS_RAISE_EVERY=n makes every n-th first try raise, which picas's Task.error() records as
lock = done = 99 with the time in error[]. RunActor's max_scrub retries both, after cleanup_run: PICAS_CLEANUP
seconds of clean-up (copying logs, removing scratch files) lie between saving a failure and scrubbing it.
PICAS_FIRST / PICAS_LAST (token ids, both optional) limit the pilot to a slice of the todo view, as
view parameters of picas's iterator. PICAS_HOSTNAME stands in for the machine's name, which picas writes into each
token it claims (socket.gethostname()): several "hosts" on one machine. PICAS_STOP_FILE: the pilot waits for
work when the todo view is empty, until that file exists (picas's EndlessViewIterator). A token with a `simulate`
field ({"code", "message", "times"}) fails with that code its first `times` runs (-1: always), then succeeds.
"""

import os
import socket
import time

from picas.actors import RunActor
from picas.clients import CouchDB
from picas.iterators import EndlessViewIterator, TaskViewIterator


class Pilot(RunActor):
    def process_task(self, task):
        time.sleep(float(os.environ.get("PICAS_DELAY", "0.02")))
        if isinstance(task.value.get("simulate"), dict):
            return self.simulate(task, task.value["simulate"])
        first_try = task.value.get("scrub_count", 0) == 0
        if first_try and every("PICAS_RAISE_EVERY", self.tasks_processed):
            raise RuntimeError("pilot raised (first try)")
        failing = first_try and every("PICAS_FAIL_EVERY", self.tasks_processed)
        task["exit_code"] = 1 if failing else 0
        if failing:
            task.doc.setdefault("error", []).append({"time": int(time.time()), "message": "exit 1 (first try)"})
        else:
            task["output"] = {"result": f"{task['_id']} by {socket.gethostname()} pid {os.getpid()}"}
        if os.environ.get("PICAS_GRID_LRT"):
            task["status"], task["output"] = "done", 0  # what GRID_LRT's launcher writes on success
        task.done()

    def simulate(self, task, how):
        """A job that fails with `how`'s exit code and message on its first `times` runs (-1: every run), then
        succeeds: a transient failure, or (-1) a permanent one. Runs are counted by the token's own error list."""
        runs = len(task.value.get("error") or [])
        if how.get("times", 0) < 0 or runs < how.get("times", 0):
            task["exit_code"] = how["code"]
            task.doc.setdefault("error", []).append({"time": int(time.time()), "message": how.get("message", "")})
        else:
            task["exit_code"] = 0
            task["output"] = {"result": f"{task['_id']} after {runs} failure{'s' if runs != 1 else ''}"}
        task.done()

    def cleanup_run(self):
        time.sleep(float(os.environ.get("PICAS_CLEANUP", "0")))


def every(variable, processed):
    n = int(os.environ.get(variable, "0"))
    return n > 0 and processed % n == 0


if __name__ == "__main__":
    if os.environ.get("PICAS_HOSTNAME"):
        socket.gethostname = lambda: os.environ["PICAS_HOSTNAME"]
    db = CouchDB(url=os.environ["PICAS_URL"], db=os.environ["PICAS_DB"], username=os.environ["PICAS_USER"],
                 password=os.environ["PICAS_PASSWORD"])
    design = os.environ.get("PICAS_DESIGN", "Monitor")
    keys = {name: os.environ[variable] for name, variable in (("startkey", "PICAS_FIRST"), ("endkey", "PICAS_LAST"))
            if os.environ.get(variable)}
    iterator = None
    if os.environ.get("PICAS_STOP_FILE"):  # a pilot that waits for work until the file exists, as long pilots do
        stop = os.environ["PICAS_STOP_FILE"]
        iterator = EndlessViewIterator(TaskViewIterator(db, "todo", design_doc=design, **keys), sleep_sec=0.2,
                                       stop_callback=lambda: os.path.exists(stop))
    Pilot(db, iterator=iterator, view="todo", design_doc=design, **keys).run(
        max_scrub=int(os.environ.get("PICAS_MAX_SCRUB", "0")))
