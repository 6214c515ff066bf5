"""The live view and the central station say "Analysis delayed" once the analysis falls behind
the signal (Chromium).

With the Celery worker down, the samples (the station's waves) keep coming, but the statuses,
which follow analysis rounds, stop: the pages kept showing the last heart rate and rhythm as
current ("96 bpm TACHY" for 90 s over a moving trace). Now a page compares the newest samples
it got with the analysed end the last status gave (``last_sample``; on the station the wave's
``end_sample``), and falls back on the time since the last status when it knows no analysed
end: past the limit (15 s, shortened here, plus the last chunk's length) it says "Analysis
delayed N s" and blanks the heart rate and rhythm; the next status that is not behind brings
them back (docs/dashboard.md, "Analysis delayed"). The messages are handed to the pages as the
server sends them, in real time, by a feeder in the page (the server's side:
tests/test_stale_analysis_messages.py).
"""

import re
import time

import pytest
from django.db import transaction

from monitoring.ingest import ingest_chunk
from monitoring.models import Recording
from tests.chromium import log_in, wait_for
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)
from tests.test_device_ingest import make_chunk
from tests.test_live_browser import eager_daphne, module_service_env  # noqa: F401 (fixtures)
from tests.test_live_socket_browser import HALF_OPEN_SOCKETS_JS, wait_for_backlog

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

FS_HZ = 250
STATION_FACTOR = 5  # 250 Hz decimated to the station's 50 Hz (consumers.decimated_rate)
# the limit, shortened from status.js's 15 s so that the tests take seconds
ANALYSIS_DELAY_S = 3
TIMING_JS = (
    HALF_OPEN_SOCKETS_JS + f"\nwindow.CardioSpikeSocketTiming.analysisDelayS = {ANALYSIS_DELAY_S};"
)
# how long after the limit (plus a 1-s chunk) a page may take to say so: it looks every second,
# and a loaded machine runs the page's timers late
MARGIN_S = 3

# A device in the page: a chunk of ``chunk_s`` seconds every ``chunk_s`` seconds (``samples``,
# or on the station a decimated ``wave`` with end_sample and recording_fs_hz as
# consumers.wave_message makes it), and while ``analysing``, after every ``status_every``-th
# chunk, a status ``status_delay_ms`` later whose last_sample is that chunk's end (the analysis
# round that caught up with it). The test changes window.__feed as it goes.
FEEDER_JS = """
var part = arguments[0];
window.__feed = arguments[1];
function deliver(message) {
  var entry = window.__sockets.filter(function (s) { return s.url.indexOf(part) >= 0; }).pop();
  entry.socket.dispatchEvent(new MessageEvent("message", {data: JSON.stringify(message)}));
}
function status(feed, analysed) {
  return {type: "status", patient: feed.patient, recording: feed.recording, hr_bpm: feed.hr_bpm,
    rhythm: feed.rhythm, signal: "live", signal_age_s: 0.0, alarm: null, last_sample: analysed,
    time: new Date().toISOString()};
}
function tick() {
  var feed = window.__feed;
  var first = feed.next, n = Math.round(feed.chunk_s * feed.fs_hz);
  var shape = function (index) { return (index % 62) / 62; };
  if (feed.station) {
    var firstWave = Math.ceil(first / feed.factor), values = [];
    for (var i = firstWave * feed.factor; i < first + n; i += feed.factor) {
      values.push(shape(i));
    }
    deliver({type: "wave", patient: feed.patient, recording: feed.recording,
      first_sample: firstWave, fs_hz: feed.fs_hz / feed.factor, samples_mv: values,
      lead_off: false, sent_at: Date.now() / 1000, end_sample: first + n,
      recording_fs_hz: feed.fs_hz});
  } else {
    var samples = [];
    for (var j = first; j < first + n; j++) { samples.push(shape(j)); }
    deliver({type: "samples", recording: feed.recording, first_sample: first, fs_hz: feed.fs_hz,
      samples_mv: samples, lead_off: false, sent_at: Date.now() / 1000});
  }
  feed.next = first + n;
  feed.chunks += 1;
  if (feed.analysing && feed.chunks % feed.status_every === 0) {
    var analysed = feed.next;
    setTimeout(function () { deliver(status(window.__feed, analysed)); }, feed.status_delay_ms);
  }
  setTimeout(tick, feed.chunk_s * 1000);
}
tick();
"""

