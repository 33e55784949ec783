from django.db import models
from django.utils import timezone


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
