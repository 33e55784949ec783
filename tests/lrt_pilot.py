"""A pilot as GRID_PiCaS_Launcher runs a GRID_LRT token, written with cloudant (the client GRID_LRT uses).

Run as a separate process by the tests: `python tests/lrt_pilot.py`, with PICAS_URL, PICAS_DB, PICAS_USER,
PICAS_PASSWORD and LRT_TYPE (the token type: the design document whose `todo` view it claims from) in the
environment. What the launcher writes, one save each: the claim (lock = now, hostname), status "launched",
then the steps the pipeline's scripts report ("downloading", "running", "uploading"), each stamped in `times`;
then `output` (the exit code) and status "done" or "error"; last it closes the token (done = now).
LRT_STOP_AT=<status> ends the pilot right after it wrote that status (a token held at that step, as when a
pilot's job is killed there); LRT_FAIL_EVERY=n makes every n-th token fail with exit code 21 (download
failed); LRT_OUTPUT_TEXT=1 writes output as text ("0", "21"), as shell wrappers do; LRT_TASKS=n stops after n
tokens; LRT_HOSTNAME names the host.
"""

import os
import socket
import sys
import time

from cloudant.client import CouchDB
from requests.exceptions import HTTPError

STEPS = ("launched", "downloading", "running", "uploading")


def claim(db, token_type, hostname):
    """The first token of the todo view that this pilot can lock (another pilot may lock it first)."""
    ddoc = db.get_design_document(token_type)
    for row in ddoc.get_view("todo")(limit=100)["rows"]:
        doc = db[row["id"]]
        doc.fetch()
        if doc.get("lock") != 0 or doc.get("done") != 0:
            continue  # claimed since the view was read
        doc["lock"], doc["hostname"] = int(time.time()), hostname
        try:
            doc.save()
        except HTTPError as e:
            if e.response is not None and e.response.status_code == 409:
                continue
            raise
        return doc
    return None


def set_status(doc, status):
    doc["status"] = status
    times = doc.get("times") if isinstance(doc.get("times"), dict) else {}
    doc["times"] = {**times, status: time.time()}
    doc.save()


def main():
    token_type = os.environ["LRT_TYPE"]
    hostname = os.environ.get("LRT_HOSTNAME") or socket.gethostname()
    stop_at = os.environ.get("LRT_STOP_AT", "")
    fail_every = int(os.environ.get("LRT_FAIL_EVERY") or 0)
    as_text = bool(os.environ.get("LRT_OUTPUT_TEXT"))
    most = int(os.environ.get("LRT_TASKS") or 0)
    client = CouchDB(os.environ["PICAS_USER"], os.environ["PICAS_PASSWORD"], url=os.environ["PICAS_URL"],
                     connect=True)
    db = client[os.environ["PICAS_DB"]]
    done = 0
    while not most or done < most:
        doc = claim(db, token_type, hostname)
        if doc is None:
            break
        done += 1
        for step in STEPS:
            set_status(doc, step)
            if step == stop_at:
                return 0  # killed at this step: the token stays held with this status
        code = 21 if fail_every and done % fail_every == 0 else 0
        doc["output"] = str(code) if as_text else code
        set_status(doc, "done" if code == 0 else "error")
        if stop_at in ("done", "error"):
            return 0  # killed after reporting, before closing: held with status done or error
        doc["done"] = int(time.time())
        doc.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
