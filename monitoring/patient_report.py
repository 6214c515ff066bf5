"""A patient's monitoring over a time range, across their device recordings: the handover
report (docs/dashboard.md, "Handover report").

A recording's report (``monitoring.recording_report``) covers one recording; a night is often
several (a device restarted, a new session after an outage or a move, a second device), and
the registrar at the morning handover wanted the night, not its pieces. This report reads the
same figures of every device recording of the patient that overlaps the range, cut at the
range, and adds them up per clock hour in the server's zone:

- the analysed signal (gaps, leads-off spans and a live recording's not yet analysed tail
  excluded), the AF time within it, V and S beats per hour of it;
- the heart rate (mean; extremes of an 8-beat running mean) with no RR interval across a gap,
  a leads-off span or from one recording to the next, and none longer than ``live.MAX_RR_S``,
  as the recordings' own reports read a device recording's;
- pauses and VT episodes by onset;
- the alarms active in the range, counted by kind and priority (the alarm history lists them).

Uploaded recordings are left out, as the heart-rate trend leaves them out: an upload is a
file someone analysed, dated by its header or its upload, not the patient's monitoring. Two
recordings at the same time (two devices on one patient) both count; the report names the
recordings that overlap and for how long, so that a doubled hour is not misread.

Three queries per recording (its chunks' positions, its beats in the range, its episodes), one
for the recordings and one for the alarms, and none per hour.
"""

from datetime import UTC, datetime, timedelta

import numpy as np
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from inference.aami import AAMI_CLASSES
from inference.analysis import heart_rate_bpm
from monitoring.alarm_history import (
    CUSTOM_RANGE,
    RANGES,
    TimeRange,
    history_range,
    local_time,
    page_query,
)
from monitoring.models import Alarm, AnalysisStatus, Patient, Recording
from monitoring.recording_report import (
    binned_figures,
    clock_hour_label,
    duration_text,
    intersection,
    rate_per_hour,
    read_figures,
)

# The longest range a report covers: a week of hourly rows (168). Longer would read a
# week's beats of every recording at once; a longer stay is read a week at a time.
MAX_RANGE = timedelta(days=7)
# What a recording row reads: never its analyzer state (stream_state, 100 kB and more).
RECORDING_FIELDS = (
    "id",
    "patient_id",
    "device__serial",
    "source",
    "sampling_rate_hz",
    "started_at",
    "ended_at",
    "status",
    "end_sample",
    "analysis_cursor",
    "analysis_status",
    "upload_format",
)


def clock_hour_edges(start: datetime, end: datetime) -> list[datetime]:
    """The range's start, every full clock hour of the current zone inside it, and its end
    (aware datetimes). Hours are stepped in UTC, so a day with a clock change has 23 or 25
    rows and none is skipped or doubled; in a zone whose offset is not whole hours (India),
    the rows still start at its clock's full hours."""
    # in UTC: arithmetic on two times of one zone is wall-clock arithmetic, which would skip
    # or double the hour the clocks change (a range typed into the page is in the zone)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    hour = timezone.localtime(start).replace(minute=0, second=0, microsecond=0)
    edges = [start]
    moment = hour.astimezone(UTC) + timedelta(hours=1)
    while moment < end:
        edges.append(moment)
        moment += timedelta(hours=1)
    edges.append(end)
    return edges


def report_recordings(patient: Patient, time_range: TimeRange) -> list[Recording]:
    """The patient's analysed device recordings that overlap the range, oldest first: started
    before its end and not ended before its start (a recording's samples can outlast
    ``ended_at`` by a late chunk; the beats read are cut at the range either way)."""
    recordings = (
        patient.recordings.filter(
            source=Recording.Source.DEVICE,
            analysis_status=AnalysisStatus.DONE,
            started_at__lt=time_range.end,
        )
        .filter(Q(ended_at__isnull=True) | Q(ended_at__gt=time_range.start))
        .select_related("device")
        .only(*RECORDING_FIELDS)
        .order_by("started_at", "id")
    )
    # and whose samples reach into it: a recording never closed (no ended_at) that fell
    # silent long ago is no part of a later night (no query: its end is a field)
    return [
        recording
        for recording in recordings
        if recording.started_at
        + timedelta(seconds=recording.end_sample / recording.sampling_rate_hz)
        > time_range.start
    ]


def joined_heart_rate(pieces: list[tuple[np.ndarray, float]]) -> dict:
    """``heart_rate_bpm`` over several recordings' beats, given as (``rate_samples``, fs_hz)
    pieces: each piece in seconds, placed after the one before with more than ``MAX_RR_S``
    between them, so that no RR interval joins two recordings."""
    from monitoring.live import MAX_RR_S

    joined, offset_s = [], 0.0
    for rate_samples, fs_hz in pieces:
        if not len(rate_samples):
            continue
        times_s = rate_samples / fs_hz
        joined.append(times_s - times_s[0] + offset_s)
        offset_s = joined[-1][-1] + 2 * MAX_RR_S + 1
    if not joined:
        return heart_rate_bpm(np.zeros(0), 1.0, MAX_RR_S)
    return heart_rate_bpm(np.concatenate(joined), 1.0, MAX_RR_S)


