"""API authentication: users by ``Authorization: Token <key>``, devices by their own token.

A device presents ``Authorization: Device <token>``. The credential resolves to a
:class:`~monitoring.models.Device`, never to a user: ``request.user`` stays anonymous, so a
device token opens no clinician endpoint, and device endpoints check ``request.auth``.
"""

from datetime import timedelta

from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions, permissions

from monitoring.models import ApiToken, Device

# how stale a token's last_used_at may get: one write per token per interval, not per request
LAST_USED_EVERY = timedelta(minutes=5)

KEYWORD = "Device"


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, checked against ``ApiToken``'s hashes (DRF's own
    table kept the keys themselves)."""

    def authenticate(self, request):
        # A device's credential opens no user endpoint. Without this the header was ignored
        # and the answer was "credentials were not provided", which sent a script's author
        # looking for a missing header rather than at the wrong kind of token.
        header = authentication.get_authorization_header(request).split()
        if header and header[0].lower() == KEYWORD.lower().encode():
            raise exceptions.AuthenticationFailed(
                "A device token opens only the device endpoints (/api/device/v1/); "
                "send a user's API key as 'Authorization: Token <key>'."
            )
        return super().authenticate(request)

    def authenticate_credentials(self, key):
        token = ApiToken.objects.authenticate(key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        now = timezone.now()
        if token.last_used_at is None or now - token.last_used_at > LAST_USED_EVERY:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        return (token.user, token)


class RevokeApiTokensOnPasswordChange:
    """Not a rule for passwords: Django calls each entry of AUTH_PASSWORD_VALIDATORS when a
    user's password changes (``password_changed``; not when only its hash is upgraded at a
    login), which is the moment to revoke the user's API keys. A password change already ends
    the user's other sessions and live sockets; without this, a key made with a stolen
    password would outlive the reset."""

    def validate(self, password, user=None) -> None:
        return None  # any password: the other validators judge it

    def get_help_text(self) -> str:
        return "Changing your password revokes your API keys."

    def password_changed(self, password, user=None) -> None:
        if user is not None and user.pk is not None:
            ApiToken.objects.filter(user=user).delete()


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != KEYWORD.lower().encode():
            return None  # not a device credential; let other classes (or none) decide
        if len(header) != 2:
            raise exceptions.AuthenticationFailed(
                "Invalid Device header: expected 'Authorization: Device <token>'."
            )
        try:
            token = header[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(
                "Device token contains invalid characters."
            ) from None
        device = Device.objects.authenticate(token)
        if device is None:
            raise exceptions.AuthenticationFailed("Unknown, rotated or revoked device token.")
        return (AnonymousUser(), device)

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) to a device that sent no or a bad token.
        return KEYWORD


class IsDevice(permissions.BasePermission):
    message = "This endpoint is for devices: authenticate with 'Authorization: Device <token>'."

    def has_permission(self, request, view) -> bool:
        return isinstance(request.auth, Device)
