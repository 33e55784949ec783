import os
from pathlib import Path

from django.core.validators import RegexValidator
from django.db import connection, models, transaction
from django.utils import timezone

from tokens import secretbox


def insert_rows(model, fields, rows):
    """Insert rows (tuples in the order of `fields`) with one executemany. For the hot paths (a job's per-token
    records, a first count's states): bulk_create builds a model instance and compiles every row's values in
    Python, which took more of a job's time on CouchDB 3 than the server's own writes."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(model._meta.get_field(f).column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    with transaction.atomic(), connection.cursor() as cursor:  # one commit, not one a row
        cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def upsert_rows(model, fields, unique, rows, merge=None):
    """insert_rows, where a row with the same `unique` fields is updated instead (ON CONFLICT ... DO UPDATE, as
    SQLite and PostgreSQL both say it): each other field takes the new value, or is merged with it as `merge`
    says ({field: "add" | "min" | "max"}), for rollups."""
    quote, meta, merge = connection.ops.quote_name, model._meta, merge or {}
    table = quote(meta.db_table)
    columns = [quote(meta.get_field(f).column) for f in fields]
    keys = ", ".join(quote(meta.get_field(f).column) for f in unique)
    least, greatest = ("min", "max") if connection.vendor == "sqlite" else ("LEAST", "GREATEST")
    how = {None: "excluded.{c}", "add": "{t}.{c} + excluded.{c}", "min": least + "({t}.{c}, excluded.{c})",
           "max": greatest + "({t}.{c}, excluded.{c})"}
    updates = ", ".join(f"{c} = " + how[merge.get(f)].format(t=table, c=c)
                        for f, c in zip(fields, columns, strict=True) if f not in unique)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(fields))}) "
                           f"ON CONFLICT ({keys}) DO UPDATE SET {updates}", rows)


def rows_where_in(model, fields, pool, column, values):
    """[(fields...)] of the rows of `pool` whose `column` is one of `values`, in one SELECT: the changes feed's hot
    path, where building a 1,000-value IN lookup through the ORM cost more than the query."""
    if not values:
        return []
    quote, meta = connection.ops.quote_name, model._meta
    names = ", ".join(quote(meta.get_field(f).column) for f in fields)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('pool').column)} = %s "
                       f"AND {quote(meta.get_field(column).column)} IN ({', '.join(['%s'] * len(values))})",
                       [pool, *values])
        return cursor.fetchall()


class PoolConfig(models.Model):
    """A pool added by an admin (pools from the environment are not stored here)."""

    slug = models.SlugField(unique=True, help_text="Short name used in URLs.")
    name = models.CharField(max_length=100, blank=True)
    url = models.URLField(help_text="CouchDB server, e.g. https://picas.surfsara.nl:6984 (no credentials here).")
    database = models.CharField(max_length=200)
    username = models.CharField(max_length=200, blank=True)
    # The password is never stored in clear: encrypted with SECRETS_KEY (tokens/secretbox.py), or not stored at all
    # but read from an environment variable or the file its NAME_FILE names (container secrets).
    password_sealed = models.TextField(blank=True, editable=False)
    password_env = models.CharField(
        max_length=100, blank=True, validators=[RegexValidator(r"^[A-Za-z_][A-Za-z0-9_]*$", "An environment "
                                                                "variable's name: letters, digits and _")],
        help_text="Read the password from this environment variable, or from the file named by its _FILE "
                  "variable (e.g. LOFAR_COUCHDB_PASSWORD, LOFAR_COUCHDB_PASSWORD_FILE), instead of storing it.")
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

    @property
    def password(self):
        """The password in clear, for the adapter only. A SecretError when it cannot be had."""
        if self.password_env:
            return secret_from_environment(self.password_env)
        return secretbox.open_sealed(self.password_sealed, f"The stored password of pool {self.slug}")

    @password.setter
    def password(self, plain):
        self.password_sealed = secretbox.seal(plain)


def secret_from_environment(name):
    """NAME's value, or the content of the file NAME_FILE names (without its final newline)."""
    path = os.environ.get(name + "_FILE")
    if path:
        try:
            return Path(path).read_text().rstrip("\n")
        except OSError as e:
            raise secretbox.SecretError(f"{name}_FILE names a file that cannot be read ({e.strerror})") from None
    if name not in os.environ:
        raise secretbox.SecretError(f"Neither {name} nor {name}_FILE is set in the site's environment")
    return os.environ[name]


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
    # Where the table of token states (TokenState) stands: the last change applied, when and for which own design
    # document it was last filled whole. Refreshes advance `seq` with a compare-and-set, so two never both apply.
    seq = models.TextField(blank=True)
    filled_at = models.DateTimeField(null=True)
    filled_for = models.CharField(max_length=64, blank=True)
    # When a worker was asked to count the pool again (COUNTS_REFILL_SECONDS), then when it began: one at a time;
    # cleared when it ends.
    recount_started_at = models.DateTimeField(null=True)
    # When the refresh that took `data` began (it holds every change made before): a refresh that began earlier and
    # ends later does not replace it.
    began_at = models.DateTimeField(null=True)
    # Token events (TokenEvent) are recorded from `events_from` on; what came before was backfilled from the
    # documents' own times once `backfilled` is set.
    events_from = models.DateTimeField(null=True)
    backfilled = models.BooleanField(default=False)

    def __str__(self):
        return f"counts of {self.pool}"

    def age(self):
        return (timezone.now() - self.taken_at).total_seconds() if self.taken_at else None


