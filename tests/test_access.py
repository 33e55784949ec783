"""Per-pool roles: every page and API endpoint, asked by {anonymous, viewer of A, operator of A, operator of all}
about {pool A, pool B}. A pool someone may not see does not exist for them (404); a viewer is refused actions (403);
lists, the overview, /metrics and /healthz hold only what the asker may see. A new URL or API operation without a
row here fails the test that every one is covered."""

import uuid
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from dashboard.api import api
from dashboard.models import PoolRole
from tests.api_client import token_for
from tests.conftest import LOFAR, SURF
from tokens import counting, reading
from tokens.models import AlertRule, Job, RetryRule
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db

A, B = SURF, LOFAR
WHO = ("anonymous", "viewer of A", "operator of A", "operator of all")

# (name, method, path, what): `what` is "read" (anyone who sees the pool), "act" (its operators; the answer an
# operator gets is given: a refused empty form is 400, which shows the permission check let them through), or
# "subscribe" (anyone who sees it). {pool}, {token}, {attachment}, {observation}, {job}, {rule} (an alert rule),
# {retry} (a retry rule) are filled in per pool.
WEB = [
    ("pool", "GET", "/pools/{pool}/", "read"),
    ("tokens", "GET", "/pools/{pool}/tokens/", "read"),
    ("token", "GET", "/pools/{pool}/token/?id={token}", "read"),
    ("attachment", "GET", "/pools/{pool}/attachment/?id={token}&name={attachment}", "read"),
    ("failures", "GET", "/pools/{pool}/failures/", "read"),
    ("stale", "GET", "/pools/{pool}/stale/", "read"),
    ("observation", "GET", "/pools/{pool}/obs/?{observation}", "read"),
    ("hosts", "GET", "/pools/{pool}/hosts/", "read"),
    ("alerts", "GET", "/pools/{pool}/alerts/", "read"),
    ("export", "GET", "/pools/{pool}/export/?state=error&format=csv", "read"),
    ("job", "GET", "/jobs/{job}/", "read"),
    ("job_tokens", "GET", "/jobs/{job}/tokens/", "read"),
    ("job_new", "GET", "/pools/{pool}/jobs/new/?action=reset&kind=state&bucket=error", ("act", 200)),
    ("job_create", "POST", "/pools/{pool}/jobs/", ("act", 400)),
    ("tokenset_new", "GET", "/pools/{pool}/tokensets/new/", ("act", 200)),
    ("tokenset_create", "POST", "/pools/{pool}/tokensets/", ("act", 400)),
    ("alert_rule_create", "POST", "/pools/{pool}/alerts/rules/", ("act", 400)),
    ("alert_rule_delete", "POST", "/pools/{pool}/alerts/rules/{rule}/delete/", ("act", 302)),
    ("job_cancel", "POST", "/jobs/{job}/cancel/", ("act", 302)),
    ("alert_subscription", "POST", "/pools/{pool}/alerts/subscription/", "subscribe"),
    ("retry_rules", "GET", "/pools/{pool}/retries/", "read"),
    ("retry_rule_create", "POST", "/pools/{pool}/retries/rules/", ("act", 400)),
    ("retry_rule_change", "POST", "/pools/{pool}/retries/rules/{retry}/", ("act", 400)),
    ("retry_rule_switch", "POST", "/pools/{pool}/retries/rules/{retry}/switch/", ("act", 302)),
    ("retry_rule_delete", "POST", "/pools/{pool}/retries/rules/{retry}/delete/", ("act", 302)),
    ("retry_pause", "POST", "/pools/{pool}/retries/pause/", ("act", 302)),
]
API = [
    ("GET", "/api/v1/pools/{pool}", "read"),
    ("GET", "/api/v1/pools/{pool}/observation?{observation}", "read"),
    ("GET", "/api/v1/pools/{pool}/tokens", "read"),
    ("GET", "/api/v1/pools/{pool}/tokens/{token}", "read"),
    ("GET", "/api/v1/pools/{pool}/failures", "read"),
    ("GET", "/api/v1/pools/{pool}/stale", "read"),
    ("GET", "/api/v1/pools/{pool}/hosts", "read"),
    ("GET", "/api/v1/pools/{pool}/history", "read"),
    ("GET", "/api/v1/pools/{pool}/export?state=error&format=csv", "read"),
    ("GET", "/api/v1/pools/{pool}/alerts", "read"),
    ("GET", "/api/v1/jobs/{job}", "read"),
    ("GET", "/api/v1/jobs/{job}/tokens", "read"),
    ("POST", "/api/v1/pools/{pool}/jobs", ("act", 200)),  # a dry run
    ("POST", "/api/v1/jobs/{job}/cancel", ("act", 200)),
    ("GET", "/api/v1/pools/{pool}/retry-rules", "read"),
    ("POST", "/api/v1/pools/{pool}/retry-rules", ("act", 201)),
    ("POST", "/api/v1/pools/{pool}/retry-rules/pause", ("act", 200)),
    ("PATCH", "/api/v1/pools/{pool}/retry-rules/{retry}", ("act", 200)),
    ("DELETE", "/api/v1/pools/{pool}/retry-rules/{retry}", ("act", 204)),
    ("GET", "/api/v1/pools/{pool}/retry-rules/{retry}/dry-run", "read"),
    ("POST", "/api/v1/pools/{pool}/tokensets", ("act", 400)),  # an empty config, refused once let through
]
# Lists and answers about every pool: each must hold A for whoever sees A, and B only for who sees B.
LISTS = [("web", "/"), ("web", "/jobs/"), ("web", "/healthz"), ("api", "/api/v1/overview"), ("api", "/api/v1/pools"),
         ("api", "/api/v1/jobs"), ("api", "/api/v1/annotations"), ("metrics", "/metrics"),
         ("web", "/search/?q=L229585"), ("api", "/api/v1/search?q=L229585")]  # an observation of both pools
