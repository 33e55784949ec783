"""The web side's own records: login failures (throttling) and API tokens."""

import hashlib
import secrets

from django.conf import settings
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


# --- Per-user API tokens for scripts: only a hash of the secret is stored, the secret is shown once ---------------

PREFIX = "pcs_"  # tells a dashboard token apart from other secrets in a script or a leak scanner
LAST_USED_EVERY = 60  # seconds: a script polling a job must not write a row per request


def digest(secret):
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    hint = models.CharField(max_length=12)  # the secret's first characters, so its owner can tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.user})"

    @classmethod
    def issue(cls, user, name):
        """A new token for `user`; returns (token, secret). The secret exists only in this answer."""
        secret = PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, hint=secret[:len(PREFIX) + 4], key_hash=digest(secret))
        return token, secret

    @classmethod
    def user_for(cls, secret):
        """The active user a secret belongs to, or None if it is unknown, revoked or its user is inactive."""
        token = (cls.objects.select_related("user")
                 .filter(key_hash=digest(secret), revoked_at__isnull=True, user__is_active=True).first())
        if token is None:
            return None
        now = timezone.now()
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_EVERY:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token.user

    @property
    def revoked(self):
        return self.revoked_at is not None

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
