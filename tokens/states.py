"""Token states, as the workers' views define them.

A pool's states are defined by the map functions of its design documents (SURF `Monitor` and its slices,
or GRID_LRT's one design document per token type). This module reads those design documents, works out
which token types the pool has and which rules each type follows, and writes the dashboard's own design
document whose views put every token in exactly one bucket with the same JavaScript comparisons the
workers' views use (loose `==`, `parseInt`), plus the buckets of tokens that no worker view shows.

The workers' design documents are only ever read. The dashboard's own one is created only when the
pool's configuration allows it (`Pool.create_views`).
"""

import functools
import json
import math
import re

# The four states of the worker views, then the buckets of tokens that fall outside them.
STATES = ("todo", "locked", "done", "error")
OUT_OF_VIEW = ("locked_unknown", "legacy_error", "done_unlocked", "other")
BUCKETS = STATES + OUT_OF_VIEW
BUCKET_LABELS = {
    "todo": "todo",
    "locked": "locked",
    "done": "done",
    "error": "error",
    "locked_unknown": "locked, age unknown",
    "legacy_error": "legacy error (-1/-1)",
    "done_unlocked": "done but unlocked",
    "other": "in no view",
}
BUCKET_HELP = {
    "locked_unknown": "lock is set but is not a time (GRID_LRT's set_view_to_status writes lock = 1): age unknown",
    "legacy_error": "lock == -1 and done == -1: an error as old picas versions marked it; no view shows it",
    "done_unlocked": "lock == 0 and done > 0: scrubbed by an old picas that did not reset done; no view shows it",
    "other": "lock/done values that match no view",
}

OWN_DDOC = "picas-dashboard"
OWN_VERSION = 5

# A lock below this is not a Unix time (2001-09-09): GRID_LRT writes lock = 1, picas errors write 99.
TIME_MIN = 1_000_000_000

SURF, LRT05, LRT1 = "surf", "lrt05", "lrt1"
STYLE_LABELS = {SURF: "SURF PiCaS", LRT05: "GRID_LRT 0.5", LRT1: "GRID_LRT 1.x"}

_TYPE_RE = re.compile(r"""doc\.type\s*===?\s*(["'])(.*?)\1""")


def _views(ddoc):
    """A design document's views; {} when `views` is not an object (hand-edited design documents exist)."""
    views = ddoc.get("views")
    return views if isinstance(views, dict) else {}


def _map_code(ddoc, view):
    definition = _views(ddoc).get(view)
    if isinstance(definition, dict) and isinstance(definition.get("map"), str):
        return definition["map"]
    return None


def describe_design_doc(ddoc):
    """What a worker design document tells about a pool, or None if it is not a PiCaS state design document.

    Returns {"name", "type", "style", "views", "count_view"}.
    """
    todo = _map_code(ddoc, "todo")
    done = _map_code(ddoc, "done")
    error = _map_code(ddoc, "error")
    if not (todo and done and error and _map_code(ddoc, "locked")):
        return None
    match = _TYPE_RE.search(todo)
    if not match:
        return None
    if "exit_code" in done or "exit_code" in error:
        style = SURF
    elif "output" in error:
        style = LRT05
    else:
        style = LRT1
    views = sorted(_views(ddoc))
    count_view = next((v for v in ("overview_total", "overview_view") if v in views), None)
    return {
        "name": ddoc["_id"][len("_design/") :],
        "type": match.group(2),
        "style": style,
        "views": views,
        "count_view": count_view,
    }


def token_types(described):
    """{token type: style} from the described design documents. A type keeps the first style seen."""
    types = {}
    for d in described:
        types.setdefault(d["type"], d["style"])
    return types


