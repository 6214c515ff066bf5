"""Websocket consumers. Every consumer refuses anonymous users before accepting.

The live streams (issue 6; the message contract is in docs/architecture.md, "Live data"):

- ``/ws/patients/<id>/?since_s=S``: :class:`PatientLiveConsumer`, one patient's samples,
  beats, status and alarms, after a backlog of the last ``S`` seconds from the database (and
  the patient's recent alarms);
- ``/ws/station/?since_s=S``: :class:`StationConsumer`, every visible admitted patient's
  status, alarms and a waveform decimated to about ``STATION_WAVE_HZ``, after the decimated
  waveform of the last ``S`` seconds.

Both listen to the patients' groups that ``monitoring.live`` publishes to.

Access is not only checked at connect: an open socket (these two and ``/ws/status/``)
re-checks it (the session still exists, the user is still active, the patient still visible)
at most every ``LIVE_RECHECK_S`` seconds when a group message or a ping arrives, and at once
when a ``live.revoke`` event reaches the patient's group, which :func:`connect_revoke_signals`
sends when a clinician is unassigned or a patient discharged. The recheck of these two also
renews the session (``SESSION_IDLE_S``, ``monitoring.sessions``): an open live view or central
station is activity, and a wall display never signs itself out while showing patients.

Browsers only ever send small pings: a frame over ``MAX_FRAME_BYTES`` closes the socket with
1009. However a consumer ends (closed, refused, or killed by an exception), its channel leaves
every group it joined, so that no group keeps queueing messages for a dead socket.
"""

import logging
import math
import time
from importlib import import_module
from types import SimpleNamespace
from urllib.parse import parse_qs

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.db import transaction
from django.db.models.signals import m2m_changed, post_save

from monitoring import live
from monitoring.models import Beat, Patient, Recording, SampleChunk

logger = logging.getLogger(__name__)

# Close codes in the 4000-4999 range are ours to define (RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403  # a patient this user may not see (or that does not exist)
# RFC 6455 section 7.4.1: "a message that is too big for it to process"
CLOSE_TOO_BIG = 1009

# The largest frame (text or binary) a browser may send. The pages send only pings
# (livesocket.js: ``{"type": "ping", "id": <ms timestamp>}``, about 40 bytes): a bigger frame is
# not from them, and is not worth parsing. 1009 tells the client why the socket closed.
MAX_FRAME_BYTES = 1024

