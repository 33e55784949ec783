"""Odd values of the grouping field: each is one observation with its own honest label, and its page, lists,
exports, API and jobs select exactly its tokens, never another observation's."""

import csv
import html
import io
import re
import time
from urllib.parse import unquote

import pytest

from tests.api_client import api_as
from tests.conftest import surf_token
from tokens import counting, operations, selections
from tokens.models import JobToken
from tokens.pools import all_pools
from tokens.selections import Selection

pytestmark = pytest.mark.django_db

NOW = int(time.time())
# OBSID values and the group the views key them by (String(value); absent and null: no group).
ODD_OBSIDS = {"empty": ("", ""), "null": (None, None), "number": (229585, "229585"), "one_point_o": (1.0, "1"),
              "true": (True, "true"), "list": (["L1", "L2"], "L1,L2"), "object": ({"id": 1}, "[object Object]"),
              "huge": (12345678901234567890, "12345678901234567000"), "text": ("L229585", "L229585")}


def failed(n, key, obsid):
    fields = {} if key == "absent" else {"OBSID": obsid}
    return surf_token(n, _id=f"t_{key}_{n}", lock=NOW - 4000, done=NOW - 3600, exit_code=1,
                      error=[{"time": NOW - 3600, "message": "boom"}], **fields)


@pytest.fixture
def odd_pool(scratch_pool, settings):
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    docs = [failed(n, key, obsid) for key, (obsid, _group) in ODD_OBSIDS.items() for n in range(2)]
    docs += [failed(n, "absent", None) for n in range(10, 13)]  # with null: the tokens without an OBSID
    scratch_pool.bulk_docs(docs)
    return scratch_pool


def expected():
    """{group: the ids of its tokens}."""
    groups = {}
    for key, (_obsid, group) in [*ODD_OBSIDS.items(), ("absent", (None, None))]:
        groups.setdefault(group, set()).update(
            {f"t_{key}_{n}" for n in (range(10, 13) if key == "absent" else range(2))})
    return groups


def test_each_odd_value_is_one_observation_with_a_label_of_its_own(viewer_client, odd_pool):
    data = api_as(viewer_client).get(f"/api/v1/pools/{odd_pool.database}").json()
    observations = {o["group"]: o for o in data["observations"]}
    assert {g: o["total"] for g, o in observations.items()} == {g: len(ids) for g, ids in expected().items()}
    labels = [o["label"] for o in observations.values()]
    assert len(set(labels)) == len(labels) and all(label.strip() for label in labels)
    # (the scratch pool has two token types, so each label names its type too)
    assert observations[None]["label"] == "(no OBSID) · token"
    assert observations[""]["label"] == "(OBSID is empty) · token"


def test_each_observations_list_page_export_and_api_hold_exactly_its_tokens(viewer_client, odd_pool):
    slug = odd_pool.database
    api = api_as(viewer_client)
    for group, ids in expected().items():
        where = {"type": "token", **({} if group is None else {"group": group})}
        listed = viewer_client.get(f"/pools/{slug}/tokens/", {**where, "state": "error"})
        assert listed.status_code == 200, group
        shown = {unquote(html.unescape(i)) for i in re.findall(r'href="/pools/[^/]+/token/\?id=([^"]+)"',
                                                      listed.content.decode())}
        assert shown == ids, group
        page = viewer_client.get(f"/pools/{slug}/obs/", where)
        assert page.status_code == 200, group
        observation = api.get(f"/api/v1/pools/{slug}/observation", where)
        assert observation.status_code == 200 and observation.json()["total"] == len(ids), group
        exported = viewer_client.get(f"/pools/{slug}/export/", {**where, "kind": "observation", "format": "csv",
                                                                "fields": "_id"})
        rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
        assert {r["_id"] for r in rows} == ids, group
        answer = api.get(f"/api/v1/pools/{slug}/tokens", {**where, "state": "error"}).json()
        assert {t["id"] for t in answer["tokens"]} == ids, group


def test_a_job_on_an_odd_observation_changes_exactly_its_tokens(odd_pool):
    pool = all_pools()[0]
    counting.refresh(pool)
    for group, ids in expected().items():
        selection = Selection("observation", type="token", group=group)
        assert selections.preview(pool, selection)["count"] == len(ids), group
        job = operations.run_job(operations.create_job(pool, None, "reset", selection, {}).pk)
        changed = set(JobToken.objects.filter(job=job, outcome="changed").values_list("token_id", flat=True))
        assert changed == ids and job.skipped == 0, (group, job.message)
