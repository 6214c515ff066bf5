"""A patient's alarm history: every alarm active in a time range, a page at a time
(docs/dashboard.md, "Alarm history").

The live view lists only the last 20 alarms (and older open ones): a night's alarms scroll
off it, and the patient page listed none. This page answers the morning handover's question,
"what did this patient alarm for overnight?": the alarms active in the last 12 hours by
default (1 h, 24 h, 7 days, or from and to in the server's zone): raised in the range, or
raised before it and still open at its start (open now, or resolved after it:
``AlarmQuerySet.active_during``; an alarm raised at 18:50 and open all night is part of the
night), filtered by priority and kind, 50 a page, each with the time of its event (the sample
the rule recorded, as clock time), when it was raised (marked when before the range),
acknowledged and resolved, and a link to its ECG on the review page. Scoped as the other
patient pages: a patient the clinician is not assigned to answers 404.
"""

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.paginator import Paginator
from django.http import QueryDict
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from monitoring.models import Alarm, AlarmKind, AlarmPriority, Patient
from monitoring.notifications import event_sample, review_path
from monitoring.review import clock_moments

HISTORY_PER_PAGE = 50
# The choices of the range menu: how far back from now.
RANGES = {
    "1h": ("last hour", timedelta(hours=1)),
    "12h": ("last 12 hours", timedelta(hours=12)),
    "24h": ("last 24 hours", timedelta(hours=24)),
    "7d": ("last 7 days", timedelta(days=7)),
}
DEFAULT_RANGE = "12h"
CUSTOM_RANGE = "custom"
# A clock time as the pages print it ("2026-07-01 22:00:05 CEST"): the date, hours and
# minutes, the seconds and the zone's abbreviation optional (letters, or an offset such as
# "-03" where the zone has no letters: America/Sao_Paulo, Asia/Dubai); a "T" may stand for
# the space (as a browser's datetime-local field sends it).
LOCAL_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"(?:\s+([A-Za-z][A-Za-z0-9+-]*|[+-]\d{2}(?:\d{2})?))?"
)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S %Z"


@dataclass
class TimeRange:
    """From ``start`` (included) to ``end`` (excluded), aware datetimes: the alarms active at
    some moment of it are listed."""

    start: datetime
    end: datetime
    key: str  # a RANGES key or CUSTOM_RANGE
    label: str


def parse_local_time(text: str, name: str, *, latest: bool) -> datetime:
    """``YYYY-MM-DD HH:MM[:SS] [abbreviation]`` in the zone the pages show times in, as an
    aware datetime; ``ValueError`` naming ``name`` otherwise.

    A time the clocks showed twice (put back in autumn) is the earlier of the two for a
    range's start and the later for its end (``latest``), so that the range holds both,
    unless the abbreviation typed (as the page prints it: CEST, CET) names one; a time the
    clocks skipped is refused, naming the change (review.go_to_clock does the same)."""
    zone = timezone.get_current_timezone()
    match = LOCAL_TIME.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{name} must be a date and time in {zone} as the pages write them, "
            f"YYYY-MM-DD HH:MM or YYYY-MM-DD HH:MM:SS, got {text!r}"
        )
    year, month, day, hours, minutes = (int(part) for part in match.groups()[:5])
    seconds = int(match[6] or 0)
    if not 1900 <= year <= 2999:
        # far from datetime's limits, which a zone's offset or a range's 12 hours would cross
        raise ValueError(f"{name} must lie in the years 1900 to 2999, got {text!r}")
    try:
        wall = datetime(year, month, day, hours, minutes, seconds)
    except ValueError as exc:
        raise ValueError(f"{name} is not a date and time ({exc}), got {text!r}") from None
    moments = clock_moments(wall, zone)
    if not moments:
        raise ValueError(f"{name}: the clocks in {zone} skipped {wall:%Y-%m-%d %H:%M:%S}")
    abbreviation = match[7]
    if abbreviation:
        named = [m for m in moments if m.tzname().casefold() == abbreviation.casefold()]
        if not named:
            shown = " or ".join(m.tzname() for m in moments)
            raise ValueError(
                f"{name}: the clocks in {zone} showed {shown} then, not {abbreviation}"
            )
        moments = named
    return moments[-1] if latest else moments[0]