class TokenState(models.Model):
    """The bucket and observation of one token, as the own `states` view has it, kept up to date from the
    database's changes feed: counts are a GROUP BY here instead of a reduce over the whole pool."""

    # The pool column of the rows a fill or recount is staging (tokens.counting._fill, _recount): no slug starts so,
    # a slug has no "~". The time after it lets events.prune delete what a process killed in the middle left.
    STAGING = "~fill~"

    pool = models.CharField(max_length=100)
    doc_id = models.CharField(max_length=1000)
    bucket = models.CharField(max_length=20)
    type = models.CharField(max_length=200)
    group = models.CharField(max_length=1000, null=True)  # noqa: DJ001 - no group (null) differs from ""
    hostname = models.TextField(blank=True)  # the worker host that last claimed it, as it says (any length)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "doc_id"], name="token_state_unique")]
        indexes = [models.Index(fields=["pool", "bucket", "type", "group"], name="token_state_counts")]

    def __str__(self):
        return f"{self.doc_id} in {self.pool}: {self.bucket}"


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


class Job(models.Model):
    """An operation on the tokens of a pool: its header (who, what, preview) and its tail (outcome, counts).

    The record is the job's truth: it survives site and worker restarts, and the per-token outcomes in
    JobToken say exactly what was written.
    """

    QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = (
        "queued", "running", "succeeded", "failed", "cancelled", "interrupted")
    ENDED = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
    QUEUED_TO_ENDED = (QUEUED, RUNNING, *ENDED)

    pool = models.CharField(max_length=100, db_index=True)
    user = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL)
    via = models.CharField(max_length=10, default="web")  # web, api, cli, rule
    shell_user = models.CharField(max_length=150, blank=True)  # the login that ran a command-line job
    # A job a retry rule started (via "rule"): the rule's name stays in `params` should the rule be removed.
    rule = models.ForeignKey("RetryRule", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    action = models.CharField(max_length=20)
    selection = models.JSONField()
    params = models.JSONField(default=dict)
    preview_count = models.PositiveIntegerField()
    preview_sample = models.JSONField(default=list)

    status = models.CharField(max_length=12, default=QUEUED)
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)
    heartbeat_at = models.DateTimeField(null=True)
    enqueued_at = models.DateTimeField(null=True)  # last handed to the broker (None: the broker was down)
    cancel_requested = models.BooleanField(default=False)

    total = models.PositiveIntegerField(default=0)  # tokens read from the selection so far
    changed = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    conflicts = models.PositiveIntegerField(default=0)  # 409s, each re-read and re-checked
    failed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"job {self.pk}: {self.action} on {self.pool}"

    @property
    def ended(self):
        return self.status in self.ENDED

    @property
    def percent(self):
        if self.ended:
            return 100
        return min(99, round(100 * self.total / self.preview_count)) if self.preview_count else 0


