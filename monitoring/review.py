"""Full-disclosure review of a recording: windows of signal for the viewer, events to jump
to, and the recording exported as WFDB or CSV (issue 6, item 5; docs/review.md).

Works the same for uploads and device recordings. A device recording may have gaps (ranges no
chunk covers): the viewer gets ``null`` there, the CSV a blank cell and WFDB its "invalid
sample" value; nothing is ever filled in. It may also have leads-off spans (chunks the device
sent with ``lead_off``): their samples are shown and exported as sent, and marked as no ECG
(the window's ``leads_off``, the CSV's ``lead_off`` column, WFDB "unreadable" annotations).
"""

import csv
import io
import math
import re
import tempfile
import unicodedata
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from datetime import timezone as fixed_offset
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np
from django.db.models import Count
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from monitoring.models import Alarm, Recording, UploadFormat
from monitoring.recordings import end_sample, lead_off_spans, samples_mv
from monitoring.strips import GAINS_MM_PER_MV, seconds_parameter

# The longest window one signal request may cover, and how many points it may answer: two
# hours at 360 Hz is 2.6 million samples (20 MB of float64 while decimating), a bound a
# request thread can afford; the viewer zooms out no further.
MAX_WINDOW_S = 2 * 3600.0
DEFAULT_WINDOW_S = 10.0
MIN_POINTS, MAX_POINTS, DEFAULT_POINTS = 10, 20_000, 2000
# beat labels a window answers at most (2 hours hold about 10,000 beats at 80 bpm)
MAX_WINDOW_BEATS = 20_000
MAX_EVENTS = 1000
# The latest time an event query may name (``after_s``, ``before_s``): ten years, far past
# any recording (and past a short one's end, where the viewer's centre can lie), while its
# sample index at 2000 Hz still fits a 64-bit integer. 1e308 s overflowed into a 500.
MAX_EVENT_TIME_S = 10 * 365.25 * 86400.0

# WFDB format 16 reserves its lowest value for "no sample here"; wfdb.rdrecord turns it into
# NaN in physical units.
WFDB_INVALID_ADC = -32768
# A stored sample of -32768 (a device may send it: its ADC's lowest rail) is written one ADC
# unit up in the WFDB export, so that only gaps read back as missing: written as it is, it
# read back as NaN (a gap) where the CSV, the signal API and the pages give its value.
LOWEST_WFDB_ADC = WFDB_INVALID_ADC + 1
# Our AAMI classes as WFDB beat symbols (MIT-BIH conventions: S -> A, atrial premature).
AAMI_TO_WFDB = {"N": "N", "S": "A", "V": "V", "F": "F", "Q": "Q"}
# The WFDB annotator our own beats and episodes are written under. By WFDB convention
# ``atr`` is the reference (inference.evaluate and load_record score against it), so our
# labels must not take that name: an export evaluated against itself scores 100%. ``atr``
# holds only the uploaded file's own reference labels, when there were any.
OURS_ANNOTATOR = "cspk"
REFERENCE_ANNOTATOR = "atr"
# Rhythm annotations ("+") for our episodes; MIT-BIH names where one exists (it calls
# ventricular flutter/fibrillation "(VFL"), our own otherwise. "(N" marks the end of the last
# running episode: no episode found, not a diagnosis of sinus rhythm.
EPISODE_TO_RHYTHM = {
    "AF": "(AFIB",
    "VT": "(VT",
    "VF": "(VFL",
    "BRADY": "(BRADY",
    "TACHY": "(TACHY",
    "PAUSE": "(PAUSE",
}
NO_EPISODE_RHYTHM = "(N"
# Leads-off spans in the WFDB export: WFDB's signal quality annotation ("~", NOISE) with
# subtype -1, "all signals unreadable" (MIT-BIH marks unreadable stretches so; PhysioNet's
# WAVE and pschart show it as "U"), and a "~" with subtype 0, "all signals clean", where the
# span ends. Bits 0-3 / 4-7 of the subtype would say which signals are noisy / unreadable:
# an electrode off spoils every lead the device sends, hence -1.
NOISE_SYMBOL = "~"
UNREADABLE_SUBTYPE, CLEAN_SUBTYPE = -1, 0
LEADS_OFF_NOTE = "leads off"
EVENT_KINDS = ("N", "S", "V", "F", "Q", "alarm", "episode", "leads_off")


# --- Parameters -------------------------------------------------------------------------


def _integer(value, name: str, default: int, low: int, high: int) -> int:
    if value in (None, ""):
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number, got {value!r}") from None
    if not low <= number <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {number}")
    return number


def _time_parameter(value, name: str, default: float) -> float:
    """A time in seconds from the recording's start: a finite number (``seconds_parameter``)
    from 0 to ``MAX_EVENT_TIME_S``; ``ValueError`` naming the parameter otherwise."""
    number = seconds_parameter(value, name, default)
    if not 0.0 <= number <= MAX_EVENT_TIME_S:
        raise ValueError(
            f"{name} must be from 0 to {MAX_EVENT_TIME_S:.0f} s (10 years), got {number:g}"
        )
    return number


# --- Windows of signal for the viewer ---------------------------------------------------


