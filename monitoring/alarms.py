"""Alarm rules and the alarm lifecycle (issue 6; docs/alarms.md).

A rule looks at the recent past of a live recording (or at its device) and says whether its
condition holds now (True), is gone (False) or cannot be told from what is stored (None,
which changes nothing). :func:`apply_conditions` turns that into the lifecycle:

    raised -> notified (a notification went out) -> acknowledged (who, when) -> resolved

- One open alarm per patient and condition: the database refuses a second open row
  (``alarm_one_open_per_patient_kind``), so a condition that lasts is one alarm however often
  it is evaluated, and two processes evaluating at once raise it once.
- A condition that is gone resolves its alarm, acknowledged or not; if it returns it is raised
  again as a new row.
- Rules hold their verdict a little (the heart rate must stay past its limit for
  ``HR_SUSTAIN_S`` and stay back for as long; an episode counts for ``EVENT_HOLD_S`` of the
  signal the rules know after it ended), so a rate that hovers at a limit or a run of short
  VT salvos is one alarm, not a storm. A new stretch (a restarted device's new recording,
  the analysis after a gap) has no episodes yet: that is "cannot tell" until it has been
  analysed for the hold and a little more (``EPISODE_STORE_DELAY_S``), so an episode alarm
  is not resolved and raised again.

:func:`evaluate_alarms` reads only the last minute or so of one recording, and at a round's
end it is idempotent: it runs after every streaming-analysis round (:func:`on_analysis_round`),
and judges a long round (a backlog) at every ``ROUND_REPLAY_STEP_S`` (1 s) of it too, as the
live rounds would have judged that signal (from one read of the rows the whole round needs,
:class:`RoundData`), so that a condition that held for barely its
sustain time (a rate over the limit for 11 s) raises its alarm however the signal arrived; and
a stretch that the round finished (a final gap, a close) every ``FINISHED_TAIL_STEP_S`` of its
last seconds, where its last beats became final, and at its end. Device offline needs a clock
rather than new data, so :func:`periodic_check` (celery beat, every ``ALARM_CHECK_S``) checks
the devices, repairs missing notifications, escalates and retries.

Failures are contained: a rule that raises leaves its alarms as they are (the others run), a
condition that cannot be applied leaves the others applied, and a patient whose device check
fails leaves the others checked; each is logged.

Physiological rules use signal time (sample indices of stored beats, episodes and window
verdicts), so a backlog analysed late raises the same alarms (judged in steps:
:func:`replay_ends`); technical rules and all alarm timestamps use the wall clock.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from inference.rhythm import TIME_SLACK_S, RhythmConfig
from monitoring import live
from monitoring.models import (
    Alarm,
    AlarmKind,
    AlarmPriority,
    AlarmState,
    Device,
    Patient,
    Recording,
)

logger = logging.getLogger(__name__)

# Heart rate: 60 / mean of the last HR_RR_INTERVALS RR intervals (one premature beat is not
# the patient's rate), past the limit at every beat of the last HR_SUSTAIN_S seconds to
# raise, and HR_DEADBAND_BPM inside it at every beat of as long to resolve.
HR_RR_INTERVALS = 8
HR_SUSTAIN_S = 10.0
# A rate that drifts across a limit for tens of seconds at a time (a sinus bradycardia at
# 48-53 bpm under a limit of 50) beats the time hold alone: replaying the reference beats of
# MIT-BIH 123 with the default limits, evaluated every second, raised 24 low-rate alarms in
# 30 min; resolving only 5 bpm inside the limit, 4 (all 48 records: 57 alarms, 29 with it).
# An open alarm stays open while the rate sits between the limit and the deadband.
HR_DEADBAND_BPM = 5
# Beats are stored about 6.5 s after their R peak (docs/architecture.md): the beats before
# the analysed end minus this lag are final.
BEAT_FINAL_LAG_S = 7.0
PVC_WINDOW_S = 60.0
# Frequent PVCs resolve only when the count has stayed at or under the limit at every beat of
# this long, so that a bigeminy that comes and goes is one alarm, not a storm. Measured on the
# reference labels of MIT-BIH 119 (30 min, evaluated every 5 s; about 15 V beats a minute in
# bouts): 9 alarms without a hold, 5 with 60 s, 1 with 120 s (tests/test_alarms.py).
PVC_RESOLVE_HOLD_S = 120.0
# How far back the heart-rate and poor-signal rules read beats, in seconds of signal before
# the analysed end: poor signal's hold reaches back BEAT_FINAL_LAG_S + QUALITY_S +
# QUALITY_RESOLVE_HOLD_S (47 s), heart rate HR_SUSTAIN_S plus HR_RR_INTERVALS intervals (and
# the pauses among them, which the means leave out: an escape rhythm at RR 2.5-3.5 s, every
# other interval a pause under a 3-s limit, needs about 60 s). Every
# analysis round (about one per second of signal per patient) loads these rows, so the PVC
# rule, which needs its window before its whole hold (3 min), reads its own V beats instead.
BEAT_LOOKBACK_S = 80.0
# An episode (pause, VT, VF, AF) keeps its alarm open this long after it ended: this long of
# signal that the rules know without one (:func:`episodes_known_through`), so that a VT salvo
# up to EVENT_HOLD_S after the last one is the same alarm.
EVENT_HOLD_S = 60.0
# The rules know the episodes only up to where the streaming analysis computed them, which
# differs by kind: beat positions (pauses, and VF, which clips them) are known up to
# StreamingAnalyzer.beat_positions_final_through, about 0.4 s and at most about 4.5 s behind
# the analysed end (this lag); beat classes and rates (VT, AF) up to the final beats,
# BEAT_FINAL_LAG_S behind; and VT, AF and VF are recomputed only when the analysed end
# crosses a multiple of streaming.EPISODE_EVERY_S (5 s), pauses at every round while no beat
# has come for the pause limit. The hold was counted back from the analysed end: a VT known
# only 7-12 s later held its alarm 48-53 s of known signal, and two VT salvos 56 s apart
# (MIT-BIH 221) were two critical alarms, resolved and raised again 3.4 s apart.
POSITION_FINAL_LAG_S = 4.5
# A new stretch (a restarted device's new recording, or the analysis after a gap) has no
# episodes at first: read as "gone", an open VT or AF alarm resolved at its first round and
# an AF still going on was raised again, and sent again, once the new stretch had af_min_s
# of it. So an episode kind is gone only once the current stretch has analysed enough signal
# to have shown it: the hold itself ("no episode in the last EVENT_HOLD_S" needs that much
# signal to look at) or the kind's minimum duration if longer (AF: af_min_s), plus this
# delay before an episode that runs from the stretch's start is stored: beats are final
# BEAT_FINAL_LAG_S (7 s) after their R peak, episodes are recomputed every 5 s of signal
# (streaming.EPISODE_EVERY_S) and the first beat comes up to a couple of seconds after the
# start. Before that the verdict is "cannot tell": an open alarm stays open. (The hold counts
# from what the rules know of each kind, up to 12 s behind the analysed end: after 75 s they
# know at least 63 s of the stretch.)
EPISODE_STORE_DELAY_S = 15.0
# The rules judge the end of what was analysed. One analysis round reads up to
# STREAM_MAX_ROUND_S (120 s) of signal at once when there is a backlog (a device resending what
# it buffered while its network was down, busy workers): judged only at its end, a pause or a
# VT run in its first minute had ended more than EVENT_HOLD_S before and raised nothing, and a
# tachycardia of a minute there was never the last HR_SUSTAIN_S. So a round longer than this
# is also judged every this many seconds of its signal, as the live rounds (a device's 1-s
# chunks) would have judged it; at most ROUND_REPLAY_MAX_S of it. Every second, not every 5 s:
# a condition that holds for barely its sustain time fell between two 5-s steps, and a
# backlog raised less than the same signal live (a rate over the limit for about 11 s, a
# beatless noisy 12 s, 6 abnormal windows, a PVC count over the limit for under 2 s;
# tests/test_alarm_backlog_steps.py). The rows the round's moments judge are read once for
# them all (RoundData), and only the patient's open alarms at every moment (other processes
# change them during the round): each moment querying its own rows cost about 5 queries, 152
# for a 30-s backlog, 602 for 120 s, 3,002 for 600 s; now 37, 127 and 607 (a live round's 7
# plus one a moment), 120 s in 80-270 ms instead of 330-410 ms on SQLite, 94-106 ms instead of
# 580-790 ms on PostgreSQL (bench/alarm_backlog.py on a loaded 2-core machine, docs/alarms.md).
ROUND_REPLAY_STEP_S = 1.0
ROUND_REPLAY_MAX_S = 600.0
# A stretch finished at a final gap or a close makes its last BEAT_FINAL_LAG_S of beats final
# at once. Judged only at its end, a rate that was fast for 10 s up to a few seconds before the
# gap and normal after it was never "fast at every beat of the last 10 s" (live rounds saw the
# run only up to the lag, the end saw its normal last seconds): a 14-s run at 140 bpm ending 3 s
# before a gap raised nothing, as did a 13-s one ending 6 s before it, both raised without the
# gap (tests/test_alarm_new_stretch.py). So those last seconds are judged every this many
# seconds, as the live rounds (about one a second) would have judged them.
FINISHED_TAIL_STEP_S = 1.0
# Sustained arrhythmia: this many consecutive 2-s windows judged abnormal by the window model
# raise it, as many consecutive normal ones resolve it. Only for patients whose
# ``sustained_arrhythmia_alarm`` is on (off by default: the model's DS2 specificity is 0.53).
ARRHYTHMIA_WINDOWS = 5
ARRHYTHMIA_LOOKBACK = 30
WINDOW_MODEL_PREFIX = "window-cnn"
# Poor signal: no beat for QUALITY_S seconds although the signal is not flat (robust
# peak-to-peak of at least QUALITY_MIN_PP_MV): something QRS-sized is there that the detector
# cannot follow (movement, noise). A flat signal without beats is a pause, not noise.
QUALITY_S = 10.0
QUALITY_MIN_PP_MV = 0.5
QUALITY_MIN_STORED = 0.9
# ...and it resolves only when no beatless QUALITY_S stretch is left in the last
# QUALITY_RESOLVE_HOLD_S: one beat the detector finds in the noise now and then is not a
# signal to trust again, and would otherwise resolve and re-raise it every few seconds.
QUALITY_RESOLVE_HOLD_S = 30.0

EPISODE_KINDS = {
    AlarmKind.PAUSE: "PAUSE",
    AlarmKind.VT: "VT",
    AlarmKind.VF: "VF",
    AlarmKind.AF: "AF",
}
PRIORITIES = {
    AlarmKind.HR_HIGH: AlarmPriority.WARNING,
    AlarmKind.HR_LOW: AlarmPriority.WARNING,
    AlarmKind.PAUSE: AlarmPriority.CRITICAL,
    AlarmKind.VT: AlarmPriority.CRITICAL,
    AlarmKind.VF: AlarmPriority.CRITICAL,
    AlarmKind.AF: AlarmPriority.WARNING,
    AlarmKind.PVC: AlarmPriority.WARNING,
    AlarmKind.ARRHYTHMIA: AlarmPriority.WARNING,
    AlarmKind.DEVICE_OFFLINE: AlarmPriority.TECHNICAL,
    AlarmKind.LEADS_OFF: AlarmPriority.TECHNICAL,
    AlarmKind.SIGNAL_QUALITY: AlarmPriority.TECHNICAL,
    AlarmKind.BATTERY_LOW: AlarmPriority.TECHNICAL,
}
TECHNICAL_KINDS = (AlarmKind.DEVICE_OFFLINE, AlarmKind.LEADS_OFF, AlarmKind.BATTERY_LOW)
# The kinds whose open alarm follows its condition: while it holds, the message, value and
# limit of the newest round's verdict replace those it was raised with, and live viewers are
# sent the alarm again (nothing is notified again). Frequent PVCs stay open for hours, their
# count changing: the text of the first minute ("PVC 12 in the first 13 s > 10/min") was still
# shown an hour later. The rule works the count out at every round anyway, so keeping it
# current costs an UPDATE when the text changed (a V beat entered or left the window). The
# other kinds keep what raised them: the rate that crossed the limit, the episode that began.
UPDATED_WHILE_OPEN = (AlarmKind.PVC,)


@dataclass
class Condition:
    """A rule's verdict: ``active`` True (holds), False (gone) or None (cannot tell)."""

    kind: str
    active: bool | None
    message: str = ""
    value: float | None = None
    limit: float | None = None
    details: dict = field(default_factory=dict)


