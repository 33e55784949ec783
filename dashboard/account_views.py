"""The user's own page: their roles, and API tokens for scripts, created and revoked here. A new token's secret is
shown once."""

import logging
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.forms import AuthenticationForm
from django.http import Http404
from django.shortcuts import redirect, render, resolve_url
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import roles, sso
from dashboard.models import ApiToken
from dashboard.throttle import ThrottledLoginForm
from dashboard.web import object_or_404, respond, visible_pools

log = logging.getLogger(__name__)
MAX_TOKEN_DAYS = 3650


def my_roles(request):
    """[(pool, role)] for every pool the user sees, in the pools' order."""
    mine = roles.user_access(request.user)
    return [(p, mine.role(p.slug)) for p in visible_pools(request)]


def page(request, status=200, **extra):
    tokens = ApiToken.objects.filter(user=request.user)
    pool_roles = my_roles(request)
    context = {"tokens": tokens, "pool_roles": pool_roles, "operates_any": roles.user_access(request.user).operates_any,
               "scopes": ApiToken.SCOPES, "max_days": MAX_TOKEN_DAYS, "form": {}, **extra}
    return respond(request, "account.html", context, status=status)


def token_limits(request):
    """(name, scope, pools, expires_at) from the form, or an OperationError-like message (ValueError)."""
    post = request.POST
    name = post.get("name", "").strip()
    if not name or len(name) > 100:
        raise ValueError("Name the token (up to 100 characters), e.g. the script using it.")
    scope = post.get("scope", ApiToken.READ)
    if scope not in dict(ApiToken.SCOPES):
        raise ValueError(f"Unknown scope {scope!r}: read or operate.")
    mine = roles.user_access(request.user)
    pools = post.getlist("pools")
    seen = [p.slug for p in visible_pools(request)]
    unknown = [s for s in pools if s not in seen]
    if unknown:
        raise ValueError(f"No such pool among those you may see: {', '.join(unknown)}.")
    if scope == ApiToken.OPERATE and not any(mine.can_operate(s) for s in pools or seen):
        raise ValueError("You operate none of these pools: a token can do no more than you, so make it read-only.")
    days = post.get("days", "").strip()
    expires_at = None
    if days:
        if not days.isdigit() or not 1 <= int(days) <= MAX_TOKEN_DAYS:
            raise ValueError(f"Expires after: a whole number of days from 1 to {MAX_TOKEN_DAYS}, or empty for never.")
        expires_at = timezone.now() + timedelta(days=int(days))
    return name, scope, pools, expires_at


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
    try:
        name, scope, pools, expires_at = token_limits(request)
    except ValueError as e:
        form = {"name": request.POST.get("name", ""), "scope": request.POST.get("scope", ""),
                "pools": request.POST.getlist("pools"), "days": request.POST.get("days", "")}
        return page(request, status=400, problem=str(e), form=form)  # what was typed is kept
    token, secret = ApiToken.issue(request.user, name, scope, pools, expires_at)
    # Post/redirect/get: reloading the page that shows the secret makes no second token.
    request.session[NEW_SECRET] = {"id": token.pk, "secret": secret}
    return redirect("account")


@require_http_methods(["GET", "POST"])
def token_revoke(request, pk):
    """GET asks (scripts using the token will be refused from then on); POST revokes."""
    # Someone else's token is not found.
    token = object_or_404(ApiToken.objects.filter(user=request.user), pk, f"No such API token of yours: {pk}.")
    if request.method == "GET":
        return respond(request, "account.html", {"confirm_revoke": token})
    token.revoke()
    return redirect("account")


# Django's login view. django-axes refuses a locked-out login: the form says why and AxesMiddleware answers 429
# with Retry-After (dashboard/throttle.py).
login = login_not_required(auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm))


# --- Signing in: local accounts (switchable) and single sign-on --------------------------------------------------

@login_not_required
def sign_in(request):
    """The login page: single sign-on when configured, and the local form unless LOCAL_LOGIN is off (then a
    password sent anyway is refused without being checked)."""
    if not settings.LOCAL_LOGIN and request.method == "POST":
        return render(request, "registration/login.html", {"problem": "Local accounts are switched off on this "
                      f"site: sign in with {settings.OIDC_PROVIDER_NAME}.", "next": _next(request)}, status=403)
    if not settings.LOCAL_LOGIN:
        return render(request, "registration/login.html", {"next": _next(request)})
    return login(request)


@login_not_required
def admin_login(request):
    """The admin's own login form, unless local accounts are off: then the site's (staff sign in by SSO too)."""
    if settings.LOCAL_LOGIN:
        return admin.site.login(request)
    return redirect(f"{reverse('login')}?{urlencode({'next': _next(request) or reverse('admin:index')})}")


def _next(request):
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    safe = url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure())
    return wanted if safe else ""


SSO_NEXT = "sso_next"


@login_not_required
@require_GET
def sso_start(request):
    if not sso.enabled():
        raise Http404("Single sign-on is not configured on this site.")
    request.session[SSO_NEXT] = _next(request)
    try:
        return sso.start(request, request.build_absolute_uri(reverse("sso_callback")))
    except sso.SsoError as e:
        return _sso_refused(request, e)


@login_not_required
@require_GET
def sso_callback(request):
    if not sso.enabled():
        raise Http404("Single sign-on is not configured on this site.")
    try:
        claims, token = sso.finish(request)
    except sso.SsoError as e:
        return _sso_refused(request, e)
    user = roles.sso_user(settings.OIDC_ISSUER, claims)
    if not user.is_active:
        return _sso_refused(request, "This account is switched off on this site: ask its administrator.")
    wanted = request.session.pop(SSO_NEXT, "")
    auth_login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    sso.remember(request.session, claims, token)  # after the login, which starts the session afresh
    log.info("single sign-on: user %s signed in with %d pool role(s) from the provider", user.pk,
             user.pool_roles.filter(from_sso=True).count())
    return redirect(wanted or settings.LOGIN_REDIRECT_URL)


@login_not_required
@require_POST
def log_out(request):
    """Log out here and, for a session signed in with the provider, there too (its end_session_endpoint), which
    sends the browser back to the login page."""
    held = request.session.get(sso.SESSION_KEY)
    auth_logout(request)
    back_to = request.build_absolute_uri(resolve_url(settings.LOGOUT_REDIRECT_URL))
    at_provider = sso.logout_url(held, back_to) if held and sso.enabled() else None
    return redirect(at_provider or back_to)


def _sso_refused(request, error):
    log.warning("single sign-on refused: %s", error)
    return render(request, "registration/login.html", {"problem": str(error), "form": AuthenticationForm(request)},
                  status=403)