def history_range(params: QueryDict, now: datetime) -> TimeRange:
    """The range the query asks for: ``from`` and ``to`` when either is given (``from``
    defaults to 12 hours before ``to``, ``to`` to now), else ``range``, one of ``RANGES``
    back from ``now`` (default ``12h``). From and to win, so that times typed into the
    form are never ignored for the menu's choice. Whole seconds, outward, so that the
    range as the page prints it (and its page links carry it) holds every alarm it found.
    ``ValueError`` naming the parameter."""
    key = params.get("range", "").strip() or DEFAULT_RANGE
    if key not in RANGES and key != CUSTOM_RANGE:
        choices = ", ".join([*RANGES, CUSTOM_RANGE])
        raise ValueError(f"range must be one of {choices}, got {key!r}")
    given = {name: params.get(name, "").strip() for name in ("from", "to")}
    if any(given.values()) or key == CUSTOM_RANGE:
        key, label = CUSTOM_RANGE, "from and to"
        end = parse_local_time(given["to"], "to", latest=True) if given["to"] else now
        if given["from"]:
            start = parse_local_time(given["from"], "from", latest=False)
        else:
            start = end - RANGES[DEFAULT_RANGE][1]
        if start >= end:
            raise ValueError(f"from ({local_time(start)}) must be before to ({local_time(end)})")
    else:
        label, span = RANGES[key]
        start, end = now - span, now
    start = start.replace(microsecond=0)
    if key == CUSTOM_RANGE and given["to"]:
        # "to" is read to the second and holds that second, as the page prints it: "to
        # 06:00:00" holds an alarm raised at 06:00:00.4
        end += timedelta(seconds=1)
    elif end.microsecond:
        end = end.replace(microsecond=0) + timedelta(seconds=1)
    return TimeRange(start, end, key, label)


def choice(params: QueryDict, name: str, choices) -> str:
    """The query's ``name``: empty (all) or one of ``choices``, else ``ValueError``."""
    value = params.get(name, "").strip()
    if value and value not in choices.values:
        raise ValueError(f"{name} must be one of {', '.join(choices.values)}, got {value!r}")
    return value


def local_time(moment: datetime) -> str:
    """As the pages print times: "2026-07-01 22:00:05 CEST" (the current zone)."""
    return timezone.localtime(moment).strftime(TIME_FORMAT)


def event_time(alarm: Alarm) -> datetime | None:
    """When the alarm's event happened: the sample the rule recorded (``details.sample``,
    the one the review link opens at, ``notifications.event_sample``) as clock time through
    its recording. None without a recording or a recorded sample (an alarm of a silent
    device; rules before the sample was recorded): then only the raise time is known."""
    recording = alarm.recording
    if recording is None or "sample" not in (alarm.details or {}):
        return None
    offset_s = event_sample(alarm) / recording.sampling_rate_hz
    return recording.started_at + timedelta(seconds=offset_s)


