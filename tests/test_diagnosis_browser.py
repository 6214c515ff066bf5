"""The 12-lead diagnosis page in a real headless Chromium: log in, load a PTB-XL example, see
the 3x4 drawing, edit the age, diagnose, read the five probabilities and the model; then the
same with metadata only. A screenshot is saved under test-artifacts/ (or
CARDIOSPIKE_SCREENSHOT_DIR)."""

import os
import time
from pathlib import Path

import pytest

from inference.datasets.ptbxl import SUPERCLASSES
from inference.ptbxl_models import load_model
from monitoring.api.diagnosis import EXAMPLES_DIR, load_examples
from tests.chromium import log_in, text_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def dark_pixels(driver, top_fraction: float = 0.0, bottom_fraction: float = 1.0) -> int:
    """Canvas pixels the traces painted (near black), between two heights of the canvas."""
    return driver.execute_script(
        """
        const canvas = document.getElementById("ecg12");
        const top = Math.floor(canvas.height * arguments[0]);
        const rows = Math.floor(canvas.height * arguments[1]) - top;
        const data = canvas.getContext("2d").getImageData(0, top, canvas.width, rows).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i] < 80 && data[i + 1] < 80 && data[i + 2] < 80) dark++;
        }
        return dark;
        """,
        top_fraction,
        bottom_fraction,
    )


def probabilities(driver) -> dict[str, float]:
    bars = driver.find_elements("css selector", "#prob-chart .bar")
    return {
        bar.get_attribute("data-class"): float(bar.find_element("class name", "value").text[:-2])
        for bar in bars
    }


def test_it_draws_an_example_and_diagnoses_it_with_edited_metadata(browser, live_server, clinician):
    example = load_examples()["records"][2]  # ecg_id 274, every feature known
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/diagnosis/")
    assert "Research software, not a medical device" in browser.page_source
    assert dark_pixels(browser) == 0  # grid paper only, before a record is loaded

    browser.find_element("css selector", f"#example option[value='{example['id']}']").click()
    browser.find_element("id", "load-example").click()
    wait_for(browser, lambda d: f"ecg_id {example['ecg_id']}" in text_of(d, "record-info"))
    assert "1000 samples at 100 Hz" in text_of(browser, "record-info")
    assert "MI, STTC, HYP" in text_of(browser, "reference")
    # every one of the four rows (three of leads, the lead II strip) has its trace
    for row in range(4):
        assert dark_pixels(browser, row / 4, (row + 1) / 4) > 300, f"row {row} is empty"
    age = browser.find_element("id", "meta-age_years")
    assert age.get_attribute("value") == "67"  # prefilled from the PTB-XL row
    assert browser.find_element("id", "meta-sex_female").get_attribute("value") == "1"
    # the metadata form is never submitted (a reload would lose the record)
    browser.execute_script("document.body.dataset.sameDocument = '1'")
    browser.execute_script("document.getElementById('metadata-form').requestSubmit()")
    time.sleep(1)  # a submission would have navigated by now
    assert browser.execute_script("return document.body.dataset.sameDocument") == "1"
    assert "?" not in browser.current_url
    assert f"ecg_id {example['ecg_id']}" in text_of(browser, "record-info")

    browser.find_element("id", "diagnose").click()
    wait_for(browser, lambda d: len(probabilities(d)) == 5)
    as_given = probabilities(browser)
    assert list(as_given) == list(SUPERCLASSES)
    assert all(0.0 <= p <= 100.0 for p in as_given.values())
    assert text_of(browser, "model-used").startswith("ptbxl-model02 v")
    assert text_of(browser, "mode") == "ecg+metadata"
    assert text_of(browser, "imputed") == "none"
    called = text_of(browser, "called")
    marked = [
        b.get_attribute("data-class") for b in browser.find_elements("css selector", ".bar.called")
    ]
    assert called == (", ".join(marked) or "none")

    age.clear()
    age.send_keys("30")
    browser.find_element("id", "diagnose").click()
    wait_for(browser, lambda d: len(probabilities(d)) == 5 and probabilities(d) != as_given)
    assert text_of(browser, "diagnosis-error") == ""
    folder = Path(os.getenv("CARDIOSPIKE_SCREENSHOT_DIR") or ARTIFACTS)
    folder.mkdir(parents=True, exist_ok=True)
    browser.set_window_size(1400, 1400)  # the drawing and the result in one picture
    browser.save_screenshot(str(folder / "diagnosis-12-lead.png"))

    age.clear()
    age.send_keys("-5")  # the server's 400 is shown as it is
    browser.find_element("id", "diagnose").click()
    wait_for(browser, lambda d: "age_years -5 is outside 0-120" in text_of(d, "diagnosis-error"))


def test_it_reads_an_uploaded_record_and_falls_back_to_metadata_only(
    browser, live_server, clinician
):
    example = load_examples()["records"][0]
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/diagnosis/")
    paths = [EXAMPLES_DIR / f"{example['record']}{suffix}" for suffix in (".hea", ".dat")]
    browser.find_element("id", "record-files").send_keys("\n".join(str(p) for p in paths))
    wait_for(browser, lambda d: "Uploaded record " + example["record"] in text_of(d, "record-info"))
    assert dark_pixels(browser) > 1000
    browser.find_element("id", "meta-age_years").send_keys("55")
    browser.find_element("id", "diagnose").click()
    wait_for(browser, lambda d: text_of(d, "mode") == "ecg+metadata")
    assert len(probabilities(browser)) == 5
    # each blank field says what the model read instead (silent fill-ins made visible)
    fill = load_model(text_of(browser, "model-used").split()[0])[1]["metadata_scaler"]
    fill = fill["fill_values"]
    assert text_of(browser, "imputed-age_years") == ""  # given
    assert text_of(browser, "imputed-height_cm") == f"imputed as {fill['height_cm']:g}"
    sex = {0.0: "male", 1.0: "female"}[fill["sex_female"]]
    assert text_of(browser, "imputed-sex_female") == f"imputed as {sex}"
    assert text_of(browser, "imputed-heart_axis") == "imputed as MID: normal axis"

    browser.find_element("id", "clear-record").click()
    assert dark_pixels(browser) == 0
    browser.find_element("id", "diagnose").click()
    wait_for(browser, lambda d: text_of(d, "mode") == "metadata-only")
    assert text_of(browser, "model-used").startswith("ptbxl-model01 v")
    assert "height_cm" in text_of(browser, "imputed")