DEFAULT_SINCE_S = 10.0
MAX_SINCE_S = 300.0
# The central station draws small tiles: about 50 samples per second are plenty.
STATION_WAVE_HZ = 50.0
# A station tile shows 6 s of signal: a longer backlog would be read and sent for nothing.
STATION_MAX_SINCE_S = 30.0
# How stale an open socket's access may get: a clinician unassigned, a user logged out or
# deactivated stops receiving within this (at the next message or ping after it; at once
# when a ``live.revoke`` comes). One or two queries per socket per recheck.
LIVE_RECHECK_S = settings.LIVE_RECHECK_S


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only connections whose Django session belongs to a logged-in user.

    A frame that is not JSON (or nested too deep to parse) gets an error message back instead of
    killing the connection; one over ``MAX_FRAME_BYTES`` closes it with ``CLOSE_TOO_BIG``.

    Groups joined go in ``joined_groups``: :meth:`__call__` leaves them when the consumer ends,
    whatever ends it.
    """

    stopped = False  # set by stop(): LiveJsonConsumer then handles nothing more

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.joined_groups: list[str] = []

    async def __call__(self, scope, receive, send):
        # Channels leaves groups only in websocket_disconnect, which never runs when a handler
        # raises: the dead socket's channel then stayed in every group it had joined until
        # the layer's group_expiry (a day), and each message to those groups was queued for
        # it. So leave them here, on every way out: a close, an exception (which still
        # propagates: daphne logs it and closes the socket with 1011), a cancellation.
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.leave_groups()

    async def leave_groups(self):
        """Take this socket's channel out of every group it joined (again: a no-op)."""
        groups, self.joined_groups = self.joined_groups, []
        for group in groups:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # Closing before accept makes daphne refuse the handshake with HTTP 403.
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        refusal = await self.refusal_code()
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.access_checked_at = time.monotonic()
        await self.accept()
        await self.on_authenticated_connect()

    async def refusal_code(self) -> int | None:
        """A close code to refuse an authenticated user with (before accept), or None."""
        return None

    async def on_authenticated_connect(self):
        pass

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        size = len(bytes_data or b"") if text_data is None else len(text_data.encode())
        if size > MAX_FRAME_BYTES:
            user = self.scope.get("user")
            logger.warning(
                "websocket %s of %s closed (%s): a %d-byte frame, over MAX_FRAME_BYTES (%d)",
                self.scope.get("path"),
                user.get_username() if user is not None else None,
                CLOSE_TOO_BIG,
                size,
                MAX_FRAME_BYTES,
            )
            await self.stop(CLOSE_TOO_BIG)
            return
        if text_data is None:
            await self.send_json({"type": "error", "error": "expected a JSON text frame"})
            return
        try:
            content = await self.decode_json(text_data)
        except RecursionError:  # json's C parser gives up on deep nesting with this
            await self.send_json({"type": "error", "error": "malformed JSON: nested too deep"})
            return
        except ValueError as exc:
            await self.send_json({"type": "error", "error": f"malformed JSON: {exc}"})
            return
        await self.receive_json(content, **kwargs)

    async def stop(self, code: int):
        """Stop listening and close with ``code``."""
        self.stopped = True
        await self.leave_groups()
        await self.close(code=code)


def user_now(scope, renew_session: bool = False):
    """The scope's user as the database has it now, or None once it may no longer connect.

    With a session (daphne's AuthMiddlewareStack), Django's own check of a request: the session
    row still exists and has not expired (logout deletes it; ``SESSION_IDLE_S`` without
    activity expires it), names this user, its password hash still matches, and the backend
    still accepts the user (ModelBackend: is_active). Without one (test communicators set
    ``scope["user"]`` directly), the user must still exist and be active.

    ``renew_session``: the socket counts as activity, and a valid session with less than half
    of its age left is renewed (``monitoring.sessions``; one UPDATE per half age at most).
    """
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return None
    session = scope.get("session")
    if session is not None:
        # a fresh store: the scope's one holds the data it read at connect
        store = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        current = get_user(SimpleNamespace(session=store))
        if not (current.is_authenticated and current.pk == user.pk):
            return None
        if renew_session:
            store.renew_if_due()
        return current
    return get_user_model()._default_manager.filter(pk=user.pk, is_active=True).first()


class LiveJsonConsumer(AuthenticatedJsonConsumer):
    """The live pages' sockets (status, patient, station): answers pings; anything else from
    the browser is an error.

    Before a group message (``live.*``) or a browser frame is handled, access is re-checked if
    the last check is ``LIVE_RECHECK_S`` old, or at once for ``live.revoke``
    (:meth:`recheck_access`, per subclass). A consumer that closed drops everything after.
    """

    async def dispatch(self, message):
        kind = message.get("type", "")
        if kind.startswith("live.") or kind == "websocket.receive":
            if self.stopped:
                return
            due = time.monotonic() - getattr(self, "access_checked_at", 0.0) >= LIVE_RECHECK_S
            if kind == "live.revoke" or due:
                self.access_checked_at = time.monotonic()
                await self.recheck_access()
                if self.stopped:
                    return
        await super().dispatch(message)

    async def recheck_access(self):
        """Close, or narrow what is sent, if the user's access changed since connect."""

    async def live_revoke(self, event):
        pass  # the access was re-checked in dispatch

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
        else:
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})


