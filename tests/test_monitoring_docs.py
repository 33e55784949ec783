"""The Prometheus alert rules and the Grafana dashboard in docs/ use only what /metrics serves."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from tests.test_metrics import metrics_on, scrape  # noqa: F401 - metrics_on is a fixture
from tokens.models import Job

pytestmark = pytest.mark.django_db
DOCS = Path(__file__).resolve().parent.parent / "docs"


def served(client):
    """Every sample name /metrics serves (a counter's _total, a histogram's _bucket, _sum and _count included), with
    an ended job so that the job families have samples."""
    now = timezone.now()
    Job.objects.create(pool="any", action="reset", selection={}, preview_count=1, status=Job.FAILED,
                       started_at=now - timedelta(seconds=5), finished_at=now)
    return {s.name for family in scrape(client).values() for s in family.samples} | set(scrape(client))


def named_in(expr):
    return set(re.findall(r"\bpicas_[a-z_]+", expr))


def test_every_metric_the_alert_rules_name_is_served(client, metrics_on, demo_pools):  # noqa: F811
    rules = yaml.safe_load((DOCS / "prometheus/picas-alerts.yml").read_text())["groups"][0]["rules"]
    names = set().union(*(named_in(r["expr"]) for r in rules))
    assert names and names <= served(client), names - served(client)
    assert all(r["annotations"]["summary"] for r in rules)


def test_every_metric_the_grafana_dashboard_names_is_served(client, metrics_on, demo_pools):  # noqa: F811
    board = json.loads((DOCS / "grafana/picas-dashboard.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    exprs += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    names = set().union(*(named_in(e) for e in exprs))
    assert len(names) >= 8 and names <= served(client), names - served(client)
