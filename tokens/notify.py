"""Sending alert messages: e-mail through Django's mail settings (EMAIL_HOST ...), webhooks as an HTTP POST of a
Mattermost/Slack-compatible JSON body ({"text": ...}). One thin module for both outside services; every failure
is a NotifyError whose message names the service and what went wrong, never a password or a webhook's secret
path (a Slack or Mattermost webhook URL is itself a credential)."""

import json
import smtplib
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail

TIMEOUT = 10


class NotifyError(Exception):
    pass


def where(url):
    """A webhook URL as pages and errors may show it: scheme and host, never the path that holds its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{parts.port}' if parts.port else ''}/…"


def email(address, subject, text):
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, [address], fail_silently=False)
    except (smtplib.SMTPException, OSError) as e:
        raise NotifyError(f"mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: "
                          f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}") from None


def webhook(url, text):
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            response.read(1024)
    except urllib.error.HTTPError as e:
        raise NotifyError(f"webhook {where(url)} answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:  # timeouts included
        reason = getattr(e, "reason", None) or e
        raise NotifyError(f"webhook {where(url)}: {reason}") from None
