"""New token sets: one token per chunk of an input list, with fields from a pipeline-step config.

The semantics are GRID_LRT's TokenSet (0.5 YAML API): only the config's `Token:` section becomes fields; a list of
SURLs is one observation, de-duplicated, keyed by subband (`SB(\\d+)_`) and cut into chunks of N consecutive
subbands keyed by the chunk's first subband (gaps kept, empty chunks dropped); each token gets its chunk as an
attachment. Every token also carries the fields a picas worker reads, and an existing id is never overwritten.
"""

import base64
import copy
import itertools
import math
import os
import re
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from django.conf import settings

from tokens import engine
from tokens.couch import Conflict, NotFound
from tokens.selections import OperationError, needs_typed_confirmation
from tokens.uploads import kept_upload, link_upload, name_of, remember_name, save_text, save_upload
from tokens.worker_views import lrt_design_doc, surf_design_doc

# What a picas worker reads: a token without scrub_count crashes it (contract §2). The config may override them.
PICAS_FIELDS = {"lock": 0, "done": 0, "hostname": "", "scrub_count": 0, "input": "", "exit_code": "",
                "output": {}, "uploads": {}, "error": []}
SURL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://\S+$")
OBSID = re.compile(r"L[0-9]+")
SUBBAND = re.compile(r"SB(\d+)_")
ID_FIELDS = ("type", "obsid", "suffix", "step", "prefix", "key")


class TokenSetError(OperationError):
    """The config, the list or the options cannot make a token set; the message says why."""


MAX_OPTION = 200  # characters in a token type, a key field, an id's parts, an attachment's name
MAX_PER_TOKEN = 1_000_000  # items in one token: more would make one token of a whole list (and overflow SQLite)


@dataclass
class Options:
    token_type: str
    per_token: int = 10
    key_field: str = "STARTSB"
    id_prefix: str = "SB"
    id_suffix: str = ""  # default: the observation id
    id_template: str = ""  # default: GRID_LRT's  t_<type>_<suffix>[_<step>]_<prefix><key>
    attachment: str = "srm.txt"
    create_views: bool = True

    def as_dict(self):
        return asdict(self)

    def check(self):
        for name, words in (("token_type", "The token type"), ("key_field", "The key field"),
                            ("id_prefix", "The id prefix"), ("id_suffix", "The id suffix"),
                            ("id_template", "The id template"), ("attachment", "The attachment name")):
            if len(getattr(self, name)) > MAX_OPTION:  # it becomes part of ids, view keys and URLs
                raise TokenSetError(f"{words} is {len(getattr(self, name)):,} characters; at most {MAX_OPTION}")
        if not self.token_type or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.token_type):
            raise TokenSetError("The token type must be letters, digits, '_', '.' or '-' (e.g. pref_cal1_L229585)")
        if not 1 <= self.per_token <= MAX_PER_TOKEN:
            raise TokenSetError(f"Items per token must be a whole number from 1 to {MAX_PER_TOKEN:,}, "
                                f"not {self.per_token if abs(self.per_token) < 10**12 else 'one that large'}")
        if not self.key_field or self.key_field.startswith("_"):
            raise TokenSetError("The key field needs a name that does not start with _")
        if self.attachment.startswith("_"):
            raise TokenSetError("Attachment names cannot start with _")


# --- reading the inputs ----------------------------------------------------------------------


def parse_config(text):
    """The `Token:` section of a GRID_LRT config (YAML, or JSON, which YAML reads too), checked value by value."""
    if not text or not text.strip():
        raise TokenSetError("The config is empty")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise TokenSetError(f"The config is not valid YAML or JSON{where}: {problem}") from None
    if not isinstance(data, dict) or "Token" not in data:
        raise TokenSetError("The config has no Token: section (only that section becomes token fields)")
    token = data["Token"]
    if not isinstance(token, dict) or not token:
        raise TokenSetError("The Token: section must map field names to values")
    _check_value(token, "Token")
    return token


def _check_value(value, where):
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TokenSetError(f"{where}: the field name {key!r} is not text")
            _check_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise TokenSetError(f"{where}: {value} is not a number JSON can hold")
    elif not (value is None or isinstance(value, (str, bool, int, float))):
        raise TokenSetError(f"{where}: a value of type {type(value).__name__} (a date, binary data ...) cannot go "
                            "into a token; quote it to make it text")


