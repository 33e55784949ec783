"""The search: one box in every page's header, its answer across the pools the user may see (tokens.search)."""

from django.views.decorators.http import require_GET

from dashboard import payloads
from dashboard.web import respond
from tokens.couch import CouchError
from tokens.search import SearchError


@require_GET
def search(request):
    query = request.GET.get("q", "")
    context = {"query": query, "groups": [], "notes": [], "searched": False}
    if not query.strip():
        return respond(request, "search.html", context)  # the box alone, with what it finds
    try:
        context.update(payloads.search_page(request, query), searched=True)
    except SearchError as e:
        return respond(request, "search.html", {**context, "problem": str(e)}, status=400)
    except CouchError as e:
        return respond(request, "search.html", {**context, "problem": f"Could not search: {e}"}, status=e.status)
    return respond(request, "search.html", context)
