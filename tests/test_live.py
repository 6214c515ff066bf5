"""Live websockets (issue 6): the patient stream and the central station (monitoring/consumers.py,
monitoring/live.py), fed through the real ingest path with MIT-BIH samples and analysed eagerly.
"""

import asyncio
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from monitoring import consumers, live
from monitoring.alarms import Condition, acknowledge, apply_conditions
from monitoring.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_UNAUTHENTICATED,
    decimate,
    decimated_rate,
    parse_since_s,
)
from monitoring.ingest import ingest_chunk
from monitoring.models import Alarm, AlarmKind, Device, Episode, Patient, Recording
from monitoring.routing import websocket_urlpatterns
from tests.inference.conftest import physionet_folder
from tests.test_streaming_analysis import MITDB_BASELINE, MITDB_GAIN, mitdb_adc, random_chunks

# (asyncio is marked per test: the module also has plain tests)
pytestmark = pytest.mark.django_db(transaction=True)

RECEIVE_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def record_100():
    """The first 60 s of MIT-BIH 100 (MLII, about 75 bpm) in ADC units, and its rate."""
    return mitdb_adc(physionet_folder("mitdb", "100"), "100", seconds=60.0)


@pytest.fixture
def record_chunks(record_100):
    """The record in chunks of random length (up to 4 s, about 2 s on average), in order."""
    adc, fs_hz = record_100
    return random_chunks(adc, fs_hz, np.random.default_rng(6), max_s=4.0, session="live0001")


async def connect(path: str, user, session=None):
    communicator = WebsocketCommunicator(URLRouter(websocket_urlpatterns), path)
    communicator.scope["user"] = user
    if session is not None:  # as daphne's AuthMiddlewareStack gives it
        communicator.scope["session"] = session
    connected, code = await communicator.connect()
    if not connected:
        # a refused consumer still waits on its channel (with Redis, a blocking read that
        # would hold the test's event loop at teardown): end it as the server would
        await communicator.disconnect()
    return communicator, connected, code


async def drain(communicator, quiet_s: float = 0.3) -> list[dict]:
    """Every message until none arrives for ``quiet_s``."""
    messages = []
    # (a receive that times out would cancel the consumer: ask whether anything came first)
    while not await communicator.receive_nothing(timeout=quiet_s):
        messages.append(await communicator.receive_json_from())
    return messages


async def close_code(communicator) -> int:
    """The code the consumer closes with next (any messages before the close are skipped)."""
    while True:
        output = await communicator.receive_output(timeout=RECEIVE_TIMEOUT_S)
        if output["type"] == "websocket.close":
            return output.get("code")


async def publish_status(patient_id: int) -> None:
    """A status to a patient's group, as live.publish_analysis sends it."""
    message = {"type": "status", "hr_bpm": 70.0, "rhythm": None, "alarm": None}
    await get_channel_layer().group_send(
        live.patient_group(patient_id),
        {"type": "live.status", "patient": patient_id, "message": message},
    )


def deliver(device_pk: int, chunk) -> None:
    """One chunk through the ingest path; the commit publishes it and runs the analysis."""
    with transaction.atomic():
        ingest_chunk(Device.objects.get(pk=device_pk), chunk)


async def deliver_all(device, chunks) -> None:
    for chunk in chunks:
        await database_sync_to_async(deliver)(device.pk, chunk)


def samples_by_index(messages: list[dict], kind: str = "samples") -> dict[int, float]:
    """Sample index -> value over the messages of one kind, checking overlaps agree."""
    values = {}
    for message in messages:
        if message["type"] != kind:
            continue
        for offset, value in enumerate(message["samples_mv"]):
            index = message["first_sample"] + offset
            assert values.setdefault(index, value) == value
    return values


# --- Access -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_anonymous_users_are_refused_on_both_streams(patient):
    for path in (f"/ws/patients/{patient.pk}/", "/ws/station/"):
        communicator, connected, code = await connect(path, AnonymousUser())
        assert (connected, code) == (False, CLOSE_UNAUTHENTICATED)


@pytest.mark.asyncio
async def test_a_clinician_sees_only_assigned_patients(clinician, patient, other_patient):
    communicator, connected, code = await connect(f"/ws/patients/{other_patient.pk}/", clinician)
    assert (connected, code) == (False, CLOSE_FORBIDDEN)
    communicator, connected, code = await connect("/ws/patients/999999/", clinician)
    assert (connected, code) == (False, CLOSE_FORBIDDEN)

    communicator, connected, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    assert connected
    hello = await communicator.receive_json_from()
    assert hello["type"] == "hello" and hello["patient"]["id"] == patient.pk
    assert hello["patient"]["hr_high_limit_bpm"] == patient.hr_high_limit_bpm
    assert hello["recording"] is None  # no device recording yet
    await communicator.disconnect()

    station, connected, _ = await connect("/ws/station/", clinician)
    assert connected
    hello = await station.receive_json_from()
    assert [tile["id"] for tile in hello["patients"]] == [patient.pk]
    await station.disconnect()


@pytest.mark.asyncio
async def test_staff_see_every_admitted_patient(staff_user, patient, other_patient):
    await database_sync_to_async(type(patient).objects.create)(
        mrn="MRN-003", name="Discharged", is_active=False
    )
    communicator, connected, _ = await connect(f"/ws/patients/{other_patient.pk}/", staff_user)
    assert connected
    await communicator.disconnect()
    station, connected, _ = await connect("/ws/station/", staff_user)
    hello = await station.receive_json_from()
    assert sorted(tile["id"] for tile in hello["patients"]) == sorted(
        [patient.pk, other_patient.pk]
    )
    await station.disconnect()


