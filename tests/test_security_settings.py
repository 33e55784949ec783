"""Security settings: a Content-Security-Policy on every page that no page needs to break (no inline script, style or
event handler anywhere), login throttling, and secrets read from files.

The production settings themselves (check --deploy, HSTS, secure cookies, TLS redirect) are tested against a real
gunicorn in tests/test_deploy.py.
"""

import io
import json
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db.models import F
from django.test import Client, RequestFactory
from django.urls import URLPattern, get_resolver, reverse

from dashboard.models import ApiToken
from dashboard.throttle import client_ip
from tests.api_client import api_as, token_for
from tests.conftest import LOFAR, STRANGER, SURF
from tokens.models import AlertRule, Job, PoolConfig, RetryRule

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parent.parent


# --- No inline code: what the Content-Security-Policy would block ------------------------------------------------

class InlineCodeFinder(HTMLParser):
    """Everything in a page that `script-src 'self'; style-src 'self'` blocks: inline <script> and <style>,
    style="" attributes, on*="" handlers, javascript: URLs, and htmx's own inline code (hx-on, js: values)."""

    DATA_SCRIPT_TYPES = ("application/json", "application/ld+json")

    def __init__(self):
        super().__init__()
        self.found = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        at = f"<{tag}> at line {self.getpos()[0]}"
        attrs = [(name.lower(), value or "") for name, value in attrs]
        if tag == "script" and not dict(attrs).get("src"):
            if dict(attrs).get("type", "").lower() not in self.DATA_SCRIPT_TYPES:
                self.found.append(f"inline script {at}")
        if tag == "style":
            self.found.append(f"<style> element {at}")
        for name, value in attrs:
            bare = name.removeprefix("data-")
            if name == "style":
                self.found.append(f"style attribute {value!r} {at}")
            elif name.startswith("on") or bare.startswith("hx-on"):
                self.found.append(f"inline event handler {name}={value!r} {at}")
            elif re.match(r"\s*javascript:", value, re.IGNORECASE):
                self.found.append(f"javascript: URL in {name} {at}")
            elif bare in ("hx-vals", "hx-vars", "hx-headers") and re.match(r"\s*(js|javascript):", value):
                self.found.append(f"htmx code in {name} {at}")

    handle_startendtag = handle_starttag


def inline_code(html):
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder.found


def test_the_inline_code_finder_finds_each_kind_it_looks_for():
    page = """<html><head><script>alert(1)</script><script src="/static/x.js"></script><style>p{}</style>
      <script type="application/json">{"a": 1}</script></head>
      <body onload="go()"><a href=" JavaScript:go()">x</a><span style="width: 3%"></span>
      <button hx-on:click="go()"></button><div data-hx-on-click="go()"></div><div hx-vals="js:{a: go()}"></div>
      <form action="/ok"><input type="submit"></form></body></html>"""
    found = inline_code(page)
    assert len(found) == 8, found
    assert inline_code('<p class="ok"><a href="/x">fine</a><script src="a.js"></script></p>') == []


# --- Every page of the site ----------------------------------------------------------------------------------------

def site_url_names():
    """The names of every URL of the site itself (the admin is Django's own)."""
    return {p.name for p in get_resolver().url_patterns if isinstance(p, URLPattern) and p.name}


def retry_rule():
    return RetryRule.objects.create(pool=SURF, name=uuid.uuid4().hex, code="21", attempts=3, wait_minutes=10,
                                    per_hour=5)