def alarm_counts(patient: Patient, time_range: TimeRange) -> list[dict]:
    """The alarms active in the range (as the alarm history lists them), counted by kind and
    priority, the most first: one query."""
    rows = (
        Alarm.objects.filter(patient=patient)
        .active_during(time_range.start, time_range.end)
        .values("kind", "priority")
        .annotate(count=Count("id"))
        .order_by("-count", "kind", "priority")
    )
    labels = dict(Alarm._meta.get_field("kind").choices)
    priorities = dict(Alarm._meta.get_field("priority").choices)
    return [
        {
            "kind": row["kind"],
            "kind_label": labels.get(row["kind"], row["kind"]),
            "priority": row["priority"],
            "priority_label": priorities.get(row["priority"], row["priority"]),
            "count": row["count"],
        }
        for row in rows
    ]


def _overlaps(recordings: list[Recording], analysed: list[list[tuple[float, float]]]) -> list:
    """Pairs of recordings whose analysed signal overlaps in time (seconds from the range's
    start), with the seconds they share."""
    pairs = []
    for i in range(len(recordings)):
        for j in range(i + 1, len(recordings)):
            shared_s = sum(hi - lo for lo, hi in intersection(analysed[i], analysed[j]))
            if shared_s > 0:
                pairs.append(
                    {"recordings": [recordings[i].pk, recordings[j].pk], "seconds": shared_s}
                )
    return pairs


def patient_report(patient: Patient, time_range: TimeRange) -> dict:
    """The report of ``patient`` over ``time_range`` (at most ``MAX_RANGE``; ``ValueError``
    otherwise). Seconds rounded to 0.1; times ISO 8601 in UTC."""
    from monitoring.live import MAX_RR_S

    start, end = time_range.start.astimezone(UTC), time_range.end.astimezone(UTC)
    if end - start > MAX_RANGE + timedelta(seconds=1):
        raise ValueError(
            f"a report covers at most {MAX_RANGE.days} days, got "
            f"{(end - start).total_seconds() / 86400:.1f}"
        )
    edges = clock_hour_edges(start, end)
    recordings = report_recordings(patient, time_range)
    n_rows = len(edges) - 1
    hours = [
        {
            "analysed_s": 0.0,
            "n_beats": 0,
            "n_v_beats": 0,
            "n_s_beats": 0,
            "n_pauses": 0,
            "af_s": 0.0,
            "n_vt": 0,
            "rate_pieces": [],
            "recordings": [],
        }
        for _ in range(n_rows)
    ]
    counts = dict.fromkeys(AAMI_CLASSES, 0)
    whole_range_pieces, recording_rows, analysed_in_range = [], [], []
    for recording in recordings:
        fs_hz = recording.sampling_rate_hz
        # seconds from the recording's sample 0 of each edge
        edges_s = [(edge - recording.started_at).total_seconds() for edge in edges]
        figures = read_figures(
            recording,
            from_sample=max(0, int((edges_s[0] - MAX_RR_S) * fs_hz)),
            to_sample=max(0, int(np.ceil(edges_s[-1] * fs_hz))),
        )
        hour_figures = binned_figures(figures, edges_s)
        for row, figures_of_hour in zip(hours, hour_figures, strict=True):
            piece = figures_of_hour.pop("rate_samples")
            for name, value in figures_of_hour.items():
                row[name] += value
            if len(piece):
                row["rate_pieces"].append((piece, fs_hz))
            if figures_of_hour["analysed_s"] > 0 or figures_of_hour["n_beats"]:
                row["recordings"].append(recording.pk)
        (whole,) = binned_figures(figures, [edges_s[0], edges_s[-1]])
        whole_range_pieces.append((whole["rate_samples"], fs_hz))
        in_range = (times_s := figures.samples / fs_hz) >= edges_s[0]
        in_range &= times_s < edges_s[-1]
        for name in AAMI_CLASSES:
            counts[name] += int((figures.labels[in_range] == name).sum())
        analysed_in_range.append(
            [
                (lo - edges_s[0], hi - edges_s[0])
                for lo, hi in intersection(figures.analysed_s, [(edges_s[0], edges_s[-1])])
            ]
        )
        recording_rows.append(
            {
                "id": recording.pk,
                "device": recording.device.serial if recording.device else None,
                "started_at": recording.started_at.isoformat(),
                "ended_at": recording.ended_at.isoformat() if recording.ended_at else None,
                "status": recording.status,
                "analysed_s": round(whole["analysed_s"], 1),
                "n_beats": whole["n_beats"],
            }
        )

    total_analysed_s = sum(row["analysed_s"] for row in hours)
    total_af_s = sum(row["af_s"] for row in hours)
    return {
        "patient": patient.pk,
        "start": time_range.start.isoformat(),
        "end": time_range.end.isoformat(),
        "time_zone": timezone.get_current_timezone_name(),
        "analysed_s": round(total_analysed_s, 1),
        "af_s": round(total_af_s, 1),
        # a fraction (0-1) of the analysed time, as a recording's report gives it
        "af_time_fraction": round(total_af_s / total_analysed_s, 4) if total_analysed_s else None,
        "n_beats": sum(row["n_beats"] for row in hours),
        "counts": counts,
        "per_hour": {
            name: rate_per_hour(count, total_analysed_s) for name, count in counts.items()
        },
        "n_pauses": sum(row["n_pauses"] for row in hours),
        "n_vt": sum(row["n_vt"] for row in hours),
        "heart_rate_bpm": joined_heart_rate(whole_range_pieces),
        "hours": [
            {
                "start": edges[index].isoformat(),
                "end": edges[index + 1].isoformat(),
                "analysed_s": round(row["analysed_s"], 1),
                "n_beats": row["n_beats"],
                "heart_rate_bpm": joined_heart_rate(row["rate_pieces"]),
                "n_v_beats": row["n_v_beats"],
                "n_s_beats": row["n_s_beats"],
                "n_pauses": row["n_pauses"],
                "af_s": round(row["af_s"], 1),
                "n_vt": row["n_vt"],
                "recordings": row["recordings"],
            }
            for index, row in enumerate(hours)
        ],
        "recordings": recording_rows,
        "overlaps": [
            {**pair, "seconds": round(pair["seconds"], 1)}
            for pair in _overlaps(recordings, analysed_in_range)
        ],
        "alarms": alarm_counts(patient, time_range),
    }


