"""A session that ended (idle for SESSION_IDLE_S, or signed out elsewhere) is said plainly on the
central station, in a real headless Chromium: a banner "Signed out: log in again to keep
receiving" with a link back, not a greyed page that says the connection was lost and waits.

Django's live server answers no websockets, so the station's socket never opens: after three
failed tries the page asks over HTTP whether it is still signed in (livesocket.js), the same
question it asks when a live server refuses a socket after the session ended.
"""

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.db.models import F

from tests.chromium import log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

# reconnects wait at most 0.3 s (the page's own 5 s, shortened)
FAST_RECONNECTS_JS = "window.CardioSpikeSocketTiming = { maxDelayMs: 300 };"


def test_the_station_says_plainly_when_its_session_ended(browser, live_server, clinician):
    base_url = live_server.url
    log_in(browser, base_url, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAST_RECONNECTS_JS})
    browser.get(f"{base_url}/station/")
    # still signed in: the page keeps trying (the HTTP check answers 200)
    banner = wait_for(
        browser, lambda d: d.find_element("id", "connection-lost").is_displayed() and d
    ).find_element("id", "connection-lost")
    assert banner.text.startswith("Connection to the server lost")

    # the whole idle age passes: the session row expires
    Session.objects.update(expire_date=F("expire_date") - timedelta(days=30))

    wait_for(
        browser,
        lambda d: d.find_element("id", "station-connection").text == "signed out: log in again",
        timeout_s=20,
    )
    banner = browser.find_element("id", "connection-lost")
    assert banner.is_displayed()
    assert banner.text.startswith("Signed out: log in again to keep receiving.")
    assert "Nothing shown is current, alarms included." in banner.text
    assert "connection-lost" in browser.find_element("id", "station").get_attribute("class")

    # the link goes back to the station, through the login page
    banner.find_element("link text", "Log in").click()
    wait_for(browser, lambda d: "/login/" in d.current_url)
    assert "next=/station/" in browser.current_url
    browser.find_element("id", "id_username").send_keys("clinician")
    browser.find_element("id", "id_password").send_keys("pw-clinician-1")
    browser.find_element("css selector", "form button[type=submit]").click()
    wait_for(browser, lambda d: d.current_url == f"{base_url}/station/")