def signal_window(
    recording: Recording, start_s=None, length_s=None, max_points=None, channel=None
) -> dict:
    """Samples of one channel from ``start_s`` for ``length_s`` in mV, at most ``max_points``
    points; ``ValueError`` says which parameter is wrong.

    A window with more samples than ``max_points`` is cut into bins of ``step`` samples and
    each bin answers its minimum and maximum (``min``, ``max``): every spike stays visible at
    any zoom, as on a full-disclosure printout. Otherwise ``values`` holds the samples. A bin
    or sample no chunk covers is ``None`` (a gap), never interpolated. The window is clipped
    at the recording's end; it also lists the beats inside it, and in ``leads_off`` the
    leads-off spans inside it (``[start, end)`` sample ranges clipped to the window: samples
    the device sent with an electrode off, drawn as sent but no ECG).
    """
    fs_hz = recording.sampling_rate_hz
    n_total = end_sample(recording)
    duration_s = n_total / fs_hz
    start = seconds_parameter(start_s, "start_s", 0.0)
    length = seconds_parameter(length_s, "length_s", DEFAULT_WINDOW_S)
    points = _integer(max_points, "max_points", DEFAULT_POINTS, MIN_POINTS, MAX_POINTS)
    lead = _integer(channel, "channel", recording.analysis_lead, 0, recording.n_channels - 1)
    if n_total == 0:
        raise ValueError(f"recording {recording.pk} has no samples stored yet")
    if not 0.0 <= start < duration_s:
        raise ValueError(
            f"start_s must be from 0 to {duration_s:.3f} s (the recording's length), got {start:g}"
        )
    if not 0.0 < length <= MAX_WINDOW_S:
        raise ValueError(
            f"length_s must be more than 0 and at most {MAX_WINDOW_S:g} seconds, got {length:g}"
        )
    first = int(math.floor(start * fs_hz))
    last = min(n_total, first + max(1, int(math.ceil(length * fs_hz))))
    signal_mv = samples_mv(recording, first, last, channel=lead)
    n = len(signal_mv)
    step = max(1, math.ceil(n / points))
    answer = {
        "recording": recording.pk,
        "fs_hz": fs_hz,
        "channel": lead,
        "lead": recording.lead_names[lead],
        "start_sample": first,
        "end_sample": last,
        "start_s": first / fs_hz,
        "end_s": last / fs_hz,
        "duration_s": duration_s,
        "step": step,
    }
    if step == 1:
        answer["values"] = _jsonable(signal_mv)
    else:
        # pad the last bin with NaN; fmin/fmax ignore NaN unless a whole bin is NaN (a gap)
        n_bins = math.ceil(n / step)
        bins = np.full(n_bins * step, np.nan)
        bins[:n] = signal_mv
        bins = bins.reshape(n_bins, step)
        answer["min"] = _jsonable(np.fmin.reduce(bins, axis=1))
        answer["max"] = _jsonable(np.fmax.reduce(bins, axis=1))
    answer["leads_off"] = lead_off_spans(recording, first, last)
    beats = recording.beats.filter(sample__gte=first, sample__lt=last).order_by("sample")
    rows = list(beats.values_list("sample", "label", "confidence")[: MAX_WINDOW_BEATS + 1])
    answer["beats_truncated"] = len(rows) > MAX_WINDOW_BEATS
    answer["beats"] = [
        {"sample": sample, "label": label, "confidence": round(confidence, 3)}
        for sample, label, confidence in rows[:MAX_WINDOW_BEATS]
    ]
    return answer


def _jsonable(values: np.ndarray) -> list:
    """Floats rounded to 0.1 µV (far below any ADC step), NaN as ``None``."""
    return [None if not math.isfinite(v) else round(v, 4) for v in values.tolist()]


# --- Events to jump to ------------------------------------------------------------------


def alarm_sample(alarm: Alarm, recording: Recording) -> int:
    """Where an alarm happened in the recording: the event's sample the rule recorded, else
    (an alarm raised before rules recorded one) when it was raised."""
    sample = (alarm.details or {}).get("sample")
    if sample is not None:
        return int(sample)
    elapsed_s = (alarm.raised_at - recording.started_at).total_seconds()
    return max(0, int(round(elapsed_s * recording.sampling_rate_hz)))


def _alarm_event(alarm: Alarm, recording: Recording) -> dict:
    sample = alarm_sample(alarm, recording)
    return {
        "kind": "alarm",
        "sample": sample,
        "time_s": sample / recording.sampling_rate_hz,
        "alarm": alarm.pk,
        "alarm_kind": alarm.kind,
        "priority": alarm.priority,
        "state": alarm.state,
        "message": alarm.message,
    }


