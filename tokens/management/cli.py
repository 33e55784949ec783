"""What the management commands that run jobs share: the pool and the user a job is recorded under, and how a job's
end is said."""

import getpass

from django.contrib.auth.models import User
from django.core.management.base import CommandError

from tokens.pools import get_pool
from tokens.selections import OperationError


def pool_named(slug):
    """The watched pool `slug`, or CommandError saying there is none."""
    pool = get_pool(slug)
    if pool is None:
        raise CommandError(f"No pool {slug!r}")
    return pool


def user_named(name):
    """The dashboard user `name` (None for no name), or OperationError saying there is none."""
    if not name:
        return None
    user = User.objects.filter(username=name).first()
    if user is None:
        raise OperationError(f"No user {name!r}")
    return user


def from_the_shell(job):
    """Record the shell's login on a job made from the command line: who ran it, with or without --user."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name known for this process's user id (a container's)
        login = ""
    job.shell_user = login[:150]
    job.save(update_fields=["shell_user"])
    return job


def say_end(stdout, job, figures):
    """Write what a job did (`figures`, its counts in words) and its message; CommandError unless it succeeded."""
    stdout.write(f"job {job.pk} {job.status}: {figures}")
    if job.message:
        stdout.write(job.message)
    if job.status != job.SUCCEEDED:
        raise CommandError(f"job {job.pk} {job.status}")
