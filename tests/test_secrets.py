"""No pool password in clear: not in the database, a page, a log line or an error message. Admin pools' passwords
are stored encrypted with SECRETS_KEY or read from the environment (NAME or NAME_FILE); so are webhook addresses;
a migration encrypts what was stored before; a changed key is said plainly, without the secret."""

import logging
import secrets
import time
import uuid

import pytest
import requests
from django.core.management import call_command
from django.db import connection

from tests.conftest import LOFAR, SURF, migrate_around
from tokens.models import Delivery, PoolConfig, Subscription

pytestmark = pytest.mark.django_db


@pytest.fixture
def couch_login(couch_server):
    """A CouchDB admin of its own whose password occurs nowhere else (the test server's may be a word like "admin",
    which every page holds). CouchDB 3 keeps admins under /_node/_local/_config; pouchdb-server under /_config."""
    name, password = f"secret-test-{uuid.uuid4().hex[:8]}", "pw-" + secrets.token_urlsafe(18)
    auth = (couch_server.username, couch_server.password)
    for path in ("/_node/_local/_config/admins/", "/_config/admins/"):
        made = requests.put(couch_server.url + path + name, json=password, auth=auth, timeout=10)
        if made.ok:
            break
    made.raise_for_status()
    # CouchDB 3 takes a moment to hash a new admin's password; until then the admin cannot log in.
    deadline = time.monotonic() + 30
    while not requests.get(couch_server.url + "/_session", auth=(name, password), timeout=10).ok:
        assert time.monotonic() < deadline, "the new CouchDB admin cannot log in"
        time.sleep(1)  # slowly: more than 5 failed logins would lock the new admin out
    yield name, password
    requests.delete(couch_server.url + path + name, auth=auth, timeout=10)


