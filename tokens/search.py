"""Search across pools: one box for a token id, an observation, a host, a job number, a user, or text in a token's
fields (a SURL, a file name), and `field:value` for any token field.

What has an index is answered from one: token ids (and their state) from the table of states kept from the changes
feed (TokenState, by pool and id), observations from the pools' counts, hosts from the hourly host table, jobs and
users from the jobs table. Text in a token's fields has no index anywhere (CouchDB keeps none of the workers'
fields), so it is looked for in the documents themselves, at most SCAN_MOST of them per pool, and the answer says
how far it read: a search never reads a whole pool of a million tokens.
"""

import json
import re
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count

from tokens import counting
from tokens.couch import CouchError
from tokens.models import HostHour, Job, TokenState
from tokens.reading import observations, pool_totals
from tokens.states import classify, js_string, style_of

MOST = 20  # matches of each kind shown
MAX_QUERY = 500
# `field:value`: a field's name as the workers write them (a SURL's scheme, srm://..., is not a field)
FIELD_QUERY = re.compile(r"^([A-Za-z_][A-Za-z0-9_.-]{0,99}):(?!//)(.*)$", re.S)
JOB_NUMBER = re.compile(r"^#?(\d{1,12})$")
# Fields the dashboard indexes: answered from its tables, not by reading documents.
INDEXED_FIELDS = {"_id": "id", "id": "id", "hostname": "host"}


class SearchError(ValueError):
    """A query that cannot be searched; the message is for the person who typed it."""


@dataclass
class Match:
    kind: str  # token, observation, host, job, user
    pool: str  # the pool's slug ("" for a user)
    label: str
    state: str = ""  # a token's state (its bucket), a job's status
    detail: str = ""  # what else helps to tell matches apart
    params: dict = field(default_factory=dict)  # what the match's page needs (id, type and group, hostname, pk)


@dataclass
class Found:
    query: str
    matches: list
    notes: list  # what the search could not do, or did only in part, in words
    field: str | None = None  # the field of a field:value query



def parse(text):
    """(field, value) of a query: field None for a plain one. SearchError when there is nothing to search."""
    text = (text or "").strip()
    if not text:
        raise SearchError("Type what to look for: a token id, an observation, a host, a job number, a user, a SURL "
                          "or a file name, or field:value")
    if len(text) > MAX_QUERY or "\x00" in text:
        raise SearchError(f"Search for at most {MAX_QUERY} characters, without NUL")
    named = FIELD_QUERY.match(text)
    if named:
        return named.group(1), named.group(2).strip()
    return None, text


def search(pools, text):
    """The matches of `text` in `pools` (the pools the asker may see) and among the jobs on them."""
    name, value = parse(text)
    slugs = [p.slug for p in pools]
    if name is not None:
        if not value:
            raise SearchError(f"Give a value after {name}:")
        kind = INDEXED_FIELDS.get(name)
        if kind == "id":
            return Found(text, tokens_by_id(slugs, value), [], name)
        if kind == "host":
            return Found(text, hosts(slugs, value), [], name)
        matches, notes = scan(pools, value, name)
        return Found(text, matches, notes, name)
    matches = tokens_by_id(slugs, value) + observations_named(pools, value) + hosts(slugs, value)
    matches += jobs(slugs, value) + users(slugs, value)
    notes = []
    # Text no index holds is looked for in the documents only when the indexes found nothing: a host's name looks
    # like a file name too, and is found at once.
    if not matches and looks_like_a_field_value(value):
        matches, notes = scan(pools, value, None)
    return Found(text, matches, notes)


def looks_like_a_field_value(value):
    """A SURL, a path or a file name: text the workers write in a token's fields, searched in the documents."""
    return "/" in value or "." in value or ":" in value


def tokens_by_id(slugs, value):
    """Tokens whose id is `value` or starts with it (exact ones first), from the table of states: an index range,
    as fast at a million tokens as at ten."""
    rows = (TokenState.objects.filter(pool__in=slugs, doc_id__gte=value, doc_id__lt=value + "\U0010ffff")
            .order_by("doc_id", "pool").values_list("pool", "doc_id", "bucket", "type", "group")[:MOST])
    # The first MOST in the index's order, shown in a person's: token_13 before token_127.
    found = sorted(rows, key=lambda r: (r[1] != value, natural(r[1]), r[0]))
    return [Match("token", pool, doc_id, bucket, _observation_words(type_, group),
                  {"id": doc_id}) for pool, doc_id, bucket, type_, group in found]


