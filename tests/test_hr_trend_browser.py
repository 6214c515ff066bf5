"""The live view's heart-rate trend in a real headless Chromium: its range menu, its clock-time
axis, no line across missing data, rates above the axis marked (morning handover of
2026-12-08: fixed at 60 minutes, "-60 min … now" for an axis, a 4-minute device outage drawn as
a straight line, 208 bpm drawn at 200 without a mark).

The server is Django's live server (no websockets): the trend needs only the page and the
hr-trend API. Each check waits for a state, never for a time."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from monitoring.models import Beat, Recording
from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250
# +05:30: a zone whose round clock times are not round times in UTC or in the browser's zone
SERVER_ZONE = "Asia/Kolkata"
PLOT_LEFT_PX, PLOT_RIGHT_PX = 36, 4  # live.js drawTrend's margins
TREND_GREEN = (0x0F, 0x7B, 0x3B)


def rr_beats(start_s: float, end_s: float, rr_samples: int) -> list[int]:
    return list(range(round(start_s * FS_HZ), round(end_s * FS_HZ), rr_samples))


def expected_ticks(now: datetime, minutes: int, step_min: int) -> set[str]:
    """The round clock times (hh:mm, every step_min) in SERVER_ZONE of a window that ends
    about now, with a minute's slack on either side for the time the page took."""
    zone = ZoneInfo(SERVER_ZONE)
    first = (now - timedelta(minutes=minutes + 1)).replace(second=0, microsecond=0)
    ticks = set()
    for minute in range(minutes + 3):
        local = (first + timedelta(minutes=minute)).astimezone(zone)
        if (local.hour * 60 + local.minute) % step_min == 0:
            ticks.add(local.strftime("%H:%M"))
    return ticks


def green_columns(browser, from_min_ago: float, to_min_ago: float) -> int:
    """How many pixel columns of the 1-h trend from ``from_min_ago`` to ``to_min_ago`` hold a
    pixel of the trend's line (its green)."""
    return browser.execute_script(
        """
        var canvas = document.getElementById('hr-trend'), ratio = canvas.width / canvas.clientWidth;
        var plot = canvas.clientWidth - arguments[2] - arguments[3];
        var x0 = Math.round((arguments[2] + plot * (60 - arguments[0]) / 60) * ratio);
        var x1 = Math.round((arguments[2] + plot * (60 - arguments[1]) / 60) * ratio);
        var data = canvas.getContext('2d').getImageData(x0, 0, x1 - x0, canvas.height).data;
        var columns = new Set();
        var green = arguments[4];
        for (var i = 0; i < data.length; i += 4) {
          if (Math.abs(data[i] - green[0]) < 40 && Math.abs(data[i + 1] - green[1]) < 40
              && Math.abs(data[i + 2] - green[2]) < 40) {
            columns.add((i / 4) % (x1 - x0));
          }
        }
        return columns.size;
        """,
        from_min_ago,
        to_min_ago,
        PLOT_LEFT_PX,
        PLOT_RIGHT_PX,
        list(TREND_GREEN),
    )


def test_the_trend_has_a_range_menu_clock_times_no_line_across_a_gap_and_marks_high_rates(
    browser, live_server, clinician, patient, recording, settings
):
    settings.TIME_ZONE = SERVER_ZONE
    now = timezone.now()
    Recording.objects.filter(pk=recording.pk).update(started_at=now - timedelta(minutes=40))
    # From the recording's start (40 min ago): 75 bpm 30-20 min ago, the device silent for 4
    # minutes, 75 bpm 16-10 min ago, a minute at 208 bpm, a minute at 319 bpm (an artefact),
    # then 75 bpm until now.
    samples = (
        rr_beats(600, 1200, 200)
        + rr_beats(1440, 1800, 200)
        + rr_beats(1800, 1860, 72)
        + rr_beats(1860, 1920, 47)
        + rr_beats(1920, 2390, 200)
    )
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=sample,
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
        for index, sample in enumerate(samples)
    )
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    browser.get(f"{live_server.url}/patients/{patient.pk}/live/")
    trend = browser.find_element("id", "hr-trend")
    wait_for(browser, lambda d: "latest 75 bpm" in d.find_element("id", "hr-trend-info").text)
    assert trend.get_attribute("data-minutes") == "60"
    assert SERVER_ZONE in browser.find_element("id", "hr-trend-zone").text

    # 1 h: clock times every 10 minutes in the server's zone, not the browser's
    ticks = trend.get_attribute("data-ticks").split()
    assert len(ticks) >= 5 and set(ticks) <= expected_ticks(now, 60, 10), ticks

    # the outage is no line: two runs, no green in the silence (the minutes on either side of
    # it have their middles at most 19.5 and at least 16.5 minutes ago; their dots are 3 px
    # wide), green on either side of it
    assert trend.get_attribute("data-segments") == "2"
    assert green_columns(browser, 19.3, 16.7) == 0
    assert green_columns(browser, 26, 22) > 30 and green_columns(browser, 14, 11) > 30

    # the axis reaches 300 for the 208-bpm minute; the 319-bpm one is marked above it
    assert trend.get_attribute("data-axis-top-bpm") == "300"
    assert int(trend.get_attribute("data-above-axis")) >= 1
    assert "319 bpm at" in trend.get_attribute("title")
    assert "319 bpm at" in browser.find_element("id", "hr-trend-info").text

    # 12 h: the menu fetches 720 minutes, and the axis shows every second hour
    browser.find_element("css selector", "#trend-range option[value='720']").click()
    wait_for(browser, lambda d: trend.get_attribute("data-minutes") == "720")
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
        ".filter(function (name) { return name.indexOf('/hr-trend/') >= 0; })"
    )
    assert any(name.endswith("?minutes=60") for name in fetched)
    assert fetched[-1].endswith("?minutes=720")
    ticks = trend.get_attribute("data-ticks").split()
    assert len(ticks) >= 5 and set(ticks) <= expected_ticks(now, 720, 120), ticks
