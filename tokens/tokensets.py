"""New token sets: one token per chunk of an input list, with fields from a pipeline-step config.

The semantics are GRID_LRT's TokenSet (0.5 YAML API): only the config's `Token:` section becomes fields; a list of
SURLs is one observation, de-duplicated, keyed by subband (`SB(\\d+)_`) and cut into chunks of N consecutive
subbands keyed by the chunk's first subband (gaps kept, empty chunks dropped); each token gets its chunk as an
attachment. Every token also carries the fields a picas worker reads, and an existing id is never overwritten.
"""

import base64
import copy
import math
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import yaml
from django.conf import settings

from tokens import engine
from tokens.couch import Conflict, NotFound
from tokens.selections import OperationError, needs_typed_confirmation
from tokens.uploads import save_text, upload_path
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
        if not self.token_type or not re.fullmatch(r"[A-Za-z0-9_.-]+", self.token_type):
            raise TokenSetError("The token type must be letters, digits, '_', '.' or '-' (e.g. pref_cal1_L229585)")
        if self.per_token < 1:
            raise TokenSetError("Items per token must be 1 or more")
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


def parse_items(text):
    """One item a line; blank lines and # comments skipped."""
    items = [line.strip() for line in (text or "").splitlines()]
    items = [i for i in items if i and not i.startswith("#")]
    if not items:
        raise TokenSetError("The input list is empty")
    return items


def chunks(items, per_token):
    """(observation id or None, [(key, [items])]) — GRID_LRT's srmlist + slice_dicts for SURLs, else plain chunks."""
    if per_token < 1:
        raise TokenSetError("Items per token must be 1 or more")
    surls = [bool(SURL.match(i)) for i in items]
    if any(surls) and not all(surls):
        odd = [n for n, is_surl in enumerate(surls, 1) if is_surl != (surls.count(True) >= surls.count(False))]
        most = "SURLs" if surls.count(True) >= surls.count(False) else "plain items"
        shown = "; ".join(f"line {n}: {items[n - 1][:80]}" for n in odd[:3]) + (" …" if len(odd) > 3 else "")
        raise TokenSetError(f"{len(odd)} of the {len(items)} items {'are' if len(odd) > 1 else 'is'} not like the "
                            f"rest ({most}): {shown}. A list is either all SURLs or plain items; nothing was written")
    if not all(surls):
        return None, [(start, items[start:start + per_token]) for start in range(0, len(items), per_token)]
    unique = list(dict.fromkeys(items))
    observations = set()
    by_subband = {}
    for n, surl in enumerate(unique, 1):
        obsid = OBSID.search(surl)
        subband = SUBBAND.search(surl)
        if not obsid:
            raise TokenSetError(f"SURL {n} names no observation (L123456): {surl}")
        if not subband:
            raise TokenSetError(f"SURL {n} names no subband (SB123_): {surl}")
        observations.add(obsid.group(0))
        by_subband.setdefault(int(subband.group(1)), []).append(surl)
    if len(observations) > 1:
        raise TokenSetError(f"The list mixes observations {', '.join(sorted(observations))}: "
                            "one token set is one observation")
    start = min(by_subband)
    grouped = {}
    for subband in sorted(by_subband):
        key = start + (subband - start) // per_token * per_token
        grouped.setdefault(key, []).extend(by_subband[subband])
    return observations.pop(), sorted(grouped.items())


# --- making tokens ---------------------------------------------------------------------------


def token_ids(options, config, obsid, keys):
    """The ids of the tokens, in order. TokenSetError if the template makes two alike."""
    step = config.get("PIPELINE_STEP") or ""
    suffix = options.id_suffix or obsid or "L000000"
    template = options.id_template or ("t_{type}_{suffix}" + ("_{step}" if step else "") + "_{prefix}{key}")
    values = {"type": options.token_type, "obsid": obsid or "", "suffix": suffix, "step": step,
              "prefix": options.id_prefix, "key": None}
    ids = []
    for key in keys:
        values["key"] = f"{key:03d}"
        try:
            ids.append(template.format_map(values))
        except (KeyError, IndexError, ValueError) as e:
            raise TokenSetError(f"The id template {template!r} is not valid: use only "
                                + ", ".join("{" + f + "}" for f in ID_FIELDS) + f" ({e})") from None
    if len(set(ids)) != len(ids):
        raise TokenSetError(f"The id template {template!r} gives several tokens the same id (use {{key}})")
    if any(i.startswith("_") for i in ids):
        raise TokenSetError("Token ids cannot start with _")
    return ids


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


