"""One settings file, driven by the environment.

Every setting an operator may change is read here through a small typed helper; a bad value stops the
site at start-up with ImproperlyConfigured instead of misbehaving later.
"""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name, default):
    value = os.getenv(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(name, default):
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envfloat(name, default):
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None


def envsecret(name, default=None):
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    path = os.getenv(name + "_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as e:
            raise ImproperlyConfigured(f"{name}_FILE names a file that cannot be read: {e.strerror}") from None
    return os.getenv(name, default)


DEBUG = envbool("DEBUG", False)
SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when DEBUG is off. For the site that "
                                   "`make run` started, run manage.py commands inside `make shell`, which has its "
                                   "settings.")
    SECRET_KEY = "insecure-development-key"  # only ever with DEBUG on

ALLOWED_HOSTS = [h for h in os.getenv("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.getenv("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "csp",
    # Before axes: dashboard's axes_reset_username and axes_reset_ip_username replace axes' own, which cannot find
    # the usernames this site stores hashed (dashboard/throttle.py).
    "tokens",
    "dashboard",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # In production the app serves its static files itself (docs/deploy.md), before anything slower runs;
    # with DEBUG on runserver does, straight from static/.
    *([] if DEBUG else ["whitenoise.middleware.WhiteNoiseMiddleware"]),
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Before any view (LoginRequiredMiddleware decides in process_view): a session whose provider no longer vouches
    # for the person ends here (dashboard/sso.py).
    "dashboard.middleware.SsoRecheckMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "dashboard.middleware.NulRefusalMiddleware",
    # Last, as axes asks: it turns a login that axes refused into the lockout response (dashboard/throttle.py).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.roles.roles",
            ],
            "builtins": ["dashboard.templatetags.picas", "template_partials.templatetags.partials"],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        # A secret (it holds PostgreSQL's password): DATABASE_URL_FILE works too.
        envsecret("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'var' / 'dashboard.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The site and the Celery worker write the same file: WAL lets pages read while a worker writes (the table
    # of token states is filled whole for a new pool), and writers wait for each other instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30, "transaction_mode": "IMMEDIATE",
                                       "init_command": "PRAGMA journal_mode=WAL;"}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "pools"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# `manage.py collectstatic` copies the files here; in production WhiteNoise serves them from here, compressed and
# with hashed names (cached for ever by browsers). With DEBUG on they are served straight from static/.
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage" if DEBUG
                    else "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- Production security (docs/deploy.md): on when DEBUG is off, each switchable for a plain-http lab --------------
# Only behind a proxy that sets these headers itself: otherwise any client could claim https or another address.
BEHIND_PROXY = envbool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Preloading is a decision for a whole registered domain (an institute's), never the dashboard's: not by default,
# and check --deploy is not to insist on it.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Pages take the CSRF token from the page (hx-headers on <body>), so no script needs to read the cookie.
CSRF_COOKIE_HTTPONLY = True
# No inline script, style or event handler anywhere (tests/test_security_settings.py renders every page to check).
# Sent by django-csp; files passed on from a pool get a policy of their own (download_csp, dashboard/web.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF], "script-src": [SELF], "style-src": [SELF], "img-src": [SELF, "data:"],
        "object-src": [NONE], "frame-ancestors": [NONE], "base-uri": [SELF], "form-action": [SELF],
    },
}
# Login throttling is django-axes' with its database handler, so that every gunicorn worker counts the same failures
# (dashboard/throttle.py adds what the site wants beyond axes): after LOGIN_MAX_FAILURES failed logins for one
# username, or LOGIN_MAX_FAILURES_PER_IP from one address, each within LOGIN_LOCKOUT_SECONDS of the one before,
# further attempts are refused until the newest of them is that old.
LOGIN_MAX_FAILURES = envint("LOGIN_MAX_FAILURES", 5)
LOGIN_MAX_FAILURES_PER_IP = envint("LOGIN_MAX_FAILURES_PER_IP", 20)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 900)
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "dashboard.throttle.AxesHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # counted apart, each against its own limit (AxesHandler)
AXES_FAILURE_LIMIT = 1  # AxesHandler answers 1 once the username or the address has reached its own limit
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_SECONDS)
# A refused attempt is not counted: it would move the end of the lockout on with every try.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "dashboard.throttle.client_ip"
AXES_USERNAME_CALLABLE = "dashboard.throttle.username_key"
AXES_LOCKOUT_CALLABLE = "dashboard.throttle.lockout_response"
# What axes keeps: the failures it counts, with the username hashed and nothing of the form typed in clear (it masks
# the password itself); no log of successful logins; log lines that name no username, address or browser.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "csrfmiddlewaretoken"]
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    # The HTTP libraries log request URLs at DEBUG; keep them quiet whatever LOG_LEVEL says.
    "loggers": {
        # Django's own handler would print every request error a second time (ours is on the root logger).
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "urllib3": {"level": "WARNING"},
        "ibm_cloud_sdk_core": {"level": "WARNING"},
        # The SDK's real logger name; at DEBUG it also turns on http.client's dump of every request and body.
        "ibm-cloud-sdk-core": {"level": "WARNING"},
    },
}

