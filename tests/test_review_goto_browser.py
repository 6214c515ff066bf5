"""The review page in headless Chromium, as a physiologist reviewing a 12-hour recording
found it (exploratory test, 2026-12-07): "Go to" reads what the page prints as a position
unless "clock time" is chosen, and says where it went in both forms; the range line names the
zone as the header does ("EST", not the browser's "GMT-5"); the PNG button says what the PNG
holds when the view is wider than it; "episode ▶" / "◀ episode" step through the episodes."""

from datetime import UTC, datetime

import numpy as np
import pytest
from selenium.webdriver.support.ui import Select

from inference.synthetic import generate
from monitoring.models import Episode, SampleChunk
from tests.chromium import log_in, review_view, text_of, wait_for, wait_for_review_view

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250.0
DURATION_S = 43_333.3  # 12:02:13.3
STARTED_AT = datetime(2026, 1, 15, 16, 12, 41, tzinfo=UTC)  # 11:12:41 EST


@pytest.fixture
def twelve_hours(recording, settings):
    """12:02:13.3 of a device recording started at 11:12:41 EST in New York: ECG in the first
    two minutes, around one hour in and in the last minute; gaps between."""
    settings.TIME_ZONE = "America/New_York"
    recording.started_at = STARTED_AT
    recording.save(update_fields=["started_at"])
    ecg = generate(120.0, fs=FS_HZ, seed=4)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    end = round(DURATION_S * FS_HZ)
    for seq, start in enumerate((0, round(3540 * FS_HZ), end - len(adc))):
        SampleChunk.from_samples(recording, seq, start, adc).save()
    return recording


def open_review(driver, live_server, recording, fragment: str = "") -> None:
    log_in(driver, live_server.url, "clinician", "pw-clinician-1")
    driver.get(f"{live_server.url}/recordings/{recording.pk}/review/{fragment}")
    wait_for(driver, lambda d: review_view(d) is not None)


def go_to(driver, typed: str) -> None:
    box = driver.find_element("id", "jump-time")
    box.clear()
    box.send_keys(typed + "\n")


def test_go_to_reads_the_pages_own_positions_and_says_where_it_went(
    browser, live_server, clinician, twelve_hours
):
    open_review(browser, live_server, twelve_hours)
    assert text_of(browser, "view-range") == "0 s – 10 s of 12:02:13.3"

    go_to(browser, "1:00:00")  # one hour in: it was read as 01:00 o'clock
    wait_for_review_view(browser, 3595.0, 3605.0)
    # the menu beside the box says how it reads: into the recording, unless told otherwise
    assert Select(browser.find_element("id", "jump-as")).first_selected_option.text == (
        "into the recording"
    )
    wait_for(browser, lambda d: text_of(d, "jump-note"))
    assert text_of(browser, "jump-note") == (
        "Went to 1:00:00 into the recording (clock 12:12:41 EST)."
    )
    # the view range, copied from the page and pasted back, is the same view
    shown = text_of(browser, "view-range")
    assert shown == "59:55 – 1:00:05 of 12:02:13.3"
    browser.find_element("id", "page-forward").click()
    wait_for_review_view(browser, 3604.0, 3614.0)
    go_to(browser, shown)
    wait_for_review_view(browser, 3595.0, 3605.0)

    go_to(browser, "6:32.6")  # copied from the page: it was refused
    wait_for_review_view(browser, 387.6, 397.6)
    wait_for(browser, lambda d: "6:32.6 into the recording" in text_of(d, "jump-note"))
    go_to(browser, "5:00:00")  # it was "past the end" (05:00 o'clock, the next morning)
    wait_for_review_view(browser, 17_995.0, 18_005.0)
    assert text_of(browser, "view-message") == ""

    # a diary's clock time, read as one when chosen
    Select(browser.find_element("id", "jump-as")).select_by_value("clock")
    go_to(browser, "14:30")
    wait_for_review_view(browser, 11_834.0, 11_844.0)
    wait_for(browser, lambda d: "clock time" in text_of(d, "jump-note"))
    assert text_of(browser, "jump-note") == (
        "Went to clock time 14:30:00 EST (3:17:19 into the recording)."
    )
    # typed into the recording, the same text is past the end: it says where the clock is
    Select(browser.find_element("id", "jump-as")).select_by_value("elapsed")
    go_to(browser, "14:30:00")
    wait_for(browser, lambda d: text_of(d, "view-message"))
    assert "as a clock time, 14:30:00 is 3:17:19 into it" in text_of(browser, "view-message")
    assert review_view(browser) == (11_834.0, 11_844.0)


