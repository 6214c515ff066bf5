"""A failed read leaves nothing loaded (analyzer and 12-lead diagnosis pages, headless Chromium).

Before, the error showed but the previous signal stayed drawn and labelled with its action
button enabled, so the next click analysed or diagnosed a file the user had replaced."""

import numpy as np
import pytest
import wfdb

from monitoring.api.diagnosis import EXAMPLES_DIR, load_examples
from tests.chromium import log_in, text_of, wait_for
from tests.test_analyzer_browser import dark_pixels as analyzer_dark_pixels
from tests.test_diagnosis_browser import dark_pixels as diagnosis_dark_pixels

pytestmark = pytest.mark.django_db(transaction=True)


def record_requests(driver, path_end: str) -> None:
    """Count the page's requests to a URL ending in ``path_end``, in ``window.sent``."""
    driver.execute_script(
        """
        window.sent = 0;
        const fetchBefore = window.fetch;
        window.fetch = (url, options) => {
          if (String(url).endsWith(arguments[0])) window.sent += 1;
          return fetchBefore(url, options);
        };
        """,
        path_end,
    )


def choose_files(driver, element_id: str, paths) -> None:
    """Choose files in a file input, replacing any chosen before (as a new choice would)."""
    field = driver.find_element("id", element_id)
    driver.execute_script("arguments[0].value = '';", field)
    field.send_keys("\n".join(str(path) for path in paths))


def test_a_failed_read_unloads_the_signal_on_the_analyzer(
    browser, live_server, clinician, tmp_path
):
    good = tmp_path / "sig.csv"
    fs_hz = 250
    time_s = np.arange(2 * fs_hz) / fs_hz
    good.write_text("\n".join(f"{v:.4f}" for v in np.sin(2 * np.pi * 1.2 * time_s)))
    junk = tmp_path / "junk.hea"
    junk.write_text("garbage\n")

    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    record_requests(browser, "/predict")
    choose_files(browser, "upload", [good])
    wait_for(browser, lambda d: "sig.csv: 500 samples" in text_of(d, "signal-info"))
    assert analyzer_dark_pixels(browser) > 500
    assert browser.find_element("id", "analyze").is_enabled()

    choose_files(browser, "upload", [junk])
    wait_for(browser, lambda d: "fewer than two numbers" in text_of(d, "signal-error"))
    assert "sig.csv" not in text_of(browser, "signal-info")
    assert analyzer_dark_pixels(browser) == 0  # grid paper only: sig.csv is no longer drawn
    analyze = browser.find_element("id", "analyze")
    assert not analyze.is_enabled()
    browser.execute_script("arguments[0].click();", analyze)  # even a scripted click
    assert browser.execute_script("return window.sent") == 0
    assert text_of(browser, "verdict") == "—"
    assert "fewer than two numbers" in text_of(browser, "signal-error")

    choose_files(browser, "upload", [good])  # a good file enables it again
    wait_for(browser, lambda d: "sig.csv: 500 samples" in text_of(d, "signal-info"))
    assert text_of(browser, "signal-error") == ""
    assert browser.find_element("id", "analyze").is_enabled()


def two_lead_record(folder) -> list:
    """A small MIT-BIH-like WFDB record (MLII and V1 at 360 Hz, 2 s): it reads, but it is not
    12-lead, so /api/diagnosis/record/ refuses it."""
    fs_hz = 360
    time_s = np.arange(2 * fs_hz) / fs_hz
    signal_mv = np.column_stack([np.sin(2 * np.pi * time_s), 0.5 * np.cos(2 * np.pi * time_s)])
    wfdb.wrsamp(
        "200x",  # a made-up name: no MIT-BIH record is read
        fs=fs_hz,
        units=["mV", "mV"],
        sig_name=["MLII", "V1"],
        p_signal=signal_mv,
        fmt=["212", "212"],
        write_dir=str(folder),
    )
    return [folder / "200x.hea", folder / "200x.dat"]


@pytest.mark.parametrize("bad", ["two-lead", "junk"])
def test_a_failed_read_unloads_the_record_on_the_diagnosis_page(
    browser, live_server, clinician, tmp_path, bad
):
    if bad == "two-lead":
        bad_files = two_lead_record(tmp_path)
    else:
        bad_files = [tmp_path / "junk.hea", tmp_path / "junk.dat"]
        bad_files[0].write_text("garbage\n")
        bad_files[1].write_bytes(b"\x00\x01garbage")
    example = load_examples()["records"][0]
    good_files = [EXAMPLES_DIR / f"{example['record']}{suffix}" for suffix in (".hea", ".dat")]

    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/diagnosis/")
    choose_files(browser, "record-files", good_files)
    wait_for(browser, lambda d: "Uploaded record " + example["record"] in text_of(d, "record-info"))
    assert diagnosis_dark_pixels(browser) > 1000
    record_requests(browser, "/api/diagnosis/")

    choose_files(browser, "record-files", bad_files)
    wait_for(browser, lambda d: "Could not read" in text_of(d, "record-error"))
    assert example["record"] not in text_of(browser, "record-info")
    assert "No record loaded" in text_of(browser, "record-info")
    assert diagnosis_dark_pixels(browser) == 0  # the old record is no longer drawn
    diagnose = browser.find_element("id", "diagnose")
    assert not diagnose.is_enabled()
    browser.execute_script("arguments[0].click();", diagnose)
    assert browser.execute_script("return window.sent") == 0
    assert text_of(browser, "mode") == "—"

    # an explicit choice of no waveform enables Diagnose again
    browser.find_element("id", "clear-record").click()
    assert text_of(browser, "record-error") == ""
    assert diagnose.is_enabled()
