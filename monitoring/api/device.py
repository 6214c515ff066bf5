"""Device protocol v1 endpoints (``docs/device-protocol.md``).

- ``POST /api/device/v1/chunks/``: a chunk, JSON or binary; 201 stored, 200 already stored.
- ``POST /api/device/v1/recordings/open/``: open a recording explicitly (JSON).
- ``POST /api/device/v1/recordings/close/``: close a session's recording.

Devices authenticate with ``Authorization: Device <token>``; every answer that is not 2xx is
``{"detail": "..."}``. Requests are throttled per device (``DEVICE_THROTTLE_RATE``).
"""

import json

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import OpenApiExample, OpenApiTypes, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from monitoring.api.errors import JSONParser
from monitoring.api.predict import error
from monitoring.authentication import DeviceTokenAuthentication, IsDevice
from monitoring.ingest import (
    FINAL_CLOSES,
    IngestError,
    check_agrees,
    check_fs_hz,
    check_session_goes_on,
    close_recording,
    ingest_chunk,
    lock_device,
    open_recording,
)
from monitoring.models import Device, Recording
from monitoring.protocol import (
    BINARY_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    MAX_BODY_BYTES,
    MAX_CHANNELS,
    Chunk,
    ProtocolError,
    load_json_object,
    parse_chunk,
    parse_json_chunk,
)


class DeviceRateThrottle(SimpleRateThrottle):
    """Requests per device (not per address: many devices may share a NAT)."""

    scope = "device"

    def get_rate(self):
        return settings.DEVICE_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if isinstance(request.auth, Device):
            return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
        return None


class DeviceView(APIView):
    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [IsDevice]
    throttle_classes = [DeviceRateThrottle]


def _read_body(request) -> bytes:
    """The raw body, refused with 413 before it is read when it announces itself too large."""
    try:
        announced = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        announced = 0
    if announced > MAX_BODY_BYTES:
        raise ProtocolError(f"body of {announced} bytes exceeds {MAX_BODY_BYTES}", status=413)
    return request.body


AckSerializer = inline_serializer(
    "DeviceChunkAck",
    {
        "recording": serializers.IntegerField(),
        "seq": serializers.IntegerField(),
        "stored": serializers.BooleanField(help_text="False: a re-sent chunk, stored before."),
        "next_seq": serializers.IntegerField(help_text="Lowest sequence number not received."),
        "end_sample": serializers.IntegerField(help_text="One past the highest stored sample."),
        "missing_samples": serializers.IntegerField(help_text="Samples below end_sample absent."),
    },
)
DetailSerializer = inline_serializer("DeviceError", {"detail": serializers.CharField()})


def device_errors(*codes: int) -> dict:
    """Schema responses ``{"detail": ...}`` for the refusals ``codes`` of a device endpoint
    (every one of them answers 401 without a valid token, 413 over ``MAX_BODY_BYTES``, 415
    for another content type and 429 over ``DEVICE_THROTTLE_RATE``)."""
    return {code: DetailSerializer for code in codes}


class DeviceChunkView(DeviceView):
    @extend_schema(
        operation_id="device_v1_post_chunk",
        request={JSON_CONTENT_TYPE: OpenApiTypes.OBJECT, BINARY_CONTENT_TYPE: OpenApiTypes.BINARY},
        responses={
            201: AckSerializer,
            200: AckSerializer,
            # 404: the chunk names a recording (JSON "recording") that does not exist
            **device_errors(400, 401, 403, 404, 409, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "One second of one lead (truncated)",
                request_only=True,
                media_type=JSON_CONTENT_TYPE,
                value={
                    "session": "9f3a61c2",
                    "seq": 0,
                    "first_sample": 0,
                    "fs_hz": 250,
                    "gain_adc_per_mv": 1241.2,
                    "baseline_adc": 2048,
                    "n_channels": 1,
                    "samples": [2051, 2049, 2060],
                },
            )
        ],
        description="Post one chunk of samples (device protocol v1, docs/device-protocol.md).",
    )
    def post(self, request):
        try:
            chunk = parse_chunk(_read_body(request), request.content_type)
            ack = ingest_chunk(request.auth, chunk)
        except (ProtocolError, IngestError) as exc:
            return refused(exc)
        return Response(
            ack.to_dict(), status=status.HTTP_201_CREATED if ack.stored else status.HTTP_200_OK
        )


def refused(exc: ProtocolError | IngestError) -> Response:
    """The answer to a refused request: ``{"detail": ...}``, and the ``code`` a device acts on
    where ingest gives one (a 409 ``new_session``: docs/device-protocol.md)."""
    response = (
        Response(exc.body(), status=exc.status)
        if isinstance(exc, IngestError)
        else error(str(exc), exc.status)
    )
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        # as DRF's own 401 to a bad token: a 401 names the scheme to authenticate with
        response["WWW-Authenticate"] = DeviceTokenAuthentication().authenticate_header(None)
    return response


def _json_object(request) -> dict:
    body = _read_body(request)
    if (request.content_type or "").split(";")[0].strip().lower() != JSON_CONTENT_TYPE:
        raise ProtocolError(f"send {JSON_CONTENT_TYPE}", status=415)
    return load_json_object(body or b"{}")


OPEN_ANSWER = inline_serializer(
    "DeviceOpenAnswer",
    {"recording": serializers.IntegerField(), "session": serializers.CharField()},
)


