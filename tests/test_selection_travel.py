"""A selection travels whole: through a link, the preview form a person submits, an API body and the command line
it stays the same selection (the host of a black-hole retry was once lost between the preview and the job), and a
job sent from a preview that no longer holds runs nothing."""

import time
from urllib.parse import parse_qsl

import pytest
from django.core.management import call_command
from django.http import QueryDict

from tests.api_client import Api, openapi, token_for
from tests.conftest import surf_token
from tests.forms import read
from tokens import counting
from tokens.models import Job
from tokens.pools import get_pool
from tokens.selections import OperationError, Selection

pytestmark = pytest.mark.django_db(transaction=True)

NOW = int(time.time())
HOST = "wn-lot-066.grid.example.org"


def failed(n, host=HOST):
    return surf_token(n, lock=NOW - 7200, done=NOW - 3600, exit_code=21, hostname=host,
                      error=[{"time": NOW - 3600, "message": "Download failed"}])


def every_kind(job_pk):
    return [
        Selection("state", bucket="error"),
        Selection("state", bucket="todo", type="token", group="L1"),
        Selection("state", bucket="done", type="token", group=""),  # the group that is empty text
        Selection("state", bucket="locked_unknown"),  # locks of unknown age
        Selection("failure", code="21", message="Download failed on <host>", type="token", group="L 2&3"),
        Selection("failure", code="(none)", message=""),
        Selection("stale", hours=24),
        Selection("stale", hours=0.5),
        Selection("host", bucket="error", hostname=HOST),
        Selection("host", bucket="locked", hostname=HOST),
        Selection("ids", ids=["token_00001", "a b&c=d", "ünïcode"]),
        Selection("ids", bucket="error", ids=["token_00002"]),
        Selection("job", job=job_pk, outcome="skipped"),
        Selection("observation", type="pref_cal1_L229585", group="L229585"),
        Selection("observation", type="token"),  # the tokens with no group
    ]


@pytest.fixture
def earlier_job(db):
    return Job.objects.create(pool="p", action="reset", selection={"kind": "state", "bucket": "error"},
                              preview_count=1).pk


def normalised(selection):
    selection.validate()
    if selection.message is None:
        selection.message = ""
    return selection


def test_every_kind_of_selection_comes_back_the_same_from_a_link_a_form_and_an_api_body(earlier_job):
    for selection in every_kind(earlier_job):
        expected = normalised(Selection(**vars(selection)))
        link = Selection.from_query(QueryDict(selection.as_query()))
        form = QueryDict(mutable=True)
        for name, value in selection.as_fields():
            form.appendlist(name, value)
        body = Selection.from_query(selection.as_dict())
        assert link == expected, selection
        assert Selection.from_query(form) == expected, selection
        assert body == expected, selection
        assert Selection.from_query(QueryDict(Selection.from_dict(expected.as_dict()).as_query())) == expected


def test_the_token_lists_name_for_a_state_and_ticked_ids_are_read_as_the_form_means_them(earlier_job):
    assert Selection.from_query(QueryDict("kind=state&state=error")).bucket == "error"
    ticked = Selection.from_query(QueryDict("kind=state&bucket=error&ids=t1&ids=t2&ids=t1"))
    assert (ticked.kind, ticked.bucket, ticked.ids) == ("ids", "error", ["t1", "t2"])


@pytest.mark.parametrize(("query", "words"), [
    ("kind=stale&hours=-1", "The lock age must be a number of hours from 0 to 1,000,000, not '-1'"),
    ("kind=stale&hours=1e400", "not '1e400'"),
    ("kind=stale&hours=nan", "not 'nan'"),
    ("kind=stale&hours=99999999999999999999999", "from 0 to 1,000,000"),
    ("kind=job&outcome=changed&job=99999999999999999999999", "Name the job by its number, a whole number from 1"),
    ("kind=job&outcome=changed&job=-5", "not '-5'"),
    ("kind=job&outcome=changed&job=1.5", "not '1.5'"),
    ("kind=host&bucket=error", "A host selection names the host and the state"),
    ("kind=state&bucket=nope", "Unknown state 'nope'"),
    ("kind=weird", "Unknown selection 'weird'"),
    ("kind=state&bucket=error&type=%00", "type: a NUL character is not allowed"),
    ("kind=state&bucket=error&type=" + "x" * 2001, "type: at most 2,000 characters (there were 2,001)"),
])
def test_a_value_out_of_range_is_refused_where_it_is_read_with_the_field_named(query, words):
    with pytest.raises(OperationError) as refused:
        Selection.from_query(QueryDict(query))
    assert words in str(refused.value)


