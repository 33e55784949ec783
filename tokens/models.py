from django.db import models
from django.utils import timezone


class PoolConfig(models.Model):
    """A pool added by an admin (pools from the environment are not stored here)."""

    slug = models.SlugField(unique=True, help_text="Short name used in URLs.")
    name = models.CharField(max_length=100, blank=True)
    url = models.URLField(help_text="CouchDB server, e.g. https://picas.surfsara.nl:6984 (no credentials here).")
    database = models.CharField(max_length=200)
    username = models.CharField(max_length=200, blank=True)
    password = models.CharField(max_length=200, blank=True)
    group_field = models.CharField(
        max_length=100, blank=True, help_text="Token field that groups tokens into observations, e.g. OBSID."
    )
    create_views = models.BooleanField(
        default=False, help_text="Allow the dashboard to create its own design document in this database."
    )

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.name or self.slug


class CountSnapshot(models.Model):
    """The latest counts of a pool, kept so that pages never wait on a view over the whole pool."""

    pool = models.CharField(max_length=100, unique=True)
    taken_at = models.DateTimeField(null=True)
    data = models.JSONField(null=True)
    # The last failed refresh: shown as a banner with the (older) counts above.
    error = models.TextField(blank=True)
    error_status = models.PositiveSmallIntegerField(null=True)
    error_at = models.DateTimeField(null=True)
    refresh_requested_at = models.DateTimeField(null=True)

    def __str__(self):
        return f"counts of {self.pool}"

    def age(self):
        return (timezone.now() - self.taken_at).total_seconds() if self.taken_at else None
