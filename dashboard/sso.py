"""The OpenID Connect provider (SRAM, EGI Check-in, eduTEAMS...), through Authlib: the only module that talks to it.

Authlib does the flow (state, nonce, PKCE, the code exchange) and checks the ID token (signature against the
provider's keys, issuer, audience, expiry, nonce). This module adds what the OpenID Connect discovery spec asks of
the client and Authlib leaves to it: that the provider says it is the issuer the site was configured with. Every
failure is an SsoError whose message is safe to show (it names no secret) and says what to do.

A session signed in here keeps what the provider gave (`remember`): its ID token, for logging out at the provider
too (RP-initiated logout, `logout_url`), and its access token, with which the provider is asked again who the person
is every OIDC_RECHECK_MINUTES (`recheck`, called by dashboard.middleware.SsoRecheckMiddleware). The provider's
configuration and keys are kept for OIDC_METADATA_SECONDS, not fetched at every sign-in.
"""

import time
from urllib.parse import urlsplit

from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import OAuth
from django.conf import settings
from joserfc.errors import ExpiredTokenError, JoseError
from requests import HTTPError, RequestException

SESSION_KEY = "sso"
configurations = {}  # issuer -> the provider's configuration (and keys, once fetched), with Authlib's "_loaded_at"


class SsoError(Exception):
    """Single sign-on failed; the message says why, for the person trying to log in."""


class SsoEnded(SsoError):
    """The provider no longer vouches for the person of a session: the session ends; the message says why."""


def enabled():
    return bool(settings.OIDC_ISSUER)


def _client():
    # Made for each use, not once per process (settings may change: tests); the provider's configuration and keys
    # are kept between uses for OIDC_METADATA_SECONDS, in the dict Authlib itself keeps them in.
    oauth = OAuth()
    oauth.register(
        "sso",
        client_id=settings.OIDC_CLIENT_ID,
        client_secret=settings.OIDC_CLIENT_SECRET,
        server_metadata_url=settings.OIDC_ISSUER.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": settings.OIDC_SCOPES, "code_challenge_method": "S256",
                       "default_timeout": settings.OIDC_TIMEOUT},
    )
    client = oauth.create_client("sso")
    kept = configurations.get(settings.OIDC_ISSUER)
    if kept and time.time() - kept["_loaded_at"] < settings.OIDC_METADATA_SECONDS:
        client.server_metadata = kept
    try:
        metadata = client.load_server_metadata()
    except (RequestException, ValueError) as e:
        raise SsoError(f"The sign-in provider at {settings.OIDC_ISSUER} cannot be reached or gave no usable "
                       f"configuration ({type(e).__name__}). Try again in a while; if it lasts, tell this site's "
                       "administrator.") from None
    said = str(metadata.get("issuer", ""))
    if said.rstrip("/") != settings.OIDC_ISSUER.rstrip("/"):
        raise SsoError(f"The sign-in provider says it is “{said}”, not “{settings.OIDC_ISSUER}” as this site is "
                       "configured (OIDC_ISSUER): sign-in refused. Tell this site's administrator.")
    configurations[settings.OIDC_ISSUER] = metadata  # the same dict: keys Authlib fetches later are kept with it
    return client


def start(request, redirect_uri):
    """The redirect that sends the browser to the provider."""
    return _client().authorize_redirect(request, redirect_uri)