class JobToken(models.Model):
    """What one job did to one token, and why: the per-token provenance."""

    CHANGED, SKIPPED, FAILED = "changed", "skipped", "failed"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="tokens")
    pool = models.CharField(max_length=100)
    token_id = models.CharField(max_length=500)
    outcome = models.CharField(max_length=10)
    reason = models.CharField(max_length=300, blank=True)
    conflicted = models.BooleanField(default=False)  # a 409 happened on the way to this outcome
    # written, but a cluster took it on fewer copies than its write quorum (202): not yet safe
    unconfirmed = models.BooleanField(default=False)
    rev_before = models.CharField(max_length=100, blank=True)
    rev_after = models.CharField(max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["pool", "token_id"])]

    def __str__(self):
        return f"{self.token_id}: {self.outcome}"


class TokenEvent(models.Model):
    """One move of a token between states, as the changes feed showed it: append-only, never updated.

    A token that moved several times between two reads of the feed shows as one move (CouchDB keeps only the
    newest revision). For a pool seen for the first time, the moves its documents' own times tell (lock, done,
    error[].time) are backfilled, marked so. Raw events are kept EVENTS_KEEP_DAYS; the hourly rollups
    (ObservationHour, HostHour), written with them, EVENTS_ROLLUP_DAYS.
    """

    CHANGE, BACKFILL, RECOUNT = "change", "backfill", "recount"
    CREATED, DELETED = "", "deleted"  # from_state of a new token, to_state of a deleted one

    pool = models.CharField(max_length=100)
    doc_id = models.CharField(max_length=1000)
    type = models.CharField(max_length=200)
    group = models.CharField(max_length=1000, null=True)  # noqa: DJ001 - as TokenState.group
    at = models.DateTimeField()
    from_state = models.CharField(max_length=20, blank=True)
    to_state = models.CharField(max_length=20)
    hostname = models.TextField(blank=True)
    exit_code = models.TextField(blank=True)  # of a failure, as the failure groups key it
    message = models.TextField(blank=True)  # of a failure: its normalised message, the failure group's other half
    scrub_count = models.IntegerField(null=True)
    run_seconds = models.FloatField(null=True)  # lock to done, where both are times
    rev = models.CharField(max_length=100, blank=True)  # the revision that made the move: a job's record names it
    origin = models.CharField(max_length=10, default=CHANGE)

    class Meta:
        indexes = [
            models.Index(fields=["pool", "at"], name="token_event_time"),
            models.Index(fields=["pool", "doc_id", "at"], name="token_event_token"),
            models.Index(fields=["pool", "hostname", "at"], name="token_event_host"),
            models.Index(fields=["pool", "exit_code", "message"], name="token_event_failure"),
        ]

    def __str__(self):
        return f"{self.doc_id} in {self.pool}: {self.from_state or 'new'} -> {self.to_state}"


