"""Websocket consumers. Every consumer refuses anonymous users before accepting.

The live streams (issue 6; the message contract is in docs/architecture.md, "Live data"):

- ``/ws/patients/<id>/?since_s=S``: :class:`PatientLiveConsumer`, one patient's samples,
  beats, status and alarms, after a backlog of the last ``S`` seconds from the database;
- ``/ws/station/``: :class:`StationConsumer`, every visible admitted patient's status,
  alarms and a waveform decimated to about ``STATION_WAVE_HZ``.

Both listen to the patients' groups that ``monitoring.live`` publishes to.
"""

import math
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from monitoring import live
from monitoring.models import Beat, Patient, Recording, SampleChunk

# Close codes in the 4000-4999 range are ours to define (RFC 6455 section 7.4.2).
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403  # a patient this user may not see (or that does not exist)

DEFAULT_SINCE_S = 10.0
MAX_SINCE_S = 300.0
# The central station draws small tiles: about 50 samples per second are plenty.
STATION_WAVE_HZ = 50.0


class AuthenticatedJsonConsumer(AsyncJsonWebsocketConsumer):
    """Accepts only connections whose Django session belongs to a logged-in user.

    A frame that is not JSON gets an error message back instead of killing the connection.
    """

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
        await self.accept()
        await self.on_authenticated_connect()

    async def refusal_code(self) -> int | None:
        """A close code to refuse an authenticated user with (before accept), or None."""
        return None

    async def on_authenticated_connect(self):
        pass

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.send_json({"type": "error", "error": "expected a JSON text frame"})
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError as exc:
            await self.send_json({"type": "error", "error": f"malformed JSON: {exc}"})
            return
        await self.receive_json(content, **kwargs)


class StatusConsumer(AuthenticatedJsonConsumer):
    """``/ws/status/``: tells the browser who it is connected as and answers pings.

    Pages use it to show whether their live connection is up.
    """

    async def on_authenticated_connect(self):
        await self.send_json({"type": "hello", "user": self.scope["user"].get_username()})

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
        else:
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})


class LiveJsonConsumer(AuthenticatedJsonConsumer):
    """Answers pings like the status socket; anything else from the browser is an error."""

    async def receive_json(self, content, **kwargs):
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong", "id": content.get("id")})
        else:
            await self.send_json({"type": "error", "error": 'expected {"type": "ping"}'})

    async def disconnect(self, code):
        for group in getattr(self, "joined_groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)


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


def parse_since_s(query_string: bytes) -> float:
    """``since_s`` from the query string, clamped to 0..300; the default when absent or bad."""
    values = parse_qs(query_string.decode("latin-1")).get("since_s")
    try:
        since_s = float(values[0]) if values else DEFAULT_SINCE_S
    except ValueError:
        return DEFAULT_SINCE_S
    if not math.isfinite(since_s):
        return DEFAULT_SINCE_S
    return min(MAX_SINCE_S, max(0.0, since_s))


def backlog_messages(patient_id: int, since_s: float) -> tuple[dict, list[dict]]:
    """The hello and the recent past of a patient's current or latest device recording.

    The stored chunks of the last ``since_s`` seconds (up to the last stored sample) become
    "samples" messages (a hole between chunks a "gap"), their beats one "beats" message, then
    the status as stored now.
    """
    patient = Patient.objects.get(pk=patient_id)
    recording = live.current_recording(patient_id)
    hello = {"type": "hello", "patient": patient_payload(patient), "recording": None}
    if recording is None:
        return hello, [live.status_message(None, patient_id)]
    hello["recording"] = {
        "id": recording.pk,
        "fs_hz": recording.sampling_rate_hz,
        "lead": recording.lead_names[recording.analysis_lead],
        "live": recording.status == Recording.Status.LIVE,
    }
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
        messages.append(live.samples_message(recording, first, adc[first - chunk.first_sample :]))
        position = chunk.end_sample
    beats = Beat.objects.filter(recording=recording, sample__gte=start).order_by("index")
    messages.append(live.beats_message(recording, list(beats)))
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

    async def on_authenticated_connect(self):
        group = live.patient_group(self.patient_id)
        await self.channel_layer.group_add(group, self.channel_name)
        self.joined_groups = [group]
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


def station_patients(user) -> list[dict]:
    """Every visible admitted patient with the status as stored now, for the station's hello."""
    tiles = []
    for patient in Patient.objects.visible_to(user).filter(is_active=True).order_by("ward", "bed"):
        recording = live.current_recording(patient.pk)
        status = live.status_message(recording, patient.pk)
        tiles.append(
            {
                "id": patient.pk,
                "name": patient.name,
                "mrn": patient.mrn,
                "ward": patient.ward,
                "bed": patient.bed,
                "hr_bpm": status["hr_bpm"],
                "rhythm": status["rhythm"],
                "alarm": status["alarm"],
                "recording": recording.pk if recording else None,
                # the rate of this tile's "wave" messages
                "fs_hz": decimated_rate(recording.sampling_rate_hz)[1] if recording else None,
            }
        )
    return tiles


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


class StationConsumer(LiveJsonConsumer):
    """``/ws/station/``: every admitted patient the user may see (staff: all).

    The patients are those visible at connect; a patient admitted or assigned later appears
    when the browser reconnects.
    """

    async def on_authenticated_connect(self):
        tiles = await database_sync_to_async(station_patients)(self.scope["user"])
        self.joined_groups = []
        for tile in tiles:
            group = live.patient_group(tile["id"])
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined_groups.append(group)
        await self.send_json({"type": "hello", "patients": tiles})

    async def live_samples(self, event):
        message = event["message"]
        factor, fs_hz = decimated_rate(message["fs_hz"])
        first, samples = decimate(message["first_sample"], message["samples_mv"], factor)
        if not samples:
            return
        await self.send_json(
            {
                "type": "wave",
                "patient": event["patient"],
                "recording": message["recording"],
                "first_sample": first,
                "fs_hz": fs_hz,
                "samples_mv": samples,
            }
        )

    async def live_beats(self, event):
        pass  # the station shows no beat labels

    async def live_status(self, event):
        await self.send_json({**event["message"], "patient": event["patient"]})

    async def live_alarm(self, event):
        await self.send_json({**event["message"], "patient": event["patient"]})
