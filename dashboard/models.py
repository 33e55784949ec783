"""The web side's own records: roles per pool and API tokens."""

import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

# --- Per-user API tokens for scripts: only a hash of the secret is stored, the secret is shown once ---------------

PREFIX = "pcs_"  # tells a dashboard token apart from other secrets in a script or a leak scanner
LAST_USED_EVERY = 60  # seconds: a script polling a job must not write a row per request


def digest(secret):
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


class ApiToken(models.Model):
    """A script's key. It acts for its owner, narrowed by its own limits: read-only, some pools, an end date."""

    READ, OPERATE = "read", "operate"
    SCOPES = [(READ, "read only"), (OPERATE, "read and operate (as far as its owner may)")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    hint = models.CharField(max_length=12)  # the secret's first characters, so its owner can tell tokens apart
    key_hash = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=SCOPES, default=READ)
    pools = models.JSONField(default=list, blank=True)  # slugs; empty: every pool its owner may see
    expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.user})"

    @classmethod
    def issue(cls, user, name, scope=READ, pools=(), expires_at=None):
        """A new token for `user`; returns (token, secret). The secret exists only in this answer."""
        secret = PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, hint=secret[:len(PREFIX) + 4], key_hash=digest(secret),
                                   scope=scope, pools=sorted(set(pools)), expires_at=expires_at)
        return token, secret

    @classmethod
    def find(cls, secret):
        """The usable token a secret belongs to, or None if it is unknown, revoked, expired or its user inactive."""
        now = timezone.now()
        token = (cls.objects.select_related("user")
                 .filter(key_hash=digest(secret), revoked_at__isnull=True, user__is_active=True)
                 .exclude(expires_at__lte=now).first())
        if token is None:
            return None
        if token.last_used_at is None or (now - token.last_used_at).total_seconds() > LAST_USED_EVERY:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
        return token

    @property
    def read_only(self):
        return self.scope != self.OPERATE

    @property
    def expired(self):
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def revoked(self):
        return self.revoked_at is not None

    def revoke(self):
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


# --- Single sign-on: who a provider's subject is here -------------------------------------------------------------

class SsoIdentity(models.Model):
    """A person as the OpenID provider names them (issuer and subject, never the username, which anyone may pick):
    so that nobody signs in as a local account, and a renamed person stays the same user."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity")
    issuer = models.CharField(max_length=300)
    subject = models.CharField(max_length=300)
    last_login_claims = models.JSONField(default=dict)  # what the provider said at the last login (no secrets)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique")]

    def __str__(self):
        return f"{self.subject} at {self.issuer}"


# --- Roles per pool (dashboard/roles.py says how they combine) ----------------------------------------------------

class PoolRole(models.Model):
    """A user or a group is viewer or operator of one pool, or of all pools ("*")."""

    ROLES = [("viewer", "viewer (reads)"), ("operator", "operator (reads, resets, creates tokens)")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                             related_name="pool_roles")
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="pool_roles")
    pool = models.CharField(max_length=100, help_text="A pool's short name (its slug), or * for every pool.",
                            validators=[RegexValidator(r"^(\*|[-a-zA-Z0-9_]+)$", "A pool's slug, or *.")])
    role = models.CharField(max_length=10, choices=ROLES)
    # Granted from the sign-in provider's claims: replaced at each single sign-on login, so a lost group loses it.
    from_sso = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["pool", "role"]
        constraints = [models.CheckConstraint(
            condition=models.Q(user__isnull=False, group__isnull=True) | models.Q(user__isnull=True,
                                                                                  group__isnull=False),
            name="pool_role_for_a_user_or_a_group")]

    def __str__(self):
        who = self.user or f"group {self.group}"
        return f"{who}: {self.role} of {'every pool' if self.pool == '*' else self.pool}"