class StatusConsumer(LiveJsonConsumer):
    """``/ws/status/``: tells the browser who it is connected as and answers pings.

    Pages use it to show whether their live connection is up. Like the live streams it
    re-checks the session at a ping ``LIVE_RECHECK_S`` after the last check: once logged out or
    deactivated, the socket closes with 4401 (it joins no group, so no revoke reaches it).
    Unlike them it never renews the session: every page has this socket (the top bar's badge),
    and any page left open would otherwise keep a login alive for ever.
    """

    async def on_authenticated_connect(self):
        await self.send_json({"type": "hello", "user": self.scope["user"].get_username()})

    async def recheck_access(self):
        if await database_sync_to_async(user_now)(self.scope) is None:
            await self.stop(CLOSE_UNAUTHENTICATED)


def patient_payload(patient: Patient) -> dict:
    return {
        "id": patient.pk,
        "name": patient.name,
        "mrn": patient.mrn,
        "ward": patient.ward,
        "bed": patient.bed,
        "hr_low_limit_bpm": patient.hr_low_limit_bpm,
        "hr_high_limit_bpm": patient.hr_high_limit_bpm,
    }


def parse_since_s(query_string: bytes, maximum_s: float = MAX_SINCE_S) -> float:
    """``since_s`` from the query string, clamped to 0..maximum_s; the default when absent or
    bad."""
    values = parse_qs(query_string.decode("latin-1")).get("since_s")
    try:
        since_s = float(values[0]) if values else DEFAULT_SINCE_S
    except ValueError:
        return DEFAULT_SINCE_S
    if not math.isfinite(since_s):
        return DEFAULT_SINCE_S
    return min(maximum_s, max(0.0, since_s))


def backlog_samples(recording: Recording, since_s: float) -> list[dict]:
    """The stored chunks of the last ``since_s`` seconds (up to the last stored sample) as
    "samples" messages, a hole between chunks as a "gap"."""
    start = max(0, recording.end_sample - round(since_s * recording.sampling_rate_hz))
    messages = []
    stored = SampleChunk.objects.filter(recording=recording)
    # the chunk that straddles ``start`` (cut there), then every chunk after it
    straddling = stored.filter(first_sample__lt=start).order_by("-first_sample").first()
    chunks = list(stored.filter(first_sample__gte=start).order_by("first_sample"))
    if straddling is not None:
        chunks.insert(0, straddling)
    position = start
    for chunk in chunks:
        if chunk.end_sample <= position:
            continue
        chunk.recording = recording
        adc = chunk.samples()
        first = max(chunk.first_sample, position)
        if chunk.first_sample > position:
            messages.append(
                {
                    "type": "gap",
                    "recording": recording.pk,
                    "start_sample": position,
                    "end_sample": chunk.first_sample,
                }
            )
        cut = adc[first - chunk.first_sample :]
        messages.append(live.samples_message(recording, first, cut, chunk.lead_off))
        position = chunk.end_sample
    return messages


def backlog_alarms(patient_id: int) -> list[dict]:
    """The patient's recent alarms as "alarm" messages, oldest first: the live view's list
    (``live.alarms_to_list``: the last ``live.RECENT_ALARMS`` and every one still waiting for
    someone), as stored now.

    A browser that was away missed the alarm messages of that time; these rebuild its list
    (raised, acknowledged or resolved meanwhile). They carry no ``top_alarm``: the status
    after them says what is open.
    """
    ordered = reversed(live.alarms_to_list(patient_id))
    return [{"type": "alarm", "alarm": live.alarm_payload(alarm)} for alarm in ordered]