@pytest.mark.asyncio
async def test_pings_are_answered(clinician, patient):
    communicator, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    await drain(communicator)
    await communicator.send_json_to({"type": "ping", "id": "x1"})
    assert await communicator.receive_json_from() == {"type": "pong", "id": "x1"}
    await communicator.disconnect()


# --- Access taken away while a socket is open --------------------------------------------


@pytest.mark.asyncio
async def test_unassigning_closes_the_patient_stream_at_once(clinician, patient):
    stream, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    await drain(stream)
    started = time.monotonic()
    # (admin saves the care team with .set(), which removes through the same signal)
    await database_sync_to_async(patient.clinicians.remove)(clinician)
    assert await close_code(stream) == CLOSE_FORBIDDEN
    # the live.revoke sent on commit, not the periodic recheck (10 s)
    assert time.monotonic() - started < consumers.LIVE_RECHECK_S / 2
    await stream.disconnect()


@pytest.mark.asyncio
async def test_the_periodic_recheck_catches_what_no_revoke_announced(
    clinician, patient, monkeypatch
):
    stream, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    await drain(stream)
    # a removal that sends no signal (a raw delete of the assignment row)
    await database_sync_to_async(
        Patient.clinicians.through.objects.filter(patient=patient, user=clinician).delete
    )()
    # within LIVE_RECHECK_S of the last check the socket is not asked again...
    await publish_status(patient.pk)
    assert (await stream.receive_json_from(timeout=RECEIVE_TIMEOUT_S))["type"] == "status"
    # ...after it, the next group message (or ping) re-checks and closes
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)
    await publish_status(patient.pk)
    assert await close_code(stream) == CLOSE_FORBIDDEN
    await stream.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("change", ["unassign", "discharge"])
async def test_the_station_drops_a_patient_taken_away(clinician, patient, change):
    kept = await database_sync_to_async(Patient.objects.create)(
        mrn="MRN-003", name="Still Assigned", ward="A", bed="3"
    )
    await database_sync_to_async(kept.clinicians.add)(clinician)
    station, _, _ = await connect("/ws/station/", clinician)
    hello = (await drain(station))[0]
    assert [tile["id"] for tile in hello["patients"]] == [patient.pk, kept.pk]

    if change == "unassign":
        await database_sync_to_async(patient.clinicians.remove)(clinician)
    else:
        patient.is_active = False
        await database_sync_to_async(patient.save)()
    hello = await station.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert hello["type"] == "hello"
    assert [tile["id"] for tile in hello["patients"]] == [kept.pk]
    # the station left the patient's group: its messages no longer come
    await publish_status(patient.pk)
    await publish_status(kept.pk)
    messages = await drain(station)
    assert [(m["type"], m["patient"]) for m in messages] == [("status", kept.pk)]
    await station.disconnect()


@pytest.mark.asyncio
async def test_the_station_picks_up_a_new_assignment_at_the_recheck(
    clinician, patient, other_patient, monkeypatch
):
    station, _, _ = await connect("/ws/station/", clinician)
    await drain(station)
    await database_sync_to_async(other_patient.clinicians.add)(clinician)
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)
    await station.send_json_to({"type": "ping", "id": 1})
    messages = await drain(station)
    hellos = [m for m in messages if m["type"] == "hello"]
    assert [tile["id"] for tile in hellos[0]["patients"]] == [patient.pk, other_patient.pk]
    assert messages[-1] == {"type": "pong", "id": 1}
    await publish_status(other_patient.pk)
    assert (await station.receive_json_from(timeout=RECEIVE_TIMEOUT_S))["patient"] == (
        other_patient.pk
    )
    await station.disconnect()


@pytest.mark.asyncio
async def test_a_quiet_station_drops_a_patient_at_its_next_ping(
    clinician, patient, other_patient, monkeypatch
):
    """No patient streams, so no group message comes: the ping station.js sends every 25 s
    is what re-checks the assignments (here one removed without a signal, a raw delete)."""
    await database_sync_to_async(other_patient.clinicians.add)(clinician)
    station, _, _ = await connect("/ws/station/", clinician)
    hello = (await drain(station))[0]
    assert [tile["id"] for tile in hello["patients"]] == [patient.pk, other_patient.pk]
    await database_sync_to_async(
        Patient.clinicians.through.objects.filter(patient=other_patient, user=clinician).delete
    )()
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)
    await station.send_json_to({"type": "ping", "id": 7})
    messages = await drain(station)
    assert [tile["id"] for tile in messages[0]["patients"]] == [patient.pk]
    assert messages[-1] == {"type": "pong", "id": 7}
    await station.disconnect()


@pytest.mark.asyncio
@pytest.mark.parametrize("path", ["patient", "station", "status"])
@pytest.mark.parametrize("change", ["logout", "deactivate"])
async def test_logging_out_or_deactivating_closes_live_sockets(
    clinician, patient, path, change, monkeypatch
):
    from django.test import Client

    client = Client()
    await database_sync_to_async(client.force_login)(clinician)
    session = await database_sync_to_async(lambda: client.session)()
    address = {
        "patient": f"/ws/patients/{patient.pk}/",
        "station": "/ws/station/",
        "status": "/ws/status/",  # joins no group: only its pings re-check
    }[path]
    socket, connected, _ = await connect(address, clinician, session=session)
    assert connected
    await drain(socket)
    monkeypatch.setattr(consumers, "LIVE_RECHECK_S", 0.0)
    # a valid session passes the recheck
    await socket.send_json_to({"type": "ping", "id": 1})
    assert await socket.receive_json_from(timeout=RECEIVE_TIMEOUT_S) == {"type": "pong", "id": 1}

    if change == "logout":
        await database_sync_to_async(client.logout)()  # deletes the session row
    else:
        clinician.is_active = False
        await database_sync_to_async(clinician.save)()
    await socket.send_json_to({"type": "ping", "id": 2})
    assert await close_code(socket) == CLOSE_UNAUTHENTICATED
    await socket.disconnect()


