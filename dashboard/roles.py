"""Who may see and do what, pool by pool. Viewers (project leads) read a pool; operators also act on it.

A role is held for one pool or for all of them ("*"), by a user or by a Django group the user is in
(dashboard.PoolRole, managed in the admin, or granted from the sign-in provider's claims at each login). The two
built-in groups keep their meaning: "operators" operate every pool, "viewers" view every pool; a superuser operates
every pool. A pool a user holds no role for does not exist for them: its pages and API answers are 404, not 403,
and it is left out of every list, count and total. An API token can narrow its owner's roles (read-only, some
pools), never widen them. Management commands and Celery tasks act as the system and do not ask.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.http import Http404

OPERATORS = "operators"
VIEWERS = "viewers"
VIEWER = "viewer"
OPERATOR = "operator"
ALL = "*"
_RANK = {None: 0, VIEWER: 1, OPERATOR: 2}


def _higher(a, b):
    return a if _RANK[a] >= _RANK[b] else b


@dataclass(frozen=True)
class Access:
    everywhere: str | None = None  # the role held for every pool
    pools: dict = field(default_factory=dict)  # slug -> role, for single pools

    def role(self, slug):
        return _higher(self.everywhere, self.pools.get(slug))

    def can_view(self, slug):
        return self.role(slug) is not None

    def can_operate(self, slug):
        return self.role(slug) == OPERATOR

    def visible(self, pools):
        return [p for p in pools if self.can_view(p.slug)]

    def pool_filter(self):
        """The slugs this access may see, for a query; None when it sees every pool."""
        return None if self.everywhere else set(self.pools)

    @property
    def operates_any(self):
        return self.everywhere == OPERATOR or OPERATOR in self.pools.values()

    @property
    def sees_any(self):
        return self.everywhere is not None or bool(self.pools)

    def narrowed(self, read_only, slugs):
        """What is left once an API token's own limits apply: at most viewer when read-only, only `slugs` if any."""
        def cap(role):
            return VIEWER if read_only and role else role

        if not slugs:
            return Access(cap(self.everywhere), {s: cap(r) for s, r in self.pools.items()})
        return Access(None, {s: cap(self.role(s)) for s in slugs if self.role(s)})


NOBODY = Access()


def may_view(user, slug):
    """Whether a user may see a pool (settings.POOL_ACCESS_CHECK: how the alerts ask it)."""
    return user_access(user).can_view(slug)


def user_access(user):
    """The user's roles, read once per request (kept on the user object, which lives as long as the request)."""
    if not user.is_authenticated or not user.is_active:
        return NOBODY
    cached = getattr(user, "_pool_access", None)
    if cached is not None:
        return cached
    if user.is_superuser:
        result = Access(OPERATOR)
    else:
        from dashboard.models import PoolRole

        groups = set(user.groups.values_list("name", flat=True))
        everywhere = OPERATOR if OPERATORS in groups else VIEWER if VIEWERS in groups else None
        pools = {}
        for pool, role in (PoolRole.objects.filter(Q(user=user) | Q(group__user=user))
                           .values_list("pool", "role")):
            if pool == ALL:
                everywhere = _higher(everywhere, role)
            else:
                pools[pool] = _higher(pools.get(pool), role)
        result = Access(everywhere, pools)
    user._pool_access = result
    return result


def access(request):
    """What this request may see and do: its user's roles, narrowed by the API token it came with, if any."""
    result = user_access(request.user)
    token = getattr(request, "api_token", None)
    if token is not None:
        result = result.narrowed(token.read_only, token.pools)
    return result


def act_as(request, token):
    """The request acts for an API token's owner, within the token's limits (the API's and /metrics' bearer)."""
    request.user, request.api_token = token.user, token


def require(request, slug, operate, missing):
    """A pool (or a thing on it) the request may not see does not exist for it: Http404(missing). With `operate`,
    a viewer of the pool is refused (403)."""
    if not access(request).can_view(slug):
        raise Http404(missing)
    if operate:
        require_operator(request, slug)


def require_operator(request, slug):
    """For a pool the caller can see (the caller already got its 404 otherwise): refuse a viewer."""
    if not access(request).can_operate(slug):
        token = getattr(request, "api_token", None)
        if token is not None and token.read_only and user_access(request.user).can_operate(slug):
            raise PermissionDenied("This API token is read-only: its owner may act, the token may not. Make a "
                                   "token that may operate on /account/.")
        raise PermissionDenied("Only operators of this pool can do this.")


def roles(request):
    """Template context: whether to show action controls (on a pool's pages, for that pool; elsewhere, for any),
    and how people sign in."""
    slug = getattr(getattr(request, "resolver_match", None), "kwargs", {}).get("slug")
    mine = access(request)
    return {"is_operator": mine.can_operate(slug) if slug else mine.operates_any,
            "local_login": settings.LOCAL_LOGIN, "sso_name": settings.OIDC_PROVIDER_NAME if settings.OIDC_ISSUER
            else ""}


# --- Single sign-on: roles from the provider's claims -------------------------------------------------------------

def roles_from_claims(claims):
    """{(pool, role)} that OIDC_ROLE_MAP gives the values of the groups claim (a list, or one string)."""
    values = claims.get(settings.OIDC_GROUPS_CLAIM) or []
    values = {values} if isinstance(values, str) else {str(v) for v in values}
    return {(pool, role) for value, role, pool in settings.OIDC_ROLE_MAP if value in values}


def _free_username(wanted, user):
    from django.contrib.auth.models import User

    base = wanted[:140] or "user"
    name, n = base, 1
    while User.objects.filter(username=name).exclude(pk=getattr(user, "pk", None)).exists():
        n += 1
        name = f"{base}-{n}"
    return name


@transaction.atomic
def sso_user(issuer, claims):
    """The user a provider's claims name (made at the first login), with the roles those claims give now: roles
    granted at an earlier login that the claims no longer give are gone. Roles an admin granted stay."""
    from django.contrib.auth.models import User

    from dashboard.models import PoolRole, SsoIdentity

    identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=claims["sub"]).first()
    user = identity.user if identity else User(password="!")  # no password: this user cannot log in locally
    wanted = claims.get("preferred_username") or (claims.get("email") or "").partition("@")[0] or claims["sub"]
    if not identity:
        user.username = _free_username(str(wanted), None)
    user.email = str(claims.get("email") or user.email or "")[:254]
    user.first_name = str(claims.get("given_name") or "")[:150]
    user.last_name = str(claims.get("family_name") or "")[:150]
    if not user.first_name and not user.last_name and claims.get("name"):
        user.first_name = str(claims["name"])[:150]
    user.save()
    kept = {k: v for k, v in claims.items() if k in ("sub", "preferred_username", "email", "name",
                                                      settings.OIDC_GROUPS_CLAIM)}
    SsoIdentity.objects.update_or_create(issuer=issuer, subject=claims["sub"],
                                         defaults={"user": user, "last_login_claims": kept})
    PoolRole.objects.filter(user=user, from_sso=True).delete()
    PoolRole.objects.bulk_create(PoolRole(user=user, pool=pool, role=role, from_sso=True)
                                 for pool, role in sorted(roles_from_claims(claims)))
    return user
