"""{% export_form %}: the small GET form that exports the list a page shows (fields, format)."""

from django import template

from tokens import exports

register = template.Library()

# Offered unticked next to the default set; any other field is typed by name.
MORE = ("observation", "lock_age_hours", "job_id", "lock", "done", "input", "error", "_rev")


@register.inclusion_tag("_export.html", takes_context=True)
def export_form(context, open=False, chosen=None, chosen_format="", **selection):
    """`selection`: the list's query parameters (kind, state, code, message, type, group, hours, q, field, value);
    empty ones are left out, as the list pages read an empty value as no value. `chosen`: the fields sent by a
    refused export (ticked again, the typed ones back in their box), with its `chosen_format`."""
    pool = context["pool"]
    group_field = getattr(pool, "group_field", "")
    more = [n for n in ((group_field,) if group_field else ()) + MORE if n not in exports.DEFAULT_FIELDS]
    offered = list(exports.DEFAULT_FIELDS) + [n for n in dict.fromkeys(more)]
    return {
        "pool": pool,
        "open": open,
        "params": [(k, v) for k, v in selection.items() if v not in (None, "")],
        "choices": [(n, exports.COMPUTED.get(n, ""), n in chosen if chosen is not None
                     else n in exports.DEFAULT_FIELDS) for n in offered],
        "typed": ",".join(f for f in chosen if f not in offered) if chosen else "",
        "format": chosen_format,
    }
