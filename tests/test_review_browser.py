"""The review page in a real headless Chromium: the trace is drawn, "next V" moves the view
to the next V beat, "Go to" takes seconds and a clock time, and screenshots are saved under
test-artifacts/ (or CARDIOSPIKE_SCREENSHOT_DIR)."""

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from django.utils import timezone
from selenium.webdriver.support.ui import Select

from inference.synthetic import generate
from monitoring.models import Beat, SampleChunk
from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FS_HZ = 250.0


def dark_pixels(driver) -> int:
    """How many pixels of the review canvas the trace painted (near black)."""
    return driver.execute_script(
        """
        const canvas = document.getElementById("review-canvas");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i] < 60 && data[i + 1] < 60 && data[i + 2] < 60) dark++;
        }
        return dark;
        """
    )


def canvas_data(driver, key: str):
    value = driver.execute_script(
        f"return document.getElementById('review-canvas').dataset.{key} || null"
    )
    return None if value is None else float(value)


@pytest.fixture
def long_recording(recording):
    """Two minutes of synthetic ECG with a 20-s gap, and beats from the generator (the V
    beats are the generator's PVCs; none in the first 10 s, so "next V" must move)."""
    ecg = generate(120.0, fs=FS_HZ, pvc_per_min=4.0, seed=11)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    gap = (int(60 * FS_HZ), int(80 * FS_HZ))
    SampleChunk.from_samples(recording, 0, 0, adc[: gap[0]]).save()
    SampleChunk.from_samples(recording, 1, gap[1], adc[gap[1] :]).save()
    beats = [
        (int(sample), "V" if label == "V" and sample > 12 * FS_HZ else "N")
        for sample, label in zip(ecg.beats, ecg.beat_labels, strict=True)
        if not gap[0] <= sample < gap[1]
    ]
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=sample,
            label=label,
            confidence=0.95,
            probabilities={"N": 0.95, "S": 0.0, "V": 0.05, "F": 0.0, "Q": 0.0},
        )
        for i, (sample, label) in enumerate(beats)
    )
    v_samples = [sample for sample, label in beats if label == "V"]
    assert len(v_samples) >= 2
    recording.v_times_s = [sample / FS_HZ for sample in v_samples]
    return recording


def test_it_jumps_to_the_next_v_beat(browser, live_server, clinician, long_recording):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{long_recording.pk}/review/")
    wait_for(browser, lambda d: canvas_data(d, "startS") is not None)
    assert canvas_data(browser, "startS") == 0.0
    assert dark_pixels(browser) > 500  # the trace was drawn
    first_pixels = browser.execute_script(
        "return document.getElementById('review-canvas').toDataURL()"
    )

    browser.find_element("id", "next-V").click()
    first_v = long_recording.v_times_s[0]
    wait_for(browser, lambda d: canvas_data(d, "focusS") == pytest.approx(first_v, abs=1e-3))
    # the view moved: centred on the V beat (10 s wide), and the picture changed
    wait_for(browser, lambda d: canvas_data(d, "startS") > 0)
    assert canvas_data(browser, "startS") == pytest.approx(first_v - 5.0, abs=0.01)
    assert (
        browser.execute_script("return document.getElementById('review-canvas').toDataURL()")
        != first_pixels
    )
    assert "#t=" in browser.current_url
    png_link = browser.find_element("id", "export-png").get_attribute("href")
    assert f"start_s={first_v - 5.0:.3f}" in png_link

    browser.find_element("id", "next-V").click()
    wait_for(
        browser,
        lambda d: canvas_data(d, "focusS") == pytest.approx(long_recording.v_times_s[1], abs=1e-3),
    )

    folder = Path(os.getenv("CARDIOSPIKE_SCREENSHOT_DIR") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / "review-next-v.png"))

    # the whole gap in view: grey "no data", and the view still draws on both sides
    browser.find_element("css selector", "#window-s option[value='60']").click()
    browser.find_element("id", "jump-time").send_keys("70\n")
    wait_for(browser, lambda d: canvas_data(d, "startS") == pytest.approx(40.0, abs=0.01))
    assert dark_pixels(browser) > 500
    browser.save_screenshot(str(folder / "review-gap.png"))

    # a clock time (the site's zone) 90 s after the start, read as one when the menu beside
    # the box says so; the view range shows clock times
    moment = timezone.localtime(long_recording.started_at + timedelta(seconds=90))
    Select(browser.find_element("id", "jump-as")).select_by_value("clock")
    jump = browser.find_element("id", "jump-time")
    jump.clear()
    jump.send_keys(moment.strftime("%H:%M:%S") + "\n")  # whole seconds: up to 1 s early
    wait_for(browser, lambda d: canvas_data(d, "startS") == pytest.approx(59.5, abs=0.51))
    # "HH:MM:SS – HH:MM:SS UTC", 60 s apart (the zone's abbreviation, once when both share it)
    clock = browser.find_element("id", "view-clock").text
    assert (
        re.fullmatch(r"\d\d:\d\d:\d\d – \d\d:\d\d:\d\d [A-Z]\S*", clock)
        and moment.strftime("%H:%M") in clock
    )


