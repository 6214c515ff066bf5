"""Uploads and their analysis through the API.

- ``POST /api/patients/<id>/uploads/`` (multipart: ``files``, one or more; ``fs_hz`` for a
  one-column CSV): 201 with the stored recording and its analysis status; 400 (or 413 for
  an upload over ``UPLOAD_MAX_BYTES``) with ``{"detail": ...}`` naming the problem, and
  nothing stored.
- ``GET /api/recordings/<id>/analysis/``: status, summary, agreement, episodes, and the
  Holter-style report (``monitoring.recording_report``: AF burden by time, ectopy per hour,
  one row per hour).
- ``GET /api/recordings/<id>/beats/``: the beats (paginated).
- ``GET /api/recordings/<id>/beats/<n>/saliency/``: beat ``n``'s saliency map (data).
- ``GET /api/recordings/<id>/results.csv``: one line per beat (or CSV row).
- ``GET /api/recordings/<id>/strip.png?start_s=&length_s=&beat=``: a strip as a picture.
- ``POST /api/recordings/<id>/analyze/``: run the analysis again (409 while one is pending).
"""

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiTypes,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring.analysis import analysis_pending_message, queue_analysis, results_csv
from monitoring.api.limits import BodyLimitMixin
from monitoring.api.predict import error
from monitoring.api.serializers import error_responses
from monitoring.models import AnalysisStatus, Beat, Episode, Patient, Recording
from monitoring.recording_report import recording_report
from monitoring.strips import SaliencyUnavailable, render_strip_png, saliency, strip_request
from monitoring.uploads import UploadError, files_from_request, parse_upload, store_upload


