"""Charts drawn on the server as SVG: the geometry here, the markup in templates/_chart.html (auto-escaped).

A chart of tokens per hour (or per day, over 30 days) has three rows of bars, done, errors and running, each
scaled to its own peak and labelled with it: the rows, the labels, a hatch pattern on the error bars, a <title> per
bar and a text summary tell them apart without colour. A sparkline puts done bars above a middle line and error
bars below it.
"""

from datetime import UTC, datetime

from dashboard.templatetags.picas import hours as hours_words
from tokens.history import DAY, HOUR

PLOT = 576  # width of a chart's bars, whatever their number: 72 hours (the default 3 days) of 8 px each
PANEL = 60  # height of one row of bars
LEFT, TOP, ROW_GAP, AXIS = 64, 8, 26, 30
TICK_HALF_LABEL = 20  # half the width of an axis label ("06 Dec", bold 10 px) and some air
SPARK_BAR, SPARK_HALF = 2, 11
SPARK_HOURS = 6  # hours per sparkline bar


def _utc(epoch):
    return datetime.fromtimestamp(epoch, UTC)


def hour_label(epoch):
    return _utc(epoch).strftime("%a %d %b %H:00 UTC")


def day_label(epoch):
    return _utc(epoch).strftime("%a %d %b")


def daily(series):
    return series.get("step", HOUR) == DAY


def start_label(series, epoch):
    """How the hour or day a bar stands for is named on pages and in JSON."""
    return day_label(epoch) if daily(series) else hour_label(epoch)


def period_label(series):
    """"the last 24 hours", "the last 3 days": the span of a series, as a page says it."""
    hours = len(series["hours"]) * (24 if daily(series) else 1)
    if hours == 24 or hours % 24:
        return f"the last {hours} hours"
    return f"the last {hours // 24} days"


def summary(series):
    done, errors = sum(series["done"]), sum(series["error"])
    text = f"{done} done and {errors} failed in {period_label(series)}"
    if max(series.get("running") or [0]):
        text += f", at most {max(series['running'])} locked (held by pilots) at once"
    if done:
        peak = max(range(len(series["done"])), key=lambda i: series["done"][i])
        unit = "day" if daily(series) else "hour"
        text += f"; at most {series['done'][peak]} done per {unit} ({start_label(series, series['hours'][peak])})"
    return text + "."


