"""Paging of the REST API's lists."""

from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=`` with at most ``max_limit`` rows a page (a larger ``limit`` gives
    that many, with a ``next`` link): a 24-hour recording holds about 100,000 beats, and one
    request must not serialize them all.

    A ``limit`` that is not a positive integer is a 400 naming it: DRF's class answers the
    default page for ``limit=0``, ``-3`` or ``abc``, so a script's mistake went unseen."""

    default_limit = 100
    max_limit = 1000

    def get_limit(self, request):
        text = request.query_params.get(self.limit_query_param, "")
        if text.strip() == "":  # absent, or a blank form field: the default
            return self.default_limit
        try:
            limit = int(text)
        except ValueError:
            limit = 0
        if limit < 1:
            raise ParseError(
                f'"limit" must be a whole number of rows from 1 (at most {self.max_limit} '
                f"are answered), got {text[:20]!r}"
            )
        return min(limit, self.max_limit)
