"""Live data for the dashboard: what goes to a patient's channel-layer group (issue 6).

Everything live about one patient goes to the group ``patient-<id>`` (docs/architecture.md,
"Live data"): the analysed lead's samples of every stored chunk, the beats and a status
(heart rate, rhythm, most urgent open alarm) after every analysis round, and every alarm
change. The consumers (``monitoring.consumers``) turn these into the browser messages of the
live contract; a group message carries the browser message under ``"message"`` so the patient
stream forwards it as it is and the central station reshapes it (decimated waveform).

Publishing never raises: a channel layer that is down loses live messages only (the database
holds everything, and a browser that reconnects gets the recent past from it). After a
failure, or while the streaming code knows the broker (the same Redis) to be down, publishing
is skipped for ``LAYER_RETRY_AFTER_S`` so that ingest does not pay a connection timeout per
chunk.
"""

import asyncio
import concurrent.futures
import logging
import math
import os
import threading
import time

import numpy as np
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db.models import (
    Case,
    IntegerField,
    Max,
    OuterRef,
    Prefetch,
    Q,
    Subquery,
    Value,
    When,
    prefetch_related_objects,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from monitoring.models import (
    AlarmPriority,
    AlarmState,
    Beat,
    Device,
    Episode,
    Patient,
    Recording,
    SampleChunk,
)

logger = logging.getLogger(__name__)

LAYER_RETRY_AFTER_S = 5.0
# A send that has not finished in this long is given up (and publishing paused, as for a
# failure): ingest and analysis must not wait on a Redis that hangs. A send takes
# milliseconds when Redis answers.
PUBLISH_TIMEOUT_S = 2.0
# The live view lists this many recent alarms; a reconnecting patient stream resends them.
RECENT_ALARMS = 20
_layer_down_until = 0.0

# Heart rate: 60 / mean of the last HR_RR_INTERVALS RR intervals, as the alarm rules do
# (monitoring/alarms.py), so the number on screen is the number the alarm compares.
HR_RR_INTERVALS = 8
# Without an ongoing episode the rhythm is named from the last RHYTHM_BEATS beats, as a bedside
# monitor does: the underlying rhythm from the intervals between two normal (N) beats, so that
# one premature beat does not blank it, and the ectopic beats among them as a suffix
# ("Sinus + PVCs"). "Sinus" needs at least RHYTHM_MIN_NN such intervals with a coefficient of
# variation below SINUS_MAX_RR_CV; more varied ones are "Irregular" (the AF rule, with its P-wave
# test, names AF as an episode).
RHYTHM_BEATS = 16
RHYTHM_MIN_NN = 4
SINUS_MAX_RR_CV = 0.15
# A regular rhythm is "Sinus" only when its normal beats show a consistent P wave (median
# P-wave correlation with the dominant beat, inference.atrial, at least this); otherwise
# "Regular": atrial fibrillation at a steady rate, or a P wave this lead does not show.
# Chosen on MIT-BIH DS1 (docs/dashboard.md, "The rhythm name").
SINUS_MIN_P_WAVE = 0.5
# Ventricular bigeminy: every other beat V over the last BIGEMINY_BEATS beats.
BIGEMINY_BEATS = 8
# An RR interval longer than this is a gap or a pause, not a heart rate.
MAX_RR_S = 3.0
# The heart rate a status gives while a pause is ongoing (an asystole): no beat for the pause
# limit is a rate of zero, not the rate of the last beats before it (shown as current for as
# long as the asystole lasted, in green), nor "--", which the pages show for "no signal".
PAUSE_HR_BPM = 0.0
# When several episodes are ongoing, the most dangerous one names the rhythm.
RHYTHM_ORDER = ("VF", "VT", "PAUSE", "AF", "BRADY", "TACHY")
PRIORITY_ORDER = {
    AlarmPriority.CRITICAL: 0,
    AlarmPriority.WARNING: 1,
    AlarmPriority.TECHNICAL: 2,
}
# The signals (signal_state) with which a status gives the device's battery charge: a device
# that sends, its leads on or off, reports it with every chunk. A silent or closed one's last
# charge is the past: the pages say nothing rather than show an old number as current, as for
# the heart rate (the device pages, which say when the device was last seen, show it as "last
# reported": battery_reading).
BATTERY_SIGNALS = ("live", "leads_off")


def patient_group(patient_id: int) -> str:
    """The channel-layer group that receives everything live about one patient."""
    return f"patient-{patient_id}"


# --- Browser messages (the live contract), built from the database ----------------------


def samples_message(
    recording: Recording, first_sample: int, adc: np.ndarray, lead_off: bool = False
) -> dict:
    """A "samples" message: the analysed lead of ``adc`` (n, channels) in mV; ``lead_off``:
    the device sent them with an electrode off (no ECG: the pages say "Leads off")."""
    adc = np.asarray(adc)
    lead = adc[:, recording.analysis_lead] if adc.ndim == 2 else adc
    millivolts = np.round(recording.to_mv(lead), 4)
    return {
        "type": "samples",
        "recording": recording.pk,
        "first_sample": int(first_sample),
        "fs_hz": recording.sampling_rate_hz,
        "samples_mv": millivolts.tolist(),
        "lead_off": bool(lead_off),
        # the server's clock when the message was made (after the chunk's commit, or for a
        # backlog): a page can tell how stale its trace is, a benchmark the fan-out's delay
        "sent_at": round(time.time(), 3),
    }


def beat_payloads(beats, fs_hz: float) -> list[dict]:
    """Beats as the live messages carry them (also in the recording group's analysis)."""
    return [
        {
            "index": beat.index,
            "sample": beat.sample,
            "time_s": round(beat.sample / fs_hz, 3),
            "label": beat.label,
            "confidence": round(beat.confidence, 4),
            "provisional": beat.provisional,
        }
        for beat in beats
    ]


def beats_message(recording: Recording, beats) -> dict:
    return {
        "type": "beats",
        "recording": recording.pk,
        "beats": beat_payloads(beats, recording.sampling_rate_hz),
    }


def alarm_payload(alarm) -> dict:
    """An alarm as the contract's "alarm" object. ``review_path``: its ECG on the review page,
    the link the alarm history and the e-mail give (``notifications.review_path``), None
    without a recording (a silent device's alarm); it reads the alarm's recording, so select
    that with the alarm, its analyzer state deferred (:func:`alarms_to_list`,
    :func:`publish_alarms`)."""
    from monitoring.notifications import review_path  # it imports this module

    def iso(moment):
        return moment.isoformat() if moment else None

    return {
        "id": alarm.pk,
        "kind": alarm.kind,
        "priority": alarm.priority,
        "state": alarm.state,
        "message": alarm.message,
        "raised_at": iso(alarm.raised_at),
        "acknowledged_by": alarm.acknowledged_by.get_username() if alarm.acknowledged_by else None,
        "acknowledged_at": iso(alarm.acknowledged_at),
        "resolved_at": iso(alarm.resolved_at),
        "review_path": review_path(alarm) if alarm.recording_id is not None else None,
    }


def recent_beats_of(recordings) -> dict[int, tuple[np.ndarray, list[str], list[float | None]]]:
    """Each recording's last ``RHYTHM_BEATS + 1`` beats' samples, labels and P-wave
    correlations (``Beat.p_wave``), oldest first, by recording id, in one query (every one
    given is a key: a recording without beats has none).

    Each recording's rows are bounded by its own beat numbers: from the index of its
    ``RHYTHM_BEATS + 1``-th newest beat (0 when it has fewer), which an uncorrelated subquery
    finds by a short backward walk of the unique (recording, index) index; the database runs
    each once. A window function (ROW_NUMBER() OVER (PARTITION BY recording ORDER BY index
    DESC)) would say the same in one query, but numbers every beat of every recording before
    keeping 17 each: a day of ECG is about 100,000 beats, a station of 30 patients millions
    of rows on every hello.
    """
    recording_ids = [recording.pk for recording in recordings]
    by_recording = {recording_id: ([], [], []) for recording_id in recording_ids}
    if not recording_ids:
        return {}  # an empty Q() below would match every beat
    kept = Q()
    for recording_id in recording_ids:
        newest_first = Beat.objects.filter(recording_id=recording_id).order_by("-index")
        first_kept_index = newest_first.values("index")[RHYTHM_BEATS : RHYTHM_BEATS + 1]
        kept |= Q(
            recording_id=recording_id,
            index__gte=Coalesce(Subquery(first_kept_index), 0, output_field=IntegerField()),
        )
    rows = (
        Beat.objects.filter(kept)
        .order_by("recording_id", "index")
        .values_list("recording_id", "sample", "label", "p_wave")
    )
    for recording_id, sample, label, p_wave in rows:
        samples, labels, p_waves = by_recording[recording_id]
        samples.append(sample)
        labels.append(label)
        p_waves.append(p_wave)
    return {
        recording_id: (np.array(samples, dtype=np.float64), labels, p_waves)
        for recording_id, (samples, labels, p_waves) in by_recording.items()
    }


def heart_rate_bpm(samples: np.ndarray, fs_hz: float) -> float | None:
    """60 / the mean of the last ``HR_RR_INTERVALS`` RR intervals (fewer at a stream's start).

    None when fewer than two beats are given or those intervals are no heart rate (a gap).
    """
    if len(samples) < 2:
        return None
    rr_s = np.diff(samples[-(HR_RR_INTERVALS + 1) :]) / fs_hz
    if np.any(rr_s <= 0) or np.any(rr_s > MAX_RR_S):
        return None
    return round(60.0 / float(np.mean(rr_s)), 1)


def beat_rhythm(
    samples: np.ndarray, labels: list[str], fs_hz: float, p_waves: list[float | None]
) -> str | None:
    """The rhythm the last beats show, when no episode is ongoing (``RHYTHM_BEATS``, above).

    "Vent bigeminy"; else "Sinus", "Regular" or "Irregular" from the N-to-N intervals and the
    normal beats' P waves (``p_waves``: each beat's ``Beat.p_wave``, None where unknown), with
    " + PVCs" and/or " + PACs" (any AAMI V or S beat among the beats: ventricular, or atrial or
    junctional premature); None while too few beats are stored since the stream began or
    since its last gap, or when too few beats are normal to name an underlying rhythm.
    """
    rr_s = np.diff(samples) / fs_hz
    gaps = np.flatnonzero((rr_s <= 0) | (rr_s > MAX_RR_S))
    if len(gaps):  # a gap in the stream, or a pause that ended: name what came after it
        first = gaps[-1] + 1
        rr_s, labels, p_waves = rr_s[first:], labels[first:], p_waves[first:]
    if len(rr_s) < HR_RR_INTERVALS:
        return None
    is_v = [label == "V" for label in labels[-BIGEMINY_BEATS:]]
    if len(is_v) == BIGEMINY_BEATS and all(a != b for a, b in zip(is_v, is_v[1:], strict=False)):
        return "Vent bigeminy"
    normal_to_normal = [
        rr for rr, a, b in zip(rr_s, labels, labels[1:], strict=False) if a == b == "N"
    ]
    if len(normal_to_normal) < RHYTHM_MIN_NN:
        return None
    nn_s = np.array(normal_to_normal)
    if float(np.std(nn_s) / np.mean(nn_s)) >= SINUS_MAX_RR_CV:
        rhythm = "Irregular"
    elif p_wave_consistent(labels, p_waves):
        rhythm = "Sinus"
    else:
        rhythm = "Regular"
    if "V" in labels:
        rhythm += " + PVCs"
    if "S" in labels:
        rhythm += " + PACs"
    return rhythm


def p_wave_consistent(labels: list[str], p_waves: list[float | None]) -> bool:
    """Whether the normal beats show one consistent P wave: at least ``RHYTHM_MIN_NN`` of them
    with a known P-wave correlation, of median ``SINUS_MIN_P_WAVE`` or more. Atrial
    fibrillation with a steady ventricular rate has regular intervals but no P wave."""
    known = [
        p_wave
        for label, p_wave in zip(labels, p_waves, strict=True)
        if label == "N" and p_wave is not None and math.isfinite(p_wave)
    ]
    return len(known) >= RHYTHM_MIN_NN and float(np.median(known)) >= SINUS_MIN_P_WAVE


def rhythm_name(ongoing_kinds: set[str], from_beats: str | None) -> str | None:
    """The most dangerous of the ongoing episodes' kinds (``RHYTHM_ORDER``), else
    ``from_beats`` (:func:`beat_rhythm`)."""
    for kind in RHYTHM_ORDER:
        if kind in ongoing_kinds:
            return kind
    return from_beats


def ongoing_episode_kinds(recordings) -> dict[int, set[str]]:
    """The kinds of each recording's ongoing episodes, by recording id, in one query."""
    # Episodes end where every beat is known (StreamingAnalyzer.beats_final_through; a pause
    # where every beat's position is, beat_positions_final_through), so an ongoing pause is a
    # real one, not beats still to be stored.
    by_recording = {recording.pk: set() for recording in recordings}
    if by_recording:
        ongoing = Episode.objects.filter(recording_id__in=by_recording, details__ongoing=True)
        for recording_id, kind in ongoing.order_by().values_list("recording_id", "kind"):
            by_recording[recording_id].add(kind)
    return by_recording


def top_alarm(patient_id: int) -> dict | None:
    """The alarm a patient's tile and banner show, or None when none wants attention (one
    query; :func:`pick_top_alarm` says which of :func:`alarms_to_show`)."""
    return top_alarms([patient_id])[patient_id]


def top_alarms(patient_ids) -> dict[int, dict | None]:
    """:func:`top_alarm` for many patients in one query (the central station's tiles)."""
    patient_ids = list(patient_ids)  # read twice
    alarms = alarms_to_show(patient_ids)
    return {patient_id: pick_top_alarm(alarms.get(patient_id, [])) for patient_id in patient_ids}


def alarms_to_show(patient_ids) -> dict[int, list]:
    """The patients' alarms that want attention, by patient, with what :func:`pick_top_alarm`
    reads: the open ones, and the latched ones (a critical alarm that resolved before anyone
    acknowledged it: ``models.latched_q``), which the tile shows until someone does, as
    escalation waits for them."""
    from monitoring.models import Alarm

    by_patient = {}
    for alarm in (
        Alarm.objects.waiting(timezone.now())
        .filter(patient_id__in=patient_ids)
        .select_related("acknowledged_by")
        .only(
            "patient",
            "kind",
            "priority",
            "message",
            "state",
            "raised_at",
            "acknowledged_at",
            "acknowledged_by__username",  # not the rest of the user's row (its password hash)
        )
        .order_by()  # pick_top_alarm sorts them itself
    ):
        by_patient.setdefault(alarm.patient_id, []).append(alarm)
    return by_patient


def alarms_to_list(patient_id: int) -> list:
    """The alarms the live view lists, newest first: the last ``RECENT_ALARMS``, and every
    older one still waiting for someone (open, or latched: ``models.latched_q``), so that an
    alarm the station shows always has its row and its Acknowledge button. With each its
    acknowledging user and its recording (its review link: :func:`alarm_payload`), not the
    recording's analyzer state (120 kB and more)."""
    from monitoring.models import Alarm

    alarms = (
        Alarm.objects.filter(patient_id=patient_id)
        .select_related("acknowledged_by", "recording")
        .defer("recording__stream_state")
    )
    listed = {alarm.pk: alarm for alarm in alarms.order_by("-raised_at", "-id")[:RECENT_ALARMS]}
    listed.update((alarm.pk, alarm) for alarm in alarms.waiting(timezone.now()))
    return sorted(listed.values(), key=lambda alarm: (alarm.raised_at, alarm.pk), reverse=True)


def pick_top_alarm(alarms) -> dict | None:
    """The alarm to show of one patient's ``alarms`` (:func:`alarms_to_show`, in any order),
    or None if none.

    The most urgent (priority first; within a priority one nobody acknowledged yet, then an
    open one before a latched one, then the newest), with ``state`` ("resolved": a latched
    one) and ``acknowledged_by`` so a page can mark it, and ``unacknowledged``: how many of
    them nobody has acknowledged (the station's tile blinks while there is one, and stops
    once all are).
    """
    if not alarms:
        return None
    newest_first = sorted(alarms, key=lambda a: (a.raised_at, a.pk), reverse=True)
    # min() keeps the first of equal keys: the newest
    alarm = min(
        newest_first,
        key=lambda a: (
            PRIORITY_ORDER.get(a.priority, 9),
            a.acknowledged_at is not None,
            a.state == AlarmState.RESOLVED,
        ),
    )
    return {
        "id": alarm.pk,
        "kind": alarm.kind,
        "priority": alarm.priority,
        "message": alarm.message,
        "state": alarm.state,
        "acknowledged_by": alarm.acknowledged_by.get_username() if alarm.acknowledged_by else None,
        "unacknowledged": sum(1 for a in alarms if a.acknowledged_at is None),
    }


def status_message(recording: Recording | None, patient_id: int) -> dict:
    """A "status" message for a patient from what is stored now (five queries at most)."""
    return status_messages({patient_id: recording})[patient_id]


def signal_age_s(recording: Recording | None, now) -> float | None:
    """Seconds from a live recording's last chunk (its start before any chunk, as the
    device-offline rule reads it: monitoring/alarms.py) to ``now``; None when not live."""
    if recording is None or recording.status != Recording.Status.LIVE:
        return None
    # a recording opened by its first chunk always has last_chunk_at
    last_chunk_at = recording.last_chunk_at or recording.started_at
    return max(0.0, (now - last_chunk_at).total_seconds())


def signal_state(recording: Recording | None, now, leads_off: bool = False) -> str:
    """Whether ``recording`` still brings a signal at ``now``: "live" (a live recording whose
    last chunk is at most ``DEVICE_OFFLINE_S`` old), "leads_off" (as live, but its newest
    chunk said an electrode is off, ``leads_off``: samples come, but no ECG), "stale"
    (live, but silent for longer: a device off, out of range or killed, before the silence
    timeout closes the recording), "ended" (closed: history, not a vital sign) or "none" (no
    recording).

    "stale" follows the technical "device offline" alarm's limit: a silent device's heart rate
    and rhythm describe the past. The pages see silence sooner by themselves (no samples for
    NO_SIGNAL_S, 10 s, plus the last chunk's length: livesocket.js, counted from the
    status' ``signal_age_s``); the server's limit is the longer one because a status is made
    when a round of analysis ends, which under load can be many seconds after its chunk came,
    and a device may send chunks of up to 20 s.
    """
    if recording is None:
        return "none"
    age_s = signal_age_s(recording, now)
    if age_s is None:
        return "ended"
    if age_s > float(settings.DEVICE_OFFLINE_S):
        return "stale"  # a silent device's lead state is stale too, as for its alarm
    return "leads_off" if leads_off else "live"


def recordings_with_leads_off(recordings) -> set[int]:
    """The ids of ``recordings`` whose newest stored chunk (the highest ``first_sample``) said
    an electrode is off, in one query (none for none).

    The recording's own chunk, not its device's state (``Device.lead_off``, what the leads-off
    alarm reads): ingest sets that from any newest chunk of the device, and a late chunk of a
    session the device has replaced (a request in flight when it restarted) is stored in the
    old recording and set it. Until 2026-12-07 the new recording then said "leads_off" with
    its own leads on, until its next chunk (tests/test_leads_off_review.py).
    """
    recording_ids = {recording.pk for recording in recordings}
    if not recording_ids:
        return set()
    newest_flag = (
        SampleChunk.objects.filter(recording=OuterRef("pk"))
        .order_by("-first_sample")
        .values("lead_off")[:1]
    )
    flagged = Recording.objects.filter(pk__in=recording_ids).annotate(
        newest_lead_off=Subquery(newest_flag)
    )
    return set(flagged.filter(newest_lead_off=True).values_list("pk", flat=True))


def battery_charges(
    recordings_by_patient: dict[int, Recording | None], signals: dict[int, str]
) -> dict[int, int | None]:
    """Each patient's device battery charge (%) while their recording brings a signal
    (``BATTERY_SIGNALS``), by patient id, in one query (none when none does); None when the
    device reports no charge, when the signal is silent or closed, or when the recording's
    device is no longer the patient's (moved to another patient: its charge is theirs now).

    ``Device.battery_pct``: what the device's newest chunk of its current session said, the
    value the BATTERY_LOW alarm compares (monitoring/alarms.py), so the number on screen is
    the number the alarm reads.
    """
    charges = dict.fromkeys(recordings_by_patient)
    device_ids = {
        recording.device_id
        for patient_id, recording in recordings_by_patient.items()
        if signals[patient_id] in BATTERY_SIGNALS and recording.device_id is not None
    }
    if not device_ids:
        return charges
    devices = {
        pk: (holder_id, battery_pct)
        for pk, holder_id, battery_pct in Device.objects.filter(pk__in=device_ids).values_list(
            "pk", "patient_id", "battery_pct"
        )
    }
    for patient_id, recording in recordings_by_patient.items():
        if signals[patient_id] in BATTERY_SIGNALS and recording.device_id in devices:
            holder_id, battery_pct = devices[recording.device_id]
            if holder_id == patient_id:
                charges[patient_id] = battery_pct
    return charges


def battery_low(battery_pct: int | None) -> bool:
    """Whether a charge is shown as low: at or below ``DEVICE_BATTERY_LOW_PCT``, where the
    BATTERY_LOW alarm is raised."""
    return battery_pct is not None and battery_pct <= settings.DEVICE_BATTERY_LOW_PCT


def battery_reading(device: Device, now, newest_chunk_at=None) -> dict | None:
    """A device's last reported charge as the staff's device lists show it (the management
    page, the patient page), or None when it never reported one: ``pct``, ``low``
    (:func:`battery_low`) and ``current``, False once the device has sent no chunk for longer
    than ``DEVICE_OFFLINE_S`` (the pages then grey it and say "last reported": next to its
    "last seen" time, an old charge still tells staff which device to charge).

    ``newest_chunk_at``: when the device's newest chunk was stored (the latest
    ``Recording.last_chunk_at`` of its recordings; None: never). The charge comes only with
    a chunk; ``Device.last_seen_at`` is also refreshed by the device's token check
    (``GET /api/device/v1/self/``), and until 2026-12-08 a device that only checked its
    token kept an hours-old charge shown as current."""
    if device.battery_pct is None:
        return None
    age_s = None if newest_chunk_at is None else (now - newest_chunk_at).total_seconds()
    return {
        "pct": device.battery_pct,
        "low": battery_low(device.battery_pct),
        "current": age_s is not None and age_s <= float(settings.DEVICE_OFFLINE_S),
    }


def with_battery(devices) -> list[Device]:
    """``devices`` as a list, each with ``battery``: its :func:`battery_reading` now (the
    device lists of the management page and the patient page; _battery.html). One query
    for the devices' newest chunks, however many devices."""
    now = timezone.now()
    devices = list(devices)
    newest_chunk_at = dict(
        Recording.objects.filter(device__in=[device.pk for device in devices])
        .order_by()
        .values("device")
        .annotate(newest=Max("last_chunk_at"))
        .values_list("device", "newest")
    )
    for device in devices:
        device.battery = battery_reading(device, now, newest_chunk_at.get(device.pk))
    return devices


def status_messages(recordings_by_patient: dict[int, Recording | None]) -> dict[int, dict]:
    """:func:`status_message` of many patients (each with its current recording or None), by
    patient id, in five queries however many they are (one when none brings a signal): the
    central station's hello.

    ``signal`` says whether the recording still brings a signal (:func:`signal_state`); the
    heart rate and the rhythm are given only while it does (None otherwise), so that a page
    never shows the last values of a silent device, of a closed recording, or of the beats
    before the leads came off, as current. They are read from the beats of the analysis'
    current stretch only (from ``Recording.stream_start_sample``): right after a gap or a
    leads-off span the beats before it are history too, until the new stretch has its own
    (before 2026-12-07 the rate of the beats before a leads-off span came back for the
    seconds before the first beats after it). While a pause is ongoing (no beat for the
    patient's pause limit, up to where the QRS detector has looked: ``monitoring.streaming``)
    the rhythm is "PAUSE" and the heart rate ``PAUSE_HR_BPM`` (0), not that of the beats
    before it. ``battery_pct`` is the device's charge while its signal comes, leads off
    included (:func:`battery_charges`), and ``battery_low`` whether it is at or below the
    BATTERY_LOW alarm's limit.
    """
    now = timezone.now()
    signals = {
        patient_id: signal_state(recording, now)
        for patient_id, recording in recordings_by_patient.items()
    }
    leads_off = recordings_with_leads_off(
        recording
        for patient_id, recording in recordings_by_patient.items()
        if signals[patient_id] == "live"
    )
    for patient_id, recording in recordings_by_patient.items():
        if signals[patient_id] == "live" and recording.pk in leads_off:
            signals[patient_id] = signal_state(recording, now, leads_off=True)
    recordings = [
        recording
        for patient_id, recording in recordings_by_patient.items()
        if signals[patient_id] == "live"
    ]
    beats = recent_beats_of(recordings)
    ongoing = ongoing_episode_kinds(recordings)
    alarms = top_alarms(recordings_by_patient)
    charges = battery_charges(recordings_by_patient, signals)
    messages = {}
    for patient_id, recording in recordings_by_patient.items():
        hr_bpm, rhythm, last_sample = None, None, 0
        age_s = signal_age_s(recording, now)
        if recording is not None:
            last_sample = int(recording.analysis_cursor)
        if signals[patient_id] == "live":
            samples, labels, p_waves = beats[recording.pk]
            # the current stretch's: not the beats before a gap or the leads coming off
            first = int(np.searchsorted(samples, recording.stream_start_sample))
            samples, labels, p_waves = samples[first:], labels[first:], p_waves[first:]
            fs_hz = recording.sampling_rate_hz
            hr_bpm = heart_rate_bpm(samples, fs_hz)
            from_beats = beat_rhythm(samples, labels, fs_hz, p_waves)
            rhythm = rhythm_name(ongoing[recording.pk], from_beats)
            if "PAUSE" in ongoing[recording.pk]:
                # the last beats are from before the pause: their rate is no longer current
                hr_bpm = PAUSE_HR_BPM
        messages[patient_id] = {
            "type": "status",
            # which recording it describes: the last round of a recording that a new session
            # replaced says "ended" after the new one's first samples, and a page that shows
            # those ignores it
            "recording": recording.pk if recording is not None else None,
            "hr_bpm": hr_bpm,
            "rhythm": rhythm,
            "signal": signals[patient_id],
            # how old the newest chunk is: a page counts its own silence from it
            "signal_age_s": None if age_s is None else round(age_s, 1),
            "alarm": alarms[patient_id],
            # the device's charge (%) while its signal comes, else None: the pages hide it
            "battery_pct": charges[patient_id],
            "battery_low": battery_low(charges[patient_id]),
            "last_sample": last_sample,
            "time": now.isoformat(),
        }
    return messages


def device_recordings(patient_id: int):
    """The patient's device recordings, the one opened last first, without the analyzer's
    saved state (``stream_state``, about 120 kB a live recording, which no page or live
    message reads)."""
    return (
        Recording.objects.filter(patient_id=patient_id, source=Recording.Source.DEVICE)
        .defer("stream_state")
        .order_by("-id")
    )


def live_recording(patient_id: int) -> Recording | None:
    """The patient's live device recording (the one opened last, should there be several), or
    None. Opened last, not started last: a recording's start is dated back to when its
    sample 0 was taken, so a device switched on earlier can open its recording later."""
    return device_recordings(patient_id).filter(status=Recording.Status.LIVE).first()


def current_recording(patient_id: int) -> Recording | None:
    """The patient's live device recording, else the newest device recording (one query)."""
    return current_recordings([patient_id])[patient_id]


def current_recordings(patient_ids) -> dict[int, Recording | None]:
    """:func:`current_recording` of many patients in one query, by patient id (None: no device
    recording), ``stream_state`` deferred as in :func:`device_recordings`."""
    patient_ids = list(patient_ids)  # read twice
    # per patient, its device recordings live first, then the one opened last (as
    # live_recording picks): the first is the current one
    live_first = Case(When(status=Recording.Status.LIVE, then=Value(0)), default=Value(1))
    first = (
        Recording.objects.filter(patient_id=OuterRef("pk"), source=Recording.Source.DEVICE)
        .order_by(live_first, "-id")
        .values("pk")[:1]
    )
    chosen = Patient.objects.filter(pk__in=patient_ids).annotate(current=Subquery(first))
    recordings = Recording.objects.filter(pk__in=chosen.values("current")).defer("stream_state")
    by_patient = dict.fromkeys(patient_ids)
    by_patient.update((recording.patient_id, recording) for recording in recordings)
    return by_patient


# --- Publishing --------------------------------------------------------------------------


def publish_samples(
    recording: Recording,
    first_sample: int,
    adc: np.ndarray,
    lead_off: bool = False,
    also: tuple = (),
) -> None:
    """After a chunk committed: its analysed lead (mV) to the patient's group, with the
    chunk's ``lead_off``; ``also``: (group, message) pairs sent in the same hop (the
    recording's own group)."""
    if _skipping():
        return
    try:
        message = samples_message(recording, first_sample, adc, lead_off)
    except Exception:
        logger.exception("could not build the live samples of recording %s", recording.pk)
        return
    _send(recording.patient_id, "live.samples", message, also)


def publish_analysis(recording: Recording, beats, episodes, also: tuple = ()) -> None:
    """After an analysis round committed: its new beats, then the patient's status; ``also``
    as for ``publish_samples`` (the round's message to the recording's group).

    ``episodes`` (those the round recomputed) are not sent as such: the status names the
    ongoing one, read from the database with the heart rate and the open alarms.
    """
    if _skipping():
        return
    group = patient_group(recording.patient_id)
    sends = list(also)
    try:
        if beats:
            sends.append(
                (group, _event(recording.patient_id, "live.beats", beats_message(recording, beats)))
            )
        status = status_message(recording, recording.patient_id)
    except Exception:
        logger.exception("could not build the live analysis of recording %s", recording.pk)
        return
    sends.append((group, _event(recording.patient_id, "live.status", status)))
    _send_all(sends, f"the analysis of recording {recording.pk}")


def publish_alarm(alarm) -> None:
    """After an alarm was raised, acknowledged or resolved: the alarm to its patient's group,
    with the patient's ``top_alarm`` after the change (what a tile or banner shows now: an
    acknowledgment or a resolution may change it without any new analysis)."""
    publish_alarms([alarm])


def publish_alarms(alarms) -> None:
    """``publish_alarm`` for the alarms one change made (an analysis round's raises and
    resolutions), in one send: every message carries the same ``top_alarm``, the patient's
    after all of them, so it is read once per patient rather than once per alarm."""
    if _skipping() or not alarms:
        return
    try:
        # the payloads' review links read the alarms' recordings: those not read with their
        # alarm (one resolved or updated, read without it), in one query, without the
        # analyzer state
        recordings = Prefetch("recording", queryset=Recording.objects.defer("stream_state"))
        prefetch_related_objects(alarms, recordings)
    except Exception:
        logger.exception("could not read the recordings of %s alarm(s)", len(alarms))
    tops, sends = {}, []
    for alarm in alarms:
        try:
            if alarm.patient_id not in tops:
                tops[alarm.patient_id] = top_alarm(alarm.patient_id)
            message = {
                "type": "alarm",
                "alarm": alarm_payload(alarm),
                "top_alarm": tops[alarm.patient_id],
            }
        except Exception:
            logger.exception("could not build the live message of alarm %s", alarm.pk)
            continue
        event = _event(alarm.patient_id, "live.alarm", message)
        sends.append((patient_group(alarm.patient_id), event))
    if sends:
        _send_all(sends, f"{len(sends)} live.alarm message(s)")


def _skipping() -> bool:
    from monitoring import streaming

    now = time.monotonic()
    return now < _layer_down_until or now < streaming._broker_down_until


def _event(patient_id: int, handler: str, message: dict) -> dict:
    return {"type": handler, "patient": patient_id, "message": message}


def _send(patient_id: int, handler: str, message: dict, also: tuple = ()) -> None:
    """group_send that never raises (``also``: pairs sent first, see ``_send_all``)."""
    event = _event(patient_id, handler, message)
    _send_all([*also, (patient_group(patient_id), event)], f"{handler} for patient {patient_id}")


def _send_all(sends: list, what: str) -> None:
    """(group, event) pairs in one hop to an event loop (each hop costs, see
    ``_PublisherLoop``); never raises, and a failure pauses publishing for a few seconds."""
    global _layer_down_until
    from channels.layers import InMemoryChannelLayer, get_channel_layer

    layer = get_channel_layer()

    async def send_all() -> None:
        # the limit inside the coroutine holds on both paths below
        async with asyncio.timeout(PUBLISH_TIMEOUT_S):
            for group, event in sends:
                await layer.group_send(group, event)

    try:
        if isinstance(layer, InMemoryChannelLayer) or _serving_event_loop() is not None:
            # inside daphne async_to_sync hops to its running loop, which is cheaper than a
            # hop to the kept one (measured: 1.3 ms of daphne CPU per chunk); the in-memory
            # layer's queues belong to that loop anyway
            async_to_sync(send_all)()
        else:
            _publisher.run(send_all, PUBLISH_TIMEOUT_S + 1.0)
    except Exception:
        logger.exception("could not publish %s", what)
        _layer_down_until = time.monotonic() + LAYER_RETRY_AFTER_S


def _serving_event_loop() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose ``sync_to_async`` runs this thread's code (daphne's), or
    None (a Celery worker, a command, a test). Read from asgiref's thread-local, as its
    ``async_to_sync`` does; should asgiref rename it, sends take the kept loop, which works
    everywhere, only at a little more CPU in daphne."""
    from asgiref.sync import SyncToAsync

    if getattr(SyncToAsync.threadlocal, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    return loop if loop is not None and loop.is_running() else None


class _PublisherLoop:
    """One event loop per process, in a thread of its own, that sends to a networked channel
    layer (Redis) for synchronous code.

    Why: where no event loop runs (a Celery worker, a command), ``async_to_sync`` makes a new
    loop for every call, and channels_redis a new connection pool for every loop, so each
    send connected to Redis anew: 3.8 ms of CPU per call, against 0.3 ms on a loop that is
    kept (2026-12-06, 200 calls of two group sends each). With the other cuts of that day the
    benchmark's workers went from 43.7 to 39.4 ms of CPU per device-second (medians of four
    runs each, bench/device_ingest.py at 15 devices; docs/simulator.md).
    A forked child (Celery's prefork pool) starts its own loop: a thread does not survive
    ``fork``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid: int | None = None
        # loops not closed here and kept referenced, so that no garbage collection closes
        # them either (it would do so from whatever code runs then, maybe inside another
        # running loop, where channels_redis's close cannot run): a forked child's inherited
        # loop (its Redis connections are the parent's sockets), one that would not stop
        self._kept: list[asyncio.AbstractEventLoop] = []

    def reset_lock_in_child(self) -> None:
        """After fork: a fork while another thread held the lock would leave the child's copy
        held for ever (only the forking thread survives in the child)."""
        self._lock = threading.Lock()

    def run(self, coroutine_function, timeout_s: float):
        # Submitted under the lock that close() takes the loop away under: a send lands on the
        # loop before close() starts draining it (and is let finish), or on a new loop after.
        # Looked up under the lock but submitted after it, a send could reach a loop that
        # close() had just stopped (never run: the full timeout, then publishing paused) or
        # closed ("Event loop is closed").
        with self._lock:
            loop, dead = self._running_loop_locked()
            future = asyncio.run_coroutine_threadsafe(coroutine_function(), loop)
        if dead is not None:  # outside the lock: closing talks to Redis
            self._close_stopped(dead)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    def _running_loop_locked(self):
        """This process's running loop (started if need be), and a dead one to close, if
        any; the caller holds ``_lock``."""
        dead = None
        alive = self._thread is not None and self._thread.is_alive()
        if not alive or self._pid != os.getpid():
            if self.loop is not None and self._pid == os.getpid():
                dead = self.loop  # its thread died in this process
            elif self.loop is not None:
                self._kept.append(self.loop)  # a parent's, inherited by fork
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="live-publisher", daemon=True)
            thread.start()
            self.loop, self._thread, self._pid = loop, thread, os.getpid()
        return self.loop, dead

    def _close_stopped(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close a loop that no longer runs: that is when channels_redis closes the loop's
        connections. A failure is logged, never raised into a publish."""
        if loop.is_running():
            self._kept.append(loop)
            logger.warning("the live publisher's old event loop did not stop; kept, not closed")
            return
        try:
            loop.close()
        except Exception:
            logger.exception("could not close the live publisher's old event loop")

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop this process's loop and its thread, and close the loop: an orderly end, for
        when nothing else in the process publishes any more (tests, a shutdown). Sends already
        submitted finish first (within ``timeout_s``); a send that comes during or after it
        starts a new loop. Call it from code that runs no event loop, as every user of this
        class is."""
        with self._lock:
            loop, thread = self.loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                return
            self.loop, self._thread, self._pid = None, None, None
        if thread.is_alive():

            async def drain() -> None:
                # Sends already on the loop finish first (each is bounded by its own
                # PUBLISH_TIMEOUT_S): a plain loop.stop() left them suspended for good, and
                # their callers waited out the full timeout and paused publishing.
                in_flight = asyncio.all_tasks() - {asyncio.current_task()}
                if in_flight:
                    await asyncio.wait(in_flight, timeout=timeout_s)
                asyncio.get_running_loop().stop()

            asyncio.run_coroutine_threadsafe(drain(), loop)
            thread.join(timeout_s + 1.0)
        self._close_stopped(loop)


_publisher = _PublisherLoop()
os.register_at_fork(after_in_child=lambda: _publisher.reset_lock_in_child())