def natural(text):
    """A sort key that orders the numbers in a text by their value: token_13 before token_127."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def _observation_words(type_, group):
    kind = "" if type_ == "token" else f"type {type_}"  # SURF's one type says nothing; GRID_LRT's name a step
    return " · ".join(filter(None, (f"observation {group}" if group not in (None, "") else "", kind)))


def observations_named(pools, value):
    """Observations (a token type, and a group) whose name holds `value`, from each pool's latest counts."""
    wanted, found = value.casefold(), []
    for pool in pools:
        data = counting.snapshot(pool).data
        if not data:
            continue
        for o in observations(data):
            names = (o.label or "", "" if o.group is None else str(o.group), o.type)
            if any(wanted in n.casefold() for n in names):
                total = sum(o.counts.values())
                done = o.counts.get("done", 0)
                found.append(Match("observation", pool.slug, o.label or o.type, "",
                                   f"{done:,} of {total:,} token{'s' if total != 1 else ''} done",
                                   {"type": o.type, "group": o.group}))
    found.sort(key=lambda m: (m.label.casefold() != wanted, m.label, m.pool))
    return found[:MOST]


def hosts(slugs, value):
    """Worker hosts whose name holds `value`, as the hourly host table has seen them (the hosts page's source)."""
    rows = (HostHour.objects.filter(pool__in=slugs, hostname__icontains=value).values("pool", "hostname")
            .distinct().order_by("pool", "hostname")[:MOST])
    return [Match("host", r["pool"], r["hostname"], "", "a worker host", {"hostname": r["hostname"]})
            for r in rows]


def jobs(slugs, value):
    number = JOB_NUMBER.match(value)
    if not number:
        return []
    return [Match("job", j.pool, f"Job {j.pk}", j.status, j.action, {"pk": j.pk})
            for j in Job.objects.filter(pk=int(number.group(1)), pool__in=slugs)]


def users(slugs, value):
    """People whose jobs are on these pools, by user name (the audit list filtered to them)."""
    rows = (User.objects.filter(username__icontains=value, job__pool__in=slugs).annotate(n=Count("job"))
            .order_by("username")[:MOST])
    return [Match("user", "", u.username, "", f"{u.n} job{'s' if u.n != 1 else ''}", {"user": u.username})
            for u in rows]


def scan(pools, value, name):
    """Tokens with `value` in field `name` (None: in any field), read from the documents themselves, at most
    SEARCH_SCAN_MOST per pool; the notes say where it stopped. A value matches a field's text as JavaScript writes
    it (numbers too), case-insensitively, in part: `input:L229585` finds every SURL of that observation."""
    most, wanted = settings.SEARCH_SCAN_MOST, value.casefold()
    matches, notes, cut = [], [], []
    for pool in pools:
        data = counting.snapshot(pool).data or {}
        couch, styles = pool.couch(), data.get("types", {})
        after, read, mine = None, 0, []
        try:
            while read < most and len(mine) < MOST:
                page = couch.documents(min(1000, most - read), after)
                for row in page.rows:
                    doc = row.get("doc") or {}
                    if not row["id"].startswith("_design/") and doc and _holds(doc, name, wanted):
                        mine.append(Match("token", pool.slug, row["id"], classify(doc, style_of(doc, styles)) or "",
                                          _where(doc, name, wanted), {"id": row["id"]}))
                read += len(page.rows)
                if not page.has_next:
                    break
                after = page.next_key
            else:
                total = sum(pool_totals(data).values()) if data else None
                if len(mine) < MOST and total is not None and read < total:
                    cut.append(f"{pool.name} ({read:,} of {total:,})")  # stopped at the bound, not at MOST
        except CouchError as e:
            notes.append(f"{pool.name}: not searched ({e})")
            continue
        matches += mine[:MOST]
    if cut:
        what = f"field {name!r}" if name else "the tokens' fields"
        notes.append(f"No index holds {what}: the documents themselves were read, at most "
                     f"{most:,} per pool, so this is not every match. Read: {', '.join(cut)}. A token id, an "
                     "observation or a host is found at once.")
    return matches, notes


def _holds(doc, name, wanted):
    if name is not None:
        return name in doc and wanted in field_text(doc[name]).casefold()
    return any(wanted in field_text(v).casefold() for k, v in doc.items() if not k.startswith("_"))


def field_text(value):
    """A field's value as text: a number or a string as JavaScript writes it, a list or an object as JSON (a
    GRID_LRT token's nested settings)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return js_string(value)


def _where(doc, name, wanted):
    """The field that matched and its text, cut: which of a token's SURLs it was."""
    for key in [name] if name else [k for k in doc if not k.startswith("_")]:
        text = field_text(doc.get(key))
        at = text.casefold().find(wanted)
        if at >= 0:
            start = max(0, at - 30)
            return f"{key}: {'…' if start else ''}{text[start:at + len(wanted) + 50]}"
    return ""

