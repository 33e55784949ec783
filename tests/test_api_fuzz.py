"""The JSON API fuzzed from its own OpenAPI schema (schemathesis, through the real site's WSGI application, against
the real CouchDB-compatible server and Celery worker): whatever a caller sends, no answer is a 5xx, and every answer
has a documented status, content type and a body that validates against the schema.

A viewer fuzzes every operation on the demo pools (the acting ones must refuse, so nothing is written there); an
operator fuzzes them on a scratch pool only, where the jobs it manages to create really run. Both check at the end that
the demo pools' documents still have the revisions they had before.

`API_FUZZ_EXAMPLES=500 pytest tests/test_api_fuzz.py` fuzzes deeper than the suite's bounded run.
"""

import os
import time

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.api_client import token_for
from tests.conftest import LOFAR, SURF, surf_token
from tests.test_job_web import errored
from tokens.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "30"))  # per operation and generation mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
# Not schemathesis's negative_data_rejection: its WSGI transport sends a generated object as a query parameter's
# text "{'k': 'v'}", which the API rightly takes as the string it is, so the check would blame a valid request.

UNDOCUMENTED_METHODS = ("put", "patch", "delete", "post", "get")


@pytest.fixture
def api_schema(pool_settings):
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", get_wsgi_application())


def revisions(db):
    """Every document of a database (design documents and deletions included) with its revision, and its seq."""
    results, _ = db.changes(0, limit=1_000_000)
    return {r["id"]: r["doc"]["_rev"] if r.get("doc") else r.get("deleted") for r in results}, \
        db.database_info()["update_seq"]


def strategy(operation, mode, pinned):
    """The operation's cases in one generation mode: with free path parameters, and with each set of real ones
    (`pinned`: {parameter: [values]}) that its path takes, so the fuzzing also reaches past the 404s."""
    names = {p.name for p in operation.path_parameters}
    strategies = [operation.as_strategy(generation_mode=mode)]
    combos = [{}]
    for name in sorted(names):
        combos = [{**c, name: v} for c in combos for v in pinned.get(name, [])]
    strategies += [operation.as_strategy(generation_mode=mode, path_parameters=c) for c in combos if c]
    if "job_bodies" in pinned and operation.method == "post" and operation.path.endswith("/jobs"):
        strategies.append(pinned["job_bodies"].flatmap(lambda body: operation.as_strategy(
            path_parameters={"slug": pinned["slug"][0]}, body=body)))
    return st.one_of(strategies)


def job_bodies(ids):
    """Job requests a generator rarely stumbles on: real selections, `dry_run: false`, any confirmation, any value."""
    selections = st.one_of(
        st.fixed_dictionaries({"kind": st.just("ids"), "ids": st.lists(st.sampled_from(ids) | st.text(), max_size=4)}),
        st.fixed_dictionaries({"kind": st.just("state"), "bucket": st.sampled_from(["error", "todo", "locked"])}),
        st.fixed_dictionaries({"kind": st.just("stale"), "hours": st.floats(0, 100)}),
    )
    params = st.fixed_dictionaries({}, optional={
        "field": st.sampled_from(["priority", "lock", "_id", ""]) | st.text(max_size=10),
        "value": st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                                                        allow_infinity=False)
                              | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
                              max_leaves=8),
        "delete_attachments": st.booleans(), "allow_state_fields": st.booleans()})
    return st.fixed_dictionaries({
        "action": st.sampled_from(["reset", "set_field", "delete"]), "selection": selections, "params": params,
        "dry_run": st.just(False), "confirm": st.none() | st.integers(0, 6)})


def fuzz(api_schema, headers, pinned):
    """Fuzz every operation in both generation modes; returns (cases sent, failure reports)."""
    sent, failures = [], []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                fuzzer(strategy(operation, mode, pinned), headers, sent)()
            except (Exception, BaseExceptionGroup) as e:  # fuzz every operation, then report all failures together
                failures.append(f"{operation.label} ({mode.value}): {e}")
    return len(sent), failures


