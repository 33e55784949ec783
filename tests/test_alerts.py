"""Alerts end to end: real picas pilots fail tokens, the periodic task (run by the real Celery worker) fires the
rule once, one e-mail reaches a real SMTP server (aiosmtpd) and one message a webhook (a real HTTP server), nothing
more while it fires, one recovery message when it ends; failed deliveries are retried and shown; the pages."""

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings as django_settings
from django.utils import timezone
from django.utils.html import escape

from dashboard.roles import OPERATORS, VIEWERS
from localsite.embedded import free_port
from tests.api_client import api_as
from tests.conftest import index_own_views, make_user, surf_token
from tests.test_job_safety import start_pilots
from tests.waiting import PATIENCE, wait_for
from tokens import alerts, counting
from tokens.models import Alert, AlertRule, Delivery, Job, Subscription
from tokens.pools import all_pools
from tokens.tasks import evaluate_alerts

pytestmark = pytest.mark.django_db(transaction=True)
NOW = int(time.time())


class Inbox:
    """A real SMTP server that keeps what it receives."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    # The site's own backend (pytest-django swaps in Django's in-memory one for every test).
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    yield inbox
    controller.stop()


class Hook(ThreadingHTTPServer):
    """A real HTTP server standing in for Mattermost: keeps each JSON body; answers `failures` 500s first."""

    def __init__(self, failures=0):
        self.bodies, self.failures = [], failures

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N802, N805 - http.server's name; `handler` keeps the server as self
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                if self.failures > 0:
                    self.failures -= 1
                    handler.send_response(500)
                else:
                    self.bodies.append(json.loads(body))
                    handler.send_response(200)
                handler.end_headers()

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/hooks/s3cr3t-token-path"


@pytest.fixture
def hook():
    server = Hook()
    yield server
    server.shutdown()


@pytest.fixture
def grid_pool(scratch_pool):
    scratch_pool.bulk_docs([surf_token(n) for n in range(30)])
    index_own_views(scratch_pool, "")
    [pool] = all_pools()
    counting.refresh(pool)
    counting.refresh(pool)
    return pool


def run_the_periodic_task(celery_worker, condition):
    """What beat does every ALERTS_EVALUATE_SECONDS: the task, handed to the real worker; then wait for its effect."""
    evaluate_alerts.delay()
    assert wait_for(condition, seconds=60), ("the worker did not evaluate the rules",
                                             [(d.status, d.last_error) for d in Delivery.objects.all()])


def test_the_rules_are_evaluated_by_a_periodic_task():
    assert django_settings.CELERY_BEAT_SCHEDULE["evaluate-alerts"]["task"] == "tokens.tasks.evaluate_alerts"


def test_failing_pilots_fire_the_rule_once_with_one_email_and_one_webhook_then_one_recovery(
        grid_pool, couch_server, scratch_pool, smtp, hook, celery_worker):
    olga = make_user("olga", OPERATORS)
    olga.email = "olga@example.org"
    olga.save()
    Subscription.objects.create(user=olga, pool=grid_pool.slug, email=True, webhook_url=hook.url)
    rule = alerts.make_rule(grid_pool, AlertRule.ERROR_RATE, threshold=0.3, hours=1, user=olga)
    pilots = start_pilots(couch_server, scratch_pool.database, 2, 0.01, fail_every=2)  # every 2nd first try fails
    for p in pilots:
        p.wait(timeout=PATIENCE)
    counting.refresh(grid_pool)

    run_the_periodic_task(celery_worker, lambda: Delivery.objects.filter(status=Delivery.SENT).count() == 2)
    [alert] = Alert.objects.all()
    assert (alert.status, alert.kind, alert.rule_id) == (Alert.FIRING, "error_rate", rule.pk)
    assert alert.evidence["failed"] >= 3 and alert.evidence["rate"] > 0.3
    assert len(smtp.messages) == 1 and len(hook.bodies) == 1
    recipients, mail = smtp.messages[0]
    assert recipients == ["olga@example.org"]
    assert f"[PiCaS {grid_pool.slug}] FIRING: " in mail
    assert "of the 30 tokens finished in the last 1 hour failed" in mail
    assert hook.bodies[0]["text"].startswith(f"[PiCaS {grid_pool.slug}] FIRING: ")

    # Still failing at the next evaluation: no repeat.
    evaluate_alerts.delay()
    time.sleep(2)
    alerts.evaluate()
    assert Alert.objects.count() == 1 and len(smtp.messages) == 1 and len(hook.bodies) == 1

    # Two hours later the failures are out of the rule's window: one recovery message on each channel.
    alerts.evaluate(now=timezone.now() + timedelta(hours=2))
    alert.refresh_from_db()
    assert alert.status == Alert.RESOLVED and alert.resolved_at is not None
    assert len(smtp.messages) == 2 and len(hook.bodies) == 2
    assert "RESOLVED: " in smtp.messages[1][1] and hook.bodies[1]["text"].startswith(
        f"[PiCaS {grid_pool.slug}] RESOLVED: ")
    alerts.evaluate(now=timezone.now() + timedelta(hours=3))
    assert len(smtp.messages) == 2 and len(hook.bodies) == 2


def test_a_webhook_that_fails_is_retried_and_a_delivery_that_never_succeeds_is_shown(grid_pool, scratch_pool,
                                                                                       settings, client):
    settings.ALERT_DELIVERY_ATTEMPTS = 3
    flaky, dead = Hook(failures=2), Hook(failures=99)
    try:
        victor = make_user("victor", VIEWERS)
        olga = make_user("olga", OPERATORS)
        Subscription.objects.create(user=victor, pool=grid_pool.slug, email=False, webhook_url=flaky.url)
        Subscription.objects.create(user=olga, pool=grid_pool.slug, email=False, webhook_url=dead.url)
        alerts.make_rule(grid_pool, AlertRule.STALE_LOCKS, threshold=1)
        scratch_pool.bulk_docs([surf_token(n, lock=NOW - 30 * 3600, hostname="wn-dead") for n in range(100, 103)])
        counting.refresh(grid_pool)
        now = timezone.now()
        alerts.evaluate(now)
        assert Alert.objects.get().summary == "3 locks older than 24 hours, more than 1"
        for minutes in (1, 3, 10):  # the backoff: 1, 2, 4 ... minutes
            alerts.deliver(now + timedelta(minutes=minutes))
        # Webhook addresses are stored encrypted: found by what they open to.
        by_address = {d.address: d for d in Delivery.objects.all()}
        to_flaky, to_dead = by_address[flaky.url], by_address[dead.url]
        assert (to_flaky.status, to_flaky.attempts, len(flaky.bodies)) == (Delivery.SENT, 3, 1)
        assert (to_dead.status, to_dead.attempts) == (Delivery.FAILED, 3)
        assert to_dead.last_error == f"webhook http://127.0.0.1:{dead.server_address[1]}/… answered 500 " \
                                     "Internal Server Error"
        client.force_login(olga)
        page = client.get(f"/pools/{grid_pool.slug}/alerts/").content.decode()
        assert "<strong>failed</strong> <span class=\"muted\">after 3 attempts: webhook" in page
        assert "s3cr3t-token-path" not in page  # a webhook's path is its secret
        api = api_as(client).get(f"/api/v1/pools/{grid_pool.slug}/alerts").json()
        as_json = client.get(f"/pools/{grid_pool.slug}/alerts/", {"format": "json"})
        assert as_json.status_code == 406 and "/api/v1/" in as_json.json()["error"]  # the API is the JSON
        # The page shows what the API says: the alert and each of its messages with its outcome.
        assert escape(api["alerts"][0]["summary"]) in page and len(api["alerts"][0]["messages"]) == 2
        for m in api["alerts"][0]["messages"]:
            assert f"{m['message']} by {m['channel']} to {escape(m['to'])}: <strong>{m['status']}</strong>" in page
        failed = [m for m in api["alerts"][0]["messages"] if m["status"] == "failed"]
        assert failed == [{"message": "firing", "channel": "webhook", "status": "failed", "attempts": 3,
                           "error": to_dead.last_error, "to": f"http://127.0.0.1:{dead.server_address[1]}/…"}]
        assert "s3cr3t" not in json.dumps(api)
    finally:
        flaky.shutdown()
        dead.shutdown()


def test_news_is_told_once_an_observation_finished_and_a_job_failed(scratch_pool, settings, hook):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([surf_token(n, lock=NOW - 900, done=NOW - 600, exit_code=0, OBSID="L1") for n in range(3)]
                           + [surf_token(n, OBSID="L2") for n in range(3, 6)])
    index_own_views(scratch_pool, "OBSID")
    [pool] = all_pools()
    counting.refresh(pool)
    counting.refresh(pool)
    Subscription.objects.create(user=make_user("olga", OPERATORS), pool=pool.slug, email=False, webhook_url=hook.url)
    alerts.make_rule(pool, AlertRule.OBSERVATION_FINISHED)  # L1 finished before: not news
    alerts.make_rule(pool, AlertRule.JOB_FAILED)
    alerts.evaluate()
    assert not Alert.objects.exists()

    scratch_pool.bulk_docs([{**scratch_pool.get(f"token_{n:05d}"), "lock": NOW - 60, "done": NOW, "exit_code": 0}
                            for n in range(3, 6)])
    job = Job.objects.create(pool=pool.slug, action="reset", selection={"kind": "state", "bucket": "error"},
                       preview_count=1, status=Job.FAILED, message="CouchDB went away", finished_at=timezone.now())
    counting.refresh(pool)
    alerts.evaluate()
    alerts.evaluate()
    assert sorted(Alert.objects.values_list("status", "summary")) == [
        ("notice", f"job {job.pk} (reset) failed: CouchDB went away"),
        ("notice", "observation L2 · token finished: 3 of 3 tokens done, 0 failed")]
    assert len(hook.bodies) == 2 and all("NOTICE: " in b["text"] for b in hook.bodies)


def test_operators_add_rules_in_the_page_a_mistake_keeps_what_was_typed_and_viewers_may_only_subscribe(
        grid_pool, client):
    olga, victor = make_user("olga", OPERATORS), make_user("victor", VIEWERS)
    url = f"/pools/{grid_pool.slug}/alerts/"
    client.force_login(olga)
    refused = client.post(url + "rules/", {"kind": "error_rate", "threshold": "lots", "hours": "2"})
    assert refused.status_code == 400
    page = refused.content.decode()
    assert "&#x27;lots&#x27; is not a number" in page and 'value="lots"' in page and 'value="2"' in page
    assert not AlertRule.objects.exists()
    added = client.post(url + "rules/", {"kind": "error_rate", "threshold": "25", "hours": "2"}, follow=True)
    assert "Rule added: error rate above 25% over 2 hours." in added.content.decode()
    assert AlertRule.objects.get().threshold == 0.25
    data = api_as(client).get(f"/api/v1/pools/{grid_pool.slug}/alerts").json()
    assert data["rules"][0]["description"] == "error rate above 25% over 2 hours"

    client.force_login(victor)
    assert client.post(url + "rules/", {"kind": "black_hole"}).status_code == 403
    assert client.post(url + "subscription/", {"action": "subscribe", "webhook_url": "ftp://x"}).status_code == 400
    client.post(url + "subscription/", {"action": "subscribe", "webhook_url": "https://chat.example.org/hooks/abc"})
    assert Subscription.objects.get(user=victor).webhook_url == "https://chat.example.org/hooks/abc"
    page = client.get(url).content.decode()
    assert "at the webhook https://chat.example.org/…" in page and "hooks/abc" not in page
    assert "This site has no mail server" in page


def test_a_firing_alert_puts_its_pool_first_on_the_overview(grid_pool, scratch_pool, viewer_client):
    alerts.make_rule(grid_pool, AlertRule.STALE_LOCKS, threshold=0)
    scratch_pool.bulk_docs([surf_token(100, lock=NOW - 30 * 3600, hostname="wn-dead")])
    counting.refresh(grid_pool)
    alerts.evaluate()
    card = api_as(viewer_client).get("/api/v1/overview").json()["pools"][0]
    assert card["status"] == "alert"
    assert card["reasons"][0] == {"kind": "alert", "text": "alert: 1 lock older than 24 hours, more than 0"}


def test_in_a_browser_an_operator_adds_a_rule_and_a_viewer_subscribes_at_a_desktop_and_a_phone(
        live_server, grid_pool, open_page):
    from tests.browsing import WIDTHS, log_in, overflow, shoot

    make_user("olga", OPERATORS)
    make_user("victor", VIEWERS)
    for width in WIDTHS:
        AlertRule.objects.all().delete()
        page = open_page(width)
        log_in(page, live_server.url, "olga")
        page.goto(f"{live_server.url}/pools/{grid_pool.slug}/")
        page.locator("nav.poolnav").get_by_role("link", name="Alerts").click()
        page.wait_for_url(f"**/pools/{grid_pool.slug}/alerts/")
        assert "Nothing is firing." in page.locator("main").inner_text()
        page.get_by_label("Tell when").select_option("error_rate")
        page.get_by_label("Threshold").fill("150")
        page.get_by_label("Over hours").fill("2")
        page.get_by_role("button", name="Add rule").click()
        assert page.locator(".banner.error").inner_text() == "The error rate is a percentage above 0 and at most 100"
        assert page.get_by_label("Threshold").input_value() == "150"  # kept, to correct
        assert page.get_by_label("Over hours").input_value() == "2"
        page.get_by_label("Threshold").fill("25")
        page.get_by_role("button", name="Add rule").click()
        assert "Rule added: error rate above 25% over 2 hours." in page.locator(".banner.ok").inner_text()
        assert overflow(page) <= 1
        shoot(page, f"alerts-{width}")

        viewer = open_page(width)
        log_in(viewer, live_server.url, "victor")
        viewer.goto(f"{live_server.url}/pools/{grid_pool.slug}/alerts/")
        assert viewer.get_by_role("button", name="Add rule").count() == 0
        assert viewer.get_by_role("button", name="Remove").count() == 0
        viewer.get_by_label("by e-mail", exact=False).uncheck()
        viewer.get_by_label("Webhook").fill("https://chat.example.org/hooks/xyz-secret")
        viewer.get_by_role("button", name="Subscribe").click()
        text = viewer.locator("main").inner_text()
        assert "Subscribed to" in text and "at the webhook https://chat.example.org/…" in text
        assert "xyz-secret" not in viewer.content()
        assert overflow(viewer) <= 1
        Subscription.objects.all().delete()
