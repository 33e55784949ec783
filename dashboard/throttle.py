"""Login throttling is django-axes' (AXES_* in dashboard/settings.py), with its database handler: failures are kept
in its AccessAttempt table, so every gunicorn worker counts the same ones. What the site adds to it:

- the client's address by the site's own rule (client_ip, AXES_CLIENT_IP_CALLABLE);
- usernames stored hashed (username_key, AXES_USERNAME_CALLABLE): people type passwords into that field by mistake;
- a limit per address next to the one per username (AxesHandler): axes has one limit for all;
- the refusal said on the login page itself, the site's and the admin's (the forms), with 429 and Retry-After
  (lockout_response, AXES_LOCKOUT_CALLABLE).
"""

import hashlib
import ipaddress
import math

from axes.handlers.database import AxesDatabaseHandler
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_client_username, get_cool_off
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.db.models import Max, Sum
from django.utils import timezone


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


def hashed(username):
    """A username as axes stores and counts it: hashed, whatever its case or surrounding spaces."""
    return hashlib.sha256(username.strip().casefold().encode()).hexdigest()


def username_key(request, credentials):
    """AXES_USERNAME_CALLABLE: the username of a login attempt, hashed (None when none was sent)."""
    username = credentials.get("username") if credentials else request.POST.get("username")
    return None if username is None else hashed(username)


def failures(attempts):
    return attempts.aggregate(n=Sum("failures_since_start"))["n"] or 0


class AxesHandler(AxesDatabaseHandler):
    """Axes' database handler with a limit for the username (LOGIN_MAX_FAILURES) and a higher one for the address
    (LOGIN_MAX_FAILURES_PER_IP): many people may share an address (an institute's NAT). Axes itself compares the
    most failures of any AXES_LOCKOUT_PARAMETERS with its one AXES_FAILURE_LIMIT."""

    def get_failures(self, request, credentials=None):
        """1 once the username or the address has reached its own limit, else 0 (AXES_FAILURE_LIMIT is 1). A limit
        of 0 is none; an unknown username or address (None) is not counted, or all such logins would share one."""
        by_username, by_address = self.get_user_attempts(request, credentials)  # AXES_LOCKOUT_PARAMETERS' order
        checks = ((get_client_username(request, credentials), by_username, settings.LOGIN_MAX_FAILURES),
                  (request.axes_ip_address, by_address, settings.LOGIN_MAX_FAILURES_PER_IP))
        return int(any(key is not None and 0 < limit <= failures(attempts) for key, attempts, limit in checks))

    def reset_user_attempts(self, request, credentials=None):
        """A user who got in starts afresh. Axes would clear the address's failures too; then logging in to one's
        own account between guesses at others' would clear them."""
        return self.reset_attempts(username=get_client_username(request, credentials))

    def retry_after(self, request, credentials):
        """Seconds until the newest failure counted against this username or address is out of the window: the
        lockout has ended by then (it may end sooner, when fewer than the limit are left)."""
        counted = self.get_user_attempts(request, credentials)
        newest = max(filter(None, (attempts.aggregate(t=Max("attempt_time"))["t"] for attempts in counted)),
                     default=request.axes_attempt_time)
        ends = newest + get_cool_off(request)
        return max(1, math.ceil((ends - timezone.now()).total_seconds()))


def lockout_response(request, original_response, credentials):
    """AXES_LOCKOUT_CALLABLE: the page the login view rendered (its form says why, see ThrottledFormMixin) as
    429 Too Many Requests, with Retry-After."""
    original_response.status_code = 429
    original_response["Retry-After"] = str(AxesProxyHandler.get_implementation().retry_after(request, credentials))
    return original_response


class ThrottledFormMixin:
    """Axes refuses a locked-out login in authenticate() (AxesStandaloneBackend), which the form would call a wrong
    password: it says instead when to try again. What was typed as the username stays in the form."""

    retry_after = 0

    def clean(self):
        # Locked out whatever was sent: a form without a password never reaches authenticate(), where axes looks.
        credentials = {"username": self.data.get("username")}
        if AxesProxyHandler.is_locked(self.request, credentials):
            self.request.axes_locked_out, self.request.axes_credentials = True, credentials
        else:
            try:
                return super().clean()
            except ValidationError:
                if not getattr(self.request, "axes_locked_out", False):
                    raise
        credentials = self.request.axes_credentials
        self.retry_after = AxesProxyHandler.get_implementation().retry_after(self.request, credentials)
        minutes = math.ceil(self.retry_after / 60)
        raise ValidationError(f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}.",
                              code="throttled")


class ThrottledLoginForm(ThrottledFormMixin, AuthenticationForm):
    pass


class ThrottledAdminLoginForm(ThrottledFormMixin, AdminAuthenticationForm):
    pass
