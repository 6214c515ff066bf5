"""Sessions that end when idle (``SESSION_ENGINE``): Django's database sessions, renewed cheaply.

A session row expires ``SESSION_COOKIE_AGE`` (``SESSION_IDLE_S``, 12 h by default) after it was
last written, so a login left on a shared ward computer ends within a shift. Activity renews it
(sliding expiry): a signed-in request (:class:`monitoring.middleware.SessionRenewalMiddleware`)
and an open live page or central station, at its access recheck (``monitoring.consumers``).

Django's own sliding expiry, ``SESSION_SAVE_EVERY_REQUEST``, rewrites the whole session row and
sends a fresh cookie on every request: a database write per page, API call and alarm refresh,
each taking SQLite's write lock beside the devices' ingest. Here a session is renewed only once
less than half of its age is left, so it is written at most once per half age (every 6 h by
default) however busy its user, and a user idle for the whole age is signed out after between
half the age and the whole of it. The renewal moves the row's ``expire_date`` and nothing else:
it never writes back session data read earlier (a websocket's copy is from its last recheck),
and never brings back a row that expired or was deleted (a sign-out) meanwhile.

The cookie itself carries no expiry (``SESSION_EXPIRE_AT_BROWSER_CLOSE``): the row decides. A
cookie with a Max-Age would be renewed only by HTTP answers, and a central station that makes
no request for 12 h would lose it in the browser while its socket kept the row alive: its next
reconnect (after a network blip, a server restart) would find itself signed out.
"""

from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone


class SessionStore(DatabaseSessionStore):
    """Django's database session, which remembers when its row expires."""

    # The row's expiry as last read or written here; None: no row (yet, or any more).
    stored_expire_date = None

    def _get_session_from_db(self):
        row = super()._get_session_from_db()
        self.stored_expire_date = row.expire_date if row is not None else None
        return row

    async def _aget_session_from_db(self):
        row = await super()._aget_session_from_db()
        self.stored_expire_date = row.expire_date if row is not None else None
        return row

    def create_model_instance(self, data):
        row = super().create_model_instance(data)
        self.stored_expire_date = row.expire_date
        return row

    async def acreate_model_instance(self, data):
        row = await super().acreate_model_instance(data)
        self.stored_expire_date = row.expire_date
        return row

    def renewal_due(self) -> bool:
        """Whether less than half of the session's age is left (read from its row)."""
        if self.stored_expire_date is None:
            return False
        left_s = (self.stored_expire_date - timezone.now()).total_seconds()
        return left_s < self.get_expiry_age() / 2

    def renew_expiry(self) -> bool:
        """Give the row a whole age from now (one UPDATE of its ``expire_date`` alone).

        False when there is no live row to renew: signed out, or already expired.
        """
        if self.session_key is None:
            return False
        now = timezone.now()
        expire_date = self.get_expiry_date(modification=now)
        renewed = self.model.objects.filter(
            session_key=self.session_key, expire_date__gt=now
        ).update(expire_date=expire_date)
        if renewed:
            self.stored_expire_date = expire_date
        return bool(renewed)

    def renew_if_due(self) -> bool:
        """Renew when less than half of the age is left; True when it renewed."""
        return self.renewal_due() and self.renew_expiry()
