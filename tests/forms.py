"""The links and forms a page offers, read from its HTML as a browser reads them (stdlib html.parser): what the
tests that follow pages (the walk, the generated input) submit, instead of a list of fields kept by hand."""

import re
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

BASE = "http://testserver"
# Not followed: signing out, the admin (Django's own), the API (fuzzed from its schema), files for download.
LEAVE = ("/accounts/logout/", "/admin/", "/api/", "/metrics", "/static/", "/attachment/")
# The query names whose values choose what a page does (an action, a kind of selection, a state).
SHAPING = ("action", "kind", "state", "bucket", "outcome")


@dataclass
class Form:
    action: str
    method: str
    enctype: str
    fields: list = field(default_factory=list)  # [(name, value, kind)] in page order; kind: the input's type
    buttons: list = field(default_factory=list)  # the submit buttons' texts

    def data(self):
        """What a browser sends when the form is submitted as it stands: checked boxes, selected options, every
        other named field with its value (a file field empty)."""
        return [(name, value) for name, value, kind in self.fields if kind not in ("checkbox-off", "file")]

    def names(self):
        return list(dict.fromkeys(name for name, _, kind in self.fields if kind not in ("hidden",)))


class _Reader(HTMLParser):
    def __init__(self, base):
        super().__init__(convert_charrefs=True)
        self.base, self.forms, self.links = base, [], []
        self.form = self.select = self.textarea = self.button = None
        self.option_value = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and a.get("href"):
            self.links.append(urljoin(self.base, a["href"]))
        elif tag == "form":
            self.form = Form(urljoin(self.base, a.get("action") or self.base), (a.get("method") or "get").lower(),
                             a.get("enctype") or "")
            self.forms.append(self.form)
        elif self.form is None:
            return
        elif tag == "input" and a.get("name"):
            kind = (a.get("type") or "text").lower()
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self.form.fields.append((a["name"], a.get("value", "on"), kind))
                else:
                    self.form.fields.append((a["name"], a.get("value", "on"), "checkbox-off"))
            elif kind not in ("submit", "button", "image", "reset"):
                self.form.fields.append((a["name"], a.get("value", ""), kind))
        elif tag == "select" and a.get("name"):
            self.select = [a["name"], None, None]  # name, first option, selected option
        elif tag == "option" and self.select is not None:
            self.option_value = a.get("value")
            self.option_selected = "selected" in a
            self.option_text = ""
        elif tag == "textarea" and a.get("name"):
            self.textarea = [a["name"], ""]
        elif tag == "button":
            self.button = ""

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea[1] += data
        if self.option_value is not None or (self.select is not None and hasattr(self, "option_text")):
            self.option_text = getattr(self, "option_text", "") + data
        if self.button is not None:
            self.button += data

    def handle_endtag(self, tag):
        if tag == "option" and self.select is not None and hasattr(self, "option_text"):
            value = self.option_value if self.option_value is not None else self.option_text.strip()
            if self.select[1] is None:
                self.select[1] = value
            if self.option_selected:
                self.select[2] = value
            self.option_value = None
            del self.option_text
        elif tag == "select" and self.select is not None:
            name, first, chosen = self.select
            if self.form is not None and (chosen or first) is not None:
                self.form.fields.append((name, chosen if chosen is not None else first, "select"))
            self.select = None
        elif tag == "textarea" and self.textarea is not None:
            if self.form is not None:
                self.form.fields.append((self.textarea[0], self.textarea[1].removeprefix("\n"), "textarea"))
            self.textarea = None
        elif tag == "button" and self.button is not None:
            if self.form is not None:
                self.form.buttons.append(" ".join(self.button.split()))
            self.button = None
        elif tag == "form":
            self.form = None


def read(html, base):
    """(forms, links) of a page: absolute URLs."""
    reader = _Reader(base)
    reader.feed(html)
    reader.close()
    return reader.forms, reader.links


def local(url):
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def crawl(client, start="/", most=150, shaping=()):
    """(pages, forms, links) reachable from `start` by links, one page per shape; forms as (page, Form); links as
    {link: the first page that showed it}. A page's shape: its path, the names in its query and the values of the
    `shaping` names (those that choose what a page does: an action, a kind of selection), so that the dry run of
    every action is visited, and not every token's page. Only this site's pages are followed."""
    seen, shapes, pages, forms, found = set(), set(), [], [], {}
    todo = deque([start])
    while todo and len(pages) < most:
        url = todo.popleft()
        parts = urlsplit(url)
        shape = (parts.path, tuple(sorted({(k, v if k in shaping else None)
                                           for k, v in parse_qsl(parts.query, keep_blank_values=True)})))
        if url in seen or shape in shapes or parts.netloc not in ("", "testserver"):
            continue
        if any(parts.path.startswith(p) or p in parts.path for p in LEAVE) or "format=csv" in parts.query:
            continue
        seen.add(url)
        response = client.get(local(url))
        assert response.status_code < 500, (url, response.status_code)  # a link the site offers never breaks
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        shapes.add(shape)
        pages.append(local(url))
        page_forms, links = read(response.content.decode(), BASE + local(url))
        forms += [(local(url), f) for f in page_forms]
        for link in links:
            if urlsplit(link).netloc == "testserver":
                found.setdefault(local(link), local(url))
        todo.extend(links)
    return pages, forms, found


def started_job(response):
    """The job a job form (or the token-set form) started: the form answers with a redirect to its page."""
    from tokens.models import Job

    assert response.status_code == 302, (response.status_code, response.content[:2000])
    match = re.fullmatch(r"/jobs/(\d+)/", response["Location"])
    assert match, response["Location"]
    return Job.objects.get(pk=int(match[1]))