def backlog_messages(patient_id: int, since_s: float) -> tuple[dict, list[dict]]:
    """The hello and the recent past of a patient's current or latest device recording.

    The stored chunks of the last ``since_s`` seconds (up to the last stored sample) become
    "samples" messages (a hole between chunks a "gap"), their beats one "beats" message, then
    the patient's recent alarms (:func:`backlog_alarms`) and the status as stored now.
    """
    patient = Patient.objects.get(pk=patient_id)
    recording = live.current_recording(patient_id)
    hello = {"type": "hello", "patient": patient_payload(patient), "recording": None}
    if recording is None:
        return hello, [*backlog_alarms(patient_id), live.status_message(None, patient_id)]
    hello["recording"] = {
        "id": recording.pk,
        "fs_hz": recording.sampling_rate_hz,
        "lead": recording.analysis_lead_name,
        "live": recording.status == Recording.Status.LIVE,
    }
    start = max(0, recording.end_sample - round(since_s * recording.sampling_rate_hz))
    messages = backlog_samples(recording, since_s)
    beats = Beat.objects.filter(recording=recording, sample__gte=start).order_by("index")
    messages.append(live.beats_message(recording, list(beats)))
    messages += backlog_alarms(patient_id)
    messages.append(live.status_message(recording, patient_id))
    return hello, messages


class PatientLiveConsumer(LiveJsonConsumer):
    """``/ws/patients/<id>/?since_s=S``: one patient, live, after the last ``S`` seconds.

    The consumer joins the patient's group before it reads the backlog, so a chunk that
    commits meanwhile comes live (perhaps also in the backlog: the browser drops samples by
    ``first_sample``) and none falls between the two.
    """

    async def refusal_code(self):
        try:
            self.patient_id = int(self.scope["url_route"]["kwargs"]["patient_id"])
        except (KeyError, ValueError):
            return CLOSE_FORBIDDEN
        visible = await database_sync_to_async(
            Patient.objects.visible_to(self.scope["user"]).filter(pk=self.patient_id).exists
        )()
        return None if visible else CLOSE_FORBIDDEN

    async def recheck_access(self):
        code = await database_sync_to_async(self.access_refusal_now)()
        if code is not None:
            await self.stop(code)

    def access_refusal_now(self) -> int | None:
        user = user_now(self.scope, renew_session=True)  # an open live view is activity
        if user is None:
            return CLOSE_UNAUTHENTICATED
        visible = Patient.objects.visible_to(user).filter(pk=self.patient_id).exists()
        return None if visible else CLOSE_FORBIDDEN

    async def on_authenticated_connect(self):
        group = live.patient_group(self.patient_id)
        self.joined_groups.append(group)  # before the add: a discard of a non-member is harmless
        await self.channel_layer.group_add(group, self.channel_name)
        since_s = parse_since_s(self.scope.get("query_string", b""))
        hello, messages = await database_sync_to_async(backlog_messages)(self.patient_id, since_s)
        await self.send_json(hello)
        for message in messages:
            await self.send_json(message)

    async def live_samples(self, event):
        await self.send_json(event["message"])

    async def live_beats(self, event):
        await self.send_json(event["message"])

    async def live_status(self, event):
        await self.send_json(event["message"])

    async def live_alarm(self, event):
        await self.send_json(event["message"])


def station_patient_ids(user) -> list[int]:
    """The patients a station shows: visible to the user and admitted, by ward and bed."""
    from monitoring.admissions import by_bed

    visible = Patient.objects.visible_to(user).filter(is_active=True)
    # beds in natural order (2 before 10), as the station page renders them
    return [patient.pk for patient in by_bed(visible.only("pk", "ward", "bed", "name"))]


