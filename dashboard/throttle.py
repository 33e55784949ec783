"""Login throttling: after LOGIN_MAX_FAILURES failed logins for one username, or LOGIN_MAX_FAILURES_PER_IP from one
address, within LOGIN_LOCKOUT_SECONDS, further attempts are refused (without checking the password) until the
oldest of those failures is LOGIN_LOCKOUT_SECONDS old. Failures live in the database (dashboard.LoginFailure), so
every gunicorn worker counts the same ones.

The site's login form and the admin's both apply it (ThrottledLoginForm, ThrottledAdminLoginForm).
"""

import hashlib
import ipaddress
import math
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.utils import timezone

from dashboard.models import LoginFailure


def client_ip(request):
    """The client's address; behind a proxy (BEHIND_PROXY) the one the proxy appended last to X-Forwarded-For,
    since everything before it was sent by the client and may be made up."""
    address = request.META.get("REMOTE_ADDR", "")
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        address = forwarded or address
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _username_hash(username):
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()


def retry_after(request, username):
    """Seconds until a login for this username from this address may be tried again; 0 if it may be now."""
    now = timezone.now()
    window = timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)
    waits = []
    for field, value, limit in (("username_hash", _username_hash(username), settings.LOGIN_MAX_FAILURES),
                                ("ip", client_ip(request), settings.LOGIN_MAX_FAILURES_PER_IP)):
        if value is None or limit <= 0:
            continue
        # The limit-th newest failure in the window: once it leaves the window, fewer than `limit` remain in it.
        recent = LoginFailure.objects.filter(**{field: value}, at__gt=now - window).order_by("-at")
        nth = recent.values_list("at", flat=True)[limit - 1:limit]
        if nth:
            waits.append((nth[0] + window - now).total_seconds())
    return max(1, math.ceil(max(waits))) if waits else 0


def record_failure(request, username):
    now = timezone.now()
    LoginFailure.objects.create(username_hash=_username_hash(username), ip=client_ip(request), at=now)
    # Failures out of the window count for nothing any more; the table stays small.
    LoginFailure.objects.filter(at__lte=now - timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS)).delete()


def record_success(username):
    """A user who got in starts afresh (failures from the address still count for it)."""
    LoginFailure.objects.filter(username_hash=_username_hash(username)).delete()


class ThrottledFormMixin:
    """Refuses a throttled login before the password is checked; counts failures and clears them on success."""

    retry_after = 0

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        self.retry_after = retry_after(self.request, username)
        if self.retry_after:
            minutes = math.ceil(self.retry_after / 60)
            raise ValidationError(
                f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                code="throttled",
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            record_failure(self.request, username)
            raise
        if self.get_user() is not None:  # not merely a form without a password
            record_success(username)
        return cleaned


class ThrottledLoginForm(ThrottledFormMixin, AuthenticationForm):
    pass


class ThrottledAdminLoginForm(ThrottledFormMixin, AdminAuthenticationForm):
    pass
