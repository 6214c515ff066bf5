"""Error reports (the DEBUG 500 page, error emails) without the passwords of service URLs.

Django hides a setting whose name looks secret (API, AUTH, TOKEN, KEY, SECRET, PASS,
SIGNATURE); ``DATABASE_URL``, ``REDIS_URL``, ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``
and the channel layer's ``address`` carry their password inside the value instead. This
filter keeps such URLs readable (scheme, user, host, database) and replaces the password.
"""

import re

from django.views.debug import SafeExceptionReporterFilter

# scheme://[user]:password@ -- the password runs to the last "@" before the host.
URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^\s]*@", re.IGNORECASE)


class CredentialsSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key, value):
        # Django recurses into dicts, lists and tuples through this method, so nested URLs
        # (CHANNEL_LAYERS' hosts) are cleansed too.
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return URL_PASSWORD.sub(rf"\g<prefix>{self.cleansed_substitute}@", cleansed)
        return cleansed
