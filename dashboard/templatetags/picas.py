import json
from datetime import UTC, datetime

from django import template

from tokens.states import TIME_MIN

register = template.Library()


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def epoch(value):
    """A Unix time as an ISO date in UTC; anything else unchanged. Values below TIME_MIN are markers, not times
    (picas writes lock = done = 99 on an error it caught, GRID_LRT lock = 1): shown as they are."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= TIME_MIN:
        try:
            return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        except (OverflowError, OSError, ValueError):
            pass
    return value


@register.filter
def pretty_json(value):
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def hours(value):
    """Hours as '3 h 20 min' / '2 d 4 h'."""
    if value is None:
        return "–"
    minutes = int(round(value * 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} d {minutes % 1440 // 60} h"


@register.filter
def percent(ratio):
    """A share (0..1) as a whole percent; a share that is not zero never shows as 0% or 100%."""
    if ratio is None:
        return "–"
    shown = round(ratio * 100)
    if shown == 0 and ratio > 0:
        return "<1%"
    if shown == 100 and ratio < 1:
        return ">99%"
    return f"{shown}%"


@register.filter
def duration(seconds):
    """Seconds as '42 s' / '3 min 20 s' / '2 h 5 min' / '3 d 4 h'."""
    if seconds is None:
        return "–"
    if seconds < 0.5:  # picas stamps whole seconds: a run within one second shows as 0
        return "<1 s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return hours(seconds / 3600)


@register.filter
def make_list_words(value):
    """"a b c" -> ["a", "b", "c"], for looping over field names in a template."""
    return value.split()


@register.filter
def width_class(percent):
    """A share of a bar as a CSS class w1 ... w100 (site.css): the Content-Security-Policy forbids style attributes.

    Whole percents are fine enough for a bar; anything above zero gets at least w1 so that a handful of errors
    among many thousands of tokens still shows."""
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        return "w0"
    if percent <= 0:
        return "w0"
    return f"w{min(100, max(1, round(percent)))}"
