"""The review page draws the amplitude at a stated gain (headless Chromium; docs/review.md,
"Scale"): 1 mV is 10 mm (CSS mm, 96 px an inch, the live view's) at the automatic gain and
20 mm when 20 mm/mV is chosen, with a 1 mV calibration pulse as tall, the scale written beside
the menu, and the PNG link drawing at the gain chosen. The width menu's "25 mm/s" shows the
window at paper speed.

Before 2026-12-07 the canvas scaled each window to fit: 1 mV measured 156 px for a 0.3 mV and a
1 mV square wave and 80 px for a 3 mV one, with no scale, pulse or gain choice.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from selenium.webdriver.support.ui import Select

from monitoring.models import SampleChunk
from tests.chromium import log_in, wait_for, wait_for_review_view

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FS_HZ = 250.0
PX_PER_MM = 96 / 25.4  # CSS px

# The trace's row (its dark pixels' middle) in the canvas column at arguments[0] s, below the
# labels' band; and the height of the calibration pulse's left edge (blue, at x = 6).
MEASURE_JS = """
const canvas = document.getElementById("review-canvas");
const context = canvas.getContext("2d");
const d = canvas.dataset;
const x = Math.round((arguments[0] - Number(d.startS)) / (Number(d.endS) - Number(d.startS))
  * canvas.width);
function rows(column, test) {
  const data = context.getImageData(column, 0, 1, canvas.height).data, found = [];
  for (let y = 30; y < canvas.height - 20; y++) {
    if (test(data[4 * y], data[4 * y + 1], data[4 * y + 2])) found.push(y);
  }
  return found;
}
// the trace (#111, anti-aliased over two rows): grey to black, weighted by how dark
const column = context.getImageData(x, 0, 1, canvas.height).data;
let sum = 0, weight = 0;
for (let y = 30; y < canvas.height - 20; y++) {
  const r = column[4 * y], g = column[4 * y + 1], b = column[4 * y + 2];
  if (Math.max(r, g, b) < 180 && Math.abs(r - b) < 30) {
    sum += y * (255 - r); weight += 255 - r;
  }
}
const blue = rows(6, (r, g, b) => b > 150 && r < 120 && g < 160);
return {
  level: weight ? sum / weight : null,
  pulse: blue.length ? blue[blue.length - 1] - blue[0] : null,
  gain: d.gainMmPerMv || null, mmPerS: Number(d.mmPerS),
  scale: document.getElementById("paper-scale").textContent,
  png: document.getElementById("export-png").href,
};
"""


@pytest.fixture
def square_wave(recording):
    """20 s of a 1 mV square wave: 0 mV in the first second of every two."""
    t_s = np.arange(round(20 * FS_HZ)) / FS_HZ
    adc = np.where((t_s % 2.0) < 1.0, 0, recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    return recording


def measure(browser) -> dict:
    low = browser.execute_script(MEASURE_JS, 0.5)
    high = browser.execute_script(MEASURE_JS, 1.5)
    return {**high, "step_px": low["level"] - high["level"]}


def test_the_review_canvas_draws_a_millivolt_at_the_gain_chosen(
    browser, live_server, clinician, square_wave
):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{square_wave.pk}/review/#t=0&w=10")
    wait_for_review_view(browser, 0.0, 10.0)
    auto = measure(browser)
    assert auto["gain"] == "10"
    assert auto["step_px"] == pytest.approx(10 * PX_PER_MM, abs=2)  # 1 mV = 10 mm
    assert auto["pulse"] == pytest.approx(10 * PX_PER_MM, abs=3)
    assert auto["scale"].endswith(" mm/s · 10 mm/mV (auto)"), auto["scale"]
    assert "gain_mm_per_mv" not in auto["png"]  # the PNG chooses its own, and says which
    folder = Path(os.getenv("CARDIOSPIKE_SCREENSHOT_DIR") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / "review-scale.png"))

    Select(browser.find_element("id", "gain")).select_by_value("20")
    wait_for(browser, lambda d: measure(d)["gain"] == "20")
    chosen = measure(browser)
    assert chosen["step_px"] == pytest.approx(20 * PX_PER_MM, abs=2)
    assert chosen["pulse"] == pytest.approx(20 * PX_PER_MM, abs=3)
    assert chosen["scale"].endswith(" mm/s · 20 mm/mV")
    assert "gain_mm_per_mv=20" in chosen["png"]

    # paper speed: the window the canvas shows at 25 mm/s
    Select(browser.find_element("id", "window-s")).select_by_value("paper")
    wait_for(browser, lambda d: abs(measure(d)["mmPerS"] - 25) < 0.01)
    paper = measure(browser)
    assert paper["scale"] == "25 mm/s · 20 mm/mV"
    width_s = browser.execute_script(
        "var d = document.getElementById('review-canvas').dataset;"
        "return Number(d.endS) - Number(d.startS)"
    )
    canvas_px = browser.execute_script("return document.getElementById('review-canvas').width")
    assert width_s == pytest.approx(canvas_px / (25 * PX_PER_MM), abs=0.01)
