"""Pages: upload a recording for a patient, and see its analysis."""

from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
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
from monitoring.recording_report import clock_hour_label, duration_text, recording_report
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
# An episode's strip opens this long before its onset: started exactly there, it cut the
# first beat's QRS, and a reader wants the rhythm it broke out of.
EPISODE_LEAD_IN_S = 2.0

# The episode details (inference.rhythm) as a reader says them, with units; a key not
# listed here is shown as it is stored.
EPISODE_DETAIL_LABELS = {
    "n_beats": "{:g} beats",
    "n_v_beats": "{:g} V beats",
    "mean_hr_bpm": "mean heart rate {:g} bpm",
    "min_hr_bpm": "lowest heart rate {:g} bpm",
    "max_hr_bpm": "highest heart rate {:g} bpm",
    "duration_s": "{:.1f} s without a beat",
    "mean_probability": "mean VF probability {:.2f}",
}
# a pause that reaches an end of the signal: its true length is not known
EPISODE_OPEN_TEXT = {
    "start": "from the recording's start",
    "end": "to the recording's end",
    "both": "the whole recording",
}


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


def episode_details_text(details: dict) -> str:
    """``{"n_beats": 3, "n_v_beats": 3, "mean_hr_bpm": 150.2}`` as "3 beats, 3 V beats, mean
    heart rate 150 bpm": the page listed the stored keys ("n_beats 3, n_v_beats 3, …")."""
    details = details or {}
    # in the labels' order, then the rest by name: PostgreSQL's jsonb keeps no key order (it
    # gave "highest" before "mean"), so the page read differently on SQLite and PostgreSQL
    known = [*EPISODE_DETAIL_LABELS, "open", "ongoing"]
    keys = [key for key in known if key in details]
    keys += sorted(key for key in details if key not in known)
    parts = []
    for key in keys:
        value = details[key]
        if key == "open":
            parts.append(EPISODE_OPEN_TEXT.get(value, f"open {value}"))
        elif key == "ongoing":
            if value:
                parts.append("ongoing")
        elif key in EPISODE_DETAIL_LABELS and isinstance(value, int | float):
            parts.append(EPISODE_DETAIL_LABELS[key].format(value))
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def clock_text(moment, day=None) -> str:
    """``moment`` on the clock the pages show (the current zone), to the second as the
    |date filter cuts it, with the zone's abbreviation: "20:45:00 CET"; with the date first
    when it is not ``day`` (an episode the night after a Holter's start)."""
    local = timezone.localtime(moment)
    shown = local.strftime("%H:%M:%S %Z")
    if local.date() != day:
        shown = f"{local:%Y-%m-%d} {shown}"
    return shown


def episode_rows(recording: Recording) -> list[dict]:
    """The results page's episode table: each episode with its onset's clock time (none when
    the start is only the upload time: those clock times are not the recording's), its
    details in words and where its strip starts (``EPISODE_LEAD_IN_S`` before the onset)."""
    start_day = timezone.localtime(recording.started_at).date()
    rows = []
    for episode in recording.episodes.all():
        onset = recording.started_at + timedelta(seconds=episode.start_s)
        rows.append(
            {
                "kind": episode.kind,
                "start_s": episode.start_s,
                "end_s": episode.end_s,
                "duration_s": episode.duration_s,
                "clock": "" if recording.start_is_upload_time else clock_text(onset, start_day),
                "strip_start_s": max(0.0, episode.start_s - EPISODE_LEAD_IN_S),
                "details": episode_details_text(episode.details),
            }
        )
    return rows


def _hour_label(recording: Recording, row: dict, first) -> str:
    """An hourly row as the page names it: its clock times ("22:00–23:00", the first and
    last row cut at the recording's start and end), with the date when it is not the day of
    ``first`` (the recording's start, local) and the zone's abbreviations when they are not
    its (a night across a daylight-saving change: "02:00 CEST–02:00 CET"); or its hours
    from the start ("1:00–2:00") when the file gave no start."""
    if row["start"] is None:
        return "–".join(
            f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}"
            for seconds in (row["start_s"], row["end_s"])
        )
    return clock_hour_label(
        recording.started_at + timedelta(seconds=row["start_s"]),
        recording.started_at + timedelta(seconds=row["end_s"]),
        first,
    )


def report_display(recording: Recording, report: dict | None) -> dict | None:
    """The report (``monitoring.recording_report``) laid out for the results page: seconds
    as minutes, the AF fraction as a percentage, each hour's label."""
    if report is None:
        return None
    first = timezone.localtime(recording.started_at)
    analysed_s = report["analysed_s"]
    fraction = report["af_time_fraction"]
    return {
        "analysed_text": duration_text(analysed_s) if analysed_s else None,
        "af_percent": None if fraction is None else fraction * 100,
        "af_text": duration_text(report["af_s"]),
        "per_hour": report["per_hour"],
        "by_clock": report["hours_by"] == "clock",
        "hours": [
            {
                **row,
                "label": _hour_label(recording, row, first),
                "analysed_min": row["analysed_s"] / 60,
                "af_min": row["af_s"] / 60,
            }
            for row in report["hours"]
        ],
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
    # None unless done, and for beat rows (no time axis)
    report = report_display(recording, recording_report(recording))
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
        "report": report,
        "classes": [
            {
                "label": name,
                "count": (summary.get("counts") or {}).get(name, 0),
                "burden": (summary.get("burden") or {}).get(name, 0.0) * 100,
                "per_hour": report["per_hour"][name] if report else None,
            }
            for name in AAMI_CLASSES
        ],
        "agreement": _agreement_table(recording.analysis_agreement),
        "analysed_lead": recording.analysis_lead_name,
        "max_strip_s": MAX_STRIP_S,
        # sample 0's clock time for every recording (it was shown for uploads only)
        "started_clock": clock_text(recording.started_at),
        "time_zone": timezone.get_current_timezone_name(),
        "episode_lead_in_s": EPISODE_LEAD_IN_S,
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
        context["episodes"] = episode_rows(recording)
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
