"""The live ECG on a phone shows the newest signal, at the paper speed it claims (headless
Chromium, walkthrough of 2026-12-07).

At 390 x 844 the 1100-px sweep (11 s) scrolled inside a 322-px frame: only its first 3 s were
on screen, so the newest samples showed about a quarter of the time. The sweep now takes its
frame's width at CSS's 3.78 px a mm (25 mm/s; 4 px a mm, 5.8 % large, until 2026-12-07, the
review page's scale since: ecgpaper.js): a phone shows the last 3.2 s, a desktop 11.6 s.

The server is Django's live server (no websockets): a socket injected into the page plays the
server's part, with a hello and 20 s of samples.
"""

import pytest

from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250
SIGNAL_S = 20
PX_PER_S = 25 * 96 / 25.4  # 25 mm/s at CSS's 96 px an inch

# Injected before the page's scripts: the patient socket opens and sends a hello and SIGNAL_S
# seconds of samples in 1-s messages (a 1-mV spike every 0.8 s on a flat line), as the server's
# backlog does.
FAKE_SOCKET_JS = f"""
(function () {{
  function FakeSocket(url) {{
    var socket = this;
    socket.readyState = 0;
    setTimeout(function () {{
      socket.readyState = 1;
      socket.onopen();
      var send = function (message) {{ socket.onmessage({{ data: JSON.stringify(message) }}); }};
      send({{ type: "hello", recording: {{ id: 1, fs_hz: {FS_HZ}, lead: "II", live: true }} }});
      for (var second = 0; second < {SIGNAL_S}; second++) {{
        var values = [];
        for (var i = 0; i < {FS_HZ}; i++) {{
          var sample = second * {FS_HZ} + i;
          values.push(sample % {round(0.8 * FS_HZ)} < 3 ? 1.0 : 0.0);
        }}
        send({{ type: "samples", recording: 1, fs_hz: {FS_HZ}, first_sample: second * {FS_HZ},
          samples_mv: values }});
      }}
      window.__samplesSent = {SIGNAL_S * FS_HZ};
    }}, 0);
  }}
  FakeSocket.prototype.send = function () {{}};
  FakeSocket.prototype.close = function () {{}};
  FakeSocket.CONNECTING = 0; FakeSocket.OPEN = 1; FakeSocket.CLOSING = 2; FakeSocket.CLOSED = 3;
  window.WebSocket = FakeSocket;
}})();
"""

# The trace's geometry as shown, and whether the canvas holds ink (the trace is #111; the grid
# is pink, the calibration pulse blue) in columns from..to (CSS px), in any row.
GEOMETRY_JS = """
var canvas = document.getElementById("live-ecg"), frame = canvas.parentNode;
var box = canvas.getBoundingClientRect(), frameBox = frame.getBoundingClientRect();
var ratio = canvas.width / box.width;
function ink(fromPx, toPx) {
  var x0 = Math.max(0, Math.round(fromPx * ratio)), x1 = Math.round(toPx * ratio);
  var data = canvas.getContext("2d").getImageData(x0, 0, Math.max(1, x1 - x0), canvas.height).data;
  for (var k = 0; k < data.length; k += 4) {
    if (data[k] < 90 && data[k + 1] < 90 && data[k + 2] < 90) { return true; }
  }
  return false;
}
return {
  shownWidth: box.width, shownHeight: box.height, canvasWidth: canvas.width,
  canvasHeight: canvas.height, dpr: window.devicePixelRatio,
  left: box.left, frameLeft: frameBox.left + frame.clientLeft,
  frameVisibleWidth: frame.clientWidth, frameScrollWidth: frame.scrollWidth,
  sweepLabel: document.getElementById("sweep-seconds").textContent,
  inkAt: arguments[0] === null ? null : ink(arguments[0] - 3, arguments[0]),
  inkAhead: arguments[0] === null ? null : ink(arguments[0] + 4, arguments[0] + 24),
};
"""


def newest_x_px(shown_width_px: float) -> float:
    """Where live.js writes the newest sample: the sweep holds width / PX_PER_S s of samples."""
    n = round(shown_width_px / PX_PER_S * FS_HZ)
    return ((SIGNAL_S * FS_HZ - 1) % n) / n * shown_width_px


def geometry(browser) -> dict:
    shown = browser.execute_script(GEOMETRY_JS, None)
    return browser.execute_script(GEOMETRY_JS, newest_x_px(shown["shownWidth"]))


def open_live(browser, live_server, patient, width_px: int) -> dict:
    browser.set_window_size(width_px, 844)
    browser.get(f"{live_server.url}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.execute_script("return window.__samplesSent || 0"))
    wait_for(browser, lambda d: geometry(d)["inkAt"])  # drawn (next animation frame)
    return geometry(browser)


def assert_newest_sample_on_screen(shown: dict) -> None:
    # the canvas fits its frame: nothing scrolls out of view
    assert shown["frameScrollWidth"] <= shown["frameVisibleWidth"], shown
    assert shown["left"] >= shown["frameLeft"] - 0.5, shown
    assert (
        shown["left"] + shown["shownWidth"] <= shown["frameLeft"] + shown["frameVisibleWidth"] + 0.5
    )
    x = newest_x_px(shown["shownWidth"])
    assert x < shown["shownWidth"]
    # the trace ends there, with the blank ahead of the write position after it
    assert shown["inkAt"] and not shown["inkAhead"], shown
    # drawn at the size shown (not scaled): CSS's mm, 25 mm/s as the label says
    assert shown["canvasWidth"] == round(shown["shownWidth"] * shown["dpr"])
    assert shown["shownHeight"] == 300
    assert shown["sweepLabel"] == f"{shown['shownWidth'] / PX_PER_S:.1f}"


def test_a_phone_shows_the_newest_samples_of_a_shorter_sweep(
    browser, live_server, clinician, patient
):
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_SOCKET_JS})
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    phone = open_live(browser, live_server, patient, 390)
    assert phone["shownWidth"] < 390
    assert_newest_sample_on_screen(phone)
    assert phone["sweepLabel"] in ("3.2", "3.3", "3.4")  # seconds of paper across the frame


def test_a_desktop_keeps_its_11_6_s_sweep_and_a_turned_phone_keeps_the_newest_samples(
    browser, live_server, clinician, patient
):
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_SOCKET_JS})
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    desktop = open_live(browser, live_server, patient, 1280)
    assert desktop["shownWidth"] == 1100 and desktop["sweepLabel"] == "11.6"
    assert_newest_sample_on_screen(desktop)
    # narrowed without reloading: the sweep shortens and still ends at the newest sample
    browser.set_window_size(390, 844)
    wait_for(browser, lambda d: geometry(d)["shownWidth"] < 390)
    wait_for(browser, lambda d: geometry(d)["inkAt"])
    assert_newest_sample_on_screen(geometry(browser))
