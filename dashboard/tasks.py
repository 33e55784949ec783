from celery import shared_task

from tokens import history
from tokens.pools import get_pool


@shared_task(ignore_result=True)
def refresh_history(slug):
    """Recompute a pool's chart history in the background (see tokens.history)."""
    pool = get_pool(slug)
    if pool is not None:
        history.refresh(pool)
