"""The live view and the station as a clinician uses them, in a real headless Chromium: on a
phone, in another time zone than the server's, from the keyboard (walkthrough of 2026-12-07).

The server is Django's live server (no websockets): these checks need only what the server
renders and the acknowledge API. Each waits for a state, never for a time."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from monitoring.models import Alarm, AlarmRecipient, Beat, Recording
from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def two_alarms(patient) -> tuple[Alarm, Alarm]:
    older = Alarm.objects.create(
        patient=patient, kind="PVC", priority="warning", message="PVC 12 in the first 13 s > 10/min"
    )
    newer = Alarm.objects.create(
        patient=patient, kind="HR_HIGH", priority="warning", message="HR 134 > 120"
    )
    return older, newer


def right_edge(driver, css: str) -> float:
    return driver.execute_script(
        "return document.querySelector(arguments[0]).getBoundingClientRect().right", css
    )


def test_a_phone_shows_log_out_and_acknowledge_without_scrolling_sideways(
    browser, live_server, staff_user, patient
):
    """At 390 px the top bar's links pushed the page to 640 px, "Log out" past the screen's
    edge, and the alarm list's "Acknowledge" column ran out of its card; the patient page's
    recipients line and the recipients table of the limits and admit pages widened their
    pages too (a table too wide for the phone now scrolls inside its card)."""
    two_alarms(patient)
    AlarmRecipient.objects.create(
        patient=patient, address="cardiology-night-shift@hospital-with-a-long-name.example"
    )
    log_in(browser, live_server.url, "staff", "pw-staff-1")
    browser.set_window_size(390, 844)
    for path in (
        "/",
        "/station/",
        f"/patients/{patient.pk}/live/",
        f"/patients/{patient.pk}/",
        f"/manage/patients/{patient.pk}/limits/",
        "/manage/patients/admit/",
        "/manage/",
        f"/manage/patients/{patient.pk}/device/",
        f"/manage/patients/{patient.pk}/care-team/",
        f"/manage/patients/{patient.pk}/discharge/",  # the confirmation
    ):
        browser.get(live_server.url + path)
        wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        width = browser.execute_script("return window.innerWidth")
        assert width <= 400, width  # the window did become a phone's
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= width, (path, page_width, width)
        assert right_edge(browser, "form[action='/logout/'] button") <= width, path
        if path.endswith("/live/"):
            # the live ECG fits its frame (it scrolled inside it, the newest samples out of
            # view; tests/test_live_phone_browser.py). The canvas is fitted at load and refitted
            # by a ResizeObserver when the frame settles (a scrollbar, the alarm list filling
            # in), so wait for that rather than read it once.
            wait_for(
                browser,
                lambda d: right_edge(d, "#live-ecg") <= right_edge(d, ".ecg-frame"),
                timeout_s=10,
            )
            buttons = browser.find_elements("css selector", "#alarm-table button.ack")
            assert len(buttons) == 2
            for button in buttons:
                assert button.rect["x"] + button.rect["width"] <= width


def test_alarm_times_are_in_the_servers_zone_whatever_the_browsers(
    browser, live_server, clinician, patient
):
    """live.js formatted the alarm times in the browser's zone and did not say which: a
    browser in New York showed 21:07 for an alarm that the review, the patient page and the
    emails put at 02:07 (UTC)."""
    raised = timezone.now() - timedelta(minutes=3)
    alarm = Alarm.objects.create(
        patient=patient, kind="HR_HIGH", priority="warning", message="HR 134 > 120"
    )
    Alarm.objects.filter(pk=alarm.pk).update(raised_at=raised)
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/patients/{patient.pk}/live/")
    assert (
        browser.execute_script("return Intl.DateTimeFormat().resolvedOptions().timeZone")
        == "America/New_York"
    )
    server = timezone.localtime(raised).strftime("%H:%M:%S")  # in TIME_ZONE
    elsewhere = raised.astimezone(ZoneInfo("America/New_York"))
    # live.js (run before the page's load event) wrote the time alone, the date when not today
    cell = f"#alarm-{alarm.pk} time"
    shown = browser.find_element("css selector", cell).text
    assert shown.endswith(server), (shown, server)
    assert elsewhere.strftime("%H:%M:%S") not in shown
    zone = timezone.get_current_timezone_name()  # UTC unless TIME_ZONE says otherwise
    assert f"Raised ({zone})" in browser.find_element("id", "alarm-table").text


def test_acknowledging_from_the_keyboard_keeps_the_focus_in_the_alarm_list(
    browser, live_server, clinician, patient
):
    """The acknowledged row's button is removed: the focus fell back to the page's top, so a
    keyboard user had to tab through the whole page again to reach the next alarm."""
    older, newer = two_alarms(patient)
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/patients/{patient.pk}/live/")
    button = browser.find_element("css selector", f"button.ack[data-alarm='{newer.pk}']")
    browser.execute_script("arguments[0].focus()", button)
    button.send_keys("\n")  # Enter, as a keyboard user presses it
    wait_for(browser, lambda d: "clinician at" in d.find_element("id", f"alarm-{newer.pk}").text)
    wait_for(
        browser,
        lambda d: (
            d.execute_script("return document.activeElement.dataset.alarm || null") == str(older.pk)
        ),
        timeout_s=10,
    )
    newer.refresh_from_db()
    assert newer.acknowledged_by == clinician
    # the last one: the focus goes to the table, not to the page's top
    browser.switch_to.active_element.send_keys("\n")
    wait_for(browser, lambda d: "clinician at" in d.find_element("id", f"alarm-{older.pk}").text)
    wait_for(
        browser,
        lambda d: d.execute_script("return document.activeElement.id") == "alarm-table",
        timeout_s=10,
    )


def test_the_hr_trend_reads_on_a_phone_and_is_unchanged_on_a_desktop(
    browser, live_server, clinician, patient, recording
):
    """The trend was drawn 1100 px wide and scaled to the card: on a 390-px phone 285 px wide
    and 41 px high, its 11-px labels 3 px. It is drawn at the size it is shown, 160 px high."""
    Recording.objects.filter(pk=recording.pk).update(
        started_at=timezone.now() - timedelta(minutes=30)
    )
    Beat.objects.bulk_create(  # 80 bpm for the last 30 minutes
        Beat(
            recording=recording,
            index=i,
            sample=round(i * 0.75 * 250),
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
        for i in range(2400)
    )
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    sizes = {}
    for window_width in (390, 1280):
        browser.set_window_size(window_width, 844)
        browser.get(f"{live_server.url}/patients/{patient.pk}/live/")
        wait_for(browser, lambda d: "latest 80 bpm" in d.find_element("id", "hr-trend-info").text)
        sizes[window_width] = browser.execute_script(
            "var t = document.getElementById('hr-trend'), r = t.getBoundingClientRect();"
            "return {width: t.width, height: t.height, shownWidth: t.clientWidth,"
            " shownHeight: t.clientHeight, right: r.right, ratio: devicePixelRatio,"
            " innerWidth: innerWidth, pageWidth: document.documentElement.scrollWidth,"
            " viewWidth: document.documentElement.clientWidth}"
        )
    phone = sizes[390]
    assert phone["shownWidth"] < 400 and phone["right"] <= phone["innerWidth"]
    assert phone["pageWidth"] <= phone["viewWidth"]
    # one canvas pixel per screen pixel: labels at their 11 px
    assert phone["width"] == round(phone["shownWidth"] * phone["ratio"])
    assert (phone["shownHeight"], phone["height"]) == (160, round(160 * phone["ratio"]))
    desktop = sizes[1280]
    assert (desktop["shownWidth"], desktop["shownHeight"]) == (1100, 160)
    assert (desktop["width"], desktop["height"]) == (1100, 160)  # as before, at ratio 1


def test_the_api_docs_fit_a_phone(browser, live_server, clinician):
    """Swagger UI at 390 px: trying out an upload put "Cancel" and "Reset" on the
    "Parameters" bar's line, past the screen's edge, and the page scrolled sideways."""
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.set_window_size(390, 844)
    browser.get(live_server.url + "/docs/api/")
    wait_for(browser, lambda d: d.find_elements("css selector", "#swagger-ui .opblock"))
    upload = browser.find_element("id", "operations-api-api_patients_uploads_create")
    upload.find_element("css selector", ".opblock-summary-control").click()
    wait_for(browser, lambda d: upload.find_elements("css selector", ".try-out__btn"))
    upload.find_element("css selector", ".try-out__btn").click()
    wait_for(browser, lambda d: upload.find_elements("css selector", ".try-out__btn.reset"))
    widths = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], widths


def test_station_tiles_draw_one_canvas_pixel_per_screen_pixel(
    browser, live_server, clinician, patient
):
    """The tiles' canvases kept a 300x70 drawing buffer whatever their size on the screen: on
    a ratio-2 screen a 420-px tile stretched it 2.8 times across and 2 times up, and the trace
    was blurred and thicker across than up."""
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 2, "mobile": False},
    )
    browser.get(f"{live_server.url}/station/")
    tile = "document.querySelector('#tile-' + arguments[0] + ' canvas.wave')"
    size = (
        f"var c = {tile}; return {{width: c.width, height: c.height,"
        " shownWidth: c.clientWidth, shownHeight: c.clientHeight, ratio: devicePixelRatio}"
    )
    wait_for(browser, lambda d: d.execute_script(f"return !!{tile}", patient.pk))

    def fitted(driver) -> bool:
        # the buffer follows the tile's size once layout settles (the ResizeObserver runs
        # after it: a scroll bar that comes as the page fills narrows the tiles once more)
        now = driver.execute_script(size, patient.pk)
        return now["width"] == round(now["shownWidth"] * 2)

    wait_for(browser, fitted)
    shown = browser.execute_script(size, patient.pk)
    assert shown["ratio"] == 2 and shown["shownWidth"] != 150  # the tile is not 300 px wide
    assert shown["height"] == round(shown["shownHeight"] * 2) == 140
    # a narrower window narrows the tiles (the grid's columns), and their buffers follow
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    wait_for(
        browser,
        lambda d: d.execute_script(size, patient.pk)["shownWidth"] != shown["shownWidth"],
    )
    wait_for(browser, fitted)
