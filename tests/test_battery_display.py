"""The device's battery charge where staff look (docs/dashboard.md, "Battery"): the live status
messages carry it (``battery_pct``, ``battery_low``) while the device's signal comes, the
station's hello tiles too, and the device lists show the last reported charge. Before, the
charge each chunk reported was stored on the device and shown nowhere: the first sign of a
dying wearable was the device-offline alarm after it had died.

The pages' side is tests/test_battery_browser.py."""

from datetime import timedelta

import numpy as np
import pytest
from channels.db import database_sync_to_async
from django.db import transaction
from django.utils import timezone

from monitoring import consumers, live
from monitoring.ingest import ingest_chunk
from monitoring.models import Device, Patient, Recording, SampleChunk
from tests.test_device_ingest import make_chunk
from tests.test_live import connect, drain
from tests.test_station_queries import hello_queries


def live_recording(patient, device, age_s: float = 0.0, lead_off: bool = False) -> Recording:
    """A live recording of ``device`` for ``patient`` whose last chunk came ``age_s`` ago."""
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        last_chunk_at=timezone.now() - timedelta(seconds=age_s),
    )
    chunk = SampleChunk.from_samples(recording, 0, 0, np.zeros(250, np.int16))
    chunk.lead_off = lead_off
    chunk.save()
    return recording


def set_charge(device, battery_pct) -> None:
    Device.objects.filter(pk=device.pk).update(battery_pct=battery_pct, last_seen_at=timezone.now())


def status(patient) -> dict:
    return live.status_message(live.current_recording(patient.pk), patient.pk)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("battery_pct", "low"), [(42, False), (16, False), (15, True), (3, True), (None, False)]
)
def test_a_status_carries_the_charge_and_whether_it_is_low(
    patient, device, battery_pct, low, settings
):
    settings.DEVICE_BATTERY_LOW_PCT = 15
    live_recording(patient, device)
    set_charge(device, battery_pct)
    message = status(patient)
    assert message["signal"] == "live"
    assert (message["battery_pct"], message["battery_low"]) == (battery_pct, low)


@pytest.mark.django_db
def test_a_status_carries_the_charge_while_the_leads_are_off(patient, device):
    live_recording(patient, device, lead_off=True)
    set_charge(device, 42)
    message = status(patient)
    assert (message["signal"], message["battery_pct"]) == ("leads_off", 42)


@pytest.mark.django_db
def test_a_silent_or_closed_recording_says_no_charge(patient, device, settings):
    """A stale charge is the past, as the heart rate is: the status says nothing."""
    recording = live_recording(patient, device, age_s=settings.DEVICE_OFFLINE_S + 5)
    set_charge(device, 42)
    message = status(patient)
    assert (message["signal"], message["battery_pct"], message["battery_low"]) == (
        "stale",
        None,
        False,
    )
    Recording.objects.filter(pk=recording.pk).update(status=Recording.Status.CLOSED)
    message = status(patient)
    assert (message["signal"], message["battery_pct"]) == ("ended", None)


@pytest.mark.django_db
def test_a_device_moved_to_another_patient_gives_the_old_one_no_charge(
    patient, other_patient, device
):
    live_recording(patient, device)
    set_charge(device, 42)
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    assert status(patient)["battery_pct"] is None


@pytest.mark.django_db
def test_the_station_hello_reads_every_tiles_charge_in_one_query(clinician):
    patients = []
    for number in range(6):
        patient = Patient.objects.create(mrn=f"MRN-B{number}", name=f"Patient {number}")
        patient.clinicians.add(clinician)
        device = Device.objects.create(serial=f"DEV-B{number}", patient=patient)
        live_recording(patient, device)
        set_charge(device, 10 * number + 5)
        patients.append(patient.pk)
    two, six = hello_queries(patients[:2]), hello_queries(patients)
    assert len(six) == len(two), "\n".join(sql[:90] for sql in six)
    tiles, _ = consumers.station_backlog(patients, set(), 0.0)
    assert [tile["battery_pct"] for tile in tiles] == [5, 15, 25, 35, 45, 55]
    assert [tile["battery_low"] for tile in tiles] == [True, True, False, False, False, False]


