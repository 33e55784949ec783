"""Single sign-on against a real OpenID Connect provider (tests/oidc_provider.mjs, npm oidc-provider) in a real
browser: a person signs in, gets the role their group claim gives, loses it with the group, logs out; a provider
that is not the configured issuer, or an ID token for another client, is refused with a clear message; local
accounts can be switched off."""

import re

import pytest
from django.contrib.auth.models import User

from dashboard.models import PoolRole, SsoIdentity
from tests.browsing import overflow, shoot
from tests.conftest import LOFAR, SURF
from tests.oidc import OpenIdProvider

pytestmark = [pytest.mark.django_db(transaction=True)]

OPS = "urn:mace:surf.nl:sram:group:lofar:surf-ops"
LEADS = "urn:mace:egi.eu:group:vo.lofar.eu:role=member#aai.egi.eu"
ANNA = {"name": "Anna Jansen", "given_name": "Anna", "family_name": "Jansen", "preferred_username": "ajansen",
        "email": "anna@example.org", "eduperson_entitlement": [OPS, LEADS]}


@pytest.fixture
def start_provider(live_server, tmp_path):
    """start_provider(**how) -> a provider that knows Anna, sending people back to this site; stopped after."""
    started = []

    def start(**kwargs):
        provider = OpenIdProvider(tmp_path / f"oidc{len(started)}", [live_server.url + "/accounts/sso/callback/"],
                                  post_logout_uris=[live_server.url + "/accounts/login/"], **kwargs)
        provider.set_people({"anna": ANNA})
        started.append(provider)
        return provider.start()

    yield start
    for provider in started:
        provider.stop()


@pytest.fixture
def provider(start_provider):
    return start_provider()


def use(settings, provider, issuer=None):
    settings.OIDC_ISSUER = issuer or provider.url
    settings.OIDC_CLIENT_ID, settings.OIDC_CLIENT_SECRET = provider.client_id, provider.client_secret
    settings.OIDC_PROVIDER_NAME = "SURF Research Access Management"
    settings.OIDC_ROLE_MAP = [(OPS, "operator", SURF), (LEADS, "viewer", LOFAR)]
    settings.SECURE_SSL_REDIRECT = False


def sign_in(page, base, login="anna"):
    page.goto(base + "/")
    assert "/accounts/login/" in page.url
    page.get_by_role("link", name="Sign in with SURF Research Access Management").click()
    # The provider's own pages (oidc-provider's development login and consent), unless the person is still signed
    # in there: then the provider sends them straight back, as SRAM does.
    page.wait_for_url(lambda url: "/interaction/" in url or url.startswith(base) and "/accounts/login/" not in url)
    if "/interaction/" in page.url:
        page.locator("input[name=login]").fill(login)
        page.locator("input[name=password]").fill("any password")
        page.get_by_role("button", name="Sign-in").click()
        page.wait_for_url(lambda url: "/interaction/" in url or url.startswith(base) and "/accounts/login/" not in url)
        if "/interaction/" in page.url:  # consent, the first time
            page.get_by_role("button", name="Continue").click()


def log_out(page):
    """The site's "Log out", then the provider's own question (RP-initiated logout), back to the login page."""
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Yes, sign me out").click()
    page.wait_for_url(re.compile(r"/accounts/login/(\?|$)"))


def test_a_person_signs_in_with_the_provider_and_gets_the_roles_their_groups_give(
        live_server, provider, open_page, settings, demo_pools):
    use(settings, provider)
    page = open_page()
    sign_in(page, live_server.url)
    page.wait_for_url(live_server.url + "/")
    assert page.locator("form.who span").inner_text() == "Signed in as Anna Jansen (may act)"
    # Operator of SURF's pool (its group), viewer of LOFAR's (the other), and nothing else is theirs.
    cards = page.locator(".card h2").all_inner_texts()
    assert len(cards) == 2
    page.goto(f"{live_server.url}/pools/{SURF}/")
    assert page.get_by_role("link", name="New token set…").is_visible()
    page.goto(f"{live_server.url}/pools/{LOFAR}/")
    assert page.get_by_role("link", name="New token set…").count() == 0
    page.goto(live_server.url + "/account/")
    text = page.locator("main").inner_text()
    assert "operator" in text and "viewer" in text
    shoot(page, "sso-account-desktop")
    page.set_viewport_size({"width": 390, "height": 844})
    assert overflow(page) <= 0
    shoot(page, "sso-account-phone")
    user = User.objects.get(sso_identity__subject="anna")
    assert user.username == "ajansen" and user.email == "anna@example.org" and not user.has_usable_password()
    assert set(PoolRole.objects.filter(user=user).values_list("pool", "role", "from_sso")) == {
        (SURF, "operator", True), (LOFAR, "viewer", True)}