def test_since_s_is_clamped():
    assert parse_since_s(b"") == 10.0
    assert parse_since_s(b"since_s=42.5") == 42.5
    assert parse_since_s(b"since_s=1e9") == 300.0
    assert parse_since_s(b"since_s=-3") == 0.0
    assert parse_since_s(b"since_s=nan") == 10.0
    assert parse_since_s(b"since_s=abc") == 10.0


# --- Live data after ingest and analysis -------------------------------------------------


@pytest.mark.asyncio
async def test_the_patient_stream_gets_samples_beats_and_a_plausible_status(
    clinician, patient, device, record_chunks, record_100, eager_celery
):
    adc, fs_hz = record_100
    communicator, connected, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    assert connected
    await drain(communicator)
    await deliver_all(device, record_chunks)
    messages = await drain(communicator, quiet_s=1.0)
    await communicator.disconnect()

    recording = await database_sync_to_async(Recording.objects.get)()
    # every sample once, in mV, of the analysed lead
    values = samples_by_index(messages)
    assert sorted(values) == list(range(len(adc)))
    expected_mv = (adc.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    got = np.array([values[i] for i in range(len(adc))])
    assert np.max(np.abs(got - expected_mv)) < 1e-3
    assert all(m["recording"] == recording.pk for m in messages if m["type"] == "samples")

    beats = [beat for m in messages if m["type"] == "beats" for beat in m["beats"]]
    stored = await database_sync_to_async(
        lambda: list(
            recording.beats.order_by("index").values_list("index", "sample", "label", "provisional")
        )
    )()
    assert len(stored) > 40
    # the recording is still open: its last beats are provisional, the others final; each
    # went out as it is stored (a provisional message first for most), in order
    assert 0 < sum(row[3] for row in stored) < 15
    latest = {}
    for b in beats:
        latest[b["index"]] = (b["index"], b["sample"], b["label"], b["provisional"])
    assert sorted(latest.values()) == stored
    final = [(b["index"], b["sample"], b["label"]) for b in beats if not b["provisional"]]
    assert final == [row[:3] for row in stored if not row[3]]

    statuses = [m for m in messages if m["type"] == "status"]
    assert statuses, "a status after analysis rounds"
    last = statuses[-1]
    # MIT-BIH 100 runs at about 75 bpm in normal sinus rhythm
    assert 60.0 < last["hr_bpm"] < 90.0
    assert last["rhythm"] == "Sinus"
    assert last["signal"] == "live"
    assert last["last_sample"] == recording.analysis_cursor


@pytest.mark.asyncio
async def test_closing_the_recording_sends_a_status_without_heart_rate_or_rhythm(
    clinician, patient, device, record_chunks, eager_celery
):
    """The last analysis round of a recording closed (by the device, the silence timeout or a
    new session) says so: the pages show "No signal", not the last heart rate, at once."""
    from monitoring.ingest import close_recording

    await deliver_all(device, record_chunks[:10])
    communicator, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    backlog = await drain(communicator)
    before = [m for m in backlog if m["type"] == "status"][-1]
    assert before["signal"] == "live" and before["hr_bpm"] is not None

    def close():
        with transaction.atomic():
            close_recording(Recording.objects.get(), Recording.ClosedBy.SILENCE)

    await database_sync_to_async(close)()
    messages = await drain(communicator, quiet_s=1.0)
    await communicator.disconnect()
    after = [m for m in messages if m["type"] == "status"][-1]
    assert [after[key] for key in ("hr_bpm", "rhythm", "signal")] == [None, None, "ended"]


@pytest.mark.asyncio
async def test_a_minute_of_normal_sinus_rhythm_raises_no_alarm(
    clinician, patient, device, record_chunks, eager_celery
):
    communicator, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    await drain(communicator)
    await deliver_all(device, record_chunks)
    messages = await drain(communicator, quiet_s=1.0)
    await communicator.disconnect()
    raised = [
        (m["alarm"]["message"], m["alarm"]["state"]) for m in messages if m["type"] == "alarm"
    ]
    assert raised == []


@pytest.mark.asyncio
async def test_a_reconnecting_browser_gets_the_backlog_without_a_hole(
    clinician, patient, device, record_chunks, eager_celery
):
    first, second = record_chunks[:15], record_chunks[15:]
    watcher, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    await deliver_all(device, first)
    # while the browser is away, an alarm is raised and an older one is acknowledged (kinds
    # the analysis rounds of this minute leave alone: a resolved alarm, and PVCs, which need
    # minutes of beats to resolve)
    recording = await database_sync_to_async(Recording.objects.get)()
    older = await database_sync_to_async(Alarm.objects.create)(
        patient=patient,
        kind=AlarmKind.VT,
        priority="critical",
        message="VT 6 beats at 152 bpm",
        state="resolved",
        resolved_at=timezone.now(),
    )
    await database_sync_to_async(acknowledge)(older, clinician)
    condition = Condition(AlarmKind.PVC, True, "PVC 12/min > 10/min", value=12.0, limit=10.0)
    await database_sync_to_async(apply_conditions)(patient, recording, [condition], timezone.now())
    # the browser reconnects asking for 20 s; live data keeps coming while it catches up
    since_s = 20.0
    returning, connected, _ = await connect(
        f"/ws/patients/{patient.pk}/?since_s={since_s}", clinician
    )
    assert connected
    await deliver_all(device, second)
    got = await drain(returning, quiet_s=1.0)
    reference = samples_by_index(await drain(watcher, quiet_s=0.5))
    await returning.disconnect()
    await watcher.disconnect()

    hello = got[0]
    assert hello["type"] == "hello" and hello["recording"]["live"] is True
    fs_hz = hello["recording"]["fs_hz"]
    end_first = first[-1].first_sample + len(first[-1].samples)
    end_all = second[-1].first_sample + len(second[-1].samples)
    values = samples_by_index(got)
    # the backlog covers since_s before the consumer read it (a moment after the reconnect:
    # chunks of the second part may have arrived by then), so it reaches back before it
    start = min(values)
    assert end_first - round(since_s * fs_hz) <= start < end_first
    # from there to the newest sample, every index, no hole
    assert sorted(values) == list(range(start, end_all))
    assert sorted(reference) == list(range(end_all))
    assert all(values[i] == reference[i] for i in values)
    assert not [m for m in got if m["type"] == "gap"]
    # the backlog's beats are the stored beats after ``start``
    backlog_beats = next(m for m in got if m["type"] == "beats")["beats"]
    assert backlog_beats and all(b["sample"] >= start for b in backlog_beats)
    # and the alarms it missed, as stored now (oldest first), before the backlog's status
    first_status = next(i for i, m in enumerate(got) if m["type"] == "status")
    missed = [m["alarm"] for m in got[:first_status] if m["type"] == "alarm"]
    assert [(a["kind"], a["state"], a["acknowledged_by"]) for a in missed] == [
        ("VT", "resolved", "clinician"),
        ("PVC", "raised", None),
    ]


def test_the_backlog_resends_the_last_20_alarms_and_any_older_open_one(patient):
    now = timezone.now()
    still_open = Alarm.objects.create(
        patient=patient,
        kind=AlarmKind.DEVICE_OFFLINE,
        priority="technical",
        message="No data from DEV-001 since 12:00:05 UTC (> 30 s)",
        raised_at=now - timedelta(hours=2),
    )
    resolved = [
        Alarm.objects.create(
            patient=patient,
            kind=AlarmKind.HR_HIGH,
            priority="warning",
            message=f"HR {121 + i} > 120",
            state="resolved",
            raised_at=now - timedelta(minutes=60 - i),
            resolved_at=now - timedelta(minutes=59 - i),
        )
        for i in range(25)
    ]
    messages = consumers.backlog_alarms(patient.pk)
    assert all(m["type"] == "alarm" and "top_alarm" not in m for m in messages)
    assert [m["alarm"]["id"] for m in messages] == [
        still_open.pk,
        *[alarm.pk for alarm in resolved[-20:]],
    ]


@pytest.mark.asyncio
async def test_the_station_gets_a_seamless_decimated_wave_of_visible_patients_only(
    clinician, patient, other_patient, device, record_chunks, record_100, eager_celery
):
    adc, fs_hz = record_100
    other_device = await database_sync_to_async(Device.objects.create)(
        serial="DEV-002", patient=other_patient
    )
    station, _, _ = await connect("/ws/station/", clinician)
    await drain(station)
    await deliver_all(device, record_chunks[:20])
    await deliver_all(other_device, record_chunks[:3])
    messages = await drain(station, quiet_s=1.0)
    await station.disconnect()

    assert {m["patient"] for m in messages} == {patient.pk}
    waves = [m for m in messages if m["type"] == "wave"]
    factor, wave_hz = decimated_rate(fs_hz)
    assert 40.0 <= wave_hz <= 60.0 and all(m["fs_hz"] == wave_hz for m in waves)
    values = samples_by_index(messages, kind="wave")
    n = record_chunks[19].first_sample + len(record_chunks[19].samples)
    expected = (adc[:n:factor].astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    assert sorted(values) == list(range(len(expected)))
    assert np.max(np.abs(np.array([values[i] for i in range(len(expected))]) - expected)) < 1e-3
    assert any(m["type"] == "status" and m["hr_bpm"] for m in messages)


@pytest.mark.asyncio
async def test_a_reconnecting_station_gets_the_missed_wave_without_a_hole(
    clinician, patient, device, record_chunks, record_100, eager_celery
):
    adc, fs_hz = record_100
    before, away, after = record_chunks[:8], record_chunks[8:13], record_chunks[13:18]
    station, _, _ = await connect("/ws/station/?since_s=0", clinician)
    await drain(station)
    await deliver_all(device, before)
    first_visit = await drain(station, quiet_s=1.0)
    await station.disconnect()

    await deliver_all(device, away)  # nobody watching
    # as station.js asks: the seconds since the last message, plus 5
    end_before = before[-1].first_sample + len(before[-1].samples)
    end_away = away[-1].first_sample + len(away[-1].samples)
    since_s = (end_away - end_before) / fs_hz + 5.0
    station, _, _ = await connect(f"/ws/station/?since_s={since_s:.1f}", clinician)
    await deliver_all(device, after)
    second_visit = await drain(station, quiet_s=1.0)
    await station.disconnect()

    assert second_visit[0]["type"] == "hello"
    # the backlog: waves, then the status, then live waves
    first_status = next(i for i, m in enumerate(second_visit) if m["type"] == "status")
    assert first_status > 1 and all(m["type"] == "wave" for m in second_visit[1:first_status])
    factor, _ = decimated_rate(fs_hz)
    first_values = samples_by_index(first_visit, kind="wave")
    second_values = samples_by_index(second_visit, kind="wave")
    # the two visits overlap (the margin) and agree where they do
    assert min(second_values) < max(first_values)
    assert all(first_values[i] == second_values[i] for i in first_values if i in second_values)
    union = {**first_values, **second_values}
    n = after[-1].first_sample + len(after[-1].samples)
    expected = (adc[:n:factor].astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN
    assert sorted(union) == list(range(len(expected)))  # no hole
    assert np.max(np.abs(np.array([union[i] for i in range(len(expected))]) - expected)) < 1e-3


def test_decimation_is_seamless_for_any_chunking(rng):
    signal = list(range(5000))
    for factor in (1, 5, 7):
        first = 0
        out = {}
        while first < len(signal):
            n = int(rng.integers(1, 40))
            start, kept = decimate(first, signal[first : first + n], factor)
            out.update({start + i: v for i, v in enumerate(kept)})
            first += n
        assert [out[i] for i in range(len(out))] == signal[::factor]


def test_the_rhythm_is_the_most_dangerous_ongoing_episode(recording):
    """Ongoing episodes name the rhythm (they end where every beat is known, so a pause is a
    real one: tests/inference/test_streaming.py and the sinus-rhythm test below); an episode
    that ended does not."""

    def rhythm(from_beats):
        return live.rhythm_name(live.ongoing_episode_kinds([recording])[recording.pk], from_beats)

    Episode.objects.create(recording=recording, kind="PAUSE", start_s=40.0, end_s=45.0)
    assert rhythm("Sinus + PVCs") == "Sinus + PVCs"
    assert rhythm(None) is None
    Episode.objects.create(
        recording=recording, kind="PAUSE", start_s=54.0, end_s=60.0, details={"ongoing": True}
    )
    assert rhythm("Sinus") == "PAUSE"
    Episode.objects.create(
        recording=recording, kind="VT", start_s=50.0, end_s=60.0, details={"ongoing": True}
    )
    assert rhythm(None) == "VT"  # the more dangerous


# --- Alarms ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_alarms_reach_the_patient_stream_and_the_station(clinician, patient, recording):
    stream, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    station, _, _ = await connect("/ws/station/", clinician)
    await drain(stream)
    await drain(station)

    condition = Condition(AlarmKind.HR_HIGH, True, "HR 134 > 120", value=134.0, limit=120.0)
    await database_sync_to_async(apply_conditions)(patient, recording, [condition], timezone.now())
    raised = await stream.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert raised["type"] == "alarm"
    assert raised["alarm"]["kind"] == "HR_HIGH" and raised["alarm"]["state"] == "raised"
    assert raised["alarm"]["message"] == "HR 134 > 120"
    on_station = await station.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    alarm_id = raised["alarm"]["id"]
    assert on_station["patient"] == patient.pk and on_station["alarm"]["id"] == alarm_id
    # what the tile shows now: this alarm, not yet acknowledged (it blinks)
    assert on_station["top_alarm"] == {
        "id": alarm_id,
        "kind": "HR_HIGH",
        "priority": "warning",
        "message": "HR 134 > 120",
        "state": "raised",
        "acknowledged_by": None,
        "unacknowledged": 1,
    }

    alarm = await database_sync_to_async(Alarm.objects.get)()
    await database_sync_to_async(acknowledge)(alarm, clinician)
    acked = await stream.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert acked["alarm"]["state"] == "acknowledged"
    assert acked["alarm"]["acknowledged_by"] == "clinician"
    # the station tells an acknowledged alarm from a new one at once: still open (its
    # colour stays), acknowledged by whom, none left unacknowledged (the blink stops)
    on_station = await station.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert on_station["alarm"]["state"] == "acknowledged"
    top = on_station["top_alarm"]
    assert (top["id"], top["state"], top["acknowledged_by"]) == (
        alarm_id,
        "acknowledged",
        "clinician",
    )
    assert top["unacknowledged"] == 0

    later = timezone.now() + timedelta(seconds=30)
    gone = Condition(AlarmKind.HR_HIGH, False)
    await database_sync_to_async(apply_conditions)(patient, recording, [gone], later)
    resolved = await stream.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert resolved["alarm"]["state"] == "resolved" and resolved["alarm"]["resolved_at"]
    assert resolved["top_alarm"] is None  # nothing open: the tile and banner clear
    on_station = await station.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert on_station["alarm"]["state"] == "resolved" and on_station["top_alarm"] is None
    await stream.disconnect()
    await station.disconnect()


def test_a_rounds_alarm_changes_go_out_in_one_send_with_one_top_alarm(
    patient, recording, monkeypatch
):
    """The changes of one evaluation are published once committed, in one callback: one
    top_alarm read and one send for all of them, each message as publish_alarm makes it."""
    top_reads, sends = [], []
    top_alarm = live.top_alarm
    monkeypatch.setattr(live, "top_alarm", lambda pk: top_reads.append(pk) or top_alarm(pk))
    monkeypatch.setattr(live, "_send_all", lambda pairs, what: sends.append(pairs))
    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    conditions = [
        Condition(AlarmKind.HR_HIGH, True, "HR 134 > 120"),
        Condition(AlarmKind.VT, True, "VT run of 6 beats at 170 bpm"),
    ]
    with transaction.atomic():
        apply_conditions(patient, recording, conditions, timezone.now())
        assert sends == []  # nothing before the commit
    assert top_reads == [patient.pk] and len(sends) == 1
    group = live.patient_group(patient.pk)
    assert [(g, event["type"], event["patient"]) for g, event in sends[0]] == [
        (group, "live.alarm", patient.pk),
        (group, "live.alarm", patient.pk),
    ]
    alarms = {a.kind: a for a in Alarm.objects.all()}
    # each alarm, and the patient's top alarm after both changes (the critical VT)
    assert [event["message"] for _, event in sends[0]] == [
        {
            "type": "alarm",
            "alarm": live.alarm_payload(alarms[kind]),
            "top_alarm": top_alarm(patient.pk),
        }
        for kind in ("HR_HIGH", "VT")
    ]
    assert sends[0][0][1]["message"]["top_alarm"]["kind"] == "VT"

    top_reads.clear()
    gone = [Condition(AlarmKind.HR_HIGH, False), Condition(AlarmKind.VT, False)]
    with transaction.atomic():
        apply_conditions(patient, recording, gone, timezone.now())
    assert top_reads == [patient.pk] and len(sends) == 2
    resolved = [event["message"] for _, event in sends[1]]
    assert [m["alarm"]["state"] for m in resolved] == ["resolved", "resolved"]
    # the VT run, over before anyone acknowledged it, latches (critical): the tile keeps it
    assert [(m["top_alarm"]["kind"], m["top_alarm"]["state"]) for m in resolved] == [
        ("VT", "resolved"),
        ("VT", "resolved"),
    ]


@pytest.mark.asyncio
async def test_the_status_names_the_most_urgent_open_alarm(clinician, patient, recording):
    now = timezone.now()
    conditions = [
        Condition(AlarmKind.HR_HIGH, True, "HR 134 > 120"),
        Condition(AlarmKind.VT, True, "VT run of 6 beats at 170 bpm"),
    ]
    await database_sync_to_async(apply_conditions)(patient, recording, conditions, now)
    stream, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    messages = await drain(stream)
    await stream.disconnect()
    status = next(m for m in messages if m["type"] == "status")
    vt = await database_sync_to_async(Alarm.objects.get)(kind=AlarmKind.VT)
    assert status["alarm"] == {
        "id": vt.pk,
        "kind": "VT",
        "priority": "critical",
        "message": "VT run of 6 beats at 170 bpm",
        "state": "raised",
        "acknowledged_by": None,
        "unacknowledged": 2,
    }
    # acknowledged, the critical one still leads (priority first), marked so; the warning
    # nobody acknowledged keeps the count up
    await database_sync_to_async(acknowledge)(vt, clinician)
    top = await database_sync_to_async(live.top_alarm)(patient.pk)
    assert (top["id"], top["acknowledged_by"], top["unacknowledged"]) == (vt.pk, "clinician", 1)


# --- Slow browsers -----------------------------------------------------------------------


async def stalled_channel_does_not_delay(layer, group: str, capacity: int) -> None:
    """A channel in the group that nobody reads (a stalled consumer) fills to ``capacity`` and
    then loses its own messages, while a reading channel gets every message without delay."""
    stalled = await layer.new_channel()
    reader = await layer.new_channel()
    await layer.group_add(group, stalled)
    await layer.group_add(group, reader)
    n_messages = 3 * capacity
    slowest_s = 0.0
    for i in range(n_messages):
        started = time.monotonic()
        await layer.group_send(group, {"type": "live.samples", "i": i})
        slowest_s = max(slowest_s, time.monotonic() - started)
        assert (await asyncio.wait_for(layer.receive(reader), 1.0))["i"] == i
    assert slowest_s < 0.25  # a full channel never makes the sender wait
    kept = []
    while True:
        try:
            kept.append((await asyncio.wait_for(layer.receive(stalled), 0.2))["i"])
        except TimeoutError:
            break
    # the stalled channel lost only its own overflow: it holds ``capacity`` messages in order
    # (the in-memory layer keeps the first ones; channels_redis, whose process-local buffer
    # also serves the reader here, keeps the newest)
    assert len(kept) == capacity and kept == sorted(kept) and set(kept) <= set(range(n_messages))
    await layer.group_discard(group, stalled)
    await layer.group_discard(group, reader)


@pytest.mark.asyncio
async def test_a_stalled_channel_does_not_delay_others_in_memory():
    capacity = 10
    layers = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": capacity},
        }
    }
    with override_settings(CHANNEL_LAYERS=layers):
        await stalled_channel_does_not_delay(get_channel_layer(), "patient-1", capacity)


@pytest.mark.services
@pytest.mark.asyncio
async def test_a_stalled_channel_does_not_delay_others_on_redis(redis_url):
    from channels_redis.core import RedisChannelLayer

    capacity = 10
    layer = RedisChannelLayer(hosts=[redis_url], prefix="test-live", capacity=capacity)
    try:
        await stalled_channel_does_not_delay(layer, f"patient-stall-{time.time_ns()}", capacity)
    finally:
        await layer.flush()


def test_the_configured_layer_has_an_explicit_capacity(settings):
    assert settings.CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] >= 500


