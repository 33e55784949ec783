"""The production setup of docs/deploy.md, run for real: DEBUG off, settings from the environment and secret files,
migrate + collectstatic, gunicorn with two workers behind a (simulated) TLS proxy, a Celery worker process, the
embedded CouchDB. Also: check --deploy is clean there and fails when a protection is switched off, and every
environment variable and setting the code reads is in docs/deploy.md."""

import ast
import base64
import http.client
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from localsite.embedded import free_port
from tests.conftest import surf_token
from tests.waiting import wait_for
from tokens.couch import Couch

BASE_DIR = Path(__file__).resolve().parent.parent
DEPLOY_MD = BASE_DIR / "docs" / "deploy.md"
HOST = "dashboard.example.org"
NOW = int(time.time())


def production_env(tmp, **overrides):
    """The environment of docs/deploy.md's production example (and nothing of the test run's own)."""
    (tmp / "secret_key").write_text(secrets.token_urlsafe(50) + "\n")
    env = {
        "PATH": os.environ["PATH"], "HOME": str(tmp),
        "DEBUG": "false", "SECRET_KEY_FILE": str(tmp / "secret_key"), "ALLOWED_HOSTS": HOST, "BEHIND_PROXY": "true",
        "DATABASE_URL": f"sqlite:///{tmp / 'dashboard.sqlite3'}", "STATIC_ROOT": str(tmp / "static"),
        "JOB_UPLOAD_DIR": str(tmp / "uploads"),
    }
    return {**env, **overrides}


def manage(env, *args):
    return subprocess.run([sys.executable, str(BASE_DIR / "manage.py"), *args], env=env, cwd=BASE_DIR,
                          capture_output=True, text=True, timeout=300)


# --- check --deploy --------------------------------------------------------------------------------------------------

