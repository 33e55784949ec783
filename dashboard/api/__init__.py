"""The JSON API under /api/v1/, for scripts: one module per resource (pools, tokens, exports, jobs), each with
its schemas beside it; this one holds authentication, error answers and the URLs. Its OpenAPI schema is
generated from this code (/api/v1/openapi.json).

It calls the same functions as the pages (tokens.reading, tokens.operations, dashboard.payloads), with
stricter input checks than the pages: a page falls back to a default on a bad parameter, the API answers 4xx with
a message. Every error, its own or CouchDB's or an unexpected one, is JSON {"detail": ...} with its status.

Callers authenticate with `Authorization: Bearer <token>` (tokens are made on /account/) or the browser's session
(then CSRF applies to unsafe methods). Viewers read; operators also act, exactly as in the web UI.
"""

import logging
from functools import wraps

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from django.urls import URLPattern
from django.views.decorators.http import require_safe
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.security import HttpBearer
from ninja.security.apikey import APIKeyCookie
from ninja.utils import check_csrf

from dashboard import roles
from dashboard.api import alerts, exports, history, jobs, pools, retries, search, tokens, tokensets
from dashboard.models import ApiToken
from tokens.couch import CouchError
from tokens.selections import OperationError

log = logging.getLogger(__name__)


class BearerToken(HttpBearer):
    """A per-user API token. An unknown, revoked or expired one is refused outright (401), not passed on to the
    session. The request then acts for the token's owner within the token's limits (dashboard.roles.access)."""

    def authenticate(self, request, token):
        found = ApiToken.find(token) if token else None
        if found is None:
            raise AuthenticationError(message="Unknown, revoked or expired API token: make a new one on /account/")
        roles.act_as(request, found)
        return found.user


class Session(APIKeyCookie):
    """The browser's login session. Unlike ninja's SessionAuth, an anonymous caller gets 401, not a CSRF 403."""

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request):
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request, key):
        if not request.user.is_authenticated:
            return None
        if check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header with a session")
        return request.user


class QueryParser(Parser):
    """A query parameter given twice is refused (422), not read as its last value: `state=error&state=todo` must not
    quietly list only the todo tokens. Handing validation the list makes it fail where a single value is declared."""

    def parse_querydict(self, data, list_fields, request):
        return {key: data.getlist(key) if key in list_fields or len(data.getlist(key)) > 1 else data[key]
                for key in data}


class API(NinjaAPI):
    def get_openapi_operation_id(self, operation):
        return operation.view_func.__name__  # listPools-style ids, without the module path


api = API(
    title="PiCaS dashboard API",
    version="1",
    description="Pools, counts, tokens, failure groups, stale locks and jobs. Viewers read; operators act.",
    auth=[BearerToken(), Session()],
    parser=QueryParser(),
    docs_url=None,  # a docs page would load its scripts from a CDN: the site makes no external requests
    urls_namespace="api",
)

for resource in (pools, tokens, history, exports, jobs, alerts, retries, search, tokensets):
    api.add_router("", resource.router)


@api.exception_handler(CouchError)
def couch_error(request, exc):
    return api.create_response(request, {"detail": str(exc)}, status=exc.status)


@api.exception_handler(OperationError)
def operation_error(request, exc):
    return api.create_response(request, {"detail": str(exc)}, status=400)


@api.exception_handler(PermissionDenied)
def forbidden(request, exc):
    return api.create_response(request, {"detail": str(exc) or "Forbidden"}, status=403)


@api.exception_handler(Http404)
def not_found(request, exc):
    return api.create_response(request, {"detail": str(exc) or "Not found"}, status=404)


@api.exception_handler(ValidationError)
def invalid(request, exc):
    # ninja puts the body parameter's own name after "body" in every location: drop it
    locs = [tuple(e.get("loc", ())) for e in exc.errors]
    locs = [loc[:1] + loc[2:] if loc[:2] == ("body", "body") else loc for loc in locs]
    for e, loc in zip(exc.errors, locs, strict=True):
        e["loc"] = list(loc)
    where = [".".join(str(p) for p in loc) for loc in locs]
    first = exc.errors[0] if exc.errors else {}
    detail = f"Invalid {where[0]}: {first.get('msg', 'invalid value')}" if where else "Invalid request"
    listed = [{k: e[k] for k in ("loc", "msg", "type") if k in e} for e in exc.errors]
    return api.create_response(request, {"detail": detail, "errors": listed}, status=422)


@api.exception_handler(RequestDataTooBig)
def too_big(request, exc):
    return api.create_response(request, {"detail": f"The request is larger than the API takes "
                                          f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 2**20} MB): send a long list "
                                          "of SURLs as a file, with the web form or manage.py tokenset --list"},
                               status=413)


@api.exception_handler(Exception)
def unexpected(request, exc):
    log.exception("API %s %s failed", request.method, request.path)
    return api.create_response(request, {"detail": "Internal error; it has been logged."}, status=500)


def urls():
    """The API's URL patterns, each open to callers without a login session (the API answers 401 itself, where
    LoginRequiredMiddleware would redirect to the login page) and answering JSON where ninja would not."""
    patterns, app_name, namespace = api.urls
    def view(p):
        if p.name == "api-root":
            return unknown_path
        # ninja serves the schema to any method; reading it is all there is to do
        return _json_always(require_safe(p.callback) if p.name == "openapi-json" else p.callback)

    wrapped = [URLPattern(p.pattern, view(p), p.default_args, p.name) for p in patterns]
    return wrapped, app_name, namespace


def _json_always(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as e:
            return JsonResponse({"detail": str(e) if e.args else "Not found"}, status=404)
        if response.status_code == 405:
            allowed = response.get("Allow", "")
            response = JsonResponse({"detail": f"Method not allowed; use {allowed}"}, status=405)
            response["Allow"] = allowed
        return response

    wrapper.csrf_exempt = True  # the session auth checks CSRF itself, token callers need none
    return login_not_required(wrapper)


@login_not_required
def unknown_path(request, rest=""):
    return JsonResponse({"detail": f"No API endpoint at {request.path}; the API is described at "
                                   f"/api/v1/openapi.json"}, status=404)
