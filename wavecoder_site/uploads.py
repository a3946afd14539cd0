"""A request-size limit for file uploads, checked before the body is read."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler

from curation.params import BadParameter

_FORM_FIELDS_ALLOWANCE = 1024 * 1024  # the other fields of an upload form


def upload_request_limit() -> int:
    """The most bytes a multipart request may carry: the largest upload the app takes, plus its fields."""
    return max(settings.INGEST_MAX_UPLOAD_BYTES, settings.IMPORT_MAX_BYTES) + _FORM_FIELDS_ALLOWANCE


class RequestSizeLimit(FileUploadHandler):
    """Refuses a multipart request whose Content-Length is over `upload_request_limit()` before Django
    reads it, so an oversized upload never fills the temporary folder. Each feature then applies its own,
    possibly smaller, limit with its own message (ingest: curation/launch.py; imports: curation/imports.py).
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        limit = upload_request_limit()
        if content_length and content_length > limit:
            # A 400 with this message: DRF answers {"upload": [...]}, pages the plain-text handler400.
            raise BadParameter(
                "upload",
                f"The upload is {content_length / 2**20:,.1f} MB, over the {limit / 2**20:,.0f} MB the "
                "server accepts (WAVECODER_MAX_UPLOAD_MB).",
            )
        return None

    def receive_data_chunk(self, raw_data, start):
        return raw_data  # the next handlers store the data

    def file_complete(self, file_size):
        return None
