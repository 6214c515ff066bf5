"""The review page marks the samples a device sent with an electrode off: a blue-grey band
labelled "Leads off" over them in the trace, and on the overview bar (docs/review.md). Until
2026-12-07 they were drawn like ECG, a flat leads-off line like an asystole."""

import os
from pathlib import Path

import numpy as np
import pytest

from monitoring.models import SampleChunk
from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
FS_HZ = 250.0

# The share of a rectangle of the review canvas (x from start_s to end_s, the trace's rows)
# that is blue-grey: the leads-off band over white paper; the trace, the ECG paper's pink
# lines and the white around them are not.
BLUISH_SHARE_JS = """
const canvas = document.getElementById("review-canvas");
const [startS, endS] = [arguments[0], arguments[1]];
const viewStart = Number(canvas.dataset.startS), viewEnd = Number(canvas.dataset.endS);
const x0 = Math.ceil((startS - viewStart) / (viewEnd - viewStart) * canvas.width) + 2;
const x1 = Math.floor((endS - viewStart) / (viewEnd - viewStart) * canvas.width) - 2;
const data = canvas.getContext("2d").getImageData(x0, 40, x1 - x0, canvas.height - 80).data;
let bluish = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i + 2] > data[i] + 10 && data[i + 2] > data[i + 1]) bluish++;
}
return bluish / (data.length / 4);
"""


@pytest.fixture
def flat_leads_off_recording(recording, rng):
    """Ten 1-s chunks of noise around 0 mV; chunks 3 and 4 were sent with the leads off (and
    are flat: what an electrode off often looks like)."""
    for seq in range(10):
        adc = rng.integers(-100, 100, size=250).astype(np.int16)
        lead_off = seq in (3, 4)
        chunk = SampleChunk.from_samples(recording, seq, seq * 250, adc * (not lead_off))
        chunk.lead_off = lead_off
        chunk.save()
    return recording


def test_the_review_page_draws_a_leads_off_band_over_those_samples(
    browser, live_server, clinician, flat_leads_off_recording
):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{flat_leads_off_recording.pk}/review/#t=0&w=10")
    wait_for(
        browser,
        lambda d: (
            d.execute_script("return document.getElementById('review-canvas').dataset.leadsOff")
            is not None
        ),
    )
    assert (
        browser.execute_script("return document.getElementById('review-canvas').dataset.leadsOff")
        == "3-5"
    )
    assert browser.execute_script(BLUISH_SHARE_JS, 3.0, 5.0) > 0.5  # the band
    assert browser.execute_script(BLUISH_SHARE_JS, 0.5, 2.5) < 0.01  # ECG paper and trace
    assert browser.execute_script(BLUISH_SHARE_JS, 5.5, 9.5) < 0.01
    counts = browser.find_element("id", "beat-counts").text
    assert "leads off 1" in counts
    folder = Path(os.getenv("CARDIOSPIKE_SCREENSHOT_DIR") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(folder / "review-leads-off.png"))
