"""The OpenID Connect provider (SRAM, EGI Check-in, eduTEAMS...), through Authlib: the only module that talks to it.

Authlib does the flow (state, nonce, PKCE, the code exchange) and checks the ID token (signature against the
provider's keys, issuer, audience, expiry, nonce). This module adds what the OpenID Connect discovery spec asks of
the client and Authlib leaves to it: that the provider says it is the issuer the site was configured with. Every
failure is an SsoError whose message is safe to show (it names no secret) and says what to do.
"""

from authlib.integrations.base_client import OAuthError
from authlib.integrations.django_client import OAuth
from django.conf import settings
from joserfc.errors import ExpiredTokenError, JoseError
from requests import RequestException


class SsoError(Exception):
    """Single sign-on failed; the message says why, for the person trying to log in."""


def enabled():
    return bool(settings.OIDC_ISSUER)


def _client():
    # Made for each login, not once per process: settings may change (tests), and logins are rare enough that
    # reading the provider's metadata again costs nothing that matters.
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
    return client


def start(request, redirect_uri):
    """The redirect that sends the browser to the provider."""
    return _client().authorize_redirect(request, redirect_uri)


def finish(request):
    """The claims of the person the provider sent back, checked, with those of its userinfo endpoint (where
    SRAM and Check-in put group memberships)."""
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
    return claims