def test_check_deploy_is_clean_under_the_production_settings(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("switched_off, warning", [
    ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
    ({"SECURE_HSTS_INCLUDE_SUBDOMAINS": "false"}, "security.W005"),
    ({"SECURE_SSL_REDIRECT": "false"}, "security.W008"),
    ({"SECURE_COOKIES": "false"}, "security.W012"),
    ({"SECRET_KEY_FILE": "", "SECRET_KEY": "short"}, "security.W009"),
    ({"DEBUG": "true"}, "security.W018"),
])
def test_check_deploy_fails_when_a_protection_is_switched_off(tmp_path, switched_off, warning):
    result = manage(production_env(tmp_path, **switched_off), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert warning in result.stderr


# --- Every environment variable and setting is documented -------------------------------------------------------------

ENV_READ = re.compile(
    r"""(?:os\.getenv|os\.environ\.get|os\.environ\[|env\.get|env\.setdefault|env\[|"""
    r"""env(bool|int|float|secret))\(?\s*["']([A-Z][A-Z0-9_]*)["']""")


def env_vars_read_by_the_code():
    names = set()
    for path in [*BASE_DIR.glob("dashboard/**/*.py"), *BASE_DIR.glob("tokens/**/*.py"),
                 *BASE_DIR.glob("localsite/**/*.py"), BASE_DIR / "manage.py"]:
        for helper, name in ENV_READ.findall(path.read_text()):
            names.add(name)
            if helper == "secret":
                names.add(name + "_FILE")
    return names


def settings_defined():
    """Every setting dashboard/settings.py defines, and any the code reads with a default of its own elsewhere."""
    tree = ast.parse((BASE_DIR / "dashboard" / "settings.py").read_text())
    names = {target.id for node in tree.body if isinstance(node, ast.Assign | ast.If)
             for stmt in ([node] if isinstance(node, ast.Assign) else node.body) if isinstance(stmt, ast.Assign)
             for target in stmt.targets if isinstance(target, ast.Name) and target.id.isupper()}
    for path in [*BASE_DIR.glob("dashboard/**/*.py"), *BASE_DIR.glob("tokens/**/*.py"),
                 *BASE_DIR.glob("localsite/**/*.py")]:
        names.update(re.findall(r"""getattr\(settings,\s*["']([A-Z][A-Z0-9_]*)["']""", path.read_text()))
    return names


def test_the_extractor_finds_environment_variables_and_settings():
    names = env_vars_read_by_the_code()
    assert {"DEBUG", "SECRET_KEY_FILE", "COUCHDB_PASSWORD_FILE", "DATABASE_URL", "PORT", "REDIS_PORT"} <= names
    assert {"SECURE_PROXY_SSL_HEADER", "MIDDLEWARE", "COUCHDB_DATABASES"} <= settings_defined()


def test_every_environment_variable_the_code_reads_is_in_docs_deploy_md():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", DEPLOY_MD.read_text()))
    missing = env_vars_read_by_the_code() - documented
    assert not missing, f"document these environment variables (default and meaning) in docs/deploy.md: {missing}"


def test_every_setting_in_settings_py_is_in_docs_deploy_md():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", DEPLOY_MD.read_text()))
    missing = settings_defined() - documented
    assert not missing, f"document these settings in docs/deploy.md's configuration reference: {missing}"


# --- The production site, for real ------------------------------------------------------------------------------------

class Proxy:
    """What the TLS proxy passes on: plain HTTP to gunicorn, with X-Forwarded-Proto/-For. Cookies are kept by hand:
    an HTTP client would rightly never send Secure cookies back over plain HTTP."""

    def __init__(self, port, client_ip="192.0.2.10"):
        self.port, self.client_ip, self.cookies = port, client_ip, {}

    def request(self, method, path, data=None, https=True, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        sent = {"Host": HOST, "X-Forwarded-For": f"203.0.113.1, {self.client_ip}"}
        if https:
            sent["X-Forwarded-Proto"] = "https"
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if data is not None:
            body = urlencode({**data, "csrfmiddlewaretoken": self.cookies.get("csrftoken", "")}, doseq=True)
            sent.update({"Content-Type": "application/x-www-form-urlencoded", "Origin": f"https://{HOST}"})
        conn.request(method, path, body, {**sent, **(headers or {})})
        response = conn.getresponse()
        response.body = response.read()
        response.set_cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            response.set_cookies.load(header)
        for name, morsel in response.set_cookies.items():
            if morsel["max-age"] == "0":
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = morsel.value
        conn.close()
        return response

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, data, **kwargs):
        return self.request("POST", path, data=data, **kwargs)

    def log_in(self, username, password):
        self.get("/accounts/login/")
        return self.post("/accounts/login/", {"username": username, "password": password})


def first_start(env, more=""):
    """docs/deploy.md's first start: migrate, collectstatic, and the operator olga (with `more` Python after)."""
    for command in (["migrate", "--no-input"], ["collectstatic", "--no-input"], ["shell", "-c", (
            "from django.contrib.auth.models import Group, User; "
            "u = User.objects.create_user('olga', password='olga-pw-123'); "
            f"u.groups.add(Group.objects.get_or_create(name='operators')[0]); {more}")]):
        result = manage(env, *command)
        assert result.returncode == 0, result.stderr


def errored(n):
    return surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=3, hostname="wn",
                      error=[{"time": NOW - 60, "message": f"exit 3 on node {n}"}])


@pytest.fixture(scope="module")
def site(tmp_path_factory, couch_server, redis_server):
    """gunicorn (2 workers) and a Celery worker process in production settings, on a pool of their own."""
    from localsite import demo

    tmp = tmp_path_factory.mktemp("deploy")
    database = "deploy-" + uuid.uuid4().hex[:8]
    couch = Couch(couch_server.url, database, couch_server.username, couch_server.password)
    couch.create_database()
    demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, database)
    couch.bulk_docs([errored(n) for n in range(6)] + [surf_token(n) for n in range(6, 10)])
    (tmp / "couchdb_password").write_text(couch_server.password + "\n")
    env = production_env(
        tmp, COUCHDB_URL=couch_server.url, COUCHDB_USER=couch_server.username,
        COUCHDB_PASSWORD_FILE=str(tmp / "couchdb_password"), COUCHDB_DATABASES=database, COUCHDB_CREATE_VIEWS="true",
        # A Redis database of its own: the test session's in-process worker listens on database 0.
        CELERY_BROKER_URL=redis_server.url.rsplit("/", 1)[0] + "/7", LOG_LEVEL="DEBUG", COUNTS_MAX_AGE="1",
        LOGIN_MAX_FAILURES="3", LOGIN_MAX_FAILURES_PER_IP="4",
    )
    first_start(env, "User.objects.create_user('victor', password='victor-pw-123')")
    port = free_port()
    logs = tmp / "gunicorn.log", tmp / "celery.log"
    outputs = [log.open("w") for log in logs]
    processes = [
        subprocess.Popen([sys.executable, "-m", "gunicorn", "dashboard.wsgi", "--bind", f"127.0.0.1:{port}",
                          "--workers", "2", "--log-level", "debug", "--access-logfile", "-", "--error-logfile", "-"],
                         env=env, cwd=BASE_DIR, stdout=outputs[0], stderr=subprocess.STDOUT,
                         start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "dashboard", "worker", "--loglevel", "DEBUG",
                          "--pool", "solo", "--hostname", "deploy-test@%h"],
                         env=env, cwd=BASE_DIR, stdout=outputs[1], stderr=subprocess.STDOUT,
                         start_new_session=True),
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if Proxy(port).get("/accounts/login/").status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, logs[0].read_text()[-3000:]
            time.sleep(0.3)
        yield {"port": port, "env": env, "database": database, "couch": couch, "logs": logs,
               "secrets": [couch_server.password, (tmp / "secret_key").read_text().strip()]}
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for output in outputs:
            output.close()
        couch.delete_database()