def test_the_range_line_names_the_zone_as_the_header_does(
    browser, live_server, clinician, recording, settings
):
    """TIME_ZONE=America/New_York: the header said "EST", the range line "GMT-5" (the
    browser's en-GB name for it). Across the night the clocks go back, EDT then EST (and the
    header, in the repeated hour, no abbreviation at all: Django's |date:"T" is blank then)."""
    settings.TIME_ZONE = "America/New_York"
    recording.started_at = STARTED_AT
    recording.save(update_fields=["started_at"])
    ecg = generate(120.0, fs=FS_HZ, seed=6)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    open_review(browser, live_server, recording)
    assert "Started 2026-01-15 11:12:41 EST (America/New_York)" in text_of(browser, "started-at")
    assert text_of(browser, "view-clock") == "11:12:41 – 11:12:51 EST"

    recording.started_at = datetime(2026, 11, 1, 5, 59, 0, tzinfo=UTC)  # 01:59:00 EDT
    recording.save(update_fields=["started_at"])
    browser.get(f"{live_server.url}/recordings/{recording.pk}/review/")
    wait_for(browser, lambda d: text_of(d, "view-clock").startswith("01:59:00"))
    assert "Started 2026-11-01 01:59:00 EDT (America/New_York)" in text_of(browser, "started-at")
    assert text_of(browser, "view-clock") == "01:59:00 – 01:59:10 EDT"
    go_to(browser, "65")
    wait_for_review_view(browser, 60.0, 70.0)
    assert text_of(browser, "view-clock") == "01:00:00 – 01:00:10 EST"
    go_to(browser, "1:00")  # across the change: each end with its own
    wait_for_review_view(browser, 55.0, 65.0)
    assert text_of(browser, "view-clock") == "01:59:55 EDT – 01:00:05 EST"
    assert "GMT" not in browser.find_element("tag name", "body").text


def test_the_png_button_says_what_the_png_holds(browser, live_server, clinician, twelve_hours):
    """At a 30-minute width "Current strip as PNG" gave the first 60 s of the view without a
    word; it now gives the 60 s at the view's centre and says so, with their times."""
    open_review(browser, live_server, twelve_hours, "#t=2700&w=1800")
    wait_for_review_view(browser, 2700.0, 4500.0)
    link = browser.find_element("id", "export-png")
    assert link.text == "PNG of the 60 s at the centre (59:30 – 1:00:30)"
    href = link.get_attribute("href")
    assert "start_s=3570.000&length_s=60&" in href
    # the strip on screen when it fits
    Select(browser.find_element("id", "window-s")).select_by_value("30")
    wait_for_review_view(browser, 3585.0, 3615.0)
    assert link.text == "Current strip as PNG"
    assert "start_s=3585.000&length_s=30&" in link.get_attribute("href")


def test_it_steps_through_the_rhythm_episodes(browser, live_server, clinician, twelve_hours):
    for kind, start_s, end_s in (("AF", 30.0, 95.0), ("BRADY", 3600.0, 3620.0)):
        Episode.objects.create(recording=twelve_hours, kind=kind, start_s=start_s, end_s=end_s)
    open_review(browser, live_server, twelve_hours)

    def focus_s(d):
        return d.execute_script("return document.getElementById('review-canvas').dataset.focusS")

    browser.find_element("id", "next-episode").click()
    wait_for(browser, lambda d: focus_s(d) == "30")
    wait_for_review_view(browser, 25.0, 35.0)
    assert text_of(browser, "jump-note") == "AF episode: 30 s – 1:35 (11:13:11 – 11:14:16 EST)"
    browser.find_element("id", "next-episode").click()
    wait_for(browser, lambda d: focus_s(d) == "3600")
    assert text_of(browser, "jump-note").startswith("BRADY episode: 1:00:00 – 1:00:20")
    browser.find_element("id", "next-episode").click()
    wait_for(browser, lambda d: text_of(d, "view-message") == "no episode after 3600.0 s")
    browser.find_element("id", "prev-episode").click()
    wait_for(browser, lambda d: focus_s(d) == "30")


def test_clock_times_agree_with_the_server_for_a_start_with_microseconds(
    browser, live_server, clinician, recording, settings
):
    """A device recording starts at the ingest's clock, with microseconds (19:39:59.123456
    UTC, 20:39:59 CET). "Go to" clock 20:45:00 said "Went to clock time 20:44:59 CET" and the
    range line "20:44:54 – 20:45:04": the page parsed the start to the millisecond and cut
    20:44:59.999544 to the second before."""
    settings.TIME_ZONE = "Europe/Berlin"
    recording.started_at = datetime(2026, 1, 15, 19, 39, 59, 123456, tzinfo=UTC)
    recording.save(update_fields=["started_at"])
    ecg = generate(120.0, fs=FS_HZ, seed=7)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    SampleChunk.from_samples(recording, 1, round(480 * FS_HZ), adc).save()
    open_review(browser, live_server, recording)
    assert text_of(browser, "view-clock") == "20:39:59 – 20:40:09 CET"

    Select(browser.find_element("id", "jump-as")).select_by_value("clock")
    go_to(browser, "20:45:00")
    wait_for_review_view(browser, 295.876544, 305.876544)
    wait_for(browser, lambda d: "clock time" in text_of(d, "jump-note"))
    assert text_of(browser, "jump-note") == (
        "Went to clock time 20:45:00 CET (5:00.9 into the recording)."
    )
    assert text_of(browser, "view-clock") == "20:44:55 – 20:45:05 CET"