class ObservationHour(models.Model):
    """Events per hour, pool, observation, state and failure group: what the charts, the history and the failure
    groups' observations read. Kept up to date as events are recorded (in the same transaction), so that a month
    of charts reads hours x observations rows, not every event; kept EVENTS_ROLLUP_DAYS. One of two rollups: an
    hour x observation x host table would hold nearly a row per event when a pool's work is spread thin."""

    pool = models.CharField(max_length=100)
    hour = models.DateTimeField()
    key = models.CharField(max_length=32)  # a digest of the other fields (group may be null): the upsert's target
    type = models.CharField(max_length=200)
    group = models.CharField(max_length=1000, null=True)  # noqa: DJ001 - as TokenState.group
    to_state = models.CharField(max_length=20)
    exit_code = models.TextField(blank=True)
    message = models.TextField(blank=True)
    backfill = models.BooleanField(default=False)  # from backfilled events: a re-run backfill replaces these
    count = models.PositiveIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "hour", "key"], name="observation_hour_key")]

    def __str__(self):
        return f"{self.count} to {self.to_state} in {self.pool} at {self.hour}"


class HostHour(models.Model):
    """Events per hour, pool, host, state and failure group, with the first and last event's time: what the hosts
    page, the black-hole check and the failure groups' hosts, first and last seen read. As ObservationHour."""

    pool = models.CharField(max_length=100)
    hour = models.DateTimeField()
    key = models.CharField(max_length=32)
    hostname = models.TextField(blank=True)
    to_state = models.CharField(max_length=20)
    exit_code = models.TextField(blank=True)
    message = models.TextField(blank=True)
    backfill = models.BooleanField(default=False)
    count = models.PositiveIntegerField()
    first = models.DateTimeField()
    last = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "hour", "key"], name="host_hour_key")]
        indexes = [models.Index(fields=["pool", "exit_code", "message"], name="host_hour_failure")]

    def __str__(self):
        return f"{self.count} to {self.to_state} on {self.hostname or 'no host'} in {self.pool} at {self.hour}"


class ExitCodeMeaning(models.Model):
    """What an exit code means in one pool, as its operators know it: shown wherever the code is."""

    pool = models.SlugField(help_text="The pool's short name (as in its URL).")
    code = models.CharField(max_length=100, help_text='As the failure groups show it, e.g. 3, "(none)".')
    meaning = models.CharField(max_length=300)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "code"], name="exit_code_meaning_unique")]
        ordering = ["pool", "code"]

    def __str__(self):
        return f"{self.pool}: exit code {self.code}"


class AlertRule(models.Model):
    """A condition on a pool that operators want to hear about, set in the site (tokens.alerts evaluates it)."""

    ERROR_RATE, STALE_LOCKS, NO_PROGRESS, BLACK_HOLE, OBSERVATION_FINISHED, JOB_FAILED, GIVEN_UP = (
        "error_rate", "stale_locks", "no_progress", "black_hole", "observation_finished", "job_failed", "given_up")
    KINDS = (ERROR_RATE, STALE_LOCKS, NO_PROGRESS, BLACK_HOLE, OBSERVATION_FINISHED, JOB_FAILED, GIVEN_UP)

    pool = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=30)
    threshold = models.FloatField(null=True)  # a share (error rate) or a count (stale locks)
    hours = models.FloatField(null=True)  # the window (error rate, no progress)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    # What the rule has already seen (observations finished when it was made): so that it tells only news.
    seen = models.JSONField(default=list)

    class Meta:
        ordering = ["pool", "kind", "pk"]

    def __str__(self):
        return f"{self.kind} on {self.pool}"


class Alert(models.Model):
    """One firing of a rule, for one subject (a host, an observation, a job; "" for the pool), with its evidence;
    resolved when the condition no longer holds. A notice (an observation finished, a job failed) does not
    resolve: it is news, told once."""

    FIRING, RESOLVED, NOTICE = "firing", "resolved", "notice"

    rule = models.ForeignKey(AlertRule, null=True, on_delete=models.SET_NULL, related_name="alerts")
    pool = models.CharField(max_length=100, db_index=True)
    kind = models.CharField(max_length=30)
    subject = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10)
    summary = models.TextField()  # in words, as the messages say it
    evidence = models.JSONField(default=dict)
    fired_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True)
    resolution = models.TextField(blank=True)

    class Meta:
        ordering = ["-fired_at", "-pk"]

    def __str__(self):
        return f"{self.status}: {self.summary}"


