"""Uploading from the page in a real headless Chromium: each format, then its results page."""

import os

import pytest

from monitoring.models import Recording
from tests.chromium import log_in, text_of, wait_for
from tests.upload_helpers import (
    kaggle187_rows,
    mitdb_folder,
    rows_csv,
    signal_csv,
    wfdb_excerpt,
    window216_rows,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("eager_celery")]


def upload_from_page(driver, base_url: str, patient_id: int, paths, fs_hz: str = "") -> None:
    driver.get(f"{base_url}/patients/{patient_id}/")
    driver.find_element("id", "upload-recording").click()
    wait_for(driver, lambda d: d.current_url.endswith(f"/patients/{patient_id}/upload/"))
    # one send_keys with newline-separated paths selects several files in a multiple input
    driver.find_element("id", "id_files").send_keys("\n".join(str(path) for path in paths))
    if fs_hz:
        driver.find_element("id", "id_fs_hz").send_keys(fs_hz)
    driver.find_element("id", "upload-submit").click()


def see_results(driver) -> dict:
    """Wait for the results page and read what it shows."""
    wait_for(
        driver,
        lambda d: "/recordings/" in d.current_url and d.find_elements("id", "analysis-status"),
        timeout_s=60,
    )
    assert text_of(driver, "analysis-status") == "Done", driver.page_source[:3000]
    counts = {
        row.get_attribute("data-class"): int(row.find_elements("tag name", "td")[1].text)
        for row in driver.find_elements("css selector", "#class-counts tbody tr")
    }
    beat_rows = driver.find_elements("css selector", "#beat-table tbody tr")
    strip = driver.find_element("id", "strip")
    wait_for(driver, lambda d: d.execute_script("return arguments[0].complete", strip))
    natural_width = driver.execute_script("return arguments[0].naturalWidth", strip)
    if os.getenv("CARDIOSPIKE_SCREENSHOT_DIR"):
        name = driver.current_url.rstrip("/").rsplit("/", 1)[-1]
        driver.save_screenshot(
            os.path.join(os.environ["CARDIOSPIKE_SCREENSHOT_DIR"], f"recording-{name}.png")
        )
    return {
        "n_beats": int(text_of(driver, "n-beats")),
        "counts": counts,
        "beat_rows": len(beat_rows),
        "strip_width": natural_width,
    }


def test_it_uploads_a_wfdb_record_with_annotations(
    browser, live_server, clinician, patient, tmp_path
):
    mitdb_folder()
    files = wfdb_excerpt(tmp_path, "208", seconds=60.0)
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [tmp_path / name for name in files])
    seen = see_results(browser)
    assert seen["n_beats"] > 50 and sum(seen["counts"].values()) == seen["n_beats"]
    assert seen["beat_rows"] == min(100, seen["n_beats"])
    assert seen["strip_width"] > 300  # the PNG loaded
    assert text_of(browser, "analysed-lead") == "MLII"
    assert browser.find_element("id", "confusion").is_displayed()

    # explain a beat: the strip reloads centred on it, with its saliency overlay
    browser.find_elements("css selector", "#beat-table tbody tr a")[4].click()
    wait_for(browser, lambda d: "beat=5" in d.find_element("id", "strip").get_attribute("src"))
    assert see_results(browser)["strip_width"] > 300


def test_it_uploads_a_signal_csv_with_its_rate(browser, live_server, clinician, patient, tmp_path):
    path = tmp_path / "strip.csv"
    path.write_bytes(signal_csv(30.0, fs_hz=500.0))
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [path], fs_hz="500")
    seen = see_results(browser)
    assert 25 <= seen["n_beats"] <= 45  # 30 s at about 72 bpm
    assert "bpm" in text_of(browser, "heart-rate")
    assert seen["strip_width"] > 300


def test_it_uploads_kaggle_rows(browser, live_server, clinician, patient, tmp_path):
    rows, labels = kaggle187_rows("208", seconds=60.0, limit=30)
    path = tmp_path / "kaggle.csv"
    path.write_bytes(rows_csv(rows, labels))
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [path])
    seen = see_results(browser)
    assert seen["n_beats"] == seen["beat_rows"] == 30
    assert "no rhythm context" in text_of(browser, "rows-note")
    assert browser.find_element("id", "confusion").is_displayed()


def test_it_uploads_window216_rows(browser, live_server, clinician, patient, tmp_path):
    rows, _ = window216_rows("208", seconds=60.0, limit=20)
    path = tmp_path / "beats.csv"
    path.write_bytes(rows_csv(rows))
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [path])
    seen = see_results(browser)
    assert seen["n_beats"] == 20 and seen["strip_width"] > 300


def test_it_shows_why_a_bad_file_was_refused(browser, live_server, clinician, patient, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("0.1\n" * 800 + "0.2;0.3\n")
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [path], fs_hz="250")
    wait_for(browser, lambda d: d.find_elements("id", "upload-error"))
    assert "bad.csv line 801: '0.2;0.3' is not a number" in text_of(browser, "upload-error")


def test_it_refuses_files_over_the_limit_before_sending_them(
    browser, live_server, clinician, patient, tmp_path, settings
):
    # a 98-MB file would be sent whole before the server's 413: the page checks first
    settings.UPLOAD_MAX_BYTES = 2 * 2**20
    path = tmp_path / "mitbih_test.csv"
    path.write_bytes(b"0.1\n" * (3 * 2**20 // 4))  # 3 MiB
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    upload_from_page(browser, live_server.url, patient.pk, [path], fs_hz="250")
    message = browser.find_element("id", "upload-size-error")
    assert message.is_displayed()
    assert message.text == (
        "The selected files are 3.0 MiB together; an upload may be at most 2 MiB. "
        "Split the recording into shorter files and upload them one at a time."
    )
    assert browser.current_url.endswith(f"/patients/{patient.pk}/upload/")
    assert not browser.find_elements("id", "upload-error")  # nothing reached the server
    assert not Recording.objects.exists()