class NotText(TokenSetError):
    """The input list's file is not UTF-8 text: it must be chosen again."""


def stage(path, per_token, db):
    """Read an input list from its file, a line at a time, into the SQLite database `db` (a file of its own):
    checked, de-duplicated (SURLs) and ordered there, so that a list of millions is never held in memory.

    Returns the observation id (None for plain items). GRID_LRT's rules: a list is all SURLs of one observation,
    keyed by subband, or plain items cut in order; one item a line, blank lines and # comments skipped."""
    if not 1 <= per_token <= MAX_PER_TOKEN:
        raise TokenSetError(f"Items per token must be a whole number from 1 to {MAX_PER_TOKEN:,}")
    db.executescript("""
        PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA temp_store = FILE; PRAGMA cache_size = -8000;
        CREATE TABLE surls (n INTEGER PRIMARY KEY, item TEXT NOT NULL UNIQUE ON CONFLICT IGNORE, subband INTEGER);
        CREATE TABLE plain (n INTEGER PRIMARY KEY, item TEXT NOT NULL);
    """)
    kinds = {True: [0, []], False: [0, []]}  # is a SURL: [how many, the first three (line, item)]
    unnamed, observations, batch = None, set(), []
    for line, item in _lines(path):
        is_surl = bool(SURL.match(item))
        count = kinds[is_surl]
        count[0] += 1
        if len(count[1]) < 3:
            count[1].append((line, item))
        subband = None
        if is_surl:
            obsid, subband = OBSID.search(item), SUBBAND.search(item)
            if (not obsid or not subband) and unnamed is None:
                unnamed = f"SURL on line {line} names no {'observation (L123456)' if not obsid else 'subband (SB123_)'}"
                unnamed += f": {item[:200]}"
            if obsid and len(observations) < 10:
                observations.add(obsid.group(0))
            subband = int(subband.group(1)) if subband else None
        batch.append((is_surl, item, subband))
        if len(batch) == 10_000:
            _insert(db, batch)
    _insert(db, batch)
    (surls, first_surls), (plain, first_plain) = kinds[True], kinds[False]
    if not surls and not plain:
        raise TokenSetError("The input list is empty")
    if surls and plain:
        most, odd, shown = ("SURLs", plain, first_plain) if surls >= plain else ("plain items", surls, first_surls)
        lines = "; ".join(f"line {n}: {item[:80]}" for n, item in shown) + (" …" if odd > 3 else "")
        raise TokenSetError(f"{odd} of the {surls + plain} items {'are' if odd > 1 else 'is'} not like the rest "
                            f"({most}): {lines}. A list is either all SURLs or plain items")
    if plain:
        return None
    if unnamed:
        raise TokenSetError(unnamed)
    if len(observations) > 1:
        raise TokenSetError(f"The list mixes observations {', '.join(sorted(observations))}: "
                            "one token set is one observation")
    return observations.pop()


def _lines(path):
    """(line number, item) of a list file, blank lines and comments skipped."""
    with open(path, encoding="utf-8", newline=None) as f:
        line = 0
        try:
            for line, text in enumerate(f, 1):  # noqa: B007 - the line reached is said if the file is not text
                item = text.strip()
                if item and not item.startswith("#"):
                    yield line, item
        except UnicodeDecodeError:
            raise NotText(f"The input list is not UTF-8 text (line {line + 1})") from None


def _insert(db, batch):
    db.executemany("INSERT INTO surls (item, subband) VALUES (?, ?)", [(i, s) for surl, i, s in batch if surl])
    db.executemany("INSERT INTO plain (item) VALUES (?)", [(i,) for surl, i, _ in batch if not surl])
    batch.clear()


def chunk_rows(db, per_token, keys_only=False):
    """(key, item) rows in token order: GRID_LRT's srmlist + slice_dicts for SURLs (chunks of per_token consecutive
    subbands keyed by the chunk's first, gaps kept, empty chunks dropped), else per_token items keyed by the first
    item's position. A SQL query: the list stays on disk. keys_only: (key,) once per token, no items read out."""
    if db.execute("SELECT EXISTS (SELECT 1 FROM plain)").fetchone()[0]:
        key, params, table, order = "(n - 1) / ? * ?", (per_token, per_token), "plain", "n"
    else:
        start = db.execute("SELECT MIN(subband) FROM surls").fetchone()[0]
        key, table, order = "? + (subband - ?) / ? * ?", "surls", "subband, n"
        params = (start, start, per_token, per_token)
    if keys_only:
        return db.execute(f"SELECT DISTINCT {key} AS key FROM {table} ORDER BY key", params)
    return db.execute(f"SELECT {key} AS key, item FROM {table} ORDER BY {order}", params)


