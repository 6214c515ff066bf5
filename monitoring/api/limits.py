"""Request body limits, checked on the declared length before anything reads the body.

An endpoint with a documented body limit (``/predict``, ``/api/diagnosis/``, uploads) mixes
in :class:`BodyLimitMixin`. It judges the ``Content-Length`` before DRF authenticates the
request, because authenticating can read the body: DRF's ``SessionAuthentication`` runs
Django's CSRF check on the DRF request, whose ``request.POST`` parses the whole body with the
view's parsers. Checked inside the view, a signed-in browser's 5 MiB body of "x" got 400
"JSON parse error" instead of 413, and a valid 60 MB JSON body was parsed in memory (about
2-4 s) before its 413. ``REQUEST_MAX_BYTES`` (cardiospike/asgi.py) still bounds every body
before Django; this is each endpoint's own, smaller limit.

The length is judged before the credentials too: a body over the limit gets 413 whoever
sends it, since telling an anonymous client 401 would mean reading it first.
"""

from django.utils.datastructures import MultiValueDict
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.renderers import JSONRenderer

from monitoring.uploads import UploadError, declared_oversize


class BodyRefused(APIException):
    """A body refused by its declared length: 413, or 400 for a Content-Length that is not a
    number. Rendered as ``{"detail": ...}`` by the API's exception handler."""

    def __init__(self, detail: str, status_code: int) -> None:
        super().__init__(detail)
        self.status_code = status_code


class BodyLimitMixin:
    """Refuse a request whose ``Content-Length`` exceeds :meth:`body_limit_bytes` (413)
    before authentication, parsing or the view read any of it."""

    def body_limit_bytes(self) -> int:
        raise NotImplementedError

    def oversize_detail(self, declared_bytes: int, limit_bytes: int) -> str:
        return f"body of {declared_bytes} bytes exceeds the {limit_bytes}-byte limit"

    def perform_authentication(self, request) -> None:
        # DRF's initial() authenticates first of everything that may read the body (content
        # negotiation, which runs before it, reads only headers)
        limit_bytes = self.body_limit_bytes()
        try:
            declared_bytes = declared_oversize(request, limit_bytes)
        except UploadError as exc:  # a Content-Length that is not a number
            self.refuse_unread(request)
            raise BodyRefused(str(exc), exc.status) from None
        if declared_bytes is not None:
            self.refuse_unread(request)
            raise BodyRefused(
                self.oversize_detail(declared_bytes, limit_bytes),
                status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            )
        super().perform_authentication(request)

    @staticmethod
    def refuse_unread(request) -> None:
        """Make sure nothing reads the refused body: its data read as empty (DRF parses it
        only once, into these), and the answer rendered as JSON. With ``Accept: text/html``
        the browsable API's error page checks the permissions, which authenticates the user
        and, for a session, runs the CSRF check on ``request.POST``: the 413 came after the
        whole body had been parsed (review of 2026-12-07)."""
        request._data = {}
        request._full_data = {}
        request._files = MultiValueDict()
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = JSONRenderer.media_type