# The dashboard's own views. STYLES and GROUP are filled in per pool; everything else is fixed, so
# the text (and hence the index) changes only when a pool gains a token type or its grouping field changes.
_OWN_PRELUDE = r"""
  var STYLES = %(styles)s;
  var GROUP = %(group)s;
  if (doc._id.indexOf("_design/") === 0 || doc.type === null || doc.type === undefined) return;
  // A worker view keeps a token with `doc.type == "<type>"`, JavaScript's loose comparison: ["token"] and
  // [["token"]] are of type "token" too, and 5 of type "5". The first type so equal, in the object's key order.
  var type = null;
  if (typeof doc.type === "string") { if (STYLES.hasOwnProperty(doc.type)) type = doc.type; }
  else { for (var k in STYLES) { if (STYLES.hasOwnProperty(k) && doc.type == k) { type = k; break; } } }
  if (type === null) return;
  var style = STYLES[type];
  var lock = doc.lock, done = doc.done, bucket;
  // The workers' four views, as each style writes them (SURF's Monitor, GRID_LRT 0.5 and 1.x).
  var inTodo = lock == 0 && done == 0, inLocked = lock > 0 && done == 0, inDone, inError;
  if (style == "surf") {
    inDone = lock > 0 && done > 0 && parseInt(doc.exit_code) == 0;
    inError = lock > 0 && done > 0 && parseInt(doc.exit_code) != 0;
  } else {
    inDone = doc.status == "done";
    inError = style == "lrt05" ? doc.output != 0 : doc.status == "error";
  }
  // One bucket each: what the pilots do with it next (lock and done) before what its status says (see BUCKET_RULE).
  if (inTodo) bucket = "todo";
  else if (inLocked) bucket = lock < %(time_min)d ? "locked_unknown" : "locked";
  else if (inError) bucket = "error";
  else if (inDone) bucket = "done";
  else if (lock == -1 && done == -1) bucket = "legacy_error";
  else if (lock == 0 && done > 0) bucket = "done_unlocked";
  else bucket = "other";
  var also = [];
  if (inError && bucket != "error") also.push("error");
  if (inDone && bucket != "done") also.push("done");
  var group = null;
  if (GROUP !== null && doc[GROUP] !== undefined && doc[GROUP] !== null) group = String(doc[GROUP]);
"""

# Every key ends with the document id, so that keys are unique and a page can start at the exact next
# row by key alone (pouchdb-server ignores startkey_docid; CouchDB honours it, and needs it not).
_OWN_VIEWS = {
    # Every token, keyed by its bucket and observation: counts (group_level=3) and lists (paged by key).
    "states": 'emit([bucket, type, group, doc._id], typeof doc.hostname == "string" ? doc.hostname : "");',
    # Locked tokens by lock time as the locked view compares it (Number(lock): "1700000000" and [1700000000] are
    # times too), so stale locks are one key range; locks of unknown age (lock = 1, true ...) under null.
    "locks": """if (bucket == "locked" || bucket == "locked_unknown")
    emit([bucket == "locked" ? Number(lock) : null, type, group, doc._id], null);""",
    # Failed tokens by exit code and normalised first error line: failure groups.
    "failures": """if (bucket == "error" || bucket == "legacy_error") {
    var code = (style !== "surf") ? doc.output : doc.exit_code;
    if (code === undefined || code === null || code === "") code = "(none)";
    var msg = "";
    if (Array.isArray(doc.error) && doc.error.length) {
      var last = doc.error[doc.error.length - 1] || {};
      msg = last.message || last.exception || "";
    } else if (typeof doc.error === "string") {
      msg = doc.error;
    } else if (doc.error && typeof doc.error === "object") {
      msg = doc.error.message || doc.error.exception || "";
    } else if (doc.launcher_status) {
      msg = "launcher: " + doc.launcher_status;
    }
    emit([String(code), normalise(msg), type, group, doc._id], null);
  }""",
    # GRID_LRT tokens that a pilot holds, by the step its status names, and tokens that a second worker view lists
    # too: few rows (the tokens held now, the overlaps), so their grouped counts cost little on any server.
    "progress": """if (style !== "surf" && (also.length || bucket == "locked" || bucket == "locked_unknown")) {
    var stage = "";
    if (bucket == "locked" || bucket == "locked_unknown")
      stage = doc.status == "launched" ? "waiting" : doc.status == "downloading" ? "downloading" : "running";
    emit([type, group, bucket, also.join("+"), stage, doc._id], null);
  }""",
}
OWN_VIEW_NAMES = tuple(_OWN_VIEWS)