@pytest.fixture
def site_pages(operator_client, demo_pools, couch, couch_server):
    """(url name, description, response) for every page of the site, as an operator sees it, plus the 404 and
    the error page. A new URL must be added here: test_every_url_of_the_site_is_checked says so."""
    client = operator_client
    db = couch(SURF)
    rows = db.call(db.client.post_all_docs, db=SURF, include_docs=True)["rows"]
    doc = next(r["doc"] for r in rows if r["doc"].get("_attachments") and r["doc"].get("error"))
    attachment = next(iter(doc["_attachments"]))
    operator = User.objects.get(username="olga")
    job = Job.objects.create(pool=SURF, user=operator, action="reset", preview_count=3,
                             selection={"kind": "state", "bucket": "error"})
    ended = Job.objects.create(pool=SURF, user=operator, action="reset", preview_count=3, status=Job.SUCCEEDED,
                               selection={"kind": "state", "bucket": "error"})
    selection = {"kind": "state", "bucket": "error"}
    PoolConfig.objects.create(slug="wrong-password", url=couch_server.url, database=SURF, username=STRANGER,
                              password="not-the-password")
    observation = api_as(client).get(f"/api/v1/pools/{SURF}").json()["observations"][0]
    visits = [
        ("pools", "list", client.get(reverse("pools"))),
        ("pool", "SURF pool", client.get(reverse("pool", args=[SURF]))),
        ("pool", "LOFAR pool", client.get(reverse("pool", args=[LOFAR]))),
        ("tokens", "error tokens", client.get(reverse("tokens", args=[SURF]), {"state": "error"})),
        ("tokens", "LOFAR tokens", client.get(reverse("tokens", args=[LOFAR]))),
        ("token", "a token with errors and attachments", client.get(reverse("token", args=[SURF]),
                                                                     {"id": doc["_id"]})),
        ("attachment", "a download", client.get(reverse("attachment", args=[SURF]),
                                                {"id": doc["_id"], "name": attachment})),
        ("attachment", "shown inline", client.get(reverse("attachment", args=[SURF]),
                                                  {"id": doc["_id"], "name": attachment, "inline": "1"})),
        ("failures", "groups", client.get(reverse("failures", args=[SURF]))),
        ("stale", "locks", client.get(reverse("stale", args=[SURF]), {"hours": 1})),
        ("hosts", "worker hosts", client.get(reverse("hosts", args=[SURF]))),
        ("hosts", "JSON refused (406)", client.get(reverse("hosts", args=[SURF]), {"window": "7d", "format": "json"})),
        ("hosts", "as CSV", client.get(reverse("hosts", args=[SURF]), {"window": "7d", "format": "csv"})),
        ("pool", "the chart as CSV", client.get(reverse("pool", args=[SURF]), {"format": "csv"})),
        ("job_new", "dry run", client.get(reverse("job_new", args=[SURF]), {"action": "reset", **selection})),
        ("job_new", "set a field", client.get(reverse("job_new", args=[SURF]), {"action": "set_field", **selection})),
        ("job_new", "bad input", client.get(reverse("job_new", args=[SURF]), {"action": "reset", "kind": "x"})),
        ("job_create", "refused confirmation", client.post(reverse("job_create", args=[SURF]),
                                                           {"action": "delete", **selection, "confirmation": "0"})),
        ("tokenset_new", "form", client.get(reverse("tokenset_new", args=[SURF]))),
        ("tokenset_new", "dry run", client.post(reverse("tokenset_new", args=[SURF]), {
            "config": (BASE_DIR / "tests/fixtures/pref_cal1.yaml").read_text(), "token_type": "csp_check",
            "input_list": (BASE_DIR / "tests/fixtures/L229585_srm.txt").read_text()})),
        ("tokenset_create", "refused", client.post(reverse("tokenset_create", args=[SURF]), {"config": ""})),
        ("jobs", "audit list", client.get(reverse("jobs"))),
        ("job", "a queued job", client.get(reverse("job", args=[job.pk]))),
        ("job", "an ended job", client.get(reverse("job", args=[ended.pk]))),
        ("job_cancel", "cancel", client.post(reverse("job_cancel", args=[job.pk]))),
        ("job_tokens", "a job's tokens", client.get(reverse("job_tokens", args=[ended.pk]), {"outcome": "skipped"})),
        ("job_tokens", "as CSV", client.get(reverse("job_tokens", args=[ended.pk]), {"format": "csv"})),
        (None, "404", client.get("/pools/no-such-pool/")),
        ("pool", "CouchDB refuses the credentials", client.get(reverse("pool", args=["wrong-password"]))),
        ("account", "API tokens", client.get(reverse("account"))),
        ("api_token_create", "a new token", client.post(reverse("api_token_create"), {"name": "csp check"})),
        ("api_token_revoke", "revoke", client.post(reverse("api_token_revoke", args=[
            ApiToken.issue(operator, "to revoke")[0].pk]))),
        ("export", "the form", client.get(reverse("export", args=[SURF]), {"state": "error"})),
        ("export", "a CSV download", client.get(reverse("export", args=[SURF]), {"state": "error", "format": "csv"})),
        (None, "the API's export", Client(headers={"Authorization": f"Bearer {token_for(operator)}"}).get(
            f"/api/v1/pools/{SURF}/export", {"state": "error", "format": "jsonl"})),
        ("export", "bad parameters", client.get(reverse("export", args=[SURF]), {"format": "csv"})),
        ("observation", "an observation", client.get(reverse("observation", args=[SURF]), {
            "type": observation["type"], **({"group": observation["group"]} if observation["group"] is not None
                                            else {})})),
        ("alerts", "rules and history", client.get(reverse("alerts", args=[SURF]))),
        ("alert_rule_create", "refused", client.post(reverse("alert_rule_create", args=[SURF]), {"kind": "x"})),
        ("alert_rule_create", "added", client.post(reverse("alert_rule_create", args=[SURF]),
                                                   {"kind": "stale_locks", "threshold": "3"})),
        ("alert_rule_delete", "removed", client.post(reverse("alert_rule_delete", args=[SURF, AlertRule.objects.create(
            pool=SURF, kind="black_hole").pk]))),
        ("alert_subscription", "refused", client.post(reverse("alert_subscription", args=[SURF]),
                                                      {"webhook_url": "ftp://x"})),
        ("alert_subscription", "subscribed", client.post(reverse("alert_subscription", args=[SURF]),
                                                         {"webhook_url": "https://chat.example.org/hooks/x"})),
        ("retry_rules", "rules and what they gave up", client.get(reverse("retry_rules", args=[SURF]))),
        ("search", "a token id's start", client.get(reverse("search"), {"q": "token_1"})),
        ("retry_rules", "a dry run", client.get(reverse("retry_rules", args=[SURF]), {"dry": str(retry_rule().pk)})),
        ("retry_rule_create", "refused", client.post(reverse("retry_rule_create", args=[SURF]), {"name": ""})),
        ("retry_rule_create", "added", client.post(reverse("retry_rule_create", args=[SURF]), {
            "name": "downloads", "code": "21", "attempts": "3", "wait_minutes": "10", "per_hour": "50"})),
        ("retry_rule_change", "changed", client.post(reverse("retry_rule_change", args=[SURF, retry_rule().pk]), {
            "name": "staging", "code": "22", "attempts": "4", "wait_minutes": "30", "per_hour": "50"})),
        ("retry_rule_switch", "paused", client.post(reverse("retry_rule_switch", args=[SURF, retry_rule().pk]))),
        ("retry_rule_delete", "removed", client.post(reverse("retry_rule_delete", args=[SURF, retry_rule().pk]))),
        ("retry_pause", "every rule paused", client.post(reverse("retry_pause", args=[SURF]), {"paused": "on"})),
        ("pools", "wall", client.get(reverse("pools"), {"wall": "1"})),
        ("healthz", "health", client.get(reverse("healthz"))),
        ("metrics", "metrics without a token", client.get(reverse("metrics"))),
        ("logout", "log out", client.post(reverse("logout"))),
        ("login", "form", client.get(reverse("login"))),
        ("login", "failed", client.post(reverse("login"), {"username": "olga", "password": "wrong"})),
        # Without OIDC_ISSUER there is no single sign-on: both answer 404 (tests/test_sso.py signs in for real).
        ("sso_start", "not configured", client.get(reverse("sso_start"))),
        ("sso_callback", "not configured", client.get(reverse("sso_callback"))),
    ]
    client.force_login(operator)
    for name, what, response in list(visits):
        # htmx asks for the page's partials by the targets the page names: check each of those as well.
        ok_page = response.status_code == 200 and response["Content-Type"].startswith("text/html")
        if ok_page and response.wsgi_request.method == "GET":
            for target in set(re.findall(r'hx-target="#([\w-]+)"', response.content.decode())):
                partial = client.get(response.wsgi_request.get_full_path(),
                                     headers={"HX-Request": "true", "HX-Target": target})
                visits.append((name, f"{what}, htmx partial #{target}", partial))
    return visits


