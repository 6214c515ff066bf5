"""The review page's keys in headless Chromium: ← → scroll the strip wherever the focus is but
in a text box, also right after a width was chosen from the menu (the focus stayed on it, and
→ turned 30 s into 1 min, then 5 min: exploratory test, 2026-12-07); Page Up / Page Down move a
screen, Home / End go to the start and the end; typing in "Go to" moves nothing."""

import numpy as np
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from inference.synthetic import generate
from monitoring.models import SampleChunk
from tests.chromium import log_in, review_view, wait_for_review_view

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250.0
DURATION_S = 600.0


def width_menu(driver) -> str:
    return driver.execute_script("return document.getElementById('window-s').value")


def press(driver, key) -> None:
    """A key to whatever has the focus, as a user presses it."""
    ActionChains(driver).send_keys(key).perform()


@pytest.fixture
def ten_minutes(recording):
    ecg = generate(DURATION_S, fs=FS_HZ, seed=9)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    return recording


def test_the_arrows_scroll_after_a_width_is_chosen(browser, live_server, clinician, ten_minutes):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{ten_minutes.pk}/review/#t=100&w=10")
    wait_for_review_view(browser, 100.0, 110.0)

    # a width chosen from the menu with the keyboard (↓ on the focused menu: 10 s to 30 s);
    # the change centres the new width on the old centre (105 s)
    browser.execute_script("document.getElementById('window-s').focus()")
    press(browser, Keys.ARROW_DOWN)
    wait_for_review_view(browser, 90.0, 120.0)
    assert width_menu(browser) == "30"
    # the menu gave the focus to the trace: → scrolls 0.9 of a screen, the width stays
    assert browser.execute_script("return document.activeElement.id") == "review-frame"
    press(browser, Keys.ARROW_RIGHT)
    wait_for_review_view(browser, 117.0, 147.0)
    assert width_menu(browser) == "30"

    # and with the focus on a menu all the same: ← → are the strip's, ↑ ↓ the menu's
    browser.execute_script("document.getElementById('window-s').focus()")
    press(browser, Keys.ARROW_LEFT)
    wait_for_review_view(browser, 90.0, 120.0)
    assert width_menu(browser) == "30"
    browser.execute_script("document.getElementById('window-s').focus()")
    press(browser, Keys.ARROW_RIGHT)
    wait_for_review_view(browser, 117.0, 147.0)
    assert width_menu(browser) == "30"


def test_page_keys_home_and_end(browser, live_server, clinician, ten_minutes):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{ten_minutes.pk}/review/#t=100&w=30")
    wait_for_review_view(browser, 100.0, 130.0)
    browser.find_element("id", "page-forward").click()  # the focus on a button
    wait_for_review_view(browser, 127.0, 157.0)
    press(browser, Keys.PAGE_DOWN)  # a whole screen
    wait_for_review_view(browser, 157.0, 187.0)
    press(browser, Keys.PAGE_UP)
    wait_for_review_view(browser, 127.0, 157.0)
    press(browser, Keys.END)
    wait_for_review_view(browser, DURATION_S - 30.0, DURATION_S)
    press(browser, Keys.HOME)
    wait_for_review_view(browser, 0.0, 30.0)
    assert browser.execute_script("return window.scrollY") == 0  # not the page's scrolling


def test_typing_in_go_to_moves_nothing(browser, live_server, clinician, ten_minutes):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(f"{live_server.url}/recordings/{ten_minutes.pk}/review/#t=100&w=10")
    wait_for_review_view(browser, 100.0, 110.0)
    box = browser.find_element("id", "jump-time")
    box.click()
    press(browser, "1:0")
    press(browser, Keys.ARROW_LEFT)  # the caret, not the strip
    press(browser, "2")
    press(browser, Keys.HOME)
    press(browser, "+-")
    press(browser, Keys.END)
    press(browser, Keys.PAGE_DOWN)
    press(browser, "5")
    assert box.get_attribute("value") == "+-1:205"
    assert review_view(browser) == (100.0, 110.0)
    assert width_menu(browser) == "10"
    box.clear()
    box.send_keys("2:00" + Keys.ENTER)
    wait_for_review_view(browser, 115.0, 125.0)
