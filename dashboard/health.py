"""Checks for /healthz: the site's database, the Celery broker and each pool's CouchDB.

Each check answers {"status": "ok" | "fail", "ms": ..., "error": ...}. The page is public (load balancers do not
log in), so an error says only what kind of failure it was, never a URL, a host name or a credential.
"""

import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import DatabaseError, connection
from kombu import Connection

from tokens.couch import CouchError, NotFound, Unauthorised, Unreachable
from tokens.pools import all_pools, env_pools


def _timed(check, *args):
    started = time.monotonic()
    error = check(*args)
    result = {"status": "fail" if error else "ok", "ms": round(1000 * (time.monotonic() - started))}
    if error:
        result["error"] = error
    return result


def database():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as e:
        return f"unavailable ({type(e).__name__})"
    return None


def broker(timeout):
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "socket_timeout": timeout,
               "socket_connect_timeout": timeout}
    try:
        with Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout, transport_options=options) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except Exception as e:
        return f"unreachable ({type(e).__name__})"
    return None


def couchdb(client, timeout):
    if isinstance(client, CouchError):  # its client could not be made: an admin pool's password cannot be read
        return "its password cannot be read"
    try:
        client.database_info()
    except Unreachable:
        return "unreachable"
    except Unauthorised:
        return "credentials refused"
    except NotFound:
        return "database not found"
    except CouchError:
        return "error"
    return None


def client_or_error(pool, timeout):
    try:
        return pool.couch(timeout=timeout)
    except CouchError as e:
        return e


def check_all():
    """Every check's result, and whether all passed. Outside services are asked in parallel, each with a timeout."""
    timeout = settings.HEALTHZ_TIMEOUT
    try:
        pools = all_pools()
    except DatabaseError:
        pools = env_pools()  # the pools added in the admin live in the database, whose check says it is down
    with ThreadPoolExecutor(max_workers=min(8, len(pools) + 1)) as executor:
        broker_result = executor.submit(_timed, broker, timeout)
        # The clients are made here: an admin pool's password is read from Django's database, whose connection
        # belongs to this thread.
        pool_results = {p.slug: executor.submit(_timed, couchdb, client_or_error(p, timeout), timeout) for p in pools}
        checks = {
            "site": {"status": "ok"},
            "database": _timed(database),  # in this thread: Django's connection belongs to it
            "broker": broker_result.result(),
            "pools": {slug: future.result() for slug, future in pool_results.items()},
        }
    ok = all(c["status"] == "ok" for c in (checks["database"], checks["broker"], *checks["pools"].values()))
    return ok, checks