# Folds what differs between two occurrences of one failure: times, URLs, paths, host names, hex ids
# and numbers. In JavaScript because the grouping happens inside the view; its twin (normalise, failure_key below)
# names the failure group of each failure event, held to it by a differential test.
_NORMALISE = r"""
  function normalise(text) {
    var s = String(text).split("\n")[0];
    s = s.replace(/\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?/g, "<time>");
    s = s.replace(/\d{1,2}\/\d{1,2}\/\d{2,4}[_ T]\d{1,2}:\d{2}(:\d{2})?/g, "<time>");
    s = s.replace(/\b\d{1,2}:\d{2}:\d{2}\b/g, "<time>");
    s = s.replace(/[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^\s'"]+/g, "<url>");
    s = s.replace(/(^|[\s'"=:(\[])(\/[^\s\/'":<>]+)+\/?/g, "$1<path>");
    s = s.replace(/\b([a-zA-Z0-9-]+\.)+[a-zA-Z]{2,}\b/g, "<host>");
    s = s.replace(/\b0x[0-9a-fA-F]+\b/g, "<hex>");
    s = s.replace(/\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b/g, "<hex>");
    s = s.replace(/-?\d+(\.\d+)?/g, "<n>");
    s = s.replace(/\s+/g, " ").trim();
    return s.length > 160 ? s.slice(0, 160) + "…" : s;
  }
"""


def own_design_doc(styles, group_field):
    """The dashboard's own design document for a pool with these token types and grouping field."""
    fill = {
        "styles": json.dumps(styles, sort_keys=True),
        "group": json.dumps(group_field or None),
        "time_min": TIME_MIN,
    }
    views = {}
    for name, body in _OWN_VIEWS.items():
        helper = _NORMALISE if name == "failures" else ""
        code = "function (doc) {" + helper + (_OWN_PRELUDE % fill) + "  " + (body % fill) + "\n}"
        views[name] = {"map": code, "reduce": "_count"}
    return {
        "_id": f"_design/{OWN_DDOC}",
        "language": "javascript",
        "dashboard_version": OWN_VERSION,
        "styles": styles,
        "group_field": group_field or None,
        "views": views,
    }


def own_doc_is_current(existing, wanted):
    return existing is not None and all(
        existing.get(k) == wanted[k] for k in ("dashboard_version", "styles", "group_field", "views")
    )


_MISSING = object()


def worker_views_of(doc, style):
    """The workers' state views that list the document (of a token type of that style), in STATES order: the
    Python twin of their map functions, JavaScript's loose comparisons included. GRID_LRT's `todo` and `locked`
    test lock and done while its `done` and `error` test status (0.5: output), so a token can be in two."""
    if style is None:
        return ()
    lock, done = js_number(doc.get("lock", _MISSING)), js_number(doc.get("done", _MISSING))
    lock_zero, done_zero = _js_eq(doc.get("lock", _MISSING), 0), _js_eq(doc.get("done", _MISSING), 0)
    if style == SURF:
        finished = lock > 0 and done > 0
        in_done = finished and js_parse_int(doc.get("exit_code", _MISSING)) == 0
        in_error = finished and js_parse_int(doc.get("exit_code", _MISSING)) != 0
    else:
        in_done = _js_eq_text(doc.get("status", _MISSING), "done")
        in_error = not _js_eq(doc.get("output", _MISSING), 0) if style == LRT05 else \
            _js_eq_text(doc.get("status", _MISSING), "error")
    found = {"todo": lock_zero and done_zero, "locked": lock > 0 and done_zero, "done": in_done, "error": in_error}
    return tuple(state for state in STATES if found[state])


# What the dashboard counts a token in two of the workers' views as (README, "States"): what the pilots do with it
# next. lock and done say that (todo: a pilot takes it; locked: a pilot holds it and will close it), whatever its
# status says; status says it only for a token no pilot takes or holds. A failure report beats a success one.
BUCKET_ORDER = ("todo", "locked", "error", "done")


