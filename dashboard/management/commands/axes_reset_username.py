"""`manage.py axes_reset_username NAME...`: unlock users. Axes' own command of this name looks for the names as typed,
but the site stores them hashed (dashboard/throttle.py), so it never found one; this one hashes them first."""

from axes.utils import reset
from django.core.management.base import BaseCommand

from dashboard.throttle import hashed


class Command(BaseCommand):
    help = "Remove the failed logins and the lockout of the given usernames (as typed at the login form)"

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="+")

    def handle(self, *args, **options):
        for username in options["username"]:
            removed = reset(username=hashed(username))
            self.stdout.write(f"{username}: {removed} failed login record{'s' if removed != 1 else ''} removed"
                              if removed else f"{username}: no failed logins recorded, nothing to unlock")
