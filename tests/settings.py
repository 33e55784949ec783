"""Test settings: the real settings module, with the environment a developer's shell would give it."""

import os
import tempfile

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("JOB_UPLOAD_DIR", tempfile.mkdtemp(prefix="picas-dashboard-uploads-"))  # not the checkout

from dashboard.settings import *  # noqa: E402, F403
from dashboard.settings import DATABASES  # noqa: E402

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not Django's in-memory default: the Celery worker thread and the test write the same tables, and
    # in-memory SQLite answers "table is locked" at once where a file waits for the other writer.
    test_db = os.path.join(tempfile.gettempdir(), f"picas-dashboard-test-{os.getpid()}.db")
    DATABASES["default"]["TEST"] = {"NAME": test_db}