def placement(doc, style):
    """(bucket, also): the one bucket a document is counted in, and the other worker views that list it too (a
    tuple of "error" and "done", empty for nearly every token: GRID_LRT's overlaps). The twin of the own views'
    JavaScript; comparisons follow JavaScript's loose rules, which the workers' views use. (None, ()) for a document
    of no known style."""
    if style is None:
        return None, ()
    views = worker_views_of(doc, style)
    lock, done = doc.get("lock", _MISSING), doc.get("done", _MISSING)
    bucket = next((state for state in BUCKET_ORDER if state in views), None)
    if bucket == "locked" and js_number(lock) < TIME_MIN:
        bucket = "locked_unknown"
    elif bucket is None:
        bucket = "legacy_error" if _js_eq(lock, -1) and _js_eq(done, -1) else \
            "done_unlocked" if _js_eq(lock, 0) and js_number(done) > 0 else "other"
    return bucket, tuple(v for v in ("error", "done") if v != bucket and v in views)


def classify(doc, style):
    """The bucket of one document (detail page, jobs' re-checks, demo seed, the counts from the changes feed)."""
    return placement(doc, style)[0]


# GRID_LRT's steps of a token a pilot holds, as its launcher writes `status`: launched (waiting for the job to
# start), downloading, then the pipeline's steps and the upload, all "running".
STAGES = ("waiting", "downloading", "running")
STAGE_LABELS = {"waiting": "waiting (launched)", "downloading": "downloading",
                "running": "running (any later step, uploading included)"}


def stage_of(doc, style, bucket):
    """The GRID_LRT step of a held token ("" for any other): the twin of the `progress` view's stage."""
    if style in (None, SURF) or bucket not in ("locked", "locked_unknown"):
        return ""
    status = doc.get("status", _MISSING)
    return "waiting" if _js_eq_text(status, "launched") else "downloading" if _js_eq_text(status, "downloading") \
        else "running"


def _js_key_order(keys):
    """An object's keys in JavaScript's for-in order: array indices (0 .. 2**32 - 2) by value, then the rest as
    inserted (the own design document writes them sorted)."""
    def index(k):
        return k.isdigit() and k.isascii() and (k == "0" or not k.startswith("0")) and int(k) < 2**32 - 1
    return sorted((k for k in keys if index(k)), key=int) + sorted(k for k in keys if not index(k))


def type_of(doc, styles):
    """The token type a document is of, as the workers' `doc.type == "<type>"` finds it (loosely: ["token"] is of
    type "token"), among the pool's types; None for a document of none (design documents included)."""
    value = doc.get("type", _MISSING)
    if str(doc.get("_id", "")).startswith("_design/") or value is None or value is _MISSING:
        return None
    if isinstance(value, str):
        return value if value in styles else None
    for key in _js_key_order(styles):
        if _js_eq_text(value, key):
            return key
    return None


def style_of(doc, styles):
    type_ = type_of(doc, styles)
    return None if type_ is None else styles[type_]


def group_of(doc, group_field):
    """A token's group as the own views key it: String(value), or None (the views' null) when the pool has no
    grouping field or the token's is absent or null. OBSID 229585 and "229585" are one group, as in the views."""
    value = doc.get(group_field) if group_field else None
    return None if value is None else js_string(value)


def group_from(params):
    """The group a query string or a JSON body names: absent or null is None (the tokens without one); any
    text, the empty text included, is that group. The one reading of `group=` for pages, API, exports and jobs."""
    value = params.get("group")
    return None if value is None else str(value)


def group_label(group, group_field):
    """How an observation's group is shown: never blank, and never the same as another group's."""
    if group is None:
        return f"(no {group_field})"
    return f"({group_field} is empty)" if group == "" else group


# The `locks` view's keys of the locks whose age is unknown.
UNKNOWN_LOCKS = ([None], [None, {}])