def events(recording: Recording, kind, after_s=None, before_s=None, limit=None) -> list[dict]:
    """Events of one kind nearest after ``after_s`` (oldest first) or before ``before_s``
    (newest first): beats of an AAMI class, alarms, episode starts or the starts of leads-off
    spans (``leads_off``).

    Times are compared in whole samples (the nearest sample to the time given), so asking for
    the next V beat after the one the view is centred on never answers that same beat.
    ``ValueError`` names a wrong parameter: every one is checked here, ``kind`` against
    ``EVENT_KINDS``, the time from 0 to ``MAX_EVENT_TIME_S`` (finite), ``limit`` a whole
    number from 1 to ``MAX_EVENTS``.
    """
    if kind not in EVENT_KINDS:
        raise ValueError(f"kind must be one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    if (after_s in (None, "")) == (before_s in (None, "")):
        raise ValueError("give exactly one of after_s and before_s")
    count = _integer(limit, "limit", 1, 1, MAX_EVENTS)
    fs_hz = recording.sampling_rate_hz
    forward = after_s not in (None, "")
    pivot_name = "after_s" if forward else "before_s"
    pivot_s = _time_parameter(after_s if forward else before_s, pivot_name, 0.0)
    pivot = int(round(pivot_s * fs_hz))
    if kind in ("alarm", "episode", "leads_off"):
        if kind == "alarm":
            found = [_alarm_event(a, recording) for a in recording.alarms.all()]
        elif kind == "leads_off":
            found = [
                {
                    "kind": "leads_off",
                    "sample": start,
                    "time_s": start / fs_hz,
                    "end_sample": end,
                    "end_s": end / fs_hz,
                }
                for start, end in lead_off_spans(recording)
            ]
        else:
            found = [
                {
                    "kind": "episode",
                    "sample": int(round(e.start_s * fs_hz)),
                    "time_s": e.start_s,
                    "end_s": e.end_s,
                    "episode_kind": e.kind,
                }
                for e in recording.episodes.all()
            ]
        if forward:
            chosen = sorted((e for e in found if e["sample"] > pivot), key=lambda e: e["sample"])
        else:
            chosen = sorted(
                (e for e in found if e["sample"] < pivot), key=lambda e: e["sample"], reverse=True
            )
        return chosen[:count]
    beats = recording.beats.filter(label=kind)
    if forward:
        beats = beats.filter(sample__gt=pivot).order_by("sample")
    else:
        beats = beats.filter(sample__lt=pivot).order_by("-sample")
    return [
        {
            "kind": kind,
            "sample": sample,
            "time_s": sample / fs_hz,
            "beat": index + 1,
            "confidence": round(confidence, 3),
        }
        for sample, index, confidence in beats.values_list("sample", "index", "confidence")[:count]
    ]


# --- "Go to" ------------------------------------------------------------------------------

# How "Go to" reads what was typed (the go-to API's ``read_as``): a time into the recording,
# as the page prints positions ("elapsed"), or a clock time in the site's zone ("clock"). The
# page always says which (a menu next to the box, "into the recording" by default); without
# ``read_as`` the API reads as it did before it had one (READ_AS_AUTO, kept for its callers):
# a number is seconds, HH:MM[:SS] a clock time, so "1:00:00" was 01:00 o'clock and "6:32.6",
# copied from the page, was refused (exploratory test, 2026-12-07).
READ_AS = ("elapsed", "clock")
READ_AS_AUTO = ""

# "Go to" a clock time: HH:MM or HH:MM:SS (seconds may have decimals)
CLOCK_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?")
# ... and as the page prints one, with the zone's abbreviation after it ("02:30:00 CET",
# "14:30 EST", "09:00 -03"), which picks one of the two moments of a repeated hour
CLOCK_TIME_WITH_ZONE = re.compile(
    r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d+)?))?(?:\s*([A-Za-z]{2,6}|[+-]\d{2}(?:\d{2})?))?"
)
# A position as the page prints one (format_elapsed): seconds, "75", "75.5", "12.5 s", or
# M:SS(.s) / H:MM:SS(.s), "6:32.6", "1:00:00" (minutes past 59 without hours: "75:00")
ELAPSED_SECONDS = re.compile(r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*s?")
ELAPSED_CLOCK_FORM = re.compile(r"(?:(\d+):)?(\d+):(\d{2}(?:\.\d*)?)")
# the view range as the page prints it, "59:55 – 1:00:05" (en dash, em dash or hyphen), and
# what follows it there, " of 12:02:13.3"
ELAPSED_RANGE = re.compile(r"(.+?)\s*[–—-]\s*(.+?)(?:\s+of\s+\S+)?")


class GoTo(NamedTuple):
    """Where "Go to" goes: the time to centre on, a note for the page ("" or which of two
    moments a repeated clock time is), how the entry was read (``READ_AS``), and the length of
    a range typed ("59:55 – 1:00:05"; None for one position)."""

    time_s: float
    note: str
    read_as: str
    length_s: float | None = None


def format_elapsed(seconds: float) -> str:
    """A time into the recording as the page prints it (review.js ``formatTime``): ``12.5 s``
    below a minute, else ``M:SS.s`` or ``H:MM:SS.s``, rounded to a tenth before being split
    (119.97 s is ``2:00``), the tenth left out when it is 0."""
    hundredths = math.floor(seconds * 100 + 0.5)
    if hundredths < 6000:
        return f"{hundredths / 100:g} s"
    tenths = math.floor(seconds * 10 + 0.5)
    hours, rest = divmod(tenths, 36000)
    minutes, seconds_tenths = divmod(rest, 600)
    second_text = f"{seconds_tenths / 10:g}".rjust(2, "0")
    if seconds_tenths < 100 and "." in second_text:
        second_text = "0" + second_text  # 5.5 s past the minute: "1:05.5"
    return (f"{hours}:{minutes:02d}" if hours else f"{minutes}") + ":" + second_text


def parse_elapsed(text: str) -> float | None:
    """Seconds from the start for one position written as the page writes one (``75``,
    ``12.5 s``, ``6:32.6``, ``1:00:00``); None for text of another shape, ``ValueError`` for
    minutes or seconds past 59 (``1:75``)."""
    match = ELAPSED_SECONDS.fullmatch(text)
    if match:
        return float(match[1])
    match = ELAPSED_CLOCK_FORM.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds = int(match[1] or 0), int(match[2]), float(match[3])
    if seconds >= 60 or (match[1] is not None and minutes >= 60):
        raise ValueError(f"{text!r} is not a time into the recording: minutes and seconds go to 59")
    return hours * 3600.0 + minutes * 60.0 + seconds


def go_to(recording: Recording, text, read_as=READ_AS_AUTO) -> GoTo:
    """Where what was typed in "Go to" lies, read as ``read_as`` says:

    - ``"elapsed"``: a time into the recording as the page prints positions, seconds (``75``,
      ``75.5``, ``12.5 s``) or ``M:SS.s`` / ``H:MM:SS.s`` (``6:32.6``, ``1:00:00``), or a
      range of two (``59:55 – 1:00:05``: its middle, and ``length_s``), so that a position
      copied from the page goes back to it (``go_to_elapsed``);
    - ``"clock"``: a clock time ``HH:MM`` / ``HH:MM:SS``, with the zone's abbreviation or
      without (``go_to_clock``);
    - neither (READ_AS_AUTO, the API before ``read_as``): a number is seconds, ``HH:MM[:SS]``
      a clock time.

    ``ValueError`` says what is wrong (the entry, or a time outside the stored recording).
    """
    text = str(text or "").strip()
    read_as = str(read_as or READ_AS_AUTO).strip()
    if read_as not in (READ_AS_AUTO, *READ_AS):
        raise ValueError(f"read_as must be elapsed or clock, got {read_as!r}")
    duration_s = end_sample(recording) / recording.sampling_rate_hz
    if read_as == "elapsed":
        return go_to_elapsed(recording, text, duration_s)
    if read_as == "clock" or CLOCK_TIME.fullmatch(text):
        return go_to_clock(recording, text, duration_s)
    try:
        offset_s = float(text)
    except ValueError:
        offset_s = math.nan
    if not math.isfinite(offset_s):
        raise ValueError(f"go to seconds (e.g. 75) or a clock time HH:MM or HH:MM:SS, got {text!r}")
    if not 0.0 <= offset_s <= duration_s:
        raise ValueError(f"{text} s is outside the recording (0 to {duration_s:.1f} s stored)")
    return GoTo(offset_s, "", "elapsed")


def go_to_elapsed(recording: Recording, text: str, duration_s: float) -> GoTo:
    """``go_to`` of a time into the recording (``parse_elapsed``), or of a range of two."""
    shape = (
        f"{text!r} is not a time into the recording: give seconds (75, 75.5) or minutes and "
        "seconds as the page writes them (6:32.6, 1:00:00)"
    )
    position = parse_elapsed(text)
    if position is not None:
        inside_or_refuse(recording, text, position, duration_s)
        return GoTo(position, "", "elapsed")
    match = ELAPSED_RANGE.fullmatch(text)
    if match is None:
        raise ValueError(shape)
    first, last = parse_elapsed(match[1]), parse_elapsed(match[2])
    if first is None or last is None:
        raise ValueError(shape)
    if last < first:
        raise ValueError(f"{text!r} ends before it starts")
    for part, position in ((match[1], first), (match[2], last)):
        inside_or_refuse(recording, part, position, duration_s)
    return GoTo((first + last) / 2, "", "elapsed", (last - first) or None)


def inside_or_refuse(recording, text: str, position_s: float, duration_s: float) -> None:
    """``ValueError`` for a time into the recording outside it, naming where the recording
    ends, and where the same text read as a clock time would go (if inside the recording:
    "14:30:00" typed for 2:30 pm)."""
    if 0.0 <= position_s <= duration_s:
        return
    message = f"{text} into the recording is outside it (0 to {format_elapsed(duration_s)} stored)"
    if CLOCK_TIME.fullmatch(text):
        try:
            as_clock = go_to_clock(recording, text, duration_s)
        except ValueError:
            pass
        else:
            message += (
                f"; as a clock time, {text} is {format_elapsed(as_clock.time_s)} into it: "
                "choose “clock time” to go there"
            )
    raise ValueError(message)


def go_to_clock(recording: Recording, text: str, duration_s: float) -> GoTo:
    """``go_to`` of a clock time ``HH:MM`` or ``HH:MM:SS``, optionally followed by the zone's
    abbreviation as the page prints it (``02:30:00 CET``), in the zone the pages show times
    in (the current time zone: ``TIME_ZONE`` unless one was activated).

    A clock time is the first moment at or after the start that the zone's clocks showed it:
    on the recording's start day, or on the next day when it is earlier than the start's clock
    time (a recording past midnight). The start is compared at the precision typed (to the
    second, or to the minute for ``HH:MM``), so the start time as the page shows it, without
    its fraction of a second, is the start (offset 0) and not the next day.

    A daylight-saving change makes a clock time happen twice (clocks put back: 02:30 in
    Europe/Berlin on the last Sunday of October) or not at all (clocks put forward: 02:30 on
    the last Sunday of March). Twice: the first of the two at or after the start is taken
    (summer time, unless the recording started between them, or an abbreviation typed names
    the other), and the note says which one it is and where the other lies. Not at all:
    refused, naming the change. It must lie within the stored recording.
    """
    # the zone the page formats times in (the |date filter and timezone.localtime use the
    # current zone), so that a time read off the page means the same moment here
    zone = timezone.get_current_timezone()
    match = CLOCK_TIME_WITH_ZONE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{text!r} is not a clock time HH:MM or HH:MM:SS ({zone}): to go to a time since "
            "the recording's start (75, 6:32.6, 1:00:00), read it “into the recording”"
        )
    hours, minutes = int(match[1]), int(match[2])
    seconds = float(match[3] or 0)
    if hours > 23 or minutes > 59 or seconds >= 60:
        raise ValueError(f"{text!r} is not a clock time (00:00:00 to 23:59:59)")
    abbreviation = match[4]
    started = timezone.localtime(recording.started_at, zone)
    # The page shows the start to the second; typed without seconds it is read to the minute.
    # started_at has microseconds (monitoring/ingest.py), so the shown start time is a
    # fraction of a second before it: compared exactly, it would be taken as the next day's.
    if match[3] is None:
        shown_start = started.replace(second=0, microsecond=0)
    else:
        shown_start = started.replace(microsecond=0)
    # moments compared in UTC: compared in the zone (the same tzinfo), Python compares the
    # wall clocks and ignores which of a repeated hour's two passes each is
    shown_start_utc = shown_start.astimezone(UTC)
    names_seen = []
    for day in (started.date(), started.date() + timedelta(days=1)):
        # seconds added as a timedelta, not split into time()'s integer fields: rounding
        # 59.9999999 s to microseconds there wrapped it to 59.0 s
        wall = datetime.combine(day, time(hours, minutes)) + timedelta(seconds=seconds)
        moments = clock_moments(wall, zone)
        if not moments:
            # the clocks skipped it: refused on the day it would be taken, not silently read
            # in one offset or the other (an hour off either way)
            if wall >= shown_start.replace(tzinfo=None):
                before, after = clock_change_around(wall, zone)
                raise ValueError(
                    f"{text} did not happen on {day:%Y-%m-%d} in {zone}: the clocks went "
                    f"from {before:%H:%M %Z} to {after:%H:%M %Z}"
                )
            continue
        later = [moment for moment in moments if moment.astimezone(UTC) >= shown_start_utc]
        if abbreviation:
            names_seen += [moment.tzname() for moment in later]
            later = [m for m in later if m.tzname().casefold() == abbreviation.casefold()]
        if later:
            offset_s = within_recording(recording, text, later[0], started, duration_s)
            note = twice_note(recording, text, moments, later[0], zone, duration_s)
            return GoTo(offset_s, note, "clock")
    # only an abbreviation typed can leave both days without a moment
    shown = " or ".join(dict.fromkeys(names_seen))
    raise ValueError(
        f"{text}: the clocks in {zone} did not show {abbreviation} then (they showed {shown})"
    )