# Pages that are not about a pool: the account's own, logging in and out, the admin (Django's, staff only).
NOT_ABOUT_A_POOL = {"pools", "jobs", "search", "healthz", "metrics", "account", "api_token_create", "api_token_revoke",
                    "login", "logout", "sso_start", "sso_callback", None}


@pytest.fixture
def people(db):
    def person(name, pool, role):
        user = User.objects.create_user(name, password="pw-" + name)
        PoolRole.objects.create(user=user, pool=pool, role=role)
        return user

    return {"anonymous": None, "viewer of A": person("vera", A, "viewer"),
            "operator of A": person("otto", A, "operator"), "operator of all": person("oona", "*", "operator")}


def facts(pool_slug, couch):
    """A token with an attachment, an observation type, a job and an alert rule in the pool."""
    db = couch(pool_slug)
    with_file = next(d for d in db.documents(1000).rows if d["doc"].get("_attachments"))
    observation = reading.observations(counting.refresh(get_pool(pool_slug)).data)[0]
    return {"pool": pool_slug, "token": with_file["id"], "attachment": next(iter(with_file["doc"]["_attachments"])),
            "observation": urlencode({"type": observation.type, **({"group": observation.group}
                                                                   if observation.group is not None else {})})}


def fresh(kind, pool_slug):
    """A job or rule made anew for each request, so that one asker's cancel or delete does not change the next's."""
    if kind == "job":
        return Job.objects.create(pool=pool_slug, action="reset", selection={"kind": "state", "bucket": "error"},
                                  preview_count=0).pk
    if kind == "retry":
        return RetryRule.objects.create(pool=pool_slug, name=uuid.uuid4().hex, code="21", attempts=3, wait_minutes=10,
                                        per_hour=5).pk
    return AlertRule.objects.create(pool=pool_slug, kind=AlertRule.STALE_LOCKS, threshold=5).pk


def sees(who, pool_slug):
    return who == "operator of all" or (who != "anonymous" and pool_slug == A)


def operates(who, pool_slug):
    return who == "operator of all" or (who == "operator of A" and pool_slug == A)


def expected(who, pool_slug, what, api_call):
    if who == "anonymous":
        return 401 if api_call else 302
    if not sees(who, pool_slug):
        return 404
    if what == "read":
        return 200
    if what == "subscribe":
        return 302
    return what[1] if operates(who, pool_slug) else 403


def ask(client, method, path, headers=None):
    call = client.get if method == "GET" else client.post
    return call(path, headers=headers or {})


