"""Every URL pattern of the site, walked: a write is refused to anonymous users, to viewers, and without CSRF."""

import re

import pytest
from django.test import Client
from django.urls import URLResolver, get_resolver

from tests.conftest import SURF
from tokens.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

# Public by design: logging in and out (the CSRF check below still covers them).
PUBLIC = {"/accounts/login/", "/accounts/logout/", "/admin/login/", "/admin/logout/"}
# Every user, viewers too, makes and revokes API tokens for themselves (a viewer's token only reads).
OWN = ("/account/",)
WRITES = ("post", "put", "patch", "delete")
# Refusals: to the login page, unauthorised, forbidden, not found, wrong method, or (the API, which reads its body
# before it asks who calls) a malformed request. Whatever the code, the pool and the jobs are checked unchanged.
REFUSED = (302, 400, 401, 403, 404, 405, 422)


def every_route(patterns=None, prefix=""):
    for p in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(p, URLResolver):
            yield from every_route(p.url_patterns, prefix + _text(p.pattern))
        else:
            yield prefix + _text(p.pattern)


def _text(pattern):
    text = str(pattern)
    if text.startswith("^"):  # a regular expression (admin's app index): its first alternative will do
        text = re.sub(r"\(\?P<(\w+)>([^|)]+)[^)]*\)", r"<\1>", text.strip("^$")).replace("\\", "")
    return text


def concrete(route, job_pk):
    """A URL for the route, with values that exist (a real pool, a real job), so that refusals are the checks'."""
    values = {"slug": SURF, "pk": str(job_pk), "app_label": "tokens", "model_name": "job", "object_id": str(job_pk)}

    def fill(match):
        name = match.group(1).split(":")[-1]
        return values.get(name, str(job_pk))

    return "/" + re.sub(r"<([^>]+)>", fill, route)


@pytest.fixture
def routes(demo_pools, operator):
    job = Job.objects.create(pool=SURF, user=operator, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=1, status=Job.SUCCEEDED)
    found = sorted({concrete(r, job.pk) for r in every_route()})
    assert "/pools/" + SURF + "/jobs/" in found and len(found) > 20  # the walk sees the site's own patterns
    return found


def revs(couch):
    db = couch(SURF)
    return {r["id"]: r["value"]["rev"] for r in db.call(db.client.post_all_docs, db=SURF)["rows"]}


def test_anonymous_users_cannot_write_anywhere(routes, client, couch):
    before, jobs = revs(couch), Job.objects.count()
    for url in routes:
        if url in PUBLIC:
            continue
        for method in WRITES:
            response = getattr(client, method)(url)
            assert response.status_code in REFUSED, (method, url, response.status_code)
            if response.status_code == 302:
                assert "login" in response["Location"], (method, url, response["Location"])
    assert revs(couch) == before and Job.objects.count() == jobs


def test_viewers_cannot_write_anywhere(routes, viewer_client, couch):
    before, jobs = revs(couch), Job.objects.count()
    for url in routes:
        if url in PUBLIC or url.startswith(OWN):
            continue
        for method in WRITES:
            response = getattr(viewer_client, method)(url, {"action": "reset", "kind": "state", "bucket": "error",
                                                            "confirmation": "1000"})
            assert response.status_code in REFUSED, (method, url, response.status_code)
            if response.status_code == 302:  # only the admin sends a non-staff user to its own login
                assert url.startswith("/admin/") and "login" in response["Location"], (method, url)
    assert revs(couch) == before and Job.objects.count() == jobs


def test_operators_cannot_write_without_the_csrf_token(routes, operator, couch):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    before, jobs = revs(couch), Job.objects.count()
    for url in routes:
        for method in WRITES:
            response = getattr(browser, method)(url, {"action": "reset", "kind": "state", "bucket": "error",
                                                      "confirmation": "1000"})
            assert response.status_code in REFUSED and response.status_code != 302, (method, url, response.status_code)
    assert revs(couch) == before and Job.objects.count() == jobs


def test_with_the_csrf_token_an_operator_can_write(demo_pools, operator, celery_worker, settings):
    """The walk above means something: the same request with the token is accepted."""
    settings.JOB_CONFIRM_THRESHOLD = 10_000
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(operator)
    browser.get(f"/pools/{SURF}/jobs/new/", {"action": "reset", "kind": "state", "bucket": "error"})
    response = browser.post(f"/pools/{SURF}/jobs/", {"action": "set_field", "kind": "ids", "ids": "no-such-token",
                                                     "field": "note", "value": "x", "value_type": "string",
                                                     "csrfmiddlewaretoken": browser.cookies["csrftoken"].value})
    # Past the CSRF check, the job's own checks answer: no such token, so nothing to do (and no job recorded).
    assert response.status_code == 400 and b"nothing to do" in response.content, response.content[:300]
