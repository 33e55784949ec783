

class NulRefusalMiddleware:
    """A NUL character in any query value or form field is refused before a view sees it: no text the site keeps
    may hold one (PostgreSQL refuses it, CouchDB ids and most tools cut at it), and no person types one. The API
    refuses it in its own validation (422), field by field."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            for data in (request.GET, request.POST) if request.method == "POST" else (request.GET,):
                for name, values in data.lists():
                    if "\x00" in name or any("\x00" in v for v in values):
                        from dashboard.web import refuse

                        shown = name.replace("\x00", "\\0")[:60]
                        return refuse(request, None, "Refused", f"The field “{shown}” holds a NUL character, which "
                                                                "no text here may hold. Nothing was done.")
        return self.get_response(request)
