"""The dashboard's numbers for Prometheus (`/metrics`).

A scrape must cost no more than a page: token counts come from the pools' count snapshots (whose refresh a scrape
asks for in the background, as a page does), stale locks from one key-range count per pool, jobs from Django's
database. The families are built with prometheus_client's metric types, which also escape label values.
"""

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import CollectorRegistry

from tokens import counting, operations, reading
from tokens.couch import CouchError
from tokens.models import Alert, Job
from tokens.pools import all_pools
from tokens.states import BUCKETS, OWN_DDOC, UNKNOWN_LOCKS, stale_locks_range

# Upper bounds (seconds) of the job duration histogram's buckets: a reset of a few tokens to a day-long token set.
DURATION_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def lock_counts(pool, hours):
    """(locks older than `hours`, locks of unknown age): two reduced range counts of the `locks` view."""
    couch = pool.couch()
    stale_range = stale_locks_range(time.time() - hours * 3600)
    stale = couch.view(OWN_DDOC, "locks", start_key=stale_range[0], end_key=stale_range[1])["rows"] if stale_range \
        else []
    unknown = couch.view(OWN_DDOC, "locks", start_key=UNKNOWN_LOCKS[0], end_key=UNKNOWN_LOCKS[1])["rows"]
    return (stale[0]["value"] if stale else 0), (unknown[0]["value"] if unknown else 0)


def pool_families(pools):
    tokens = GaugeMetricFamily("picas_tokens", "Tokens per observation and state, from the latest count snapshot "
                               "(a pool without the dashboard's own views: per worker design document, which may "
                               "overlap)", labels=["pool", "type", "group", "state"])
    pool_tokens = GaugeMetricFamily("picas_pool_tokens", "Tokens per pool and state", labels=["pool", "state"])
    done = CounterMetricFamily("picas_tokens_done", "Tokens done per pool (falls when done tokens are reset or "
                               "deleted, which Prometheus reads as a counter reset)", labels=["pool"])
    stale = GaugeMetricFamily("picas_stale_locks", f"Tokens locked longer than STALE_LOCK_HOURS "
                              f"({settings.STALE_LOCK_HOURS:g} h)", labels=["pool"])
    unknown = GaugeMetricFamily("picas_locks_unknown_age", "Locked tokens whose lock is not a time", labels=["pool"])
    up = GaugeMetricFamily("picas_couchdb_up", "1 if the pool's CouchDB answered this scrape's request",
                           labels=["pool"])
    refresh_ok = GaugeMetricFamily("picas_counts_refresh_ok", "1 if the latest refresh of the counts succeeded",
                                   labels=["pool"])
    age = GaugeMetricFamily("picas_counts_age_seconds", "Age of the counts served", labels=["pool"])
    alerting = GaugeMetricFamily("picas_alerts_firing", "The dashboard's own alert rules firing now",
                                 labels=["pool"])
    firing = dict(Alert.objects.filter(status=Alert.FIRING).values_list("pool").annotate(n=Count("id")).order_by())
    for pool in pools:
        snap = counting.snapshot(pool)
        data = snap.data
        refresh_ok.add_metric([pool.slug], 0 if snap.error else 1)
        alerting.add_metric([pool.slug], firing.get(pool.slug, 0))
        if data is not None:
            age.add_metric([pool.slug], round(snap.age(), 3))
            for o in reading.observations(data):
                for bucket in BUCKETS:
                    tokens.add_metric([pool.slug, o.type, "" if o.group is None else o.group, bucket],
                                      o.counts[bucket])
            totals = reading.pool_totals(data)
            for bucket in BUCKETS:
                pool_tokens.add_metric([pool.slug, bucket], totals[bucket])
            done.add_metric([pool.slug], totals["done"])
        try:
            if data is not None and data["own_views"]:
                n_stale, n_unknown = lock_counts(pool, settings.STALE_LOCK_HOURS)
                stale.add_metric([pool.slug], n_stale)
                unknown.add_metric([pool.slug], n_unknown)
            else:
                pool.couch().database_info()
        except CouchError:
            up.add_metric([pool.slug], 0)
        else:
            up.add_metric([pool.slug], 1)
    return [tokens, pool_tokens, done, stale, unknown, up, refresh_ok, age, alerting]


def job_families(slugs):
    operations.mark_interrupted()  # as the jobs pages do: a silent running job counts as interrupted
    ended = CounterMetricFamily("picas_jobs_ended", "Jobs that ended, by action and outcome",
                                labels=["action", "outcome"])
    active = GaugeMetricFamily("picas_jobs_active", "Jobs queued or running", labels=["action", "status"])
    jobs = Job.objects.all() if slugs is None else Job.objects.filter(pool__in=slugs)
    for row in jobs.values("action", "status").annotate(n=Count("id")).order_by("action", "status"):
        if row["status"] in Job.ENDED:
            ended.add_metric([row["action"], row["status"]], row["n"])
        else:
            active.add_metric([row["action"], row["status"]], row["n"])

    durations = HistogramMetricFamily("picas_job_duration_seconds", "Time from start to end of ended jobs",
                                      labels=["action"])
    took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    per_bound = {f"le_{i}": Count("id", filter=Q(took__lte=timedelta(seconds=b)))
                 for i, b in enumerate(DURATION_BUCKETS)}
    rows = (jobs.filter(status__in=Job.ENDED, started_at__isnull=False, finished_at__isnull=False)
            .annotate(took=took).values("action").annotate(n=Count("id"), total=Sum("took"), **per_bound)
            .order_by("action"))
    for row in rows:
        buckets = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(DURATION_BUCKETS)]
        buckets.append(("+Inf", row["n"]))
        durations.add_metric([row["action"]], buckets, sum_value=row["total"].total_seconds() if row["total"] else 0)
    return [ended, active, durations]


class _Collector:
    def __init__(self, pools, every_pool):
        self.pools, self.every_pool = pools, every_pool

    def collect(self):
        yield from pool_families(self.pools)
        yield from job_families(None if self.every_pool else {p.slug for p in self.pools})


def registry(pools=None):
    """A registry holding only the dashboard's metrics, collected afresh on every scrape: of every pool, or of
    `pools` only (and of the jobs on them)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(all_pools() if pools is None else pools, pools is None))
    return reg
