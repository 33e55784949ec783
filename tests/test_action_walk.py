"""Every action the pages offer, walked in a real browser as a person walks it: found by following the links and
forms the pages show (never a list kept by hand, so an action added later is walked too), from the link a person
clicks, through the dry run and the typed confirmation, to the job's end, whose outcome must be what the dry run
promised. On fresh copies of the demo pools (a SURF pool worked by real picas pilots, a GRID_LRT pool), with the
site served by a live server and jobs run by a real Celery worker."""

import re
import uuid
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.test import Client

from dashboard.roles import OPERATORS
from tests.browsing import TIMEOUT_MS, log_in, shoot
from tests.conftest import delete_database, index_own_views, make_user
from tests.forms import SHAPING, crawl
from tests.test_html_generated_input import FIXTURES
from tokens.models import AlertRule, Job

pytestmark = pytest.mark.django_db(transaction=True)

ENTRIES = ("/jobs/new/", "/tokensets/new/")  # links that open a dry run or a form that makes something
FORMS_ON_PAGES = ("/alerts/rules/", "/account/tokens/")  # forms that make something where they are shown
# What a person types into the fields of an action's form (by the field's name); the forms are found on the pages.
TYPED = {"field": "walked_by", "value": "the action walk", "name": "walk.txt", "threshold": "5", "hours": "2",
         "config": (FIXTURES / "pref_cal1.yaml").read_text(), "input_list": (FIXTURES / "L229585_srm.txt").read_text(),
         "token_type": "walk_cal1_L229585"}  # a type of its own: the LOFAR demo has pref_cal1 tokens of this list
ENDED = "#progress .status.succeeded, #progress .status.failed, #progress .status.cancelled"


@pytest.fixture(params=["surf", "lofar"])
def fresh_demo_pool(request, couch_server, couch, settings):
    """A new copy of a demo pool, seeded as `make run` seeds it (SURF's by real picas pilots), for this test alone:
    the walk changes every token it can."""
    from localsite import demo

    name = f"walk-{request.param}-{uuid.uuid4().hex[:6]}"
    seed = demo.seed_surf if request.param == "surf" else demo.seed_lofar
    seed(couch_server.url, couch_server.username, couch_server.password, database=name)
    index_own_views(couch(name), "OBSID")
    settings.COUCHDB_DATABASES = [name]
    settings.COUCHDB_GROUP_FIELD = "OBSID"
    settings.JOB_CONFIRM_THRESHOLD = 20  # most actions here need the count typed, as large ones do
    yield request.param, couch(name)
    delete_database(couch(name))


def shape_of(url):
    """What an entry does: its path without the pool, and the query values that choose the action and selection."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "state" in query:  # the token lists' name for it
        query["bucket"] = query.pop("state")
    path = re.sub(r"^/pools/[^/]+/", "/pools/P/", parts.path)
    return (path, *(f"{k}={query[k]}" for k in SHAPING if k in query))


def entries(client, start="/", most=150):
    """{shape: (link, the page that shows it)} of every entry the pages reachable from `start` offer now."""
    _, forms, links = crawl(client, start=start, most=most, shaping=SHAPING)
    found = {}
    for link, page in links.items():
        if any(e in link for e in ENTRIES):
            found.setdefault(shape_of(link), (link, page))
    for page, form in forms:
        if form.method == "post" and urlsplit(form.action).path.endswith(FORMS_ON_PAGES):
            found.setdefault(shape_of(form.action) + ("form",), (form.action, page))
        elif form.method == "get" and any(e in form.action for e in ENTRIES) and "ids" in form.names():
            found.setdefault(shape_of(form.action) + ("ticked",), (form.action, page))  # a list's "act on ticked"
    return found


def fill(page, form):
    """Fill a form's empty visible fields as a person would, and the count when it must be typed."""
    for field in form.locator("input:visible, textarea:visible").all():
        name, kind = field.get_attribute("name"), field.get_attribute("type") or "text"
        if kind == "file" and field.get_attribute("required") is not None:  # a file as an alternative is left
            field.set_input_files({"name": "walk.txt", "mimeType": "text/plain", "buffer": b"walked\n"})
        elif kind == "file":
            continue
        elif name == "confirmation":
            field.fill(page.locator("p.dryrun strong, .dryrun strong").first.inner_text().replace(",", ""))
        elif kind in ("text", "number", "url", "email") or field.evaluate("e => e.tagName") == "TEXTAREA":
            if not field.input_value() and name in TYPED:
                field.fill(TYPED[name])


def promised(page):
    """The number of tokens the dry run on this page says the job will act on."""
    return int(page.locator(".dryrun strong").first.inner_text().replace(",", ""))


def run_from_dry_run(page, walked, shape):
    """On a dry run: fill its form, press its button, follow the job to its end; record the promise and the end."""
    count = promised(page)
    if count == 0:
        return "nothing to do now"
    form = page.locator("form.jobform").last
    fill(page, form)
    before = Job.objects.count()
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.locator(ENDED).first.wait_for()
    assert Job.objects.count() == before + 1, shape
    job = Job.objects.latest("pk")
    walked[shape] = (count, job.status, job.total, job.changed, job.skipped, job.failed, job.pk)
    return job


