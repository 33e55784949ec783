"""Exports in the web UI: one GET endpoint that streams any token list as CSV or JSON lines.

Viewers and operators alike may export (it reads only). Everything that can be wrong with the request, and a
server that does not answer, is found before the first byte is sent, so it gets a 4xx/5xx page;
what goes wrong later can only end the file with an "incomplete" line. Without `format` the URL is the export
form for its selection (the pool page links there, as its rows are redrawn by polling).
"""

from django.views.decorators.http import require_GET

from dashboard.web import couch_error, counted, download, refuse, respond
from tokens import exports
from tokens.couch import CouchError


@require_GET
@counted
def export(request, pool, snap):
    try:
        if "format" not in request.GET:
            return form(request, pool, exports.selection_from(request.GET, snap.data["own_views"]))
        made = exports.open_export(pool, snap.data, request.GET)
    except exports.ExportError as e:
        try:  # the form again, with the problem and what was chosen, when the list itself can be exported
            selection = exports.selection_from(request.GET, snap.data["own_views"])
        except exports.ExportError:
            return refuse(request, pool, "Export", str(e))
        return form(request, pool, selection, problem=str(e))
    except CouchError as e:
        return couch_error(request, pool, e)
    return download(made)


def form(request, pool, selection, problem=None):
    """The export form of a list; after a refusal (`problem`), with the fields and format that were chosen."""
    q = request.GET
    return respond(request, "export.html", {
        "pool": pool, "selection": selection, "description": selection.describe(),
        "q": q.get("q", ""), "field": q.get("field", ""), "value": q.get("value", ""),
        "computed": exports.COMPUTED.items(), "problem": problem,
        "chosen": q.getlist("fields") if problem else None, "chosen_format": q.get("format", ""),
    }, status=400 if problem else 200)
