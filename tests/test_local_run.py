"""`make run` is production-like (DEBUG off, styled error pages), and `make shell` gives manage.py commands the
settings of the site it started."""

import os

import pytest

from localsite import run

pytestmark = pytest.mark.django_db


def test_make_shell_gives_the_settings_make_run_gave_its_site_and_nothing_else_of_the_callers(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RUN_ENV", tmp_path / "run.env")
    monkeypatch.setenv("COUCHDB_DATABASES", "mypool")  # the caller's own setting: the site reads it
    monkeypatch.setenv("SOMEONE_ELSES_TOKEN", "not for the dashboard")
    env = {**os.environ, "SECRET_KEY": "with 'quotes' and spaces $HOME", "CELERY_BROKER_URL": "redis://127.0.0.1:7"}
    run.write_run_env(env)
    given = run.read_run_env(tmp_path / "run.env")
    assert given["SECRET_KEY"] == "with 'quotes' and spaces $HOME"
    assert given["CELERY_BROKER_URL"] == "redis://127.0.0.1:7" and given["COUCHDB_DATABASES"] == "mypool"
    assert "SOMEONE_ELSES_TOKEN" not in given
    assert (tmp_path / "run.env").stat().st_mode & 0o077 == 0  # it holds the site's secrets


def test_an_unexpected_error_shows_the_sites_own_page_not_a_traceback(viewer_client, monkeypatch, settings):
    assert not settings.DEBUG  # as under make run (and pytest-django)

    def broken():
        raise RuntimeError("a bug with a secret in it")

    monkeypatch.setattr("dashboard.views.overview_cards", broken)
    viewer_client.raise_request_exception = False
    response = viewer_client.get("/")
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page and "css/site.css" in page  # styled like every other page
    assert "secret" not in page and "Traceback" not in page


def test_a_missing_page_is_the_sites_own_styled_page(viewer_client):
    response = viewer_client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404 and "Not found" in page and "css/site.css" in page