def hidden_form(page_html, url):
    forms, _ = read(page_html, url)
    (form,) = [f for f in forms if f.method == "post" and "/jobs/" in f.action]
    return form


def test_the_black_hole_retry_runs_from_the_form_the_banner_leads_to(operator_client, scratch_pool, settings,
                                                                       celery_worker):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(6)] + [failed(n, "wn-good") for n in range(6, 9)])
    slug = scratch_pool.database
    counting.refresh(get_pool(slug))
    link = f"/pools/{slug}/jobs/new/?action=reset&kind=host&state=error&hostname={HOST}"  # as the Hosts page writes
    preview = operator_client.get(link)
    assert preview.status_code == 200 and "<strong>6</strong> tokens" in preview.content.decode()
    form = hidden_form(preview.content.decode(), "http://testserver" + link)
    assert ("hostname", HOST) in form.data() and ("expected", "6") in form.data()
    created = operator_client.post(form.action.removeprefix("http://testserver"), dict_of(form.data()))
    assert created.status_code == 302, created.content.decode()[:2000]
    job = Job.objects.get()
    assert job.selection == {"kind": "host", "bucket": "error", "hostname": HOST, "message": ""}
    from tests.test_job_web import wait_until_ended

    assert wait_until_ended(job.pk).changed == 6
    assert scratch_pool.get("token_00007")["lock"] > 0  # another host's failure is left alone


def dict_of(pairs):
    query = QueryDict(mutable=True)
    for name, value in pairs:
        query.appendlist(name, value)
    return query


def test_a_preview_brought_back_after_its_job_runs_nothing_and_says_was_and_now(operator_client, operator,
                                                                                scratch_pool, settings, celery_worker):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(7)])
    slug = scratch_pool.database
    url = f"/pools/{slug}/jobs/new/?action=reset&kind=state&bucket=error"
    form = hidden_form(operator_client.get(url).content.decode(), "http://testserver" + url)
    first = operator_client.post(f"/pools/{slug}/jobs/", dict_of(form.data()))
    assert first.status_code == 302
    from tests.test_job_web import wait_until_ended

    assert wait_until_ended(Job.objects.get().pk).changed == 7
    # The browser's Back button shows the cached preview: its button still says 7.
    again = operator_client.post(f"/pools/{slug}/jobs/", dict_of(form.data()))
    text = again.content.decode()
    assert again.status_code == 400
    assert "it was 7 tokens, it is 0 now. Nothing was run" in text
    assert "<strong>0</strong> tokens" in text and 'name="expected"' not in text  # no button for nothing
    assert Job.objects.count() == 1
    # The same in JSON and through the API: no job record for nothing.
    api = Api(openapi(), token_for(operator))
    nothing = api.post(f"/api/v1/pools/{slug}/jobs", {"action": "reset", "dry_run": False,
                                                      "selection": {"kind": "state", "bucket": "error"}})
    assert nothing.status_code == 400 and "nothing to do" in nothing.json()["detail"]
    assert Job.objects.count() == 1


def test_a_preview_whose_count_grew_is_shown_again_before_anything_runs(operator_client, scratch_pool, settings):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(3)])
    slug = scratch_pool.database
    url = f"/pools/{slug}/jobs/new/?action=reset&kind=state&bucket=error"
    form = hidden_form(operator_client.get(url).content.decode(), "http://testserver" + url)
    scratch_pool.bulk_docs([failed(n) for n in range(3, 5)])  # two more fail meanwhile
    refused = operator_client.post(f"/pools/{slug}/jobs/", dict_of(form.data()))
    assert refused.status_code == 400 and "it was 3 tokens, it is 5 now" in refused.content.decode()
    assert ("expected", "5") in hidden_form(refused.content.decode(), "http://testserver" + url).data()
    assert not Job.objects.exists()


