"""Files a job needs after its request has ended (an attachment to upload, a token set's list), kept on disk in
JOB_UPLOAD_DIR under a random id until the job ends."""

import base64
import hashlib
import uuid
from pathlib import Path

from django.conf import settings

from tokens.selections import OperationError


def save_upload(uploaded):
    """Keep an uploaded file on disk (streamed in chunks) for the job; returns (upload id, size, digest)."""
    if uploaded.size > settings.JOB_UPLOAD_MAX_BYTES:
        raise OperationError(f"The file is {uploaded.size} bytes; the limit is {settings.JOB_UPLOAD_MAX_BYTES}")
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


def upload_path(upload_id):
    if not upload_id.isalnum():
        raise OperationError("Bad upload id")
    return Path(settings.JOB_UPLOAD_DIR) / upload_id
