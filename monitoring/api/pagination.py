"""Paging of the REST API's lists."""

from rest_framework.pagination import LimitOffsetPagination


class BoundedLimitOffsetPagination(LimitOffsetPagination):
    """``?limit=&offset=`` with at most ``max_limit`` rows a page (a larger ``limit`` gives
    that many, with a ``next`` link): a 24-hour recording holds about 100,000 beats, and one
    request must not serialize them all."""

    default_limit = 100
    max_limit = 1000