class AnyAcceptNegotiation(BaseContentNegotiation):
    """PNG and CSV views answer their own type; errors still go out as JSON, whatever the
    client's Accept header says (an ``<img>`` asks for images)."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class EpisodeSerializer(serializers.ModelSerializer):
    class Meta:
        model = Episode
        fields = ["kind", "start_s", "end_s", "details"]
        read_only_fields = fields


class BeatSerializer(serializers.ModelSerializer):
    number = serializers.SerializerMethodField(help_text="1-based beat number.")
    # plain strings in the schema: one AAMI enum, not two names for the same choices
    label = serializers.CharField(help_text="AAMI class: N, S, V, F or Q.")
    reference_label = serializers.CharField(help_text="The file's label, or empty.")
    time_s = serializers.SerializerMethodField()

    class Meta:
        model = Beat
        fields = [
            "number",
            "sample",
            "time_s",
            "label",
            "confidence",
            "probabilities",
            "reference_label",
            "row",
            "provisional",
        ]
        read_only_fields = fields

    def get_number(self, beat: Beat) -> int:
        return beat.index + 1

    def get_time_s(self, beat: Beat) -> float:
        # beats read through recording.beats carry that recording object: no query per beat
        return round(beat.sample / beat.recording.sampling_rate_hz, 4)


class AnalysisSerializer(serializers.ModelSerializer):
    episodes = EpisodeSerializer(many=True, read_only=True)
    uploaded_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,  # the schema said a string, never null
        help_text="Who uploaded it; null if unknown.",
    )
    analysed_lead = serializers.SerializerMethodField()
    report = serializers.SerializerMethodField(
        help_text="Figures by monitored time (analysed signal, gaps and leads-off excluded): "
        "analysed_s, af_s, af_time_fraction (AF seconds / analysed seconds, not a share of "
        "beats), per_hour (beats of each class per hour of analysed signal), hours_by "
        "(clock or elapsed), time_zone, and hours: one row per clock hour (start_s, end_s, "
        "start, end, analysed_s, n_beats, heart_rate_bpm, n_v_beats, n_s_beats, n_pauses, "
        "af_s, n_vt). Null until the analysis is done, and for beat rows."
    )
    links = serializers.SerializerMethodField()

    class Meta:
        model = Recording
        fields = [
            "id",
            "patient",
            "source",
            "source_name",
            "upload_format",
            "uploaded_by",
            "created_at",
            "sampling_rate_hz",
            "gain_adc_per_mv",
            "baseline_adc",
            "n_channels",
            "lead_names",
            "analysed_lead",
            "analysis_status",
            "analysis_error",
            "analyzed_at",
            "analysis_summary",
            "analysis_agreement",
            "episodes",
            "report",
            "links",
        ]
        read_only_fields = fields

    def get_analysed_lead(self, recording: Recording) -> str:
        return recording.analysis_lead_name

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_report(self, recording: Recording) -> dict | None:
        return recording_report(recording)

    def get_links(self, recording: Recording) -> dict:
        base = f"/api/recordings/{recording.pk}"
        return {
            "page": f"/recordings/{recording.pk}/",
            "analysis": f"{base}/analysis/",
            "beats": f"{base}/beats/",
            "results_csv": f"{base}/results.csv",
            "strip_png": f"{base}/strip.png",
        }


def visible_recording(request, pk: int) -> Recording:
    """The recording if the user may see its patient; 404 otherwise."""
    return get_object_or_404(Recording.objects.visible_to(request.user), pk=pk)


def not_analysed(recording: Recording) -> Response | None:
    """409 naming the analysis state when a recording has no results to give."""
    if recording.analysis_status == AnalysisStatus.DONE:
        return None
    if recording.analysis_status == AnalysisStatus.FAILED:
        return error(f"the analysis failed: {recording.analysis_error}", status.HTTP_409_CONFLICT)
    return error(
        f"recording {recording.pk} has no analysis results yet (analysis "
        f"{recording.get_analysis_status_display().lower()})",
        status.HTTP_409_CONFLICT,
    )


class PatientUploadView(BodyLimitMixin, APIView):
    parser_classes = [MultiPartParser, FormParser]

    def body_limit_bytes(self) -> int:
        return settings.UPLOAD_MAX_BYTES

    def oversize_detail(self, declared_bytes: int, limit_bytes: int) -> str:
        # files_from_request's words (docs/upload.md), said here before a signed-in browser's
        # CSRF check spools the whole multipart body to disk to look for its token
        return (
            f"the upload is larger than the limit of {limit_bytes:,} bytes "
            f"({limit_bytes / 2**20:g} MiB); split the recording or ask the administrator to "
            "raise UPLOAD_MAX_BYTES"
        )

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "RecordingUpload",
                {
                    "files": serializers.ListField(child=serializers.FileField()),
                    "fs_hz": serializers.FloatField(required=False),
                },
            )
        },
        responses={201: AnalysisSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request, patient_id: int):
        """Upload a WFDB record (.hea + .dat [+ .atr]) or a CSV file and analyse it."""
        patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=patient_id)
        try:
            files = files_from_request(request)
            parsed = parse_upload(files, fs_hz=request.data.get("fs_hz"))
        except UploadError as exc:
            return error(str(exc), exc.status)
        recording = store_upload(patient, parsed, uploaded_by=request.user)
        recording.refresh_from_db()
        return Response(AnalysisSerializer(recording).data, status=status.HTTP_201_CREATED)


class RecordingAnalysisView(APIView):
    @extend_schema(responses={200: AnalysisSerializer, **error_responses(401, 404)})
    def get(self, request, pk: int):
        """Analysis status, summary, agreement with the file's labels, and episodes."""
        return Response(AnalysisSerializer(visible_recording(request, pk)).data)