class Subscription(models.Model):
    """A user's wish to be told of a pool's alerts: by e-mail (to the user's address) and/or to a webhook."""

    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="alert_subscriptions")
    pool = models.CharField(max_length=100)
    email = models.BooleanField(default=True)
    # A Mattermost or Slack webhook's address is its secret: stored encrypted (tokens/secretbox.py).
    webhook_sealed = models.TextField(blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "pool"], name="subscription_unique")]

    def __str__(self):
        return f"{self.user} on {self.pool}"

    @property
    def webhook_url(self):
        return secretbox.open_sealed(self.webhook_sealed, "The webhook address")

    @webhook_url.setter
    def webhook_url(self, url):
        self.webhook_sealed = secretbox.seal(url)


class Delivery(models.Model):
    """One message of an alert (its firing, notice or recovery) to one e-mail address or webhook: retried until
    sent or ALERT_DELIVERY_ATTEMPTS have failed, and shown either way."""

    PENDING, SENT, FAILED = "pending", "sent", "failed"
    EMAIL, WEBHOOK = "email", "webhook"

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="deliveries")
    message = models.CharField(max_length=10)  # firing, notice, resolved: which news it carries
    channel = models.CharField(max_length=10)
    target = models.TextField()  # the e-mail address, or the webhook's URL encrypted (tokens/secretbox.py)
    status = models.CharField(max_length=10, default=PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.channel} delivery: {self.status}"

    @property
    def address(self):
        """Where it goes, in clear (a webhook's URL is a secret: shown only through notify.where)."""
        if self.channel == self.WEBHOOK:
            return secretbox.open_sealed(self.target, "The webhook address")
        return self.target


class RetryRule(models.Model):
    """Which failures of a pool are retried by themselves (tokens.retries), and how far: set by operators.

    A failure matches by its group (exit code and normalised message, as the failure groups show it), by its code
    alone (`message` None) or any failure (`code` None). A token gets `attempts` runs in all, counted from its own
    failures (tokens.attempts); it is retried no sooner than `wait_minutes` after it failed (never within the
    grace period), at most `per_hour` tokens an hour, and a failure on a host flagged as a black hole is held
    (named, not retried) unless `hold_black_holes` is off."""

    pool = models.CharField(max_length=100, db_index=True)
    name = models.CharField(max_length=100)
    code = models.CharField(max_length=2000, null=True, blank=True)  # noqa: DJ001 - None: any code
    message = models.CharField(max_length=2000, null=True, blank=True)  # noqa: DJ001 - None: any message
    attempts = models.PositiveIntegerField()
    wait_minutes = models.FloatField()
    per_hour = models.PositiveIntegerField()
    hold_black_holes = models.BooleanField(default=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pool", "name"]
        constraints = [models.UniqueConstraint(fields=["pool", "name"], name="retry_rule_name")]

    def __str__(self):
        return f"retry rule {self.name} on {self.pool}"


class RetryPause(models.Model):
    """The one switch that pauses every retry rule of a pool: a row while paused, by whom and since when."""

    pool = models.CharField(max_length=100, unique=True)
    by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    at = models.DateTimeField(default=timezone.now)

    def __str__(self):
        return f"retry rules of {self.pool} paused"


class GivenUp(models.Model):
    """A failed token a retry rule found with all its attempts used: it is not retried by rule again. It counts as
    given up while the token is still failed (TokenState); an operator may retry it by hand."""

    pool = models.CharField(max_length=100)
    doc_id = models.CharField(max_length=1000)
    rule = models.ForeignKey(RetryRule, null=True, on_delete=models.SET_NULL, related_name="+")
    rule_name = models.CharField(max_length=100)
    failures = models.PositiveIntegerField()
    code = models.TextField(blank=True)
    message = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["pool", "doc_id"], name="given_up_unique")]

    def __str__(self):
        return f"{self.doc_id} in {self.pool}: given up after {self.failures} failures"
