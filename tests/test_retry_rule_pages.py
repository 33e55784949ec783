"""The retry rules page and its API twin: an operator adds, changes, pauses and dry-runs rules, retries the given-up
tokens by hand; a mistake keeps what was typed; the page, the API and the pool's pages agree."""

import time

import pytest
from django.test import Client

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.forms import started_job
from tests.waiting import wait_for
from tokens import counting, operations, retries
from tokens.models import Job, RetryRule
from tokens.pools import all_pools

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
RULE = {"name": "downloads", "code": "21", "message": "", "attempts": "3", "wait_minutes": "10", "per_hour": "500",
        "hold_black_holes": "on", "enabled": "on"}


def failed(n, hostname, errors=1, code=21):
    times = [NOW - 3600 * (errors - i) for i in range(errors)]
    return surf_token(n, lock=times[-1] - 60, done=times[-1], exit_code=code, hostname=hostname,
                      error=[{"time": t, "message": "download failed"} for t in times])


@pytest.fixture
def failing_pool(scratch_pool):
    """Six failures of code 21 spread over hosts (none a black hole), two of them failed three times already."""
    scratch_pool.bulk_docs([failed(n, f"wn-{n % 3:02d}") for n in range(4)]
                           + [failed(n, f"wn-{n % 3:02d}", errors=3) for n in range(4, 6)]
                           + [surf_token(n, done=NOW - 60, lock=NOW - 120, exit_code=0, hostname=f"wn-{n % 3:02d}")
                              for n in range(6, 12)])
    (pool,) = all_pools()
    counting.refresh(pool)
    return pool


def test_an_operator_adds_a_rule_with_the_form_and_the_page_and_the_api_say_the_same(failing_pool, operator_client):
    page = operator_client.get(f"/pools/{failing_pool.slug}/retries/")
    assert page.status_code == 200 and "No retry rules yet" in page.content.decode()
    response = operator_client.post(f"/pools/{failing_pool.slug}/retries/rules/", RULE)
    assert response.status_code == 302
    page = operator_client.get(response["Location"]).content.decode()
    assert "Rule “downloads” added" in page
    assert "Retries exit code 21 (any message), 10 minutes after the failure, until a token has had 3 attempts" in page
    listed = api_as(operator_client).get(f"/api/v1/pools/{failing_pool.slug}/retry-rules").json()
    (rule,) = listed["rules"]
    assert (rule["code"], rule["message"], rule["attempts"], rule["wait_minutes"], rule["per_hour"],
            rule["hold_black_holes"], rule["enabled"]) == ("21", None, 3, 10.0, 500, True, True)
    assert rule["changed_by"] == "olga" and listed["paused"] is False


@pytest.mark.parametrize(("field", "value", "refusal"), [
    ("attempts", "0", "attempts a token gets in all"),
    ("wait_minutes", "0.01", "at least the grace period"),
    ("per_hour", "lots", "tokens retried an hour"),
    ("name", "", "Give the rule a name"),
])
def test_a_refused_rule_keeps_what_was_typed_and_the_api_refuses_it_alike(failing_pool, operator_client, field,
                                                                         value, refusal):
    response = operator_client.post(f"/pools/{failing_pool.slug}/retries/rules/", {**RULE, field: value})
    page = response.content.decode()
    assert response.status_code == 400 and refusal in page
    for name in ("name", "code", "attempts", "wait_minutes", "per_hour"):
        typed = {**RULE, field: value}[name]
        assert f'name="{name}"' in page and (not typed or f'value="{typed}"' in page), name
    body = {"name": "downloads", "code": "21", "attempts": 3, "wait_minutes": 10, "per_hour": 500, field: value}
    answer = operator_client.post(f"/api/v1/pools/{failing_pool.slug}/retry-rules", body,
                                  content_type="application/json")
    assert answer.status_code in (400, 422)
    if answer.status_code == 400:
        assert refusal in answer.json()["detail"]
    assert not RetryRule.objects.exists()


def test_the_dry_run_on_the_page_is_the_apis_and_the_rule_then_does_what_it_said(failing_pool, operator_client):
    rule = retries.make(failing_pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=500)
    page = operator_client.get(f"/pools/{failing_pool.slug}/retries/?dry={rule.pk}").content.decode()
    assert "Would retry 4 tokens" in page and "Would give up 2 tokens that used all their attempts" in page
    dry = api_as(operator_client).get(f"/api/v1/pools/{failing_pool.slug}/retry-rules/{rule.pk}/dry-run").json()
    assert (dry["would_retry"], dry["given_up"], dry["held"], dry["complete"]) == (4, 2, 0, True)

    (job,) = retries.apply(pools=[failing_pool])
    job = operations.run_job(job.pk)
    assert job.changed == 4
    shown = operator_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "the retry rule “downloads”" in shown and "each given 3 attempts in all" in shown
    assert api_as(operator_client).get(f"/api/v1/jobs/{job.pk}").json()["rule"] == "downloads"
    jobs = operator_client.get("/jobs/?via=rule").content.decode()
    assert "rule “downloads”" in jobs
    page = operator_client.get(f"/pools/{failing_pool.slug}/retries/").content.decode()
    assert "retried 4 tokens in" in page and "Given up <span class=\"muted\">(2 failed tokens" in page