def fuzzer(cases, headers, sent):
    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate, Phase.shrink], suppress_health_check=list(HealthCheck))
    def run(case):
        sent.append(case)
        case.call_and_validate(headers=headers, checks=CHECKS)

    return run


def undocumented_methods_are_refused(api_schema, headers):
    """Every path answers a method it does not document with a JSON 405 naming the allowed ones."""
    from werkzeug.test import Client

    client = Client(get_wsgi_application())
    problems = []
    for path, operations in api_schema.raw_schema["paths"].items():
        url = path.replace("{slug}", SURF).replace("{token_id}", "x").replace("{job_id}", "1")
        for method in UNDOCUMENTED_METHODS:
            if method in operations:
                continue
            response = client.open(url, method=method.upper(), headers=headers)
            body = response.get_json(silent=True) or {}
            if response.status_code != 405 or not isinstance(body.get("detail"), str):
                problems.append(f"{method.upper()} {url}: {response.status_code} {response.get_data()[:200]}")
    return problems


def test_a_viewer_fuzzing_every_operation_on_the_demo_pools_gets_no_5xx_and_writes_nothing(
        api_schema, viewer, demo_pools, couch, operator):
    from tests.api_client import Api, openapi

    pools = [couch(SURF), couch(LOFAR)]
    warm = Api(openapi(), token_for(viewer))
    for name in (SURF, LOFAR):  # the dashboard's own views are made on the first read: before taking the revisions
        assert warm.get(f"/api/v1/pools/{name}/tokens", {"state": "error"}).status_code == 200
    job = Job.objects.create(pool=SURF, user=operator, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=3, status=Job.SUCCEEDED)
    before = [revisions(db) for db in pools]
    ids = sorted(i for docs, _ in before for i in docs if not i.startswith("_"))
    pinned = {"slug": [SURF, LOFAR], "job_id": [job.pk], "token_id": ids[::len(ids) // 6][:6]}
    headers = {"Authorization": f"Bearer {token_for(viewer)}"}

    sent, failures = fuzz(api_schema, headers, pinned)
    failures += undocumented_methods_are_refused(api_schema, headers)

    assert not failures, "\n\n".join(failures)
    assert sent >= EXAMPLES * len(list(api_schema.get_all_operations()))
    assert [revisions(db) for db in pools] == before
    assert list(Job.objects.values_list("pk", flat=True)) == [job.pk]


def test_an_operator_fuzzing_every_operation_on_a_scratch_pool_gets_no_5xx_and_its_jobs_end(
        api_schema, operator, demo_pools, couch, scratch_pool, settings, celery_worker):
    settings.JOB_CONFIRM_THRESHOLD = 5  # a fuzzed job acts on a handful of tokens at most, unless it types the count
    scratch_pool.bulk_docs([errored(n) for n in range(8)] + [surf_token(n) for n in range(8, 16)]
                           + [surf_token(n, lock=1, hostname="wn") for n in range(16, 20)])
    demo = [couch(SURF), couch(LOFAR)]
    before = [revisions(db) for db in demo]
    slug = scratch_pool.database
    headers = {"Authorization": f"Bearer {token_for(operator)}"}
    job = Job.objects.create(pool=slug, user=operator, action="reset", selection={"kind": "state", "bucket": "error"},
                             preview_count=3, status=Job.SUCCEEDED)
    ids = [f"token_{n:05d}" for n in range(20)]
    pinned = {"slug": [slug], "job_id": [job.pk], "token_id": ["token_00001", "token_00017"],
              "job_bodies": job_bodies(ids)}

    sent, failures = fuzz(api_schema, headers, pinned)

    assert not failures, "\n\n".join(failures)
    assert sent >= EXAMPLES * len(list(api_schema.get_all_operations()))
    deadline = time.monotonic() + 60
    while Job.objects.filter(status__in=[Job.QUEUED, Job.RUNNING]).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs = list(Job.objects.exclude(pk=job.pk).values_list("pk", "action", "status", "message"))
    assert jobs, "the fuzzing never got a job created: it did not reach the acting code"
    assert all(status in (Job.SUCCEEDED, Job.CANCELLED) for _, _, status, _ in jobs), jobs
    assert [revisions(db) for db in demo] == before