@pytest.fixture
def minute_recording(recording):
    """A minute of synthetic ECG with a beat every 0.5 s and V beats at 1, 3, 56 and 58.5 s:
    two within half a 10-s window of each end, where the view cannot be centred on them."""
    ecg = generate(60.0, fs=FS_HZ, seed=5)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    v_times_s = (1.0, 3.0, 56.0, 58.5)
    times_s = sorted({*np.arange(0.25, 60.0, 0.5).tolist(), *v_times_s})
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=i,
            sample=round(t * FS_HZ),
            label="V" if t in v_times_s else "N",
            confidence=0.95,
            probabilities={"N": 0.95, "S": 0.0, "V": 0.05, "F": 0.0, "Q": 0.0},
        )
        for i, t in enumerate(times_s)
    )
    return recording


def test_jumps_reach_the_events_near_both_ends(browser, live_server, clinician, minute_recording):
    """Jumps search from the event jumped to last: centring on 56 s leaves the view at 50-60 s
    (its centre 55 s), and searching from the centre found 56 s again and again."""
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{minute_recording.pk}/review/")
    wait_for(browser, lambda d: canvas_data(d, "startS") is not None)

    def jump(button: str, time_s: float) -> None:
        browser.find_element("id", button).click()
        wait_for(browser, lambda d: canvas_data(d, "focusS") == pytest.approx(time_s, abs=1e-3))

    jump("next-V", 56.0)
    jump("next-V", 58.5)
    wait_for(browser, lambda d: canvas_data(d, "startS") == pytest.approx(50.0, abs=0.01))
    browser.find_element("id", "next-V").click()
    wait_for(
        browser, lambda d: "no V beat after 58.5 s" in d.find_element("id", "view-message").text
    )
    for time_s in (56.0, 3.0, 1.0):
        jump("prev-V", time_s)
    wait_for(browser, lambda d: canvas_data(d, "startS") == 0.0)
    # the strip's PNG link names the lead on screen
    assert "&channel=0" in browser.find_element("id", "export-png").get_attribute("href")

    # moving the view forgets the event: the next jump searches from the view's centre
    browser.find_element("id", "page-forward").click()  # 9-19 s, centre 14 s
    wait_for(browser, lambda d: canvas_data(d, "focusS") is None)
    assert canvas_data(browser, "startS") == pytest.approx(9.0, abs=0.01)
    jump("prev-V", 3.0)


