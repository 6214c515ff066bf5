"""The live dashboard end to end in a real headless Chromium (issue 6).

daphne serves the pages and the websockets; a virtual device (monitoring/simulator.py, in a
thread of this process) streams to it over HTTP a synthetic sinus rhythm whose first VT run
starts 16 s in. The daphne child gets no REDIS_URL, so each chunk's analysis and alarms run eagerly
inside daphne and its in-memory channel layer reaches its own consumers: the whole chain from
device to browser runs in one server process, on the test database.

The browser logs in, watches the live view (the sweeping canvas changes, a heart rate shows),
waits for the VT alarm, acknowledges it and sees it acknowledged; then the central station
shows the patient's tile with a moving waveform and sends its keep-alive pings. Then the
device goes silent (as if killed: its recording stays open): the tile says "No signal" with no
heart rate, and so does the live view opened meanwhile, until a new session streams and it
clears by itself. Screenshots go to test-artifacts/ (ignored by git): live-sinus.png,
live-vt-alarm.png, live-acknowledged.png, station.png, station-no-signal.png,
live-no-signal.png.
"""

import asyncio
import threading
import time

import numpy as np
import pytest

from inference import synthetic
from monitoring.models import Alarm, Device
from monitoring.simulator import DeviceConfig, SimulationConfig, simulate, to_adc
from tests.chromium import log_in, wait_for
from tests.conftest import PROJECT_ROOT
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
FS_HZ = 250.0
GAIN_ADC_PER_MV = 200.0
# The feed outlasts the test: on a loaded machine the station check came after an 80-s feed
# had ended (its waveform no longer moved). The test stops the device when it is done.
SIGNAL_S = 150.0
VT_PART_S = 80.0


@pytest.fixture(scope="module")
def module_service_env(module_service_env):
    """daphne's environment without REDIS_URL: analysis, alarms and the channel layer in its
    process (the test has no Celery worker, and a Redis layer would be a second hop)."""
    return {key: value for key, value in module_service_env.items() if key != "REDIS_URL"}


@pytest.fixture
def eager_daphne(daphne_server):  # noqa: F811 (the fixture imported above)
    return f"http://{daphne_server}"


def sinus_with_vt_runs_mv() -> np.ndarray:
    """150 s: 80 s of sinus rhythm at 75 bpm with two VT runs, then 70 s of sinus rhythm.

    Seed 1 of ``synthetic.generate`` for the first 80 s: offline, ``analyze_signal`` finds VT
    episodes at 16.0-17.8 s and 70.3-72.5 s in it. (A strip of nothing but synthetic VT is not
    what the beat model calls V: without normal beats around them its beats read as a sinus
    tachycardia.) The sinus tail (seed 2) only keeps the feed going.
    """
    noise = synthetic.NoiseConfig.realistic()
    with_vt = synthetic.generate(
        VT_PART_S, fs=FS_HZ, rhythm="NSR", hr_bpm=75, vt_runs=2, noise=noise, seed=1
    ).signal_mv
    tail = synthetic.generate(
        SIGNAL_S - VT_PART_S, fs=FS_HZ, rhythm="NSR", hr_bpm=75, noise=noise, seed=2
    ).signal_mv
    return np.concatenate([with_vt, tail])


class DeviceThread:
    """One virtual device streaming a signal in real time from a thread, stoppable; with
    ``close=False`` it stops as a device that is switched off, leaving its recording open."""

    def __init__(self, base_url: str, token: str, signal_mv: np.ndarray, close: bool = True):
        self.config = DeviceConfig(
            name="browser-test", token=token, fs_hz=FS_HZ, gain_adc_per_mv=GAIN_ADC_PER_MV
        )
        self.signal_adc = to_adc(signal_mv, GAIN_ADC_PER_MV)
        self.simulation = SimulationConfig(
            base_url=base_url,
            chunk_s=0.5,
            duration_s=len(signal_mv) / FS_HZ,
            stagger=False,
            close=close,
        )
        self.loop = None
        self.stop_event = None
        self.reports = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def main():
            self.loop = asyncio.get_running_loop()
            self.stop_event = asyncio.Event()
            return await simulate(
                [self.config], [self.signal_adc], self.simulation, self.stop_event
            )

        self.reports = asyncio.run(main())

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=60)


