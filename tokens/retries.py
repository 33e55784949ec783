"""Retry rules: the morning's resets of transient failures, done by rule, as ordinary jobs.

A rule (RetryRule) names which failures of a pool it retries (a failure group, a code, or any), how many attempts
a token gets in all, how long after its failure a token is retried (never within the grace period), at most how
many tokens an hour, and whether a failure on a black-hole host is held. A periodic task (`apply`) starts, per pool,
at most one rule's job at a time, and only while no other job acts on the pool: an ordinary reset job "by rule",
that reads its failures as any job does and passes every token through the same re-check before it is written,
plus the rule's own judgement (`judge`): attempts used, black-hole host, the hour's limit. A token whose attempts
are used is given up (GivenUp): never retried by rule again, shown as a bucket, retried by hand if an operator
says so.

How many times a token has failed is counted from its own history, not from `scrub_count` (which other tools set
back): the larger of the moves into a failed state the changes feed saw (TokenEvent, not the backfilled ones), the
entries of its `error` list, and one more than the resets the rules' jobs made of it (each was of a failure).
"""

import logging
import math
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from tokens import counting, engine
from tokens.couch import CouchError
from tokens.models import GivenUp, Job, JobToken, RetryPause, RetryRule, TokenEvent, TokenState, upsert_rows
from tokens.selections import FAILED, OperationError, Selection, pool_rules
from tokens.states import OWN_DDOC, classify, failed_at, failure_key

log = logging.getLogger(__name__)

PLAN_READ_MOST = 20_000  # failures a dry run reads; past that it says how far it read
SAMPLE = 10
MAX_ATTEMPTS = 100
MAX_PER_HOUR = 1_000_000
MAX_WAIT_MINUTES = 7 * 24 * 60
RETRY, GIVEN_UP, HELD, WAITING, UNKNOWN_TIME = "retry", "given_up", "held", "waiting", "unknown_time"


class RuleError(ValueError):
    """A rule cannot be made or changed as asked; the message is for the operator."""


# --- the rules ------------------------------------------------------------------------------------------------


def grace_minutes():
    return settings.JOB_FINISHED_GRACE_SECONDS / 60


def check(pool, name, code, message, attempts, wait_minutes, per_hour, rule=None):
    """A rule's fields as given (the form's text, the API's JSON, the command line's options), checked once:
    (name, code, message, attempts, wait_minutes, per_hour) or a RuleError for a person."""
    name = (name or "").strip()
    if not name:
        raise RuleError("Give the rule a name, e.g. downloads")
    if len(name) > 100 or "\x00" in name:
        raise RuleError("The name: at most 100 characters, no NUL")
    same = RetryRule.objects.filter(pool=pool.slug, name=name)
    if (same.exclude(pk=rule.pk) if rule else same).exists():
        raise RuleError(f"This pool has a rule named {name!r} already")
    code = None if code is None or str(code).strip() == "" else str(code).strip()
    if message is not None and code is None:
        raise RuleError("A rule names an error message only together with its exit code (a failure group)")
    for text, what in ((code, "exit code"), (message, "message")):
        if text is not None and (len(text) > 2000 or "\x00" in text):
            raise RuleError(f"The {what}: at most 2,000 characters, no NUL")
    attempts = _whole(attempts, "attempts", 1, MAX_ATTEMPTS, "attempts a token gets in all (the first run counts)")
    per_hour = _whole(per_hour, "per_hour", 1, MAX_PER_HOUR, "tokens retried an hour at most")
    wait = _number(wait_minutes, f"minutes after the failure, at least the grace period ({grace_minutes():g})",
                   grace_minutes(), MAX_WAIT_MINUTES)
    return name, code, message, attempts, wait, per_hour


def _whole(value, _name, least, most, what):
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise RuleError(f"Give the {what}: a whole number from {least} to {most:,}") from None
    if not math.isfinite(number) or number != int(number) or not least <= number <= most:
        raise RuleError(f"Give the {what}: a whole number from {least} to {most:,}, not {value}")
    return int(number)


def _number(value, what, least, most):
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise RuleError(f"Give the {what}: a number up to {most:,}") from None
    if not math.isfinite(number) or not least <= number <= most:
        raise RuleError(f"Give the {what}: a number from {least:g} to {most:,}, not {value}")
    return number


def make(pool, user, name, code, message, attempts, wait_minutes, per_hour, hold_black_holes=True, enabled=True):
    name, code, message, attempts, wait, per_hour = check(pool, name, code, message, attempts, wait_minutes, per_hour)
    return RetryRule.objects.create(pool=pool.slug, name=name, code=code, message=message, attempts=attempts,
                                    wait_minutes=wait, per_hour=per_hour, hold_black_holes=bool(hold_black_holes),
                                    enabled=bool(enabled), created_by=user, changed_by=user)


