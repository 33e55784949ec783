"""`manage.py tokenset`: a new token set from a shell, accepted or refused as the web form accepts or refuses it."""

import json
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils.html import escape

from dashboard.roles import OPERATORS
from tests.conftest import make_user
from tests.test_tokensets import CONFIG, SURLS, TYPE, all_docs
from tokens.models import Job

pytestmark = pytest.mark.django_db

FORM = {"token_type": TYPE, "per_token": "10", "key_field": "STARTSB", "id_prefix": "SB", "attachment": "srm.txt",
        "create_views": "on"}


@pytest.fixture
def files(tmp_path):
    def write(config=CONFIG, surls=SURLS):
        (tmp_path / "config.yaml").write_text(config)
        (tmp_path / "srm.txt").write_text(surls)
        return ["--config", str(tmp_path / "config.yaml"), "--list", str(tmp_path / "srm.txt")]

    return write


def tokenset(scratch_pool, *args):
    out = []

    class Out:
        def write(self, text):
            out.append(text)

    call_command("tokenset", "--pool", scratch_pool.database, "--type", TYPE, *args, stdout=Out())
    return "".join(out)


def kept_uploads():
    return sorted(p.name for p in Path(settings.JOB_UPLOAD_DIR).iterdir())


def test_the_dry_run_says_what_the_forms_dry_run_says_and_writes_nothing(scratch_pool, files, operator_client):
    before = kept_uploads()
    cli = json.loads(tokenset(scratch_pool, *files(), "--dry-run"))
    web = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/",
                               {**FORM, "config": CONFIG, "input_list": SURLS})
    html = web.content.decode()

    assert web.status_code == 200
    assert cli["count"] == 6 and cli["keys"][:2] == ["100", "110"] and cli["existing_count"] == 0
    # What the shell's dry run says, the form's dry run shows: the count, observation and keys, the first token in
    # full with its attachment, the ids that exist, the views it would create.
    assert (f"Dry run: <strong>{cli['count']}</strong> tokens for observation <strong>{cli['observation']}</strong>,"
            f"\n    keyed {', '.join(cli['keys'])}. Nothing") in html
    assert escape(json.dumps(cli["first"], indent=2, sort_keys=True, ensure_ascii=False)) in html
    assert f"Attachment <code>{cli['attachment']['name']}</code>" in html and escape(cli["attachment"]["text"]) in html
    assert ("these ids exist already" in html) == bool(cli["existing_count"])
    assert ("will be created" in html) == bool(cli["create_views"])
    if cli["create_views"]:
        assert f"<code>{cli['create_views']}</code> do not exist" in html
    assert all_docs(scratch_pool) == {}
    upload = re.search(r'name="input_list_upload" value="([0-9a-f]+)"', html)[1]
    assert kept_uploads() == sorted({*before, upload})  # the form keeps its list; the shell not


def test_a_set_made_from_the_shell_is_a_job_recorded_as_the_users_from_the_cli(scratch_pool, files):
    make_user("olga", OPERATORS)

    said = tokenset(scratch_pool, *files(), "--user", "olga")

    job = Job.objects.get()
    assert (job.action, job.via, job.user.username, job.status, job.changed) == (
        "create_tokens", "cli", "olga", "succeeded", 6)
    assert said.startswith(f"job {job.pk} succeeded: 6 tokens created, 0 skipped")
    assert len(all_docs(scratch_pool)) == 6
    again = tokenset(scratch_pool, *files())  # the same set again: every id exists, nothing overwritten
    assert "0 tokens created, 6 skipped (their ids exist: never overwritten)" in again
    import getpass

    # Both jobs name the shell's login that ran them; the second has no dashboard user (no --user).
    assert [(j.user, j.shell_user) for j in Job.objects.order_by("pk")] == [
        (job.user, getpass.getuser()), (None, getpass.getuser())]


