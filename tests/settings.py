"""Test settings: the real settings module, with the environment a developer's shell would give it."""

import os

os.environ.setdefault("DEBUG", "true")
os.environ.setdefault("SECRET_KEY", "test-secret-key")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")

from dashboard.settings import *  # noqa: E402, F403