def clock_zones(recording: Recording) -> list[dict]:
    """The site zone's clock over the recording, for the page's clock times: where (``from_s``,
    seconds from the start) its offset from UTC (``offset_s``) or its abbreviation changes,
    the first from 0. The page prints the server's abbreviations (``EST``, ``CET``, as the
    |date filter and "Go to" do): the browser's own names for a zone differ by locale
    (en-GB writes America/New_York's winter time "GMT-5", en-US Europe/Berlin's "GMT+1").
    It reaches a day past the recording's stored end, for a live recording that grows."""
    zone = timezone.get_current_timezone()
    start = recording.started_at.astimezone(UTC)
    end = start + timedelta(seconds=end_sample(recording) / recording.sampling_rate_hz + 86400)

    def reading(moment: datetime) -> tuple[int, str]:
        local = moment.astimezone(zone)
        return int(local.utcoffset().total_seconds()), local.tzname()

    def span(moment: datetime) -> dict:
        offset_s, name = reading(moment)
        from_s = max(0.0, (moment - start).total_seconds())
        return {"from_s": from_s, "offset_s": offset_s, "abbreviation": name}

    spans = [span(start)]
    # clock changes lie months apart: an hourly look finds each, halving finds its second
    low = start
    while low < end:
        high = min(low + timedelta(hours=1), end)
        if reading(high) != reading(low):
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                if reading(middle) == reading(low):
                    low = middle
                else:
                    high = middle
            # changes fall on whole seconds: the first whole second after low
            change = low.replace(microsecond=0) + timedelta(seconds=1)
            spans.append(span(change))
            low = change
            continue
        low = high
    return spans


