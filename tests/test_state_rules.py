"""The Python twin of the views' JavaScript agrees with the server's own engine on every document.

The counts kept current from the changes feed re-classify each changed token in Python (counting.token_state);
the lists come from the `states` view, run by the server's JavaScript engine (V8 in pouchdb-server's node, QuickJS
in CouchDB 3.5). Any difference shows as counts that disagree with the lists. So thousands of documents with odd
but possible field values go into a pool on the test server, and the view's row for each (bucket, type, group)
must equal the twin's, as the dashboard reads the document back.
"""

import math
import random
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokens.counting import token_state
from tokens.states import (
    JS_WHITESPACE,
    LRT05,
    LRT1,
    OWN_DDOC,
    SURF,
    failure_key,
    js_number,
    js_parse_int,
    js_string,
    own_design_doc,
    placement,
    stage_of,
    style_of,
    type_of,
    worker_views_of,
)

STYLES = {"token": SURF, "pref_cal1_L229585": LRT05, "pref_cal2_L229587": LRT1}
GROUP = "OBSID"
DOCUMENTS = 10_000

# White space that JavaScript trims and Python does not, and the other way round, and neither.
SPACES = list(JS_WHITESPACE) + ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\u180e", "\u200b"]
PREFIXES = ["0x", "0X", "0o", "0b", "0B", "-0x", "+0x", "0x1f", "0xg", "0b12", "0o78", "1e", "1e+", ".", "+", "-",
            "Infinity", "-Infinity", "infinity", "inf", "NaN", "1_000", "1,5", "0.", ".5", "5.", "00", "007"]
DIGITS = ["٣", "۵", "३", "৭", "５", "𝟗", "²", "½", "Ⅻ"]  # Unicode digits, which JavaScript does not read
TEXTS = ["", "todo", "done", "error", "locked", "running", "Done", "error ", "[object Object]", "null",
         "undefined", "true", "false", "L229585", "L229585.0"]


def number(rng):
    family = rng.randrange(9)
    if family == 0:
        return rng.choice([0, -0.0, 1, -1, 99, 1_000_000_000, 999_999_999, 2**53, 2**53 + 1, -(2**63), 2**64,
                           12345678901234567890, 10**21, 10**22, 10**308])
    if family == 1:
        return rng.randint(-10, 10)
    if family == 2:
        return rng.randint(-(10**30), 10**30)
    if family == 3:
        return rng.uniform(-2, 2)
    if family == 4:
        return rng.choice([0.5, -0.5, 1.0, 1e-7, 1e-6, 1e21, 1e20, 5e-324, 1.7976931348623157e308, 0.1 + 0.2])
    if family == 5:
        return 10 ** rng.uniform(-10, 25) * rng.choice([1, -1])
    if family == 6:
        return rng.randint(1_000_000_000, 1_900_000_000) + rng.choice([0, 0.25, 0.999])
    if family == 7:
        return float(rng.randint(-5, 5))
    return rng.randint(-(2**70), 2**70)


def text(rng):
    family = rng.randrange(7)
    if family == 0:
        return rng.choice(TEXTS)
    if family == 1:
        return rng.choice(SPACES) * rng.randint(1, 2) + rng.choice(["0", "1", "-1", "5", "99", "0x10", ""]) + \
            rng.choice(SPACES + [""])
    if family == 2:
        return rng.choice(PREFIXES) + rng.choice(["", "0", "1", "7", "f", "a"])
    if family == 3:
        return rng.choice(DIGITS) * rng.randint(1, 3) + rng.choice(["", "0", "1"])
    if family == 4:
        return js_string(number(rng)) + rng.choice(["", "", "abc", " ", "e5", ".5", "x"])
    if family == 5:
        return rng.choice(["+", "-", ""]) + rng.choice(["1e3", "1E-3", "1e400", "-1e400", ".0", "0.0e0", "12e"])
    return "".join(rng.choice("0123456789 .-+exXabcf\t\n") for _ in range(rng.randint(1, 6)))


