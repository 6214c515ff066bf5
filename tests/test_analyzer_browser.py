"""The analyzer page in a real headless Chromium: log in, generate, analyze, see the verdict."""

import base64
import os

import pytest

from tests.chromium import log_in, text_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def dark_pixels(driver) -> int:
    """How many canvas pixels the trace painted (dark grey or black)."""
    return driver.execute_script(
        """
        const canvas = document.getElementById("ecg");
        const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let dark = 0;
        for (let i = 0; i < data.length; i += 4) {
          if (data[i] < 80 && data[i + 1] < 80 && data[i + 2] < 80) dark++;
        }
        return dark;
        """
    )


def test_it_generates_analyzes_and_shows_the_verdict(browser, live_server, clinician, tmp_path):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    assert dark_pixels(browser) == 0  # only grid paper before a signal is loaded

    browser.find_element("css selector", "#synthetic-kind option[value=pvc]").click()
    browser.find_element("id", "generate").click()
    wait_for(browser, lambda d: "synthetic pvc" in text_of(d, "signal-info"))
    assert "500 samples at 250 Hz" in text_of(browser, "signal-info")
    assert dark_pixels(browser) > 500  # the trace was drawn

    browser.find_element("id", "analyze").click()
    wait_for(browser, lambda d: text_of(d, "verdict") in ("Normal", "Arrhythmia"))
    assert text_of(browser, "model-used").startswith("window-cnn-")
    assert text_of(browser, "processing-ms").endswith("ms (model)")
    bars = browser.find_elements("css selector", "#prob-chart .bar")
    assert [bar.text.split("\n")[0] for bar in bars] == ["normal", "arrhythmia"]
    shares = [float(bar.text.split("\n")[-1].rstrip(" %")) for bar in bars]
    assert sum(shares) == pytest.approx(100.0, abs=0.2)
    assert text_of(browser, "signal-error") == ""

    browser.find_element("id", "download").click()
    href = browser.find_element("id", "download").get_attribute("href")
    assert href.startswith("data:image/png;base64,")
    png = base64.b64decode(href.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "analyzer.png").write_bytes(png)
    if os.getenv("CARDIOSPIKE_SCREENSHOT_DIR"):
        browser.save_screenshot(
            os.path.join(os.environ["CARDIOSPIKE_SCREENSHOT_DIR"], "analyzer.png")
        )


def test_it_analyzes_a_real_excerpt_window_by_window(browser, live_server, clinician):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    browser.find_element("id", "load-excerpt").click()
    wait_for(browser, lambda d: "MIT-BIH 100" in text_of(d, "signal-info"))
    browser.find_element("id", "analyze").click()
    wait_for(browser, lambda d: text_of(d, "window-count") == "5")
    rows = browser.find_elements("css selector", "#window-table tbody tr")
    assert len(rows) == 5 and rows[0].text.startswith("0.0–2.0 s")


def test_it_explains_bad_pasted_input_without_calling_the_server(browser, live_server, clinician):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    browser.find_element("id", "paste").send_keys("0.1, 0.2\n0.3, oops\n")
    browser.find_element("id", "use-paste").click()
    assert "is not a number" in text_of(browser, "signal-error")
    assert browser.find_element("id", "analyze").get_attribute("disabled") is not None


def record_predict_requests(driver) -> None:
    """Keep the "explain" flag of every /predict request the page sends, in ``window.sent``."""
    driver.execute_script(
        """
        window.sent = [];
        const fetchBefore = window.fetch;
        window.fetch = (url, options) => {
          if (String(url).endsWith("/predict")) window.sent.push(JSON.parse(options.body).explain);
          return fetchBefore(url, options);
        };
        """
    )


def paste_signal(driver, seconds: float, fs_hz: int = 250) -> None:
    """A synthetic sinus rhythm of ``seconds`` pasted as one value per line and used."""
    from inference.synthetic import generate

    ecg = generate(seconds, fs=fs_hz, seed=3).signal_mv
    text = "\n".join(f"{value:.4f}" for value in ecg)
    # typing 22,500 lines would take minutes: set the field as a paste would
    driver.execute_script("document.getElementById('paste').value = arguments[0];", text)
    driver.find_element("id", "fs").clear()
    driver.find_element("id", "fs").send_keys(str(fs_hz))
    driver.find_element("id", "use-paste").click()


def analysed_or_refused(driver) -> None:
    wait_for(driver, lambda d: text_of(d, "verdict") != "—" or text_of(d, "signal-error"))


def test_it_analyzes_a_signal_longer_than_the_saliency_limit(browser, live_server, clinician):
    # /predict explains at most PREDICT_MAX_EXPLAIN_S (60 s); the page used to ask for it on
    # every signal, and so could analyse nothing longer
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    assert browser.find_element("id", "analyzer").get_attribute("data-max-explain-s") == "60"
    record_predict_requests(browser)
    paste_signal(browser, 90.0)
    assert "22500 samples at 250 Hz (90.00 s)" in text_of(browser, "signal-info")

    browser.find_element("id", "analyze").click()
    analysed_or_refused(browser)
    assert text_of(browser, "signal-error") == ""
    assert text_of(browser, "verdict") in ("Normal", "Arrhythmia")
    assert text_of(browser, "window-count") == "45"
    note = text_of(browser, "saliency-note")
    assert "Saliency overlay off" in note and "90.0 s long" in note and "at most 60 s" in note

    # a short signal is still explained, and the note goes
    browser.find_element("id", "generate").click()
    wait_for(browser, lambda d: "synthetic" in text_of(d, "signal-info"))
    assert not browser.find_element("id", "saliency-note").is_displayed()
    browser.find_element("id", "analyze").click()
    wait_for(browser, lambda d: text_of(d, "window-count") == "1")
    assert browser.execute_script("return window.sent") == [False, True]


@pytest.mark.parametrize(
    ("pasted", "line", "cell"),
    [
        ("0,12\n-0,20\n0,33\n", 1, "0,12"),  # read as columns, these were 12, 20 and 33
        ("0,004;0,12\n0,008;-0,20\n", 1, "0,12"),
        ("ecg\n-0,20\n0,5\n", 2, "-0,20"),  # a header line, then the column
    ],
)
def test_it_refuses_decimal_commas_naming_the_line(
    browser, live_server, clinician, pasted, line, cell
):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    browser.execute_script("document.getElementById('paste').value = arguments[0];", pasted)
    browser.find_element("id", "use-paste").click()
    error = text_of(browser, "signal-error")
    assert f'line {line}: "{cell}" has a decimal comma' in error
    assert browser.find_element("id", "analyze").get_attribute("disabled") is not None