def deliver(device_pk: int, chunk) -> None:
    with transaction.atomic():
        ingest_chunk(Device.objects.get(pk=device_pk), chunk)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_live_streams_carry_the_charge_each_chunk_reports(
    clinician, patient, device, eager_celery
):
    """Through the real path: a chunk's ``battery_pct`` to the device (ingest), the status of
    the analysis round after it to the patient's stream and the station."""
    await database_sync_to_async(deliver)(device.pk, make_chunk(seq=0, battery_pct=42))
    patient_stream, connected, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    assert connected
    station, connected, _ = await connect("/ws/station/", clinician)
    assert connected
    backlog = await drain(patient_stream)
    [backlog_status] = [m for m in backlog if m["type"] == "status"]
    assert (backlog_status["battery_pct"], backlog_status["battery_low"]) == (42, False)
    [hello] = [m for m in await drain(station) if m["type"] == "hello"]
    assert [tile["battery_pct"] for tile in hello["patients"]] == [42]

    # the charge falls: the next round's status says so, to both
    await database_sync_to_async(deliver)(device.pk, make_chunk(seq=1, battery_pct=12))
    for stream in (patient_stream, station):
        statuses = [m for m in await drain(stream, quiet_s=1.0) if m["type"] == "status"]
        assert statuses, "a status after the analysis round"
        assert (statuses[-1]["battery_pct"], statuses[-1]["battery_low"]) == (12, True)
        await stream.disconnect()


@pytest.mark.django_db
def test_the_device_lists_show_the_last_reported_charge(client, staff_user, patient, device):
    client.force_login(staff_user)
    recording = live_recording(patient, device)  # its last chunk came now
    set_charge(device, 42)
    for url in ("/manage/", f"/patients/{patient.pk}/"):
        page = client.get(url).content.decode()
        assert '<span class="battery">42 %</span>' in page, url
    set_charge(device, 12)
    for url in ("/manage/", f"/patients/{patient.pk}/"):
        page = client.get(url).content.decode()
        assert '<span class="battery low">12 %</span>' in page, url
    # no chunk for longer than the device-offline limit: greyed, and said to be the past
    Recording.objects.filter(pk=recording.pk).update(
        last_chunk_at=timezone.now() - timedelta(hours=2)
    )
    for url in ("/manage/", f"/patients/{patient.pk}/"):
        page = client.get(url).content.decode()
        assert '<span class="battery stale">12 % · last reported</span>' in page, url
    # never reported
    Device.objects.filter(pk=device.pk).update(battery_pct=None)
    page = client.get("/manage/").content.decode()
    assert '<td class="battery-cell">—</td>' in page


@pytest.mark.django_db
def test_a_token_check_does_not_make_an_old_charge_current(
    client, staff_user, patient, device, device_token
):
    """The charge comes only with a chunk: its freshness is that of the device's newest chunk,
    not ``last_seen_at``, which the token check (``GET /api/device/v1/self/``) refreshes too.
    Until 2026-12-08 a device that only checked its token showed a 2-hour-old charge as
    current."""
    client.force_login(staff_user)
    recording = live_recording(patient, device, age_s=7200.0)
    set_charge(device, 12)
    Device.objects.filter(pk=device.pk).update(last_seen_at=timezone.now() - timedelta(hours=2))
    response = client.get("/api/device/v1/self/", HTTP_AUTHORIZATION=f"Device {device_token}")
    assert response.status_code == 200
    device.refresh_from_db()
    assert (timezone.now() - device.last_seen_at).total_seconds() < 60
    for url in ("/manage/", f"/patients/{patient.pk}/"):
        page = client.get(url).content.decode()
        assert '<span class="battery stale">12 % · last reported</span>' in page, url
    # a chunk now: current again
    Recording.objects.filter(pk=recording.pk).update(last_chunk_at=timezone.now())
    page = client.get("/manage/").content.decode()
    assert '<span class="battery low">12 %</span>' in page


@pytest.mark.django_db
def test_the_device_lists_read_the_newest_chunks_in_one_query(
    patient, device, django_assert_num_queries
):
    """The newest chunk of each device, over all its recordings, in one query however many."""
    others = [Device.objects.create(serial=f"DEV-{k:03d}", battery_pct=50) for k in range(2, 6)]
    set_charge(device, 42)
    live_recording(patient, device, age_s=7200.0)
    live_recording(patient, device, age_s=5.0)  # the newest decides
    live_recording(patient, others[0], age_s=7200.0)
    devices = Device.objects.order_by("serial")
    with django_assert_num_queries(2):  # the devices, their newest chunks
        listed = live.with_battery(devices)
    current = {listed_device.serial: listed_device.battery["current"] for listed_device in listed}
    assert current == {
        "DEV-001": True,
        "DEV-002": False,
        "DEV-003": False,
        "DEV-004": False,
        "DEV-005": False,
    }
