"""The one door to CouchDB.

Everything the dashboard asks of a CouchDB server goes through `Couch`, a thin wrapper around the
maintained `ibmcloudant` client. It adds three things the rest of the code relies on:

- typed errors (`Unreachable`, `Unauthorised`, `NotFound`, `Conflict`) whose messages never contain
  credentials: they name the server by its URL with any user-info stripped;
- timeouts on every request;
- key-based paging of views and streamed attachment reads, so that nothing pulls a whole view or
  holds a 1 GiB attachment in memory.
"""

import json
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import BasicAuthenticator, NoAuthAuthenticator
from ibmcloudant.cloudant_v1 import CloudantV1


class CouchError(Exception):
    """Something went wrong talking to CouchDB. The message is safe to show to a user."""

    status = 502


class Unreachable(CouchError):
    status = 503


class TimedOut(Unreachable):
    """The server took longer than the timeout to answer: it is there, but slow (often: building an index)."""


class Unauthorised(CouchError):
    status = 502


class NotFound(CouchError):
    status = 404


class Conflict(CouchError):
    status = 409


def split_credentials(url):
    """Return (url without user-info, username, password) for a URL like http://u:p@host:5984/."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return clean, unquote(parts.username or ""), unquote(parts.password or "")


@dataclass
class Page:
    """One page of a view, and where the next one starts (None when this is the last)."""

    rows: list
    next_key: object = None
    next_docid: str | None = None

    @property
    def has_next(self):
        return self.next_docid is not None


class Written(list):
    """_bulk_docs's per-document results; `accepted_only`: on fewer copies than the cluster's quorum (202)."""

    def __init__(self, results, accepted_only=False):
        super().__init__(results)
        self.accepted_only = accepted_only


class Revision(str):
    """A document's new revision; `accepted_only`: on fewer copies than the cluster's quorum (202)."""

    def __new__(cls, rev, accepted_only=False):
        made = super().__new__(cls, rev)
        made.accepted_only = accepted_only
        return made


# {(url, database): copies of each shard}: a database's n does not change while it exists.
_COPIES = {}


class Couch:
    def __init__(self, url, database, username="", password="", timeout=10.0):
        url, url_user, url_password = split_credentials(url)
        username, password = username or url_user, password or url_password
        self.url = url  # never holds credentials: it is used in messages
        self.database = database
        self.timeout = timeout
        self._credentials = (username, password)  # for with_timeout(); never shown
        authenticator = BasicAuthenticator(username, password) if username else NoAuthAuthenticator()
        self.client = CloudantV1(authenticator=authenticator)
        self.client.set_service_url(url)
        # The client gzips request bodies by default; an attachment sent that way is stored compressed by
        # servers that ignore Content-Encoding on uploads (pouchdb-server). Plain bodies work everywhere.
        self.client.set_enable_gzip_compression(False)
        # (connect, read): a dead host fails fast, a slow view gets the read timeout.
        self.client.set_http_config({"timeout": (min(3.05, timeout), timeout)})

    def with_timeout(self, timeout):
        """The same server and database with another read timeout (the SDK's client has one for all requests)."""
        return Couch(self.url, self.database, *self._credentials, timeout=timeout)

    def __repr__(self):
        return f"<Couch {self.url}/{self.database}>"

    def call(self, method, *args, detailed=False, **kwargs):
        """A method of the ibmcloudant client (self.client) with this adapter's errors: what the methods below use,
        and what tests use to read the server as it is. `detailed`: the whole answer (its status code too)."""
        try:
            answer = method(*args, **kwargs)
            return answer if detailed else answer.get_result()
        except ApiException as e:
            raise self._translate(e) from None
        except requests.ReadTimeout:
            raise TimedOut(self._slow(self.timeout)) from None
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError):
            # ChunkedEncodingError: the connection broke in the middle of an answer (the server went away)
            raise Unreachable(f"CouchDB at {self.url} is unreachable") from None
        except requests.RequestException as e:
            raise CouchError(f"CouchDB at {self.url}: {type(e).__name__}") from None
        except AttributeError:
            # ibmcloudant 0.11 reads every JSON error body as an object; CouchDB answers some (a _bulk_docs that
            # timed out on the server) with a list, and the client's own error handling then fails.
            raise CouchError(f"CouchDB at {self.url} answered with an error the client could not read") from None

    def _slow(self, waited):
        """What a timed-out request says: how long it waited, and an index build of this database if the server
        lists one in _active_tasks."""
        message = f"CouchDB at {self.url} did not answer within {waited:g} s"
        building = self.index_builds()
        return f"{message}: it is {building}; try again later" if building else message

    def index_builds(self):
        """'building the index of _design/x (42 % done)' when _active_tasks lists index builds of this database, or
        "" (none, or the server does not say: pouchdb-server has none, CouchDB tells admins only)."""
        try:
            tasks = self.client.get_active_tasks(timeout=2).get_result()
        except Exception:
            return ""
        # CouchDB 3 names a shard of the database: shards/00000000-7fffffff/<database>.<creation time>.
        building = [t for t in tasks if isinstance(t, dict) and t.get("type") == "indexer"
                    and str(t.get("database", "")).rpartition("/")[2].rsplit(".", 1)[0] == self.database]
        if not building:
            return ""
        progress = sum(t.get("progress", 0) for t in building) / len(building)
        designs = ", ".join(sorted({str(t.get("design_document", "?")) for t in building}))
        return f"building the index of {designs} ({progress:.0f} % done)"

    def _translate(self, e):
        where = f"CouchDB at {self.url}"
        reason = error = ""
        try:
            body = e.http_response.json()
            reason, error = body.get("reason", ""), body.get("error", "")
        except Exception:
            pass
        if e.status_code == 500 and error == "timeout":
            # CouchDB's own request timeout (fabric's), most often a view whose index it is still building: a slow
            # server, as when our read timeout runs out first, and said the same way.
            message = f"{where} gave up on the request after its own time limit"
            building = self.index_builds()
            return TimedOut(f"{message}: it is {building}; try again later" if building else message)
        if e.status_code in (401, 403):
            return Unauthorised(f"{where} refused the credentials for database {self.database!r}")
        if e.status_code == 404:
            return NotFound(f"{where}: not found in database {self.database!r}" + (f" ({reason})" if reason else ""))
        if e.status_code == 409:
            return Conflict(f"{where}: document update conflict")
        if e.status_code == 500 and error == "nodedown":
            # A cluster node went down while it was answering ("progress not possible"): the nodes left answer the
            # next request, so as a server that cannot be reached for a moment: retried, a write read back first.
            return Unreachable(f"{where} is unreachable for a moment: a cluster node went down while it answered")
        if e.status_code in (502, 503, 504) and not error:
            # Not CouchDB's words (its errors carry an "error" field) but a load balancer's in front of a cluster:
            # no node to send to (503), or the node died in the middle of the answer (502, 504). As a server that
            # cannot be reached: retried, and a write whose answer this was is read back before it is sent again.
            return Unreachable(f"{where} is unreachable: its load balancer answered {e.status_code} (no CouchDB "
                               "node answered)")
        return CouchError(f"{where} answered {e.status_code}" + (f": {reason}" if reason else ""))

    # --- server and database ------------------------------------------------------------------

    def server_info(self):
        return self.call(self.client.get_server_information)

    def database_info(self):
        return self.call(self.client.get_database_information, db=self.database)

    def create_database(self):
        return self.call(self.client.put_database, db=self.database)

    def delete_database(self):
        return self.call(self.client.delete_database, db=self.database)

    # --- documents ----------------------------------------------------------------------------

    def design_docs(self):
        """Every design document of the database (the range `_design/`..`_design0` of _all_docs)."""
        result = self.call(
            self.client.post_all_docs,
            db=self.database,
            start_key="_design/",
            end_key="_design0",
            include_docs=True,
        )
        return [row["doc"] for row in result["rows"] if "doc" in row]

    def get(self, doc_id):
        if doc_id.startswith("_design/"):
            return self.call(self.client.get_design_document, db=self.database, ddoc=doc_id[len("_design/") :])
        if doc_id.startswith("_"):
            raise NotFound(f"CouchDB at {self.url}: no token {doc_id!r}")
        return self.call(self.client.get_document, db=self.database, doc_id=doc_id)

    def docs(self, ids):
        """Documents by id in one request: a list in the order of `ids`, None where missing or deleted."""
        result = self.call(self.client.post_all_docs, db=self.database, keys=list(ids), include_docs=True)
        return [row.get("doc") for row in result["rows"]]

    def put_design(self, name, doc):
        """Create or replace a design document. Only ever used for the dashboard's own one."""
        return self.call(
            self.client.put_design_document, db=self.database, ddoc=name, design_document=doc
        )

    def bulk_docs(self, docs):
        """Write documents in one request; returns CouchDB's per-document results (ok / error), marked
        `accepted_only` when CouchDB answered 202: a cluster took the writes with fewer copies than its write quorum
        (nodes are down), so they are not yet safe (one more node lost could lose them)."""
        answer = self.call(self.client.post_bulk_docs, db=self.database, bulk_docs={"docs": docs}, detailed=True)
        return Written(answer.get_result(), accepted_only=answer.get_status_code() == 202)

    def changes(self, since, limit, docs=True):
        """What changed after `since` (an update_seq or last_seq), oldest first: (results, last_seq).

        Each result is {"id", "deleted"?, "doc"} with the document as it is now (without "doc" when not `docs`):
        CouchDB lists a document once, at its latest change, so applying the results in any order (or twice) gives
        the same end state. Sequence values are opaque strings on CouchDB 3 (integers on pouchdb-server): they are
        only ever passed back as text. Never sends a `filter` (some crash pouchdb-server, stack.md).
        """
        result = self.call(self.client.post_changes, db=self.database, since=str(since), include_docs=docs,
                            limit=limit)
        return result["results"], result["last_seq"]

    # --- views --------------------------------------------------------------------------------

    def view(self, ddoc, view, timeout=None, **params):
        """Query a view; params are CouchDB's (start_key, end_key, group_level, reduce, limit ...). A view whose
        index is behind answers once it is built: `timeout` bounds that wait (TimedOut)."""
        if timeout is not None:
            return self.with_timeout(timeout).view(ddoc, view, **params)
        return self.call(self.client.post_view, db=self.database, ddoc=ddoc, view=view, **params)

    def documents(self, limit, start_id=None):
        """A page of the database's documents in id order (design documents included), by key."""
        params = {"start_key": start_id} if start_id is not None else {}
        rows = self.call(self.client.post_all_docs, db=self.database, include_docs=True, limit=limit + 1,
                          **params)["rows"]
        if len(rows) > limit:
            return Page(rows[:limit], rows[limit]["id"], rows[limit]["id"])
        return Page(rows)

    def ids_between(self, first, last, limit):
        """The ids of the documents from `first` to `last` (both included, id order; deleted ones are not listed), a
        page of at most `limit`: (ids, where the next page starts, or None)."""
        rows = self.call(self.client.post_all_docs, db=self.database, start_key=first, end_key=last,
                          limit=limit + 1)["rows"]
        ids = [row["id"] for row in rows]
        return (ids[:limit], ids[limit]) if len(ids) > limit else (ids, None)

    def _view_as_indexed(self, ddoc, view, params):
        """A view query that does not update the index first: update=false (CouchDB 2+, in the body) and the older
        stale=ok (in the query string; the only form pouchdb-server knows). Both mean the same to CouchDB 3."""
        url = "/{}/_design/{}/_view/{}".format(*self.client.encode_path_vars(self.database, ddoc, view))
        request = self.client.prepare_request(
            method="POST", url=url, headers={"content-type": "application/json", "Accept": "application/json"},
            params={"stale": "ok"}, data=json.dumps({**params, "update": "false"}),
        )
        return self.call(self.client.send, request)

    def single_copy(self):
        """Whether the database is kept in one copy (pouchdb-server, a single CouchDB node). A cluster keeps n copies
        of each shard and answers a view from one of them, not always the copy that the previous read brought up to
        date: a read that does not update the index first may then miss rows anywhere in its range (on 3 nodes, a
        reset paging the error view with them read 920 of 1,200 failures and called itself done). So only a single
        copy is read as indexed; with more, or when the server does not say, every page brings its copy up to date.
        """
        key = (self.url, self.database)
        if key not in _COPIES:
            try:
                _COPIES[key] = self.database_info().get("cluster", {}).get("n", 1)
            except CouchError:
                return False  # asked again next time
        return _COPIES[key] == 1

    def total_rows(self, ddoc, view):
        """The number of rows of a map view, without reading any of them."""
        return self.view(ddoc, view, limit=0, reduce=False)["total_rows"]

    def page(self, ddoc, view, *, limit, start_key=None, start_docid=None, end_key=None,
             include_docs=False, descending=False, stale=False, timeout=None):
        """One page of a map view, paged by key (never by skip, which is O(skip) on CouchDB).

        The view's keys must be unique (end them with the document id): pouchdb-server ignores
        startkey_docid, so a page must be able to start at its first row by key alone.
        reduce=false is valid on map-only views too (CouchDB refuses only reduce=true there).
        stale=True reads the index as it is, without first indexing what changed since the last read: for a job
        that pages through a selection it has itself been changing (it re-checks every document it reads); on a
        database kept in one copy only (single_copy).
        """
        params = dict(limit=limit + 1, include_docs=include_docs, descending=descending, reduce=False)
        if start_key is not None:
            params["start_key"] = start_key
            if start_docid is not None:
                params["start_key_doc_id"] = start_docid
        if end_key is not None:
            params["end_key"] = end_key
        rows = (self._view_as_indexed(ddoc, view, params) if stale and self.single_copy()
                else self.view(ddoc, view, timeout=timeout, **params))["rows"]
        if len(rows) > limit:
            nxt = rows[limit]
            return Page(rows[:limit], nxt["key"], nxt["id"])
        return Page(rows)

    # --- attachments --------------------------------------------------------------------------

    def put_attachment(self, doc_id, name, body, content_type, rev):
        """Attach a file (an open binary file: streamed, never read whole) to a document at `rev`.

        Returns the document's new revision, marked `accepted_only` as bulk_docs marks its results (202: on fewer
        copies than the cluster's quorum); Conflict if `rev` is no longer current.
        """
        answer = self.call(
            self.client.put_attachment, db=self.database, doc_id=doc_id, attachment_name=name,
            attachment=body, content_type=content_type, rev=rev, detailed=True,
        )
        return Revision(answer.get_result()["rev"], accepted_only=answer.get_status_code() == 202)

    def attachment(self, doc_id, name):
        """Stream an attachment: returns (iterator of bytes, content type, length or None).

        The name is percent-encoded by the client (slashes, colons and spaces included).
        """
        # CouchDB stores text attachments gzipped and sends them so to a client that accepts gzip, with the
        # compressed length: asking for identity keeps the length true for the bytes we pass on.
        response = self.call(
            self.client.get_attachment, db=self.database, doc_id=doc_id, attachment_name=name, stream=True,
            headers={"Accept-Encoding": "identity"},
        )
        length = response.headers.get("Content-Length")
        # 1 MiB chunks: with 64 KiB a 200 MB download ran at a third of the server's speed (bench, 100,000 tokens).
        return (
            response.iter_content(chunk_size=1024 * 1024),
            response.headers.get("Content-Type", "application/octet-stream"),
            int(length) if length else None,
        )


