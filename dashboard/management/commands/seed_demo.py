import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError

from dashboard.roles import OPERATORS, VIEWERS
from localsite import demo

LOGINS = Path(settings.BASE_DIR) / "var" / "demo-logins.json"


class Command(BaseCommand):
    help = "Create the demo users (operator, viewer) and, unless --users-only, seed the demo pools."

    def add_arguments(self, parser):
        parser.add_argument("--users-only", action="store_true", help="Create the demo users only.")

    def handle(self, *args, users_only=False, **options):
        self.ensure_users()
        if users_only:
            return
        if not settings.COUCHDB_URL:
            raise CommandError("COUCHDB_URL is not set: nothing to seed")
        credentials = (settings.COUCHDB_URL, settings.COUCHDB_USER, settings.COUCHDB_PASSWORD)
        for name, seed in (("demo-surf", demo.seed_surf), ("demo-lofar", demo.seed_lofar)):
            summary = seed(*credentials, database=name)
            counts = ", ".join(f"{k} {v}" for k, v in summary.items()) if summary else "already seeded"
            self.stdout.write(f"pool {name}: {counts}")

    def ensure_users(self):
        """Demo users with random passwords, kept in var/ so that `make run` can print them every start."""
        LOGINS.parent.mkdir(exist_ok=True)
        logins = json.loads(LOGINS.read_text()) if LOGINS.exists() else {}
        for role, group_name in (("operator", OPERATORS), ("viewer", VIEWERS)):
            login = logins.setdefault(role, {"username": role, "password": secrets.token_urlsafe(9)})
            group, _ = Group.objects.get_or_create(name=group_name)
            user, created = User.objects.get_or_create(username=login["username"])
            if created or not user.check_password(login["password"]):
                user.set_password(login["password"])
                user.save()
            user.groups.add(group)
        LOGINS.write_text(json.dumps(logins, indent=2))
        LOGINS.chmod(0o600)