def clock_moments(wall: datetime, zone) -> list[datetime]:
    """The moments (in ``zone``) at which the clocks of ``zone`` showed the naive ``wall``:
    one, two (the hour a clock change repeats) or none (the hour it skips), earliest first."""
    moments = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold)
        # a skipped time does not come back from UTC as itself
        if moment.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall:
            moments.append(moment.astimezone(UTC))
    return [moment.astimezone(zone) for moment in sorted(set(moments))]


def clock_change_around(wall: datetime, zone) -> tuple[datetime, datetime]:
    """The clock change near the naive ``wall`` (within its offsets' difference): the moment
    it happened on the old clock and on the new one, e.g. 02:00 CET and 03:00 CEST."""
    first, second = (wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    low, high = min(first, second), max(first, second)
    old_offset, old_name = low.astimezone(zone).utcoffset(), low.astimezone(zone).tzname()
    # the change lies between the two readings: halve to the second (changes are on seconds)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == old_offset:
            low = middle
        else:
            high = middle
    change = high.replace(microsecond=0)
    if change.astimezone(zone).utcoffset() == old_offset:
        change += timedelta(seconds=1)
    return change.astimezone(fixed_offset(old_offset, old_name)), change.astimezone(zone)


def within_recording(recording, text, moment, started, duration_s) -> float:
    """Seconds from the start to ``moment`` (real seconds, in UTC: across a clock change), or
    ``ValueError`` when the recording does not reach it."""
    # at most a fraction of a second before the start when the typed time is the shown
    # start: that is the start
    offset_s = max(0.0, (moment.astimezone(UTC) - recording.started_at).total_seconds())
    if offset_s > duration_s:
        raise ValueError(
            f"{text} is {offset_s / 3600:.1f} h after the recording's start "
            f"({started:%Y-%m-%d %H:%M:%S %Z}), past its end ({duration_s / 60:.1f} min stored)"
        )
    return offset_s


def twice_note(recording, text, moments, taken, zone, duration_s) -> str:
    """What the page says when a clock time happened twice: which of the two it went to, and
    where the other lies. Empty for a time that happened once."""
    if len(moments) < 2:
        return ""
    # (compared in UTC: the two share their wall clock, see go_to)
    first = taken.astimezone(UTC) == moments[0].astimezone(UTC)
    which, other = ("first", moments[1]) if first else ("second", moments[0])
    offset_s = (other.astimezone(UTC) - recording.started_at).total_seconds()
    if offset_s < 0:
        where = "before the recording's start"
    elif offset_s > duration_s:
        where = "past the recording's end"
    else:
        where = f"at {offset_s:.1f} s"
    return (
        f"{text} happened twice on {taken:%Y-%m-%d} in {zone} (the clocks were put back): "
        f"this is the {which}, {taken:%H:%M:%S %Z} (UTC{taken.isoformat()[-6:]}); the other, "
        f"{other:%H:%M:%S %Z}, is {where}."
    )


def review_overview(recording: Recording) -> dict:
    """What the viewer needs once: the time axis, gaps, leads-off spans, episodes, alarms
    and beat counts."""
    from monitoring.recordings import MAX_GAPS_LISTED, gaps

    fs_hz = recording.sampling_rate_hz
    n_total = end_sample(recording)
    counts = dict.fromkeys(AAMI_TO_WFDB, 0)
    for row in recording.beats.values("label").annotate(n=Count("id")).order_by():
        counts[row["label"]] = row["n"]
    return {
        "recording": recording.pk,
        "fs_hz": fs_hz,
        # sample 0's wall-clock time, and the zone the page shows clock times in: the current
        # zone (TIME_ZONE unless one was activated), as the page's |date filter and "Go to"
        # (go_to_seconds) use, so that the view range, the start and "Go to" agree
        "started_at": recording.started_at.isoformat(),
        "time_zone": timezone.get_current_timezone_name(),
        # the zone's offsets and abbreviations over the recording, so that the page prints
        # the server's abbreviation ("EST") as the header does, not the browser's ("GMT-5")
        "clock_zones": clock_zones(recording),
        "n_samples": n_total,
        "duration_s": n_total / fs_hz,
        "lead_names": recording.lead_names,
        "channel": recording.analysis_lead,
        "max_window_s": MAX_WINDOW_S,
        "gaps_s": [[start / fs_hz, end / fs_hz] for start, end in gaps(recording)],
        # for the overview bar (as many as gaps at most: the page's JSON stays small);
        # each window of signal says where its own are
        "leads_off_s": [
            [start / fs_hz, end / fs_hz]
            for start, end in lead_off_spans(recording, limit=MAX_GAPS_LISTED)
        ],
        "episodes": [
            {"kind": e.kind, "start_s": e.start_s, "end_s": e.end_s}
            for e in recording.episodes.order_by("start_s")
        ],
        "alarms": sorted(
            (_alarm_event(a, recording) for a in recording.alarms.all()),
            key=lambda e: e["sample"],
        ),
        "beat_counts": counts,
    }


# --- Exports ----------------------------------------------------------------------------


# What the exports call the stored values' unit: (WFDB header units, CSV column suffix).
# Millivolts for every recording but the Kaggle beat rows, which are min-max normalized to
# 0..1 (docs/upload.md) and were exported as mV ("32000.0(0)/mV", "beat rows (0..1)_mv"), a
# unit they are not: "NU", normalized units, as WFDB headers name a unitless signal.
MV_UNIT = ("mV", "mv")
NORMALIZED_UNIT = ("NU", "nu")


def export_unit(recording: Recording) -> tuple[str, str]:
    """``(WFDB units, CSV column suffix)`` of the recording's stored values."""
    if recording.upload_format == UploadFormat.KAGGLE187:
        return NORMALIZED_UNIT
    return MV_UNIT


def record_name(recording: Recording) -> str:
    """The WFDB record name (letters, digits, hyphens: what WFDB accepts)."""
    return f"recording-{recording.pk}"


def ascii_lead_name(name: str, channel: int) -> str:
    """``name`` in ASCII for a WFDB header: compatibility decomposition (NFKD: ``Ⅱ`` -> ``II``,
    ``ä`` -> ``a`` + accent), then every character outside printable ASCII dropped; a name
    left empty (``導程``) becomes ``ch<n>``, as an upload names a signal without a name.

    wfdb reads a header as ASCII and drops any other byte without a word (``Ableitung Ⅱ``
    read back as ``Ableitung``, ``導程`` as no name at all), and the WFDB format's headers
    are ASCII, so the export writes them so. Stable: the same name always gives the same.
    """
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(c for c in decomposed if " " <= c <= "~")
    return " ".join(kept.split()) or f"ch{channel + 1}"


def export_lead_names(recording: Recording, ascii_only: bool = False) -> list[str]:
    """The lead names as the exports write them: each one unique; with ``ascii_only`` (the
    WFDB export) in ASCII first (:func:`ascii_lead_name`), the CSV keeps them as they are.

    A WFDB header may name two signals alike (``ECG`` and ``ECG`` in some PhysioNet records)
    and its upload keeps the names as they are, but ``wfdb.wrsamp`` refuses such a header (the
    export answered 500), and a CSV with two ``ECG_mv`` columns leaves the reader guessing.
    A name already taken gets the channel's number: ``ECG``, ``ECG-ch2``. Names made ASCII
    may meet (``Ⅱ`` and ``II``), so they are made unique after.
    """
    leads = list(recording.lead_names)
    if ascii_only:
        leads = [ascii_lead_name(name, channel) for channel, name in enumerate(leads)]
    names, taken = [], set(leads)
    for channel, name in enumerate(leads):
        if name in names:
            name = f"{name}-ch{channel + 1}"
            while name in taken:  # a file that also had a lead of that name
                name += "'"
        names.append(name)
        taken.add(name)
    return names


def adc_with_gaps(recording: Recording) -> tuple[np.ndarray, int]:
    """All channels from sample 0 to the end as WFDB format 16 writes them (int16 ADC units,
    shape (n, channels)), and how many stored samples were raised from -32768.

    A sample no chunk covers is ``WFDB_INVALID_ADC``; a stored one is as stored, except a
    stored -32768, which is written as ``LOWEST_WFDB_ADC`` (one ADC unit up) so that it is
    not read as a gap."""
    out = np.full((end_sample(recording), recording.n_channels), WFDB_INVALID_ADC, np.int16)
    n_raised = 0
    for chunk in recording.chunks.order_by("first_sample").iterator(chunk_size=200):
        chunk.recording = recording
        samples = chunk.samples()
        at_invalid = samples == WFDB_INVALID_ADC
        n_raised += int(at_invalid.sum())
        out[chunk.first_sample : chunk.end_sample] = np.where(at_invalid, LOWEST_WFDB_ADC, samples)
    return out, n_raised


def rhythm_annotations(recording: Recording, n_samples: int) -> list[tuple[int, str]]:
    """Episodes as WFDB rhythm changes ``(sample, aux_note)``.

    WFDB rhythm annotations are a state (the rhythm from here on); episodes may overlap (AF
    with tachycardia), so at every start or end the state becomes the latest-started episode
    still running, or ``NO_EPISODE_RHYTHM`` when none is.
    """
    fs_hz = recording.sampling_rate_hz
    spans = [
        (
            min(n_samples - 1, int(round(e.start_s * fs_hz))),
            min(n_samples - 1, int(round(e.end_s * fs_hz))),
            EPISODE_TO_RHYTHM.get(e.kind, f"({e.kind}"),
        )
        for e in recording.episodes.order_by("start_s", "end_s")
    ]
    changes, current = [], None
    for boundary in sorted({s for s, _, _ in spans} | {e for _, e, _ in spans}):
        running = [(s, note) for s, e, note in spans if s <= boundary < e]
        state = max(running)[1] if running else NO_EPISODE_RHYTHM
        if state != current and not (current is None and state == NO_EPISODE_RHYTHM):
            changes.append((boundary, state))
        current = state
    return changes


def write_wfdb(recording: Recording, folder: Path) -> list[Path]:
    """Write the recording as a WFDB record in ``folder``; the paths written.

    - ``.hea`` and ``.dat``: format 16, the stored ADC values with the recording's gain and
      baseline in its unit (``export_unit``: mV, or NU for the Kaggle beat rows), gaps as
      ``WFDB_INVALID_ADC``, a stored -32768 as ``LOWEST_WFDB_ADC`` (the header's comments
      say how many);
    - ``.cspk`` (``OURS_ANNOTATOR``), when it has beats, episodes or leads-off spans: our
      labels, and each leads-off span as WFDB marks unreadable signal (``NOISE_SYMBOL`` with
      ``UNREADABLE_SUBTYPE`` at its first sample, with ``CLEAN_SUBTYPE`` one past its last),
      since its samples are written as sent: read as ECG, its flat line is an asystole;
    - ``.atr`` (``REFERENCE_ANNOTATOR``), when the upload came with its own beat labels
      (a WFDB record's ``.atr``): those reference labels, so that the exported record can be
      evaluated against its reference. A device recording has none, hence no ``.atr``.

    The header's base date and time are when sample 0 was taken, on the clock of the zone the
    pages show times in (the current zone: ``TIME_ZONE`` unless one was activated), as an
    upload reads a header's base time (in ``TIME_ZONE``) and as a WFDB viewer shows it. A WFDB
    header has no time zone field, so the moment is also said in a header comment,
    ``started_at`` and the ISO 8601 time with its offset (``+01:00``), which names the clock
    in the hour a clock change repeats, and the upload reads back
    (``monitoring.uploads.header_start``): the record uploaded again keeps its start exactly,
    on a server in any zone. A ``time_zone`` comment names the zone. Until 2026-12-07 the base
    time was in UTC, an hour off in a viewer for a site in Berlin. An upload whose file gave
    no start gets none: its start is only its upload time (``Recording.start_is_upload_time``),
    which the comment says instead, so that the record uploaded again is not taken to have
    started then.
    """
    import wfdb

    name = record_name(recording)
    adc, n_raised = adc_with_gaps(recording)
    if len(adc) == 0:
        raise ValueError(f"recording {recording.pk} has no samples stored yet")
    n_channels = recording.n_channels
    started_utc = recording.started_at.astimezone(UTC)
    zone = timezone.get_current_timezone()
    started_local = started_utc.astimezone(zone)
    if recording.start_is_upload_time:
        base_date = base_time = None
        comments = [
            "start unknown: the uploaded file gave none; CardioSpike counted its clock times "
            f"from the upload, {started_utc.isoformat()}"
        ]
    else:
        base_date = started_local.date()
        base_time = started_local.time()  # naive: the comments say which clock it is
        comments = [
            f"started_at {started_local.isoformat()}",
            f"time_zone {zone} (the base time and date are its clock)",
        ]
    if n_raised:
        # said in the header, so that a reader of the record knows its -32767s may be -32768s
        comments.append(
            f"{n_raised} stored samples of -32768 written as -32767: format 16 reads -32768 "
            "as missing, which marks only the gaps here"
        )
    wfdb.wrsamp(
        name,
        fs=recording.sampling_rate_hz,
        units=[export_unit(recording)[0]] * n_channels,
        sig_name=export_lead_names(recording, ascii_only=True),
        d_signal=adc,
        fmt=["16"] * n_channels,
        adc_gain=[recording.gain_adc_per_mv] * n_channels,
        baseline=[recording.baseline_adc] * n_channels,
        base_date=base_date,
        base_time=base_time,
        comments=comments,
        write_dir=str(folder),
    )
    paths = [folder / f"{name}.hea", folder / f"{name}.dat"]
    # (sample, order at that sample, symbol, subtype, aux_note)
    annotations = [
        (sample, 0, AAMI_TO_WFDB.get(label, "Q"), 0, "")
        for sample, label in recording.beats.order_by("sample").values_list("sample", "label")
        if sample < len(adc)
    ]
    # a rhythm change sorts before a beat at the same sample: it holds from that beat on
    annotations += [
        (sample, -1, "+", 0, note) for sample, note in rhythm_annotations(recording, len(adc))
    ]
    # a signal quality change sorts first: the signal is (un)readable from that sample on
    for start, end in lead_off_spans(recording):
        annotations.append((start, -2, NOISE_SYMBOL, UNREADABLE_SUBTYPE, LEADS_OFF_NOTE))
        if end < len(adc):  # the leads came back on before the end of the record
            annotations.append((end, -2, NOISE_SYMBOL, CLEAN_SUBTYPE, ""))
    if annotations:
        annotations.sort(key=lambda a: (a[0], a[1]))
        wfdb.wrann(
            name,
            OURS_ANNOTATOR,
            np.array([a[0] for a in annotations], dtype=np.int64),
            np.array([a[2] for a in annotations]),
            subtype=np.array([a[3] for a in annotations], dtype=np.int64),
            aux_note=[a[4] for a in annotations],
            fs=recording.sampling_rate_hz,
            write_dir=str(folder),
        )
        paths.append(folder / f"{name}.{OURS_ANNOTATOR}")
    # Only signal uploads keep reference samples; beat-row uploads keep labels alone, which
    # no annotation file can place. The upload kept the AAMI class of each reference beat,
    # not its MIT-BIH symbol (L, R, j, ...), so the class's symbol is written: it maps back
    # to the same class (inference.aami.aami_class), all the evaluation compares.
    reference = recording.reference_annotations or {}
    if reference.get("samples"):
        wfdb.wrann(
            name,
            REFERENCE_ANNOTATOR,
            np.array(reference["samples"], dtype=np.int64),
            np.array([AAMI_TO_WFDB[label] for label in reference["labels"]]),
            fs=recording.sampling_rate_hz,
            write_dir=str(folder),
        )
        paths.append(folder / f"{name}.{REFERENCE_ANNOTATOR}")
    return paths


def wfdb_zip(recording: Recording) -> bytes:
    """The WFDB record of ``write_wfdb`` as a zip file."""
    with tempfile.TemporaryDirectory(prefix="cardiospike-wfdb-") as folder:
        paths = write_wfdb(recording, Path(folder))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in paths:
                archive.write(path, arcname=path.name)
    return buffer.getvalue()


def spreadsheet_text(text: str) -> str:
    """``text`` as a CSV cell a spreadsheet shows as text: a lead name comes from an uploaded
    file's header, and one starting with ``=``, ``+``, ``-`` or ``@`` would run as a formula
    when the export is opened (OWASP's CSV injection); a leading ``'`` keeps it text."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def signal_csv_lines(recording: Recording) -> Iterator[str]:
    """The recording as CSV text, a line at a time: ``time_s, sample``, one column per lead
    in mV (``<lead>_mv``; the Kaggle beat rows' 0..1 values ``<lead>_nu``, ``export_unit``)
    and ``lead_off``, from sample 0 to the end; a sample no chunk covers has blank lead
    and ``lead_off`` cells.

    Values are written with 10 significant digits, so ``round(mv * gain + baseline)`` gives
    back the stored ADC value for any gain the model allows. ``lead_off`` is 1 on the rows of
    a chunk the device sent with an electrode off (its values are as sent, but no ECG), else
    0. It is the last column, after the leads: the columns before it are as they were, so a
    reader that picks its columns by name or by position before it reads the file as before.
    """
    fs_hz = recording.sampling_rate_hz
    suffix = export_unit(recording)[1]  # mv, or nu for the Kaggle beat rows' 0..1 values
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(
        [
            "time_s",
            "sample",
            *[spreadsheet_text(f"{lead}_{suffix}") for lead in export_lead_names(recording)],
            "lead_off",
        ]
    )
    blank = [""] * (recording.n_channels + 1)  # the leads and lead_off
    position = 0
    for chunk in recording.chunks.order_by("first_sample").iterator(chunk_size=200):
        chunk.recording = recording
        for sample in range(position, chunk.first_sample):  # a gap: rows with blank cells
            writer.writerow([f"{sample / fs_hz:.6f}", sample, *blank])
            if sample % 5000 == 0:
                yield flush()
        values_mv = recording.to_mv(chunk.samples())
        lead_off = "1" if chunk.lead_off else "0"
        for offset, row in enumerate(values_mv.tolist()):
            sample = chunk.first_sample + offset
            writer.writerow(
                [f"{sample / fs_hz:.6f}", sample, *[f"{v:.10g}" for v in row], lead_off]
            )
        yield flush()
        position = max(position, chunk.end_sample)


def info_csv(recording: Recording) -> str:
    """The recording's metadata as a one-row CSV: ``record``, ``started_at`` (when sample 0
    was taken, ISO 8601 in UTC with its ``+00:00`` offset: a sample's clock time is
    ``started_at`` plus its ``time_s``), ``fs_hz`` and ``n_samples`` (from 0 to the end,
    gaps counted). Its own file: the signal CSV's columns stay what they were."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["record", "started_at", "fs_hz", "n_samples"])
    writer.writerow(
        [
            record_name(recording),
            recording.started_at.astimezone(UTC).isoformat(),
            f"{recording.sampling_rate_hz:.10g}",
            end_sample(recording),
        ]
    )
    return buffer.getvalue()


def csv_zip(recording: Recording) -> BinaryIO:
    """The signal CSV, the recording's start and other metadata (``info_csv``) and, when the
    recording has beats, the per-beat results CSV, zipped into a temporary file.

    The signal CSV is compressed into the zip a chunk's rows at a time, never held whole: a
    24-hour recording's is over a gigabyte of text. Returns the file rewound; the caller
    closes it (a ``FileResponse`` does), and it is deleted when closed.
    """
    from monitoring.analysis import results_csv

    spool = tempfile.TemporaryFile(prefix="cardiospike-csv-")
    try:
        with zipfile.ZipFile(spool, "w", zipfile.ZIP_DEFLATED) as archive:
            name = record_name(recording)
            # force_zip64: the member's size is not known before it is written, and it may
            # pass the 4 GB a plain zip header can hold
            with archive.open(f"{name}-signal.csv", "w", force_zip64=True) as member:
                for text in signal_csv_lines(recording):
                    member.write(text.encode("utf-8"))
            archive.writestr(f"{name}-info.csv", info_csv(recording))
            if recording.beats.exists():
                archive.writestr(f"{name}-beats.csv", results_csv(recording))
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


# --- The page ---------------------------------------------------------------------------


def review_page(request, pk: int):
    """``/recordings/<id>/review/``: the whole recording in a scrolling, zooming viewer."""
    recording = get_object_or_404(
        Recording.objects.visible_to(request.user).select_related("patient"), pk=pk
    )
    return render(
        request,
        "monitoring/review.html",
        {
            "recording": recording,
            "patient": recording.patient,
            "overview": review_overview(recording),
            # the gain menu's choices, those the PNG strips take (mm/mV)
            "gains": GAINS_MM_PER_MV,
        },
    )