def report_display(report: dict) -> dict:
    """The report laid out for the page: seconds as minutes and durations, the AF fraction
    as a percentage, each hour's clock label, the overlaps in words."""
    starts = [datetime.fromisoformat(row["start"]) for row in report["hours"]]
    ends = [datetime.fromisoformat(row["end"]) for row in report["hours"]]
    fraction = report["af_time_fraction"]
    return {
        **report,
        "analysed_text": duration_text(report["analysed_s"]) if report["analysed_s"] else None,
        "af_percent": None if fraction is None else fraction * 100,
        "af_text": duration_text(report["af_s"]),
        "hours": [
            {
                **row,
                "label": clock_hour_label(start, end, starts[0]),
                "analysed_min": row["analysed_s"] / 60,
                "af_min": row["af_s"] / 60,
            }
            for row, start, end in zip(report["hours"], starts, ends, strict=True)
        ],
        "recordings": [
            {
                **row,
                "started_at": datetime.fromisoformat(row["started_at"]),
                "ended_at": datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
                "analysed_text": duration_text(row["analysed_s"]) if row["analysed_s"] else "none",
            }
            for row in report["recordings"]
        ],
        "overlaps": [
            {**pair, "text": duration_text(pair["seconds"])} for pair in report["overlaps"]
        ],
    }


def handover_report(request, pk: int):
    """The page: ``range`` (1h, 12h, 24h, 7d; default 12h) or ``from`` and ``to`` in the
    server's zone, as the alarm history reads them. A bad range shows the form again with the
    error, status 400."""
    # 404, not 403, for a patient the clinician is not assigned to, as the patient page
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=pk)
    given = {name: request.GET.get(name, "").strip() for name in ("from", "to")}
    context = {
        "patient": patient,
        "ranges": [(key, label) for key, (label, _span) in RANGES.items()],
        "time_zone": timezone.get_current_timezone_name(),
        "form": {**given, "range": request.GET.get("range", "").strip()},
        "max_days": MAX_RANGE.days,
    }
    try:
        time_range = history_range(request.GET, timezone.now())
        report = patient_report(patient, time_range)
    except ValueError as exc:
        context["error"] = str(exc)
        if context["form"]["range"] not in RANGES:
            context["form"]["range"] = ""
        return render(request, "monitoring/handover_report.html", context, status=400)
    custom = time_range.key == CUSTOM_RANGE
    shown_to = time_range.end - timedelta(seconds=1)
    context.update(
        {
            "time_range": time_range,
            "shown_to": shown_to,
            "report": report_display(report),
            # the alarm history of the same range: pinned to its from and to
            "alarm_query": page_query(time_range, "", ""),
            "form": {
                "range": "" if custom else time_range.key,
                "from": local_time(time_range.start) if custom else "",
                "to": local_time(shown_to) if custom else "",
            },
        }
    )
    return render(request, "monitoring/handover_report.html", context)
