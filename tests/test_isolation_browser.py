"""The browser tests share one Chromium (tests/chromium.py); nothing of one test reaches the next.

The first test leaves behind all it can: a login, a cookie, localStorage and sessionStorage, a
script injected before each page, a time-zone override, a phone-sized window, an extra tab in
its context and one outside it (with a cookie of its own), an implicit wait. The second, run
right after it (pytest runs a module's tests in order), finds none of it.
"""

import pytest

from tests.chromium import WINDOW_SIZE_PX, log_in, new_tab

pytestmark = pytest.mark.django_db(transaction=True)

# what the first test left behind, for the second to look for
LEFT_BEHIND = {}
# not the machine's own zone, so that a leaked override cannot pass for the default
OTHER_TIMEZONE = "Pacific/Chatham"


def cookie_names(driver) -> set[str]:
    """Every cookie of the current window's browser context, read without a request: a page
    load would let Django drop a session cookie whose session the database flush removed, and
    a leaked login would then look like none."""
    return {
        cookie["name"] for cookie in driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"]
    }


def page_state(driver) -> dict:
    return driver.execute_script(
        """
        return {
          local: localStorage.getItem("left-behind"),
          session: sessionStorage.getItem("left-behind"),
          injected: window.leftBehind === undefined ? null : window.leftBehind,
          timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
        };
        """
    )


def test_a_test_leaves_its_state_behind(browser, live_server, clinician):
    base_url = live_server.url
    LEFT_BEHIND["timezone"] = browser.execute_script(
        "return Intl.DateTimeFormat().resolvedOptions().timeZone"
    )
    log_in(browser, base_url, "clinician", "pw-clinician-1")
    browser.add_cookie({"name": "left-behind", "value": "1"})
    browser.execute_script(
        'localStorage.setItem("left-behind", "1"); sessionStorage.setItem("left-behind", "1");'
    )
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "window.leftBehind = 1;"}
    )
    assert LEFT_BEHIND["timezone"] != OTHER_TIMEZONE
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": OTHER_TIMEZONE})
    browser.set_window_size(390, 844)
    browser.get(base_url + "/")
    assert page_state(browser) == {
        "local": "1",
        "session": "1",
        "injected": 1,
        "timezone": OTHER_TIMEZONE,
    }
    # the probe the next test relies on sees the login and the cookie here
    assert {"sessionid", "left-behind"} <= cookie_names(browser)
    new_tab(browser)  # in the test's browser context
    browser.get(base_url + "/")
    assert browser.current_url == base_url + "/"  # signed in there too
    browser.switch_to.new_window("tab")  # in the default context
    browser.get(base_url + "/")
    browser.add_cookie({"name": "left-behind-default", "value": "1", "expiry": 4102444800})
    assert "left-behind-default" in cookie_names(browser)
    browser.implicitly_wait(5)
    LEFT_BEHIND["ran"] = True


def test_the_next_test_finds_none_of_it(browser, live_server, clinician):
    if "ran" not in LEFT_BEHIND:
        pytest.skip("checks what test_a_test_leaves_its_state_behind left: run the module")
    found = {
        "windows": len(browser.window_handles),
        "url": browser.current_url,
        "implicit_wait_s": browser.timeouts.implicit_wait,
        "window_size": browser.get_window_size(),
        "cookies": cookie_names(browser),
    }
    browser.get(live_server.url + "/")
    found.update(page_state(browser))
    # a tab of the default context (switch_to.new_window) finds no cookie of the last test's
    browser.switch_to.new_window("tab")
    found["default context cookies"] = cookie_names(browser)
    assert found == {
        "windows": 2,  # the one kept between tests, and the test's
        "url": "about:blank",
        "implicit_wait_s": 0,
        "window_size": {"width": WINDOW_SIZE_PX[0], "height": WINDOW_SIZE_PX[1]},
        "cookies": set(),
        "local": None,
        "session": None,
        "injected": None,
        "timezone": LEFT_BEHIND["timezone"],
        "default context cookies": set(),
    }
