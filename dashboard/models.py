from django.db import models
from django.utils import timezone


class LoginFailure(models.Model):
    """One failed login, kept for LOGIN_LOCKOUT_SECONDS so that login throttling (dashboard/throttle.py) works
    across all the site's processes. The username is stored hashed: people type passwords into it by mistake."""

    username_hash = models.CharField(max_length=64, db_index=True)
    ip = models.GenericIPAddressField(null=True, blank=True, db_index=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return f"failed login from {self.ip or 'unknown address'} at {self.at:%Y-%m-%d %H:%M:%S}"
