"""The headless Chromium of the browser tests (tests/*_browser.py), and helpers to drive it.

Starting and stopping Chromium and chromedriver cost 0.9-1.9 s a test, a browser context
0.45-0.65 s, so one browser serves the whole test session (the ``chromium`` fixture in
tests/conftest.py). Each test still starts from nothing:
the ``browser`` fixture opens its window in a browser context of its own (Chromium's
incognito-like profile: own cookies, localStorage, sessionStorage, cache), and afterwards
disposes of that context with every window in it. What a test set up through DevTools (scripts
injected before each page, a time-zone override) belongs to its window and goes with it.
tests/test_isolation_browser.py checks that nothing reaches the next test. A second tab for
the same user is opened with ``new_tab``: WebDriver's ``switch_to.new_window`` opens one in the
default context, whose cookies are deleted after each test but whose storage is not.
"""

import shutil
import tempfile

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WINDOW_SIZE_PX = (1400, 1000)
MISSING_MESSAGE = "needs Debian's chromium and chromium-driver (apt-get install chromium-driver)"


class SharedChromium:
    """One Chromium with its chromedriver, restarted if it stops answering."""

    def __init__(self):
        self.driver = None
        self.profile_dir = None
        # the window that stays open between tests (in the default context: closing the last
        # window of a session would end it)
        self.home_window = None

    def start(self) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        self.profile_dir = tempfile.mkdtemp(prefix="cardiospike-chromium-")
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={WINDOW_SIZE_PX[0]},{WINDOW_SIZE_PX[1]}",
        ):
            options.add_argument(flag)
        # the console, for csp_violations
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # WebDriver BiDi, for its user contexts (Chromium's browser contexts); the classic
        # commands and DevTools commands work as before
        options.enable_bidi = True
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.home_window = self.driver.current_window_handle

    def stop(self) -> None:
        if self.driver is None:
            return
        try:
            self.driver.quit()  # stops chromedriver even when the browser no longer answers
        except Exception:  # noqa: S110 (a browser that crashed has nothing left to close)
            pass
        self.driver = None
        shutil.rmtree(self.profile_dir, ignore_errors=True)

    def open_test_window(self) -> str:
        """A window in a new browser context, made current; returns the context's id.

        If the browser died in an earlier test, a new one is started: one crash fails one test,
        not every browser test after it."""
        try:
            return self._open_test_window()
        except Exception:  # any error of WebDriver or of its BiDi socket: the browser is gone
            self.stop()
            self.start()
            return self._open_test_window()

    def _open_test_window(self) -> str:
        driver = self.driver
        context_id = driver.browser.create_user_context()
        window = driver.browsing_context.create(type="window", user_context=context_id)
        driver.switch_to.window(window)  # BiDi's browsing contexts are WebDriver's windows
        driver.set_window_size(*WINDOW_SIZE_PX)
        driver.implicitly_wait(0)
        driver.set_page_load_timeout(300)  # WebDriver's defaults, should a test change them
        driver.set_script_timeout(30)
        csp_violations(driver)  # the console so far belongs to no test
        return context_id

    def close_test_window(self, context_id: str) -> None:
        """Dispose of the test's context (its windows, cookies and storage) and close any
        other window the test opened, back to the home window."""
        driver = self.driver
        driver.switch_to.window(self.home_window)
        driver.browser.remove_user_context(context_id)
        for handle in driver.window_handles:
            if handle != self.home_window:
                driver.switch_to.window(handle)
                driver.close()
        driver.switch_to.window(self.home_window)
        # a window opened outside the test's context would have used the default one. Not
        # delete_all_cookies: WebDriver deletes only the current page's (about:blank's) cookies
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})


def require_chromium() -> None:
    """Skips (or, with CARDIOSPIKE_REQUIRE_SERVICES=1 as in CI, fails) without Chromium."""
    from tests.conftest import services_required

    if not (CHROMIUM and CHROMEDRIVER):
        if services_required():
            pytest.fail(MISSING_MESSAGE)
        pytest.skip(MISSING_MESSAGE)


def new_tab(driver) -> str:
    """Open a tab in the current window's browser context (its cookies, so its login) and
    switch to it. (WebDriver's ``switch_to.new_window`` would open it in the default context,
    signed out.)"""
    current = driver.current_window_handle
    context_id = driver.browsing_context.get_tree(root=current, max_depth=0)[0].user_context
    tab = driver.browsing_context.create(
        type="tab", reference_context=current, user_context=context_id
    )
    driver.switch_to.window(tab)
    return tab


def csp_violations(driver) -> list[str]:
    """Chromium's console messages about the Content-Security-Policy since the last call
    (reading the log empties it)."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def wait_for(driver, condition, timeout_s=30):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s).until(condition)


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def log_in(driver, base_url: str, username: str, password: str) -> None:
    driver.get(base_url + "/login/")
    assert "Research software, not a medical device" in driver.page_source
    driver.find_element("id", "id_username").send_keys(username)
    driver.find_element("id", "id_password").send_keys(password)
    driver.find_element("css selector", "form button[type=submit]").click()
    wait_for(driver, lambda d: d.current_url.rstrip("/") == base_url)


def review_view(driver) -> tuple[float, float] | None:
    """The window the review page has drawn: (start s, end s), None before the first."""
    span = driver.execute_script(
        "var d = document.getElementById('review-canvas').dataset;"
        "return d.startS === undefined ? null : [Number(d.startS), Number(d.endS)];"
    )
    return None if span is None else tuple(span)


def wait_for_review_view(driver, start_s: float, end_s: float, timeout_s=30) -> None:
    """Until the review page has drawn the window from start_s to end_s (to 10 ms)."""

    def there(d):
        span = review_view(d)
        return span is not None and abs(span[0] - start_s) < 0.01 and abs(span[1] - end_s) < 0.01

    wait_for(driver, there, timeout_s)
