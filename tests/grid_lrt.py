"""Pools as LOFAR's own GRID_LRT 1.0.7 makes them (PyPI grid-lrt, which writes through cloudant), and pilots that
move their tokens as GRID_PiCaS_Launcher does (tests/lrt_pilot.py). GRID_LRT shares the site's test environment:
its requirements (cloudant, requests, retrying, humanfriendly) agree with ours, so it is a plain test dependency."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import yaml

CONFIG = Path(__file__).with_name("fixtures") / "pref_cal1.yaml"


def lrt_database(server, database):
    """GRID_LRT's handle on a database: a cloudant client, as its users make one."""
    from cloudant.client import CouchDB

    client = CouchDB(server.username, server.password, url=server.url, connect=True)
    return client, client[database]


def step_config(token_type, obsid):
    """The pref_cal1 step's configuration (the YAML GRID_LRT's users keep), for one observation's token type."""
    config = yaml.safe_load(CONFIG.read_text())
    config["Token"].update({"type": token_type, "OBSID": obsid})
    return config


def make_tokens(db, token_type, obsid, subbands, attachment=None):
    """A token per subband through GRID_LRT's own classes: TokenList keeps _design/<token_type> (and writes
    PICAS_API_VERSION into it), caToken + TokenDictBuilder build each token from the step's configuration,
    add_token_views adds GRID_LRT's views, add_attachment attaches a file to every token. Returns the TokenList."""
    from GRID_LRT.token import TokenDictBuilder, TokenList, caToken

    tokens = TokenList(token_type=token_type, database=db)
    for sb in subbands:
        token = caToken(database=db, token_type=token_type, token_id=f"t_{token_type}_SB{sb:03d}")
        token.build(TokenDictBuilder(copy.deepcopy(step_config(token_type, obsid))))
        token["STARTSB"] = f"{sb:03d}"
        tokens.append(token)
    tokens.save()
    tokens.add_token_views()
    if attachment is not None:
        tokens.add_attachment(str(attachment), "srm.txt")
        tokens.fetch()
        for token in tokens:
            if "srm.txt" not in (token.get("_attachments") or {}):
                # cloudant sends the revision in an If-Match header, which CouchDB honours and pouchdb-server ignores
                # (409: GRID_LRT prints it and goes on). On pouchdb-server the same file goes in with ?rev=.
                put = token.r_session.put(f"{token.document_url}/srm.txt", params={"rev": token["_rev"]},
                                          data=attachment.read_bytes(), headers={"Content-Type": "text/plain"})
                put.raise_for_status()
    return tokens


def start_lrt_pilots(server, database, token_type, count, *, stop_at="", fail_every=0, output_text=False,
                     hostname="", tasks=0):
    """GRID_PiCaS_Launcher-like pilots on one token type (see tests/lrt_pilot.py)."""
    env = dict(os.environ, PICAS_URL=server.url, PICAS_DB=database, PICAS_USER=server.username,
               PICAS_PASSWORD=server.password, LRT_TYPE=token_type, LRT_STOP_AT=stop_at,
               LRT_FAIL_EVERY=str(fail_every), LRT_OUTPUT_TEXT="1" if output_text else "", LRT_HOSTNAME=hostname,
               LRT_TASKS=str(tasks))
    script = Path(__file__).with_name("lrt_pilot.py")
    return [subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for _ in range(count)]


def run_lrt_pilots(*args, **kwargs):
    """Start pilots and wait until each has ended; their output if one failed."""
    pilots = start_lrt_pilots(*args, **kwargs)
    outputs = [p.communicate(timeout=900)[0] for p in pilots]
    failed = [out for p, out in zip(pilots, outputs, strict=True) if p.returncode]
    assert not failed, failed


def picas_style_reset(db, doc_id):
    """What a picas-era reset script does to a GRID_LRT token: lock and done back to 0, status left as it was."""
    doc = db[doc_id]
    doc.fetch()
    doc["lock"], doc["done"] = 0, 0
    doc.save()


def every_overlap(server, database, token_type, obsid, workdir):
    """40 tokens of one observation made by GRID_LRT and worked by launcher-like pilots into every overlap of its
    views: 10 done and 8 failed (output "21", as text); held at each step (2 launched, 2 downloading, 2 running,
    1 uploading); held after reporting (2 with status error, 1 done); then 3 failed and 2 done ones put back by a
    picas-style reset (status left) and 1 failed one by GRID_LRT's own Token.reset. Returns GRID_LRT's client."""
    from GRID_LRT.token import caToken

    client, db = lrt_database(server, database)
    srm = Path(workdir) / "srm.txt"
    srm.write_text("srm://srm.grid.sara.nl:8443/pnfs/grid.sara.nl/data/lofar/ops/projects/lc2_038/229585/"
                   "L229585_SB100_uv.dppp.MS_7d8f2c1e.tar\n")
    tokens = make_tokens(db, token_type, obsid, range(100, 140), attachment=srm)
    run = dict(server=server, database=database, token_type=token_type)
    run_lrt_pilots(count=1, tasks=10, hostname="wn-01.grid.surfsara.nl", **run)
    run_lrt_pilots(count=1, tasks=8, fail_every=1, output_text=True, hostname="wn-02.grid.surfsara.nl", **run)
    for stop_at, pilots in (("launched", 2), ("downloading", 2), ("running", 2), ("uploading", 1)):
        for _ in range(pilots):  # each killed at that step: a token held there
            run_lrt_pilots(count=1, stop_at=stop_at, hostname="wn-03.grid.surfsara.nl", **run)
    for _ in range(2):  # the launcher reported the failure and was killed before closing
        run_lrt_pilots(count=1, fail_every=1, stop_at="error", hostname="wn-04.grid.surfsara.nl", **run)
    run_lrt_pilots(count=1, stop_at="done", hostname="wn-04.grid.surfsara.nl", **run)
    by_view = {v: {r["id"] for r in db.get_design_document(token_type).get_view(v)()["rows"]}
               for v in ("locked", "done", "error")}
    failed = sorted(by_view["error"] - by_view["locked"])
    closed = sorted(by_view["done"] - by_view["locked"])
    for doc_id in failed[:3] + closed[:2]:
        picas_style_reset(db, doc_id)
    token = caToken(database=db, token_type=token_type, token_id=failed[3])
    token.fetch()
    token.reset()  # GRID_LRT's own: status "reset", output "", scrub_count + 1
    token.save()
    tokens.fetch()
    return client
