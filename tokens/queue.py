"""The broker: what the domain hands to Celery workers.

Tasks are sent by name, so that the modules they call (reading, history, operations) never import
tokens.tasks, which imports them. Sending raises whatever the transport raises when the broker is down;
the callers catch that and say what they do instead.
"""

from celery import current_app


def refresh_counts(slug):
    _send("refresh_counts", slug)


def recount_counts(slug, asked):
    _send("recount_counts", slug, asked)


def refresh_history(slug):
    _send("refresh_history", slug)


def run_job(job_id):
    _send("run_job", job_id)


def _send(task, *args):
    # No caller waits for a result: without ignore_result the sender subscribes to the result backend for each task.
    current_app.send_task(f"tokens.tasks.{task}", args=args, ignore_result=True)