def value(rng, depth=0):
    family = rng.randrange(12)
    if family < 4:
        return number(rng)
    if family < 8:
        return text(rng)
    if family == 8:
        return rng.choice([True, False, None])
    if family == 9 and depth < 2:
        return [value(rng, depth + 1) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
    if family == 10 and depth < 2:
        return rng.choice([{}, {"a": 1}, {"message": "x"}, {"0": 0}, {"valueOf": 0}])
    return rng.choice([0, "0", "", None, 1])


def document(rng, n):
    doc = {"_id": f"doc-{n:05d}", "type": rng.choice(list(STYLES) * 3 + ["task", "Token", 5, None, ["token"]])}
    for field in ("lock", "done", "exit_code", "status", "output", GROUP, "hostname"):
        draw = rng.random()
        if draw < 0.08:
            continue  # missing: undefined in JavaScript
        if draw < 0.35:  # the values real tokens hold, so that every bucket is reached
            doc[field] = {"lock": lambda: rng.choice([0, 0, 1, 99, -1, 1_700_000_000]),
                          "done": lambda: rng.choice([0, 0, 99, -1, 1_700_000_100]),
                          "exit_code": lambda: rng.choice([0, "0", 1, "", "1"]),
                          "status": lambda: rng.choice(["todo", "done", "error", "running"]),
                          "output": lambda: rng.choice([0, 0, 1, "0", ""]),
                          GROUP: lambda: rng.choice(["L229585", "L229587", ""]),
                          "hostname": lambda: rng.choice(["wn-01.grid.surfsara.nl", "", "gina-n7"])}[field]()
        else:
            doc[field] = value(rng)
    return doc


@pytest.fixture
def odd_pool(couch):
    db = couch("rules-" + uuid.uuid4().hex[:8])
    db.create_database()
    own = own_design_doc(STYLES, GROUP)
    db.put_design(OWN_DDOC, {k: v for k, v in own.items() if k != "_id"})
    yield db
    db.delete_database()


def view_rows(db):
    rows, start = {}, None
    db = db.with_timeout(600)  # the first page waits for the index of 10,000 documents (a minute on a busy machine)
    while True:
        page = db.page(OWN_DDOC, "states", limit=5000, start_key=start)
        for row in page.rows:
            bucket, type_, group, doc_id = row["key"]
            rows[doc_id] = (bucket, type_, group, row["value"])
        if not page.has_next:
            return rows
        start = page.next_key


def stored_docs(db):
    rows = db.call(db.client.post_all_docs, db=db.database, include_docs=True)["rows"]
    return [r["doc"] for r in rows if not r["id"].startswith("_design/")]


def test_the_twin_puts_every_odd_document_where_the_servers_javascript_does(odd_pool):
    rng = random.Random(20261203)
    docs = [document(rng, n) for n in range(DOCUMENTS)]
    for start in range(0, len(docs), 2000):
        results = odd_pool.bulk_docs(docs[start:start + 2000])
        assert not [r for r in results if "error" in r], "the server refused a generated document"
    emitted = view_rows(odd_pool)
    differences = []
    for doc in stored_docs(odd_pool):
        twin = token_state(doc, STYLES, GROUP)
        if twin != emitted.get(doc["_id"]):
            differences.append((doc, emitted.get(doc["_id"]), twin))
    assert not differences, f"{len(differences)} differences, e.g. " + "; ".join(
        f"{d!r}: view {v}, twin {t}" for d, v, t in differences[:5])
    # The documents reached every bucket and many groups, so the comparison covered each rule.
    buckets = {b for b, _, _, _ in emitted.values()}
    assert buckets >= {"todo", "locked", "locked_unknown", "done", "error", "legacy_error", "done_unlocked", "other"}
    assert len({g for _, _, g, _ in emitted.values()}) > 1000 and len(emitted) > DOCUMENTS / 2


# --- the workers' own views: each document is listed by exactly the views the dashboard says list it ---------------

# Type values the workers' `doc.type == "<type>"` compares loosely: arrays of the text are of that type too.
ODD_TYPES = [["token"], [["token"]], ["pref_cal2_L229587"], [["pref_cal1_L229585"]], ["token", "x"], {"type": "token"},
             " token", "token\u0000", True, 0, [], [None], "[object Object]"]


@pytest.fixture
def worker_pool(odd_pool, couch_server):
    """The odd pool with the workers' own design documents: SURF's Monitor (and its SingleCore and MultiCore
    slices), GRID_LRT 1.0.7's views for the 1.x type, written by GRID_LRT itself, and GRID_LRT 0.5's."""
    from localsite import demo
    from tests.grid_lrt import lrt_database
    from tokens.worker_views import lrt_design_doc

    demo.surf_design_docs(couch_server.url, couch_server.username, couch_server.password, odd_pool.database)
    legacy = lrt_design_doc("pref_cal1_L229585", "0.5")
    odd_pool.put_design(legacy["_id"][len("_design/"):], {k: v for k, v in legacy.items() if k != "_id"})
    from GRID_LRT.token import TokenList

    client, db = lrt_database(couch_server, odd_pool.database)
    TokenList(token_type="pref_cal2_L229587", database=db).add_token_views()
    client.disconnect()
    return odd_pool


def listed(db, ddoc):
    """{document id: the state views of one design document that list it}."""
    found = {}
    for view in ("todo", "locked", "done", "error"):
        for row in db.with_timeout(600).view(ddoc, view, reduce=False)["rows"]:
            found.setdefault(row["id"], set()).add(view)
    return found


def test_every_document_is_in_the_workers_views_the_dashboard_says_and_counted_once(worker_pool):
    rng = random.Random(20261207)
    docs = [document(rng, n) for n in range(DOCUMENTS)]
    for doc in docs[::7]:
        doc["type"] = rng.choice(ODD_TYPES)
    for start in range(0, len(docs), 2000):
        results = worker_pool.bulk_docs(docs[start:start + 2000])
        assert not [r for r in results if "error" in r], "the server refused a generated document"
    stored = stored_docs(worker_pool)
    differences, overlaps = [], 0
    for ddoc, type_ in (("Monitor", "token"), ("pref_cal1_L229585", "pref_cal1_L229585"),
                        ("pref_cal2_L229587", "pref_cal2_L229587")):
        style = STYLES[type_]
        by_views = listed(worker_pool, ddoc)
        for doc in stored:
            twin = set(worker_views_of(doc, style)) if type_of(doc, {type_: style}) == type_ else set()
            if by_views.get(doc["_id"], set()) != twin:
                differences.append((ddoc, doc, by_views.get(doc["_id"]), twin))
            elif len(twin) > 1:
                overlaps += 1
                bucket, also = placement(doc, style)
                assert bucket in twin | {"locked_unknown"} and set(also) == twin - {bucket, "locked"}
    assert not differences, f"{len(differences)} differences, e.g. " + "; ".join(
        f"{ddoc} {d!r}: views {v}, twin {t}" for ddoc, d, v, t in differences[:5])
    assert overlaps > 100  # GRID_LRT's views overlap, and the documents reached the overlaps
    odd_types = [d for d in stored if not isinstance(d.get("type"), str) and type_of(d, STYLES)]
    assert len(odd_types) > 100  # arrays of a type's name, counted by the workers' views and by the dashboard

    # The own progress view (GRID_LRT's held tokens by step, and the overlaps) agrees with the twin too.
    progress = {r["id"]: r["key"][:5] for r in worker_pool.with_timeout(600).view(OWN_DDOC, "progress",
                                                                                  reduce=False)["rows"]}
    for doc in stored:
        style = style_of(doc, STYLES)
        state = token_state(doc, STYLES, GROUP)
        if style in (None, SURF) or state is None:
            assert doc["_id"] not in progress
            continue
        bucket = state[0]
        also, stage = "+".join(placement(doc, style)[1]), stage_of(doc, style, bucket)
        expected = [state[1], state[2], bucket, also, stage] if also or stage else None
        assert progress.get(doc["_id"]) == expected, doc


def test_numbers_read_as_the_engines_read_them():
    assert js_string(12345678901234567890) == "12345678901234567000"
    assert js_string(10**400) == "Infinity" and js_string(1e21) == "1e+21" and js_string(1e-7) == "1e-7"
    assert js_parse_int("0x") is None and js_parse_int("0xg") is None and js_parse_int(" -0x1f") == -31
    assert js_number("0b1") == 1 and js_number("0o7") == 7 and math.isnan(js_number("-0x1"))
    assert js_number("\ufeff5") == 5 and math.isnan(js_number("\x1c5")) and math.isnan(js_number("٣"))


# --- the same rules against V8 directly, value by value, with hypothesis shrinking any difference -----------------

# Runs a map function on each JSON line it reads and answers with the keys it emitted (one node for the whole test).
NODE_MAP = r"""
const fn = eval("(" + process.argv[1] + ")");
let rows = [];
globalThis.emit = (key, value) => rows.push([key, value]);
require("readline").createInterface({input: process.stdin}).on("line", line => {
  rows = [];
  try { fn(JSON.parse(line)); } catch (e) { rows = [["threw", String(e)]]; }
  process.stdout.write(JSON.stringify(rows) + "\n");
});
"""

WHITE = "".join(SPACES)
scalars = (st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(alphabet=st.sampled_from(list("0123456789+-.eExXoObBInfinityaf_, ") + list(WHITE) + DIGITS),
                     max_size=8)
           | st.sampled_from(TEXTS + PREFIXES))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["a", "message", "0"]), inner, max_size=2), max_leaves=4)