def change(rule, pool, user, **fields):
    """A rule changed: the fields given replace its own, checked as a new rule's are."""
    merged = {k: getattr(rule, k) for k in ("name", "code", "message", "attempts", "wait_minutes", "per_hour")}
    merged.update({k: v for k, v in fields.items() if k in merged})
    if "code" in fields and "message" not in fields and fields["code"] != rule.code:
        merged["message"] = None  # another code: the old group's message does not go with it
    (rule.name, rule.code, rule.message, rule.attempts, rule.wait_minutes,
     rule.per_hour) = check(pool, rule=rule, **merged)
    for flag in ("hold_black_holes", "enabled"):
        if flag in fields and fields[flag] is not None:
            setattr(rule, flag, bool(fields[flag]))
    rule.changed_by, rule.changed_at = user, timezone.now()
    rule.save()
    return rule


def paused(pool):
    return RetryPause.objects.filter(pool=pool.slug).first()


def pause(pool, user, on):
    """The pool's one switch: every rule paused (a running rule job ends its batch and is not followed by more)."""
    if on:
        RetryPause.objects.get_or_create(pool=pool.slug, defaults={"by": user})
        for job in Job.objects.filter(pool=pool.slug, via="rule", status__in=(Job.QUEUED, Job.RUNNING)):
            engine.cancel_job(job.pk)
    else:
        RetryPause.objects.filter(pool=pool.slug).delete()


def which(rule):
    """The failures a rule retries, in words (as its jobs' selection says them)."""
    return selection(rule).failures_in_words()


def describe(rule):
    """A rule in words, as pages, the API and the jobs say it."""
    return (f"retries {which(rule)}, {_wait_words(rule.wait_minutes)} after the failure, until a token has had "
            f"{rule.attempts} attempt{'s' if rule.attempts != 1 else ''}; at most {rule.per_hour:,} token"
            f"{'s' if rule.per_hour != 1 else ''} an hour; "
            + ("failures on a black-hole host held" if rule.hold_black_holes else "black-hole hosts not held"))


def _wait_words(minutes):
    if minutes < 1:
        return f"{minutes * 60:g} seconds"
    if minutes < 120:
        return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return f"{minutes / 60:g} hours"


def selection(rule):
    """The selection a rule's job reads: the rule's failures, failed at least its wait ago."""
    return Selection("retry", code=rule.code, message=rule.message, hours=rule.wait_minutes / 60)


def params(rule, limit):
    """What a rule's job is told, kept with the job (the rule may change or go later)."""
    return {"delete_attachments": False, "rule": rule.name, "attempts": rule.attempts,
            "hold_black_holes": rule.hold_black_holes, "limit": limit}


# --- judging failures -----------------------------------------------------------------------------------------


def failures_of(pool_slug, docs):
    """{token id: how many times it has failed}, counted from its own history (see the module's note)."""
    ids = [d["_id"] for d in docs]
    if not ids:
        return {}
    # The moves the feed saw happen (a backfilled move is read from the document itself, as its error list is
    # below: counting both would count a failure twice when the pool was first seen in the second it happened).
    events = dict(TokenEvent.objects.filter(pool=pool_slug, doc_id__in=ids, to_state__in=FAILED)
                  .exclude(origin=TokenEvent.BACKFILL).values_list("doc_id").annotate(n=Count("pk")).order_by())
    resets = dict(JobToken.objects.filter(pool=pool_slug, token_id__in=ids, outcome=JobToken.CHANGED,
                                          job__via="rule", job__action="reset")
                  .values_list("token_id").annotate(n=Count("pk")).order_by())
    counted = {}
    for doc in docs:
        errors = doc.get("error")
        listed = len(errors) if isinstance(errors, list) else 1 if errors else 0
        counted[doc["_id"]] = max(1, events.get(doc["_id"], 0), resets.get(doc["_id"], 0) + 1, listed)
    return counted


def black_hole_hosts(pool):
    data = counting.snapshot(pool).data or {}
    return {h["hostname"] for h in data.get("black_holes", [])}


def judge(pool_slug, sel, rules, docs, now, attempts, hold_hosts):
    """[(doc, verdict, failures, code, message)] for the failed tokens of `docs` in the rule's failures; the others
    are left out (the job's re-check skips them with its reason). verdict: retry, given_up (all attempts used),
    held (failed on a black-hole host in `hold_hosts`), waiting (failed too recently), unknown_time (failed at a
    time nobody knows: left to an operator)."""
    mine, keys = [], {}
    for doc in docs:
        style = rules.style_of(doc)
        if style is None or doc["_id"].startswith("_design/") or classify(doc, style) not in FAILED:
            continue
        keys[doc["_id"]] = failure_key(doc, style)
        if not sel.names_failure(*keys[doc["_id"]]):
            continue
        mine.append(doc)
    counted = failures_of(pool_slug, mine)
    judged = []
    for doc in mine:
        failed = counted[doc["_id"]]
        if failed_at(doc) is None:
            verdict = UNKNOWN_TIME
        elif failed >= attempts:
            verdict = GIVEN_UP
        elif not sel.retry_due(doc, now):  # its state and group are known already
            verdict = WAITING
        elif doc.get("hostname") in hold_hosts:
            verdict = HELD
        else:
            verdict = RETRY
        judged.append((doc, verdict, failed, *keys[doc["_id"]]))
    return judged


