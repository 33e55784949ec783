"""The user's own page: API tokens for scripts, created and revoked here. A new token's secret is shown once."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.models import ApiToken
from dashboard.roles import is_operator
from dashboard.throttle import ThrottledLoginForm
from dashboard.web import respond, wants_json


def token_json(t):
    return {"id": t.pk, "name": t.name, "hint": t.hint, "created_at": t.created_at.isoformat(),
            "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None}


def page(request, status=200, **extra):
    tokens = ApiToken.objects.filter(user=request.user)
    context = {"tokens": tokens, "role": "operator" if is_operator(request.user) else "viewer", **extra}
    payload = {"user": request.user.username, "role": context["role"], "tokens": [token_json(t) for t in tokens]}
    return respond(request, "account.html", context, payload, status=status)


# A new token's secret waits in the session (stored on the server, never in a URL) for the one page view that
# shows it, and is gone from there once shown.
NEW_SECRET = "new_api_token"


@require_GET
def account(request):
    new = request.session.pop(NEW_SECRET, None)
    token = new and ApiToken.objects.filter(pk=new["id"], user=request.user).first()
    if not token:
        return page(request)
    response = page(request, new_token=token, secret=new["secret"])
    response["Cache-Control"] = "no-store"
    return response


@require_POST
def token_create(request):
    name = request.POST.get("name", "").strip()
    if not name or len(name) > 100:
        if wants_json(request):
            return JsonResponse({"error": "Name the token (up to 100 characters)"}, status=400)
        return page(request, status=400, problem="Name the token (up to 100 characters), e.g. the script using it.",
                    typed=request.POST.get("name", ""))
    token, secret = ApiToken.issue(request.user, name)
    if wants_json(request):
        return JsonResponse({**token_json(token), "secret": secret}, status=201)
    # Post/redirect/get: reloading the page that shows the secret makes no second token.
    request.session[NEW_SECRET] = {"id": token.pk, "secret": secret}
    return redirect("account")


@require_http_methods(["GET", "POST"])
def token_revoke(request, pk):
    """GET asks (scripts using the token will be refused from then on); POST revokes."""
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)  # someone else's token is not found
    if request.method == "GET":
        return respond(request, "account.html", {"confirm_revoke": token}, {"token": token_json(token)})
    token.revoke()
    if wants_json(request):
        return JsonResponse(token_json(token))
    return redirect("account")


_login = auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm)


@login_not_required
def login(request):
    """Django's login view with login throttling: a refused attempt answers 429 with Retry-After."""
    response = _login(request)
    form = getattr(response, "context_data", None) and response.context_data.get("form")
    if form is not None and form.retry_after:
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response
