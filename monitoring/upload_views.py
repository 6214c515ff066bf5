"""Pages: upload a recording for a patient, and see its analysis."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from inference.aami import AAMI_CLASSES
from monitoring import streaming
from monitoring.analysis import (
    ROWS_NOTE,
    analysis_is_stale,
    analysis_pending_message,
    queue_analysis,
)
from monitoring.models import BEAT_ROW_FORMATS, AnalysisStatus, Patient, Recording
from monitoring.recordings import MAX_GAPS_LISTED, summarize
from monitoring.strips import DEFAULT_STRIP_S, MAX_STRIP_S, strip_request
from monitoring.uploads import (
    MAX_FS_HZ,
    MIN_FS_HZ,
    UploadError,
    files_from_request,
    parse_upload,
    store_upload,
)

BEATS_PER_PAGE = 100


def upload_recording(request, pk: int):
    """The upload form of a patient's page; on success, the results page of the recording."""
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=pk)
    context = {
        "patient": patient,
        "min_fs": MIN_FS_HZ,
        "max_fs": MAX_FS_HZ,
        "fs_hz": "",
        # the page checks the files' size before sending them (upload.js): a larger body
        # would only be refused after the browser sent it all
        "max_bytes": settings.UPLOAD_MAX_BYTES,
        "max_mib": settings.UPLOAD_MAX_BYTES / 2**20,
    }
    if request.method == "POST":
        context["fs_hz"] = request.POST.get("fs_hz", "")
        try:
            files = files_from_request(request)
            parsed = parse_upload(files, fs_hz=request.POST.get("fs_hz") or None)
        except UploadError as exc:
            context["error"] = str(exc)
            return render(request, "monitoring/upload.html", context, status=exc.status)
        recording = store_upload(patient, parsed, uploaded_by=request.user)
        return redirect("recording-results", pk=recording.pk)
    return render(request, "monitoring/upload.html", context)


@require_POST
def reanalyze_recording(request, pk: int):
    """The results page's "Analyse again": replaces the results (or retries a failure)."""
    recording = get_object_or_404(Recording.objects.visible_to(request.user), pk=pk)
    # refused while an analysis is pending and not stale (a second tab, a double click):
    # the page says so instead of queuing a second run
    if recording.upload_format and not queue_analysis(recording.pk, force=True):
        messages.error(request, analysis_pending_message(recording))
    return redirect("recording-results", pk=recording.pk)


def _agreement_table(agreement: dict | None) -> dict | None:
    """The agreement dict laid out for the template: rows of the confusion table."""
    if not agreement:
        return None
    confusion = agreement["confusion"]
    return {
        "labels": AAMI_CLASSES,
        "rows": [
            {
                "label": name,
                "counts": confusion[i],
                "missed": agreement["missed"][name],
                "stats": agreement["classes"][name],
            }
            for i, name in enumerate(AAMI_CLASSES)
        ],
        "extra": [agreement["extra"][name] for name in AAMI_CLASSES],
        "accuracy": agreement["accuracy"],
        "n_matched": agreement["n_matched"],
        "qrs": agreement.get("qrs"),
    }


def signal_extent(recording: Recording) -> dict:
    """What the results page says beside the duration (the signal stored): the span from
    the recording's start to its last stored sample, and the gaps in it (how many, seconds
    missing). The page said "Duration 58.0 s" of a recording 80 s long with 22 s missing."""
    stored = summarize(recording)
    fs_hz = recording.sampling_rate_hz
    return {
        "span_s": stored["end_sample"] / fs_hz,
        "n_gaps": len(stored["gaps"]),
        "gaps_listed_all": len(stored["gaps"]) < MAX_GAPS_LISTED,  # else "at least"
        "missing_s": stored["missing_samples"] / fs_hz,
    }


def recording_detail(request, pk: int):
    """The analysis of one recording: summary, strip with saliency, episodes, agreement, beats."""
    recording = get_object_or_404(
        Recording.objects.visible_to(request.user).select_related("patient"), pk=pk
    )
    done = recording.analysis_status == AnalysisStatus.DONE
    rows = recording.upload_format in BEAT_ROW_FORMATS
    if recording.source == Recording.Source.DEVICE:
        # streamed, not uploaded: the summary is read from the beats stored so far
        summary = streaming.stream_summary(recording) if done else {}
    else:
        summary = recording.analysis_summary or {}
    context = {
        "recording": recording,
        "patient": recording.patient,
        "done": done,
        "pending": recording.analysis_status == AnalysisStatus.PENDING,
        # pending for longer than any analysis takes: its worker most likely stopped, so
        # the page offers "Analyse again" before the periodic sweep marks it failed
        "stale": analysis_is_stale(recording),
        "stale_minutes": settings.UPLOAD_ANALYSIS_STALE_S / 60,
        "rows": rows,
        "rows_note": ROWS_NOTE,
        "summary": summary,
        "classes": [
            {
                "label": name,
                "count": (summary.get("counts") or {}).get(name, 0),
                "burden": (summary.get("burden") or {}).get(name, 0.0) * 100,
            }
            for name in AAMI_CLASSES
        ],
        "agreement": _agreement_table(recording.analysis_agreement),
        "analysed_lead": recording.analysis_lead_name,
        "max_strip_s": MAX_STRIP_S,
    }
    if done:
        query = {
            key: request.GET.get(key, "")
            for key in ("start_s", "length_s", "beat")
            if request.GET.get(key, "")
        }
        query.setdefault("length_s", str(int(DEFAULT_STRIP_S)))
        try:
            strip_request(recording, query.get("start_s"), query["length_s"], query.get("beat"))
            context["strip_url"] = (
                reverse("api-strip-png", args=[recording.pk]) + "?" + urlencode(query)
            )
        except ValueError as exc:
            context["strip_error"] = str(exc)
        context["strip"] = query
        context["episodes"] = recording.episodes.all()
        page = Paginator(recording.beats.order_by("index"), BEATS_PER_PAGE).get_page(
            request.GET.get("page")
        )
        page.object_list = list(page.object_list)
        for beat in page.object_list:
            beat.time_s = beat.sample / recording.sampling_rate_hz
        context["beats"] = page
        context["length_s"] = query["length_s"]
        if not rows:
            context["extent"] = signal_extent(recording)
    return render(request, "monitoring/recording_detail.html", context)
