"""The central station's tile and the live view show the device's battery charge (Chromium).

"Battery 42 %" while the device's signal comes (leads on or off), a badge of its own at or below
DEVICE_BATTERY_LOW_PCT, and nothing when the device reports no charge or its signal is silent
or closed: an old number shown as current is worse than none (docs/dashboard.md, "Battery").
The first charge comes from the server through the real path (a chunk's ``battery_pct``, the
hello and status the daphne server reads from the database); the rest are status messages
handed to the pages as the server would send them (the server side is
tests/test_battery_display.py). Before, the charge was shown nowhere.
"""

import pytest
from django.db import transaction

from monitoring.ingest import ingest_chunk
from monitoring.models import Recording
from tests.chromium import log_in, wait_for
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)
from tests.test_device_ingest import make_chunk
from tests.test_leads_off_browser import leads_off_samples, shown, status, text
from tests.test_live_browser import eager_daphne, module_service_env  # noqa: F401 (fixtures)
from tests.test_live_old_recording import hand_to_page
from tests.test_live_socket_browser import HALF_OPEN_SOCKETS_JS, wait_for_backlog

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FS_HZ = 250
# the live view's silence limit, short here so that the test sees a device that stops (10 s
# in livesocket.js); set for the live view only: the station's first check reads what the
# server sent at connect, which must not go silent while the page loads
NO_SIGNAL_S = 2
SHORT_SILENCE_JS = f"window.CardioSpikeSocketTiming.noSignalS = {NO_SIGNAL_S};"


def battery_state(driver, selector: str) -> tuple[bool, str, bool]:
    """Whether the charge shows, its text and whether it is the low badge."""
    element = driver.find_element("css selector", selector)
    return element.is_displayed(), element.text, "low" in element.get_attribute("class").split()


def test_the_station_tile_and_the_live_view_show_the_devices_charge(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    device,
):
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HALF_OPEN_SOCKETS_JS}
    )
    with transaction.atomic():
        ingest_chunk(device, make_chunk(seq=0, n=FS_HZ, session="ba77e701", battery_pct=42))
    recording = Recording.objects.get().pk

    # the station: the server's hello and backlog status carry the charge the chunk reported
    browser.get(f"{eager_daphne}/station/")
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    station_socket = "/ws/station/"
    wait_for_backlog(browser, station_socket)
    battery = f"#tile-{patient.pk} .battery"
    wait_for(browser, lambda d: battery_state(d, battery) == (True, "Battery 42 %", False))

    def to_station(signal: str, **extra) -> None:
        hand_to_page(
            browser, station_socket, status(recording, signal, patient=patient.pk, **extra)
        )

    # falling to the BATTERY_LOW alarm's limit: the low badge
    to_station("live", battery_pct=12, battery_low=True)
    assert battery_state(browser, battery) == (True, "Battery 12 %", True)
    # with the leads off the device still reports it
    to_station("leads_off", battery_pct=12, battery_low=True)
    assert text(browser, f"#tile-{patient.pk} .signal-badge") == "Leads off"
    assert battery_state(browser, battery) == (True, "Battery 12 %", True)
    # a device that reports no charge: nothing
    to_station("live", battery_pct=None, battery_low=False)
    assert not shown(browser, battery)
    to_station("live", battery_pct=80, battery_low=False)
    assert battery_state(browser, battery) == (True, "Battery 80 %", False)
    # a silent device (the server's "stale", or a closed recording): nothing, not the old number
    to_station("stale", battery_pct=None, battery_low=False)
    assert not shown(browser, battery)
    to_station("live", battery_pct=80, battery_low=False)
    assert shown(browser, battery)
    to_station("ended", battery_pct=None, battery_low=False)
    assert not shown(browser, battery)

    # the live view: the same, and a device that stops sending loses its charge with its signal
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": SHORT_SILENCE_JS})
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
    patient_socket = "/ws/patients/"
    wait_for_backlog(browser, patient_socket)
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 1, 1, lead_off=False))
    hand_to_page(browser, patient_socket, status(recording, "live", 72.0, "Sinus", battery_pct=42))
    assert battery_state(browser, "#battery-state") == (True, "Battery 42 %", False)
    hand_to_page(
        browser, patient_socket, status(recording, "live", battery_pct=9, battery_low=True)
    )
    assert battery_state(browser, "#battery-state") == (True, "Battery 9 %", True)
    wait_for(browser, lambda d: text(d, "#signal-state") == "No signal", timeout_s=NO_SIGNAL_S + 5)
    assert not shown(browser, "#battery-state")
    # samples again: the signal and its charge are back
    hand_to_page(browser, patient_socket, leads_off_samples(recording, 2, 1, lead_off=False))
    assert battery_state(browser, "#battery-state") == (True, "Battery 9 %", True)
    hand_to_page(browser, patient_socket, status(recording, "live", battery_pct=None))
    assert not shown(browser, "#battery-state")