def test_a_person_who_lost_a_group_loses_its_role_at_the_next_login_and_logout_ends_the_session(
        live_server, provider, open_page, settings, demo_pools):
    use(settings, provider)
    page = open_page()
    sign_in(page, live_server.url)
    page.wait_for_url(live_server.url + "/")
    assert page.goto(f"{live_server.url}/pools/{SURF}/").status == 200
    user = User.objects.get(sso_identity__subject="anna")
    PoolRole.objects.create(user=user, pool=LOFAR, role="operator")  # granted by an admin: not the provider's
    provider.set_people({"anna": {**ANNA, "eduperson_entitlement": [LEADS]}})  # out of the operators' group

    log_out(page)
    page.goto(f"{live_server.url}/pools/{SURF}/")
    assert "/accounts/login/" in page.url  # logged out: nothing without logging in again

    sign_in(page, live_server.url)
    page.wait_for_url(live_server.url + "/")
    assert page.goto(f"{live_server.url}/pools/{SURF}/").status == 404  # the role went with the group
    assert page.goto(f"{live_server.url}/pools/{LOFAR}/").status == 200
    assert set(PoolRole.objects.filter(user=user).values_list("pool", "role", "from_sso")) == {
        (LOFAR, "viewer", True), (LOFAR, "operator", False)}
    assert User.objects.filter(sso_identity__isnull=False).count() == 1  # the same person, not a new user


def test_a_provider_that_says_it_is_another_issuer_is_refused(live_server, start_provider, open_page, settings):
    provider = start_provider(issuer="https://login.example.org/other")
    use(settings, provider)
    page = open_page("phone")
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_role("link", name="Sign in with SURF Research Access Management").click()
    banner = page.get_by_role("alert").inner_text()
    assert "says it is “https://login.example.org/other”" in banner and "OIDC_ISSUER" in banner
    assert provider.client_secret not in page.content()
    assert overflow(page) <= 0  # the provider's long name wraps on a phone
    shoot(page, "sso-refused-phone")
    assert not User.objects.exists()


@pytest.mark.parametrize("override, words", [
    ({"aud": "someone-else"}, "issued for another application"),
    # Naming this site as the authorised party does not make a token for another client this site's.
    ({"aud": "someone-else", "azp": "picas-dashboard"}, "issued for another application"),
    ({"iss": "https://login.example.org"}, "issued by another provider"),
])
def test_an_id_token_for_another_client_or_from_another_issuer_is_refused(
        live_server, start_provider, open_page, settings, override, words):
    use(settings, start_provider(id_token_override=override))
    page = open_page("phone")
    sign_in(page, live_server.url)
    page.wait_for_url(re.compile(r"/accounts/sso/callback/"))
    banner = page.get_by_role("alert").inner_text()
    assert words in banner and "refused" in banner
    assert page.locator("form.who").count() == 0  # not signed in
    assert not User.objects.exists() and not SsoIdentity.objects.exists()


def test_local_accounts_can_be_switched_off(live_server, provider, open_page, settings, viewer, client):
    use(settings, provider)
    settings.LOCAL_LOGIN = False
    page = open_page()
    page.goto(live_server.url + "/accounts/login/")
    assert page.get_by_role("link", name="Sign in with SURF Research Access Management").is_visible()
    assert page.locator("input[name=password]").count() == 0
    # A password sent anyway is refused without being checked; the admin's login sends people to the same page.
    refused = client.post("/accounts/login/", {"username": "victor", "password": "pw-victor"})
    assert refused.status_code == 403 and "Local accounts are switched off" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/login/").url.startswith("/accounts/login/?next=")


def test_logging_out_here_logs_out_at_the_provider_too(live_server, provider, open_page, settings, demo_pools):
    use(settings, provider)
    page = open_page()
    sign_in(page, live_server.url)
    page.wait_for_url(live_server.url + "/")
    log_out(page)
    assert page.get_by_role("link", name="Sign in with SURF Research Access Management").is_visible()
    page.get_by_role("link", name="Sign in with SURF Research Access Management").click()
    # The provider asks who this is again: its own session ended with the site's.
    page.wait_for_url(re.compile(r"/interaction/"))
    assert page.locator("input[name=login]").is_visible()


def test_a_group_taken_away_at_the_provider_takes_its_role_away_within_the_recheck_time(
        live_server, provider, open_page, settings, demo_pools):
    from dashboard import sso

    use(settings, provider)
    settings.OIDC_RECHECK_MINUTES = 15
    page = open_page()
    sign_in(page, live_server.url)
    page.wait_for_url(live_server.url + "/")
    loaded = sso.configurations[provider.url]["_loaded_at"]
    provider.set_people({"anna": {**ANNA, "eduperson_entitlement": [LEADS]}})  # out of the operators' group
    assert page.goto(f"{live_server.url}/pools/{SURF}/").status == 200  # asked again only after 15 minutes
    settings.OIDC_RECHECK_MINUTES = 0  # the 15 minutes have passed
    assert page.goto(f"{live_server.url}/pools/{SURF}/").status == 404  # the role went with the group
    assert page.goto(f"{live_server.url}/pools/{LOFAR}/").status == 200
    user = User.objects.get(sso_identity__subject="anna")
    assert set(PoolRole.objects.filter(user=user).values_list("pool", "role")) == {(LOFAR, "viewer")}
    assert sso.configurations[provider.url]["_loaded_at"] == loaded  # the provider's configuration was not read again

    provider.set_people({})  # gone from the provider altogether
    page.goto(f"{live_server.url}/pools/{LOFAR}/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert "Your sign-in has ended" in page.locator("main").inner_text()
