from django.conf import settings
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


class ContentSecurityPolicyMiddleware:
    """Sends settings.CONTENT_SECURITY_POLICY with every response (Django 5.2 has no CSP of its own).

    A file the site passes on from a pool (a response with Content-Disposition) gets a policy of its own with
    nothing allowed and a sandbox: whatever a token's attachment holds, it never runs as part of the site."""

    DOWNLOAD_POLICY = "default-src 'none'; sandbox"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        download = response.has_header("Content-Disposition")
        policy = self.DOWNLOAD_POLICY if download else settings.CONTENT_SECURITY_POLICY
        if policy and not response.has_header("Content-Security-Policy"):
            response["Content-Security-Policy"] = policy
        return response