def hourly_chart(series, chart_id, marks=()):
    """The geometry of a two-row bar chart of one series of hours or days (see tokens.history.series and
    period_series): the bars share PLOT pixels, so that 24 hours and 7 days make charts of one size. `marks`
    (tokens.history.annotations): a numbered line at each job's start and alert's firing."""
    n = len(series["hours"])
    by_day = daily(series)
    bar = PLOT / n if n else PLOT
    gap = 1 if bar >= 4 else bar / 4  # a visible gap between bars, however thin
    width = LEFT + PLOT + 8
    panels = []
    rows = (("done", "done", "done"), ("error", "errors", "failed"),
            ("running", "locked", "locked (held by a pilot) at most"))
    for row, (name, label, said) in enumerate(rows):
        counts = series.get(name) or [0] * n
        peak = max(counts, default=0)
        top = TOP + row * (PANEL + ROW_GAP)
        bars = []
        for i, (hour, count) in enumerate(zip(series["hours"], counts, strict=True)):
            height = round(count * PANEL / peak, 2) if peak else 0
            bars.append({
                "x": round(LEFT + i * bar, 2), "y": round(top + PANEL - height, 2), "width": round(bar - gap, 2),
                "height": height, "count": count, "hour": _utc(hour).strftime("%Y-%m-%dT%H:00Z"),
                "title": f"{start_label(series, hour)}: {count} {said}",
            })
        panels.append({"series": name, "label": label, "peak": peak, "top": top, "base": top + PANEL,
                       "height": PANEL, "mid": top + PANEL // 2, "bars": bars})
    axis_y = TOP + len(rows) * PANEL + (len(rows) - 1) * ROW_GAP + 14
    ticks = []
    for i, hour in enumerate(series["hours"]):
        t = _utc(hour)
        x = round(LEFT + i * bar, 2)
        # A label ("05 Nov") needs some 40 px: six-hourly ticks up to 4 days of hours, daily ones up to 10 days,
        # weekly ones (Mondays) beyond, whether the bars are hours or days.
        if by_day or n > 240:
            if t.weekday() == 0 and t.hour == 0:
                ticks.append({"x": x, "text": t.strftime("%d %b"), "day": True})
        elif t.hour == 0 or (t.hour % 6 == 0 and n <= 96):
            ticks.append({"x": x, "text": t.strftime("%d %b") if t.hour == 0 else t.strftime("%H:00"),
                          "day": t.hour == 0})
    for tick in ticks:
        # Centred under its tick, a label on the newest bars (the day's first hour, just after midnight) would
        # reach past the chart's right edge and be cut: it ends at that edge instead.
        end = tick["x"] + TICK_HALF_LABEL > width
        tick["anchor"], tick["text_x"] = ("end", width - 1) if end else ("middle", tick["x"])
    first, span = (series["hours"][0], series["step"] * n) if n else (0, 0)
    numbered = []
    for number, mark in enumerate(marks, start=1):
        offset = mark["at"].timestamp() - first
        if 0 <= offset < span:
            numbered.append({**mark, "number": number, "x": round(LEFT + offset / span * PLOT, 2),
                             "when": mark["at"].strftime("%Y-%m-%d %H:%M")})
    return {
        "marks": numbered, "marks_bottom": axis_y - 12,
        "id": chart_id, "width": width, "height": axis_y + AXIS - 12, "left": LEFT, "right": LEFT + PLOT,
        "axis_y": axis_y, "panels": panels, "ticks": ticks, "unit": "day" if by_day else "hour",
        "unit_short": "day" if by_day else "h", "period": period_label(series), "summary": summary(series),
        # The table under the chart (newest first; the periods with something in them).
        "rows": [{"label": start_label(series, h), "done": d, "error": e, "running": r}
                 for h, d, e, r in zip(series["hours"], series["done"], series["error"],
                                       series.get("running") or [0] * n, strict=True) if d or e or r][::-1],
    }


def sparkline(series):
    """A small chart for a table row: done up from the middle line, errors down from it, one bar per SPARK_HOURS
    hours (a page holds a sparkline per observation: hourly bars made a 50-row pool page 60 KB heavier)."""
    n = len(series["hours"])
    width = SPARK_BAR * SPARK_HOURS
    paths = {}
    for name in ("done", "error"):
        counts = [sum(series[name][i:i + SPARK_HOURS]) for i in range(0, n, SPARK_HOURS)]
        peak = max(counts, default=0)
        parts = []
        for i, count in enumerate(counts):
            if count:
                h = max(1, round(count * SPARK_HALF / peak))
                # One path of small rectangles keeps a page of many rows light (no element per bar).
                parts.append(f"M{i * width} {SPARK_HALF}v{-h if name == 'done' else h}h{width - 1}"
                             f"v{h if name == 'done' else -h}z")
        paths[name] = "".join(parts)
    return {"width": n * SPARK_BAR, "height": 2 * SPARK_HALF, "mid": SPARK_HALF, "done": paths["done"],
            "error": paths["error"], "summary": summary(series)}


PROGRESS_H = 120  # height of the progress chart's plot
MARKS = 24  # at most this many points with a hover value (page weight)


def progress_chart(series, done_now, total, eta_hours, eta_basis, chart_id, events=()):
    """Tokens done in total over the period (the done now, less what was done in each later hour or day), the
    pool's total as a line above, and the way to it projected at the ETA's rate: dashed, to where it meets the total
    within a quarter of the period more, else to the chart's edge with the ETA said in words. `events`: the hourly
    chart's numbered marks (jobs and alerts), drawn here at their times too."""
    n = len(series["hours"])
    if not n or not total:
        return None
    step = series.get("step", HOUR)
    before = max(0, done_now - sum(series["done"]))
    cumulative, running_total = [], before
    for d in series["done"]:
        running_total += d
        cumulative.append(running_total)
    room = n // 4 or 1  # the projection's share of the width, in periods
    slot = PLOT / (n + room)

    def x(i):
        return round(LEFT + (i + 1) * slot, 2)

    def y(v):
        return round(TOP + PROGRESS_H - PROGRESS_H * min(v, total) / total, 2)

    points = " ".join(f"{x(i)},{y(v)}" for i, v in enumerate(cumulative))
    every = max(1, n // MARKS)
    marks = [{"x": x(i), "y": y(v), "title": f"{start_label(series, series['hours'][i])}: {v} of {total} done"}
             for i, v in enumerate(cumulative) if i % every == 0 or i == n - 1]
    projection = None
    if eta_hours:
        periods = eta_hours * HOUR / step
        end_i = n - 1 + min(periods, room)
        reached = periods <= room
        end_v = total if reached else done_now + (total - done_now) * room / periods
        projection = {"x1": x(n - 1), "y1": y(done_now), "x2": x(end_i), "y2": y(end_v), "reached": reached}
    if eta_basis == "complete" or done_now >= total:
        words = f"all {total} tokens finished"
    elif eta_hours is None:
        words = f"{done_now} of {total} done; {eta_basis}: no projection"
    else:
        words = (f"{done_now} of {total} done; at the {'last hour' if eta_basis == 'last hour' else 'last 24 hours'}"
                 f"'s rate the rest takes {hours_words(eta_hours)}"
                 + ("" if projection and projection["reached"] else " (beyond the chart)"))
    first = series["hours"][0]
    events = [{**e, "x": round(LEFT + (e["at"].timestamp() - first) / step * slot, 2)} for e in events]
    return {"events": events, "id": chart_id, "width": LEFT + PLOT + 8, "height": TOP + PROGRESS_H + 30, "left": LEFT,
            "right": LEFT + PLOT, "top": TOP, "base": TOP + PROGRESS_H, "total_y": y(total), "total": total,
            "points": points, "marks": marks, "projection": projection, "now_x": x(n - 1), "summary": words,
            "start_label": start_label(series, series["hours"][0])}

