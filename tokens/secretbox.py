"""Secrets the site must keep in its database (a pool's CouchDB password, an alert webhook's address) are stored
encrypted (Fernet: AES-128-CBC with an HMAC) under SECRETS_KEY, so that a copy of the database, a backup or a
dump shows no password. SECRETS_KEY may list several keys, newest first: the first encrypts, every one decrypts,
and `manage.py rotate_secrets` re-encrypts every stored secret with the first.
"""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretError(Exception):
    """A stored secret that this site's keys cannot open. The message names no secret."""


def _fernet(key):
    # Any passphrase is accepted: it is stretched to the 32 bytes a Fernet key holds. A key made by
    # Fernet.generate_key() is taken as it is.
    try:
        return Fernet(key)
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


def _box():
    return MultiFernet([_fernet(k) for k in settings.SECRETS_KEYS])


def seal(plain):
    """The text to store for a secret; "" stays "" (no secret)."""
    return _box().encrypt(plain.encode()).decode() if plain else ""


def open_sealed(sealed, what="a stored secret"):
    if not sealed:
        return ""
    try:
        return _box().decrypt(sealed.encode()).decode()
    except (InvalidToken, ValueError):
        raise SecretError(f"{what} cannot be decrypted with this site's SECRETS_KEY (was the key changed?): enter "
                          "it again in the admin, or put the old key back after the new one in SECRETS_KEY") from None


def reseal(sealed):
    """The same secret encrypted with the first key (after a key was added in front)."""
    return _box().rotate(sealed.encode()).decode() if sealed else ""
