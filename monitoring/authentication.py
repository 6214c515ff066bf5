"""API authentication for devices.

A device presents ``Authorization: Device <token>``. The credential resolves to a
:class:`~monitoring.models.Device`, never to a user: ``request.user`` stays anonymous, so a
device token opens no clinician endpoint, and device endpoints check ``request.auth``.
"""

from django.contrib.auth.models import AnonymousUser
from rest_framework import authentication, exceptions, permissions

from monitoring.models import Device

KEYWORD = "Device"


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
