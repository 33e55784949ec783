"""`python manage.py tokens ACTION ...`: the web UI's operations from a shell, through the same functions."""

import json

from django.core.management.base import BaseCommand, CommandError

from tokens import actions, operations, selections, uploads
from tokens.couch import CouchError
from tokens.management.cli import from_the_shell, pool_named, say_end, user_named
from tokens.selections import OperationError, Selection


class Command(BaseCommand):
    help = "Preview (--dry-run) or run an operation on a pool's tokens: reset, set_field, delete, attach."

    def add_arguments(self, parser):
        parser.add_argument("action", choices=actions.TOKEN_ACTIONS)
        parser.add_argument("--pool", required=True, help="the pool's slug")
        parser.add_argument("--state", help="todo, locked, done, error, locked_unknown, legacy_error, ...")
        parser.add_argument("--stale-hours", type=float, help="locked longer than this many hours")
        parser.add_argument("--code", help="a failure group: exit code (with --message)")
        parser.add_argument("--message", default="", help="a failure group: its normalised message")
        parser.add_argument("--type", help="only this token type (observation)")
        parser.add_argument("--group", help="only this group (e.g. OBSID) within --type")
        parser.add_argument("--ids", nargs="+", default=[], help="explicit token ids")
        parser.add_argument("--from-job", type=int, help="the tokens an earlier job changed (see --outcome)")
        parser.add_argument("--outcome", default="changed", choices=list(selections.JOB_OUTCOMES),
                            help="with --from-job: the tokens it changed, skipped or failed on")
        parser.add_argument("--host", help="the failed (--state error) or locked (--state locked) tokens of a host")
        parser.add_argument("--delete-attachments", action="store_true", help="reset: delete attachments too")
        parser.add_argument("--field", help="set_field: the field")
        parser.add_argument("--value", help="set_field: the value")
        parser.add_argument("--value-type", default="string", choices=actions.VALUE_TYPES)
        parser.add_argument("--allow-state-fields", action="store_true")
        parser.add_argument("--file", help="attach: the file to attach")
        parser.add_argument("--name", help="attach: the attachment name (default: the file's name)")
        parser.add_argument("--dry-run", action="store_true", help="only say how many tokens, and which")
        parser.add_argument("--confirm", help="the token count, typed, when asked for")
        parser.add_argument("--user", help="record the job under this dashboard user")

    def handle(self, *args, **o):
        pool = pool_named(o["pool"])
        if o["stale_hours"] is not None:
            kind = "stale"
        elif o["code"] is not None:
            kind = "failure"
        elif o["ids"]:
            kind = "ids"
        elif o["from_job"] is not None:
            kind = "job"
        elif o["host"]:
            kind = "host"
        else:
            kind = "state"
        try:
            selection = Selection.from_query({
                "kind": kind, "state": o["state"], "type": o["type"], "group": o["group"], "hours": o["stale_hours"],
                "code": o["code"], "message": o["message"], "ids": o["ids"], "job": o["from_job"],
                "outcome": o["outcome"] if o["from_job"] is not None else None, "hostname": o["host"]})
            if o["dry_run"]:
                seen = selections.preview(pool, selection)
                self.stdout.write(json.dumps({"action": o["action"], "selection": selection.describe(), **seen}))
                return
            params = self.params(o)
            job = operations.create_job(pool, user_named(o["user"]), o["action"], selection, params,
                                        confirmation=o["confirm"], via="cli")
            job = operations.run_job(from_the_shell(job).pk)
        except (OperationError, CouchError) as e:
            raise CommandError(str(e)) from None
        say_end(self.stdout, job, f"{job.total} read, {job.changed} changed, {job.skipped} skipped, "
                                  f"{job.conflicts} conflicts, {job.failed} failed")

    def params(self, o):
        if o["action"] == "attach" and not o["file"]:
            raise OperationError("--file is required")
        return actions.read_params(o["action"], {**o, "value": o["value"] or ""},
                                   uploads.LocalFile(o["file"]) if o["action"] == "attach" else None)
