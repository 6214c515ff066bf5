"""REST API. Users authenticate by session or ``Authorization: Token``; devices by
``Authorization: Device <token>`` on device endpoints only. Every queryset is scoped to what
the user may see, so an unassigned patient's data answers 404.
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.api import serializers
from monitoring.api.serializers import error_responses, filter_by_patient, read_only_schema
from monitoring.authentication import DeviceTokenAuthentication, IsDevice
from monitoring.models import Device, Patient, Recording
from monitoring.recordings import summarize


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    """The device endpoints' credential in the schema (without it drf-spectacular warns and
    leaves them without one)."""

    target_class = DeviceTokenAuthentication
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Device <token>`: the token issued when the device was added.",
        }


@read_only_schema(serializers.PatientSerializer)
class PatientViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.PatientSerializer

    def get_queryset(self):
        return Patient.objects.visible_to(self.request.user).order_by("id")


@read_only_schema(serializers.DeviceSerializer)
class DeviceViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.DeviceSerializer

    def get_queryset(self):
        return Device.objects.visible_to(self.request.user).order_by("id")


UNLISTED_RECORDING_FIELDS = (
    "reference_annotations",
    "analysis_summary",
    "analysis_agreement",
    "stream_state",
)


@read_only_schema(serializers.RecordingSerializer)
@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "patient", OpenApiTypes.INT, description="Only this patient's recordings."
            )
        ]
    )
)
class RecordingViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = serializers.RecordingSerializer

    def filter_queryset(self, queryset):
        # ?patient=, as /api/alarms/ takes it. It was ignored: a script asking for one
        # patient's recordings got every recording it may see.
        if self.action == "list":
            queryset = filter_by_patient(queryset, self.request.query_params)
        return queryset

    def get_queryset(self):
        # Without the columns no answer here uses: the file's reference annotations (a JSON
        # list per annotated beat, ~100,000 for a 24-hour upload), the analysis summary and
        # agreement, and the live analysis's saved state, decoded for every row of a page.
        return (
            Recording.objects.visible_to(self.request.user)
            .defer(*UNLISTED_RECORDING_FIELDS)
            .order_by("-started_at", "id")
        )

    @extend_schema(
        responses={200: serializers.RecordingSummarySerializer, **error_responses(401, 404)}
    )
    @action(detail=True)
    def summary(self, request, pk=None):
        """Stored chunks and samples, missing samples and the analysis cursor."""
        return Response(summarize(self.get_object()))


class MeView(APIView):
    @extend_schema(responses={200: serializers.MeSerializer, **error_responses(401)})
    def get(self, request):
        """The authenticated user."""
        return Response(serializers.MeSerializer(request.user).data)


class DeviceSelfView(APIView):
    authentication_classes = [DeviceTokenAuthentication]
    permission_classes = [IsDevice]

    @extend_schema(
        responses={
            200: serializers.DeviceSelfSerializer,
            **error_responses(
                401,
                meanings={401: "No valid `Authorization: Device <token>` (unknown or revoked)."},
            ),
        }
    )
    def get(self, request):
        """For devices: check the token and read the declared signal format."""
        device = request.auth
        device.touch()
        return Response(serializers.DeviceSelfSerializer(device).data)