# Everything the vitals showed, in order, so that a test can ask whether a delay was ever shown
# (or the heart rate blanked) between two looks of its own.
WATCH_JS = """
var badge = document.querySelector(arguments[0]), hr = document.querySelector(arguments[1]);
window.__seen = {badge: false, hr: []};
new MutationObserver(function () {
  if (!badge.hidden) { window.__seen.badge = true; }
  var text = hr.textContent;
  if (window.__seen.hr[window.__seen.hr.length - 1] !== text) { window.__seen.hr.push(text); }
}).observe(document.body, {attributes: true, childList: true, subtree: true, characterData: true});
"""


class Page:
    """The live view or the station, its selectors, and the feeder in it."""

    def __init__(self, driver, base_url: str, patient_id: int, recording: int, station: bool):
        self.driver, self.station = driver, station
        self.socket = "/ws/station/" if station else "/ws/patients/"
        if station:
            tile = f"#tile-{patient_id}"
            self.badge, self.hr, self.rhythm = (
                f"{tile} .analysis-badge",
                f"{tile} .hr",
                f"{tile} .rhythm",
            )
            self.delayed_element, self.signal_badge = tile, f"{tile} .signal-badge"
            driver.get(f"{base_url}/station/")
            connection = "station-connection"
        else:
            self.badge, self.hr, self.rhythm = "#analysis-state", "#hr-value", "#rhythm-value"
            self.delayed_element, self.signal_badge = "#live", "#signal-state"
            driver.get(f"{base_url}/patients/{patient_id}/live/")
            connection = "live-connection"
        wait_for(driver, lambda d: d.find_element("id", connection).text == "connected")
        # the server's hello and backlog first: handled after the feeder's messages, they would
        # rewrite what those showed
        wait_for_backlog(driver, self.socket)
        self.feed = {
            "patient": patient_id,
            "recording": recording,
            "station": station,
            "factor": STATION_FACTOR,
            "fs_hz": FS_HZ,
            # after the one stored chunk, whose analysed end the server's backlog status gave
            "next": FS_HZ,
            "chunks": 0,
            "chunk_s": 1,
            "analysing": True,
            "status_every": 1,
            "status_delay_ms": 300,
            "hr_bpm": 96.0,
            "rhythm": "TACHY",
        }

    def start(self, **changes) -> None:
        self.feed.update(changes)
        self.driver.execute_script(FEEDER_JS, self.socket, self.feed)

    def change(self, **changes) -> None:
        for key, value in changes.items():
            self.driver.execute_script(f"window.__feed[{key!r}] = arguments[0];", value)

    def text(self, selector: str) -> str:
        return self.driver.find_element("css selector", selector).text

    def shown(self, selector: str) -> bool:
        return self.driver.find_element("css selector", selector).is_displayed()

    def delayed(self) -> bool:
        return self.shown(self.badge)

    def classes(self) -> str:
        return self.driver.find_element("css selector", self.delayed_element).get_attribute("class")

    def watch(self) -> None:
        self.driver.execute_script(WATCH_JS, self.badge, self.hr)

    def seen(self) -> dict:
        return self.driver.execute_script("return window.__seen;")


@pytest.fixture
def recording(device):
    """The patient's device recording, with one stored second: the pages' hello names it."""
    with transaction.atomic():
        ingest_chunk(device, make_chunk(seq=0, n=FS_HZ, session="5ta1e000"))
    return Recording.objects.get().pk


def open_page(browser, base_url: str, patient, recording: int, station: bool) -> Page:
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": TIMING_JS})
    return Page(browser, base_url, patient.pk, recording, station)


def delay_seconds(page: Page) -> int:
    match = re.match(r"Analysis delayed (\d+) s", page.text(page.badge))
    assert match, page.text(page.badge)
    return int(match.group(1))