def format_duration(seconds: float) -> str:
    """A duration as a row has room for it: "45 s", "12 min 5 s", "3 h 4 min"."""
    total_s = max(0, math.floor(seconds))
    hours, rest = divmod(total_s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def history_row(alarm: Alarm, now: datetime, time_range: TimeRange) -> dict:
    """What a row shows of an alarm; reads no row beyond the alarm's recording and
    acknowledging user (select them with it)."""
    event_at = event_time(alarm)
    if alarm.resolved_at is not None:
        lasted = format_duration((alarm.resolved_at - alarm.raised_at).total_seconds())
    else:
        lasted = format_duration((now - alarm.raised_at).total_seconds())
    return {
        "alarm": alarm,
        "event_at": event_at,
        # how long after its event the alarm was raised (the rule's look-ahead, the analysis'
        # delay): the reason the two times differ
        "raised_after": (
            format_duration((alarm.raised_at - event_at).total_seconds())
            if event_at is not None and alarm.raised_at >= event_at
            else ""
        ),
        "lasted": lasted,
        "repeat_of": (alarm.details or {}).get("repeat_of"),
        # listed because it was still active in the range: said, so that 18:50 yesterday in
        # "the last 12 hours" is not read as a typo
        "raised_before_range": alarm.raised_at < time_range.start,
        "review_url": review_path(alarm) if alarm.recording_id is not None else "",
    }


def history_alarms(patient: Patient, time_range: TimeRange, priority: str, kind: str):
    """The patient's alarms active in the range (``AlarmQuerySet.active_during``), newest
    raised first, with what the rows read in the same query: the recording's start, rate and
    end (not its analyzer state, 100 kB and more) and the acknowledging user's name."""
    alarms = Alarm.objects.filter(patient=patient).active_during(time_range.start, time_range.end)
    if priority:
        alarms = alarms.filter(priority=priority)
    if kind:
        alarms = alarms.filter(kind=kind)
    return (
        alarms.select_related("recording", "acknowledged_by")
        .only(
            "id",
            "patient_id",
            "kind",
            "priority",
            "message",
            "state",
            "raised_at",
            "acknowledged_at",
            "resolved_at",
            "details",
            "recording__id",
            "recording__sampling_rate_hz",
            "recording__started_at",
            "recording__end_sample",
            "acknowledged_by__id",
            "acknowledged_by__username",
        )
        .order_by("-raised_at", "-id")
    )


def page_query(time_range: TimeRange, priority: str, kind: str) -> str:
    """The query of the page links: the range as shown, pinned to its from and to, so that
    the next page continues the same list while new alarms come in."""
    query = QueryDict(mutable=True)
    query["from"] = local_time(time_range.start)
    # the end is exclusive, the "to" typed inclusive to the second
    query["to"] = local_time(time_range.end - timedelta(seconds=1))
    if priority:
        query["priority"] = priority
    if kind:
        query["kind"] = kind
    return query.urlencode()


def alarm_history(request, pk: int):
    """The page. A bad parameter shows the form again with the error, status 400."""
    # 404, not 403, for a patient the clinician is not assigned to, as the patient page
    patient = get_object_or_404(Patient.objects.visible_to(request.user), pk=pk)
    now = timezone.now()
    given = {name: request.GET.get(name, "").strip() for name in ("from", "to", "priority", "kind")}
    filters = QueryDict(mutable=True)
    for name in ("priority", "kind"):
        if given[name]:
            filters[name] = given[name]
    context = {
        "patient": patient,
        "ranges": [(key, label) for key, (label, _span) in RANGES.items()],
        "priorities": AlarmPriority.choices,
        "kinds": AlarmKind.choices,
        "time_zone": timezone.get_current_timezone_name(),
        # the range links keep the filters
        "filter_query": filters.urlencode(),
        # the form as it was sent; a menu range rides along hidden, and from and to typed
        # into it win over it (history_range)
        "form": {**given, "range": request.GET.get("range", "").strip()},
    }
    try:
        time_range = history_range(request.GET, now)
        priority = choice(request.GET, "priority", AlarmPriority)
        kind = choice(request.GET, "kind", AlarmKind)
    except ValueError as exc:
        context["error"] = str(exc)
        if context["form"]["range"] not in RANGES:
            context["form"]["range"] = ""
        return render(request, "monitoring/alarm_history.html", context, status=400)
    paginator = Paginator(history_alarms(patient, time_range, priority, kind), HISTORY_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    # the last second the range holds, as "to" reads it (its end is exclusive)
    shown_to = time_range.end - timedelta(seconds=1)
    custom = time_range.key == CUSTOM_RANGE
    context.update(
        {
            "time_range": time_range,
            "shown_to": shown_to,
            "page": page,
            "rows": [history_row(alarm, now, time_range) for alarm in page.object_list],
            "page_query": page_query(time_range, priority, kind),
            "form": {
                "range": "" if custom else time_range.key,
                # a menu range's bounds move with the clock: printed above the table, not
                # put into from and to, where they would pin it
                "from": local_time(time_range.start) if custom else "",
                "to": local_time(shown_to) if custom else "",
                "priority": priority,
                "kind": kind,
            },
        }
    )
    return render(request, "monitoring/alarm_history.html", context)