def test_times_in_minutes_are_rounded_whole(browser, live_server, clinician, recording):
    """119.97 s reads 2:00: review.js rounds the total before splitting it into minutes and
    seconds (it read 1:60). The page's JavaScript has no unit tests; this is its check."""
    n_samples = 29_993  # 119.972 s at 250 Hz
    ecg = generate(n_samples / FS_HZ + 1.0, fs=FS_HZ, seed=7)
    adc = np.round(ecg.signal_mv[:n_samples] * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{recording.pk}/review/#t=109.972&w=10")
    wait_for(browser, lambda d: canvas_data(d, "startS") is not None)
    assert browser.find_element("id", "view-range").text == "1:50 – 2:00 of 2:00"


def test_a_window_with_more_beats_than_sent_says_so(
    browser, live_server, clinician, long_recording, monkeypatch
):
    # the server sends at most MAX_WINDOW_BEATS beats a window (20,000; a 2-h window of a
    # fast or noisy recording); the page must not pass the first ones off as all of them
    monkeypatch.setattr("monitoring.review.MAX_WINDOW_BEATS", 5)
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{long_recording.pk}/review/")
    wait_for(browser, lambda d: canvas_data(d, "startS") is not None)
    info = browser.find_element("id", "view-info").text
    assert "5 beats (the first only: zoom in to see every beat)" in info


def test_the_width_menu_shows_the_width_drawn_and_go_to_names_a_repeated_hour(
    browser, live_server, clinician, recording, settings
):
    """A 7-s recording drawn 7 s wide: the menu showed a blank, and "30 s" once chosen, though
    7 s was drawn (the width is clamped to the recording). And on the night Berlin's clocks
    went back, "Go to" 02:30:00 said nothing of which of the two 02:30s it went to."""
    settings.TIME_ZONE = "Europe/Berlin"
    ecg = generate(8.0, fs=FS_HZ, seed=3)
    adc = np.round(ecg.signal_mv[: int(7 * FS_HZ)] * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    # 02:29:55 CET: the repeated hour's second pass (01:29:55 UTC)
    recording.started_at = datetime(2026, 10, 25, 1, 29, 55, tzinfo=UTC)
    recording.save(update_fields=["started_at"])
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{recording.pk}/review/")
    wait_for(browser, lambda d: canvas_data(d, "endS") == pytest.approx(7.0))

    def menu() -> tuple[str, str]:
        return tuple(
            browser.execute_script(
                "var s = document.getElementById('window-s'), o = s.options[s.selectedIndex];"
                "return [s.value, o ? o.text : ''];"
            )
        )

    assert menu() == ("7", "7 s (all)")
    browser.find_element("css selector", "#window-s option[value='30']").click()
    wait_for(browser, lambda d: "#t=0.000&w=7" in d.current_url)
    assert canvas_data(browser, "endS") - canvas_data(browser, "startS") == pytest.approx(7.0)
    assert menu() == ("7", "7 s (all)")
    assert browser.find_element("id", "view-clock").text == "02:29:55 – 02:30:02 CET"

    Select(browser.find_element("id", "jump-as")).select_by_value("clock")
    browser.find_element("id", "jump-time").send_keys("02:30:00\n")
    wait_for(browser, lambda d: d.find_element("id", "jump-note").text)
    note = browser.find_element("id", "jump-note").text
    assert "this is the second, 02:30:00 CET (UTC+01:00)" in note, note
    assert "02:30:00 CEST, is before the recording's start" in note
    browser.find_element("css selector", "#window-s option[value='2.5']").click()
    wait_for(browser, lambda d: not d.find_element("id", "jump-note").is_displayed())
    assert menu() == ("2.5", "2.5 s")
    assert browser.find_elements("id", "window-s-shown") == []


def test_alarm_messages_close_together_do_not_overwrite_each_other(
    browser, live_server, clinician, long_recording
):
    """At a whole recording's width a few alarms close together wrote their messages on one
    row over each other, an unreadable smudge (exploratory test, 2026-12-07): each now takes
    the first of three rows where it fits, and one that fits nowhere keeps only its line."""
    from monitoring.models import Alarm

    times_s = (30.0, 30.5, 31.0, 31.5, 32.0, 32.5, 90.0)
    kinds = ("VT", "VF", "PAUSE", "AF", "PVC", "HR_HIGH", "HR_LOW")  # one open alarm a kind
    for time_s, kind in zip(times_s, kinds, strict=True):
        Alarm.objects.create(
            patient=long_recording.patient,
            recording=long_recording,
            kind=kind,
            priority="warning",
            message=f"{kind} at {time_s:g} s: a message as long as a VT alarm's is",
            details={"sample": int(time_s * FS_HZ)},
        )
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{long_recording.pk}/review/#t=0&w=120")
    wait_for(browser, lambda d: canvas_data(d, "alarmLines") == 7)
    labels = browser.execute_script(
        "return document.getElementById('review-canvas').dataset.alarmLabels"
    )
    boxes = [tuple(int(v) for v in label.split(":")) for label in labels.split(",")]
    # the first three of the burst, one per row (each message is far wider than 2.5 s at
    # this width), and the one at 90 s back on the first row
    assert sorted(box[2] for box in boxes) == [0, 0, 1, 2]
    for row in range(3):
        in_row = sorted(box[:2] for box in boxes if box[2] == row)
        assert all(left >= right for (_, right), (left, _) in zip(in_row, in_row[1:], strict=False))
