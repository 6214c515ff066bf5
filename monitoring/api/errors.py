"""How the API turns a request it cannot take into a JSON refusal, ``{"detail": "..."}``.

Two holes in DRF's own handling let such requests through as a 500 or as Django's HTML page:

- its ``JSONParser`` catches ``ValueError`` only, and a body of a few kB of nested brackets
  makes Python's decoder raise ``RecursionError`` (a 500);
- Django's multipart parser raises ``SuspiciousOperation`` (too many files or fields, a body
  over ``DATA_UPLOAD_MAX_MEMORY_SIZE``), which DRF's exception handler leaves to Django, whose
  answer is an HTML 400 page.

And a view whose answers are not JSON (the OpenAPI schema, YAML by default) rendered its
errors in its own format, e.g. a 401 as YAML.
"""

import logging

from django.conf import settings
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from rest_framework import parsers, status
from rest_framework.exceptions import ParseError
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with too deep a nesting refused as malformed (``ParseError``, 400).

    Python's decoder recurses once per bracket and gives up near the interpreter's recursion
    limit (about 1,000 levels), raising ``RecursionError``, which DRF's parser does not catch.
    No request this API takes nests deeper than three levels.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON nested too deeply") from None


def suspicious_operation_detail(exc: SuspiciousOperation) -> str:
    """What to tell the client: the limit it ran into, or nothing more than that it was
    refused (other ``SuspiciousOperation`` messages may name server paths; they are logged)."""
    if isinstance(exc, TooManyFilesSent):
        return f"too many files: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES} in one request"
    if isinstance(exc, TooManyFieldsSent):
        return (
            f"too many form fields: at most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} in one request"
        )
    return "the request was refused as malformed"


def exception_handler(exc, context):
    """DRF's exception handler (``REST_FRAMEWORK["EXCEPTION_HANDLER"]``), which also answers
    Django's ``SuspiciousOperation`` (400) and ``RequestDataTooBig`` (413) in JSON, and
    renders every error in JSON whatever the view's successful answers are."""
    # imported here: rest_framework.views reads DEFAULT_PARSER_CLASSES, this module, as it loads
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, RequestDataTooBig):
        response = Response(
            {
                "detail": f"the request body exceeds the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE}-"
                "byte limit"
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    elif isinstance(exc, SuspiciousOperation):
        # Django logs these to django.security.<class> before its HTML 400; keep that trail
        logging.getLogger(f"django.security.{type(exc).__name__}").error(str(exc))
        response = Response(
            {"detail": suspicious_operation_detail(exc)}, status=status.HTTP_400_BAD_REQUEST
        )
    else:
        response = drf_exception_handler(exc, context)
    request = context.get("request")
    if response is not None and request is not None:
        renderer = getattr(request, "accepted_renderer", None)
        if type(renderer) is not JSONRenderer and not isinstance(renderer, BrowsableAPIRenderer):
            # the schema view negotiates YAML or OpenAPI JSON (or nothing yet, for a 406); a
            # client reading an error expects the {"detail": ...} JSON of every other refusal
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
    return response