class RecordingAnalyzeView(APIView):
    @extend_schema(
        request=None,
        responses={
            202: AnalysisSerializer,
            **error_responses(
                400,
                401,
                403,
                404,
                409,
                meanings={
                    409: "An analysis of the recording is already pending (queued or running) "
                    "and not stale: wait for it."
                },
            ),
        },
    )
    def post(self, request, pk: int):
        """Run the analysis of a recording again (replacing its results); 409 while an
        analysis is already pending, unless that one is stale (``UPLOAD_ANALYSIS_STALE_S``)."""
        recording = visible_recording(request, pk)
        if not recording.upload_format:
            return error("only uploaded recordings are analysed in batch")
        if not queue_analysis(recording.pk, force=True):
            return error(analysis_pending_message(recording), status.HTTP_409_CONFLICT)
        recording.refresh_from_db()
        return Response(AnalysisSerializer(recording).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    get=extend_schema(responses={200: BeatSerializer, **error_responses(400, 401, 404, 409)})
)
class RecordingBeatsView(generics.ListAPIView):
    serializer_class = BeatSerializer

    def list(self, request, *args, **kwargs):
        self.recording = visible_recording(request, self.kwargs["pk"])
        # 409 while pending or failed, as the other result endpoints: an empty list would
        # read as "no beats found"
        refused = not_analysed(self.recording)
        if refused is not None:
            return refused
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no request
            return Beat.objects.none()
        # Not select_related("recording"): that loaded the recording's whole row with every
        # beat, its reference annotations (a JSON list per annotated beat of the file, ~100,000
        # for a 24-hour record) decoded again for each: a page of 1,000 beats took a second
        # for a 30-minute record.
        return self.recording.beats.order_by("index")


class BeatSaliencyView(APIView):
    @extend_schema(
        responses={
            200: inline_serializer(
                "BeatSaliency",
                {
                    "start": serializers.IntegerField(),
                    "fs": serializers.FloatField(),
                    "values": serializers.ListField(child=serializers.FloatField()),
                    "label": serializers.CharField(),
                    "probability": serializers.FloatField(),
                },
            ),
            **error_responses(401, 404, 409),
        }
    )
    def get(self, request, pk: int, number: int):
        """Which samples drove beat ``number``'s label (gradient x input, 0..1 per sample).

        ``start`` is the first sample of ``values`` in the recording, at ``fs``.
        """
        recording = visible_recording(request, pk)
        refused = not_analysed(recording)
        if refused:
            return refused
        beat = recording.beats.filter(index=number - 1).first()
        if beat is None:
            return error(f"beat {number} does not exist", status.HTTP_404_NOT_FOUND)
        try:
            result = saliency(recording, beat)
        except SaliencyUnavailable as exc:
            return error(str(exc), status.HTTP_409_CONFLICT)
        result["values"] = [round(float(v), 4) for v in result["values"]]
        return Response(result)


class ResultsCsvView(APIView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="api_recordings_results_csv",
        responses={(200, "text/csv"): OpenApiTypes.STR, **error_responses(401, 404, 409)},
    )
    def get(self, request, pk: int):
        """One line per beat (or per uploaded row): label, confidence, probabilities, reference."""
        recording = visible_recording(request, pk)
        refused = not_analysed(recording)
        if refused:
            return refused
        response = HttpResponse(results_csv(recording), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = (
            f'attachment; filename="recording-{recording.pk}-results.csv"'
        )
        return response


class StripPngView(APIView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="api_recordings_strip_png",
        parameters=[
            OpenApiParameter("start_s", float, description="Start (s); default 0 or centred."),
            OpenApiParameter("length_s", float, description="Length (s), 0.5-60; default 10."),
            OpenApiParameter("beat", int, description="Beat number (1-based) to explain."),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **error_responses(400, 401, 404, 409)},
    )
    def get(self, request, pk: int):
        """A strip of the analysed lead as PNG, with beat labels and a beat's saliency."""
        recording = visible_recording(request, pk)
        refused = not_analysed(recording)
        if refused:
            return refused
        try:
            strip = strip_request(
                recording,
                request.query_params.get("start_s"),
                request.query_params.get("length_s"),
                request.query_params.get("beat"),
            )
        except ValueError as exc:
            return error(str(exc))
        try:
            png = render_strip_png(recording, strip)
        except SaliencyUnavailable as exc:
            return error(str(exc), status.HTTP_409_CONFLICT)
        return HttpResponse(png, content_type="image/png")
