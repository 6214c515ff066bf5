from django.conf import settings
from django.contrib.auth import middleware as auth_middleware
from django.utils.deprecation import MiddlewareMixin


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


class SessionRenewalMiddleware(MiddlewareMixin):
    """Sliding session expiry: a signed-in request renews its session once less than half of
    ``SESSION_COOKIE_AGE`` (``SESSION_IDLE_S``) is left (``monitoring.sessions`` says why not
    ``SESSION_SAVE_EVERY_REQUEST``). Below SessionMiddleware, so that it sees the session the
    view used.

    Only a session the request actually read counts: a page (login by default reads it), an
    API call authenticated by it. Requests that never look at the session (a device or a
    script with a token, static files) neither load nor renew it.
    """

    def process_response(self, request, response):
        session = getattr(request, "session", None)
        if session is not None and session.accessed and not session.is_empty():
            # a session just saved (a login, a changed password) has its whole age already
            if not session.modified:
                session.renew_if_due()
        return response


class ContentSecurityPolicyMiddleware(MiddlewareMixin):
    """The ``Content-Security-Policy`` header (``settings.CONTENT_SECURITY_POLICY``) on every
    response, so that markup slipped into a page (a patient's name a template forgot to
    escape, say) cannot run script: browsers then run only the site's own script files.

    Paths under a prefix of ``CONTENT_SECURITY_POLICY_EXCEPTIONS`` get that entry's sources
    added to the policy's directives, for third-party pages that need more. A view that set
    the header itself keeps its own; an empty policy sends none.
    """

    def process_response(self, request, response):
        if "Content-Security-Policy" in response:
            return response
        if settings.DEBUG and response.status_code in (404, 500):
            # Django's development error pages (the traceback, the URL list) style and script
            # themselves inline; with DEBUG off the site's own 404.html and 500.html answer
            return response
        policy = content_security_policy(request.path_info)
        if policy:
            response["Content-Security-Policy"] = policy
        return response


def content_security_policy(path: str) -> str:
    """The policy for ``path``: the setting's, plus the sources its exceptions add there."""
    policy = settings.CONTENT_SECURITY_POLICY
    for prefix, extra in settings.CONTENT_SECURITY_POLICY_EXCEPTIONS.items():
        if path.startswith(prefix):
            policy = with_sources(policy, extra)
    return policy


def with_sources(policy: str, extra: dict[str, list[str]]) -> str:
    """``policy`` with ``extra``'s sources added to their directives (``{"style-src":
    ["'unsafe-inline'"]}``). A directive the policy lacks starts from ``default-src``'s
    sources, as the browser would read it, so that adding a source never removes others."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        if part.split():
            name, *sources = part.split()
            directives[name.lower()] = sources
    for name, sources in extra.items():
        present = directives.setdefault(name, list(directives.get("default-src", [])))
        if "'none'" in present:  # alone, it allows nothing; beside a source it would be ignored
            present.remove("'none'")
        present.extend(source for source in sources if source not in present)
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())