def test_publishing_never_raises_and_pauses_when_the_layer_is_down(recording, monkeypatch, caplog):
    class BrokenLayer:
        calls = 0

        async def group_send(self, group, message):
            BrokenLayer.calls += 1
            raise ConnectionError("redis is down")

    monkeypatch.setattr("channels.layers.get_channel_layer", lambda *a: BrokenLayer())
    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    adc = np.zeros((10, 1), np.int16)
    live.publish_samples(recording, 0, adc)  # logs, does not raise
    live.publish_samples(recording, 10, adc)  # skipped: the layer was just found down
    assert BrokenLayer.calls == 1
    assert "could not publish" in caplog.text


@pytest.fixture
def fresh_publisher(monkeypatch):
    """A publisher of the test's own in ``live._publisher``, closed after the test whatever
    happened (a loop left to the garbage collector would warn in some later test)."""
    publisher = live._PublisherLoop()
    monkeypatch.setattr(live, "_publisher", publisher)
    yield publisher
    publisher.close()


@pytest.mark.services
def test_synchronous_code_publishes_to_redis_through_one_kept_loop(
    redis_url, monkeypatch, fresh_publisher
):
    """A Celery worker has no event loop: every send must not open a new one (and a new Redis
    connection pool); a forked child must not reuse its parent's loop thread."""
    from channels_redis.core import RedisChannelLayer

    prefix = f"test-publisher-{time.time_ns()}"
    layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix)
    monkeypatch.setattr("channels.layers.get_channel_layer", lambda *a: layer)
    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    group = "patient-publisher"
    first_loop = None

    async def listen() -> str:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        return channel

    async def received(channel: str, count: int) -> list[dict]:
        return [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(count)]

    try:
        channel = asyncio.run(listen())
        live._send_all([(group, {"type": "live.test", "n": 1})], "test")
        first_loop = live._publisher.loop
        live._send_all([(group, {"type": "live.test", "n": 2})], "test")
        assert live._publisher.loop is first_loop and first_loop.is_running()
        live._publisher._pid = -1  # as after fork: this process did not start that thread
        live._send_all([(group, {"type": "live.test", "n": 3})], "test")
        assert live._publisher.loop is not first_loop
        assert [message["n"] for message in asyncio.run(received(channel, 3))] == [1, 2, 3]
    finally:
        # not layer.flush(): it would close the pools of every loop, from this one
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(f"{prefix}*"):
            client.delete(key)
        # closed, not only stopped: a loop left to the garbage collector is closed (and its
        # Redis pools flushed) from whatever code runs then, maybe inside another running loop
        fresh_publisher.close()
        if first_loop is not None and not first_loop.is_closed():  # the "parent's" loop
            stop_and_close(first_loop)