def finish(request):
    """(claims, token): the claims of the person the provider sent back, checked, with those of its userinfo
    endpoint (where SRAM and Check-in put group memberships), and the provider's token (for `remember`)."""
    if request.GET.get("error"):
        said = request.GET.get("error_description") or request.GET["error"]
        raise SsoError(f"The sign-in provider did not sign you in: {said[:300]}")
    client = _client()
    # Authlib checks the issuer by default but the audience only through `azp`: a token for another client that
    # names this one as its authorised party would pass. Both are checked here, as the spec says.
    must = {"iss": {"essential": True, "values": [client.load_server_metadata()["issuer"]]},
            "aud": {"essential": True, "values": [settings.OIDC_CLIENT_ID]}}
    try:
        token = client.authorize_access_token(request, claims_options=must)
    except OAuthError as e:
        if e.error == "mismatching_state":
            raise SsoError("This sign-in was not started from this browser, or took too long: try again.") from None
        raise SsoError(f"The sign-in provider refused this sign-in ({e.error}): try again.") from None
    except JoseError as e:
        # joserfc (Authlib's JOSE since 1.7) names the claim; an expired token is its own error.
        claim = "exp" if isinstance(e, ExpiredTokenError) else getattr(e, "claim", None)
        why = {"iss": "it was issued by another provider than this site's (OIDC_ISSUER)",
               "aud": "it was issued for another application, not this site (OIDC_CLIENT_ID)",
               "azp": "it was issued for another application, not this site (OIDC_CLIENT_ID)",
               "exp": "it has expired (is this server's clock right?)",
               "nonce": "it does not belong to this sign-in"}.get(claim, f"it is not valid ({e.error})")
        raise SsoError(f"The sign-in provider's answer was refused: {why}. Try again; if it lasts, tell this "
                       "site's administrator.") from None
    except RequestException as e:
        raise SsoError(f"The sign-in provider could not be reached to finish the sign-in ({type(e).__name__}): "
                       "try again.") from None
    claims = dict(token.get("userinfo") or {})
    if not claims.get("sub"):
        raise SsoError("The sign-in provider's answer names nobody (no subject): sign-in refused.")
    if client.load_server_metadata().get("userinfo_endpoint"):
        try:
            more = dict(client.userinfo(token=token))
        except (OAuthError, RequestException, ValueError) as e:
            raise SsoError(f"The sign-in provider did not tell who you are ({type(e).__name__}): try again.") from None
        if more.get("sub") != claims["sub"]:  # the spec's check: the userinfo must be of the same person
            raise SsoError("The sign-in provider's user information is of someone else: sign-in refused.")
        claims = {**more, **claims}
    return claims, token


def remember(session, claims, token):
    """Keep in the session what a later recheck and logout need (the session store is the server's, never a
    cookie's)."""
    session[SESSION_KEY] = {"sub": claims["sub"], "id_token": token.get("id_token", ""),
                            "access_token": token.get("access_token", ""),
                            "refresh_token": token.get("refresh_token", ""), "checked_at": time.time()}


def due(held):
    return time.time() - held.get("checked_at", 0) >= settings.OIDC_RECHECK_MINUTES * 60


def recheck(held):
    """(claims, held): who the provider says the session's person is now, asked with the session's access token
    (renewed with its refresh token when the provider gave one). SsoEnded when the provider refuses: the token
    expired without a way to renew it, or the person is no longer known there. SsoError when the provider cannot
    be asked now (unreachable): the session keeps its roles and asks again a minute later."""
    client = _client()
    held = dict(held)
    for attempt in ("access", "refresh"):
        try:
            claims = dict(client.userinfo(token={"access_token": held["access_token"], "token_type": "Bearer"}))
            break
        except HTTPError as e:
            if e.response is None or e.response.status_code not in (400, 401, 403):
                raise SsoError(f"the sign-in provider answered {getattr(e.response, 'status_code', '?')}") from None
            if attempt == "refresh" or not held.get("refresh_token"):
                raise SsoEnded("Your sign-in has ended: the sign-in provider no longer confirms it. "
                               "Sign in again.") from None
            try:
                renewed = client.fetch_access_token(grant_type="refresh_token", refresh_token=held["refresh_token"])
            except (OAuthError, RequestException, ValueError):
                raise SsoEnded("Your sign-in has ended: the sign-in provider did not renew it. "
                               "Sign in again.") from None
            held.update(access_token=renewed["access_token"],
                        refresh_token=renewed.get("refresh_token") or held["refresh_token"])
        except (OAuthError, RequestException, ValueError) as e:
            raise SsoError(f"the sign-in provider could not be asked ({type(e).__name__})") from None
    if claims.get("sub") != held["sub"]:
        raise SsoEnded("Your sign-in has ended: the sign-in provider names someone else. Sign in again.")
    held["checked_at"] = time.time()
    return claims, held


def origins():
    """The provider's web origins: its issuer's, and its end_session_endpoint's once its configuration is known."""
    urls = [settings.OIDC_ISSUER, (configurations.get(settings.OIDC_ISSUER) or {}).get("end_session_endpoint") or ""]
    return sorted({"{0.scheme}://{0.netloc}".format(urlsplit(u)) for u in urls if u.startswith(("http://", "https://"))})


def logout_url(held, back_to):
    """Where to send the browser so that the provider ends its own session too (its end_session_endpoint), coming
    back to `back_to`; None when the provider offers no such thing or cannot be asked now."""
    try:
        client = _client()
        if not client.load_server_metadata().get("end_session_endpoint"):
            return None
        return client.create_logout_url(post_logout_redirect_uri=back_to, id_token_hint=held.get("id_token") or None,
                                        client_id=settings.OIDC_CLIENT_ID)["url"]
    except (SsoError, RuntimeError):
        return None
