"""Charts of tokens done and failed per hour, drawn as SVG from tokens with known `done` times."""

import re
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.api_client import api_as
from tests.conftest import surf_token
from tests.waiting import wait_for
from tokens import counting, history, reading
from tokens.models import CountSnapshot
from tokens.pools import get_pool

pytestmark = pytest.mark.django_db

SVG = "{http://www.w3.org/2000/svg}"
LRT = "pref_cal1_L229585"


def lrt_token(n, **fields):
    return {"_id": f"lrt_{n:05d}", "type": LRT, "lock": 0, "done": 0, "status": "todo", "output": 0,
            "scrub_count": 0, **fields}


def finished_tokens():
    """SURF and GRID_LRT tokens finished at known times over the last days, and some that no chart counts."""
    now = int(time.time())
    hour = now // 3600 * 3600
    docs, n = [], 0

    def at(hours_ago, minute):
        return min(now - 1, hour - hours_ago * 3600 + minute * 60)

    for hours_ago, done, failed in [(0, 2, 1), (1, 4, 0), (5, 1, 3), (23, 7, 2), (47, 3, 0), (60, 0, 1)]:
        for i in range(done):
            t = at(hours_ago, 3 + 7 * i)
            docs.append(surf_token(n, lock=t - 600, done=t, exit_code=0, hostname="wn1"))
            n += 1
        for i in range(failed):
            t = at(hours_ago, 5 + 11 * i)
            docs.append(surf_token(n, lock=t - 600, done=t, exit_code=1, hostname="wn1"))
            n += 1
    docs.append(surf_token(n, lock=now - 100 * 3600, done=now - 99 * 3600, exit_code=0))  # before the chart
    docs.append(surf_token(n + 1, lock=now - 60, done=0))  # locked, not finished
    docs.append(surf_token(n + 2))  # todo
    lrt = [lrt_token(1, lock=at(2, 10) - 60, done=at(2, 10), status="done"),
           lrt_token(2, lock=at(2, 20) - 60, done=at(2, 20), status="done"),
           lrt_token(3, lock=at(30, 0) - 60, done=at(30, 0), status="error", output=21)]
    return docs, lrt


