"""What every page and the API share: a page or its htmx partial, a pool or a 404, CouchDB trouble as a page or an
error object with its status, the snapshot's metadata. The view modules import this; it imports no view."""

from functools import wraps

from csp.constants import NONE
from csp.decorators import csp, csp_update
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils.http import content_disposition_header

from dashboard import roles
from tokens import actions, counting, exports, operations
from tokens.couch import CouchError
from tokens.pools import all_pools, get_pool
from tokens.selections import MAX_JOB
from tokens.states import BUCKET_HELP, BUCKET_LABELS, BUCKETS, STAGE_LABELS

JSON_IS_THE_APIS = ("Pages answer HTML only. The same data as JSON is in the API under /api/v1/ (its schema: "
                    "/api/v1/openapi.json; the README lists each page's address there), with your session or "
                    "an API token made on /account/.")


def respond(request, template, context, status=200):
    """A page, or the partial an htmx request targets. One JSON surface: the API's, made by the same functions
    (dashboard.payloads) with a schema, versioned, fuzzed and open to API tokens; a page asked for JSON
    (`?format=json`, which pages answered before the API had every page's data) says where it is, rather than answer
    HTML that a script would misread."""
    if request.GET.get("format") == "json":
        return JsonResponse({"error": JSON_IS_THE_APIS}, status=406)
    return HttpResponse(partial_or_page(request, template).render(context, request), status=status)


def partial_or_page(request, template):
    """The partial an htmx request targets when the page defines one of that name; otherwise the whole page
    (the target comes from the request: an unknown one is not the server's error)."""
    target = request.htmx.target if request.htmx and not request.htmx.boosted else None
    if target:
        try:
            return get_template(f"{template}#{target}")
        except (TemplateDoesNotExist, ValueError):
            pass
    return get_template(template)


def start(job):
    """Queue a recorded job and show its page (the job forms' last step; the API answers the job itself)."""
    operations.enqueue(job)
    return redirect("job", job.pk)


def refuse(request, pool, title, problem):
    """Input that a page cannot answer as asked (an unknown state, hours that are not a number): a 400 naming the
    problem, never a guess that shows something else. The API refuses the same input (422, its validation)."""
    return respond(request, "problem.html", {"pool": pool, "title": title, "problem": problem}, status=400)


def couch_error(request, pool, error, template="error.html"):
    """A CouchDB failure as a page with a banner, with the matching status."""
    return respond(request, template, {"pool": pool, "error": str(error)}, status=error.status)


def pool_or_404(request, slug, operate=False):
    """The pool, if this request may see it: otherwise it does not exist for them (404), whether or not it exists.
    With `operate`, a viewer of the pool is refused (403)."""
    missing = f"No such pool among those you may see: “{slug}”."
    roles.require(request, slug, operate, missing)
    pool = get_pool(slug)
    if pool is None:
        raise Http404(missing)
    return pool


def object_or_404(queryset, pk, missing):
    """The object of this primary key, or the site's 404 saying `missing` (never Django's "No X matches the given
    query."); a key larger than any database holds is missing too, not an overflow."""
    found = queryset.filter(pk=pk).first() if 0 < pk <= MAX_JOB else None
    if found is None:
        raise Http404(missing)
    return found


def visible_pools(request):
    """Every pool this request may see, in the usual order."""
    return roles.access(request).visible(all_pools())


def snapshot_or_error(request, pool):
    """The pool's snapshot; (None, response) when there are no counts to show at all."""
    snap = counting.snapshot(pool)
    if snap.data is None:
        return None, couch_error(request, pool, SnapshotError(snap))
    return snap, None


def counted(view):
    """A pool page's view, called with the pool (a 404 where this request may not see it) and its counts; the
    CouchDB problem's page instead, while there are no counts to show."""

    @wraps(view)
    def with_counts(request, slug):
        pool = pool_or_404(request, slug)
        snap, error = snapshot_or_error(request, pool)
        return error or view(request, pool, snap)

    return with_counts


class SnapshotError(CouchError):
    def __init__(self, snap):
        super().__init__(snap.error or "no counts yet")
        self.status = snap.error_status or 503


def snapshot_meta(snap):
    return {
        "counts_age_seconds": round(snap.age(), 1),
        "counts_taken_at": snap.taken_at.isoformat(),
        "error": snap.error or None,
        "error_at": snap.error_at.isoformat() if snap.error_at else None,
        # While the server builds a new index: which views wait for it, and how far it is (CouchDB 3 says).
        "indexing": (snap.data or {}).get("indexing"),
    }


def status_of(snap):
    """A page whose latest refresh failed still shows the older counts, but says so with its status."""
    return (snap.error_status or 503) if snap.error else 200


def labels():
    return {"bucket_labels": BUCKET_LABELS, "bucket_help": BUCKET_HELP, "buckets": BUCKETS,
            "stage_labels": STAGE_LABELS, "token_actions": actions.labels(actions.TOKEN_ACTIONS)}


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
