from celery import shared_task

from tokens import reading
from tokens.pools import get_pool


@shared_task(ignore_result=True)
def refresh_counts(slug):
    """Refresh a pool's counts in the background (see tokens.reading.snapshot)."""
    pool = get_pool(slug)
    if pool is not None:
        reading.refresh(pool)
