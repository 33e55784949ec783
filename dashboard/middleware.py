"""The site's own middleware: refusing NUL characters, and rechecking a single sign-on session with its provider."""

import logging
import time

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout

from dashboard import roles, sso

log = logging.getLogger(__name__)
class NulRefusalMiddleware:
    """A NUL character in any query value or form field is refused before a view sees it: no text the site keeps
    may hold one (PostgreSQL refuses it, CouchDB ids and most tools cut at it), and no person types one. The API
    refuses it in its own validation (422), field by field."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            for data in (request.GET, request.POST) if request.method == "POST" else (request.GET,):
                for name, values in data.lists():
                    if "\x00" in name or any("\x00" in v for v in values):
                        from dashboard.web import refuse

                        shown = name.replace("\x00", "\\0")[:60]
                        return refuse(request, None, "Refused", f"The field “{shown}” holds a NUL character, which "
                                                                "no text here may hold. Nothing was done.")
        return self.get_response(request)


class SsoRecheckMiddleware:
    """A session signed in with the provider asks it again who the person is every OIDC_RECHECK_MINUTES
    (dashboard/sso.py): the roles follow the groups the provider gives now, and a person the provider no longer
    vouches for is logged out, with the reason on the login page. A provider that cannot be asked leaves the
    session as it is and is asked again a minute later."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        held = request.session.get(sso.SESSION_KEY) if request.user.is_authenticated else None
        if held and sso.enabled() and sso.due(held):
            try:
                claims, held = sso.recheck(held)
            except sso.SsoEnded as e:
                log.info("single sign-on: user %s logged out: %s", request.user.pk, e)
                logout(request)
                messages.warning(request, str(e))
            except sso.SsoError as e:
                log.warning("single sign-on: could not recheck user %s, asking again in a minute: %s",
                            request.user.pk, e)
                held["checked_at"] = time.time() - settings.OIDC_RECHECK_MINUTES * 60 + 60
                request.session[sso.SESSION_KEY] = held
            else:
                user = roles.sso_user(settings.OIDC_ISSUER, claims)
                if user.pk != request.user.pk or not user.is_active:
                    logout(request)
                    messages.warning(request, "Your sign-in has ended: this account is switched off on this site.")
                else:
                    request.session[sso.SESSION_KEY] = held
        response = self.get_response(request)
        if sso.enabled():
            # "Log out" answers with a redirect to the provider's end_session_endpoint, which the browser checks
            # against the page's form-action: the provider's origin is allowed there (django-csp reads this).
            response._csp_update = {"form-action": sso.origins()}
        return response
