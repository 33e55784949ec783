"""New token sets in the web UI: the form, the dry run, and the job that creates them. Operators only."""

from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from dashboard.job_views import start
from dashboard.web import couch_error, pool_or_404, wants_json
from tokens import selections, tokensets
from tokens.couch import CouchError
from tokens.selections import OperationError
from tokens.tokensets import Options, TokenSetError


def text_input(request, name):
    """A text field, or the file uploaded in its place (checked against the size limit before it is read)."""
    uploaded = request.FILES.get(name + "_file")
    if uploaded is not None:
        tokensets.input_limit_check(uploaded.size, name.replace("_", " "))
        try:
            return uploaded.read().decode("utf-8")
        except UnicodeDecodeError:
            raise TokenSetError(f"The {name.replace('_', ' ')} file is not UTF-8 text") from None
    return request.POST.get(name, "")


def options_from(post):
    try:
        per_token = int(post.get("per_token", "10"))
    except ValueError:
        raise TokenSetError("Items per token must be a whole number") from None
    return Options(
        token_type=post.get("token_type", "").strip(), per_token=per_token,
        key_field=post.get("key_field", "STARTSB").strip() or "STARTSB",
        id_prefix=post.get("id_prefix", "SB").strip(), id_suffix=post.get("id_suffix", "").strip(),
        id_template=post.get("id_template", "").strip(), attachment=post.get("attachment", "srm.txt").strip(),
        create_views=post.get("create_views") == "on",
    )


@require_http_methods(["GET", "POST"])
def tokenset_new(request, slug):
    """GET: the form. POST: the dry run (nothing written), with the form again and the confirmation."""
    pool = pool_or_404(request, slug, operate=True)
    context = {"pool": pool, "form": request.POST or {"per_token": 10, "key_field": "STARTSB", "id_prefix": "SB",
                                                      "attachment": "srm.txt", "create_views": "on"}}
    if request.method == "GET":
        return render(request, "tokenset_new.html", context)
    texts = {}  # what was typed or uploaded, kept for the form whatever goes wrong
    try:
        for name in ("config", "input_list"):
            texts[name] = text_input(request, name)
        options = options_from(request.POST)
        for name, what in (("config", "config"), ("input_list", "input list")):
            tokensets.input_limit_check(len(texts[name].encode()), what)
        seen = tokensets.preview(pool, tokensets.plan(texts["config"], texts["input_list"], options))
    except OperationError as e:
        if wants_json(request):
            return JsonResponse({"error": str(e)}, status=400)
        # A file that was read goes back in its text box; one that could not be read must be chosen again
        # (a browser never fills in a file field), and the page says so.
        again = [f.name for key, f in request.FILES.items() if key.removesuffix("_file") not in texts]
        return render(request, "tokenset_new.html", {**context, "problem": str(e), "choose_again": again,
                                                     "config_text": texts.get("config", request.POST.get("config", "")),
                                                     "items_text": texts.get("input_list",
                                                                             request.POST.get("input_list", ""))},
                      status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    if wants_json(request):
        return JsonResponse(seen)
    context.update(preview=seen, config_text=texts["config"], items_text=texts["input_list"],
                   to_create=seen["count"] - seen["existing_count"],
                   typed=selections.needs_typed_confirmation("create", seen["count"]))
    return render(request, "tokenset_new.html", context)


@require_POST
def tokenset_create(request, slug):
    pool = pool_or_404(request, slug, operate=True)
    try:
        job = tokensets.create_job(pool, request.user, request.POST.get("config", ""),
                                   request.POST.get("input_list", ""), options_from(request.POST),
                                   confirmation=request.POST.get("confirmation"))
    except OperationError as e:
        if wants_json(request):
            return JsonResponse({"error": str(e)}, status=400)
        return render(request, "tokenset_new.html", {"pool": pool, "form": request.POST, "problem": str(e),
                                                     "config_text": request.POST.get("config", ""),
                                                     "items_text": request.POST.get("input_list", "")}, status=400)
    except CouchError as e:
        return couch_error(request, pool, e)
    return start(request, job)