def test_sends_from_daphnes_request_threads_hop_to_its_loop_others_to_the_kept_one():
    from asgiref.sync import sync_to_async

    assert live._serving_event_loop() is None  # a plain thread (a worker, this test)

    async def serve():
        return asyncio.get_running_loop(), await sync_to_async(
            live._serving_event_loop, thread_sensitive=False
        )()

    running, seen_in_thread = asyncio.run(serve())
    assert seen_in_thread is running


def test_a_layer_that_hangs_holds_a_send_no_longer_than_the_timeout(
    monkeypatch, caplog, fresh_publisher
):
    """Redis accepting connections but not answering must not hold ingest (daphne's request
    thread, which hops to daphne's loop) or a worker (the kept loop) for its socket timeout."""
    from asgiref.sync import sync_to_async

    class HangingLayer:
        async def group_send(self, group, message):
            await asyncio.sleep(3600)

    monkeypatch.setattr("channels.layers.get_channel_layer", lambda *a: HangingLayer())
    monkeypatch.setattr(live, "PUBLISH_TIMEOUT_S", 0.2)
    sends = [("patient-1", {"type": "live.test"})]
    started = time.monotonic()

    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    live._send_all(sends, "from a worker")  # no event loop here: the kept loop
    assert time.monotonic() - started < 1.0  # the coroutine's own limit, not the wait's

    async def from_daphne():
        await sync_to_async(live._send_all, thread_sensitive=False)(sends, "from daphne")

    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    asyncio.run(from_daphne())

    assert time.monotonic() - started < 2.0
    assert "could not publish from a worker" in caplog.text
    assert "could not publish from daphne" in caplog.text