# Secrets the site keeps in its database (admin pools' CouchDB passwords, alert webhook addresses) are encrypted with
# SECRETS_KEY (tokens/secretbox.py): one key, or several comma-separated, newest first (the first encrypts, all
# decrypt; `manage.py rotate_secrets` re-encrypts with the first). Unset: derived from SECRET_KEY, so changing
# SECRET_KEY then makes them unreadable (the pages say so, and they are entered again).
SECRETS_KEYS = [k.strip() for k in (envsecret("SECRETS_KEY") or "").split(",") if k.strip()] or [
    "picas-dashboard-secrets:" + SECRET_KEY]

# --- Single sign-on (OpenID Connect: SURF's SRAM, EGI Check-in, eduTEAMS; docs/deploy.md) ----------------------
# On when OIDC_ISSUER is set. Roles come from the claim OIDC_GROUPS_CLAIM through OIDC_ROLE_MAP, refreshed at each
# login: entries "<claim value> <viewer|operator> <pool slug or *>", separated by ";" or new lines (the map may
# also come from a file, OIDC_ROLE_MAP_FILE).
OIDC_ISSUER = os.getenv("OIDC_ISSUER", "")
OIDC_CLIENT_ID = os.getenv("OIDC_CLIENT_ID", "")
OIDC_CLIENT_SECRET = envsecret("OIDC_CLIENT_SECRET", "")
OIDC_SCOPES = os.getenv("OIDC_SCOPES", "openid profile email eduperson_entitlement")
OIDC_GROUPS_CLAIM = os.getenv("OIDC_GROUPS_CLAIM", "eduperson_entitlement")
OIDC_PROVIDER_NAME = os.getenv("OIDC_PROVIDER_NAME", "your institution")
OIDC_TIMEOUT = envfloat("OIDC_TIMEOUT", 10.0)
# While a session signed in with the provider lives, the provider is asked again who the person is (their groups,
# hence their roles) every OIDC_RECHECK_MINUTES: a group taken away there takes the role away here within that time.
# The provider's configuration and keys are kept for OIDC_METADATA_SECONDS between sign-ins.
OIDC_RECHECK_MINUTES = envfloat("OIDC_RECHECK_MINUTES", 15.0)
OIDC_METADATA_SECONDS = envfloat("OIDC_METADATA_SECONDS", 3600.0)