def test_every_action_the_pages_offer_runs_from_its_link_to_its_end_as_its_dry_run_promised(
        fresh_demo_pool, live_server, open_page, celery_worker):
    style, db = fresh_demo_pool
    user = make_user("olga", OPERATORS)
    client = Client()
    client.force_login(user)
    page = open_page()
    page.set_default_timeout(TIMEOUT_MS)
    log_in(page, live_server.url, "olga")
    walked, empty, offered = {}, {}, entries(client)
    while offered:
        shape, (link, source) = sorted(offered.items(), key=lambda item: order(item[0]))[0]
        del offered[shape]
        page.goto(live_server.url + source)
        if shape[-1] == "form":
            walk_form_on_page(page, link, shape, walked)
            continue
        if shape[-1] == "ticked":  # tick the first two tokens of the list, and preview
            act = page.locator("form.act")
            for box in act.locator("input[name=ids]").all()[:2]:
                box.check()
            act.get_by_role("button", name="Preview…").click()
            page.wait_for_url(re.compile(r"/jobs/new/\?"))
            job = run_from_dry_run(page, walked, shape)
            if isinstance(job, str):
                empty[shape] = job
            continue
        href = raw_href(page, shape)
        if href is None:  # earlier jobs took its tokens: the page no longer offers it
            empty[shape] = "no longer offered"
            continue
        page.locator(f'a[href="{href}"]').first.click()
        if "/tokensets/new/" in link:
            job = walk_token_set(page, shape, walked)
        else:
            page.wait_for_url(re.compile(r"/jobs/new/\?"))
            job = run_from_dry_run(page, walked, shape)
            if isinstance(job, str):
                empty[shape] = job
                continue
        # A job offers entries of its own (its tokens, for a new job): found from its page.
        for new_shape, entry in entries(client, start=f"/jobs/{job.pk}/", most=6).items():
            if new_shape not in walked and new_shape not in empty:
                offered.setdefault(new_shape, entry)
    shoot(page, f"walk-{style}-last-job")
    print(f"walked on the {style} pool:", *(f"  {' '.join(s)}: {w[:6]}" for s, w in sorted(walked.items())),
          "found with nothing to do:", *(f"  {' '.join(s)}: {why}" for s, why in sorted(empty.items())), sep="\n")
    for shape, (count, status, read, changed, skipped, failed, _pk) in walked.items():
        if shape[-1] in ("form", "tokenset"):
            continue
        # No pilot runs meanwhile: every token the dry run promised is read, and changed unless it is as asked
        # already (a field set, or a file attached, by an earlier step of the walk); none skipped for another reason.
        job = Job.objects.get(pk=walked[shape][-1])
        others = job.tokens.filter(outcome="skipped").exclude(reason="already as asked")
        assert (status, read, changed + skipped, failed) == ("succeeded", count, count, 0), (shape, walked[shape])
        assert not others.exists(), (shape, list(others.values_list("token_id", "reason")[:5]))
    kinds = {" ".join(s) for s in walked}
    must = ["kind=failure", "kind=state bucket=error", "ticked", "action=set_field", "action=attach", "action=delete",
            "/tokensets/new/", "/alerts/rules/", "/account/tokens/"]
    if style == "surf":
        must += ["kind=stale", "kind=state bucket=locked_unknown", "kind=host bucket=error", "kind=host bucket=locked"]
    missing = [m for m in must if not any(m in k for k in kinds)]
    assert not missing, (missing, sorted(kinds), sorted(empty.items()))


def order(shape):
    """Narrow selections first, the wide and the destructive last, so that each finds tokens left to act on."""
    text = " ".join(shape)
    ranks = [n for n, words in enumerate(("kind=stale", "locked_unknown", "kind=host", "ticked", "kind=failure",
                                          "kind=job", "kind=state", "action=set_field", "action=attach",
                                          "kind=observation", "action=delete")) if words in text]
    return max(ranks, default=-1), text  # -1: the forms that make something new


def raw_href(page, shape):
    """The href attribute, as written in the page, of the first link of this shape (the one found earlier may be
    gone: the failure group or host whose tokens an earlier job took)."""
    links = page.evaluate("""() => [...document.querySelectorAll('a[href]')].map(a => {
        const u = new URL(a.href); return [u.pathname + u.search, a.getAttribute('href')]; })""")
    return next((raw for url, raw in links if shape_of(url) == shape), None)


def walk_token_set(page, shape, walked):
    page.wait_for_url(re.compile(r"/tokensets/new/"))
    form = page.locator("form.jobform").last
    fill(page, form)
    form.get_by_role("button", name="Preview…").click()
    create = page.locator("form.jobform", has=page.get_by_role("button", name=re.compile(r"^Create \d+ token")))
    create.wait_for()
    count = int(re.search(r"Create (\d+) token", create.inner_text()).group(1))
    fill(page, create)
    confirmation = create.locator("input[name=confirmation]")
    if confirmation.count():
        confirmation.fill(re.search(r"Type (\d+) to confirm", create.inner_text()).group(1))
    create.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r"/jobs/\d+/$"))
    page.locator(ENDED).first.wait_for()
    job = Job.objects.latest("pk")
    walked[shape + ("tokenset",)] = (count, job.status, job.total, job.changed, job.skipped, job.failed, job.pk)
    assert (job.action, job.status, job.changed) == ("create_tokens", "succeeded", count)
    return job


def walk_form_on_page(page, action, shape, walked):
    form = page.locator(f'form[action="{urlsplit(action).path}"]')
    fill(page, form)
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    if "/alerts/rules/" in action:
        assert "Rule added" in page.locator("main").inner_text()
        walked[shape] = (1, "made", 1, AlertRule.objects.count(), 0, 0, None)
    else:
        assert page.locator("#new-secret").inner_text().startswith("pcs_")
        walked[shape] = (1, "made", 1, 1, 0, 0, None)