def stop_and_close(loop: asyncio.AbstractEventLoop) -> None:
    """Stop a loop running in another thread and close it once it has stopped."""
    loop.call_soon_threadsafe(loop.stop)
    deadline = time.monotonic() + 5
    while loop.is_running() and time.monotonic() < deadline:
        time.sleep(0.01)
    loop.close()


def test_the_kept_loop_is_closed_if_its_thread_died_and_a_parents_loop_is_kept_not_closed():
    publisher = live._PublisherLoop()
    loops = []

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    try:
        loops.append(publisher.run(where, 5))
        assert publisher.run(where, 5) is loops[0]  # kept
        loops[0].call_soon_threadsafe(loops[0].stop)  # its thread ends, as if it had died
        publisher._thread.join(5)
        loops.append(publisher.run(where, 5))
        assert loops[1] is not loops[0] and loops[0].is_closed()  # closed here, not by the GC
        publisher._pid = -1  # as after fork: the loop is the parent's
        loops.append(publisher.run(where, 5))
        assert loops[2] is not loops[1] and not loops[1].is_closed()
        assert loops[1] in publisher._kept
        publisher.close()
        assert loops[2].is_closed() and publisher.loop is None
    finally:
        publisher.close()
        for loop in loops:
            if not loop.is_closed():  # the test owns the "parent's" loop too
                stop_and_close(loop)