documents = st.fixed_dictionaries({"_id": st.just("doc")}, optional={
    "type": st.sampled_from(list(STYLES)) | values, "lock": values, "done": values, "exit_code": values,
    "status": values, "output": values, GROUP: values, "hostname": values})


@pytest.fixture(scope="module")
def node_states():
    import json
    import subprocess

    code = own_design_doc(STYLES, GROUP)["views"]["states"]["map"]
    node = subprocess.Popen(["node", "-e", NODE_MAP, code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(doc):
        node.stdin.write(json.dumps(doc) + "\n")
        node.stdin.flush()
        rows = json.loads(node.stdout.readline())
        return (*rows[0][0][:3], rows[0][1]) if rows and rows[0][0] != "threw" else rows[0] if rows else None

    yield run
    node.stdin.close()
    node.wait(10)


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents)
def test_the_twin_agrees_with_v8_on_any_document(node_states, doc):
    assert token_state(doc, STYLES, GROUP) == node_states(doc)


# --- failure groups: the twin of the failures view's key (code, normalised message), against V8 ------------------

MESSAGE_PARTS = ["2026-12-04T03:12:45Z", "2026-12-04 03:12", "12/04/2026 03:12:45", "03:12:45", "https://x.nl/a?b",
                 "srm://srm.grid.sara.nl:8443/pnfs/x", "/scratch/job/123/out.log", "wn-07.grid.surfsara.nl",
                 "0xdeadBEEF", "deadbeef01", "-12.5", "42", "exit 1", "Killed", "(/tmp/a)", "=/x/y", "'/q'",
                 "\n", "\r", "\u2028", "\t", "  ", "é", "😀", "ab_cd", "1.2.3.4"]
texts = st.lists(st.sampled_from(MESSAGE_PARTS) | st.text(max_size=6), max_size=8).map("".join) | st.text(
    max_size=200)
messages = texts | values
error_docs = st.fixed_dictionaries(
    {"_id": st.just("doc"), "type": st.sampled_from(list(STYLES)), "lock": st.just(1_700_000_000),
     "done": st.just(1_700_000_100), "exit_code": st.sampled_from([1, "1", "", 137, None]) | values,
     "status": st.just("error"), "output": st.sampled_from([1, "3", "", None, 22]) | values},
    optional={"error": st.lists(st.fixed_dictionaries({}, optional={"message": messages, "exception": messages})
                                | messages, max_size=3) | messages,
              "launcher_status": messages})


@pytest.fixture(scope="module")
def node_failures():
    import json
    import subprocess

    code = own_design_doc(STYLES, GROUP)["views"]["failures"]["map"]
    node = subprocess.Popen(["node", "-e", NODE_MAP, code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            encoding="utf-8", errors="surrogatepass")

    def run(doc):
        node.stdin.write(json.dumps(doc) + "\n")
        node.stdin.flush()
        rows = json.loads(node.stdout.readline())
        return tuple(rows[0][0][:2]) if rows and rows[0][0] != "threw" else rows[0] if rows else None

    yield run
    node.stdin.close()
    node.wait(10)


@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=error_docs)
def test_the_failure_group_twin_agrees_with_v8_on_any_failed_token(node_failures, doc):
    state = token_state(doc, STYLES, GROUP)
    emitted = node_failures(doc)
    if state is None or state[0] not in ("error", "legacy_error"):
        assert emitted is None
    else:
        assert failure_key(doc, STYLES[doc["type"]]) == emitted
