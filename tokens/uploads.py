"""Files a job needs after its request has ended (an attachment to upload, a token set's list), kept on disk in
JOB_UPLOAD_DIR under a random id until the job ends (a form's, previewed and left, for JOB_UPLOAD_KEEP_HOURS)."""

import base64
import hashlib
import os
import re
import shutil
import time
import uuid
from pathlib import Path

from django.conf import settings

from tokens.selections import OperationError


def save_upload(uploaded, limit=None, what="file"):
    """Keep an uploaded file on disk (streamed in chunks) for the job; returns (upload id, size, digest)."""
    limit = limit or settings.JOB_UPLOAD_MAX_BYTES
    if uploaded.size > limit:
        raise OperationError(f"The {what} is {uploaded.size} bytes; the limit is {limit}")
    upload_id = uuid.uuid4().hex
    digest = hashlib.md5()  # noqa: S324 - CouchDB's attachment digest, not security
    path = upload_path(upload_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as out:
            for chunk in uploaded.chunks():
                digest.update(chunk)
                out.write(chunk)
    except OSError as e:
        path.unlink(missing_ok=True)
        raise OperationError(f"The upload could not be stored on the server: {e.strerror}") from None
    return upload_id, uploaded.size, "md5-" + base64.b64encode(digest.digest()).decode()


def save_text(text):
    """Keep a text input (a token set's list) on disk for the job; returns its upload id."""
    upload_id = uuid.uuid4().hex
    path = upload_path(upload_id)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise OperationError(f"The input could not be stored on the server: {e.strerror}") from None
    return upload_id


def link_upload(upload_id):
    """The same file under a new id (a hard link; a copy where links are not possible): a job deletes its own."""
    source, new_id = kept_upload(upload_id), uuid.uuid4().hex
    try:
        os.link(source, upload_path(new_id))
    except OSError:
        shutil.copyfile(source, upload_path(new_id))
    return new_id


def forget(upload_id):
    """Delete an upload no form will come back for (an API request's own copy, a refused job's; a job keeps its
    link)."""
    try:
        upload_path(upload_id).unlink(missing_ok=True)
        _name_path(upload_id).unlink(missing_ok=True)
    except OperationError:  # not an id this server makes: nothing of it is on disk
        pass


def remember_name(upload_id, name):
    """Keep the name of an uploaded file beside it: a form that comes back with the upload's id is told the name
    by the server, never by a field the browser could have changed."""
    _name_path(upload_id).write_text(name)


def name_of(upload_id):
    """The name kept with an upload ("" for typed text, or when none was kept)."""
    try:
        return _name_path(upload_id).read_text()
    except (OSError, OperationError):
        return ""


def _name_path(upload_id):
    return upload_path(upload_id).with_name(upload_id + ".name")


def sweep(referenced):
    """Delete what no job needs: files older than JOB_UPLOAD_KEEP_HOURS (a form previewed and left) that are not in
    `referenced` (the uploads of jobs that have not ended). Returns how many were deleted."""
    folder = Path(settings.JOB_UPLOAD_DIR)
    cutoff = time.time() - settings.JOB_UPLOAD_KEEP_HOURS * 3600
    deleted = 0
    for path in folder.glob("*") if folder.is_dir() else ():
        try:
            if path.name not in referenced and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except FileNotFoundError:
            pass  # deleted meanwhile by the job that used it
    return deleted


class LocalFile:
    """A file on this machine with what save_upload and an attach job ask of an upload: its size, its chunks, its
    name (Django's uploaded files have the same three)."""

    def __init__(self, path):
        try:
            self.size = os.path.getsize(path)
        except OSError as e:
            raise OperationError(f"Cannot read {path}: {e.strerror}") from None
        self.path = path
        self.name = os.path.basename(path)

    def chunks(self, size=1024 * 1024):
        with open(self.path, "rb") as f:
            while chunk := f.read(size):
                yield chunk


def upload_path(upload_id):
    """Where an upload id's file is. Only an id this server made (uuid4 hex) names a file: an id comes back from a
    form, so anything else is refused, never a path."""
    if not isinstance(upload_id, str) or not re.fullmatch(r"[0-9a-f]{32}", upload_id):
        raise OperationError("The input kept for this form is not one this server keeps: send it again")
    return Path(settings.JOB_UPLOAD_DIR) / upload_id


def kept_upload(upload_id):
    """The file of an upload kept between a form's preview and its job; refused once it has been swept."""
    path = upload_path(upload_id)
    if not path.is_file():
        raise OperationError("The input kept for this form is no longer on the server (kept for "
                             f"{settings.JOB_UPLOAD_KEEP_HOURS} hours): send it again")
    return path