def station_backlog(
    patient_ids: list[int], backlog_ids: set[int], since_s: float
) -> tuple[list[dict], list[dict]]:
    """The station's hello tiles for ``patient_ids`` (the status as stored now; a patient
    deleted meanwhile has none), and for each of ``backlog_ids`` its decimated waveform of the
    last ``since_s`` seconds then its status (the tile's). The tiles cost the same few queries
    however many they are; the waveforms are read per patient."""
    patients = Patient.objects.in_bulk(patient_ids)
    patient_ids = [patient_id for patient_id in patient_ids if patient_id in patients]
    # every tile's recording and status in a few queries, not a few a tile: the hello is sent
    # at connect and at every recheck that changes the patients (tests/test_station_queries.py)
    recordings = live.current_recordings(patient_ids)
    statuses = live.status_messages(recordings)
    tiles, messages = [], []
    for patient_id in patient_ids:
        patient = patients[patient_id]
        recording, status = recordings[patient_id], statuses[patient_id]
        tiles.append(
            {
                "id": patient_id,
                "name": patient.name,
                "mrn": patient.mrn,
                "ward": patient.ward,
                "bed": patient.bed,
                "hr_bpm": status["hr_bpm"],
                "rhythm": status["rhythm"],
                # "live", "stale", "ended" or "none": the tile says "No signal" unless live
                "signal": status["signal"],
                "alarm": status["alarm"],
                # the device's charge while its signal comes (None: the tile hides it)
                "battery_pct": status["battery_pct"],
                "battery_low": status["battery_low"],
                "recording": recording.pk if recording else None,
                # the rate of this tile's "wave" messages
                "fs_hz": decimated_rate(recording.sampling_rate_hz)[1] if recording else None,
            }
        )
        if patient_id not in backlog_ids:
            continue
        if recording is not None and since_s > 0:
            for message in backlog_samples(recording, since_s):
                wave = wave_message(patient_id, message)
                if wave is not None:
                    messages.append(wave)
        messages.append({**status, "patient": patient_id})
    return tiles, messages


def station_patients(user) -> list[dict]:
    """Every visible admitted patient with the status as stored now, for the station's hello."""
    return station_backlog(station_patient_ids(user), set(), 0.0)[0]


def decimated_rate(fs_hz: float) -> tuple[int, float]:
    """The decimation factor towards STATION_WAVE_HZ, and the rate it gives."""
    factor = max(1, round(fs_hz / STATION_WAVE_HZ))
    return factor, fs_hz / factor


def decimate(first_sample: int, samples: list, factor: int) -> tuple[int, list]:
    """Every ``factor``-th sample, on the grid of absolute sample indices.

    The phase is the sample index itself (keep index i when i % factor == 0), so consecutive
    chunks of any length join seamlessly, and a chunk resent or arriving out of order lands on
    the same decimated indices. Returns the first decimated index and the samples.
    """
    offset = (-first_sample) % factor
    return (first_sample + offset) // factor, samples[offset::factor]


def wave_message(patient_id: int, message: dict) -> dict | None:
    """A station "wave" from a "samples" message (live or backlog alike, so they join without
    a seam); None for anything else or when decimation keeps no sample."""
    if message["type"] != "samples":
        return None  # a backlog "gap": the tile blanks samples skipped over by itself
    factor, fs_hz = decimated_rate(message["fs_hz"])
    first, samples = decimate(message["first_sample"], message["samples_mv"], factor)
    if not samples:
        return None
    return {
        "type": "wave",
        "patient": patient_id,
        "recording": message["recording"],
        "first_sample": first,
        "fs_hz": fs_hz,
        "samples_mv": samples,
        "lead_off": message.get("lead_off", False),  # the tile says "Leads off" over them
        "sent_at": message.get("sent_at"),
        # where the chunk ends in the recording's own samples (exclusive), at its own rate: the
        # unit of a status' last_sample, so the tile can tell how far the analysis is behind
        # the signal ("Analysis delayed", docs/dashboard.md)
        "end_sample": message["first_sample"] + len(message["samples_mv"]),
        "recording_fs_hz": message["fs_hz"],
    }


