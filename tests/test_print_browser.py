"""Printing the results and review pages in headless Chromium with print media emulated
(DevTools' Emulation.setEmulatedMedia) on a page as wide as an A4 sheet's printable width
(exploratory test, 2026-12-07: the printouts carried the top bar and every button, and the
results page's strip was cut at the paper's right edge). The print rules are app.css's
``@media print``."""

from datetime import UTC, datetime

import numpy as np
import pytest

from inference.synthetic import generate
from monitoring.models import AnalysisStatus, Episode, SampleChunk
from tests.chromium import log_in, review_view, text_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250.0
# A4 portrait less 12-mm margins: 186 mm, 703 CSS pixels
PRINTABLE_WIDTH_PX = 703


@pytest.fixture
def analysed(recording):
    recording.started_at = datetime(2026, 1, 15, 19, 39, 59, 123456, tzinfo=UTC)
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    ecg = generate(60.0, fs=FS_HZ, seed=5)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    Episode.objects.create(
        recording=recording, kind="TACHY", start_s=20.0, end_s=40.0, details={"n_beats": 40}
    )
    return recording


def print_on_a4(driver) -> None:
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PRINTABLE_WIDTH_PX, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})


def shown(driver, selector: str) -> bool:
    return driver.execute_script(
        "var e = document.querySelector(arguments[0]);"
        "return !!e && getComputedStyle(e).display !== 'none' && e.getClientRects().length > 0;",
        selector,
    )


def fits(driver, selector: str) -> dict:
    """The element's right edge and the page's width, and whether its box overflows."""
    return driver.execute_script(
        "var e = document.querySelector(arguments[0]);"
        "return {right: e.getBoundingClientRect().right,"
        " page: document.documentElement.clientWidth,"
        " pageScroll: document.documentElement.scrollWidth};",
        selector,
    )


def test_a_printed_results_page_has_no_controls_and_its_strip_fits(
    browser, live_server, clinician, analysed
):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    print_on_a4(browser)
    browser.get(f"{live_server.url}/recordings/{analysed.pk}/")
    wait_for(
        browser,
        lambda d: d.execute_script(
            "var i = document.getElementById('strip'); return i.complete && i.naturalWidth > 0"
        ),
    )
    for hidden in (".topbar nav", "#strip-form", "button", "a.button"):
        assert not shown(browser, hidden), hidden
    # what a handover printout must carry
    assert shown(browser, ".disclaimer")
    assert "Research software" in browser.find_element("css selector", ".disclaimer").text
    assert shown(browser, "#patient-identity")
    assert text_of(browser, "patient-identity") == "Assigned Patient (MRN MRN-001)"
    # the strip, wider than the paper at its own size, is scaled to the page width
    natural_px = browser.execute_script("return document.getElementById('strip').naturalWidth")
    assert natural_px > PRINTABLE_WIDTH_PX
    strip = fits(browser, "#strip")
    assert strip["right"] <= strip["page"] and strip["pageScroll"] <= strip["page"], strip
    frame_overflow = browser.execute_script(
        "var f = document.querySelector('.strip-frame'); return f.scrollWidth - f.clientWidth"
    )
    assert frame_overflow <= 0
    # no row, strip or heading split across two pages
    breaks = browser.execute_script(
        "return [getComputedStyle(document.querySelector('#episodes tbody tr')).breakInside,"
        " getComputedStyle(document.querySelector('.strip-frame')).breakInside]"
    )
    assert breaks == ["avoid", "avoid"]


def test_a_printed_review_page_keeps_the_trace_and_the_patient(
    browser, live_server, clinician, analysed
):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    print_on_a4(browser)
    browser.get(f"{live_server.url}/recordings/{analysed.pk}/review/")
    wait_for(browser, lambda d: review_view(d) is not None)
    for hidden in (".topbar nav", ".review-bar", "#export-png", "button"):
        assert not shown(browser, hidden), hidden
    assert shown(browser, ".disclaimer") and shown(browser, "#review-canvas")
    assert "Research software" in browser.find_element("css selector", ".disclaimer").text
    assert text_of(browser, "patient-identity") == "Assigned Patient (MRN MRN-001)"
    assert shown(browser, "#view-clock")  # the window's times are printed with it
    canvas = fits(browser, "#review-canvas")
    assert canvas["right"] <= canvas["page"] and canvas["pageScroll"] <= canvas["page"], canvas
