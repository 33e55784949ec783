"""`manage.py axes_reset_ip_username IP NAME`: unlock one user at one address (axes' own command cannot find the
usernames this site stores hashed, dashboard/throttle.py; this one hashes the name first)."""

from axes.utils import reset
from django.core.management.base import BaseCommand

from dashboard.throttle import hashed


class Command(BaseCommand):
    help = "Remove the failed logins and the lockout of a username (as typed at the login form) from an address"

    def add_arguments(self, parser):
        parser.add_argument("ip")
        parser.add_argument("username")

    def handle(self, *args, **options):
        removed = reset(ip=options["ip"], username=hashed(options["username"]))
        self.stdout.write(f"{removed} failed login record{'s' if removed != 1 else ''} removed")