@dataclass
class AlarmChange:
    alarm: Alarm
    change: str  # "raised" or "resolved"


# --- Entry points ------------------------------------------------------------------------


def evaluate_alarms(
    recording_id: int,
    now: datetime | None = None,
    since_sample: int | None = None,
    finished_stretch: tuple[int, int] | None = None,
) -> list[AlarmChange]:
    """Evaluate every rule on the recent past of a device recording; raise and resolve.

    ``since_sample``: where the analysis round that just ended began (its cursor before). A
    round longer than ``ROUND_REPLAY_STEP_S`` is judged by the physiological rules at every
    such step of it too, in order, before its end (:func:`replay_ends`).

    ``finished_stretch``: (first sample, analysed end) of the stretch the round finished at a
    final gap or at the recording's close. The round's end is then in the new stretch after
    it, which shows nothing of the old one's last seconds, made final only now (its beats of
    the last ``BEAT_FINAL_LAG_S``): so the old stretch is judged first, at the round's steps
    inside it and at its end, with every beat it has.

    Idempotent at the round's end (without ``since_sample``): with nothing new stored it
    changes nothing; a round is judged in steps once, by its own call. Nothing is raised for
    a discharged patient. Uploads raise no alarms. Only the patient's newest device recording
    is the patient's present: the late analysis of an older one (a device that restarted opens
    a new recording, and the old one's last rounds run after that, its last seconds final only
    at its close) raises what its signal shows, a VT in its last seconds, but resolves nothing
    and runs no technical rule: a normal rate there says nothing of the rate now, and resolved
    with it, an alarm the new recording holds would be raised again. Nor does it raise an
    event of its own again once the new recording resolved it (:class:`ReplacedRecording`).
    """
    now = now or timezone.now()
    recording = (
        Recording.objects.select_related("patient", "device")
        .defer("stream_state")  # 120 kB the rules never read, once per analysis round
        .filter(pk=recording_id)
        .first()
    )
    if recording is None or recording.source != Recording.Source.DEVICE:
        return []
    if not recording.patient.is_active:
        # discharged: no station shows the patient, so nobody could see or acknowledge a new
        # alarm (the last rounds of the recording that discharge closed may still run)
        return []
    replaced = None
    if _newest_device_recording_id(recording.patient_id) != recording.pk:
        replaced = ReplacedRecording(recording)  # raise only, each of its events once: above
    # A backlog is judged at up to hundreds of moments: the rows they judge are read once for
    # all of them (RoundData). Not the patient's open alarms: apply_conditions reads them
    # afresh at every moment, as other processes raise, resolve and acknowledge them during
    # the round (the newer recording's rounds after a device restart, a clinician); kept from
    # the round's start, one resolved meanwhile still looked open, and a later moment whose
    # condition held raised nothing (tests/test_alarm_backlog_prefetch.py).
    moments = round_moments(recording, since_sample, finished_stretch)
    data = RoundData(recording, moments)

    def apply(conditions: list[Condition], update_open: bool = False) -> list[AlarmChange]:
        if replaced is not None:
            conditions = replaced.kept(conditions)
        applied = apply_conditions(
            recording.patient, recording, conditions, now, update_open=update_open
        )
        if replaced is not None:
            replaced.note_raised(applied)
        return applied

    changes = []
    for at in moments[:-1]:
        changes += apply(physiological_conditions(data, at))
    conditions = physiological_conditions(data, moments[-1])
    # only the present updates an open alarm's text: the round's end (not the moments of a
    # backlog before it, which the end overwrites), and not a replaced recording's late rounds
    update_open = replaced is None
    if replaced is None:
        technical = guarded(TECHNICAL_KINDS, technical_conditions, recording, now)
        if watched(recording):
            conditions += technical
        else:
            # the patient's present device is not this recording's, or has not sent since it
            # was assigned: what it raises belongs to no recording (technical_conditions)
            changes += apply_conditions(recording.patient, None, technical, now)
    return changes + apply(conditions, update_open)


@dataclass(frozen=True)
class Moment:
    """A moment at which the physiological rules judge a stretch of a recording.

    ``analysed_end``: where the analysis had got to (a sample); ``final_end``: the beats
    before it were final then (``BEAT_FINAL_LAG_S`` before ``analysed_end``, or
    ``analysed_end`` itself in a stretch finished by then). ``replayed``: a moment inside a
    long round, or in a finished stretch's last seconds, judged on what was stored then (the
    beats, episodes and window verdicts from before ``final_end``); a round's end is judged on
    every row stored."""

    stretch_start: int
    analysed_end: int
    final_end: int
    replayed: bool


