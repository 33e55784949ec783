"""Two roles: viewers (project leads) read; operators also act. Enforced on the server."""

from functools import wraps

from django.core.exceptions import PermissionDenied

OPERATORS = "operators"
VIEWERS = "viewers"


def is_operator(user):
    return user.is_authenticated and (user.is_superuser or user.groups.filter(name=OPERATORS).exists())


def operator_required(view):
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not is_operator(request.user):
            raise PermissionDenied("Only operators can do this.")
        return view(request, *args, **kwargs)

    return wrapper


def roles(request):
    """Template context: whether to show action controls at all."""
    return {"is_operator": is_operator(request.user)}
