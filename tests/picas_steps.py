"""Changes to tokens made by the real picas 1.1.2 client, one at a time, as a pilot makes them.

Run by the Python of picas's own environment (localsite.seeding.picas_python(); the tests' helper is
tests/test_job_safety.picas_steps): PICAS_URL, PICAS_DB, PICAS_USER, PICAS_PASSWORD in the environment, the steps as
a JSON list on stdin, each {"id": token id, "do": "lock" | "done" | "scrub" | "set", "fields": {...}}: the fields
are set on the token first, then picas's Task method of that name runs ("set" runs none), then picas saves it.
"""

import json
import logging
import os
import sys

from picas.clients import CouchDB
from picas.documents import Task

logging.disable(logging.WARNING)  # picas logs every save at INFO
db = CouchDB(url=os.environ["PICAS_URL"], db=os.environ["PICAS_DB"], username=os.environ["PICAS_USER"],
             password=os.environ["PICAS_PASSWORD"])
for step in json.load(sys.stdin):
    task = Task(db.get(step["id"]).value)
    task.update(step.get("fields", {}))
    if step["do"] != "set":
        getattr(task, step["do"])()
    db.save(task)
