from django.http import Http404, JsonResponse


class JsonNotFoundMiddleware:
    """A 404 asked for as JSON is answered as JSON, with DEBUG on as well as off."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        from dashboard.web import wants_json

        if isinstance(exception, Http404) and wants_json(request):
            return JsonResponse({"error": str(exception) or "Not found"}, status=404)
        return None