class StationConsumer(LiveJsonConsumer):
    """``/ws/station/?since_s=S``: every admitted patient the user may see (staff: all).

    At connect: a ``hello`` with the tiles, then per patient its decimated waveform of the last
    ``S`` seconds (default 10, at most ``STATION_MAX_SINCE_S``) and its status; then live. As
    the patient stream, it joins the groups before reading that backlog, so nothing falls
    between the two. When a recheck finds the visible patients changed (one unassigned or
    discharged, one assigned or admitted), it leaves or joins their groups and sends a fresh
    ``hello`` with the whole list: the browser drops the tiles not in it.
    """

    async def on_authenticated_connect(self):
        self.patient_ids = []
        since_s = parse_since_s(self.scope.get("query_string", b""), STATION_MAX_SINCE_S)
        patient_ids = await database_sync_to_async(station_patient_ids)(self.scope["user"])
        await self.follow(patient_ids, since_s)

    async def follow(self, patient_ids: list[int], since_s: float):
        """Listen to exactly these patients; send the hello, and the backlog of new ones."""
        added = set(patient_ids) - set(self.patient_ids)
        for patient_id in set(self.patient_ids) - set(patient_ids):
            group = live.patient_group(patient_id)
            await self.channel_layer.group_discard(group, self.channel_name)
            self.joined_groups.remove(group)
        for patient_id in added:
            group = live.patient_group(patient_id)
            self.joined_groups.append(group)
            await self.channel_layer.group_add(group, self.channel_name)
        self.patient_ids = list(patient_ids)
        tiles, messages = await database_sync_to_async(station_backlog)(patient_ids, added, since_s)
        await self.send_json({"type": "hello", "patients": tiles})
        for message in messages:
            await self.send_json(message)

    async def recheck_access(self):
        patient_ids = await database_sync_to_async(self.patient_ids_now)()
        if patient_ids is None:
            await self.stop(CLOSE_UNAUTHENTICATED)
        elif patient_ids != self.patient_ids:
            await self.follow(patient_ids, DEFAULT_SINCE_S)

    def patient_ids_now(self) -> list[int] | None:
        user = user_now(self.scope, renew_session=True)  # an open station is activity
        return None if user is None else station_patient_ids(user)

    async def live_samples(self, event):
        if event["patient"] not in self.patient_ids:
            return  # queued before this patient was dropped
        wave = wave_message(event["patient"], event["message"])
        if wave is not None:
            await self.send_json(wave)

    async def live_beats(self, event):
        pass  # the station shows no beat labels

    async def live_status(self, event):
        if event["patient"] in self.patient_ids:
            await self.send_json({**event["message"], "patient": event["patient"]})

    async def live_alarm(self, event):
        if event["patient"] in self.patient_ids:
            await self.send_json({**event["message"], "patient": event["patient"]})


# --- Revoking live access at once --------------------------------------------------------


def send_revoke(patient_id: int) -> None:
    """A ``live.revoke`` to the patient's group after the commit: its sockets re-check access
    now (the periodic recheck would catch it within ``LIVE_RECHECK_S`` anyway). Never raises."""

    def send():
        from channels.layers import get_channel_layer

        try:
            async_to_sync(get_channel_layer().group_send)(
                live.patient_group(patient_id), {"type": "live.revoke", "patient": patient_id}
            )
        except Exception:
            logger.exception("could not send live.revoke for patient %s", patient_id)

    transaction.on_commit(send)


def _clinicians_changed(sender, instance, action, reverse, pk_set, **kwargs):
    if action not in ("post_remove", "pre_clear"):
        return  # an assignment widens access: a station picks it up at its next recheck
    if not reverse:  # patient.clinicians.remove(user) / .clear()
        send_revoke(instance.pk)
    elif action == "post_remove":  # user.assigned_patients.remove(patient)
        for patient_id in pk_set:
            send_revoke(patient_id)
    else:  # user.assigned_patients.clear(): the patients it had, read before the clear
        for patient_id in instance.assigned_patients.values_list("pk", flat=True):
            send_revoke(patient_id)


def _patient_saved(sender, instance, created, **kwargs):
    if not created and not instance.is_active:
        send_revoke(instance.pk)  # discharged (or edited while discharged: a harmless recheck)


def connect_revoke_signals() -> None:
    """Called from MonitoringConfig.ready, so that every process that changes an assignment
    or discharges a patient (daphne, admin, management commands) sends the revoke."""
    m2m_changed.connect(
        _clinicians_changed, sender=Patient.clinicians.through, dispatch_uid="live-revoke-m2m"
    )
    post_save.connect(_patient_saved, sender=Patient, dispatch_uid="live-revoke-discharge")