def test_every_url_of_the_site_is_checked(site_pages):
    missing = site_url_names() - {name for name, _, _ in site_pages}
    assert not missing, f"add these pages to site_pages in {__file__}: {sorted(missing)}"


def csp_directives(response):
    header = response.get("Content-Security-Policy", "")
    return {d.split()[0]: d.split()[1:] for d in header.split(";") if d.strip()}


# The policy, whatever the order of its directives (django-csp's changes from process to process).
POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
          "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")


def test_every_page_sends_a_content_security_policy_without_inline_script_or_style(site_pages):
    policy = {d.split()[0]: d.split()[1:] for d in POLICY.split(";")}
    downloads = 0
    for name, what, response in site_pages:
        assert response.has_header("Content-Security-Policy"), f"{name} ({what}) has no Content-Security-Policy"
        if response.has_header("Content-Disposition"):
            assert response["Content-Security-Policy"] == "default-src 'none'; sandbox", (name, what)
            downloads += 1
        else:
            assert csp_directives(response) == policy, (name, what)
    assert downloads == 7  # an attachment (and one shown inline), a job's tokens, the chart, the hosts, two exports


def test_no_page_holds_an_inline_script_style_or_event_handler(site_pages):
    checked = 0
    for name, what, response in site_pages:
        if response["Content-Type"].startswith("text/html") and not response.streaming:
            found = inline_code(response.content.decode())
            assert not found, f"{name} ({what}) breaks the Content-Security-Policy: {found}"
            checked += 1
    assert checked >= 25


