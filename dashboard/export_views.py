"""Exports in the web UI: one GET endpoint that streams any token list as CSV or JSON lines.

Viewers and operators alike may export (it reads only). Everything that can be wrong with the request, and a
server that does not answer, is found before the first byte is sent, so it gets a 4xx/5xx page or JSON object;
what goes wrong later can only end the file with an "incomplete" line. Without `format` the URL is the export
form for its selection (the pool page links there, as its rows are redrawn by polling).
"""

from csp.constants import NONE
from csp.decorators import csp, csp_update
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from dashboard.web import couch_error, pool_or_404, refuse, respond, snapshot_or_error, wants_json
from tokens import exports
from tokens.couch import CouchError


@require_GET
def export(request, slug):
    pool = pool_or_404(request, slug)
    snap, error = snapshot_or_error(request, pool)
    if error:
        return error
    try:
        if "format" not in request.GET and not wants_json(request):
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


def download(made):
    """An opened export as a streamed file (the web UI's and the API's)."""
    return streamed_file(made.chunks(), made.content_type, made.filename)


def csv_download(filename, header, rows):
    """Plain rows as a streamed CSV file (a job's list of tokens, a chart's numbers, the hosts)."""
    return streamed_file(exports.csv_chunks(header, rows), "text/csv; charset=utf-8", filename)


def download_csp(view):
    """Whatever a file passed on from a pool holds, it never runs as part of the site: its policy allows nothing and
    sandboxes it. Every file the site sends is made by streamed_file (exports, CSV downloads, the API's export) or is
    an attachment (views.attachment).

    The sandbox comes as an update: django-csp 4.0 writes the directives of one dict in an order that changes from
    process to process, and an update's after them, so the header always reads `default-src 'none'; sandbox`."""
    return csp({"default-src": [NONE]})(csp_update({"sandbox": True})(view))


@download_csp
def streamed_file(chunks, content_type, filename):
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


def form(request, pool, selection, problem=None):
    """The export form of a list; after a refusal (`problem`), with the fields and format that were chosen."""
    q = request.GET
    return respond(request, "export.html", {
        "pool": pool, "selection": selection, "description": selection.describe(),
        "q": q.get("q", ""), "field": q.get("field", ""), "value": q.get("value", ""),
        "computed": exports.COMPUTED.items(), "problem": problem,
        "chosen": q.getlist("fields") if problem else None, "chosen_format": q.get("format", ""),
    }, {"error": problem} if problem else {}, status=400 if problem else 200)