def stale_locks_range(cutoff):
    """The `locks` view's key range of locks taken before `cutoff` (Unix seconds); None when no lock can be
    (a cutoff before TIME_MIN: CouchDB refuses a range that ends before it starts)."""
    return ([TIME_MIN], [cutoff, {}]) if cutoff >= TIME_MIN else None


def lock_time(doc):
    """The lock's Unix time as the views compare it, or None when the lock is not a time."""
    lock = js_number(doc.get("lock", _MISSING))
    return lock if TIME_MIN <= lock < math.inf else None


# A time above this is not Unix seconds (milliseconds, or a typo): it tells nothing about when.
TIME_MAX = 100_000_000_000


def failed_at(doc):
    """When a failed token last failed (Unix seconds), or None when nothing in it says.

    Not `done` alone: picas's Task.error() (an exception in the worker's code) writes lock = done = 99 and
    puts the time only in the `error` entry it appends. GRID_LRT tokens stamp each status in `times`.
    The newest time any of these give is the last failure."""
    times = [doc.get("done")]
    if isinstance(doc.get("error"), list):
        times += [e.get("time") for e in doc["error"] if isinstance(e, dict)]
    if isinstance(doc.get("times"), dict):
        times += list(doc["times"].values())
    seconds = [js_number(t) for t in times if isinstance(t, (int, float, str)) and not isinstance(t, bool)]
    known = [t for t in seconds if TIME_MIN <= t < TIME_MAX]
    return max(known) if known else None


def _js_eq(value, number):
    """`value == number` in JavaScript: null and undefined equal no number (though null > -1 holds)."""
    if value is None or value is _MISSING or isinstance(value, dict):
        return False
    return js_number(value) == number


def _js_eq_text(value, text):
    """`value == "text"` in JavaScript for any JSON value: strings, arrays (joined) and objects ("[object Object]")
    as text; a number or a boolean against the text's number; null and undefined equal no text."""
    if isinstance(value, (str, list, dict)):
        return js_string(value) == text
    if value is None or value is _MISSING:
        return False
    return js_number(value) == js_number(text)


def js_string(value):
    """JavaScript's String(value) for a JSON value, as the views' engine (V8, QuickJS) computes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _js_number_text(_js_double(value))
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    if isinstance(value, dict):
        return "[object Object]"
    return str(value)


def _js_double(value):
    """A JSON number as JavaScript holds it: a double (a huge integer rounds, one beyond range is infinite)."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _js_number_text(x):
    """Number.prototype.toString(): the shortest digits that round-trip (as Python's repr), laid out by
    ECMAScript's rules: plain up to 21 integer digits, 0.000001 and up plain, exponents otherwise."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = repr(abs(x)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    figures = whole + fraction
    leading = len(figures) - len(figures.lstrip("0"))
    digits = figures.strip("0")
    n = len(whole) + int(exponent or 0) - leading  # ECMAScript's n: the value is 0.<digits> * 10**n
    k = len(digits)
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + digits
    else:
        e = n - 1
        text = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if e >= 0 else "-") + str(abs(e))
    return sign + text


# What JavaScript's trim and Number() treat as white space (WhiteSpace and LineTerminator): not Python's
# str.strip() set, which adds U+001C..U+001F and U+0085 and lacks U+FEFF.
JS_WHITESPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
                "\u2028\u2029\u202f\u205f\u3000\ufeff"

_JS_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Infinity", re.ASCII)
_JS_RADIX = {"x": 16, "o": 8, "b": 2}
_JS_NON_DECIMAL = re.compile(r"0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)", re.ASCII)


def js_number(value):
    """JavaScript's ToNumber, as `<`, `>` and `==` apply it to a field; NaN compares false with everything."""
    if value is _MISSING:
        return math.nan  # undefined
    if value is None:
        return 0.0  # null
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return _js_double(value)
    if isinstance(value, dict):
        return math.nan
    text = js_string(value).strip(JS_WHITESPACE)  # an array compares as its joined text: [] == 0, [5] == 5
    if text == "":
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text.replace("Infinity", "inf"))
    if _JS_NON_DECIMAL.fullmatch(text):  # no sign allowed: Number("-0x1") is NaN
        return float(int(text[2:], _JS_RADIX[text[1].lower()]))
    return math.nan