def test_given_up_tokens_show_on_the_pool_pages_and_are_retried_by_hand(failing_pool, operator_client, celery_worker):
    rule = retries.make(failing_pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=500)
    operations.run_job(retries.apply(pools=[failing_pool])[0].pk)
    assert rule.pk and retries.given_up(failing_pool.slug).count() == 2
    pool_page = operator_client.get(f"/pools/{failing_pool.slug}/").content.decode()
    assert "2 failed tokens</a> used all their attempts" in pool_page
    assert api_as(operator_client).get(f"/api/v1/pools/{failing_pool.slug}").json()["given_up"] == 2
    assert "Given up by retry rules" in operator_client.get("/").content.decode()

    page = operator_client.get(f"/pools/{failing_pool.slug}/retries/").content.decode()
    link = f"/pools/{failing_pool.slug}/jobs/new/?action=reset&amp;kind=given_up"
    assert link in page
    preview = operator_client.get(link.replace("&amp;", "&")).content.decode()
    assert "failed tokens the retry rules gave up on" in preview and "token_00004" in preview
    job = started_job(operator_client.post(f"/pools/{failing_pool.slug}/jobs/", {
        "action": "reset", "kind": "given_up", "expected": "2"}))
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=Job.ENDED).first(), what="the job's end")
    assert job.status == Job.SUCCEEDED and job.changed == 2 and job.user.username == "olga"


def test_the_pools_switch_pauses_every_rule_and_a_viewer_may_only_look(failing_pool, operator_client, viewer):
    retries.make(failing_pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=500)
    response = operator_client.post(f"/pools/{failing_pool.slug}/retries/pause/", {"paused": "on"})
    page = operator_client.get(response["Location"]).content.decode()
    assert "Paused:" in page and "paused by olga" in page and "Resume the retry rules" in page
    assert retries.apply(pools=[failing_pool]) == []
    assert api_as(operator_client).post(f"/api/v1/pools/{failing_pool.slug}/retry-rules/pause",
                                        {"paused": False}).json()["paused"] is False
    assert len(retries.apply(pools=[failing_pool])) == 1

    viewer_client = Client()
    viewer_client.force_login(viewer)
    seen = viewer_client.get(f"/pools/{failing_pool.slug}/retries/").content.decode()
    assert "downloads" in seen and "Add a rule" not in seen and "Pause every retry rule" not in seen
    assert viewer_client.post(f"/pools/{failing_pool.slug}/retries/rules/", RULE).status_code == 403
    assert api_as(viewer_client).post(f"/api/v1/pools/{failing_pool.slug}/retry-rules",
                                      {**RULE, "attempts": 3, "per_hour": 5, "wait_minutes": 10}).status_code == 403


def test_an_operator_changes_and_removes_a_rule(failing_pool, operator_client):
    rule = retries.make(failing_pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=500)
    form = operator_client.get(f"/pools/{failing_pool.slug}/retries/?edit={rule.pk}").content.decode()
    assert "Change the rule “downloads”" in form and 'value="500"' in form
    response = operator_client.post(f"/pools/{failing_pool.slug}/retries/rules/{rule.pk}/",
                                    {**RULE, "attempts": "5", "enabled": ""})
    assert response.status_code == 302
    rule.refresh_from_db()
    assert rule.attempts == 5 and not rule.enabled
    changed = api_as(operator_client).call("patch", f"/api/v1/pools/{failing_pool.slug}/retry-rules/{rule.pk}",
                                           {"enabled": True}, content_type="application/json").json()
    assert changed["enabled"] is True and changed["attempts"] == 5
    operator_client.post(f"/pools/{failing_pool.slug}/retries/rules/{rule.pk}/delete/")
    assert not RetryRule.objects.exists()
    assert operator_client.delete(f"/api/v1/pools/{failing_pool.slug}/retry-rules/{rule.pk}").status_code == 404