def give_up(pool_slug, rule, found):
    """Record the tokens judged given up, [(id, failures, code, message)] (a later judgement replaces an earlier
    one). `rule`: the rule, or the name its job kept."""
    at = timezone.now()
    pk, name = (rule.pk, rule.name) if isinstance(rule, RetryRule) else (None, rule or "")
    rows = [(pool_slug, i, pk, name, n, code, message, at) for i, n, code, message in found]
    if rows:
        upsert_rows(GivenUp, ("pool", "doc_id", "rule", "rule_name", "failures", "code", "message", "at"),
                    ("pool", "doc_id"), rows)


def reason(verdict, failed, attempts, doc):
    """Why a rule's job leaves a token as it is, as its record says."""
    if verdict == GIVEN_UP:
        return f"given up: failed {failed} time{'s' if failed != 1 else ''}, the rule allows {attempts} attempts"
    if verdict == HELD:
        return f"held: failed on {doc.get('hostname')}, a host flagged as a black hole"
    if verdict == UNKNOWN_TIME:
        return "failed at an unknown time: left to an operator"
    return "failed too recently for the rule"


class RuleRun:
    """A rule's job's judgement, batch by batch (tokens.actions.run calls it before the batch is written): what
    the rule leaves (given up, held) is recorded as skipped with its reason; at most the job's limit is passed on,
    and then `full` ends the job."""

    def __init__(self, job, pool, rules):
        self.job, self.pool, self.rules = job, pool, rules
        self.left = job.params.get("limit", 0)
        self.attempts = job.params.get("attempts", 1)
        self.hold = black_hole_hosts(pool) if job.params.get("hold_black_holes", True) else set()
        self.selection = Selection.from_dict(job.selection)

    @property
    def full(self):
        return self.left <= 0

    def sift(self, docs, now, record, save):
        judged = judge(self.pool.slug, self.selection, self.rules, docs, now, self.attempts, self.hold)
        give_up(self.pool.slug, self.job.rule or self.job.params.get("rule"),
                [(d["_id"], n, c, m) for d, v, n, c, m in judged if v == GIVEN_UP])
        judged = {d["_id"]: (v, n) for d, v, n, _c, _m in judged}
        passed, records = [], []
        for doc in docs:
            verdict, failed = judged.get(doc["_id"], (None, 0))  # None: not the rule's now; the re-check says why
            if verdict not in (None, RETRY):
                self.job.total += 1
                records.append(record(self.job, doc["_id"], JobToken.SKIPPED,
                                      reason(verdict, failed, self.attempts, doc)))
            elif not self.full:
                passed.append(doc)
                self.left -= verdict == RETRY
        save(self.job, records)
        return passed


# --- dry run, and what a rule did ---------------------------------------------------------------------------


def used_this_hour(rule, now=None):
    since = (now or timezone.now()) - timedelta(hours=1)
    return JobToken.objects.filter(job__rule=rule, outcome=JobToken.CHANGED, job__created_at__gte=since).count()