def test_htmx_is_told_not_to_inject_its_indicator_styles(viewer_client, demo_pools):
    html = viewer_client.get("/").content.decode()
    assert '<meta name="htmx-config"' in html and '"includeIndicatorStyles": false' in html
    assert ".htmx-indicator" in (BASE_DIR / "static/css/site.css").read_text()


def test_the_stacked_bar_has_its_widths_from_classes(viewer_client, demo_pools):
    html = viewer_client.get(f"/pools/{LOFAR}/").content.decode()
    widths = re.findall(r'class="seg (\w+) w(\d+)"', html)
    assert widths and all(1 <= int(w) <= 100 for _, w in widths)
    css = (BASE_DIR / "static/css/site.css").read_text()
    assert all(f".seg.w{n}{{flex-basis:{n}%}}" in css for n in range(1, 101))


def test_admin_pages_carry_the_policy_too(admin_client):
    assert csp_directives(admin_client.get("/admin/"))["script-src"] == ["'self'"]


def test_frames_and_content_sniffing_are_refused(viewer_client, demo_pools):
    response = viewer_client.get("/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


# --- Login throttling ----------------------------------------------------------------------------------------------

@pytest.fixture
def throttled(settings, operator):
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_MAX_FAILURES_PER_IP = 5
    settings.AXES_COOLOFF_TIME = timedelta(seconds=600)  # LOGIN_LOCKOUT_SECONDS
    return operator


def log_in(client, username, password, **extra):
    return client.post(reverse("login"), {"username": username, "password": password}, **extra)


def age_failures(seconds):
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(seconds=seconds))


def test_after_too_many_failures_even_the_right_password_is_refused_with_429(client, throttled):
    for _ in range(2):
        assert log_in(client, "olga", "wrong").status_code == 200
    # The failure that reaches the limit is answered as a refusal already (axes locks out at that failure).
    assert log_in(client, "olga", "wrong").status_code == 429
    refused = log_in(client, "olga", "pw-olga")
    assert refused.status_code == 429
    assert 590 <= int(refused["Retry-After"]) <= 600
    html = refused.content.decode()
    assert "Too many failed logins. Try again in 10 minutes." in html
    assert 'name="username" value="olga"' in html  # what was typed stays
    assert "_auth_user_id" not in client.session