def test_every_page_and_endpoint_answers_each_asker_as_their_role_on_each_pool_says(
        people, demo_pools, couch, settings):
    settings.JOB_CONFIRM_THRESHOLD = 10**9
    known = {p: facts(p, couch) for p in (A, B)}
    answers, wrong = 0, []
    for who in WHO:
        web = Client()
        if people[who]:
            web.force_login(people[who])
        bearer = {"Authorization": f"Bearer {token_for(people[who])}"} if people[who] else {}
        for pool_slug in (A, B):
            rows = [(m, p, w, False) for _, m, p, w in WEB] + [(m, p, w, True) for m, p, w in API]
            for method, template, what, api_call in rows:
                values = {**known[pool_slug], "job": fresh("job", pool_slug), "rule": fresh("rule", pool_slug),
                          "retry": fresh("retry", pool_slug)}
                path = template.format(**values)
                if api_call:
                    # One body for every operation that takes one (each reads its own fields): a job's dry run,
                    # a new or changed retry rule (named anew each time), the retry rules' switch.
                    body = {"action": "reset", "selection": {"kind": "state", "bucket": "error"},
                            "name": uuid.uuid4().hex, "code": "21", "attempts": 3, "wait_minutes": 10,
                            "per_hour": 5, "paused": False, "token_type": "token", "config": "",
                            "input_list": ""}
                    call = {"GET": web.get, "POST": web.post, "PATCH": web.patch, "DELETE": web.delete}[method]
                    response = (call(path, headers=bearer) if method in ("GET", "DELETE") else
                                call(path, body, content_type="application/json", headers=bearer))
                else:
                    data = {"action": "unsubscribe"} if what == "subscribe" else {}
                    response = web.get(path) if method == "GET" else web.post(path, data)
                want = expected(who, pool_slug, what, api_call)
                answers += 1
                if response.status_code != want:
                    wrong.append(f"{who} {method} {path}: {response.status_code}, not {want}")
                elif want == 302 and who == "anonymous":
                    assert response.url.startswith("/accounts/login/")
                elif want == 404:  # not found, whether it exists or not: the pool is not named as existing
                    assert b"operators" not in response.content
    assert not wrong, "\n".join(wrong)
    assert answers == len(WHO) * 2 * (len(WEB) + len(API))


def test_lists_and_every_pool_answers_hold_only_the_pools_the_asker_sees(people, demo_pools, settings):
    settings.METRICS_TOKEN = ""
    for slug in (A, B):
        Job.objects.create(pool=slug, action="reset", selection={"kind": "state", "bucket": "error"},
                           preview_count=0, started_at=timezone.now())  # (started: the charts' marks list it)
    for who in WHO[1:]:
        web = Client()
        web.force_login(people[who])
        bearer = {"Authorization": f"Bearer {token_for(people[who])}"}
        for kind, path in LISTS:
            response = web.get(path, headers=bearer if kind != "web" else {})
            assert response.status_code == 200, (who, path)
            text = response.content.decode()
            assert (A in text) is sees(who, A) and (B in text) is sees(who, B), (who, path)
    # The anonymous get nothing but the health of the site, which names no pool.
    anonymous = Client()
    assert anonymous.get("/api/v1/pools").status_code == 401 and anonymous.get("/metrics").status_code == 401
    health = anonymous.get("/healthz").content.decode()
    assert A not in health and B not in health


def test_the_overview_counts_only_what_the_asker_sees(people, demo_pools):
    api_client = Client()
    cards = {who: api_client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token_for(people[who])}"})
             .json()["pools"] for who in WHO[1:]}
    assert [c["slug"] for c in cards["viewer of A"]] == [A]
    assert sorted(c["slug"] for c in cards["operator of all"]) == sorted([A, B])


def _url_names(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            if p.namespace in ("admin", "api"):
                continue
            yield from _url_names(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield p.name


def test_every_url_and_api_operation_has_a_row_in_the_matrix():
    names = set(_url_names(get_resolver().url_patterns))
    assert names - NOT_ABOUT_A_POOL == {name for name, *_ in WEB}
    operations = {(method.upper(), path) for path, ops in api.get_openapi_schema()["paths"].items()
                  for method in ops}
    as_in_schema = {"{pool}": "{slug}", "{token}": "{token_id}", "{job}": "{job_id}", "{retry}": "{rule_id}"}
    rows = set()
    for method, path, _ in API:
        path = path.partition("?")[0]
        for ours, theirs in as_in_schema.items():
            path = path.replace(ours, theirs)
        rows.add((method, path))
    every_pool = {("GET", "/api/v1/overview"), ("GET", "/api/v1/pools"), ("GET", "/api/v1/jobs"),
                  ("GET", "/api/v1/annotations"), ("GET", "/api/v1/search")}
    assert operations - every_pool == rows
    assert every_pool <= {("GET", p.partition("?")[0]) for kind, p in LISTS if kind == "api"}