def database_text():
    """Every value of every table of Django's database, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values.extend(str(v) for row in cursor.fetchall() for v in row)
    return "\n".join(values)


def pages_of(client, slug):
    paths = [f"/pools/{slug}/", f"/pools/{slug}/tokens/", f"/pools/{slug}/failures/", f"/pools/{slug}/stale/",
             f"/pools/{slug}/hosts/", "/", "/healthz", f"/api/v1/pools/{slug}", "/api/v1/pools",
             "/admin/tokens/poolconfig/", f"/admin/tokens/poolconfig/{PoolConfig.objects.get(slug=slug).pk}/change/"]
    return {p: client.get(p) for p in paths}


def test_a_pool_added_in_the_admin_works_and_its_password_is_nowhere_in_clear(
        admin_client, couch_server, couch_login, demo_pools, caplog, settings):
    caplog.set_level(logging.DEBUG)
    username, password = couch_login
    added = admin_client.post("/admin/tokens/poolconfig/add/", {
        "slug": "lofar-admin", "name": "LOFAR (admin)", "url": couch_server.url, "database": LOFAR,
        "username": username, "password": password, "password_env": "", "group_field": "OBSID"})
    assert added.status_code == 302, added.content.decode()[:2000]
    config = PoolConfig.objects.get(slug="lofar-admin")
    assert config.password_sealed and password not in config.password_sealed and config.password == password

    pages = pages_of(admin_client, "lofar-admin")
    assert pages["/pools/lofar-admin/"].status_code == 200  # the pool is read with the stored password
    assert all(password not in r.content.decode() for r in pages.values())
    assert password not in database_text() and password not in caplog.text

    # A wrong password: the error pages and log lines do not carry it either.
    PoolConfig.objects.filter(slug="lofar-admin").update(
        password_sealed=PoolConfig(password="wrong-pw-31").password_sealed)
    wrong = pages_of(admin_client, "lofar-admin")
    assert wrong["/healthz"].json()["checks"]["pools"]["lofar-admin"]["error"] == "credentials refused"
    assert all("wrong-pw-31" not in r.content.decode() for r in wrong.values())
    assert "wrong-pw-31" not in database_text() and "wrong-pw-31" not in caplog.text


def test_a_password_can_come_from_the_environment_or_a_file_and_is_then_not_stored(
        admin_client, couch_server, couch_login, demo_pools, monkeypatch, tmp_path):
    username, password = couch_login
    secret_file = tmp_path / "couchdb-password"
    secret_file.write_text(password + "\n")
    monkeypatch.setenv("LOFAR_COUCHDB_PASSWORD_FILE", str(secret_file))
    added = admin_client.post("/admin/tokens/poolconfig/add/", {
        "slug": "from-file", "url": couch_server.url, "database": SURF, "username": username,
        "password": "", "password_env": "LOFAR_COUCHDB_PASSWORD", "group_field": ""})
    assert added.status_code == 302
    assert admin_client.get("/pools/from-file/").status_code == 200
    assert PoolConfig.objects.get(slug="from-file").password_sealed == ""
    assert password not in database_text()
    monkeypatch.delenv("LOFAR_COUCHDB_PASSWORD_FILE")
    missing = admin_client.get("/pools/from-file/token/?id=anything")  # a page that always asks CouchDB
    assert missing.status_code == 502 and "Neither LOFAR_COUCHDB_PASSWORD nor LOFAR_COUCHDB_PASSWORD_FILE is set" in \
        missing.content.decode()


def test_a_changed_key_is_said_plainly_and_rotation_keeps_the_secrets(
        admin_client, couch_server, couch_login, demo_pools, settings):
    username, password = couch_login
    PoolConfig.objects.create(slug="kept", url=couch_server.url, database=SURF, username=username, password=password)
    old = list(settings.SECRETS_KEYS)
    settings.SECRETS_KEYS = ["a-new-key"]
    refused = admin_client.get("/pools/kept/")
    assert refused.status_code == 502
    assert "The stored password of pool kept cannot be decrypted with this site&#x27;s SECRETS_KEY" in \
        refused.content.decode()
    assert password not in refused.content.decode()
    settings.SECRETS_KEYS = ["a-new-key", *old]  # the new key in front, the old one after it
    call_command("rotate_secrets")
    settings.SECRETS_KEYS = ["a-new-key"]  # the old key dropped: the secret was encrypted anew
    assert PoolConfig.objects.get(slug="kept").password == password
    read = admin_client.get("/pools/kept/")
    assert read.status_code == 200, read.content.decode()[-1500:]


def test_webhook_addresses_are_stored_encrypted_and_shown_without_their_secret_path(viewer_client, viewer,
                                                                                     demo_pools):
    url = "https://mattermost.example.org/hooks/s3cr3t-h00k-k3y"
    assert viewer_client.post(f"/pools/{SURF}/alerts/subscription/", {"webhook_url": url}).status_code == 302
    assert Subscription.objects.get().webhook_url == url and "s3cr3t-h00k-k3y" not in database_text()
    html = viewer_client.get(f"/pools/{SURF}/alerts/").content.decode()
    assert "https://mattermost.example.org/…" in html and "s3cr3t" not in html


@pytest.mark.django_db(transaction=True)
def test_the_migration_encrypts_what_was_stored_in_clear(django_user_model):
    def clear_rows(apps):
        apps.get_model("tokens", "PoolConfig").objects.create(slug="old", url="https://couch.example.org",
                                                              database="db", password="old-clear-pw")
        user = django_user_model.objects.create_user("webhooker")
        apps.get_model("tokens", "Subscription").objects.create(user_id=user.pk, pool="old",
                                                                webhook_url="https://hooks.example.org/old-hook-key")
        alert = apps.get_model("tokens", "Alert").objects.create(pool="old", kind="stale_locks", summary="s")
        apps.get_model("tokens", "Delivery").objects.create(alert_id=alert.pk, message="firing", channel="webhook",
                                                            target="https://hooks.example.org/old-hook-key")

    migrate_around([("tokens", "0008_alerts")], [("tokens", "0009_pool_secrets_encrypted")], clear_rows)
    text = database_text()
    assert "old-clear-pw" not in text and "old-hook-key" not in text
    assert PoolConfig.objects.get(slug="old").password == "old-clear-pw"
    assert Subscription.objects.get().webhook_url == "https://hooks.example.org/old-hook-key"
    assert Delivery.objects.get().address == "https://hooks.example.org/old-hook-key"


def test_listing_pools_decrypts_no_password_and_a_pools_client_opens_only_its_own(couch_server, monkeypatch, db):
    from tokens import secretbox
    from tokens.pools import all_pools, get_pool

    for slug in ("one", "two", "three"):
        PoolConfig.objects.create(slug=slug, url=couch_server.url, database=SURF, username="u", password=f"pw-{slug}")
    opened = []
    real = secretbox.open_sealed
    monkeypatch.setattr(secretbox, "open_sealed", lambda *a, **k: opened.append(a[1]) or real(*a, **k))
    pools = all_pools()
    assert {"one", "two", "three"} <= {p.slug for p in pools} and opened == []
    assert all(p.password == "" for p in pools if p.source == "admin")  # nothing in clear in a list
    get_pool("two").couch()
    assert opened == ["The stored password of pool two"]
