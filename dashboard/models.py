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

class PoolHistory(models.Model):
    """A pool's tokens finished per hour over the last days, kept for the charts.

    Counting them is a grouped range query over the whole chart period, which the embedded server answers in
    O(rows) (seconds at 100k tokens): pages read this copy and have it recomputed in the background when it is old.
    """

    pool = models.CharField(max_length=100, unique=True)
    computed_at = models.DateTimeField(null=True)
    data = models.JSONField(null=True)
    # The last failed recomputation; the charts keep showing the older data with it.
    error = models.TextField(blank=True)
    refresh_requested_at = models.DateTimeField(null=True)

    class Meta:
        verbose_name_plural = "pool histories"

    def __str__(self):
        return f"history of {self.pool}"

    def age(self):
        return (timezone.now() - self.computed_at).total_seconds() if self.computed_at else None