def test_the_command_line_reads_a_host_selection_as_the_form_does(scratch_pool, settings, capsys):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(4)] + [failed(n, "wn-good") for n in range(4, 6)])
    slug = scratch_pool.database
    counting.refresh(get_pool(slug))
    call_command("tokens", "reset", "--pool", slug, "--host", HOST, "--state", "error", "--dry-run")
    assert '"count": 4' in capsys.readouterr().out


def test_a_rerun_link_and_the_action_tabs_carry_the_whole_selection(operator_client, scratch_pool, settings):
    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(2)])
    slug = scratch_pool.database
    counting.refresh(get_pool(slug))
    url = f"/pools/{slug}/jobs/new/?action=reset&kind=host&bucket=error&hostname={HOST}"
    _, links = read(operator_client.get(url).content.decode(), "http://testserver" + url)
    tabs = [dict(parse_qsl(link.split("?", 1)[1])) for link in links if "action=set_field" in link]
    assert tabs and tabs[0]["hostname"] == HOST and tabs[0]["kind"] == "host"
    job = Job.objects.create(pool=slug, action="reset", status=Job.FAILED, preview_count=2,
                             selection=Selection("host", bucket="error", hostname=HOST).as_dict())
    from tokens.operations import rerun_query

    again = operator_client.get(f"/pools/{slug}/jobs/new/?{rerun_query(job)}")
    assert again.status_code == 200 and "<strong>2</strong> tokens" in again.content.decode()


def test_the_tokens_an_earlier_job_changed_are_read_again_by_a_job_on_them(operator_client, scratch_pool, settings,
                                                                          celery_worker):
    from tests.test_job_web import wait_until_ended

    settings.JOB_FINISHED_GRACE_SECONDS = 0
    scratch_pool.bulk_docs([failed(n) for n in range(5)])
    slug = scratch_pool.database
    url = f"/pools/{slug}/jobs/new/?action=set_field&kind=state&bucket=error"
    form = hidden_form(operator_client.get(url).content.decode(), "http://testserver" + url)
    first = operator_client.post(f"/pools/{slug}/jobs/", {**dict_of(form.data()), "field": "x", "value": "1"})
    assert first.status_code == 302, first.content.decode()[:3000]
    earlier = wait_until_ended(Job.objects.get().pk)
    assert earlier.changed == 5
    url = f"/pools/{slug}/jobs/new/?action=reset&kind=job&job={earlier.pk}&outcome=changed"
    preview = operator_client.get(url)
    assert "<strong>5</strong> tokens" in preview.content.decode()
    form = hidden_form(preview.content.decode(), "http://testserver" + url)
    assert operator_client.post(f"/pools/{slug}/jobs/", dict_of(form.data())).status_code == 302
    job = wait_until_ended(Job.objects.latest("pk").pk)
    assert (job.total, job.changed) == (5, 5)


@pytest.mark.parametrize(("query", "kind"), [
    ("code=1&message=x", "failure"), ("hours=3", "stale"), ("state=error", "state"), ("bucket=todo", "state"),
    ("type=token&group=L1", "observation"), ("state=error&hostname=wn-1", "host"), ("ids=a&ids=b", "ids")])
def test_a_query_that_does_not_name_its_kind_is_read_as_the_kind_its_fields_name(query, kind):
    assert Selection.from_query(QueryDict(query)).kind == kind


def test_locked_tokens_by_state_may_be_listed_and_exported_but_not_acted_on():
    from tokens import exports, selections

    listed = selections.list_selection(QueryDict("state=locked"), {"own_views": True, "group_field": None})
    assert listed["bucket"] == "locked"
    assert exports.selection_from(QueryDict("state=locked"), True).bucket == "locked"
    with pytest.raises(OperationError, match="acted on by lock age"):
        Selection.from_query(QueryDict("state=locked")).refuse_to_act()