def test_an_old_loop_that_fails_to_close_is_logged_and_publishing_goes_on(caplog):
    publisher = live._PublisherLoop()

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    first = publisher.run(where, 5)
    try:
        first.call_soon_threadsafe(first.stop)  # its thread ends, as if it had died
        publisher._thread.join(5)

        def refuse():  # as channels_redis's close when its flush fails
            raise RuntimeError("flush failed")

        first.close = refuse
        second = publisher.run(where, 5)  # a new loop all the same, nothing raised
        assert second is not first and second.is_running()
        assert "could not close the live publisher's old event loop" in caplog.text
    finally:
        publisher.close()
        del first.close  # the loop's own close again
        first.close()


def test_closing_the_kept_loop_lets_a_send_in_flight_finish():
    """close() while another thread's send is on the loop (a worker publishing while the
    process shuts down): the send completes. It used to be stopped half-way, and its caller
    waited out the whole timeout, logged a failure and paused publishing."""
    publisher = live._PublisherLoop()
    on_the_loop = threading.Event()
    outcome = {}

    async def slow_send() -> str:
        on_the_loop.set()
        await asyncio.sleep(0.2)  # a group send waiting on Redis
        return "sent"

    def worker() -> None:
        try:
            outcome["result"] = publisher.run(slow_send, 5)
        except Exception as exc:  # noqa: BLE001 - the test reports what came out
            outcome["error"] = repr(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert on_the_loop.wait(5)
        loop = publisher.loop
        publisher.close()
        thread.join(10)
        assert outcome == {"result": "sent"}
        assert loop.is_closed() and publisher.loop is None
    finally:
        thread.join(10)
        publisher.close()


@pytest.mark.django_db
def test_the_current_recording_is_the_one_opened_last_not_the_one_started_last(patient, device):
    """A recording's start is dated back to its sample 0, so a replacement device switched on
    before the first one's recording began opens a recording that starts earlier: the pages
    and the live stream must follow the one opened last."""
    now = timezone.now()
    fields = dict(patient=patient, device=device, source=Recording.Source.DEVICE)
    fields.update(sampling_rate_hz=250, gain_adc_per_mv=200, n_channels=1, lead_names=["I"])
    first = Recording.objects.create(started_at=now - timedelta(minutes=1), **fields)
    second = Recording.objects.create(started_at=now - timedelta(minutes=5), **fields)
    assert live.live_recording(patient.pk) == second
    assert live.current_recording(patient.pk) == second
    for recording in (first, second):
        recording.status = Recording.Status.CLOSED
        recording.save()
    assert live.current_recordings([patient.pk]) == {patient.pk: second}


@pytest.mark.django_db
def test_a_critical_alarm_over_before_anyone_acknowledged_it_stays_on_the_tile(
    clinician, patient, recording, client, settings
):
    """Critical alarms latch: a VT run that stopped by itself is escalated until someone
    acknowledges it (notifications.escalation_due), so the tile and banner show it until then,
    marked over; a warning that resolved does not stay."""
    now = timezone.now()
    for kind, message in ((AlarmKind.VT, "VT 6 beats at 152 bpm"), (AlarmKind.HR_HIGH, "HR 130")):
        apply_conditions(patient, recording, [Condition(kind, True, message)], now)
        apply_conditions(patient, recording, [Condition(kind, False)], now + timedelta(seconds=90))
    vt = Alarm.objects.get(kind=AlarmKind.VT)
    assert vt.state == "resolved"
    top = live.top_alarm(patient.pk)
    assert (top["id"], top["state"], top["unacknowledged"]) == (vt.pk, "resolved", 1)
    client.force_login(clinician)
    station = client.get("/station/").content.decode()
    assert "VT 6 beats at 152 bpm (over, not acknowledged)" in station
    assert f'class="tile critical" id="tile-{patient.pk}"' in station  # it blinks

    # an open warning now: the latched critical alarm still comes first
    apply_conditions(patient, recording, [Condition(AlarmKind.HR_HIGH, True, "HR 131")], now)
    assert live.top_alarm(patient.pk)["id"] == vt.pk
    assert live.top_alarm(patient.pk)["unacknowledged"] == 2

    acknowledge(vt, clinician)
    top = live.top_alarm(patient.pk)
    assert top["kind"] == "HR_HIGH" and top["state"] == "raised"  # the latched one is done

    # not for ever: once its messages would be given up, it no longer latches
    other = Alarm.objects.create(
        patient=patient,
        kind=AlarmKind.PAUSE,
        priority="critical",
        message="pause 4 s",
        state="resolved",
        latches=True,
        raised_at=now - timedelta(seconds=settings.NOTIFY_GIVE_UP_S + 60),
    )
    assert live.top_alarm(patient.pk)["id"] != other.pk


@pytest.mark.django_db
def test_an_alarm_still_waiting_keeps_its_row_however_many_came_after(
    clinician, patient, recording, client
):
    """The station shows a latched (or open) alarm until someone acknowledges it in the live
    view's list: the page, the reconnect backlog and the API's state=waiting list it even
    when more than RECENT_ALARMS newer ones came after (flapping leads, say)."""
    now = timezone.now()
    vt = Condition(AlarmKind.VT, True, "VT 6 beats at 152 bpm")
    apply_conditions(patient, recording, [vt], now - timedelta(minutes=30))
    apply_conditions(
        patient, recording, [Condition(AlarmKind.VT, False)], now - timedelta(minutes=29)
    )
    latched = Alarm.objects.get(kind=AlarmKind.VT)
    for number in range(live.RECENT_ALARMS + 5):
        Alarm.objects.create(
            patient=patient,
            kind=AlarmKind.LEADS_OFF,
            priority="technical",
            state="resolved",
            raised_at=now - timedelta(minutes=20 - number * 0.1),
        )
    listed = [alarm.pk for alarm in live.alarms_to_list(patient.pk)]
    assert len(listed) == live.RECENT_ALARMS + 1 and listed[-1] == latched.pk
    backlog = [m["alarm"]["id"] for m in consumers.backlog_alarms(patient.pk)]
    assert backlog[0] == latched.pk  # oldest first
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    assert f'id="alarm-{latched.pk}"' in page
    waiting = client.get(f"/api/alarms/?patient={patient.pk}&state=waiting").json()["results"]
    assert [alarm["id"] for alarm in waiting] == [latched.pk]
    acknowledge(latched, clinician)
    assert client.get(f"/api/alarms/?patient={patient.pk}&state=waiting").json()["results"] == []
    assert latched.pk not in [alarm.pk for alarm in live.alarms_to_list(patient.pk)]