def round_moments(
    recording: Recording,
    since_sample: int | None = None,
    finished_stretch: tuple[int, int] | None = None,
) -> list[Moment]:
    """The moments at which :func:`evaluate_alarms` judges a round, in order, its end last:
    the stretch it finished (``finished_stretch``) at the round's steps inside it, then over
    its last seconds, whose beats only this round made final (as live rounds would have judged
    them), and at its end with every beat; then the current stretch at the round's steps
    (:func:`replay_ends`); then the round's end. A live round: its end only."""
    lag = round(BEAT_FINAL_LAG_S * recording.sampling_rate_hz)
    moments = []
    if finished_stretch is not None:
        start, end = finished_stretch
        for analysed_end in replay_ends(recording, since_sample, start, end):
            moments.append(Moment(start, analysed_end, analysed_end - lag, replayed=True))
        for analysed_end in finished_tail_ends(recording, start, end):  # all beats final
            moments.append(Moment(start, analysed_end, analysed_end, replayed=True))
    start = recording.stream_start_sample
    for analysed_end in replay_ends(recording, since_sample):
        moments.append(Moment(start, analysed_end, analysed_end - lag, replayed=True))
    cursor = recording.analysis_cursor
    moments.append(Moment(start, cursor, cursor - lag, replayed=False))
    return moments


class RoundData:
    """What the physiological rules read to judge a recording at a round's moments, read from
    the database once for them all: judged at every second of a 120-s backlog, each moment
    querying its own rows took about 5 queries, 600 for the round. Each kind of row is read
    when a rule first asks for it (the window verdicts only for a patient whose rule is on,
    the signal only for beatless seconds, and then per stretch), over what every moment
    needs, its look-back included; the ``*_at`` methods then give each moment exactly the rows
    that a query for it alone returned (tests/test_alarm_backlog_prefetch.py). Only the rows
    the analysis of this recording writes: the patient's open alarms, which other processes
    change during a round, are read at every moment (:func:`apply_conditions`)."""

    def __init__(self, recording: Recording, moments: list[Moment]):
        self.recording = recording
        self.moments = moments
        self.fs_hz = recording.sampling_rate_hz
        self._signals: dict[int, tuple[int, np.ndarray]] = {}  # by stretch start

    def first_beat(self, at: Moment) -> int:
        """The first sample whose beats the heart-rate and poor-signal rules read at ``at``."""
        return max(at.stretch_start, at.analysed_end - round(BEAT_LOOKBACK_S * self.fs_hz))

    @cached_property
    def beat_samples(self) -> np.ndarray:
        first = min(self.first_beat(at) for at in self.moments)
        beats = self.recording.beats.filter(provisional=False, sample__gte=first)
        # final beats only: a provisional label may still change (inference/streaming.py)
        return np.array(
            list(beats.order_by("sample").values_list("sample", flat=True)), dtype=np.int64
        )

    def beats_at(self, at: Moment) -> np.ndarray:
        samples = self.beat_samples
        keep = samples >= self.first_beat(at)
        if at.replayed:
            keep &= samples < at.final_end
        return samples[keep]

    @cached_property
    def v_samples(self) -> np.ndarray:
        # pvc_condition reads the V beats in (last - hold - window, last], ``last`` a beat of
        # beats_at, so at or after first_beat
        reach = round(PVC_RESOLVE_HOLD_S * self.fs_hz) + round(PVC_WINDOW_S * self.fs_hz)
        first = min(self.first_beat(at) for at in self.moments) - reach
        v_beats = self.recording.beats.filter(
            label="V",
            provisional=False,
            sample__gte=min(at.stretch_start for at in self.moments),
            sample__gt=first,
        )
        return np.array(
            list(v_beats.order_by("sample").values_list("sample", flat=True)), dtype=np.int64
        )

    def v_beats_at(self, at: Moment, after: int, last: int) -> np.ndarray:
        """The final V beats of ``at``'s stretch in (``after``, ``last``]."""
        v = self.v_samples
        return v[(v >= at.stretch_start) & (v > after) & (v <= last)]

    @cached_property
    def episodes(self) -> list:
        # the same float bounds as episodes_at's, the earliest of every moment and kind
        since_s = min(
            hold_since_s(kind, at, self.fs_hz)
            for at in self.moments
            for kind in EPISODE_KINDS.values()
        )
        rows = self.recording.episodes.filter(
            kind__in=list(EPISODE_KINDS.values()), end_s__gte=since_s
        )
        return list(rows.order_by("end_s", "pk"))

    def episodes_at(self, at: Moment) -> list:
        """The episodes that go on or ended less than ``EVENT_HOLD_S`` before what the rules
        know of their kind at ``at`` (:func:`hold_since_s`), by their end."""
        before_s = at.final_end / self.fs_hz
        return [
            episode
            for episode in self.episodes
            if episode.end_s >= hold_since_s(episode.kind, at, self.fs_hz)
            and (not at.replayed or episode.start_s < before_s)
        ]

    @cached_property
    def windows(self) -> list[tuple[int, int, str]]:
        """(window_start, window_length, label) of the window model's verdicts, newest first:
        every one from the earliest replayed moment's ``final_end`` on, and the
        ``ARRHYTHMIA_LOOKBACK`` before it, the most that any moment reads."""
        rows = (
            self.recording.predictions.filter(
                model_name__startswith=WINDOW_MODEL_PREFIX,
                window_start__gte=min(at.stretch_start for at in self.moments),
            )
            .order_by("-window_start", "-pk")
            .values_list("window_start", "window_length", "label")
        )
        replayed_ends = [at.final_end for at in self.moments if at.replayed]
        if not replayed_ends:  # a live round: its end only
            return list(rows[:ARRHYTHMIA_LOOKBACK])
        split = min(replayed_ends)
        return [
            *rows.filter(window_start__gte=split),
            *rows.filter(window_start__lt=split)[:ARRHYTHMIA_LOOKBACK],
        ]

    def windows_at(self, at: Moment) -> list[tuple[int, int, str]]:
        """The last ``ARRHYTHMIA_LOOKBACK`` verdicts of ``at``'s stretch, newest first."""
        rows = [
            row
            for row in self.windows
            if row[0] >= at.stretch_start and (not at.replayed or row[0] < at.final_end)
        ]
        return rows[:ARRHYTHMIA_LOOKBACK]

    def _stretch_signal(self, stretch_start: int) -> tuple[int, np.ndarray]:
        """(first sample, signal in mV) of the stretch that began at ``stretch_start`` over
        the ``QUALITY_S`` before each of its moments' ``final_end``, what
        signal_quality_condition reads there (never before the stretch's start), read once.

        One read per stretch: a round that finished a stretch at a final gap judges moments on
        both sides of the gap, and one read from the earliest moment to the latest decoded the
        whole gap (minutes of NaN, tens of MB at 1000 Hz)."""
        if stretch_start not in self._signals:
            from monitoring.recordings import samples_mv

            ends = [at.final_end for at in self.moments if at.stretch_start == stretch_start]
            quality = round(QUALITY_S * self.fs_hz)
            first = max(stretch_start, min(ends) - quality)
            end = max(first, max(ends))
            self._signals[stretch_start] = (first, samples_mv(self.recording, first, end))
        return self._signals[stretch_start]

    def signal_mv(self, at: Moment, start: int, end: int) -> np.ndarray:
        """The samples ``[start, end)`` in mV (``recordings.samples_mv``), inside ``at``'s
        stretch and the ``QUALITY_S`` before its ``final_end``."""
        first, signal_mv = self._stretch_signal(at.stretch_start)
        if start < first or end > first + len(signal_mv):
            raise ValueError(f"[{start}, {end}) is outside the signal read for {at}")
        return signal_mv[start - first : end - first]


