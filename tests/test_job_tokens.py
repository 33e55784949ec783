"""What a job changed: every token, paged, downloadable, through the API too, and selectable for a new job
(web, API and command line alike)."""

import csv
import io
import re
import time
from html import unescape

import pytest
from django.core.management import call_command

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.forms import started_job
from tokens import operations
from tokens.models import Job, JobToken
from tokens.pools import all_pools
from tokens.selections import Selection

pytestmark = pytest.mark.django_db

NOW = int(time.time())


def errored(n):
    return surf_token(n, lock=NOW - 4000, done=NOW - 3600, exit_code=1, error=[{"time": NOW - 3600, "message": "x"}])


@pytest.fixture
def reset_job(scratch_pool):
    """A reset that changed 230 error tokens and skipped 3 locked ones it was given by id."""
    scratch_pool.bulk_docs([errored(n) for n in range(230)] + [surf_token(n, lock=NOW) for n in range(230, 233)])
    pool = all_pools()[0]
    ids = [f"token_{n:05d}" for n in range(233)]
    job = operations.create_job(pool, None, "reset", Selection("ids", ids=ids), {}, confirmation="230")
    return operations.run_job(job.pk, batch_size=50)


def test_the_job_lists_every_token_it_changed_a_page_at_a_time(operator_client, reset_job):
    assert (reset_job.changed, reset_job.skipped) == (230, 3)
    page = operator_client.get(f"/jobs/{reset_job.pk}/").content.decode()
    assert f'href="/jobs/{reset_job.pk}/tokens/?outcome=changed">230 changed</a>' in page
    seen, after = [], None
    while True:
        data = api_as(operator_client).get(f"/api/v1/jobs/{reset_job.pk}/tokens",
                                           {"outcome": "changed", **({"after": after} if after else {})}).json()
        seen += [t["id"] for t in data["tokens"]]
        after = data["next"]
        if after is None:
            break
    assert seen == [f"token_{n:05d}" for n in range(230)] and data["count"] == 230
    shown, url = [], f"/jobs/{reset_job.pk}/tokens/?outcome=changed"  # the page, following its "Next" links
    while url:
        html = operator_client.get(url).content.decode()
        shown += re.findall(r'\?id=[^"]*">([^<]*)</a></td>', html)
        url = (m := re.search(r'<a href="(\?outcome=changed&amp;after=\d+)">Next', html)) and \
            f"/jobs/{reset_job.pk}/tokens/" + unescape(m[1])
    assert shown == seen
    html = operator_client.get(f"/jobs/{reset_job.pk}/tokens/", {"outcome": "skipped"}).content.decode()
    assert "token_00230" in html and "locked: a worker may hold it" in html and "Select these tokens" in html


def test_the_download_and_the_api_hold_the_same_tokens(operator_client, reset_job):
    response = operator_client.get(f"/jobs/{reset_job.pk}/tokens/", {"outcome": "changed", "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert response["Content-Disposition"].startswith("attachment")
    records = {r.token_id: r for r in JobToken.objects.filter(job=reset_job, outcome="changed")}
    assert {r["token"]: (r["rev_before"], r["rev_after"]) for r in rows} == {
        i: (r.rev_before, r.rev_after) for i, r in records.items()}
    api, after = [], None
    while True:
        data = operator_client.get(f"/api/v1/jobs/{reset_job.pk}/tokens",
                                   {"limit": 100, **({"after": after} if after else {})}).json()
        api += [t["id"] for t in data["tokens"]]
        if (after := data["next"]) is None:
            break
    assert api == [r["token"] for r in rows]


def test_select_these_tokens_feeds_a_new_job_that_changes_exactly_them(operator_client, reset_job, scratch_pool):
    slug = scratch_pool.database
    preview = operator_client.get(f"/pools/{slug}/jobs/new/", {"action": "set_field", "kind": "job",
                                                               "job": reset_job.pk, "outcome": "changed"})
    assert preview.status_code == 200 and f"the tokens job {reset_job.pk} changed" in preview.content.decode()
    pk = started_job(operator_client.post(f"/pools/{slug}/jobs/", {
        "action": "set_field", "kind": "job", "job": reset_job.pk, "outcome": "changed", "field": "note",
        "value": "rerun", "value_type": "string", "confirmation": "230"})).pk
    job = operations.run_job(pk)
    assert job.changed == 230
    docs = scratch_pool.call(scratch_pool.client.post_all_docs, db=slug, include_docs=True)["rows"]
    noted = {r["id"] for r in docs if r["doc"].get("note") == "rerun"}
    assert noted == {f"token_{n:05d}" for n in range(230)}


def test_the_api_and_the_command_line_select_a_jobs_tokens_the_same_way(operator_client, reset_job, capsys,
                                                                         scratch_pool):
    body = {"action": "reset", "selection": {"kind": "job", "job": reset_job.pk, "outcome": "skipped"}}
    # The dry run promises what a job would do now: the 3 it skipped are still locked (a pilot may hold them).
    dry = operator_client.post(f"/api/v1/pools/{all_pools()[0].slug}/jobs", body, content_type="application/json")
    assert dry.status_code == 200 and dry.json()["count"] == 0
    scratch_pool.bulk_docs([{**scratch_pool.get(f"token_{n:05d}"), "done": NOW, "exit_code": 0}  # pilot finishes
                            for n in range(230, 233)])
    dry = operator_client.post(f"/api/v1/pools/{all_pools()[0].slug}/jobs", body, content_type="application/json")
    assert dry.status_code == 200 and dry.json()["count"] == 3
    call_command("tokens", "reset", "--pool", all_pools()[0].slug, "--from-job", str(reset_job.pk),
                 "--outcome", "skipped", "--dry-run")
    assert '"count": 3' in capsys.readouterr().out
    bad = operator_client.post(f"/api/v1/pools/{all_pools()[0].slug}/jobs",
                               {**body, "selection": {"kind": "job", "job": 99999, "outcome": "changed"}},
                               content_type="application/json")
    assert bad.status_code == 400 and "There is no job 99999" in bad.json()["detail"]
    assert Job.objects.count() == 1