def test_a_refused_attempt_does_not_move_the_end_of_the_lockout(client, throttled):
    for _ in range(3):
        log_in(client, "olga", "wrong")
    age_failures(300)
    for _ in range(3):
        refused = log_in(client, "olga", "pw-olga")
        assert refused.status_code == 429 and 290 <= int(refused["Retry-After"]) <= 300
    assert "Try again in 5 minutes." in refused.content.decode()


def test_a_user_may_log_in_again_once_the_failures_are_older_than_the_lockout(client, throttled):
    for _ in range(3):
        log_in(client, "olga", "wrong")
    age_failures(590)
    assert log_in(client, "olga", "pw-olga").status_code == 429
    age_failures(11)
    assert log_in(client, "olga", "pw-olga").status_code == 302


def test_failures_below_the_limit_are_forgotten_after_a_successful_login(client, throttled):
    for _ in range(2):
        log_in(client, "olga", "wrong")
    assert log_in(client, "olga", "pw-olga").status_code == 302
    client.logout()
    for _ in range(2):
        log_in(client, "olga", "wrong")
    assert log_in(client, "olga", "pw-olga").status_code == 302


def test_a_form_without_a_password_does_not_clear_the_failures(client, throttled):
    for _ in range(2):
        log_in(client, "olga", "wrong")
    log_in(client, "olga", "")
    log_in(client, "olga", "wrong")
    assert log_in(client, "olga", "pw-olga").status_code == 429


def test_the_username_is_throttled_whatever_its_case_and_never_stored_as_typed(client, throttled):
    for name in ("olga", "OLGA", " Olga"):
        log_in(client, name, "wrong")
    assert log_in(client, "olga", "pw-olga").status_code == 429
    stored = AccessAttempt.objects.get()
    assert stored.failures_since_start == 3
    kept = " ".join(str(v) for v in AccessAttempt.objects.values_list().get())
    assert "olga" not in kept.lower() and "wrong" not in kept  # neither the username nor the password, anywhere


def test_one_address_trying_many_usernames_is_throttled(client, throttled):
    for n in range(4):
        assert log_in(client, f"user{n}", "wrong").status_code == 200  # 3 a username, 5 an address
    assert log_in(client, "user4", "wrong").status_code == 429
    assert log_in(client, "olga", "pw-olga").status_code == 429
    other_address = log_in(client, "olga", "pw-olga", REMOTE_ADDR="192.0.2.7")
    assert other_address.status_code == 302


def test_logging_in_to_ones_own_account_does_not_clear_the_addresss_failures(client, throttled):
    for n in range(4):
        log_in(client, f"user{n}", "wrong")
    assert log_in(client, "olga", "pw-olga").status_code == 302
    client.logout()
    assert log_in(client, "user4", "wrong").status_code == 429


def test_the_admin_login_is_throttled_as_well(client, throttled):
    for _ in range(2):
        assert client.post("/admin/login/", {"username": "olga", "password": "wrong"}).status_code == 200
    assert client.post("/admin/login/", {"username": "olga", "password": "wrong"}).status_code == 429
    assert log_in(client, "olga", "pw-olga").status_code == 429
    refused = client.post("/admin/login/", {"username": "olga", "password": "pw-olga"})
    assert refused.status_code == 429 and 590 <= int(refused["Retry-After"]) <= 600
    html = refused.content.decode()
    assert "Too many failed logins. Try again in 10 minutes." in html and 'value="olga"' in html


def test_axes_reset_lifts_every_lockout(client, throttled):
    for _ in range(3):
        log_in(client, "olga", "wrong")
    call_command("axes_reset", stdout=io.StringIO())
    assert log_in(client, "olga", "pw-olga").status_code == 302


def test_a_locked_out_user_gets_429_whatever_the_form_holds(client, throttled):
    for _ in range(3):
        log_in(client, "olga", "wrong")
    for sent in ({"username": "olga", "password": ""}, {"username": "olga"}, {"username": " OLGA "}):
        refused = client.post(reverse("login"), sent)
        assert refused.status_code == 429, sent
        assert "Too many failed logins. Try again in 10 minutes." in refused.content.decode()
        assert "This field is required" not in refused.content.decode()