def episodes_known_through(episode_kind: str, at: Moment, fs_hz: float) -> int:
    """A sample up to which the streaming analysis had computed the stored episodes of
    ``episode_kind`` ("PAUSE", "VT", "VF", "AF") at ``at``, at least: the latest
    recomputation, less the kind's lag behind it at most (``BEAT_FINAL_LAG_S``,
    ``POSITION_FINAL_LAG_S``). A stretch finished by then was computed to its end."""
    if at.final_end >= at.analysed_end:
        return at.analysed_end
    if episode_kind == "PAUSE":
        # recomputed at every round once no beat has come for the pause limit
        return at.analysed_end - round(POSITION_FINAL_LAG_S * fs_hz)
    # imported here: monitoring.streaming imports torch, and django.setup() (which imports
    # this module) must not (tests/test_settings.py)
    from monitoring.streaming import EPISODE_EVERY_S

    # recomputed last by the round that crossed the latest multiple of EPISODE_EVERY_S: up to
    # the lag before that multiple, at least (that round ended at or after it)
    step = max(1, round(EPISODE_EVERY_S * fs_hz))
    recomputed_at = at.analysed_end // step * step
    lag_s = BEAT_FINAL_LAG_S if episode_kind in ("VT", "AF") else POSITION_FINAL_LAG_S
    return recomputed_at - round(lag_s * fs_hz)


def hold_since_s(episode_kind: str, at: Moment, fs_hz: float) -> float:
    """An episode of ``episode_kind`` that ended at or after this (seconds of signal) holds
    its alarm at ``at``: ``EVENT_HOLD_S`` before what the rules know of the kind then
    (:func:`episodes_known_through`)."""
    return episodes_known_through(episode_kind, at, fs_hz) / fs_hz - EVENT_HOLD_S


def replay_ends(
    recording: Recording,
    since_sample: int | None,
    stretch_start: int | None = None,
    stretch_end: int | None = None,
) -> list[int]:
    """The ends (samples) inside a round that began at ``since_sample`` at which the rules
    judge it before its end: every ``ROUND_REPLAY_STEP_S`` of it, in the current stretch
    (a round that jumped a gap began a new one), the last ``ROUND_REPLAY_MAX_S`` at most.
    None for a round of a step or less, as live rounds are. ``stretch_start`` and
    ``stretch_end``: another stretch than the current one (one the round finished), and its
    analysed end instead of the cursor."""
    if since_sample is None:
        return []
    fs_hz = recording.sampling_rate_hz
    if stretch_start is None:
        stretch_start = recording.stream_start_sample
    end = recording.analysis_cursor if stretch_end is None else stretch_end
    first = max(since_sample, stretch_start, end - round(ROUND_REPLAY_MAX_S * fs_hz))
    step = round(ROUND_REPLAY_STEP_S * fs_hz)
    return list(range(first + step, end, step))


def finished_tail_ends(recording: Recording, stretch_start: int, stretch_end: int) -> list[int]:
    """The samples up to which a finished stretch is judged with every beat before them: every
    ``FINISHED_TAIL_STEP_S`` of its last ``BEAT_FINAL_LAG_S`` (the beats the finish made final;
    the live rounds saw those before), then its end. None for a stretch with nothing pushed."""
    if stretch_end <= stretch_start:  # an analyzer that had pushed nothing found nothing
        return []
    fs_hz = recording.sampling_rate_hz
    step = round(FINISHED_TAIL_STEP_S * fs_hz)
    first = max(stretch_start, stretch_end - round(BEAT_FINAL_LAG_S * fs_hz))
    return [*range(first + step, stretch_end, step), stretch_end]


class ReplacedRecording:
    """What the late analysis of a replaced recording (not the patient's newest) applies: the
    conditions that hold, each of its events once (:meth:`kept`).

    It resolves nothing (:func:`evaluate_alarms`). But the newer recording resolves what it
    raised, and with workers minutes behind, the old one's next rounds, still showing the same
    event (a VT in its hold, a rate still fast), raised it again, to be resolved again: one
    alarm, and one message, per round while both ran. So once the latest alarm of a kind that
    this recording raised is resolved by another recording, this one raises that kind again
    only after its own signal has shown it gone, as its live analysis would have resolved it
    and raised it again: a verdict "gone" here is recorded on that alarm
    (``details["gone_in_recording"]``). An alarm it resolved itself, before it was replaced,
    was over in its own signal.

    Made once per round: its alarms are read then and kept up to date as the round's moments
    raise alarms (:meth:`note_raised`) and record "gone". Unlike the patient's open alarms
    (read at every moment: :func:`apply_conditions`), nothing another process does meanwhile
    changes what this reads: only this recording's analysis raises its alarms and records
    "gone" on them, and a resolution by the newer recording comes after ``replaced_at``, so
    it is not one this recording made itself."""

    def __init__(self, recording: Recording):
        self.latest: dict[str, Alarm] = {}  # by kind, the one this recording raised last
        for alarm in Alarm.objects.filter(
            patient_id=recording.patient_id, recording=recording
        ).order_by("-raised_at", "-pk"):
            self.latest.setdefault(alarm.kind, alarm)
        self.replaced_at = (
            Recording.objects.filter(
                patient_id=recording.patient_id,
                source=Recording.Source.DEVICE,
                pk__gt=recording.pk,
            )
            .order_by("pk")
            .values_list("created_at", flat=True)
            .first()
        )

    def seen_gone(self, alarm: Alarm) -> bool:
        resolved_itself = (
            alarm.resolved_at is not None
            and self.replaced_at is not None
            and alarm.resolved_at < self.replaced_at
        )
        return resolved_itself or bool(alarm.details.get("gone_in_recording"))

    def kept(self, conditions: list[Condition]) -> list[Condition]:
        kept = []
        for condition in conditions:
            alarm = self.latest.get(condition.kind)
            if alarm is None or self.seen_gone(alarm):
                if condition.active:
                    kept.append(condition)
            elif condition.active is False:
                # its event is over in this recording's signal: a later one is news
                alarm.details = {**alarm.details, "gone_in_recording": True}
                Alarm.objects.filter(pk=alarm.pk).update(details=alarm.details)
        return kept

    def note_raised(self, changes: list[AlarmChange]) -> None:
        for change in changes:
            alarm, latest = change.alarm, self.latest.get(change.alarm.kind)
            if change.change == "raised" and (
                latest is None or (alarm.raised_at, alarm.pk) > (latest.raised_at, latest.pk)
            ):
                self.latest[alarm.kind] = alarm


def guarded(kinds, rule, *args) -> list[Condition]:
    """A rule's conditions, or "cannot tell" (which changes nothing) for each of its ``kinds``
    when it fails: one broken rule must not silence the others. Logged."""
    try:
        result = rule(*args)
    except Exception:
        names = ", ".join(str(kind) for kind in kinds)
        logger.exception("the alarm rule of %s failed; its alarms stay as they are", names)
        return [Condition(kind, None) for kind in kinds]
    return result if isinstance(result, list) else [result]


def on_analysis_round(
    recording_id: int,
    since_sample: int | None = None,
    finished_stretch: tuple[int, int] | None = None,
) -> list[AlarmChange]:
    """After a streaming-analysis round: evaluate (``since_sample``, ``finished_stretch``:
    :func:`evaluate_alarms`); a raised alarm's notifications are created with it
    (:func:`_raise`) and sent after the commit.

    Never raises: an alarm failure is logged and must not stop the analysis (the periodic
    check still runs the technical rules, repairs missing notifications and retries them).
    """
    try:
        return evaluate_alarms(
            recording_id, since_sample=since_sample, finished_stretch=finished_stretch
        )
    except Exception:
        logger.exception("alarm evaluation of recording %s failed", recording_id)
        return []


def periodic_check(now: datetime | None = None) -> dict:
    """What celery beat runs every ``ALARM_CHECK_S``: devices, notifications missing from open
    alarms, escalation, due retries. Each step on its own: one that fails is logged, named
    under ``failed`` (so its heartbeat is not recorded: /health), and the others run."""
    from monitoring.notifications import (
        escalate_unacknowledged,
        repair_unnotified_alarms,
        send_due,
    )

    now = now or timezone.now()
    steps = {
        "devices": lambda: check_devices(now),
        "repaired": repair_unnotified_alarms,
        "escalated": lambda: escalate_unacknowledged(now),
        "queued": lambda: send_due(now),
    }
    results, failed = {}, []
    for name, step in steps.items():
        try:
            results[name] = step()
        except Exception:
            logger.exception("the periodic alarm check's step %r failed", name)
            results[name] = []
            failed.append(name)
    results["failed"] = failed
    changes = results.pop("devices")
    return {
        "raised": [c.alarm.pk for c in changes if c.change == "raised"],
        "resolved": [c.alarm.pk for c in changes if c.change == "resolved"],
        **results,
    }


