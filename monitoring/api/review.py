"""Full-disclosure review through the API (docs/review.md).

- ``GET /api/recordings/<id>/signal/?start_s=&length_s=&max_points=&channel=``: a window of
  signal in mV, min/max per bin when it holds more samples than ``max_points``, gaps ``null``,
  with the beats inside it.
- ``GET /api/recordings/<id>/events/?kind=V&after_s=`` or ``?kind=V&before_s=`` (exactly
  one of the two; ``limit=``): the next (previous) beats of a class, alarms or episode starts.
- ``GET /api/recordings/<id>/go-to/?at=&read_as=elapsed|clock``: where a "Go to" entry (a
  time into the recording as the page prints it, or a clock time HH:MM[:SS]) lies:
  ``time_s`` from the start, ``read_as`` how it was read, ``note`` for a clock time a
  daylight-saving change repeated.
- ``GET /api/recordings/<id>/range.png?start_s=&length_s=&channel=&gain_mm_per_mv=``: the
  window of one channel as a PNG strip on ECG paper (25 mm/s, the gain asked for or chosen
  to fit), gaps and leads-off spans marked (any recording, analysed or not).
- ``GET /api/recordings/<id>/export.zip?format=wfdb|csv`` and ``GET .../export.csv``: 400
  for a recording with no samples stored yet.

Every one answers 404 for a recording the user may not see, 400 naming a bad parameter.
"""

from datetime import timedelta

from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.urls import path
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from monitoring import review
from monitoring.api.predict import error
from monitoring.api.serializers import error_responses
from monitoring.api.uploads import AnyAcceptNegotiation, visible_recording
from monitoring.recordings import end_sample
from monitoring.strips import (
    GAINS_MM_PER_MV,
    MAX_STRIP_S,
    MIN_STRIP_S,
    gain_parameter,
    render_range_png,
    seconds_parameter,
)


class RecordingSignalView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("start_s", float, description="Start (s); default 0."),
            OpenApiParameter("length_s", float, description="Length (s), up to 7200; default 10."),
            OpenApiParameter("max_points", int, description="Points at most, 10-20000."),
            OpenApiParameter("channel", int, description="Channel index; default analysed."),
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request, pk: int):
        """A window of one channel in mV for the review viewer, decimated min/max per bin."""
        recording = visible_recording(request, pk)
        params = request.query_params
        try:
            window = review.signal_window(
                recording,
                params.get("start_s"),
                params.get("length_s"),
                params.get("max_points"),
                params.get("channel"),
            )
        except ValueError as exc:
            return error(str(exc))
        return Response(window)


# review.events refuses both and neither; OpenAPI cannot say "one of" for parameters
EXACTLY_ONE_PIVOT = "Give exactly one of after_s and before_s: both or neither is a 400."


class RecordingEventsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("kind", str, enum=list(review.EVENT_KINDS), required=True),
            OpenApiParameter(
                "after_s",
                float,
                description="The next events after this time (s), oldest first. "
                + EXACTLY_ONE_PIVOT,
            ),
            OpenApiParameter(
                "before_s",
                float,
                description="The previous events before this time (s), newest first. "
                + EXACTLY_ONE_PIVOT,
            ),
            OpenApiParameter("limit", int, description="How many (1-1000); default 1."),
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request, pk: int):
        """The next (after_s) or previous (before_s) beats of a class, alarms or episodes,
        nearest first; exactly one of after_s and before_s."""
        recording = visible_recording(request, pk)
        params = request.query_params
        try:
            found = review.events(
                recording,
                params.get("kind"),
                params.get("after_s"),
                params.get("before_s"),
                params.get("limit"),
            )
        except ValueError as exc:
            return error(str(exc))
        return Response({"kind": params.get("kind"), "events": found})


class RecordingGoToView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "at",
                str,
                required=True,
                description="What was typed: read as `read_as` says. A time into the "
                "recording as the review page prints positions (75, 12.5 s, 6:32.6, 1:00:00, "
                "or a range 59:55 – 1:00:05), or a clock time HH:MM or HH:MM:SS, optionally "
                "with the zone's abbreviation (TIME_ZONE; the first such moment at or after "
                "the start; a time a daylight-saving change skipped is a 400, one it repeated "
                "says which in `note`).",
            ),
            OpenApiParameter(
                "read_as",
                str,
                enum=list(review.READ_AS),
                description="elapsed: `at` is a time into the recording; clock: a clock "
                "time. Without it (as before it existed) a number is seconds and HH:MM[:SS] a "
                "clock time; the answer's `read_as` says which was used.",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 404)},
    )
    def get(self, request, pk: int):
        """Where a "Go to" entry lies in the recording: seconds from its start, and when."""
        recording = visible_recording(request, pk)
        at = request.query_params.get("at", "")
        try:
            found = review.go_to(recording, at, request.query_params.get("read_as"))
        except ValueError as exc:
            return error(str(exc))
        moment = recording.started_at + timedelta(seconds=found.time_s)
        return Response(
            {
                "at": at,
                # how `at` was read: "elapsed" (time into the recording) or "clock"
                "read_as": found.read_as,
                "time_s": found.time_s,
                # a range typed ("59:55 – 1:00:05"): its length, time_s its middle; else null
                "length_s": found.length_s,
                "clock": timezone.localtime(moment).isoformat(),
                "started_at": timezone.localtime(recording.started_at).isoformat(),
                # a clock time that a daylight-saving change repeated: which of the two this
                # is, and where the other lies ("" otherwise)
                "note": found.note,
            }
        )


