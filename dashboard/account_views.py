from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required

from dashboard.throttle import ThrottledLoginForm

_login = auth_views.LoginView.as_view(authentication_form=ThrottledLoginForm)


@login_not_required
def login(request):
    """Django's login view with login throttling: a refused attempt answers 429 with Retry-After."""
    response = _login(request)
    form = getattr(response, "context_data", None) and response.context_data.get("form")
    if form is not None and form.retry_after:
        response.status_code = 429
        response["Retry-After"] = str(form.retry_after)
    return response