def test_in_a_browser_an_operator_sets_a_rule_watches_it_work_and_retries_what_it_gave_up_by_hand(
        live_server, failing_pool, open_page, celery_worker):
    from dashboard.roles import OPERATORS
    from tests.browsing import WIDTHS, log_in, overflow, shoot
    from tests.conftest import make_user
    from tokens.tasks import apply_retry_rules

    make_user("olga", OPERATORS)
    for width in WIDTHS:
        RetryRule.objects.all().delete()
        page = open_page(width)
        log_in(page, live_server.url, "olga")
        page.goto(f"{live_server.url}/pools/{failing_pool.slug}/")
        page.locator("nav.poolnav").get_by_role("link", name="Retry rules").click()
        page.wait_for_url(f"**/pools/{failing_pool.slug}/retries/")
        page.get_by_label("Name", exact=True).fill("downloads")
        page.get_by_label("Exit code").fill("21")
        page.get_by_label("Attempts a token gets in all").fill("0")
        page.get_by_label("Minutes after the failure").fill("10")
        page.get_by_label("At most this many tokens an hour").fill("500")
        page.get_by_role("button", name="Add the rule").click()
        assert "attempts a token gets in all" in page.locator(".banner.error").inner_text()
        assert page.get_by_label("Name", exact=True).input_value() == "downloads"  # kept, to correct
        assert page.get_by_label("Exit code").input_value() == "21"
        page.get_by_label("Attempts a token gets in all").fill("3")
        page.get_by_role("button", name="Add the rule").click()
        assert "Rule “downloads” added" in page.locator(".banner.ok").inner_text()
        page.get_by_role("link", name="Dry run").click()
        dry = page.locator("#dry").inner_text()
        assert "Would retry 4 tokens" in dry and "Would give up 2 tokens that used all their attempts" in dry
        assert overflow(page) <= 1
        shoot(page, f"retry-rules-{width}")

        # What the beat does every RETRY_RULES_SECONDS, handed to the real worker: the rule's job runs.
        apply_retry_rules.delay()
        job = wait_for(lambda: Job.objects.filter(via="rule", status__in=Job.ENDED).first(), what="the rule's job")
        page.get_by_role("link", name="Jobs", exact=True).first.click()
        page.get_by_role("link", name=str(job.pk), exact=True).click()
        page.locator(".status.succeeded").wait_for()
        assert "the retry rule “downloads”" in page.locator("main").inner_text()
        assert overflow(page) <= 1
        shoot(page, f"rule-job-{width}")
        page.goto(f"{live_server.url}/pools/{failing_pool.slug}/")
        assert "used all their attempts" in page.locator("#observations").inner_text()
        assert overflow(page) <= 1
        shoot(page, f"pool-given-up-{width}")
        page.goto(f"{live_server.url}/")
        assert "Given up by retry rules" in page.locator("main").inner_text()
        shoot(page, f"overview-given-up-{width}")

        page.goto(f"{live_server.url}/pools/{failing_pool.slug}/retries/")
        page.get_by_role("link", name="Retry them by hand…").click()
        page.get_by_role("button", name="Reset / retry 2 tokens").click()
        page.locator("#progress .status.succeeded").wait_for()
        page.goto(f"{live_server.url}/pools/{failing_pool.slug}/retries/")
        page.get_by_role("button", name="Pause every retry rule of this pool").click()
        assert "Paused:" in page.locator("main").inner_text()
        assert overflow(page) <= 1

        # The next width starts from the same failures.
        failing_pool.couch().bulk_docs([{**d, **failed(int(d["_id"][-5:]), d["hostname"],
                                                       errors=3 if d["_id"] >= "token_00004" else 1)}
                                        for d in failing_pool.couch().docs([f"token_{n:05d}" for n in range(6)])])
        retries.pause(failing_pool, None, False)
        counting.refresh(failing_pool)
        Job.objects.all().delete()


def test_an_alert_rule_tells_when_the_retry_rules_give_up_and_when_none_is_left(failing_pool, operator_client):
    from tokens import alerts
    from tokens.models import Alert, AlertRule

    alerts.make_rule(failing_pool, AlertRule.GIVEN_UP)
    retries.make(failing_pool, None, "downloads", "21", None, attempts=3, wait_minutes=10, per_hour=500)
    assert alerts.evaluate() == (0, 0)
    operations.run_job(retries.apply(pools=[failing_pool])[0].pk)
    assert alerts.evaluate() == (1, 0)
    (alert,) = Alert.objects.all()
    assert alert.summary == "2 failed tokens used all their attempts: the retry rules gave up on them"
    assert "retry rules gave up on failed tokens" in operator_client.get(f"/pools/{failing_pool.slug}/alerts/") \
        .content.decode()
    # Retried by hand: no given-up token is failed any more, and the alert resolves.
    job = operations.create_job(failing_pool, None, "reset", retries.Selection("given_up"), {})
    operations.run_job(job.pk)
    counting.refresh(failing_pool)
    assert alerts.evaluate() == (0, 1)
