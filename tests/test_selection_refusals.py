"""A selection that can match nothing by construction is refused alike by the web lists, the API, the exports,
the job previews and the CLI: a token type named without its group in a pool grouped by a field."""

import pytest
from django.core.management import CommandError, call_command

from tests.api_client import Api, api_as, openapi, token_for
from tests.test_job_web import errored
from tokens import counting
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db

MESSAGE = "Every token of type &#x27;token&#x27; has a OBSID: name the group too (group L1, L2)"


@pytest.fixture
def grouped_pool(scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    scratch_pool.bulk_docs([{**errored(n), "OBSID": f"L{1 + n % 2}"} for n in range(6)])
    counting.refresh(get_pool(scratch_pool.database))
    return scratch_pool


def test_a_type_without_its_group_is_refused_everywhere_with_the_groups_to_choose(grouped_pool, operator_client,
                                                                                  operator):
    slug = grouped_pool.database
    text = MESSAGE.replace("&#x27;", "'")
    page = operator_client.get(f"/pools/{slug}/tokens/", {"state": "error", "type": "token"})
    assert page.status_code == 400 and MESSAGE in page.content.decode()
    api = Api(openapi(), token_for(operator))
    listed = api.get(f"/api/v1/pools/{slug}/tokens", {"state": "error", "type": "token"})
    assert listed.status_code == 400 and listed.json()["detail"] == text
    export = operator_client.get(f"/pools/{slug}/export/", {"state": "error", "type": "token", "format": "csv"})
    assert export.status_code == 400 and MESSAGE in export.content.decode()
    preview = operator_client.get(f"/pools/{slug}/jobs/new/", {"action": "reset", "kind": "state", "bucket": "error",
                                                              "type": "token"})
    assert preview.status_code == 400 and MESSAGE in preview.content.decode()
    dry = api.post(f"/api/v1/pools/{slug}/jobs", {"action": "reset", "selection": {
        "kind": "state", "bucket": "error", "type": "token"}})
    assert dry.status_code == 400 and dry.json()["detail"] == text
    job = api.post(f"/api/v1/pools/{slug}/jobs", {"action": "reset", "selection": {
        "kind": "observation", "type": "token"}})
    assert job.status_code == 400 and job.json()["detail"] == text
    with pytest.raises(CommandError, match="name the group too"):
        call_command("tokens", "reset", "--pool", slug, "--state", "error", "--type", "token", "--dry-run")
    # With the group, all of them select its tokens.
    listed = api.get(f"/api/v1/pools/{slug}/tokens", {"state": "error", "type": "token", "group": "L1"})
    assert listed.status_code == 200 and len(listed.json()["tokens"]) == 3
    page = operator_client.get(f"/pools/{slug}/tokens/", {"state": "error", "type": "token", "group": "L1"})
    assert page.status_code == 200 and page.content.decode().count("?id=token_") == 3


def test_a_type_with_tokens_of_no_group_selects_those_and_an_empty_match_says_so(grouped_pool, operator_client,
                                                                                 capsys):
    slug = grouped_pool.database
    grouped_pool.bulk_docs([errored(10)])  # no OBSID: the observation "(no OBSID)"
    counting.refresh(get_pool(slug))
    listed = api_as(operator_client).get(f"/api/v1/pools/{slug}/tokens", {"state": "error", "type": "token"})
    assert [t["id"] for t in listed.json()["tokens"]] == ["token_00010"]
    call_command("tokens", "reset", "--pool", slug, "--state", "error", "--type", "token", "--dry-run")
    assert '"count": 1' in capsys.readouterr().out
    # A group that has no token left is a selection that can match: it matches nothing, and says so.
    page = operator_client.get(f"/pools/{slug}/tokens/", {"state": "todo", "type": "token", "group": "L1"})
    assert page.status_code == 200 and "No tokens" in page.content.decode()
