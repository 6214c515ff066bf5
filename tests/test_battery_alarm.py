"""BATTERY_LOW: a technical alarm from the charge the device's newest chunk reports
(``battery_pct``). Until 2026-12-07 the charge was stored and shown nowhere: the first sign of a
dying wearable was the device-offline alarm after it had died (an exploratory ward test)."""

import numpy as np
import pytest

from monitoring.alarms import evaluate_alarms
from monitoring.models import AlarmKind, AlarmPriority, Device
from monitoring.protocol import Chunk, encode_json_chunk
from tests.test_alarms import changes_of, move_cursor, open_alarms

pytestmark = pytest.mark.django_db


def set_battery(device, pct):
    Device.objects.filter(pk=device.pk).update(battery_pct=pct)


def test_it_is_raised_at_15_percent_held_until_20_and_then_resolved(recording, device):
    move_cursor(recording, 0)
    for pct, change in [
        (None, []),  # a device that reports no charge
        (60, []),
        (16, []),
        (15, [("raised", AlarmKind.BATTERY_LOW)]),
        (9, []),  # still open: raised once
        (17, []),  # between the limits: as it was (no flapping at 15-16 %)
        (19, []),
        (20, [("resolved", AlarmKind.BATTERY_LOW)]),
        (17, []),  # between the limits again: stays resolved
    ]:
        set_battery(device, pct)
        assert changes_of(evaluate_alarms(recording.pk), AlarmKind.BATTERY_LOW) == change, pct
    set_battery(device, 12)
    evaluate_alarms(recording.pk)
    alarm = open_alarms(recording.patient, AlarmKind.BATTERY_LOW).get()
    assert alarm.priority == AlarmPriority.TECHNICAL
    assert alarm.message == "Battery low (DEV-001): 12 % (<= 15 %); charge or swap it"
    assert (alarm.value, alarm.limit) == (12, 15)


def test_the_limits_are_settings(recording, device, settings):
    settings.DEVICE_BATTERY_LOW_PCT = 30
    settings.DEVICE_BATTERY_RESOLVE_PCT = 40
    move_cursor(recording, 0)
    set_battery(device, 25)
    assert changes_of(evaluate_alarms(recording.pk), AlarmKind.BATTERY_LOW) == [
        ("raised", AlarmKind.BATTERY_LOW)
    ]


def test_a_chunk_reporting_a_low_battery_raises_it_through_the_device_api(
    client, device, device_token, eager_celery, django_capture_on_commit_callbacks
):
    samples = np.zeros((250, 1), dtype=np.int16)
    chunk = Chunk(
        seq=0,
        first_sample=0,
        fs_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=1,
        samples=samples,
        session="batt0001",
        battery_pct=8,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/device/v1/chunks/",
            data=encode_json_chunk(chunk),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Device {device_token}",
        )
    assert response.status_code == 201, response.content
    [alarm] = open_alarms(device.patient, AlarmKind.BATTERY_LOW)
    assert alarm.value == 8