class RecordingRangePngView(APIView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="api_recordings_range_png",
        parameters=[
            OpenApiParameter("start_s", float, description="Start (s); default 0."),
            OpenApiParameter("length_s", float, description="Length (s), 0.5-60; default 10."),
            OpenApiParameter("channel", int, description="Channel index; default analysed."),
            OpenApiParameter(
                "gain_mm_per_mv",
                float,
                enum=list(GAINS_MM_PER_MV),
                description="Gain (mm/mV); default 10, or 5 or 2.5 when the signal is too tall.",
            ),
        ],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **error_responses(400, 401, 404)},
    )
    def get(self, request, pk: int):
        """The viewer's strip of one lead as a PNG on ECG paper (25 mm/s, a stated gain, a
        calibration pulse) with beat labels; gaps and leads-off spans marked."""
        recording = visible_recording(request, pk)
        params = request.query_params
        try:
            length_s = seconds_parameter(params.get("length_s"), "length_s", 10.0)
            if not MIN_STRIP_S <= length_s <= MAX_STRIP_S:
                raise ValueError(
                    f"length_s must be between {MIN_STRIP_S:g} and {MAX_STRIP_S:g} seconds"
                )
            # the same checks (and clipping at the end, and the channel's) as the viewer's
            # window
            window = review.signal_window(
                recording, params.get("start_s"), length_s, 10, params.get("channel")
            )
            gain_mm_per_mv = gain_parameter(params.get("gain_mm_per_mv"))
        except ValueError as exc:
            return error(str(exc))
        png = render_range_png(
            recording,
            window["start_sample"],
            window["end_sample"],
            channel=window["channel"],
            gain_mm_per_mv=gain_mm_per_mv,
        )
        response = HttpResponse(png, content_type="image/png")
        response["Content-Disposition"] = (
            f'inline; filename="{review.record_name(recording)}-{window["start_s"]:.1f}s.png"'
        )
        return response


def nothing_to_export(recording) -> Response | None:
    """400 for an export of a recording with no stored samples (a device recording just
    opened), the same for every export: a file of headers alone would read as a recording
    whose signal was lost."""
    if end_sample(recording) == 0:
        return error(f"recording {recording.pk} has no samples stored yet: nothing to export")
    return None


class RecordingExportZipView(APIView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="api_recordings_export_zip",
        parameters=[OpenApiParameter("format", str, enum=["wfdb", "csv"], required=True)],
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request, pk: int):
        """The whole recording as a WFDB record (.hea, .dat; our labels as .cspk, an upload's
        reference labels as .atr) or as CSV files, zipped."""
        recording = visible_recording(request, pk)
        kind = request.query_params.get("format", "")
        if kind not in ("wfdb", "csv"):
            return error(f"format must be wfdb or csv, got {kind!r}")
        refused = nothing_to_export(recording)
        if refused is not None:
            return refused
        filename = f"{review.record_name(recording)}-{kind}.zip"
        if kind == "csv":
            # a temporary file, sent in blocks and deleted once sent (review.csv_zip)
            return FileResponse(
                review.csv_zip(recording),
                as_attachment=True,
                filename=filename,
                content_type="application/zip",
            )
        response = HttpResponse(review.wfdb_zip(recording), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class RecordingExportCsvView(APIView):
    content_negotiation_class = AnyAcceptNegotiation

    @extend_schema(
        operation_id="api_recordings_export_csv",
        responses={(200, "text/csv"): OpenApiTypes.STR, **error_responses(400, 401, 404)},
    )
    def get(self, request, pk: int):
        """The whole recording as CSV: time_s, sample, one column per lead in mV (gaps blank)."""
        recording = visible_recording(request, pk)
        # checked before the stream starts: once it has, the status is sent and cannot change
        refused = nothing_to_export(recording)
        if refused is not None:
            return refused
        response = StreamingHttpResponse(
            review.signal_csv_lines(recording), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = (
            f'attachment; filename="{review.record_name(recording)}.csv"'
        )
        return response


# Included by monitoring/api/urls.py under /api/ (before the router's recordings routes).
urlpatterns = [
    path("recordings/<int:pk>/signal/", RecordingSignalView.as_view(), name="api-review-signal"),
    path("recordings/<int:pk>/events/", RecordingEventsView.as_view(), name="api-review-events"),
    path("recordings/<int:pk>/go-to/", RecordingGoToView.as_view(), name="api-review-go-to"),
    path("recordings/<int:pk>/range.png", RecordingRangePngView.as_view(), name="api-range-png"),
    path(
        "recordings/<int:pk>/export.zip",
        RecordingExportZipView.as_view(),
        name="api-export-zip",
    ),
    path(
        "recordings/<int:pk>/export.csv",
        RecordingExportCsvView.as_view(),
        name="api-export-csv",
    ),
]