def chunks(db, per_token):
    """(key, [items]) for each token, in order."""
    for key, rows in itertools.groupby(chunk_rows(db, per_token), key=lambda r: r[0]):
        yield key, [item for _, item in rows]


# --- making tokens ---------------------------------------------------------------------------


def id_format(options, config, obsid):
    """The function that gives a token's id from its key. TokenSetError if the template is not valid."""
    step = config.get("PIPELINE_STEP") or ""
    suffix = options.id_suffix or obsid or "L000000"
    template = options.id_template or ("t_{type}_{suffix}" + ("_{step}" if step else "") + "_{prefix}{key}")
    values = {"type": options.token_type, "obsid": obsid or "", "suffix": suffix, "step": step,
              "prefix": options.id_prefix, "key": None}

    def token_id(key):
        try:
            return template.format_map({**values, "key": f"{key:03d}"})
        except (KeyError, IndexError, ValueError, AttributeError) as e:
            raise TokenSetError(f"The id template {template!r} is not valid: use only "
                                + ", ".join("{" + f + "}" for f in ID_FIELDS) + f" ({e})") from None

    token_id.template = template
    return token_id


def make_token(config, options, obsid, doc_id, key, items):
    """One token: picas's fields, the config's Token section, the key, the type and the chunk as attachment."""
    doc = {**copy.deepcopy(PICAS_FIELDS), **copy.deepcopy(config)}
    doc["_id"] = doc_id
    doc["type"] = options.token_type
    doc[options.key_field] = f"{key:03d}"
    if obsid and not doc.get("OBSID"):
        doc["OBSID"] = obsid
    if options.attachment:
        text = "\n".join(items) + "\n"
        doc["_attachments"] = {options.attachment: {"content_type": "text/plain",
                                                    "data": base64.b64encode(text.encode()).decode()}}
    return doc


