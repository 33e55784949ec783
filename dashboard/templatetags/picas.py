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
