"""The live view and the central station say "Leads off" over a leads-off trace (Chromium).

While the device says an electrode is off, its samples are no ECG: the pages show a "Leads
off" badge, no heart rate and no rhythm, and grey the trace, as for "No signal"
(docs/dashboard.md, "Leads off"). The samples (``samples``, the station's ``wave``) carry the
chunk's ``lead_off``, so the pages say so with the first such samples, and a status says
"leads_off" too. The test hands the pages these messages as the server would send them (the
server side is tests/test_leads_off.py). Before 2026-12-07 the pages kept the heart rate and
rhythm of the beats before the leads came off, in red, over the flat trace.
"""

import pytest
from django.db import transaction

from monitoring.ingest import ingest_chunk
from monitoring.models import Recording
from tests.chromium import log_in, wait_for
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)
from tests.test_device_ingest import make_chunk
from tests.test_live_browser import eager_daphne, module_service_env  # noqa: F401 (fixtures)
from tests.test_live_old_recording import hand_to_page, samples, sawtooth_mv
from tests.test_live_socket_browser import HALF_OPEN_SOCKETS_JS, wait_for_backlog

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FS_HZ = 250
# a signal silent this long (plus its last chunk's length) is "No signal" (10 s in
# livesocket.js): short here, so that the test sees a leads-off device that then stops
NO_SIGNAL_S = 2
TIMING_JS = HALF_OPEN_SOCKETS_JS + f"\nwindow.CardioSpikeSocketTiming.noSignalS = {NO_SIGNAL_S};"


def leads_off_samples(recording: int, first_s: int, seconds: int, lead_off: bool) -> dict:
    values = [0.0] * (seconds * FS_HZ) if lead_off else sawtooth_mv(seconds * FS_HZ)
    return {**samples(recording, first_s * FS_HZ, values), "lead_off": lead_off}


def status(recording: int, signal: str, hr_bpm=None, rhythm=None, **extra) -> dict:
    return {
        "type": "status",
        "recording": recording,
        "signal": signal,
        "signal_age_s": 0.0,
        "hr_bpm": hr_bpm,
        "rhythm": rhythm,
        "alarm": None,
        **extra,
    }


def shown(driver, selector: str) -> bool:
    return driver.find_element("css selector", selector).is_displayed()


def text(driver, selector: str) -> str:
    return driver.find_element("css selector", selector).text


def test_the_pages_say_leads_off_and_show_no_rate_over_a_leads_off_trace(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    device,
):
    with transaction.atomic():
        ingest_chunk(device, make_chunk(seq=0, n=FS_HZ, session="1ead0ff1"))
    recording = Recording.objects.get().pk
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TIMING_JS})

    # the live view: sinus with a rate, then the leads come off
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
    # the server's hello and backlog (its status has no rate) first: handled after the test's
    # messages, they would rewrite the rate and the signal the test reads
    patient_socket = "/ws/patients/"
    wait_for_backlog(browser, patient_socket)
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 0, 8, lead_off=False))
    hand_to_page(browser, patient_socket, status(recording, "live", 141.0, "TACHY"))
    assert text(browser, "#hr-value") == "141" and text(browser, "#rhythm-value") == "TACHY"
    assert not shown(browser, "#signal-state")

    # the first leads-off samples: at once, before any status says so
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 8, 1, lead_off=True))
    assert shown(browser, "#signal-state") and text(browser, "#signal-state") == "Leads off"
    assert text(browser, "#hr-value") == "--" and text(browser, "#rhythm-value") == "—"
    assert "no-signal" in browser.find_element("id", "live").get_attribute("class")
    assert text(browser, "#recording-info").endswith("· leads off")
    # the status of the round says so too, without a rate
    hand_to_page(browser, patient_socket, status(recording, "leads_off"))
    assert text(browser, "#signal-state") == "Leads off" and text(browser, "#hr-value") == "--"
    # older samples (a backlog's overlap, a late chunk) with the leads on change nothing
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 2, 1, lead_off=False))
    assert text(browser, "#signal-state") == "Leads off"
    # a leads-off device that then stops sending is "No signal"
    wait_for(browser, lambda d: text(d, "#signal-state") == "No signal", timeout_s=NO_SIGNAL_S + 5)
    assert text(browser, "#recording-info").endswith("· no signal")
    # the leads back on: the badge goes, and the next status brings the rate
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 9, 1, lead_off=False))
    assert not shown(browser, "#signal-state")
    assert text(browser, "#recording-info").endswith("· live")
    hand_to_page(browser, patient_socket, status(recording, "live", 72.0, "Sinus"))
    assert text(browser, "#hr-value") == "72"

    # the station: the tile the same way, from its decimated waves and the statuses
    browser.get(f"{eager_daphne}/station/")
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    tile = f"#tile-{patient.pk}"
    wave = {"type": "wave", "patient": patient.pk, "recording": recording, "fs_hz": 50.0}
    station_socket = "/ws/station/"
    wait_for_backlog(browser, station_socket)
    hand_to_page(
        browser,
        station_socket,
        {**wave, "first_sample": 0, "samples_mv": sawtooth_mv(250), "lead_off": False},
    )
    hand_to_page(
        browser, station_socket, status(recording, "live", 141.0, "TACHY", patient=patient.pk)
    )
    assert text(browser, f"{tile} .hr") == "141"
    assert not shown(browser, f"{tile} .signal-badge")
    leads_off_wave = {**wave, "first_sample": 250, "samples_mv": [0.0] * 50, "lead_off": True}
    hand_to_page(browser, station_socket, leads_off_wave)
    assert shown(browser, f"{tile} .signal-badge")
    assert text(browser, f"{tile} .signal-badge") == "Leads off"
    assert text(browser, f"{tile} .hr") == "--" and text(browser, f"{tile} .rhythm") == "—"
    assert "no-signal" in browser.find_element("css selector", tile).get_attribute("class")
    hand_to_page(browser, station_socket, status(recording, "leads_off", patient=patient.pk))
    assert text(browser, f"{tile} .signal-badge") == "Leads off"
    assert text(browser, f"{tile} .hr") == "--"
    leads_on_wave = {**wave, "first_sample": 300, "samples_mv": sawtooth_mv(50), "lead_off": False}
    hand_to_page(browser, station_socket, leads_on_wave)
    assert not shown(browser, f"{tile} .signal-badge")