def canvas_png(driver, selector: str) -> str:
    return driver.execute_script(
        "return document.querySelector(arguments[0]).toDataURL();", selector
    )


def green_pixels(driver, selector: str) -> int:
    """Pixels of a station tile's green trace on its dark background."""
    return driver.execute_script(
        """
        const canvas = document.querySelector(arguments[0]);
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let green = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i + 1] > 120 && data[i] < 120) green++;
        }
        return green;
        """,
        selector,
    )


def dark_pixels(driver, selector: str, top_px: int | None = None) -> int:
    """Near-black pixels a canvas holds (the trace, labels), optionally in its top band only."""
    return driver.execute_script(
        """
        const canvas = document.querySelector(arguments[0]);
        const rows = arguments[1] === null ? canvas.height : arguments[1];
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, rows).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i] < 90 && data[i + 1] < 90 && data[i + 2] < 90 && data[i + 3] > 200) dark++;
        }
        return dark;
        """,
        selector,
        top_px,
    )


def qrs_height_px(driver, selector: str, top_px: int) -> float:
    """The trace's tallest strokes: the 98th percentile over the canvas columns of the rows
    between a column's highest and lowest near-black pixel (below the label band). A QRS
    complex is drawn as steep strokes within a few columns, so this follows its height in
    pixels and not the baseline's wander across the sweep."""
    return driver.execute_script(
        """
        const canvas = document.querySelector(arguments[0]);
        const top = arguments[1];
        const rows = canvas.height - top;
        const data = canvas.getContext("2d").getImageData(0, top, canvas.width, rows).data;
        const first = new Array(canvas.width).fill(-1), last = new Array(canvas.width).fill(-1);
        for (let i = 0; i < data.length; i += 4) {
          if (data[i] < 90 && data[i + 1] < 90 && data[i + 2] < 90 && data[i + 3] > 200) {
            const column = (i / 4) % canvas.width, row = Math.floor(i / 4 / canvas.width);
            if (first[column] < 0) first[column] = row;
            last[column] = row;
          }
        }
        const extents = first.map((row, column) => row < 0 ? 0 : last[column] - row);
        extents.sort((a, b) => a - b);
        return extents[Math.floor(0.98 * (extents.length - 1))];
        """,
        selector,
        top_px,
    )


def screenshot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / name))


# Injected before the page's scripts: keeps every patient-stream socket with the sample ranges
# it delivered, so the test can drop one and check that the next resumes without a hole.
RECORD_SOCKETS_JS = """
(function () {
  const Native = window.WebSocket;
  window.__patientSockets = [];
  function Recording(url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    if (String(url).includes("/ws/patients/")) {
      const record = { url: String(url), samples: [] };
      window.__patientSockets.push({ socket: socket, record: record });
      socket.addEventListener("message", function (event) {
        const message = JSON.parse(event.data);
        if (message.type === "samples") {
          record.samples.push([message.first_sample,
            message.first_sample + message.samples_mv.length]);
        }
      });
    }
    return socket;
  }
  Recording.prototype = Native.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) {
    Recording[name] = Native[name];
  });
  window.WebSocket = Recording;
})();
"""


# Injected before every page's scripts: a signal silent for 5 s (plus the last chunk's 0.5 s)
# is lost, not 10 s (NO_SIGNAL_S, livesocket.js), so the test waits half as long for "No signal"
# once the device stops. Devices here send a chunk every 0.5 s.
NO_SIGNAL_S = 5
FAST_NO_SIGNAL_JS = f"window.CardioSpikeSocketTiming = {{ noSignalS: {NO_SIGNAL_S} }};"


# Injected before the station's scripts: its 10-s keep-alive pings (livesocket.js) come every
# 0.3 s instead, and what the page sends over its sockets is kept, so the test sees the pings
# without waiting 10 s.
STATION_PINGS_JS = """
(function () {
  if (!location.pathname.startsWith("/station/")) { return; }
  window.CardioSpikeSocketTiming = Object.assign({}, window.CardioSpikeSocketTiming,
    { pingMs: 300 });
  const nativeSend = WebSocket.prototype.send;
  window.__stationSent = [];
  WebSocket.prototype.send = function (data) {
    window.__stationSent.push(String(data));
    return nativeSend.call(this, data);
  };
})();
"""