@pytest.mark.parametrize("station", [False, True], ids=["live-view", "station"])
def test_the_pages_say_analysis_delayed_when_statuses_stop_and_recover_when_they_resume(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    recording,
    station,
):
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    page = open_page(browser, eager_daphne, patient, recording, station)
    page.start()
    wait_for(browser, lambda d: page.text(page.hr) == "96", timeout_s=5)
    assert page.text(page.rhythm) == "TACHY" and not page.delayed()

    # the worker stops: samples keep coming, statuses do not
    page.change(analysing=False)
    stopped_at = time.monotonic()
    wait_for(browser, lambda d: page.delayed(), timeout_s=ANALYSIS_DELAY_S + 1 + MARGIN_S)
    # not before the limit: the last status was at most a chunk behind
    assert time.monotonic() - stopped_at >= ANALYSIS_DELAY_S - 1
    assert page.text(page.hr) == "--" and page.text(page.rhythm) == "—"
    assert "analysis-delayed" in page.classes()
    first_delay_s = delay_seconds(page)
    assert first_delay_s > ANALYSIS_DELAY_S
    # not "No signal": the samples come, and the trace is not greyed
    assert not page.shown(page.signal_badge) and "no-signal" not in page.classes()
    # the number grows while the analysis stays stopped
    wait_for(browser, lambda d: delay_seconds(page) >= first_delay_s + 2, timeout_s=5)
    assert page.text(page.hr) == "--"

    # the worker is back and catches up: the display returns to normal by itself
    page.change(analysing=True, hr_bpm=79.0, rhythm="AF")
    wait_for(browser, lambda d: not page.delayed(), timeout_s=1 + MARGIN_S)
    wait_for(browser, lambda d: page.text(page.hr) == "79", timeout_s=2)
    assert page.text(page.rhythm) == "AF" and "analysis-delayed" not in page.classes()


def open_second_window(browser) -> str:
    """A second window (not a tab: a tab behind another is hidden, and Chromium slows a hidden
    page's timers) in the test's browser context, so with its login; made current."""
    current = browser.current_window_handle
    context_id = browser.browsing_context.get_tree(root=current, max_depth=0)[0].user_context
    window = browser.browsing_context.create(type="window", user_context=context_id)
    browser.switch_to.window(window)
    return window


def test_a_healthy_stream_never_says_analysis_delayed(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    recording,
):
    """Statuses as a healthy stream brings them: a round after every chunk or every other one
    (coalesced under load), the analysed end up to two chunks behind, then long chunks (4 s,
    longer than the limit here) analysed once each has come.

    The live view and the station are watched at the same time, each in a window of its own
    (both visible, so their timers run at full rate): the 20 s of healthy stream are waited
    once, not once a page."""
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    pages = {}
    for name, station in (("live view", False), ("station", True)):
        window = browser.current_window_handle if not pages else open_second_window(browser)
        page = open_page(browser, eager_daphne, patient, recording, station)
        page.start(status_every=2, status_delay_ms=900)
        wait_for(browser, lambda d, page=page: page.text(page.hr) == "96", timeout_s=5)
        page.watch()
        pages[name] = (window, page)
    time.sleep(7)
    for window, page in pages.values():
        browser.switch_to.window(window)
        page.change(chunk_s=4, status_every=1)
    time.sleep(13)
    for name, (window, page) in pages.items():
        browser.switch_to.window(window)
        visibility = browser.execute_script("return document.visibilityState;")
        assert visibility == "visible", f"{name}: the page was {visibility}, its timers slowed"
        seen = page.seen()
        assert not seen["badge"] and not page.delayed(), f"{name}: said analysis delayed"
        assert "--" not in seen["hr"] and page.text(page.hr) == "96", f"{name}: {seen['hr']}"
        assert page.text(page.rhythm) == "TACHY", name


def test_the_live_view_says_analysis_delayed_when_a_new_recording_never_gets_a_status(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    recording,
):
    """The timer fallback: the device started a new session after the statuses stopped, so
    the page knows no analysed end of the recording it now shows; its samples come for longer
    than the limit without a status."""
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    page = open_page(browser, eager_daphne, patient, recording, station=False)
    page.start()
    wait_for(browser, lambda d: page.text(page.hr) == "96", timeout_s=5)
    page.change(analysing=False, recording=recording + 1, next=0)
    wait_for(browser, lambda d: page.text("#recording-info").startswith(f"#{recording + 1} "))
    assert not page.delayed()
    wait_for(browser, lambda d: page.delayed(), timeout_s=ANALYSIS_DELAY_S + 1 + MARGIN_S)
    assert page.text(page.hr) == "--" and page.text(page.rhythm) == "—"
    page.change(analysing=True)
    wait_for(browser, lambda d: page.text(page.hr) == "96", timeout_s=1 + MARGIN_S)
    assert not page.delayed()