def parse_role_map(text):
    entries = []
    for number, line in enumerate(text.replace(";", "\n").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[1] not in ("viewer", "operator"):
            raise ImproperlyConfigured(f"OIDC_ROLE_MAP entry {number} must be '<claim value> <viewer|operator> "
                                       f"<pool slug or *>', not {line.strip()!r}")
        entries.append(tuple(parts))
    return entries


OIDC_ROLE_MAP = parse_role_map(envsecret("OIDC_ROLE_MAP", "") or "")
if OIDC_ISSUER and not (OIDC_CLIENT_ID and OIDC_CLIENT_SECRET):
    raise ImproperlyConfigured("OIDC_ISSUER is set: OIDC_CLIENT_ID and OIDC_CLIENT_SECRET (or _FILE) must be too")
# Local accounts (username and password): the embedded default; may be switched off once single sign-on works.
LOCAL_LOGIN = envbool("LOCAL_LOGIN", True)
if not LOCAL_LOGIN and not OIDC_ISSUER:
    raise ImproperlyConfigured("LOCAL_LOGIN is off and OIDC_ISSUER is not set: nobody could log in")

# --- PiCaS pools -------------------------------------------------------------------------------
# Pools from the environment: one CouchDB server, one or more databases. More pools can be added by an
# admin in the Django admin (tokens.PoolConfig).
COUCHDB_URL = os.getenv("COUCHDB_URL", "")
COUCHDB_USER = os.getenv("COUCHDB_USER", "")
COUCHDB_PASSWORD = envsecret("COUCHDB_PASSWORD", "")
if "@" in COUCHDB_URL:
    # Credentials written into the URL move to their own settings, so the URL can appear in messages.
    _parts = urlsplit(COUCHDB_URL)
    COUCHDB_USER = COUCHDB_USER or unquote(_parts.username or "")
    COUCHDB_PASSWORD = COUCHDB_PASSWORD or unquote(_parts.password or "")
    COUCHDB_URL = urlunsplit(_parts._replace(netloc=_parts.netloc.rpartition("@")[2]))
COUCHDB_DATABASES = [d.strip() for d in os.getenv("COUCHDB_DATABASES", "").split(",") if d.strip()]
# A field that groups a SURF pool's tokens into observations (e.g. OBSID); empty: one row per design document.
COUCHDB_GROUP_FIELD = os.getenv("COUCHDB_GROUP_FIELD", "")
# May the dashboard create its own design document (_design/picas-dashboard) in the pools it reads?
# Without it the pool page still works from the workers' views, without the out-of-view buckets.
COUCHDB_CREATE_VIEWS = envbool("COUCHDB_CREATE_VIEWS", False)
COUCHDB_TIMEOUT = envfloat("COUCHDB_TIMEOUT", 10.0)

# Counts older than this are refreshed in the background while the page shows the ones it has.
COUNTS_MAX_AGE = envint("COUNTS_MAX_AGE", 3)
# Counts are kept up to date from the changes feed; every so often they are taken again from the view, whole.
COUNTS_REFILL_SECONDS = envint("COUNTS_REFILL_SECONDS", 3600)
# How long a refresh waits for a view whose index the server is still building (a new or much-changed pool) before
# it counts from the documents themselves and says that the index is being built.
COUNTS_INDEX_WAIT = envfloat("COUNTS_INDEX_WAIT", 5.0)
# A lock older than this many hours is stale (the Stale locks page takes ?hours=N).
STALE_LOCK_HOURS = envfloat("STALE_LOCK_HOURS", 24.0)
# The overview flags a pool as failing when at least this share of the last hour's finishes failed, and as
# stalled when tokens are left and none finished for this many hours.
OVERVIEW_ERROR_RATE = envfloat("OVERVIEW_ERROR_RATE", 0.25)
OVERVIEW_STALL_HOURS = envint("OVERVIEW_STALL_HOURS", 2)
PAGE_SIZE = envint("PAGE_SIZE", 50)
# Failure groups smaller than this share of all failures are folded into "other".
FAILURE_GROUP_MIN_SHARE = envfloat("FAILURE_GROUP_MIN_SHARE", 0.01)
# Attachments up to this size are shown inline on the token page.
INLINE_ATTACHMENT_BYTES = envint("INLINE_ATTACHMENT_BYTES", 256 * 1024)

# --- Token events: history, hosts -------------------------------------------------------------
# Every pool's changes are followed this often (a periodic task), seen or not, so that the events of the night
# are recorded as they happen; a page asks sooner (COUNTS_MAX_AGE).
EVENTS_FOLLOW_SECONDS = envint("EVENTS_FOLLOW_SECONDS", 30)
# Raw events are kept this many days; hourly rollups of them this many.
EVENTS_KEEP_DAYS = envint("EVENTS_KEEP_DAYS", 90)
EVENTS_ROLLUP_DAYS = envint("EVENTS_ROLLUP_DAYS", 365)
# A host is flagged as a black hole (it takes tokens and fails them) when, over the last BLACKHOLE_WINDOW_HOURS,
# it failed at least BLACKHOLE_MIN_FAILURES tokens, at least BLACKHOLE_RATE of those it finished, and at least
# BLACKHOLE_FACTOR times the failure rate of the rest of the pool.
BLACKHOLE_WINDOW_HOURS = envfloat("BLACKHOLE_WINDOW_HOURS", 6.0)
BLACKHOLE_MIN_FAILURES = envint("BLACKHOLE_MIN_FAILURES", 5)
BLACKHOLE_RATE = envfloat("BLACKHOLE_RATE", 0.5)
BLACKHOLE_FACTOR = envfloat("BLACKHOLE_FACTOR", 3.0)

# --- Search ------------------------------------------------------------------------------------
# Text in a token's fields (a SURL, a file name, field:value of a field no index holds) is looked for in the
# documents themselves: at most this many per pool, and the answer says so.
SEARCH_SCAN_MOST = envint("SEARCH_SCAN_MOST", 10_000)

# --- Jobs (operations on tokens) --------------------------------------------------------------
# Above this many tokens an operator confirms by typing the count (deleting always asks).
JOB_CONFIRM_THRESHOLD = envint("JOB_CONFIRM_THRESHOLD", 100)
JOB_BATCH_SIZE = envint("JOB_BATCH_SIZE", 500)
# Error tokens that failed less than this ago are left alone: a picas pilot with max_scrub scrubs and retries
# its own failures right after saving them, and a reset in between would crash that pilot's save.
JOB_FINISHED_GRACE_SECONDS = envint("JOB_FINISHED_GRACE_SECONDS", 10)
# While CouchDB is unreachable a batch is tried this many times, waiting 1, 2, 4 ... x JOB_RETRY_BACKOFF s.
JOB_RETRIES = envint("JOB_RETRIES", 4)
JOB_RETRY_BACKOFF = envfloat("JOB_RETRY_BACKOFF", 1.0)
# A running job whose worker has not reported for this long is shown as interrupted.
# A queued job no worker has taken after this many seconds is handed to the broker again (it may have lost it).
JOB_REQUEUE_SECONDS = envint("JOB_REQUEUE_SECONDS", 120)
JOB_HEARTBEAT_TIMEOUT = envint("JOB_HEARTBEAT_TIMEOUT", 300)
JOB_UPLOAD_MAX_BYTES = envint("JOB_UPLOAD_MAX_BYTES", 1024**3)  # CouchDB's own cap on SURF's servers is 1 GiB
# A token set's input list is streamed to disk and read a line at a time (1 GiB: about 8,000,000 SURLs); its config
# is read whole.
TOKENSET_INPUT_MAX_BYTES = envint("TOKENSET_INPUT_MAX_BYTES", 1024**3)
TOKENSET_CONFIG_MAX_BYTES = envint("TOKENSET_CONFIG_MAX_BYTES", 1024**2)
JOB_UPLOAD_DIR = os.getenv("JOB_UPLOAD_DIR", str(BASE_DIR / "var" / "uploads"))
# A list kept for a form (previewed, not yet created) is deleted after this long.
JOB_UPLOAD_KEEP_HOURS = envint("JOB_UPLOAD_KEEP_HOURS", 24)
# Uploads bigger than this go to a temporary file while they arrive, never into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024**2
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2

# --- Alerts (tokens/alerts.py): rules are evaluated every ALERTS_EVALUATE_SECONDS; messages go by e-mail through
# this mail server (none set: e-mail deliveries fail, and the alerts page says why) and to webhooks.
ALERTS_EVALUATE_SECONDS = envint("ALERTS_EVALUATE_SECONDS", 60)
# --- Retry rules (tokens/retries.py): checked every RETRY_RULES_SECONDS; each due rule starts an ordinary job.
RETRY_RULES_SECONDS = envint("RETRY_RULES_SECONDS", 60)
ALERT_DELIVERY_ATTEMPTS = envint("ALERT_DELIVERY_ATTEMPTS", 5)
# Who may still see a pool, asked before an alert is sent to a subscriber: the web side's roles (tokens/ imports
# nothing from dashboard/, so the check is named here).
POOL_ACCESS_CHECK = "dashboard.roles.may_view"
EMAIL_HOST = os.getenv("EMAIL_HOST", "")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = envsecret("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = envbool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = envint("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "picas-dashboard@localhost")
# The site's address as messages link to it (e.g. https://picas-dashboard.example.org); none: no links.
SITE_URL = os.getenv("SITE_URL", "").rstrip("/")

# --- Celery ------------------------------------------------------------------------------------
# `make run` and the tests start an embedded Redis and pass its URL here; a URL set outside wins.
# Secrets when they hold Redis's password: CELERY_BROKER_URL_FILE and CELERY_RESULT_BACKEND_FILE work too.
CELERY_BROKER_URL = envsecret("CELERY_BROKER_URL") or "redis://127.0.0.1:6379/0"
CELERY_RESULT_BACKEND = envsecret("CELERY_RESULT_BACKEND") or CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task whose worker died is redelivered after this long (Redis's default of an hour is too slow).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The periodic tasks (a `celery beat`, or a worker started with -B as `make run` does).
CELERY_BEAT_SCHEDULE = {
    "follow-pools": {"task": "tokens.tasks.follow_pools", "schedule": float(EVENTS_FOLLOW_SECONDS)},
    "prune-events": {"task": "tokens.tasks.prune_events", "schedule": 3600.0},
    "sweep-uploads": {"task": "tokens.tasks.sweep_uploads", "schedule": 3600.0},
    "evaluate-alerts": {"task": "tokens.tasks.evaluate_alerts", "schedule": float(ALERTS_EVALUATE_SECONDS)},
    "apply-retry-rules": {"task": "tokens.tasks.apply_retry_rules", "schedule": float(RETRY_RULES_SECONDS)},
}
CELERY_TASK_PUBLISH_RETRY = False

# --- Metrics, health and charts ---------------------------------------------------------------
# /metrics answers only a request carrying "Authorization: Bearer <METRICS_TOKEN>"; unset, /metrics is a 404.
METRICS_TOKEN = envsecret("METRICS_TOKEN", "")
# /healthz gives each outside service (database, broker, each pool's CouchDB) this many seconds to answer.
HEALTHZ_TIMEOUT = envfloat("HEALTHZ_TIMEOUT", 2.0)
# The charts' default period: tokens done and failed per hour over this many days, kept ready and recomputed (in
# the background) when older than CHART_MAX_AGE seconds. 24 hours, 7 and 30 days are computed when asked.
CHART_DAYS = envint("CHART_DAYS", 3)
if CHART_DAYS < 1:
    raise ImproperlyConfigured(f"CHART_DAYS must be at least 1, not {CHART_DAYS}")
CHART_MAX_AGE = envint("CHART_MAX_AGE", 300)