def patient_sockets(driver) -> list[dict]:
    return driver.execute_script(
        "return window.__patientSockets.map(function (s) { return s.record; });"
    )


def vt_alarm_row(driver):
    for row in driver.find_elements("css selector", "#alarm-table tbody tr"):
        cells = row.find_elements("tag name", "td")
        if len(cells) >= 4 and cells[2].text.startswith("VT"):
            return row
    return None


def explain_missing_alarm(driver, patient, daphne_log) -> str:
    from monitoring.models import Episode

    screenshot(driver, "live-no-vt-alarm.png")
    alarms = [str(alarm) for alarm in Alarm.objects.filter(patient=patient)]
    episodes = [str(e) for e in Episode.objects.filter(recording__patient=patient)]
    table = driver.find_element("id", "alarm-table").text
    log = daphne_log.read_text(errors="replace")[-3000:]
    return (
        f"no VT alarm row on the page\nalarms: {alarms}\nepisodes: {episodes}\n"
        f"table:\n{table}\n--- daphne log ---\n{log}"
    )


def test_live_view_and_station_follow_a_simulated_patient_through_a_vt_alarm(
    browser,
    eager_daphne,
    clinician,
    patient,
    daphne_process,  # noqa: F811 (the fixture imported above; its log explains a failure)
):
    from selenium.common.exceptions import TimeoutException

    device = Device.objects.create(serial="SIM-BROWSER", label="bed 1", patient=patient)
    token = device.issue_token()
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    for script in (FAST_NO_SIGNAL_JS, RECORD_SOCKETS_JS):
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    assert "Research software, not a medical device" in browser.page_source

    with DeviceThread(eager_daphne, token, sinus_with_vt_runs_mv(), close=False) as feed:
        started = time.monotonic()
        # the live socket connects and the trace sweeps: two snapshots 1.5 s apart differ
        wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
        wait_for(browser, lambda d: dark_pixels(d, "#live-ecg") > 800, timeout_s=30)
        first = canvas_png(browser, "#live-ecg")
        time.sleep(1.5)
        assert canvas_png(browser, "#live-ecg") != first

        # a heart rate from the analysis: 75 bpm sinus, or faster once the VT run (16 s in)
        # enters the running mean on a slow machine
        wait_for(browser, lambda d: d.find_element("id", "hr-value").text.isdigit(), 45)
        assert 60 <= int(browser.find_element("id", "hr-value").text) <= 200
        # beat labels above the R peaks (the trace itself stays well below the top band)
        wait_for(browser, lambda d: dark_pixels(d, "#live-ecg", top_px=18) > 20, 30)
        screenshot(browser, "live-sinus.png")

        # the gain selector rescales the trace: twice the mm per mV, about twice the height
        # (measured on the same sweep, a few tenths of a second apart)
        from selenium.webdriver.support.ui import Select

        at_10 = qrs_height_px(browser, "#live-ecg", top_px=18)
        Select(browser.find_element("id", "gain")).select_by_value("20")
        time.sleep(0.5)
        at_20 = qrs_height_px(browser, "#live-ecg", top_px=18)
        Select(browser.find_element("id", "gain")).select_by_value("10")
        assert at_10 > 15 and 1.5 * at_10 < at_20 < 2.5 * at_10, (at_10, at_20)

        # a dropped connection is reopened (after 1 s) with since_s covering the time it was
        # away, and its backlog overlaps what the first socket delivered: no hole
        browser.execute_script("window.__patientSockets[0].socket.close();")
        wait_for(
            browser, lambda d: len(patient_sockets(d)) == 2 and patient_sockets(d)[1]["samples"]
        )
        wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
        first_socket, second_socket = patient_sockets(browser)
        since_s = int(second_socket["url"].split("since_s=")[1])
        assert 5 <= since_s <= 9  # about 1 s away + 5 s margin; the default would be 10
        delivered_up_to = max(end for _, end in first_socket["samples"])
        assert min(start for start, _ in second_socket["samples"]) <= delivered_up_to

        # the VT run starts 20 s into the signal; its alarm reaches the page over the socket
        try:
            row = wait_for(browser, vt_alarm_row, timeout_s=90)
        except TimeoutException:
            log = daphne_process.log_path
            raise AssertionError(explain_missing_alarm(browser, patient, log)) from None
        vt_after_s = time.monotonic() - started
        assert "critical" in row.get_attribute("class")
        assert browser.find_element("id", "alarm-banner").text  # the banner names an alarm
        screenshot(browser, "live-vt-alarm.png")

        row.find_element("css selector", "button.ack").click()
        wait_for(browser, lambda d: vt_alarm_row(d).find_elements("tag name", "td")[4].text)
        cells = vt_alarm_row(browser).find_elements("tag name", "td")
        assert cells[4].text.startswith("clinician at")
        assert cells[3].text in ("acknowledged", "resolved")
        assert not vt_alarm_row(browser).find_elements("css selector", "button.ack")
        screenshot(browser, "live-acknowledged.png")
        alarm = Alarm.objects.get(patient=patient, kind="VT")
        assert alarm.acknowledged_by == clinician and alarm.acknowledged_at is not None

        # the central station: the patient's tile, its waveform moving, a heart rate
        browser.execute_cdp_cmd(
            "Page.addScriptToEvaluateOnNewDocument", {"source": STATION_PINGS_JS}
        )
        browser.get(f"{eager_daphne}/station/")
        tile = f"#tile-{patient.pk}"
        wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
        wait_for(
            browser,
            lambda d: d.find_element("css selector", f"{tile} .hr").text.isdigit(),
            timeout_s=30,
        )
        wave = f"{tile} canvas.wave"
        # the station starts with a backlog of the last seconds of wave (since_s), then live
        wait_for(browser, lambda d: green_pixels(d, wave) > 150, timeout_s=20)
        snapshot = canvas_png(browser, wave)
        wait_for(browser, lambda d: canvas_png(d, wave) != snapshot, timeout_s=10)
        # the keep-alive pings that make a quiet station re-check its patients
        wait_for(
            browser,
            lambda d: any('"ping"' in sent for sent in d.execute_script("return __stationSent;")),
            timeout_s=10,
        )
        screenshot(browser, "station.png")
        assert not browser.find_element("css selector", f"{tile} .signal-badge").is_displayed()

        # the device goes silent, its recording still open: no wave for NO_SIGNAL_S (10 s,
        # livesocket.js; 5 s here) and the tile says so and blanks its heart rate and rhythm,
        # whatever alarm it shows
        feed.stop()
        check_no_signal(browser, f"{tile} .signal-badge", f"{tile} .hr", f"{tile} .rhythm")
        assert "no-signal" in browser.find_element("css selector", tile).get_attribute("class")
        screenshot(browser, "station-no-signal.png")

    # the live view opened now: the last chunk is older than NO_SIGNAL_S, which the status
    # after the backlog says (signal_age_s), so the page shows no numbers from the start
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
    # (well within NO_SIGNAL_S: a page that counted from the backlog's arrival would wait that)
    check_no_signal(browser, "#signal-state", "#hr-value", "#rhythm-value", timeout_s=2.5)
    assert browser.find_element("id", "recording-info").text.endswith("· no signal")
    screenshot(browser, "live-no-signal.png")

    # the device is back (a new session, a new recording): the view clears by itself
    tail = synthetic.generate(60.0, fs=FS_HZ, rhythm="NSR", hr_bpm=75, seed=3).signal_mv
    with DeviceThread(eager_daphne, token, tail):
        wait_for(
            browser,
            lambda d: not d.find_element("id", "signal-state").is_displayed(),
            timeout_s=20,
        )
        assert "no-signal" not in browser.find_element("id", "live").get_attribute("class")
        wait_for(browser, lambda d: d.find_element("id", "hr-value").text.isdigit(), 45)
        assert browser.find_element("id", "recording-info").text.endswith("· live")
    print(f"VT alarm on the page {vt_after_s:.0f} s after the device started")  # noqa: T201


def check_no_signal(driver, badge: str, hr: str, rhythm: str, timeout_s: float = 20) -> None:
    """The no-signal state: the badge shows (within ``timeout_s``), no heart rate or rhythm."""
    wait_for(
        driver,
        lambda d: d.find_element("css selector", badge).is_displayed(),
        timeout_s=timeout_s,
    )
    assert driver.find_element("css selector", badge).text.startswith("No signal")
    assert driver.find_element("css selector", hr).text == "--"
    assert driver.find_element("css selector", rhythm).text == "—"