_JS_PARSE_INT = re.compile(r"([+-]?)(0[xX])?([0-9a-fA-F]*)", re.ASCII)


def js_parse_int(value):
    """parseInt(value) == 0 is all a view asks of it: the leading integer of String(value), or None (NaN)."""
    if value is _MISSING:
        return None  # String(undefined) is "undefined"
    sign, hex_prefix, rest = _JS_PARSE_INT.match(js_string(value).lstrip(JS_WHITESPACE)).groups()
    digits = re.match(r"[0-9a-fA-F]*" if hex_prefix else r"[0-9]*", rest, re.ASCII).group()
    if not digits:
        return None  # "", "-", "0x", "0xg": NaN
    number = int(digits, 16 if hex_prefix else 10)
    return -number if sign == "-" else number


# --- failure groups: the twin of the `failures` view's key ---------------------------------------------------

_WS = re.escape(JS_WHITESPACE)
_FOLDS = [(re.compile(pattern, re.ASCII), replacement) for pattern, replacement in (
    (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?", "<time>"),
    (r"\d{1,2}/\d{1,2}/\d{2,4}[_ T]\d{1,2}:\d{2}(:\d{2})?", "<time>"),
    (r"\b\d{1,2}:\d{2}:\d{2}\b", "<time>"),
    (r"[a-zA-Z][a-zA-Z0-9+.-]*://[^" + _WS + r"'\"]+", "<url>"),
    (r"(^|[" + _WS + r"'\"=:(\[])(/[^" + _WS + r"/'\":<>]+)+/?", r"\1<path>"),
    (r"\b([a-zA-Z0-9-]+\.)+[a-zA-Z]{2,}\b", "<host>"),
    (r"\b0x[0-9a-fA-F]+\b", "<hex>"),
    (r"\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b", "<hex>"),
    (r"-?\d+(\.\d+)?", "<n>"),
)]
_JS_SPACES = re.compile("[" + _WS + "]+")


def normalise(value):
    """The failures view's normalise(): the first line of a message with times, URLs, paths, host names, hex ids
    and numbers folded, cut at 160 UTF-16 units as JavaScript counts a string's length."""
    return _folded(js_string(value).split("\n")[0])


# A pool's failures share a few messages: a job or a count that reads 100,000 of them folds each message once.
@functools.lru_cache(maxsize=4096)
def _folded(text):
    for pattern, replacement in _FOLDS:
        text = pattern.sub(replacement, text)
    text = _JS_SPACES.sub(" ", text).strip(JS_WHITESPACE)
    units = text.encode("utf-16-le", "surrogatepass")
    if len(units) > 320:
        text = units[:320].decode("utf-16-le", "surrogatepass") + "…"
    return text


def _js_truthy(value):
    if value is _MISSING or value is None or value is False or value == "":
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not math.isnan(value)
    return True


def _js_or(*values):
    for value in values[:-1]:
        if _js_truthy(value):
            return value
    return values[-1]


def _prop(value, name):
    return value.get(name, _MISSING) if isinstance(value, dict) else _MISSING


def failure_key(doc, style):
    """(code, message) of a failed token as the `failures` view keys it: its failure group."""
    code = doc.get("exit_code" if style == SURF else "output", _MISSING)
    code = "(none)" if code is _MISSING or code is None or code == "" else js_string(code)
    error = doc.get("error", _MISSING)
    if isinstance(error, list) and error:
        last = error[-1] if _js_truthy(error[-1]) else {}
        message = _js_or(_prop(last, "message"), _prop(last, "exception"), "")
    elif isinstance(error, str):
        message = error
    elif isinstance(error, (dict, list)):
        message = _js_or(_prop(error, "message"), _prop(error, "exception"), "")
    elif _js_truthy(doc.get("launcher_status", _MISSING)):
        message = "launcher: " + js_string(doc["launcher_status"])
    else:
        message = ""
    return code, normalise(message)