def test_the_admin_unlocks_a_user_by_the_name_they_typed(client, throttled):
    for name in ("olga", "user1"):
        for _ in range(3):
            log_in(client, name, "wrong", REMOTE_ADDR="192.0.2.1" if name == "olga" else "192.0.2.2")
    out = io.StringIO()
    call_command("axes_reset_username", "Olga", stdout=out)
    assert out.getvalue().strip() == "Olga: 1 failed login record removed"
    assert log_in(client, "olga", "pw-olga", REMOTE_ADDR="192.0.2.1").status_code == 302
    assert log_in(client, "user1", "wrong", REMOTE_ADDR="192.0.2.2").status_code == 429  # only the one named
    call_command("axes_reset_ip_username", "192.0.2.2", "user1", stdout=out)
    assert "1 failed login record removed" in out.getvalue()
    call_command("axes_reset_username", "nobody", stdout=(out := io.StringIO()))
    assert out.getvalue().strip() == "nobody: no failed logins recorded, nothing to unlock"


def test_behind_a_proxy_failures_count_for_the_address_the_proxy_appended(client, throttled, settings):
    settings.BEHIND_PROXY = True
    for n in range(5):
        log_in(client, f"user{n}", "wrong", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}, 192.0.2.9")
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True).distinct()) == ["192.0.2.9"]
    assert log_in(client, "olga", "pw-olga", HTTP_X_FORWARDED_FOR="192.0.2.9").status_code == 429
    assert log_in(client, "olga", "pw-olga", HTTP_X_FORWARDED_FOR="192.0.2.9, 192.0.2.10").status_code == 302


def test_behind_a_proxy_the_address_is_the_one_the_proxy_appended(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="6.6.6.6, 192.0.2.9")
    settings.BEHIND_PROXY = False
    assert client_ip(request) == "10.0.0.1"  # a client's own X-Forwarded-For counts for nothing without a proxy
    settings.BEHIND_PROXY = True
    assert client_ip(request) == "192.0.2.9"


# --- Secrets from files --------------------------------------------------------------------------------------------

def settings_in_subprocess(env, *names):
    """Import dashboard.settings with exactly this environment; the named settings, or the error."""
    code = f"import json, dashboard.settings as s; print(json.dumps({{n: str(getattr(s, n)) for n in {names!r}}}))"
    result = subprocess.run([sys.executable, "-c", code], env={"PATH": os.environ["PATH"], **env}, cwd=BASE_DIR,
                            capture_output=True, text=True, timeout=60)
    return result


def test_every_secret_is_read_from_a_file_when_one_is_named(tmp_path):
    files = {"SECRET_KEY": "k" * 60, "COUCHDB_PASSWORD": "couch-secret",
             "DATABASE_URL": "postgres://dash:pg-secret@db.example.org:5432/dashboard",
             "CELERY_BROKER_URL": "redis://:redis-secret@redis.example.org:6379/0"}
    for name, value in files.items():
        (tmp_path / name).write_text(value + "\n")
    env = {f"{name}_FILE": str(tmp_path / name) for name in files}
    result = settings_in_subprocess({**env, "COUCHDB_PASSWORD": "the file wins"}, "SECRET_KEY", "COUCHDB_PASSWORD",
                                    "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DATABASES")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["SECRET_KEY"] == "k" * 60 and values["COUCHDB_PASSWORD"] == "couch-secret"
    assert values["CELERY_BROKER_URL"] == values["CELERY_RESULT_BACKEND"] == files["CELERY_BROKER_URL"]
    assert "'PASSWORD': 'pg-secret'" in values["DATABASES"] and "'HOST': 'db.example.org'" in values["DATABASES"]


def test_an_unreadable_secret_file_stops_the_site_with_a_clear_message(tmp_path):
    result = settings_in_subprocess({"SECRET_KEY_FILE": str(tmp_path / "missing")}, "SECRET_KEY")
    assert result.returncode != 0
    assert "SECRET_KEY_FILE names a file that cannot be read: No such file or directory" in result.stderr


def test_without_debug_a_secret_key_is_required():
    result = settings_in_subprocess({}, "SECRET_KEY")
    assert result.returncode != 0 and "SECRET_KEY (or SECRET_KEY_FILE) must be set" in result.stderr
