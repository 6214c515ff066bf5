"""The results page's heart-rate trend in a real headless Chromium: the recording's own trend
(GET /api/recordings/<id>/hr-trend/, which no page drew) drawn by the live view's code
(hrtrend.js), clock times in the server's zone, no line across a gap; hours from the start
when the file gave no start; and the page printed with its trend and hourly table. Each check
waits for a state, never for a time."""

from datetime import UTC, datetime

import numpy as np
import pytest

from monitoring.models import AnalysisStatus, Recording, SampleChunk
from tests.chromium import log_in, wait_for
from tests.test_hr_trend_ranges import add_beats  # at the same FS_HZ

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250.0
SERVER_ZONE = "Asia/Kolkata"  # +05:30: its round clock times are not round in UTC
STARTED_AT = datetime(2026, 1, 15, 16, 30, tzinfo=UTC)  # 22:00 in Kolkata
PRINTABLE_WIDTH_PX = 703  # A4 portrait less 12-mm margins, as test_print_browser


@pytest.fixture
def night(recording, settings):
    """A device recording of 60 min at 60 bpm from 22:00 in SERVER_ZONE, nothing stored from
    20 to 30 min."""
    settings.TIME_ZONE = SERVER_ZONE
    chunks = [(0, 1200), (1800, 3600)]
    for seq, (start_s, end_s) in enumerate(chunks):
        # a flat line: the page's strip reads it, the trend only the beats
        flat = np.zeros(round((end_s - start_s) * FS_HZ), dtype=np.int16)
        SampleChunk.from_samples(recording, seq, round(start_s * FS_HZ), flat).save()
    add_beats(recording, [t for start_s, end_s in chunks for t in range(start_s, end_s)])
    end = round(3600 * FS_HZ)
    Recording.objects.filter(pk=recording.pk).update(
        started_at=STARTED_AT,
        analysis_status=AnalysisStatus.DONE,
        analysis_cursor=end,
        end_sample=end,
    )
    return recording


def open_results(browser, live_server, recording) -> object:
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    # the browser in another zone: the axis must still be the server's clock
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    browser.get(f"{live_server.url}/recordings/{recording.pk}/")
    trend = browser.find_element("id", "recording-hr-trend")
    wait_for(browser, lambda d: trend.get_attribute("data-drawn") == "true")
    return trend


def test_the_results_page_draws_the_recordings_trend_on_the_servers_clock(
    browser, live_server, clinician, night
):
    trend = open_results(browser, live_server, night)
    assert SERVER_ZONE in browser.find_element("id", "recording-hr-trend-zone").text
    # 22:00 to 23:00 in Kolkata, every 10 minutes on a desktop
    ticks = trend.get_attribute("data-ticks").split()
    assert ticks == ["22:00", "22:10", "22:20", "22:30", "22:40", "22:50", "23:00"], ticks
    # the 10-min gap breaks the line in two, and is no heart rate
    assert trend.get_attribute("data-segments") == "2"
    assert trend.get_attribute("data-axis-top-bpm") == "200"
    info = browser.find_element("id", "recording-hr-trend-info").text
    assert info.startswith("50 minute(s) with beats"), info
    # drawn: the trend's green is on the canvas
    green = browser.execute_script(
        "var c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "var n = 0; for (var i = 0; i < d.length; i += 4) {"
        " if (Math.abs(d[i] - 15) < 40 && Math.abs(d[i + 1] - 123) < 40"
        " && Math.abs(d[i + 2] - 59) < 40) { n++; } } return n;",
        trend,
    )
    assert green > 100


def test_a_recording_without_a_clock_start_is_drawn_in_hours_from_its_start(
    browser, live_server, clinician, night
):
    # an upload whose file gave no start: its start is the upload's time
    Recording.objects.filter(pk=night.pk).update(
        source=Recording.Source.UPLOAD, upload_format="wfdb", started_at=night.created_at
    )
    trend = open_results(browser, live_server, night)
    ticks = trend.get_attribute("data-ticks").split()
    assert ticks[0] == "0:00" and ticks[-1] == "1:00" and "0:30" in ticks, ticks
    assert (
        "hours from the start"
        in browser.find_element("id", "trend-heading").find_element("xpath", "..").text
    )


def test_a_printed_results_page_keeps_the_trend_and_the_hourly_table(
    browser, live_server, clinician, night
):
    trend = open_results(browser, live_server, night)
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": PRINTABLE_WIDTH_PX, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    # redrawn at the paper's width
    wait_for(browser, lambda d: d.execute_script("return arguments[0].width", trend) <= 703)
    fits = browser.execute_script(
        "var page = document.documentElement.clientWidth;"
        "return ['recording-hr-trend', 'hourly'].map(function (id) {"
        " var e = document.getElementById(id), box = e.getBoundingClientRect();"
        " return [id, getComputedStyle(e).display !== 'none' && box.width > 0,"
        " box.right <= page]; })"
    )
    assert fits == [["recording-hr-trend", True, True], ["hourly", True, True]]
    assert browser.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
