"""Waiting in tests: for a condition, never for a time. The suite runs on shared 2-core machines, where a job, a
refresh or a page can take many times longer than on an idle one; a test that waits must only ever fail because
the condition never came. So every wait has one patience (TEST_PATIENCE_SECONDS, 900 by default), long enough for
any busy machine, that exists only so that a broken test ends at all."""

import os
import time

PATIENCE = float(os.environ.get("TEST_PATIENCE_SECONDS", 900))


def wait_for(condition, seconds=None, step=0.1, what="the condition"):
    """The condition's first truthy value, asked every `step` seconds. `seconds` is how long it takes on an idle
    machine (a reader's hint, never a limit); AssertionError after PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {PATIENCE:.0f} s")
        time.sleep(step)
