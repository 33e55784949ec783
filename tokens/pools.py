"""Which pools the dashboard watches: from the environment, and from the admin-managed list."""

from dataclasses import dataclass, field

from django.conf import settings
from django.utils.text import slugify

from tokens.couch import Couch, CouchError, split_credentials
from tokens.models import PoolConfig
from tokens.secretbox import SecretError


@dataclass(frozen=True)
class Pool:
    slug: str
    name: str
    url: str
    database: str
    username: str = ""
    password: str = field(default="", repr=False)
    group_field: str = ""
    create_views: bool = False
    source: str = "environment"
    problem: str = ""  # why its credentials cannot be had (they are not shown anywhere, this is)

    def couch(self):
        if self.problem:
            raise CouchError(self.problem)
        return Couch(self.url, self.database, self.username, self.password, timeout=settings.COUCHDB_TIMEOUT)


def env_pools():
    if not settings.COUCHDB_URL:
        return []
    url, user, password = split_credentials(settings.COUCHDB_URL)
    return [
        Pool(
            slug=slugify(db) or "pool",
            name=db,
            url=url,
            database=db,
            username=settings.COUCHDB_USER or user,
            password=settings.COUCHDB_PASSWORD or password,
            group_field=settings.COUCHDB_GROUP_FIELD,
            create_views=settings.COUCHDB_CREATE_VIEWS,
        )
        for db in settings.COUCHDB_DATABASES
    ]


def admin_pools():
    pools = []
    for c in PoolConfig.objects.all():
        try:
            password, problem = c.password, ""
        except SecretError as e:
            password, problem = "", str(e)
        pools.append(Pool(slug=c.slug, name=c.name or c.database, url=split_credentials(c.url)[0],
                          database=c.database, username=c.username, password=password, group_field=c.group_field,
                          create_views=c.create_views, source="admin", problem=problem))
    return pools


def all_pools():
    """Pools from the environment first; an admin pool with the same slug is ignored."""
    pools = {p.slug: p for p in env_pools()}
    for p in admin_pools():
        pools.setdefault(p.slug, p)
    return list(pools.values())


def get_pool(slug):
    return next((p for p in all_pools() if p.slug == slug), None)
