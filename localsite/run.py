"""`make run`: start what the site needs, seed the demo on first start, serve, and stop it all on Ctrl-C.

Started unless the environment names an outside one: the embedded CouchDB-compatible server
(unless COUCHDB_URL) and Redis (unless CELERY_BROKER_URL). Then a Celery worker and the site, as production runs
it (gunicorn, DEBUG off, static files collected and served by WhiteNoise, styled error pages) but over plain http
on 127.0.0.1; `make dev` runs it with DEBUG on, under Django's own server. The settings it gave its children are
written to var/run.env, so that `make shell` gives the README's `manage.py` commands the same ones.
"""

import argparse
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from localsite.embedded import EmbeddedCouch, EmbeddedError, EmbeddedRedis

BASE_DIR = Path(__file__).resolve().parent.parent
VAR = BASE_DIR / "var"
DEMO_DATABASES = "demo-surf,demo-lofar"
RUN_ENV = VAR / "run.env"
# A site on 127.0.0.1 over plain http: production's https-only settings would lock its users out.
LOCAL_HTTP = {"SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false", "SECURE_HSTS_SECONDS": "0"}


def persistent_secret(path):
    """A random secret kept in var/ so that restarts keep sessions and the embedded admin password."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def port_is_free(port):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.getenv("PORT", "8000")))
    parser.add_argument("--shell", action="store_true", help="a shell with the settings of the site `make run` started")
    args = parser.parse_args()
    if args.shell:
        return shell()
    if not port_is_free(args.port):
        sys.exit(f"make run: port {args.port} is taken (another `make run`?). "
                 f"Choose another: make run PORT={args.port + 1}")
    VAR.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DEBUG", "false")
    env.setdefault("SECRET_KEY", persistent_secret(VAR / "secret_key"))
    for name, value in LOCAL_HTTP.items():
        env.setdefault(name, value)
    started = []

    def stop_all(*_):
        for thing in reversed(started):
            thing.stop() if hasattr(thing, "stop") else _terminate(thing)
        started.clear()

    signal.signal(signal.SIGTERM, lambda *a: (stop_all(), sys.exit(0)))
    # A shell that starts us in the background ignores SIGINT for us; Ctrl-C must stop everything anyway.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        embedded_couch = not env.get("COUCHDB_URL")
        if embedded_couch:
            couch = EmbeddedCouch(VAR / "couchdb", port=int(env.get("COUCHDB_PORT", "5984")),
                                  password=persistent_secret(VAR / "couchdb_admin_password"))
            print(f"Starting the embedded CouchDB-compatible server on {couch.url} (data in var/couchdb) ...")
            started.append(couch.start())
            env.update(COUCHDB_URL=couch.url, COUCHDB_USER=couch.username, COUCHDB_PASSWORD=couch.password,
                       COUCHDB_DATABASES=DEMO_DATABASES)
            env.setdefault("COUCHDB_CREATE_VIEWS", "true")
            env.setdefault("COUCHDB_GROUP_FIELD", "OBSID")
        elif not env.get("COUCHDB_DATABASES"):
            sys.exit("COUCHDB_URL is set: also set COUCHDB_DATABASES to the pool databases to watch (comma-separated)")
        else:
            print("Watching the CouchDB server named by COUCHDB_URL (no embedded server started).")
        if not env.get("CELERY_BROKER_URL"):
            redis = EmbeddedRedis(VAR / "redis", port=int(env.get("REDIS_PORT", "0")) or None)
            started.append(redis.start())
            env["CELERY_BROKER_URL"] = redis.url
            print(f"Started the embedded Redis broker on {redis.url}")

        manage = [sys.executable, str(BASE_DIR / "manage.py")]
        subprocess.run([*manage, "migrate", "--no-input", "-v", "0"], env=env, check=True)
        subprocess.run([*manage, "collectstatic", "--no-input", "-v", "0"], env=env, check=True)
        write_run_env(env)
        seed = [*manage, "seed_demo"] + ([] if embedded_couch else ["--users-only"])
        subprocess.run(seed, env=env, check=True)

        started.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--loglevel", "WARNING",
             "--concurrency", "2", "--hostname", "dashboard-run@%h",
             # -B: the periodic tasks (following every pool's changes, pruning old events) in this worker.
             "-B", "--schedule", str(VAR / "celerybeat-schedule")],
            cwd=BASE_DIR, env=env, start_new_session=True,
        ))
        # The site as production serves it (gunicorn, docs/deploy.md); `make dev` (DEBUG on) keeps Django's own
        # server, whose error pages show tracebacks.
        debug = env["DEBUG"].lower() in ("1", "true", "yes", "on")
        serve = [*manage, "runserver", "--noreload", f"127.0.0.1:{args.port}"] if debug else [
            sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{args.port}", "--workers", "2",
            "--timeout", "120", "--graceful-timeout", "5", "--log-level", "warning"]
        started.append(subprocess.Popen(serve, cwd=BASE_DIR, env=env, start_new_session=True))
        ready(args.port, env, started)
        logins = json.loads((VAR / "demo-logins.json").read_text())
        print("\n" + "=" * 72)
        print(f"  PiCaS dashboard: http://127.0.0.1:{args.port}/")
        for role, login in logins.items():
            print(f"  {role:9} user {login['username']!r:12} password {login['password']!r}")
        print("  `make shell` (in another terminal) runs manage.py commands against this site.")
        print("  Ctrl-C stops the site, the worker and the embedded servers.")
        print("=" * 72 + "\n", flush=True)
        while all(p.poll() is None for p in started if isinstance(p, subprocess.Popen)):
            time.sleep(1)
        print("A child process ended; stopping everything.")
    except KeyboardInterrupt:
        print("\nStopping ...")
    except (EmbeddedError, subprocess.CalledProcessError) as e:
        print(f"make run failed: {e}", file=sys.stderr)
        stop_all()
        sys.exit(1)
    finally:
        stop_all()
        RUN_ENV.unlink(missing_ok=True)


def ready(port, env, started, patience=120):
    """Wait until the site answers and the worker answers a ping, so that the logins are printed after their
    start-up lines, last (a child that ends meanwhile is reported by the caller's loop)."""
    deadline = time.monotonic() + patience
    site = worker = False
    while time.monotonic() < deadline and not (site and worker):
        if any(p.poll() is not None for p in started if isinstance(p, subprocess.Popen)):
            return
        if not site:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    site = True
            except OSError:
                pass
        if not worker:
            worker = subprocess.run([sys.executable, "-m", "celery", "-A", "dashboard", "inspect", "ping",
                                     "--timeout", "1"], cwd=BASE_DIR, env=env, capture_output=True).returncode == 0
        time.sleep(0.5)


def write_run_env(env):
    """The settings `make run` gave the site and worker, for `make shell`: the variables it set and those the
    settings module reads (nothing else of the caller's environment); readable by this user only, like the
    secrets beside it in var/."""
    read = set(re.findall(r'"([A-Z][A-Z0-9_]+)"', (BASE_DIR / "dashboard" / "settings.py").read_text()))
    lines = [f"{name}={shlex.quote(value)}\n" for name, value in sorted(env.items())
             if name in read or os.environ.get(name) != value]
    RUN_ENV.touch(mode=0o600)
    RUN_ENV.write_text("".join(lines))


def read_run_env(path=RUN_ENV):
    """{name: value} of a file written by write_run_env."""
    return dict(shlex.split(line)[0].split("=", 1) for line in path.read_text().splitlines() if line.strip())


def shell():
    """`make shell`: the user's shell with the running site's settings, so that `python manage.py tokens ...`
    acts on the pools the site shows, through its broker."""
    if not RUN_ENV.exists():
        sys.exit("make shell: no site is running here. Start one with `make run` (in another terminal) first; "
                 "or set the settings yourself (README, Settings) and run `.venv/bin/python manage.py ...`.")
    env = {**os.environ, **read_run_env()}
    env["PATH"] = f"{BASE_DIR / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    program = env.get("SHELL") or "/bin/bash"
    print("A shell with the settings of the site `make run` started (exit to leave it). For example:\n"
          "  python manage.py tokens reset --pool demo-surf --state error --dry-run", flush=True)
    os.chdir(BASE_DIR)
    os.execvpe(program, [program], env)


def _terminate(process):
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
