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
    # An admin pool's row: its password is opened only when a client is made for it (couch()), never to list pools,
    # so that a list of pools holds no password in clear and a page that only names pools decrypts nothing.
    config_id: int | None = None

    def couch(self, timeout=None):
        password = self.password
        if self.config_id is not None:
            try:
                password = PoolConfig.objects.get(pk=self.config_id).password
            except PoolConfig.DoesNotExist as e:
                raise CouchError(f"The pool {self.slug} was removed in the admin") from e
            except SecretError as e:  # why its credentials cannot be had (they are shown nowhere, this is)
                raise CouchError(str(e)) from e
        return Couch(self.url, self.database, self.username, password, timeout=timeout or settings.COUCHDB_TIMEOUT)


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
    return [Pool(slug=c.slug, name=c.name or c.database, url=split_credentials(c.url)[0], database=c.database,
                 username=c.username, group_field=c.group_field, create_views=c.create_views, source="admin",
                 config_id=c.pk) for c in PoolConfig.objects.all()]


def all_pools():
    """Pools from the environment first; an admin pool with the same slug is ignored."""
    pools = {p.slug: p for p in env_pools()}
    for p in admin_pools():
        pools.setdefault(p.slug, p)
    return list(pools.values())


def get_pool(slug):
    return next((p for p in all_pools() if p.slug == slug), None)