@dataclass
class Plan:
    config: dict
    options: Options
    obsid: str | None
    chunks: list
    ids: list

    def tokens(self):
        """The tokens, made one at a time (a 100,000-token set is never held whole)."""
        for doc_id, (key, items) in zip(self.ids, self.chunks, strict=True):
            yield make_token(self.config, self.options, self.obsid, doc_id, key, items)


def plan(config_text, items_text, options):
    """Everything checked, nothing written. Raises TokenSetError with a message for the operator."""
    options.check()
    return plan_from(parse_config(config_text), items_text, options)


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


def check_observation(config, options, obsid, items):
    """The SURLs' observation, the config's and the token type's must agree: a set of one observation with the
    ids or OBSID of another would be run, and found wrong, only on the grid."""
    for where, named in observation_named(config, options).items():
        if obsid is None:
            raise TokenSetError(f"{where[0].upper()}{where[1:]} names observation {named}, but the input list holds "
                                f"no SURLs (line 1: {items[0][:80]}): a LOFAR set is made from its observation's "
                                "SURLs; for plain items use a token type without an observation id")
        if named != obsid:
            raise TokenSetError(f"The SURLs are of observation {obsid}, but {where} names {named}: one token set is "
                                "one observation; nothing was written")


def plan_from(config, items_text, options):
    items = parse_items(items_text)
    obsid, parts = chunks(items, options.per_token)
    check_observation(config, options, obsid, items)
    return Plan(config, options, obsid, parts, token_ids(options, config, obsid, [k for k, _ in parts]))


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


def existing_ids(couch, ids, limit=None):
    """Which of these ids exist in the pool (deleted ones do not), asked 1,000 at a time."""
    found = []
    for first in range(0, len(ids), 1000):
        batch = ids[first:first + 1000]
        found += [doc_id for doc_id, doc in zip(batch, couch.docs(batch), strict=True) if doc is not None]
        if limit and len(found) >= limit:
            break
    return found


def preview(pool, the_plan):
    couch = pool.couch()
    first = next(the_plan.tokens())
    attachment = None
    if the_plan.options.attachment:
        data = first.pop("_attachments")[the_plan.options.attachment]["data"]
        attachment = {"name": the_plan.options.attachment, "text": base64.b64decode(data).decode()}
    views = views_to_create(couch, the_plan.options)
    existing = existing_ids(couch, the_plan.ids)
    return {
        "count": len(the_plan.ids),
        "observation": the_plan.obsid,
        "keys": [f"{k:03d}" for k, _ in the_plan.chunks[:200]],
        "ids": the_plan.ids[:200],
        "first": first,
        "attachment": attachment,
        "existing": existing[:200],
        "existing_count": len(existing),
        "create_views": f"_design/{views[0]}" if views else None,
    }


def input_limit_check(size, what):
    if size > settings.TOKENSET_INPUT_MAX_BYTES:
        raise TokenSetError(f"The {what} is {size} bytes; the limit is {settings.TOKENSET_INPUT_MAX_BYTES}")


# --- the job ---------------------------------------------------------------------------------


def create_job(pool, user, config_text, items_text, options, confirmation=None, via="web"):
    """Check and preview a token set, keep its inputs for the worker, and record the job (its header)."""
    from tokens.models import Job

    for text, what in ((config_text, "config"), (items_text, "input list")):
        input_limit_check(len((text or "").encode()), what)
    the_plan = plan(config_text, items_text, options)
    seen = preview(pool, the_plan)
    if needs_typed_confirmation("create", seen["count"]) and str(confirmation).strip() != str(
            seen["count"]):
        raise TokenSetError(f"Type the number of tokens ({seen['count']}) to confirm creating more than "
                            f"{settings.JOB_CONFIRM_THRESHOLD}")
    items_upload = save_text(items_text)
    return Job.objects.create(
        pool=pool.slug, user=user, via=via, action="create_tokens",
        selection={"kind": "tokenset", "type": options.token_type},
        params={"config": the_plan.config, "items_upload": items_upload, "options": options.as_dict(),
                "observation": the_plan.obsid},
        preview_count=seen["count"], preview_sample=the_plan.ids[:10],
    )


def run(job, pool, batch_size):
    """Create the tokens in batches (one _bulk_docs each); an id that exists is reported, never overwritten."""
    couch = pool.couch()
    options = Options(**job.params["options"])
    items_text = upload_path(job.params["items_upload"]).read_text()
    the_plan = plan_from(job.params["config"], items_text, options)
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