def check_devices(now: datetime | None = None) -> list[AlarmChange]:
    """Technical rules for every patient with a live device recording, an active device
    assigned to them (so that one that sends nothing raises device offline:
    :func:`assigned_silence_condition`) or an open technical alarm (so that it resolves when
    the device is unassigned or the patient discharged)."""
    now = now or timezone.now()
    live = Recording.objects.filter(
        source=Recording.Source.DEVICE, status=Recording.Status.LIVE
    ).values_list("patient_id", flat=True)
    assigned = Device.objects.filter(
        is_active=True, patient__isnull=False, patient__is_active=True
    ).values_list("patient_id", flat=True)
    alarmed = (
        Alarm.objects.open().filter(kind__in=TECHNICAL_KINDS).values_list("patient_id", flat=True)
    )
    changes = []
    for patient_id in sorted(set(live) | set(assigned) | set(alarmed)):
        try:
            changes += _check_device(patient_id, now)
        except Exception:  # one patient's failure must not leave the others unwatched
            logger.exception("the technical alarm check of patient %s failed", patient_id)
    return changes


def _check_device(patient_id: int, now: datetime) -> list[AlarmChange]:
    """The technical rules for one patient (:func:`check_devices`)."""
    recording = (
        Recording.objects.select_related("patient", "device")
        .defer("stream_state")
        .filter(patient_id=patient_id, source=Recording.Source.DEVICE)
        .order_by("-id")  # opened last (a start is dated back to sample 0: live.live_recording)
        .first()
    )
    if recording is None:  # none yet (or deleted): only the assigned device can be watched
        patient = Patient.objects.get(pk=patient_id)
        conditions = unwatched_conditions(patient, now)
    else:
        patient = recording.patient
        conditions = technical_conditions(recording, now)
        if not watched(recording):
            recording = None  # the alarm of a silent assigned device is no recording's
    return apply_conditions(patient, recording, conditions, now)


def acknowledge(alarm: Alarm, user, now: datetime | None = None) -> Alarm:
    """Record who acknowledged an alarm and when; the first acknowledgment stands.

    An open alarm becomes ``acknowledged`` (it still resolves when its condition is gone); a
    resolved one stays resolved but records the acknowledgment too.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Alarm.objects.select_for_update().get(pk=alarm.pk)
        if locked.acknowledged_at is None:
            locked.acknowledged_by = user
            locked.acknowledged_at = now
            if locked.state in (AlarmState.RAISED, AlarmState.NOTIFIED):
                locked.state = AlarmState.ACKNOWLEDGED
            locked.save(update_fields=["acknowledged_by", "acknowledged_at", "state"])
            transaction.on_commit(lambda: live.publish_alarm(locked))
    return locked


# --- Lifecycle ---------------------------------------------------------------------------


def apply_conditions(
    patient: Patient,
    recording: Recording | None,
    conditions: list[Condition],
    now: datetime,
    update_open: bool = False,
) -> list[AlarmChange]:
    """Raise the alarms whose condition holds and none is open; resolve those that are gone;
    with ``update_open``, bring the text of an open alarm of ``UPDATED_WHILE_OPEN`` whose
    condition holds up to date (:func:`_update_text`: shown, not notified, not a change).

    Each condition on its own: one that fails is logged and the others still raise and
    resolve (a verdict that changes nothing stays as it is until the next evaluation).

    The patient's open alarms are read here, at every call, never kept by a caller between
    calls: another process may have resolved one since (which must not stop a new raise) or
    acknowledged it (which the "resolved" message must carry)."""
    # unordered: one open alarm per kind (the database's constraint), and the model's default
    # order doubled what this read costs at every moment of a backlog (bench/alarm_backlog.py)
    open_now = Alarm.objects.open().filter(patient=patient).order_by()
    open_alarms = {alarm.kind: alarm for alarm in open_now}
    changes, updated = [], []
    for condition in conditions:
        alarm = open_alarms.get(condition.kind)
        try:
            if condition.active and alarm is None:
                raised = _raise(patient, recording, condition, now)
                if raised is not None:  # None: another process raised it a moment ago
                    changes.append(AlarmChange(raised, "raised"))
            elif condition.active is False and alarm is not None:
                if _resolve(alarm, now):
                    changes.append(AlarmChange(alarm, "resolved"))
            elif condition.active and update_open and condition.kind in UPDATED_WHILE_OPEN:
                if _update_text(alarm, condition):
                    updated.append(alarm)
        except Exception:
            logger.exception(
                "could not apply the %s condition of patient %s", condition.kind, patient.pk
            )
    if changes or updated:
        # to live viewers once committed (monitoring/live.py; never raises), in one callback:
        # every message carries the patient's top alarm after all of the round's changes
        alarms = [change.alarm for change in changes] + updated
        transaction.on_commit(lambda: live.publish_alarms(alarms))
    return changes


def resolve_on_discharge(patient: Patient, now: datetime | None = None) -> list[AlarmChange]:
    """Resolve every open alarm of a patient being discharged.

    No station shows a discharged patient, so nobody would see or acknowledge them, the
    escalation would email them still, and, open, they would keep a readmitted patient from
    being alarmed again of the same kind (one open alarm per patient and kind).
    """
    open_kinds = Alarm.objects.open().filter(patient=patient).values_list("kind", flat=True)
    conditions = [Condition(kind, False) for kind in open_kinds]
    changes = apply_conditions(patient, None, conditions, now or timezone.now())
    # nor do they latch: a readmitted patient's station must not show them as unacknowledged
    Alarm.objects.filter(patient=patient, latches=True).update(latches=False)
    return changes


def repeat_of(patient, kind: str, now: datetime, device: str | None = None) -> int | None:
    """The technical alarm of this kind that was sent for the patient within
    ``TECHNICAL_RENOTIFY_S`` before ``now`` (its id), if any: a new one is then a repeat,
    shown but not sent. Counted from the last one sent, not the last repeat, so a condition
    that flaps for hours still sends one message per period.

    Only for the same device (``details.device``): after a swap, the new device's silence is
    another fault (a dead replacement), not the old one flapping, and went unsent for 10
    minutes when it counted as a repeat (a review of 2026-12-07)."""
    if kind not in TECHNICAL_KINDS:
        return None  # a physiological event is news each time
    since = now - timedelta(seconds=settings.TECHNICAL_RENOTIFY_S)
    sent = Alarm.objects.filter(patient=patient, kind=kind, raised_at__gte=since)
    if device is not None:
        sent = sent.filter(details__device=device)
    sent = sent.exclude(details__has_key="repeat_of").order_by("-raised_at", "-pk")
    return sent.values_list("pk", flat=True).first()


def _raise(patient, recording, condition: Condition, now: datetime) -> Alarm | None:
    """Create the alarm and, in the same transaction, its first-call notifications (sent
    after the commit): an alarm is never committed without them. Should scheduling fail all
    the same, the alarm stands (the stations show it) and the periodic check's
    ``repair_unnotified_alarms`` creates them. A technical alarm that repeats one sent
    moments ago (:func:`repeat_of`) gets none: ``details.repeat_of`` says why."""
    from monitoring.notifications import schedule_notifications

    details = dict(condition.details)
    repeated = repeat_of(patient, condition.kind, now, condition.details.get("device"))
    if repeated is not None:
        details["repeat_of"] = repeated
    try:
        with transaction.atomic():
            alarm = Alarm.objects.create(
                patient=patient,
                recording=recording,
                kind=condition.kind,
                priority=PRIORITIES[condition.kind],
                message=condition.message[:200],
                value=condition.value,
                limit=condition.limit,
                raised_at=now,
                details=details,
                latches=PRIORITIES[condition.kind] == AlarmPriority.CRITICAL,
            )
            if repeated is not None:
                return alarm
            try:
                schedule_notifications(alarm)  # all or none, in a savepoint of its own
            except Exception:
                logger.exception("could not schedule the notifications of alarm %s", alarm.pk)
            return alarm
    except IntegrityError:
        # another process raised the same condition a moment ago: one open alarm stands
        return None


def _update_text(alarm: Alarm, condition: Condition) -> bool:
    """An open alarm's message, value and limit as its condition now gives them, when they
    differ (``UPDATED_WHILE_OPEN``). No notification: the alarm was sent when it was raised,
    and a count that moves is not news. Those still to be sent (an escalation) say what the
    alarm says then."""
    message = condition.message[:200]
    if not message or (alarm.message, alarm.value, alarm.limit) == (
        message,
        condition.value,
        condition.limit,
    ):
        return False
    with transaction.atomic():  # a failure here must not spoil a caller's transaction
        updated = (
            Alarm.objects.filter(pk=alarm.pk)
            .exclude(state=AlarmState.RESOLVED)
            .update(message=message, value=condition.value, limit=condition.limit)
        )
    if updated:
        alarm.message, alarm.value, alarm.limit = message, condition.value, condition.limit
    return bool(updated)


def _resolve(alarm: Alarm, now: datetime) -> bool:
    with transaction.atomic():  # a failure here must not spoil a caller's transaction
        resolved = (
            Alarm.objects.filter(pk=alarm.pk)
            .exclude(state=AlarmState.RESOLVED)
            .update(state=AlarmState.RESOLVED, resolved_at=now)
        )
    if resolved:
        alarm.state, alarm.resolved_at = AlarmState.RESOLVED, now
    return bool(resolved)


def _newest_device_recording_id(patient_id: int) -> int | None:
    return (
        Recording.objects.filter(patient_id=patient_id, source=Recording.Source.DEVICE)
        .order_by("-id")  # opened last, as live.live_recording
        .values_list("pk", flat=True)
        .first()
    )


# --- Physiological rules -----------------------------------------------------------------


def physiological_conditions(data: RoundData, at: Moment) -> list[Condition]:
    """The rules on the stored analysis of a stretch of a recording (``data``, read once for
    a round) as they stood at the moment ``at``: at a round's end, or at a moment inside a
    long round or a finished stretch's last seconds (:func:`round_moments`), on what was
    final then."""
    recording, fs_hz = data.recording, data.fs_hz
    patient = recording.patient
    samples = data.beats_at(at)
    episodes = data.episodes_at(at)
    # how much signal the current stretch has analysed: too little to tell an episode is gone
    # (EPISODE_STORE_DELAY_S) right after a device restart or a gap
    stretch_s = (at.analysed_end - at.stretch_start) / fs_hz
    last = int(samples[-1]) if len(samples) else None
    hr_kinds = (AlarmKind.HR_HIGH, AlarmKind.HR_LOW)
    # each rule on its own (``guarded``): one that fails leaves its alarms as they are
    return [
        *guarded(hr_kinds, heart_rate_conditions, samples, episodes, fs_hz, patient),
        *guarded((AlarmKind.PVC,), pvc_condition, recording, data, at, last),
        *guarded(tuple(EPISODE_KINDS), episode_conditions, episodes, fs_hz, patient, stretch_s),
        # off unless switched on for the patient (docs/alarms.md: the window model's DS2
        # specificity is 0.53); off also resolves an alarm raised while it was on
        *(
            guarded((AlarmKind.ARRHYTHMIA,), arrhythmia_condition, recording, data, at)
            if patient.sustained_arrhythmia_alarm
            else [Condition(AlarmKind.ARRHYTHMIA, False)]
        ),
        *guarded(
            (AlarmKind.SIGNAL_QUALITY,),
            signal_quality_condition,
            recording,
            data,
            at,
            samples,
            episodes,
        ),
    ]


def pause_ongoing(episodes: list) -> bool:
    """Whether a PAUSE episode among ``episodes`` goes on (no beat since it began)."""
    return any(episode.kind == "PAUSE" and episode.details.get("ongoing") for episode in episodes)


def pauses_after(samples: np.ndarray, episodes: list, fs_hz: float) -> int:
    """How many PAUSE episodes among ``episodes`` ended after the last final beat (``samples``):
    the beat that ended them is known, but not final yet, so their interval is not among the
    final beats' (about ``BEAT_FINAL_LAG_S`` after the pause)."""
    if len(samples) == 0:
        return 0
    last_s = samples[-1] / fs_hz
    # an episode's times are stored to the millisecond: a pause that ended at the last final
    # beat may read up to half a millisecond after it
    return sum(episode.kind == "PAUSE" and episode.end_s > last_s + 0.001 for episode in episodes)