def test_plain_http_is_redirected_to_https(site):
    response = Proxy(site["port"]).get("/accounts/login/?next=/", https=False)
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}/accounts/login/?next=/"


def test_pages_carry_hsts_csp_and_refuse_frames_and_sniffing(site):
    response = Proxy(site["port"]).get("/accounts/login/")
    assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains"
    policy = [d.strip() for d in response.getheader("Content-Security-Policy").split(";")]
    assert "script-src 'self'" in policy and "default-src 'self'" in policy
    assert response.getheader("X-Frame-Options") == "DENY"
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Referrer-Policy") == "same-origin"


def test_the_session_and_csrf_cookies_are_secure_and_http_only(site):
    browser = Proxy(site["port"])
    csrf = browser.get("/accounts/login/").set_cookies["csrftoken"]
    logged_in = browser.post("/accounts/login/", {"username": "olga", "password": "olga-pw-123"})
    assert logged_in.status == 302
    session = logged_in.set_cookies["sessionid"]
    for cookie in (csrf, session):
        assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"


def test_static_files_are_served_by_the_app_hashed_compressed_and_cached_for_ever(site):
    browser = Proxy(site["port"])
    browser.log_in("olga", "olga-pw-123")
    html = browser.get("/").body.decode()
    css = re.search(r'href="(/static/css/site\.[0-9a-f]{12}\.css)"', html)
    assert css, "the stylesheet is not linked by its hashed name"
    response = browser.get(css.group(1), headers={"Accept-Encoding": "gzip"})
    assert response.status == 200 and response.getheader("Content-Encoding") == "gzip"
    assert "immutable" in response.getheader("Cache-Control")
    assert re.search(r'src="/static/js/poll\.[0-9a-f]{12}\.js"', html)


def test_login_throttling_holds_across_gunicorn_workers(site):
    browser = Proxy(site["port"], client_ip="198.51.100.23")
    # Each request on a connection of its own, to whichever of the two workers accepts it first.
    statuses = [browser.log_in("victor", "wrong").status for _ in range(3)]
    assert statuses == [200, 200, 429]  # the third failure reaches the limit
    refused = browser.log_in("victor", "victor-pw-123")
    assert refused.status == 429 and int(refused.getheader("Retry-After")) > 800
    assert b"Too many failed logins" in refused.body


def test_behind_the_proxy_failures_count_for_the_client_address_it_appended(site):
    # Every request claims 203.0.113.1 as its first X-Forwarded-For entry: only the proxy's last one counts.
    browser = Proxy(site["port"], client_ip="198.51.100.40")
    statuses = [browser.log_in(f"nobody{n}", "wrong").status for n in range(4)]
    assert statuses == [200, 200, 200, 429]  # LOGIN_MAX_FAILURES_PER_IP=4
    assert browser.log_in("olga", "olga-pw-123").status == 429
    assert Proxy(site["port"], client_ip="198.51.100.41").log_in("olga", "olga-pw-123").status == 302


def test_a_full_run_logs_no_credentials_even_at_debug_level(site):
    browser = Proxy(site["port"], client_ip="198.51.100.99")
    db = site["database"]
    assert browser.log_in("olga", "olga-pw-123").status == 302
    for path in ("/", f"/pools/{db}/", f"/pools/{db}/tokens/?state=error", f"/pools/{db}/failures/",
                 f"/pools/{db}/stale/", f"/pools/{db}/token/?id=token_00001", "/jobs/"):
        assert browser.get(path).status == 200, path
    assert browser.get("/nowhere/").status == 404
    created = browser.post(f"/pools/{db}/jobs/", {"action": "reset", "kind": "state", "bucket": "error"})
    assert created.status == 302, created.body[-2000:]
    job_url = created.getheader("Location")  # the job's page, /jobs/<id>/; its figures: its API twin
    assert re.fullmatch(r"/jobs/\d+/", job_url), job_url
    assert browser.get(job_url).status == 200
    job = wait_for(lambda: (j := json.loads(browser.get("/api/v1" + job_url.rstrip("/")).body))["status"] in (
        "succeeded", "failed", "interrupted") and j)
    assert (job["status"], job["changed"]) == ("succeeded", 6)
    # The pool page's counts come from a background refresh by the Celery worker.
    wait_for(lambda: json.loads(browser.get(f"/api/v1/pools/{db}").body)["counts"]["error"] == 0)
    browser.post("/accounts/logout/", {})

    text = "".join(log.read_text() for log in site["logs"])
    assert "run_job" in text and "GET /pools/" in text and "DEBUG" in text  # the logs hold the whole run
    password, secret_key = site["secrets"]
    basic = base64.b64encode(f"{site['env']['COUCHDB_USER']}:{password}".encode()).decode()
    for secret in (password, quote(password, safe=""), basic, secret_key, "olga-pw-123"):
        assert secret not in text
    # Nor the CouchDB SDK's dump of every HTTP request (its own redaction is all that would stand in between).
    assert "Authorization:" not in text
