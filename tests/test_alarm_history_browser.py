"""The alarm history in headless Chromium: from the patient page to an alarm of the night and,
through its "ECG" link, to the review page drawn at the event (monitoring/alarm_history.py)."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from inference.synthetic import generate
from monitoring.models import Alarm, SampleChunk
from tests.chromium import log_in, text_of, wait_for, wait_for_review_view

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250.0


def test_the_ecg_link_of_a_nights_alarm_opens_the_review_at_its_event(
    browser, live_server, clinician, patient, recording
):
    ecg = generate(120.0, fs=FS_HZ, seed=7)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    recording.started_at = timezone.now() - timedelta(hours=9)
    recording.end_sample = len(adc)  # the running total the ingest path keeps
    recording.save(update_fields=["started_at", "end_sample"])
    event_s = 60.0
    Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind="PAUSE",
        priority="critical",
        message="Pause 3.7 s",
        raised_at=recording.started_at + timedelta(seconds=event_s + 19),
        state="resolved",
        details={"sample": int(event_s * FS_HZ)},
    )
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/patients/{patient.pk}/")
    browser.find_element("id", "alarm-history").click()
    wait_for(browser, lambda d: "1 alarm" in text_of(d, "history-count"))
    assert "Pause 3.7 s" in text_of(browser, "alarm-history")
    browser.find_element("css selector", "a.ecg-link").click()
    # the e-mail's strip window: 8 s before the event to 4 s after it
    wait_for_review_view(browser, event_s - 8.0, event_s + 4.0)
