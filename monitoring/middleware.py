from django.contrib.auth import middleware as auth_middleware


class LoginRequiredMiddleware(auth_middleware.LoginRequiredMiddleware):
    """Django's login-by-default middleware, with the REST API left to DRF.

    Pages redirect an anonymous visitor to the login page; API clients (scripts, devices)
    need a 401/403 with a JSON body instead, which DRF's own authentication and
    permission classes give (``IsAuthenticated`` is the API default). Public views
    (``/health``, the login page) are marked with ``login_not_required``.
    """

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.path_info.startswith("/api/"):
            return None
        if not getattr(view_func, "login_required", True):
            # a public view: Django's check would read the session's user first, from the
            # database, so /health answered 500, not 503, to a browser with a session
            # while the database was down
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)
