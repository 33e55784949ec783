"""New token sets in the web UI: the form, the dry run, and the job that creates them. Operators only."""

from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.web import couch_error, pool_or_404, start
from tokens import selections, tokensets
from tokens.couch import CouchError
from tokens.selections import OperationError
from tokens.tokensets import NotText


def config_input(request):
    """The config: typed, or the file uploaded in its place (a few KB; checked against its limit before it is read)."""
    uploaded = request.FILES.get("config_file")
    if uploaded is None:
        return request.POST.get("config", "")
    return tokensets.read_config(uploaded, uploaded.size)


def list_input(request):
    """The input list, kept on disk (it may hold millions of SURLs): (upload id, the file's name or "" if typed).
    A file chosen now comes first, then what is typed, then the file kept from the form's last preview."""
    uploaded = request.FILES.get("input_list_file")
    if uploaded is not None:
        return tokensets.save_list(uploaded=uploaded), uploaded.name
    typed = request.POST.get("input_list", "")
    kept = request.POST.get("input_list_upload", "")
    if typed.strip() or not kept:
        return tokensets.save_list(text=typed), ""
    return kept, tokensets.list_name(kept)


def options_from(post):
    return tokensets.options(
        post.get("token_type", ""), post.get("per_token", "10"), post.get("key_field", "STARTSB"),
        post.get("id_prefix", "SB"), post.get("id_suffix", ""), post.get("id_template", ""),
        post.get("attachment", "srm.txt"), create_views=post.get("create_views") == "on")


@require_http_methods(["GET", "POST"])
def tokenset_new(request, slug):
    """GET: the form. POST: the dry run (nothing written), with the form again and the confirmation."""
    pool = pool_or_404(request, slug, operate=True)
    context = {"pool": pool, "form": request.POST or {"per_token": 10, "key_field": "STARTSB", "id_prefix": "SB",
                                                      "attachment": "srm.txt", "create_views": "on"},
               "config_text": request.POST.get("config", ""), "items_text": request.POST.get("input_list", "")}
    if request.method == "GET":
        return render(request, "tokenset_new.html", context)
    read = set()  # the files read: kept (the config in its box, the list on the server); the rest to choose again
    try:
        context["config_text"] = config_input(request)
        read.add("config_file")
        upload, name = list_input(request)
        if name:  # a list file stays on the server, never in the page (it may be a gigabyte)
            read.add("input_list_file")
            context.update(items_text="", list_upload=upload, list_name=name)
        options = options_from(request.POST)
        tokensets.config_limit_check(len(context["config_text"].encode()))
        with tokensets.plan(context["config_text"], upload, options) as the_plan:
            seen = tokensets.preview(pool, the_plan)
    except OperationError as e:
        if isinstance(e, NotText) and request.FILES.get("input_list_file"):
            read.discard("input_list_file")
            context.pop("list_upload")
        again = [f.name for key, f in request.FILES.items() if key not in read]
        return render(request, "tokenset_new.html", {**context, "problem": str(e), "choose_again": again},
                      status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    context.update(preview=seen, list_upload=upload, list_name=name, to_create=seen["count"] - seen["existing_count"],
                   typed=selections.needs_typed_confirmation("create", seen["count"]))
    return render(request, "tokenset_new.html", context)


@require_POST
def tokenset_create(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    try:
        upload, _name = list_input(request)
        job = tokensets.create_job(pool, request.user, request.POST.get("config", ""), upload,
                                   options_from(request.POST), confirmation=request.POST.get("confirmation"))
    except OperationError as e:
        return render(request, "tokenset_new.html", {
            "pool": pool, "form": request.POST, "problem": str(e), "config_text": request.POST.get("config", ""),
            "items_text": request.POST.get("input_list", ""), "list_upload": request.POST.get("input_list_upload"),
            "list_name": tokensets.list_name(request.POST.get("input_list_upload", ""))}, status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    return start(job)