def plan(rule, pool, now=None, read_most=PLAN_READ_MOST, enough=None):
    """What the rule would do now, writing nothing: how many failures it would retry (and which first), how many it
    gives up, holds or waits for, as far as it read. `enough`: stop once that many would be retried."""
    now = now or timezone.now()
    sel = selection(rule)
    couch = pool.couch()
    rules = pool_rules(pool, couch)
    if not rules.own_views:
        raise OperationError("Retry rules need the dashboard's own design document in this pool "
                             "(COUCHDB_CREATE_VIEWS)")
    hold = black_hole_hosts(pool) if rule.hold_black_holes else set()
    quota = max(0, rule.per_hour - used_this_hour(rule, now))
    found = {v: [] for v in (RETRY, GIVEN_UP, HELD, WAITING, UNKNOWN_TIME)}
    held_hosts, read, complete = {}, 0, True
    stamp = now.timestamp()
    for view, start, end in sel.view_ranges(stamp):
        key = start
        while key is not None:
            page = couch.page(OWN_DDOC, view, limit=500, start_key=key, end_key=end, include_docs=True)
            docs = [r["doc"] for r in page.rows if r.get("doc")]
            read += len(docs)
            judged = judge(pool.slug, sel, rules, docs, stamp, rule.attempts, hold)
            for doc, verdict, failed, code, message in judged:
                found[verdict].append((doc["_id"], failed, code, message))
                if verdict == HELD:
                    held_hosts[doc.get("hostname")] = held_hosts.get(doc.get("hostname"), 0) + 1
            key = page.next_key if page.has_next else None
            if key is not None and (read >= read_most or enough and len(found[RETRY]) >= enough):
                complete = False
                break
        if not complete:
            break
    would = found[RETRY]
    return {"quota": quota, "would_retry": min(len(would), quota),
            "retry_sample": [f[0] for f in would[:min(quota, SAMPLE)]],
            "beyond_quota": max(0, len(would) - quota), "given_up": len(found[GIVEN_UP]),
            "given_up_sample": [{"id": f[0], "failures": f[1]} for f in found[GIVEN_UP][:SAMPLE]],
            "given_up_found": found[GIVEN_UP], "held": len(found[HELD]), "held_hosts": held_hosts,
            "waiting": len(found[WAITING]), "unknown_time": len(found[UNKNOWN_TIME]), "read": read,
            "complete": complete, "paused": bool(paused(pool)), "enabled": rule.enabled}


def did(rule, now=None, hours=24):
    """What the rule's jobs did in the last `hours`: each job, and the sums."""
    since = (now or timezone.now()) - timedelta(hours=hours)
    jobs = list(Job.objects.filter(rule=rule, created_at__gte=since).order_by("-created_at"))
    given_up = JobToken.objects.filter(job__in=jobs, reason__startswith="given up").count() if jobs else 0
    return {"hours": hours, "jobs": jobs, "retried": sum(j.changed for j in jobs), "given_up": given_up,
            "skipped": sum(j.skipped for j in jobs)}


def given_up(pool_slug):
    """The given-up tokens that are failed still (GivenUp rows of tokens that moved on no longer count)."""
    return Selection("given_up").given_up_tokens(pool_slug)


# --- the periodic task ----------------------------------------------------------------------------------------


def apply(now=None, pools=None):
    """Make the rule jobs that are due (the caller queues them): per pool not paused, the first enabled rule with
    failures to retry and room in its hour, and only while no other job is queued or running on the pool (an
    operator's job goes first; the rule looks again at the next check). Returns the jobs made."""
    from tokens.pools import all_pools

    now = now or timezone.now()
    made = []
    for pool in pools or all_pools():
        rules_ = list(RetryRule.objects.filter(pool=pool.slug, enabled=True))
        _forget_moved(pool.slug)
        if not rules_ or paused(pool):
            continue
        if Job.objects.filter(pool=pool.slug, status__in=(Job.QUEUED, Job.RUNNING)).exists():
            continue
        for rule in rules_:
            quota = max(0, rule.per_hour - used_this_hour(rule, now))
            try:
                # Enough to know there is work: the job reads the rest (a check that read every failure first
                # would read a pool of 100,000 failures twice).
                seen = plan(rule, pool, now, enough=1)
            except (CouchError, OperationError) as e:
                log.warning("retry rule %s on %s: %s", rule.name, pool.slug, e)
                continue
            give_up(pool.slug, rule, seen["given_up_found"])
            if not quota or not seen["would_retry"]:
                continue
            expected = min(quota, max(seen["would_retry"], counted_failures(pool, rule)))
            job = Job.objects.create(pool=pool.slug, user=None, via="rule", rule=rule, action="reset",
                                     selection=selection(rule).as_dict(), params=params(rule, quota),
                                     preview_count=expected, preview_sample=seen["retry_sample"])
            log.info("job %s created by retry rule %s on %s: up to %d tokens", job.pk, rule.name, pool.slug, quota)
            made.append(job)
            break  # one rule job at a time per pool
    return made


def counted_failures(pool, rule):
    """How many failures of the rule's kind the pool's latest counts hold (its failure groups): the most its job
    can retry, the job's expected count (some of them wait, are held or given up)."""
    data = counting.snapshot(pool).data or {}
    sel = selection(rule)
    return sum(n for code, message, _t, _g, n in data.get("failures", []) if sel.names_failure(code, message))


def _forget_moved(pool_slug):
    """Given-up records of tokens no longer failed are dropped (an operator retried them and they succeeded, or
    they were deleted): a token that fails again is judged afresh."""
    still = TokenState.objects.filter(pool=pool_slug, doc_id=OuterRef("doc_id"), bucket__in=FAILED)
    moved = GivenUp.objects.filter(pool=pool_slug).exclude(Exists(still))
    # Read first: every pool is looked at every minute, and on SQLite even a DELETE of no rows waits for the one
    # writer (a job's batch, a refill of the counts).
    if moved.exists():
        moved.delete()