@pytest.mark.parametrize(("config", "surls", "extra", "message"), [
    ("Token: [oops", SURLS, [], "not valid YAML or JSON"),
    (CONFIG, SURLS + "srm://srm.grid.sara.nl/pnfs/L999999_SB001_uv.MS.tar\n", [], "mixes observations"),
    (CONFIG, SURLS, ["--per-token", "0"], "from 1 to 1,000,000, not 0"),
    (CONFIG.replace('OBSID: ""', "OBSID: L230461", 1), SURLS, [],
     "The SURLs are of observation L229585, but the config's OBSID names L230461"),
])
def test_the_shell_refuses_what_the_form_refuses_with_the_same_message(scratch_pool, files, operator_client, config,
                                                                      surls, extra, message):
    before = kept_uploads()
    with pytest.raises(CommandError, match=message) as refused:
        tokenset(scratch_pool, *files(config, surls), *extra)
    assert kept_uploads() == before  # the list the shell saved is gone with the refusal
    form = {**FORM, "config": config, "input_list": surls}
    if extra:
        form["per_token"] = extra[1]
    web = operator_client.post(f"/pools/{scratch_pool.database}/tokensets/new/", form)
    assert web.status_code == 400
    assert f'<div class="banner error" role="alert">{escape(str(refused.value))}.' in web.content.decode()
    assert all_docs(scratch_pool) == {} and not Job.objects.exists()


def test_a_large_set_needs_its_count_typed_as_in_the_form(scratch_pool, files, settings):
    settings.JOB_CONFIRM_THRESHOLD = 3
    with pytest.raises(CommandError, match=r"Type the number of tokens \(6\) to confirm creating more than 3 "
                                           r"\(--confirm 6\)"):
        tokenset(scratch_pool, *files())
    assert all_docs(scratch_pool) == {}
    assert "6 tokens created" in tokenset(scratch_pool, *files(), "--confirm", "6")


def test_a_missing_or_unreadable_file_and_an_unknown_user_are_named(scratch_pool, files, tmp_path):
    args = files()
    with pytest.raises(CommandError, match=f"Cannot read {tmp_path / 'nope.txt'}: No such file"):
        tokenset(scratch_pool, args[0], args[1], "--list", str(tmp_path / "nope.txt"))
    with pytest.raises(CommandError, match=f"Cannot read {tmp_path / 'nope.yaml'}: No such file"):
        tokenset(scratch_pool, "--config", str(tmp_path / "nope.yaml"), *args[2:])
    with pytest.raises(CommandError, match=f"Cannot read {tmp_path}: Is a directory"):
        tokenset(scratch_pool, args[0], args[1], "--list", str(tmp_path))
    with pytest.raises(CommandError, match="No user 'nobody'"):
        tokenset(scratch_pool, *args, "--user", "nobody")
    with pytest.raises(CommandError, match="No user 'nobody'"):  # the other command that runs jobs says the same
        call_command("tokens", "reset", "--pool", scratch_pool.database, "--state", "todo", "--user", "nobody")
    assert all_docs(scratch_pool) == {}


def test_options_are_taken_as_the_form_takes_them(scratch_pool, files):
    """Trimmed, an empty key field meaning the default, items per token a whole number."""
    seen = json.loads(tokenset(scratch_pool, *files(), "--key-field", "", "--id-prefix", " SB ", "--dry-run"))
    assert seen["first"]["STARTSB"] == "100" and seen["first"]["_id"].endswith("_SB100")
    with pytest.raises(CommandError, match="Items per token must be a whole number"):
        tokenset(scratch_pool, *files(), "--per-token", "ten")


def test_the_readmes_example_runs_as_written_from_the_projects_folder(demo_pools, monkeypatch):
    import shlex

    from tests.conftest import LOFAR

    readme = (Path(settings.BASE_DIR) / "README.md").read_text()
    command = re.search(r"python manage.py (tokenset .*?)# ", readme, re.S).group(1).replace("\\\n", " ")
    args = shlex.split(command.replace("demo-lofar", LOFAR))
    monkeypatch.chdir(settings.BASE_DIR)  # as `make shell` starts: in the project's folder
    out = []

    class Out:
        def write(self, text):
            out.append(text)

    call_command(*args, stdout=Out())
    answer = json.loads("".join(out))
    assert answer["count"] > 0 and answer["observation"] == "L229585"