def running_heart_rate(
    samples: np.ndarray, fs_hz: float, pause_limit_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """(beat times in s, heart rate in bpm) from the mean of the last ``HR_RR_INTERVALS`` RR
    intervals ending at each beat, the pauses (intervals of at least ``pause_limit_s``) left
    out of the means; a beat that ends a pause reads 0 bpm (no beat for that long). Beats
    before the first with ``HR_RR_INTERVALS`` intervals that are no pause have no rate.

    Why the pauses are left out of the means, and not every beat before the latest pause (as
    for a while on 2026-12-07): one pause in a mean of 8 intervals is no rate of the patient's
    (sinus at 75 bpm, 20 s of asystole, sinus read "HR 18 < 50" as the beats came back); but
    waiting for 8 intervals and 10 s after each pause, pauses that recur faster than that
    (35 bpm with a 3.2-s pause every 22 s; an escape rhythm at RR 2.5-3.5 s, pause limit 3 s)
    never raised HR_LOW. So the 8 intervals are the last 8 that are no pause, on both sides of
    one: a pause does not restart the count."""
    if len(samples) < 2:
        return np.empty(0), np.empty(0)
    rr_s = np.diff(samples) / fs_hz
    # the streaming analysis' own test for a PAUSE episode (inference.rhythm._at_least)
    is_pause = rr_s >= pause_limit_s - TIME_SLACK_S
    kept = np.flatnonzero(~is_pause)
    if len(kept) < HR_RR_INTERVALS:
        return np.empty(0), np.empty(0)
    sums_s = np.convolve(rr_s[kept], np.ones(HR_RR_INTERVALS), mode="valid")
    hr_bpm = np.zeros(len(rr_s))  # the rate at samples[1:]: 0 where the beat ends a pause
    hr_bpm[kept[HR_RR_INTERVALS - 1 :]] = 60.0 * HR_RR_INTERVALS / sums_s
    first = kept[HR_RR_INTERVALS - 1]
    return samples[1:][first:] / fs_hz, hr_bpm[first:]


def heart_rate_conditions(
    samples: np.ndarray, episodes: list, fs_hz: float, patient: Patient
) -> list[Condition]:
    """HR high and low: the displayed (whole bpm) rate past the limit at every beat of the
    last ``HR_SUSTAIN_S`` seconds raises; at least ``HR_DEADBAND_BPM`` inside the limit at
    every beat of as long resolves (in between: "cannot tell", an open alarm stays open).

    Pauses (docs/alarms.md, "The heart-rate rule and pauses"): while one goes on the rule
    cannot tell (:func:`pause_ongoing`), the critical pause alarm carrying the event. Otherwise
    the pauses are left out of the 8-interval means (:func:`running_heart_rate`) and each pause
    in the last 10 s reads 0 bpm there, those that ended after the last final beat included
    (:func:`pauses_after`; the beats before a pause are not the rate after it): below the low
    limit and not above the high one. So a pause keeps HR_LOW from being resolved (the normal
    beats before an asystole resolved it 6 s into the asystole until 2026-12-07) and HR_HIGH
    from being raised, and never raises or resolves anything by itself: the last 10 s must
    hold a rate too (else the first beat after an asystole, 0 bpm alone in its 10 s, would
    raise HR_LOW beside the pause alarm for the same asystole)."""
    unknown = [Condition(AlarmKind.HR_HIGH, None), Condition(AlarmKind.HR_LOW, None)]
    if pause_ongoing(episodes):
        return unknown
    times_s, hr_bpm = running_heart_rate(samples, fs_hz, float(patient.pause_limit_s))
    high, low = patient.hr_high_limit_bpm, patient.hr_low_limit_bpm
    if len(times_s) == 0 or times_s[0] > times_s[-1] - HR_SUSTAIN_S:
        return unknown
    recent = np.concatenate(
        [
            np.rint(hr_bpm[times_s >= times_s[-1] - HR_SUSTAIN_S]).astype(int),
            np.zeros(pauses_after(samples, episodes, fs_hz), dtype=int),
        ]
    )
    rates = recent[recent > 0]  # the readings that are no pause
    if len(rates) == 0:
        return unknown
    current = int(rates[-1])
    details = {
        "sample": int(samples[-1]),
        "hr_bpm": current,
        "min_hr_bpm": int(rates.min()),
        "max_hr_bpm": int(rates.max()),
        "pauses": int((recent == 0).sum()),
        "sustain_s": HR_SUSTAIN_S,
    }
    # limits closer than two deadbands apart: the deadbands stop halfway between them, so that
    # a rate that raises one alarm always resolves the other
    deadband_bpm = min(HR_DEADBAND_BPM, (high - low) // 2)
    conditions = []
    # ``recent`` holds the pauses' 0 bpm: below the low limit, never above the high one
    for kind, past, within, symbol, limit in (
        (AlarmKind.HR_HIGH, recent > high, recent <= high - deadband_bpm, ">", high),
        (AlarmKind.HR_LOW, recent < low, recent >= low + deadband_bpm, "<", low),
    ):
        active = True if past.all() else False if within.all() else None
        conditions.append(
            Condition(
                kind,
                active,
                message=f"HR {current} {symbol} {limit}",
                value=float(current),
                limit=float(limit),
                details=details,
            )
        )
    return conditions


def pvc_condition(recording: Recording, data: RoundData, at: Moment, last: int | None) -> Condition:
    """Frequent PVCs: more V beats in the last ``PVC_WINDOW_S`` before the last final beat
    (``last``, a sample; None when the rules found no recent beat) than the limit, counted in
    the stretch that ``at`` judges.

    Raised as soon as the count is over the limit; gone only when the count of V beats in the
    window ending at every moment of the last ``PVC_RESOLVE_HOLD_S`` has been at or under the
    limit, and the stream had begun a whole window before the hold; in between, and while too
    little is stored to tell, the verdict is None (an open alarm stays open).

    Reads only the final V beats of the window before the hold and of the hold, not every
    beat of those three minutes: the count of the window ending at a moment rises only at a V
    beat and can only fall until the next one, so the highest counts of the hold are those at
    its start and at its V beats, and those are all it needs.
    """
    if last is None:
        return Condition(AlarmKind.PVC, None)
    stretch_start = at.stretch_start
    fs_hz = recording.sampling_rate_hz
    patient = recording.patient
    window = round(PVC_WINDOW_S * fs_hz)
    hold_first = last - round(PVC_RESOLVE_HOLD_S * fs_hz)
    # final V beats of the stretch in (hold_first - window, last]: every window ending in the
    # hold; the same beats the other rules read (final only, this stretch)
    v = data.v_beats_at(at, hold_first - window, last)

    def count_ending_at(ends: np.ndarray) -> np.ndarray:
        # V beats in (end - window, end] for each end
        return np.searchsorted(v, ends, side="right") - np.searchsorted(
            v, ends - window, side="right"
        )

    count = int(count_ending_at(np.array([last]))[0])
    limit = patient.pvc_limit_per_min
    # the highest counts of the hold: at its start, and at each V beat in it
    hold_counts = count_ending_at(np.concatenate([[hold_first], v[v >= hold_first]]))
    # every window of the hold lies in this stretch: its counts miss no V beat before it
    whole_history = stretch_start <= hold_first - window
    if count > limit:
        active = True
    elif whole_history and (hold_counts <= limit).all():
        active = False
    else:
        active = None
    recent_v = v[v > last - window]
    counted_s = min(PVC_WINDOW_S, (last - stretch_start) / fs_hz)
    if counted_s < PVC_WINDOW_S:
        # the stretch began less than a window ago: say over how long the count is, as "12/min"
        # after 13 s of signal would understate a rate of about 55 a minute
        message = f"PVC {count} in the first {counted_s:.0f} s > {limit}/min"
    else:
        message = f"PVC {count}/min > {limit}/min"
    return Condition(
        AlarmKind.PVC,
        active,
        message=message,
        value=float(count),
        limit=float(limit),
        details={
            "sample": int(recent_v[-1]) if len(recent_v) else int(last),
            "window_s": PVC_WINDOW_S,
            "resolve_hold_s": PVC_RESOLVE_HOLD_S,
        },
    )


def episode_gone_after_s(kind: str, patient: Patient, rhythm: RhythmConfig) -> float:
    """How much signal the current stretch must have analysed before no episode of ``kind``
    in it means the condition is gone (``EPISODE_STORE_DELAY_S``): the hold, or the shortest
    episode of the kind if longer, plus the delay before such an episode is stored."""
    shortest_s = {
        AlarmKind.PAUSE: float(patient.pause_limit_s),
        AlarmKind.VT: 0.0,  # a few beats
        AlarmKind.VF: rhythm.vf_min_s,
        AlarmKind.AF: rhythm.af_min_s,
    }[kind]
    return max(EVENT_HOLD_S, shortest_s) + EPISODE_STORE_DELAY_S


def episode_conditions(
    episodes: list, fs_hz: float, patient: Patient, stretch_s: float
) -> list[Condition]:
    """Pause, VT, VF/VFL and AF from the analysis' episodes: an episode that is ongoing or
    ended less than ``EVENT_HOLD_S`` ago (in signal time) holds its alarm. ``stretch_s``: the
    signal the current stretch has analysed; with no episode of a kind, the kind is gone once
    that is at least :func:`episode_gone_after_s`, and "cannot tell" before (a device that
    restarted, a gap: the new stretch has no episodes yet)."""
    rhythm = RhythmConfig()
    conditions = []
    for kind, episode_kind in EPISODE_KINDS.items():
        found = [episode for episode in episodes if episode.kind == episode_kind]
        if not found:
            gone = stretch_s >= episode_gone_after_s(kind, patient, rhythm)
            conditions.append(Condition(kind, False if gone else None))
            continue
        episode = found[-1]  # the latest
        info = episode.details or {}
        duration_s = episode.end_s - episode.start_s
        if kind == AlarmKind.PAUSE:
            limit = float(patient.pause_limit_s)
            value = float(info.get("duration_s", duration_s))
            # "at least the limit" (the rule: no beat for pause_limit_s), the limit as set:
            # "Pause 3.0 s > 3.0 s" for a pause of 3.04 s read as false
            message = f"Pause {value:.1f} s (>= {limit:g} s)"
        elif kind == AlarmKind.VT:
            value = float(info.get("mean_hr_bpm", 0.0))
            limit = float(rhythm.vt_min_bpm)
            n_beats = info.get("n_beats", "?")
            message = (
                f"VT {n_beats} beats at {value:.0f} bpm "
                f"(>= {rhythm.vt_min_beats} V beats at >= {limit:.0f} bpm)"
            )
        elif kind == AlarmKind.VF:
            value, limit = round(duration_s, 1), float(rhythm.vf_min_s)
            message = f"VF/VFL for {value:.0f} s (>= {limit:.0f} s)"
        else:
            value, limit = round(duration_s, 1), float(rhythm.af_min_s)
            rate = info.get("mean_hr_bpm")
            at = f" at {rate:.0f} bpm" if isinstance(rate, int | float) else ""
            message = f"AF onset: {value:.0f} s{at} (>= {limit:.0f} s)"
        conditions.append(
            Condition(
                kind,
                True,
                message=message,
                value=value,
                limit=limit,
                details={
                    "sample": int(round(episode.start_s * fs_hz)),
                    "episode": {"start_s": episode.start_s, "end_s": episode.end_s, **info},
                },
            )
        )
    return conditions


def arrhythmia_condition(
    recording: Recording, data: RoundData | None = None, at: Moment | None = None
) -> Condition:
    """Sustained arrhythmia: the last ``ARRHYTHMIA_WINDOWS`` consecutive (contiguous) 2-s
    windows of the window model in the stretch that ``at`` judges (those that begin before
    its ``final_end`` at a replayed moment) all abnormal raise it; all normal resolve it.
    Without ``data`` and ``at``: the recording's stored windows at its analysed end."""
    if data is None or at is None:
        at = round_moments(recording)[-1]
        data = RoundData(recording, [at])
    rows = data.windows_at(at)
    # the contiguous run at the end: a gap in the windows breaks it
    run = rows[:1]
    for row in rows[1:]:
        if row[0] + row[1] != run[-1][0]:
            break
        run.append(row)
    if len(run) < ARRHYTHMIA_WINDOWS:
        return Condition(AlarmKind.ARRHYTHMIA, None)
    abnormal = 0
    for _, _, label in run:
        if label == "normal":
            break
        abnormal += 1
    if abnormal >= ARRHYTHMIA_WINDOWS:
        first_start = run[abnormal - 1][0]
        return Condition(
            AlarmKind.ARRHYTHMIA,
            True,
            message=f"Arrhythmia in {abnormal} consecutive 2-s windows (>= {ARRHYTHMIA_WINDOWS})",
            value=float(abnormal),
            limit=float(ARRHYTHMIA_WINDOWS),
            details={"sample": int(first_start), "model": WINDOW_MODEL_PREFIX},
        )
    normal = all(label == "normal" for _, _, label in run[:ARRHYTHMIA_WINDOWS])
    return Condition(AlarmKind.ARRHYTHMIA, False if normal else None)


def signal_quality_condition(
    recording: Recording,
    data: RoundData,
    at: Moment,
    samples: np.ndarray,
    episodes: list,
) -> Condition:
    """Poor signal: no beat in the last ``QUALITY_S`` seconds of final beats (before ``at``'s
    ``final_end``: a finished stretch's beats are final to its end) although beats were found
    before and the signal there is not flat; VF there is left to the VF alarm. Gone when the
    signal is flat (a pause), or when beats have come steadily for ``QUALITY_RESOLVE_HOLD_S``.
    ``samples`` and ``episodes``: the final beats and the episodes at ``at``."""
    fs_hz = recording.sampling_rate_hz
    stretch_start = at.stretch_start
    end = at.final_end
    start = end - round(QUALITY_S * fs_hz)
    if start < stretch_start or not (samples < start).any():
        return Condition(AlarmKind.SIGNAL_QUALITY, None)  # beats have not started flowing
    if ((samples >= start) & (samples < end)).any():
        # beats again: gone once no beatless QUALITY_S stretch is left in the hold, that is,
        # the condition has been false at every moment of the last QUALITY_RESOLVE_HOLD_S
        hold_start = start - round(QUALITY_RESOLVE_HOLD_S * fs_hz)
        if hold_start < stretch_start:
            return Condition(AlarmKind.SIGNAL_QUALITY, None)
        inside = samples[(samples >= hold_start) & (samples < end)]
        longest = np.diff(np.concatenate([[hold_start], inside, [end]])).max()
        steady = longest < round(QUALITY_S * fs_hz)
        return Condition(AlarmKind.SIGNAL_QUALITY, False if steady else None)
    if any(e.kind == "VF" and e.end_s * fs_hz >= start for e in episodes):
        return Condition(AlarmKind.SIGNAL_QUALITY, None)
    signal = data.signal_mv(at, start, end)
    stored = signal[np.isfinite(signal)]
    if len(stored) < QUALITY_MIN_STORED * len(signal):
        return Condition(AlarmKind.SIGNAL_QUALITY, None)
    pp_mv = float(np.percentile(stored, 99) - np.percentile(stored, 1))
    if pp_mv < QUALITY_MIN_PP_MV:
        return Condition(AlarmKind.SIGNAL_QUALITY, False)  # flat: a pause, not noise
    return Condition(
        AlarmKind.SIGNAL_QUALITY,
        True,
        message=f"No beat in {QUALITY_S:.0f} s of non-flat signal ({pp_mv:.1f} mV p-p)",
        value=QUALITY_S,
        limit=QUALITY_S,
        details={"sample": int(start), "peak_to_peak_mv": round(pp_mv, 2)},
    )


# --- Technical rules ---------------------------------------------------------------------


def watched(recording: Recording) -> bool:
    """Whether the technical rules watch this recording (the patient's newest device one):
    its device is active and still assigned to its admitted patient, and it is live or was
    closed by silence (not ended by the device or replaced)."""
    device, patient = recording.device, recording.patient
    return (
        device is not None
        and device.is_active
        and device.patient_id == patient.pk
        and patient.is_active
        and (
            recording.status == Recording.Status.LIVE
            or recording.closed_by == Recording.ClosedBy.SILENCE
        )
    )


def technical_conditions(recording: Recording, now: datetime) -> list[Condition]:
    """Device offline, leads off and battery low, for the patient's newest device recording
    when it is :func:`watched`; else :func:`unwatched_conditions` (whose alarm belongs to no
    recording: the callers raise it without this one)."""
    device = recording.device
    if not watched(recording):
        return unwatched_conditions(recording.patient, now)
    last = recording.last_chunk_at or recording.started_at
    silent_s = (now - last).total_seconds()
    limit_s = float(settings.DEVICE_OFFLINE_S)
    offline = silent_s > limit_s
    details = {"device": device.serial, "sample": max(0, recording.end_sample - 1)}
    return [
        Condition(
            AlarmKind.DEVICE_OFFLINE,
            offline,
            # when the data stopped, not for how long: the message is written once, when the
            # alarm is raised, and "for 32 s" still read so on the station minutes later
            message=(
                f"No data from {device.serial} since "
                f"{timezone.localtime(last):%H:%M:%S %Z} (> {limit_s:.0f} s)"
            ),
            value=round(silent_s, 1),
            limit=limit_s,
            details=details,
        ),
        # an offline device's lead state is stale: leave the leads-off alarm as it is
        Condition(
            AlarmKind.LEADS_OFF,
            None if offline else device.lead_off,
            message=f"Leads off ({device.serial})",
            details=details,
        ),
        # so is its battery charge
        battery_condition(device, details, offline),
    ]


def unwatched_conditions(patient: Patient, now: datetime) -> list[Condition]:
    """The technical rules for a patient none of whose recordings is watched (they have none,
    or the newest is another device's, was ended by the device or was replaced): device
    offline if the device assigned to them has sent them nothing since
    (:func:`assigned_silence_condition`); leads off and battery low are gone, as no chunk
    of theirs is watched."""
    return [
        assigned_silence_condition(patient, now),
        Condition(AlarmKind.LEADS_OFF, False),
        Condition(AlarmKind.BATTERY_LOW, False),
    ]


def assigned_silence_condition(patient: Patient, now: datetime) -> Condition:
    """DEVICE_OFFLINE for an admitted patient whose active device has sent them nothing
    since it was assigned (``Device.assigned_at``) for more than
    ``DEVICE_NO_DATA_AFTER_ASSIGN_S``. Until 2026-12-07 such a patient (a device assigned
    and never switched on, a swap whose new device stayed silent, a device moved to them
    that never reconnected) showed "No signal" and raised nothing: the rule above watches
    only recordings, and they had none of that device.

    "Sent them" is a recording of that device for this patient opened or written since the
    assignment (``created_at``, the server's clock: ``started_at`` is dated back to sample
    0): not ``last_seen_at``, which the device's token check (``GET /api/device/v1/self/``)
    also sets, as a device moved to another patient does when it reconnects and is then
    refused its old session. Once it has sent, the recording rules
    decide (:func:`technical_conditions`), and a recording the device ended on purpose is
    not offline. One device per patient (``one_device_per_patient``)."""
    device = None
    if patient.is_active:
        device = Device.objects.filter(patient=patient, is_active=True).order_by("pk").first()
    if device is None or device.assigned_at is None:
        return Condition(AlarmKind.DEVICE_OFFLINE, False)
    assigned_at = device.assigned_at
    sent = (
        Recording.objects.filter(device=device, patient=patient, source=Recording.Source.DEVICE)
        .filter(Q(created_at__gte=assigned_at) | Q(last_chunk_at__gte=assigned_at))
        .exists()
    )
    silent_s = (now - assigned_at).total_seconds()
    limit_s = float(settings.DEVICE_NO_DATA_AFTER_ASSIGN_S)
    return Condition(
        AlarmKind.DEVICE_OFFLINE,
        # before the limit: gone (the device is being put on), which also resolves the
        # offline alarm of the device it replaced, whose recording is no longer watched
        not sent and silent_s > limit_s,
        message=(
            f"No data from {device.serial} since it was assigned at "
            f"{timezone.localtime(assigned_at):%H:%M:%S %Z} (> {limit_s:.0f} s)"
        ),
        value=round(silent_s, 1),
        limit=limit_s,
        details={"device": device.serial, "assigned_at": assigned_at.isoformat()},
    )


def battery_condition(device, details: dict, offline: bool) -> Condition:
    """BATTERY_LOW at or below ``DEVICE_BATTERY_LOW_PCT`` of charge, as the device's newest
    chunk reported it, until it is ``DEVICE_BATTERY_RESOLVE_PCT`` or more (between the two it
    stays as it is: a charge read at 15-16 % would otherwise raise and resolve it by turns).
    Without it the first sign of a dying wearable was the device-offline alarm after it had
    died: the charge was stored and shown nowhere (an exploratory test of a ward shift). A
    device that reports no charge raises none; an offline one leaves the alarm as it is."""
    low_pct = settings.DEVICE_BATTERY_LOW_PCT
    pct = device.battery_pct
    if offline:
        active = None
    elif pct is None:
        active = False
    elif pct <= low_pct:
        active = True
    elif pct >= settings.DEVICE_BATTERY_RESOLVE_PCT:
        active = False
    else:
        active = None
    return Condition(
        AlarmKind.BATTERY_LOW,
        active,
        message=f"Battery low ({device.serial}): {pct} % (<= {low_pct} %); charge or swap it",
        value=pct,
        limit=low_pct,
        details=details,
    )
