"""Paging of the REST API's lists."""

from rest_framework.exceptions import ParseError
from rest_framework.pagination import LimitOffsetPagination

from monitoring.api.serializers import whole_number


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=`` with at most ``max_limit`` rows a page (a larger ``limit`` gives
    that many, with a ``next`` link): a 24-hour recording holds about 100,000 beats, and one
    request must not serialize them all.

    A ``limit`` that is not a positive integer, or an ``offset`` that is not a whole number
    from 0, is a 400 naming it: DRF's class answers the default page for ``limit=0``, ``-3``
    or ``abc``, and the first page for ``offset=-5`` or ``abc``, so a script's mistake went
    unseen (a loop paging by offset read the first page again and again). An offset past the
    end is an empty page, as in DRF."""

    default_limit = 100
    max_limit = 1000
    limit_query_description = (
        f"Rows a page: a whole number from 1 (default {default_limit}; more than {max_limit} "
        f"gives {max_limit}). Anything else is a 400."
    )
    offset_query_description = (
        "Rows to skip: a whole number from 0 (default 0; past the end, an empty page). "
        "Anything else is a 400."
    )

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

    def get_offset(self, request):
        text = request.query_params.get(self.offset_query_param, "").strip()
        if text == "":  # absent, or a blank form field: from the first row
            return 0
        # any offset past the end is the same empty page: up to 30 digits is plenty
        message = f'"offset" must be a whole number of rows from 0, got {text[:20]!r}'
        return whole_number(text, 0, 10**30 - 1, message)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        bounds = {self.limit_query_param: {"minimum": 1}, self.offset_query_param: {"minimum": 0}}
        for parameter in parameters:
            parameter["schema"].update(bounds.get(parameter["name"], {}))
        return parameters