class Plan:
    """A token set checked and laid out, nothing written: its list staged in a SQLite file of its own (next to the
    uploads, deleted by close()), the tokens made from it one at a time."""

    def __init__(self, config, options, items_upload):
        options.check()
        self.config, self.options = config, options
        Path(settings.JOB_UPLOAD_DIR).mkdir(parents=True, exist_ok=True)
        fd, self._path = tempfile.mkstemp(prefix="staging-", suffix=".sqlite", dir=settings.JOB_UPLOAD_DIR)
        os.close(fd)
        self.db = sqlite3.connect(self._path)
        try:
            self.obsid = stage(kept_upload(items_upload), options.per_token, self.db)
            check_observation(config, options, self.obsid, self.db)
            self.token_id = id_format(options, config, self.obsid)
            self._index_ids()
        except BaseException:
            self.close()
            raise

    def _index_ids(self):
        """Every id once, in a table whose key refuses a second: a template that gives two tokens one id fails here,
        before anything is written."""
        self.db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY, key INTEGER NOT NULL)")
        keys = (row[0] for row in chunk_rows(self.db, self.options.per_token, keys_only=True))
        try:
            for batch in _batches(((self.token_id(k), k) for k in keys), 10_000):
                self.db.executemany("INSERT INTO ids VALUES (?, ?)", batch)
        except sqlite3.IntegrityError:
            raise TokenSetError(f"The id template {self.token_id.template!r} gives several tokens the same id (use "
                                "{key})") from None
        if self.db.execute("SELECT EXISTS (SELECT 1 FROM ids WHERE substr(id, 1, 1) = '_')").fetchone()[0]:
            raise TokenSetError("Token ids cannot start with _")
        self.count = self.db.execute("SELECT COUNT(*) FROM ids").fetchone()[0]

    def ids(self, limit):
        """The first `limit` ids, in token order."""
        return [r[0] for r in self.db.execute("SELECT id FROM ids ORDER BY key LIMIT ?", (limit,))]

    def keys(self, limit):
        return [r[0] for r in self.db.execute("SELECT key FROM ids ORDER BY key LIMIT ?", (limit,))]

    def last_key(self):
        return self.db.execute("SELECT MAX(key) FROM ids").fetchone()[0]

    def tokens(self):
        """The tokens, made one at a time (a 1,000,000-token set is never held whole)."""
        for key, items in chunks(self.db, self.options.per_token):
            yield make_token(self.config, self.options, self.obsid, self.token_id(key), key, items)

    def existing(self, couch, shown=200):
        """(how many of the set's ids exist in the pool, the first `shown` of them): the pool's ids between the
        set's first and last, read a page at a time without their documents (deleted ones are not listed)."""
        first, last = self.db.execute("SELECT MIN(id), MAX(id) FROM ids").fetchone()
        count, found, start = 0, [], first
        while start is not None:
            page, start = couch.ids_between(start, last, limit=10_000)
            for batch in _batches(page, 500):
                marks = ",".join("?" * len(batch))
                hits = [r[0] for r in self.db.execute(f"SELECT id FROM ids WHERE id IN ({marks})", batch)]
                count += len(hits)
                found += hits[:shown - len(found)]
        return count, found

    def close(self):
        self.db.close()
        Path(self._path).unlink(missing_ok=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def plan(config_text, items_upload, options):
    """Everything checked, nothing written: a Plan, to be closed (a `with` block)."""
    return Plan(parse_config(config_text), options, items_upload)


def observation_named(config, options):
    """{where: observation id} for what names the set's observation besides its SURLs: the config's OBSID (when
    it is one, not empty or a placeholder like '$OBSID') and the token type (GRID_LRT's pref_cal1_L229585)."""
    named = {}
    configured = str(config.get("OBSID") or "")
    if OBSID.fullmatch(configured):
        named["the config's OBSID"] = configured
    in_type = re.search(r"(?<![A-Za-z0-9])L[0-9]+$|_(L[0-9]+)(?:_|$)", options.token_type)
    if in_type:
        named[f"the token type {options.token_type}"] = in_type.group(1) or in_type.group(0)
    return named


def check_observation(config, options, obsid, db):
    """The SURLs' observation, the config's and the token type's must agree: a set of one observation with the
    ids or OBSID of another would be run, and found wrong, only on the grid."""
    for where, named in observation_named(config, options).items():
        if obsid is None:
            first = db.execute("SELECT item FROM plain ORDER BY n LIMIT 1").fetchone()[0]
            raise TokenSetError(f"{where[0].upper()}{where[1:]} names observation {named}, but the input list holds "
                                f"no SURLs (the first item: {first[:80]}): a LOFAR set is made from its observation's "
                                "SURLs; for plain items use a token type without an observation id")
        if named != obsid:
            raise TokenSetError(f"The SURLs are of observation {obsid}, but {where} names {named}: one token set is "
                                "one observation")


def views_to_create(couch, options, design_docs=None):
    """The design document a set needs and lacks: SURF's Monitor for type "token", else GRID_LRT's per type."""
    if not options.create_views:
        return None
    name = "Monitor" if options.token_type == "token" else options.token_type
    try:
        couch.get(f"_design/{name}")
        return None  # present: never changed
    except NotFound:
        pass
    if options.token_type == "token":
        return name, surf_design_doc()
    doc = lrt_design_doc(options.token_type, "0.5")
    return name, {k: v for k, v in doc.items() if k != "_id"}


def preview(pool, the_plan):
    couch = pool.couch()
    first = next(the_plan.tokens())
    attachment = None
    if the_plan.options.attachment:
        data = first.pop("_attachments")[the_plan.options.attachment]["data"]
        attachment = {"name": the_plan.options.attachment, "text": base64.b64decode(data).decode()}
    views = views_to_create(couch, the_plan.options)
    existing_count, existing = the_plan.existing(couch)
    return {
        "count": the_plan.count,
        "observation": the_plan.obsid,
        "keys": [f"{k:03d}" for k in the_plan.keys(12)],
        "last_key": f"{the_plan.last_key():03d}",
        "ids": the_plan.ids(200),
        "first": first,
        "attachment": attachment,
        "existing": existing,
        "existing_count": existing_count,
        "create_views": f"_design/{views[0]}" if views else None,
    }


def options(token_type, per_token="10", key_field="STARTSB", id_prefix="SB", id_suffix="", id_template="",
            attachment="srm.txt", create_views=True):
    """Options from what a person typed (the form's fields, the command's arguments): trimmed, an empty key field
    meaning the default, items per token a whole number."""
    try:
        per_token = int(str(per_token).strip())
    except ValueError:
        raise TokenSetError(f"Items per token must be a whole number from 1 to {MAX_PER_TOKEN:,}") from None
    return Options(token_type=token_type.strip(), per_token=per_token, key_field=key_field.strip() or "STARTSB",
                   id_prefix=id_prefix.strip(), id_suffix=id_suffix.strip(), id_template=id_template.strip(),
                   attachment=attachment.strip(), create_views=create_views)


def read_config(f, size):
    """The text of a config file (an upload or an open file) of `size` bytes, checked against its limit before it
    is read."""
    config_limit_check(size)
    try:
        data = f.read()
        return data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise TokenSetError("The config file is not UTF-8 text") from None


def config_limit_check(size):
    if size > settings.TOKENSET_CONFIG_MAX_BYTES:
        raise TokenSetError(f"The config is {size} bytes; the limit is {settings.TOKENSET_CONFIG_MAX_BYTES}")


def list_name(upload_id):
    """The name of the file an input list was uploaded as ("" for a typed list): the server's, never the form's."""
    return name_of(upload_id)


def save_list(text=None, uploaded=None):
    """Keep an input list (typed, or an uploaded file, streamed) on disk for the plan and the job: its upload id.
    A file's name is kept with it (list_name), for the form that comes back with the id."""
    limit = settings.TOKENSET_INPUT_MAX_BYTES
    if uploaded is not None:
        upload_id = save_upload(uploaded, limit=limit, what="input list")[0]
        remember_name(upload_id, uploaded.name)
        return upload_id
    if len((text or "").encode()) > limit:
        raise TokenSetError(f"The input list is {len(text.encode())} bytes; the limit is {limit}")
    return save_text(text or "")


# --- the job ---------------------------------------------------------------------------------


def create_job(pool, user, config_text, items_upload, options, confirmation=None, via="web"):
    """Check and preview a token set whose input list is on disk (save_list), give the job a link of its own to
    the list (a form sent twice makes two jobs, each deleting only its own), and record the job (its header)."""
    from tokens.models import Job

    config_limit_check(len((config_text or "").encode()))
    with plan(config_text, items_upload, options) as the_plan:
        seen = preview(pool, the_plan)
        if needs_typed_confirmation("create", seen["count"]) and str(confirmation).strip() != str(seen["count"]):
            how = " (--confirm {})".format(seen["count"]) if via == "cli" else ""
            raise TokenSetError(f"Type the number of tokens ({seen['count']}) to confirm creating more than "
                                f"{settings.JOB_CONFIRM_THRESHOLD}{how}")
        return Job.objects.create(
            pool=pool.slug, user=user, via=via, action="create_tokens",
            selection={"kind": "tokenset", "type": options.token_type},
            params={"config": the_plan.config, "items_upload": link_upload(items_upload),
                    "options": options.as_dict(), "observation": the_plan.obsid},
            preview_count=seen["count"], preview_sample=seen["ids"][:10],
        )


def run(job, pool, batch_size):
    """Create the tokens in batches (one _bulk_docs each); an id that exists is reported, never overwritten."""
    with Plan(job.params["config"], Options(**job.params["options"]), job.params["items_upload"]) as the_plan:
        _write(job, pool, the_plan, batch_size)


def _write(job, pool, the_plan, batch_size):
    couch, options = pool.couch(), the_plan.options
    views = engine.retrying(views_to_create, couch, options)
    if views:
        try:
            couch.put_design(*views)
        except Conflict:
            pass  # created meanwhile by someone else: theirs stands
    # One batch is on its way to CouchDB (a thread with a client of its own) while the next one is made and the
    # one before is recorded. Every batch sent is recorded, even when the job stops (a cancel, an error).
    sent = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenset-writer") as writer:
        writer_couch = pool.couch()
        try:
            for batch in _batches(the_plan.tokens(), batch_size):
                engine.check_cancel(job)
                sent.append((batch, writer.submit(writer_couch.bulk_docs, batch)))
                if len(sent) == 2:
                    engine.create_batch(job, couch, *sent.pop(0))
        finally:
            while sent:
                engine.create_batch(job, couch, *sent.pop(0))


def _batches(items, size):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
