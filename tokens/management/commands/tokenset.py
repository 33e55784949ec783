"""`python manage.py tokenset --pool P --type T --config F --list F`: a new token set from a shell, checked by the same
functions as the web form's (a list of millions of SURLs is read from its file, never held whole)."""

import json

from django.core.management.base import BaseCommand, CommandError

from tokens import operations, tokensets, uploads
from tokens.couch import CouchError
from tokens.management.cli import from_the_shell, pool_named, say_end, user_named
from tokens.selections import OperationError


class Command(BaseCommand):
    help = "Preview (--dry-run) or create a token set from a config (YAML or JSON) and an input list (SURLs or items)."

    def add_arguments(self, parser):
        parser.add_argument("--pool", required=True, help="the pool's slug")
        parser.add_argument("--type", required=True, help="the token type, e.g. pref_cal1_L229585")
        parser.add_argument("--config", required=True, help="the config file; its Token: section becomes the fields")
        parser.add_argument("--list", required=True, help="the input list: one SURL (or item) per line")
        parser.add_argument("--per-token", default="10", help="items per token (default 10)")
        parser.add_argument("--key-field", default="STARTSB", help="the field that holds each token's key")
        parser.add_argument("--id-prefix", default="SB", help="before the key in the id (default SB)")
        parser.add_argument("--id-suffix", default="", help="after the type in the id (default: the observation)")
        parser.add_argument("--id-template", default="", help="the whole id, e.g. 'L229585_{key}'")
        parser.add_argument("--attachment", default="srm.txt",
                            help="the name of the attached item list ('' for none; default srm.txt)")
        parser.add_argument("--no-views", action="store_true", help="do not create the type's design document")
        parser.add_argument("--dry-run", action="store_true", help="only say what would be made")
        parser.add_argument("--confirm", help="the token count, typed, when asked for")
        parser.add_argument("--user", help="record the job under this dashboard user")

    def handle(self, *args, **o):
        pool = pool_named(o["pool"])
        upload = None
        try:
            options = tokensets.options(o["type"], o["per_token"], o["key_field"], o["id_prefix"], o["id_suffix"],
                                        o["id_template"], o["attachment"], create_views=not o["no_views"])
            config_text = read_config(o["config"])
            upload = tokensets.save_list(uploaded=readable(o["list"]))
            if o["dry_run"]:
                with tokensets.plan(config_text, upload, options) as the_plan:
                    seen = tokensets.preview(pool, the_plan)
                self.stdout.write(json.dumps({k: v for k, v in seen.items() if k != "ids"}))
                return
            job = tokensets.create_job(pool, user_named(o["user"]), config_text, upload, options,
                                       confirmation=o["confirm"], via="cli")
            job = operations.run_job(from_the_shell(job).pk)
        except (OperationError, CouchError) as e:
            raise CommandError(str(e)) from None
        finally:
            if upload:  # a job has a link of its own to the list
                uploads.forget(upload)
        say_end(self.stdout, job, f"{job.changed} tokens created, {job.skipped} skipped (their ids exist: never "
                                  f"overwritten), {job.failed} failed")


def readable(path):
    """A file on this machine that can be read, or OperationError naming it (a directory, no permission)."""
    local = uploads.LocalFile(path)
    try:
        open(path, "rb").close()
    except OSError as e:
        raise OperationError(f"Cannot read {path}: {e.strerror}") from None
    return local


def read_config(path):
    local = readable(path)
    with open(path, "rb") as f:
        return tokensets.read_config(f, local.size)