def per_hour(docs, bucket, hours=72, step=3600):
    """The truth: {"YYYY-mm-ddTHH:00Z": n} for tokens of `bucket` finished in the chart's `hours` (72: the default
    3 days), per hour or (step 86400) per day."""
    first_hour = int(time.time()) // step * step + step - hours * 3600
    counts = {}
    for d in docs:
        if not d["done"] or d["done"] < first_hour:
            continue
        failed = d.get("exit_code") != 0 if d["type"] == "token" else d["status"] == "error"
        if (bucket == "error") != failed:
            continue
        key = time.strftime("%Y-%m-%dT%H:00Z", time.gmtime(d["done"] // step * step))
        counts[key] = counts.get(key, 0) + 1
    return counts


def words(docs):
    return f"{sum(per_hour(docs, 'done').values())} done and {sum(per_hour(docs, 'error').values())} failed"


def pool_api(client, slug, **query):
    """The pool page's figures, from its API twin."""
    response = api_as(client).get(f"/api/v1/pools/{slug}", query)
    assert response.status_code == 200, response.content
    return response.json()


def observation_api(client, slug, **query):
    """An observation page's figures, from its API twin."""
    response = api_as(client).get(f"/api/v1/pools/{slug}/observation", query)
    assert response.status_code == 200, response.content
    return response.json()


def svg_charts(html):
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", html, re.S)]


def bars(svg, series):
    panel = next(g for g in svg.iter(SVG + "g") if g.get("data-series") == series)
    peak, height = int(panel.get("data-peak")), float(panel.get("data-height"))
    return peak, height, panel.findall(SVG + "rect")


def assert_bars_match(svg, truth):
    for series in ("done", "error"):
        expected = truth[series]
        peak, height, rects = bars(svg, series)
        assert len(rects) == len(expected)  # a bar per hour (or day) with tokens in the period; none for empty ones
        assert peak == max(expected.values(), default=0)
        shown = {r.get("data-hour"): int(r.get("data-count")) for r in rects}
        assert shown == expected
        for r in rects:
            n = int(r.get("data-count"))
            assert float(r.get("height")) == pytest.approx(n * height / peak, abs=0.01)
            # Every bar says what it is in words (a tooltip), colour aside.
            assert r.find(SVG + "title").text.endswith(f": {n} {'done' if series == 'done' else 'failed'}")


@pytest.fixture
def finished_pool(scratch_pool, settings):
    from tests.conftest import index_own_views

    settings.CHART_DAYS = 3
    docs, lrt = finished_tokens()
    scratch_pool.bulk_docs(docs + lrt)
    # Settled, as a pool is after its first minutes: a pool still being indexed has no past read yet (its charts
    # wait for it; tests of their own), and on a busy machine a view of 30 tokens can take longer than a page waits.
    index_own_views(scratch_pool, "")
    # and its past read from its tokens (a refresh that finds an index slow to answer on a busy machine leaves that
    # to a later one)
    pool = get_pool(scratch_pool.database)
    wait_for(lambda: counting.refresh(pool) and CountSnapshot.objects.filter(pool=pool.slug, backfilled=True).exists(),
             what="the pool's past read from its tokens")
    return scratch_pool, docs, lrt


def test_the_pool_chart_has_a_bar_per_hour_as_high_as_the_tokens_done_in_it(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    html = viewer_client.get(f"/pools/{db.database}/").content.decode()
    chart = next(s for s in svg_charts(html) if "hourly" in s.get("class"))
    assert_bars_match(chart, {"done": per_hour(docs + lrt, "done"), "error": per_hour(docs + lrt, "error")})
    assert chart.get("role") == "img" and chart.find(SVG + "desc").text.startswith(words(docs + lrt))
    # The axis names the hours.
    ticks = [t.text for t in chart.iter(SVG + "text") if "tick" in (t.get("class") or "")]
    assert "06:00" in ticks and "12:00" in ticks and "18:00" in ticks


def test_an_observation_page_charts_only_its_own_tokens(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    response = viewer_client.get(f"/pools/{db.database}/obs/", {"type": LRT})
    assert response.status_code == 200
    chart = svg_charts(response.content.decode())[0]
    assert_bars_match(chart, {"done": per_hour(lrt, "done"), "error": per_hour(lrt, "error")})
    data = observation_api(viewer_client, db.database, type=LRT)
    assert sum(data["hourly"]["done"]) == 2 and sum(data["hourly"]["error_counts"]) == 1
    assert data["counts"]["done"] == 2 and data["counts"]["error"] == 1


def test_the_chart_shows_24_hours_or_7_days_per_hour_and_30_days_per_day_from_the_events(viewer_client,
                                                                                         finished_pool):
    db, docs, lrt = finished_pool
    url = f"/pools/{db.database}/"
    for period, hours, step in (("24h", 24, 3600), ("7d", 168, 3600), ("30d", 720, 86400)):
        html = viewer_client.get(url, {"period": period}).content.decode()
        chart = next(s for s in svg_charts(html) if "hourly" in s.get("class"))
        truth = {b: per_hour(docs + lrt, b, hours, step) for b in ("done", "error")}
        assert_bars_match(chart, truth)
        unit = "hour" if step == 3600 else "day"
        period_words = "24 hours" if hours == 24 else f"{hours // 24} days"
        assert f"Done, failed and locked per {unit}, the last {period_words}" in html
        assert f'aria-current="page">{"24 hours" if hours == 24 else f"{hours // 24} days"}<' in html
        hourly = pool_api(viewer_client, db.database, period=period)["hourly"]
        assert len(hourly["hour_starts"]) == hours * 3600 // step and hourly["step_seconds"] == step
    # The token finished 99 hours ago is in 7 days, not in the default 3: the two periods differ by it alone.
    week = pool_api(viewer_client, db.database, period="7d")["hourly"]
    default = pool_api(viewer_client, db.database)["hourly"]
    assert default["period"] == "3d" and sum(week["done"]) == sum(default["done"]) + 1
    # The page offers every period, and its sparklines stay on the default.
    html = viewer_client.get(url, {"period": "30d"}).content.decode()
    for period in ("24h", "3d", "7d"):
        assert f"?period={period}#chart" in html
    assert "<th>Last 3 days</th>" in html

    def sparks(page):
        return sorted(svg.find(SVG + "title").text for svg in svg_charts(page) if svg.get("class") == "spark")
    assert sparks(html) == sparks(viewer_client.get(url).content.decode())


def test_a_period_starts_at_its_first_hour_or_utc_midnight_and_counts_nothing_before(viewer_client, scratch_pool):
    now = int(time.time())
    midnight = now // 86400 * 86400
    edges = {"inside 7 days": now - 167 * 3600, "outside 7 days": now - 169 * 3600,
             "inside 30 days": midnight - 29 * 86400 + 60, "outside 30 days": midnight - 29 * 86400 - 60}
    scratch_pool.bulk_docs([surf_token(n, _id=name.replace(" ", "_"), lock=t - 60, done=t, exit_code=0)
                            for n, (name, t) in enumerate(edges.items())])
    week = pool_api(viewer_client, scratch_pool.database, period="7d")["hourly"]
    month = pool_api(viewer_client, scratch_pool.database, period="30d")["hourly"]
    assert sum(week["done"]) == 1 and week["done"][0] == 1  # the first hour of the week holds it
    assert sum(month["done"]) == 3 and month["done"][0] == 1  # the first day: after midnight 29 days ago
    assert month["hour_starts"][0] == midnight - 29 * 86400 and month["hours"][0].endswith(
        time.strftime("%d %b", time.gmtime(midnight - 29 * 86400)))


def test_a_failed_read_of_the_feed_is_said_over_every_period(viewer_client, finished_pool):
    from tokens.models import PoolHistory

    db, docs, lrt = finished_pool
    viewer_client.get(f"/pools/{db.database}/")
    PoolHistory.objects.filter(pool=db.database).update(error="CouchDB did not answer within 10 s")
    for period in ("3d", "7d"):
        html = viewer_client.get(f"/pools/{db.database}/", {"period": period}).content.decode()
        assert "The chart could not be brought up to date (CouchDB did not answer within 10 s)" in html


def test_an_observations_chart_over_another_period_counts_only_its_own_tokens(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    response = viewer_client.get(f"/pools/{db.database}/obs/", {"type": LRT, "period": "24h"})
    chart = svg_charts(response.content.decode())[0]
    assert_bars_match(chart, {b: per_hour(lrt, b, 24) for b in ("done", "error")})
    # The period links keep the observation.
    assert f"?type={LRT}&amp;period=7d#chart" in response.content.decode()


def test_the_charts_numbers_download_as_csv_for_the_period_shown(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    response = viewer_client.get(f"/pools/{db.database}/", {"period": "30d", "format": "csv"})
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="{db.database}-history-30d.csv"' in response["Content-Disposition"]
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert lines[0] == "day_start_utc,done,failed,running_at_most" and len(lines) == 31
    rows = [line.split(",") for line in lines[1:]]
    shown = {day: (int(d), int(e)) for day, d, e, _r in rows if d != "0" or e != "0"}
    assert [int(r) for *_, r in rows][-1] == 1  # today: the one token locked (sampled with the counts)
    truth = {b: per_hour(docs + lrt, b, 720, 86400) for b in ("done", "error")}
    assert shown == {k.replace(":00Z", ":00:00Z"): (truth["done"].get(k, 0), truth["error"].get(k, 0))
                     for k in {*truth["done"], *truth["error"]}}
    html = viewer_client.get(f"/pools/{db.database}/", {"period": "30d"}).content.decode()
    assert "?period=30d&amp;format=csv" in html
    per_obs = viewer_client.get(f"/pools/{db.database}/obs/", {"type": LRT, "format": "csv"})
    assert f'filename="{db.database}-{LRT}-history-3d.csv"' in per_obs["Content-Disposition"]
    assert len(b"".join(per_obs.streaming_content).decode().splitlines()) == 1 + 72  # the default period, hourly


def test_an_unknown_period_is_refused_with_the_periods_there_are(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    for url, params in ((f"/pools/{db.database}/", {}), (f"/pools/{db.database}/obs/", {"type": LRT})):
        response = viewer_client.get(url, {**params, "period": "1y"})
        assert response.status_code == 400
        assert "Unknown chart period &#x27;1y&#x27;: one of 24h, 3d, 7d, 30d" in response.content.decode()
    # The pages' API twins refuse it alike.
    for url, params in ((f"/api/v1/pools/{db.database}", {}), (f"/api/v1/pools/{db.database}/observation",
                                                                {"type": LRT})):
        response = api_as(viewer_client).get(url, {**params, "period": "1y"})
        assert response.status_code == 400
        assert response.json()["detail"] == "Unknown chart period '1y': one of 24h, 3d, 7d, 30d"
    # No period: the default.
    html = viewer_client.get(f"/pools/{db.database}/", {"period": ""}).content.decode()
    assert "Done, failed and locked per hour, the last 3 days" in html
    hourly = pool_api(viewer_client, db.database, period="")["hourly"]
    assert hourly["period"] == "3d" and len(hourly["hour_starts"]) == 72


def test_each_observation_row_has_a_sparkline_that_says_its_numbers(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    html = viewer_client.get(f"/pools/{db.database}/").content.decode()
    sparks = {svg.find(SVG + "title").text.split(" in the last")[0] for svg in svg_charts(html)
              if svg.get("class") == "spark"}
    assert sparks == {words(docs), words(lrt)}


def test_the_observation_page_shows_counts_eta_and_links_to_its_lists(viewer_client, finished_pool):
    db, docs, lrt = finished_pool
    html = viewer_client.get(f"/pools/{db.database}/obs/", {"type": "token"}).content.decode()
    assert f"/pools/{db.database}/tokens/?type=token&amp;state=done" in html
    assert f"/pools/{db.database}/failures/?type=token" in html
    observation = next(o for o in reading.observations(counting.snapshot(get_pool(db.database)).data)
                       if o.type == "token")
    data = observation_api(viewer_client, db.database, type="token")
    assert data["eta_hours"] == observation.eta_hours and data["counts"] == observation.counts


def test_an_unknown_observation_is_a_404_with_a_message(viewer_client, finished_pool):
    db, _docs, _lrt = finished_pool
    response = viewer_client.get(f"/pools/{db.database}/obs/", {"type": "nope"})
    assert response.status_code == 404 and "No such observation in this pool" in response.content.decode()
    response = viewer_client.get(f"/pools/{db.database}/obs/")
    assert response.status_code == 404 and "Which observation? Give its type" in response.content.decode()
    # Its API twin: the same 404 with its message; no type at all is a malformed request there.
    api = api_as(viewer_client)
    response = api.get(f"/api/v1/pools/{db.database}/observation", {"type": "nope"})
    assert response.status_code == 404 and response.json()["detail"] == "No such observation in this pool"
    assert api.get(f"/api/v1/pools/{db.database}/observation").status_code == 422


def test_pages_read_the_stored_history_until_it_is_recomputed(viewer_client, finished_pool, settings):
    db, docs, lrt = finished_pool
    settings.CHART_MAX_AGE = 3600
    before = observation_api(viewer_client, db.database, type="token")["hourly"]
    t = int(time.time()) - 5
    db.bulk_docs([surf_token(900, lock=t - 60, done=t, exit_code=0)])
    counting.refresh(get_pool(db.database))
    assert observation_api(viewer_client, db.database, type="token")["hourly"] == before
    history.refresh(get_pool(db.database))
    after = observation_api(viewer_client, db.database, type="token")["hourly"]
    assert sum(after["done"]) == sum(before["done"]) + 1


def test_a_pages_first_chart_is_drawn_from_the_events_recorded_without_reading_the_server_again(
        viewer_client, finished_pool, settings):
    db, docs, lrt = finished_pool
    settings.COUNTS_MAX_AGE = 3600
    pool = get_pool(db.database)
    counting.refresh(pool)
    taken = CountSnapshot.objects.get(pool=db.database).taken_at
    t = int(time.time()) - 5
    db.bulk_docs([surf_token(902, lock=t - 60, done=t, exit_code=0)])  # not yet in the changes feed read
    hourly = observation_api(viewer_client, db.database, type="token")["hourly"]
    # The counts are as taken (their age rule says when they are read again), and the chart agrees with them.
    assert CountSnapshot.objects.get(pool=db.database).taken_at == taken
    assert sum(hourly["done"]) == sum(per_hour([d for d in docs if d["type"] == "token"], "done").values())
    # The background recomputation catches up with the feed first.
    history.catch_up(pool)
    again = observation_api(viewer_client, db.database, type="token")["hourly"]
    assert sum(again["done"]) == sum(hourly["done"]) + 1


def test_a_pool_without_own_views_has_no_chart_but_a_page(viewer_client, scratch_pool, settings):
    settings.COUCHDB_CREATE_VIEWS = False
    t = int(time.time())
    scratch_pool.bulk_docs([surf_token(1, lock=t - 60, done=t, exit_code=0)])
    response = viewer_client.get(f"/pools/{scratch_pool.database}/")
    assert response.status_code == 200 and not svg_charts(response.content.decode())
    assert pool_api(viewer_client, scratch_pool.database)["hourly"] is None
    page = viewer_client.get(f"/pools/{scratch_pool.database}/obs/", {"type": "token"})
    assert page.status_code == 200 and "own design document" in page.content.decode()


def test_anonymous_users_are_sent_to_log_in_from_an_observation(client, finished_pool):
    response = client.get(f"/pools/{finished_pool[0].database}/obs/", {"type": "token"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.django_db(transaction=True)
def test_an_old_history_is_shown_and_recomputed_by_the_worker(viewer_client, finished_pool, settings, celery_worker):
    from tests.waiting import wait_for
    from tokens.models import PoolHistory

    db, docs, lrt = finished_pool
    before = observation_api(viewer_client, db.database, type="token")["hourly"]
    t = int(time.time()) - 5
    db.bulk_docs([surf_token(901, lock=t - 60, done=t, exit_code=0)])
    computed = PoolHistory.objects.get(pool=db.database).computed_at
    settings.CHART_MAX_AGE = 0
    # The page answers with the history it has (its bars: the figures read before), and queues its recomputation ...
    response = viewer_client.get(f"/pools/{db.database}/obs/", {"type": "token"})
    assert response.status_code == 200
    _peak, _height, rects = bars(svg_charts(response.content.decode())[0], "done")
    assert sum(int(r.get("data-count")) for r in rects) == sum(before["done"])
    # ... which the worker carries out.
    assert wait_for(lambda: PoolHistory.objects.get(pool=db.database).computed_at > computed)
    after = observation_api(viewer_client, db.database, type="token")["hourly"]
    assert sum(after["done"]) == sum(before["done"]) + 1


@pytest.mark.django_db(transaction=True)
def test_in_a_browser_each_bar_says_the_value_the_history_api_gives_at_a_desktop_and_a_phone(
        live_server, finished_pool, open_page):
    from dashboard.roles import VIEWERS
    from tests.browsing import WIDTHS, log_in, overflow, shoot
    from tests.conftest import make_user

    db, _docs, _lrt = finished_pool
    make_user("victor", VIEWERS)
    for width in WIDTHS:
        page = open_page(width)
        log_in(page, live_server.url, "victor")
        page.goto(f"{live_server.url}/pools/{db.database}/?period=24h")
        chart = page.locator("figure.chart").first
        shown = {}
        for series in ("done", "error", "running"):
            for rect in chart.locator(f"g[data-series={series}] rect.col").all():
                shown[(rect.get_attribute("data-hour"), series)] = int(rect.get_attribute("data-count"))
                # What a hover shows: the hour and the value, in words.
                assert rect.locator("title").text_content().endswith(
                    f": {rect.get_attribute('data-count')} " + {"done": "done", "error": "failed",
                                                                "running": "locked (held by a pilot) at most"}[series])
        api = page.request.get(f"{live_server.url}/api/v1/pools/{db.database}/history", params={"bucket": "hour"})
        periods = api.json()["periods"]
        expected = {(p["start"][:13] + ":00Z", s): p[s] for p in periods for s in ("done", "error", "running") if p[s]}
        assert shown == expected and len(shown) >= 4
        assert page.locator("details.numbers table tbody tr").count() == len({h for h, _s in shown})
        counts = page.request.get(f"{live_server.url}/api/v1/pools/{db.database}").json()
        summary = page.locator("figure.progress figcaption").inner_text()
        assert summary.startswith(f"{counts['counts']['done']} of {counts['total']} done; ")
        assert overflow(page) <= 1
        shoot(page, f"pool-charts-{width}")


def test_the_history_api_takes_any_iso_offset_and_refuses_times_outside_the_calendar(viewer_client, demo_pools):
    """Found by the fuzzer on PostgreSQL, which refuses offsets beyond 15:59 that ISO 8601 and Python allow: times
    are taken to UTC before the database is asked."""
    from tests.conftest import SURF

    far = viewer_client.get(f"/api/v1/pools/{SURF}/history", {"since": "0021-02-11T19:00:00+21:52",
                                                              "until": "0021-02-12T19:00:00+21:52"})
    assert far.status_code == 200 and far.json()["since"].startswith("0021-02-10T21:08:00")
    assert sum(p["done"] + p["error"] for p in far.json()["periods"]) == 0
    edge = viewer_client.get(f"/api/v1/pools/{SURF}/history", {"since": "0001-01-01T00:00:00+01:00"})
    assert edge.status_code == 400 and "between the years 1 and 9999" in edge.json()["detail"]


def test_the_axis_labels_stay_inside_the_chart_and_apart_when_the_newest_hour_begins_a_day(open_page):
    """Found at midnight by CI: the newest bar's label ("06 Dec"), centred under it, reached past the chart's right
    edge and was cut. Every period's chart ending at the first hour (or day) of a Monday, measured in Chromium."""
    from django.template.loader import render_to_string

    from dashboard.charts import hourly_chart
    from tests.browsing import WIDTHS

    css = (Path(__file__).resolve().parent.parent / "static" / "css" / "site.css").read_text()
    monday = 1797206400  # Mon 14 Dec 2026 00:00 UTC
    assert time.gmtime(monday).tm_wday == 0 and monday % 86400 == 0
    for hours, step in ((24, 3600), (72, 3600), (168, 3600), (30, 86400)):
        stamps = [monday - (hours - 1 - i) * step for i in range(hours)]
        series = {"start": stamps[0], "step": step, "hours": stamps, "done": [1] * hours, "error": [0] * hours,
                  "running": [0] * hours}
        html = render_to_string("_chart.html", {"chart": hourly_chart(series, "c"), "period_links": [],
                                                "csv_href": "#"})
        for width in WIDTHS:
            page = open_page(width)
            page.set_content(f"<!doctype html><style>{css}</style><main>{html}</main>")
            outside = page.evaluate("""() => {
                const box = document.querySelector('figure.chart svg').getBoundingClientRect();
                return [...document.querySelectorAll('text.tick')]
                    .map(t => [t.textContent, t.getBoundingClientRect()])
                    .filter(([, r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5)
                    .map(([text]) => text); }""")
            assert outside == [], (hours, step, width)
            overlapping = page.evaluate("""() => {
                const boxes = [...document.querySelectorAll('text.tick')].map(t => t.getBoundingClientRect());
                return boxes.slice(1).filter((b, i) => b.left < boxes[i].right).length; }""")
            assert overlapping == 0, (hours, step, width)
            assert page.locator("text.tick").last.text_content() == "14 Dec"


def test_the_charts_mark_each_job_and_alert_with_who_what_and_how_many(viewer_client, finished_pool, operator):
    from django.utils import timezone

    from tokens.models import Alert, Job

    db, _docs, _lrt = finished_pool
    an_hour_ago = timezone.now() - timezone.timedelta(hours=1)
    by_hand = Job.objects.create(pool=db.database, user=operator, action="reset", status=Job.SUCCEEDED,
                                 selection={"kind": "state", "bucket": "error"}, preview_count=5, changed=5,
                                 started_at=an_hour_ago, finished_at=an_hour_ago)
    by_rule = Job.objects.create(pool=db.database, via="rule", action="reset", status=Job.SUCCEEDED,
                                 params={"rule": "downloads"}, selection={"kind": "retry", "code": "21", "hours": 0.1},
                                 preview_count=3, changed=3, started_at=timezone.now(), finished_at=timezone.now())
    Alert.objects.create(pool=db.database, kind="given_up", status=Alert.FIRING, fired_at=timezone.now(),
                         summary="2 failed tokens used all their attempts")
    html = viewer_client.get(f"/pools/{db.database}/").content.decode()
    chart = next(s for s in svg_charts(html) if "hourly" in s.get("class"))
    marks = [g for g in chart.iter(SVG + "g") if "mark" in (g.get("class") or "").split()]
    said = [g.find(SVG + "title").text for g in marks]
    assert len(marks) == 3
    assert said[0].endswith(f"job {by_hand.pk}: Reset / retry by {operator.username}, 5 changed of 5")
    assert any(f"job {by_rule.pk}: Reset / retry by rule “downloads”, 3 reset, 0 left" in s for s in said)
    assert any("alert: 2 failed tokens used all their attempts" in s for s in said)
    assert f'<a href="/jobs/{by_hand.pk}/">job {by_hand.pk}: Reset / retry by {operator.username}' in html  # listed
    progress = next(s for s in svg_charts(html) if s.find(SVG + "title").text.startswith("Tokens done in total"))
    assert [g.find(SVG + "title").text for g in progress.iter(SVG + "g")
            if "mark" in (g.get("class") or "").split()] == said  # the same marks on the progress chart
    hourly = api_as(viewer_client).get(f"/api/v1/pools/{db.database}").json()["hourly"]
    assert sorted(a["kind"] for a in hourly["annotations"]) == ["alert", "job", "job"]
    assert {a["job"] for a in hourly["annotations"]} >= {by_hand.pk, by_rule.pk}