class DeviceOpenView(DeviceView):
    # JSON only (_json_object reads the body itself and answers 415 to anything else): this
    # is what the schema lists; DRF's default said form-encoded and multipart bodies too
    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="device_v1_open_recording",
        request=inline_serializer(
            "DeviceOpen",  # "DeviceOpenRequest" in the schema
            {
                "session": serializers.CharField(required=False),
                "fs_hz": serializers.FloatField(),
                "gain_adc_per_mv": serializers.FloatField(),
                "baseline_adc": serializers.IntegerField(required=False),
                "n_channels": serializers.IntegerField(required=False),
            },
        ),
        responses={
            201: OPEN_ANSWER,
            200: OPEN_ANSWER,
            **device_errors(400, 401, 403, 409, 413, 415, 429),
        },
        examples=[
            OpenApiExample(
                "Open a session's recording",
                request_only=True,
                value={
                    "session": "9f3a61c2",
                    "fs_hz": 250,
                    "gain_adc_per_mv": 1241.2,
                    "baseline_adc": 2048,
                    "n_channels": 1,
                },
            )
        ],
        description=(
            "Open a new recording explicitly (201); later JSON chunks may name it, with its "
            "session or none (another session: 400). fs_hz and gain_adc_per_mv are required, "
            "checked as a chunk's. A session that already has a recording answers that "
            "recording (200), so a retried open opens nothing twice. JSON only (415)."
        ),
    )
    def post(self, request):
        try:
            data = _json_object(request)
            fields = {"session", "fs_hz", "gain_adc_per_mv", "baseline_adc", "n_channels"}
            unknown = sorted(set(data) - fields)
            if unknown:
                raise ProtocolError(f"unknown field(s): {', '.join(unknown)}")
            # Validate the signal format exactly as a chunk's, with one placeholder frame.
            n_channels = data.get("n_channels", 1)
            probe = dict(data, seq=0, first_sample=0)
            if isinstance(n_channels, int) and 1 <= n_channels <= MAX_CHANNELS:
                probe["samples"] = [0] * n_channels
            chunk = parse_json_chunk(json.dumps(probe).encode())
            recording, created = _open(request.auth, chunk)
        except (ProtocolError, IngestError) as exc:
            return refused(exc)
        return Response(
            {"recording": recording.pk, "session": recording.session},
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


def _open(device: Device, chunk: Chunk) -> tuple[Recording, bool]:
    """The session's recording and whether this call created it."""
    check_fs_hz(chunk.fs_hz)
    with transaction.atomic():
        device = lock_device(device)  # 401 when deleted since it was authenticated
        if device.patient_id is None:
            raise IngestError(f"device {device.serial} is not assigned to a patient", 403)
        if chunk.session:
            existing = Recording.objects.filter(device=device, session=chunk.session).first()
            if existing is not None:
                check_session_goes_on(existing, device)  # as a chunk of that session would be
                check_agrees(existing, chunk)
                return existing, False
        return open_recording(device, chunk), True


class DeviceCloseView(DeviceView):
    parser_classes = [JSONParser]  # JSON only, as DeviceOpenView

    @extend_schema(
        operation_id="device_v1_close_recording",
        request=inline_serializer(
            "DeviceClose",  # "DeviceCloseRequest" in the schema
            {
                "session": serializers.CharField(required=False),
                "recording": serializers.IntegerField(required=False),
            },
        ),
        responses={
            200: inline_serializer(
                "DeviceCloseAnswer",
                {"recording": serializers.IntegerField(), "status": serializers.CharField()},
            ),
            **device_errors(400, 401, 403, 404, 413, 415, 429),
        },
        description="Close the recording of a session (or a recording by id).",
    )
    def post(self, request):
        device = request.auth
        try:
            data = _json_object(request)
            unknown = sorted(set(data) - {"session", "recording"})
            if unknown:
                raise ProtocolError(f"unknown field(s): {', '.join(unknown)}")
            session, recording_id = data.get("session"), data.get("recording")
            if (session is None) == (recording_id is None):
                raise ProtocolError("give either session or recording")
            with transaction.atomic():
                if recording_id is not None:
                    if isinstance(recording_id, bool) or not isinstance(recording_id, int):
                        raise ProtocolError("recording must be an integer")
                    recording = (
                        Recording.objects.select_for_update().filter(pk=recording_id).first()
                    )
                    if recording is not None and recording.device_id != device.pk:
                        raise IngestError(
                            f"recording {recording_id} belongs to another device", 403
                        )
                else:
                    if not isinstance(session, str):
                        raise ProtocolError("session must be a string")
                    recording = (
                        Recording.objects.select_for_update()
                        .filter(device=device, session=session)
                        .first()
                    )
                if recording is None:
                    raise IngestError("no such recording of this device", 404)
                if recording.status == Recording.Status.LIVE:
                    close_recording(recording, Recording.ClosedBy.DEVICE)
                elif recording.closed_by not in FINAL_CLOSES:
                    # closed by silence or a newer session: the device's word is final (a
                    # discharge stays what closed it: it is final already)
                    Recording.objects.filter(pk=recording.pk).update(
                        closed_by=Recording.ClosedBy.DEVICE
                    )
        except (ProtocolError, IngestError) as exc:
            return refused(exc)
        return Response({"recording": recording.pk, "status": "closed"})
