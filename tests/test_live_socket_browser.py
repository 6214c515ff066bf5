"""The live pages' connection (livesocket.js) in a real headless Chromium against daphne.

A connection can die without a close event (a Wi-Fi change, a NAT or proxy timeout): the
browser then says nothing for minutes while no alarm arrives. These tests make one socket
half-open (a wrapper swallows what it sends and receives, and its close event) and check that
the station notices, says across its top that nothing it shows is current, and connects again
by itself; that a password change in another tab (which gives the session a new key, so the
server closes the socket with 4401) does not sign the station out; and that after signing out
in another tab a dropped connection (refused at every new handshake) stops, saying so.
"""

import json
import re
import time

import pytest

from tests.chromium import log_in, new_tab, wait_for
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)
from tests.test_live_browser import eager_daphne  # noqa: F401 (fixture)
from tests.test_live_browser import module_service_env as live_service_env  # noqa: F401

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def module_service_env(live_service_env):  # noqa: F811
    """daphne re-checks an open socket's access every second, not every 10 s: the
    password-change test waits for that check. One daphne serves the module's tests."""
    return {**live_service_env, "LIVE_RECHECK_S": "1"}


# Injected before the page's scripts: pings every 0.3 s, a connection silent for 2 s is dead,
# reconnects wait at most 0.3 s, and the live view reads its alarms again every second (the
# page's own 10 s, 25 s, 5 s and 30 s, shortened), and every socket is kept in __sockets, each
# with a "halfOpen" switch: once on, what it sends vanishes and nothing arrives from it, not
# even its close event, as on a connection whose other end is gone. Each entry also lists the
# types of the server's messages the page got (``received``; a test's own, dispatched ones are
# not trusted events and are not listed): a test waits there for the server's hello and backlog
# (wait_for_backlog) before it hands the page messages of its own, which they would overwrite.
HALF_OPEN_SOCKETS_JS = """
(function () {
  window.CardioSpikeSocketTiming = {
    pingMs: 300, silentMs: 2000, alarmsRefreshMs: 1000, maxDelayMs: 300 };
  const Native = window.WebSocket;
  window.__sockets = [];
  function Wrapped(url, protocols) {
    const socket = protocols === undefined ? new Native(url) : new Native(url, protocols);
    const entry = { url: String(url), halfOpen: false, socket: socket, received: [] };
    window.__sockets.push(entry);
    const send = socket.send.bind(socket);
    socket.send = function (data) { if (!entry.halfOpen) { send(data); } };
    ["message", "close"].forEach(function (kind) {
      let handler = null;
      Object.defineProperty(socket, "on" + kind, {
        get: function () { return handler; },
        set: function (value) { handler = value; },
      });
      socket.addEventListener(kind, function (event) {
        if (entry.halfOpen) { return; }
        if (kind === "message" && event.isTrusted) {
          let type = null;
          try { type = JSON.parse(event.data).type; } catch (error) { type = "(not JSON)"; }
          entry.received.push(type);
        }
        if (handler) { handler.call(socket, event); }
      });
    });
    return socket;
  }
  Wrapped.prototype = Native.prototype;
  ["CONNECTING", "OPEN", "CLOSING", "CLOSED"].forEach(function (name) {
    Wrapped[name] = Native[name];
  });
  window.WebSocket = Wrapped;
})();
"""


def received(driver, path_part: str) -> list[str]:
    """The types of the server's messages the page's newest socket for ``path_part`` got."""
    return driver.execute_script(
        "var part = arguments[0];"
        "var entry = window.__sockets.filter(function (s) {"
        "  return s.url.indexOf(part) >= 0; }).pop();"
        "return entry ? entry.received : [];",
        path_part,
    )


def wait_for_backlog(driver, path_part: str) -> None:
    """Wait until the page has handled the server's hello and backlog on its socket for
    ``path_part`` (/ws/patients/ or /ws/station/, with at least one patient): a status ends
    both. "connected" says only that the socket opened: a hello or backlog handled after the
    test's own messages rewrites what they showed (the recording line, the trace, the rate)."""
    wait_for(driver, lambda d: "status" in received(d, path_part))


def station_sockets(driver) -> list[str]:
    return driver.execute_script(
        "return window.__sockets.map(function (s) { return s.url; })"
        ".filter(function (url) { return url.indexOf('/ws/station/') >= 0; });"
    )


def open_station(driver, base_url: str) -> None:
    driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HALF_OPEN_SOCKETS_JS}
    )
    driver.get(f"{base_url}/station/")
    wait_for(driver, lambda d: d.find_element("id", "station-connection").text == "connected")
    assert not driver.find_element("id", "connection-lost").is_displayed()


def test_a_silent_connection_is_noticed_and_made_again(browser, eager_daphne, clinician):  # noqa: F811
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    open_station(browser, eager_daphne)
    assert len(station_sockets(browser)) == 1

    # The page itself keeps the first snapshot of the banner shown (its text, and whether the
    # station is greyed with it): the reconnect comes within 0.3 s of it, and on a loaded
    # machine a test polling from outside could miss the banner entirely (a full run once
    # timed out here), or read the banner and the greying on either side of the reconnect.
    browser.execute_script(
        "var banner = document.getElementById('connection-lost');"
        "var station = document.getElementById('station');"
        "window.__lost = null;"
        "new MutationObserver(function () {"
        "  if (!banner.hidden && window.__lost === null) {"
        "    window.__lost = {text: banner.textContent,"
        "      greyed: station.classList.contains('connection-lost')};"
        "  }"
        "}).observe(document.body, {attributes: true, subtree: true, childList: true});"
        "window.__sockets.filter(function (s) { return s.url.indexOf('/ws/station/') >= 0; })"
        "[0].halfOpen = true;"
    )
    # silent for 2 s: taken for dead, said across the top, greyed (no device blamed)
    lost = wait_for(browser, lambda d: d.execute_script("return window.__lost;"), timeout_s=20)
    assert "nothing shown is current" in lost["text"]
    assert lost["greyed"]
    # ... and made again by itself, within the (shortened) first wait
    wait_for(browser, lambda d: len(station_sockets(d)) == 2, timeout_s=10)
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    assert not browser.find_element("id", "connection-lost").is_displayed()
    assert "connection-lost" not in browser.find_element("id", "station").get_attribute("class")


def test_a_password_change_in_another_tab_keeps_the_station_connected(
    browser,
    eager_daphne,  # noqa: F811
    staff_user,
):
    log_in(browser, eager_daphne, "staff", "pw-staff-1")
    open_station(browser, eager_daphne)
    station_tab = browser.current_window_handle

    new_tab(browser)  # signed in there too: the same browser context
    browser.get(f"{eager_daphne}/admin/password_change/")
    browser.find_element("id", "id_old_password").send_keys("pw-staff-1")
    browser.find_element("id", "id_new_password1").send_keys("a-new-Passw0rd-for-staff")
    browser.find_element("id", "id_new_password2").send_keys("a-new-Passw0rd-for-staff")
    browser.find_element("css selector", "input[type=submit]").click()
    wait_for(browser, lambda d: "password_change/done" in d.current_url)
    browser.switch_to.window(station_tab)

    # The old session key is gone: the server closes the station's socket (4401) at its
    # next check (LIVE_RECHECK_S, 1 s here); the page asks over HTTP, is still signed in (the new
    # cookie), and connects again.
    wait_for(browser, lambda d: len(station_sockets(d)) >= 2, timeout_s=30)
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    assert "signed out" not in browser.find_element("id", "station-connection").text


def test_signing_out_in_another_tab_stops_the_station(browser, eager_daphne, clinician):  # noqa: F811
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    open_station(browser, eager_daphne)
    station_tab = browser.current_window_handle
    # the connection is already dead when the user signs out elsewhere, so no 4401 can
    # reach the page: it must find out by itself
    browser.execute_script(
        "window.__sockets.filter(function (s) { return s.url.indexOf('/ws/station/') >= 0; })"
        ".pop().halfOpen = true;"
    )

    new_tab(browser)  # signed in there too: the same browser context
    browser.get(f"{eager_daphne}/")
    browser.find_element("css selector", "form[action='/logout/'] button").click()
    wait_for(browser, lambda d: "/login/" in d.current_url)
    browser.switch_to.window(station_tab)

    # the silent socket is dropped; the server refuses every new one at the handshake (no
    # close code of ours), and after three the page asks over HTTP, finds itself signed out
    # and stops
    wait_for(
        browser,
        lambda d: d.find_element("id", "station-connection").text == "signed out: log in again",
        timeout_s=30,
    )
    assert browser.find_element("id", "connection-lost").is_displayed()
    count = len(station_sockets(browser))
    assert count >= 4  # the first, and three refused

    time.sleep(1)  # it stopped: no more tries (a retry would come within 0.3 s here)
    assert len(station_sockets(browser)) == count


def deliver(driver, message: dict) -> None:
    """Hand the live page's socket a message as if the server had sent it."""
    driver.execute_script(
        "const entry = window.__sockets.filter(function (s) {"
        "  return s.url.indexOf('/ws/patients/') >= 0; }).pop();"
        "entry.socket.dispatchEvent(new MessageEvent('message', {data: arguments[0]}));",
        json.dumps(message),
    )


def alarm(alarm_id: int, state: str, acknowledged: bool, review_path: str | None = None) -> dict:
    return {
        "type": "alarm",
        "alarm": {
            "id": alarm_id,
            "kind": "HR_HIGH",
            "priority": "warning",
            "state": state,
            "message": f"HR 130 > 120 ({alarm_id})",
            "raised_at": "2026-12-06T10:00:00+00:00",
            "acknowledged_by": "clinician" if acknowledged else None,
            "acknowledged_at": "2026-12-06T10:01:00+00:00" if acknowledged else None,
            "resolved_at": None,
            "review_path": review_path,
        },
    }


def test_the_alarm_table_ignores_late_news_and_keeps_its_newest_rows(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
):
    """The notifier publishes what it read before someone acknowledged: arriving after the
    acknowledgment, it must not bring the Acknowledge button back. A tab left open for days
    keeps the newest 50 rows, not every alarm since it opened. A row links the ECG at the
    event when the alarm has a recording."""
    from datetime import timedelta

    from django.utils import timezone

    from monitoring.models import Alarm
    from monitoring.notifications import review_path
    from tests.test_alarm_history import night_recording

    written = Alarm.objects.create(
        patient=patient,
        kind="HR_HIGH",
        priority="warning",
        message="HR 131 > 120",
        state="acknowledged",
        acknowledged_by=clinician,
        acknowledged_at=timezone.now(),
    )
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HALF_OPEN_SOCKETS_JS}
    )
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
    # the backlog's alarms and status (its banner) first: not after the messages handed in
    wait_for_backlog(browser, "/ws/patients/")

    # a row the server wrote: in the browser's time (today's: no date), as live rows are, and
    # a late message rolls it back no more than a live row
    row = browser.find_element("id", f"alarm-{written.pk}")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", row.find_elements("tag name", "td")[0].text)
    late = alarm(written.pk, "notified", acknowledged=False)
    deliver(browser, late)
    row = browser.find_element("id", f"alarm-{written.pk}")
    assert row.find_elements("tag name", "td")[3].text == "acknowledged"
    assert not row.find_elements("css selector", "button.ack")

    # an alarm whose live message never came (a full channel drops it silently): the page
    # reads its alarms again, and the row appears
    lost = Alarm.objects.create(
        patient=patient,
        recording=night_recording(patient, timezone.now() - timedelta(hours=1), hours=1),
        kind="PAUSE",
        priority="critical",
        message="pause 3.4 s >= 3.0 s",
        details={"sample": 250 * 1800},
    )
    wait_for(browser, lambda d: d.find_elements("id", f"alarm-{lost.pk}"), timeout_s=10)
    lost_row = browser.find_element("id", f"alarm-{lost.pk}")
    assert lost_row.find_elements("css selector", "button.ack")
    # its ECG, as the history page links it; the server-written row of an alarm without a
    # recording has none
    [link] = lost_row.find_elements("css selector", "a.ecg-link")
    assert link.get_dom_attribute("href") == review_path(lost)
    assert not browser.find_element("id", f"alarm-{written.pk}").find_elements("css selector", "a")

    # the banner's top alarm acknowledged, a lower one not: the banner says there is one
    top = {"id": written.pk, "priority": "critical", "message": "VT 180 bpm"}
    top.update(state="acknowledged", acknowledged_by="clinician", unacknowledged=1)
    deliver(browser, dict(alarm(lost.pk, "raised", acknowledged=False), top_alarm=top))
    banner = browser.find_element("id", "alarm-banner").text
    assert banner == "VT 180 bpm (acknowledged by clinician) · 1 more to acknowledge"

    at_event = "/recordings/7/review/#t=3600.000&w=12"
    deliver(browser, alarm(9001, "acknowledged", acknowledged=True, review_path=at_event))
    deliver(browser, alarm(9001, "notified", acknowledged=False))  # late
    row = browser.find_element("id", "alarm-9001")
    cells = row.find_elements("tag name", "td")
    assert cells[3].text == "acknowledged" and cells[4].text.startswith("clinician at")
    assert cells[5].find_element("tag name", "a").get_dom_attribute("href") == at_event
    assert not row.find_elements("css selector", "button.ack")
    deliver(browser, alarm(9001, "resolved", acknowledged=True))  # news moves on
    assert browser.find_element("id", "alarm-9001").find_elements("tag name", "td")[3].text == (
        "resolved"
    )

    # acknowledged or not: the acknowledgment is never taken back by a late message
    deliver(browser, alarm(9001, "resolved", acknowledged=False))
    assert "clinician at" in browser.find_element("id", "alarm-9001").text

    for alarm_id in range(9002, 9062):
        deliver(browser, alarm(alarm_id, "acknowledged", acknowledged=True))
    assert not browser.find_element("id", "alarm-9061").find_elements("css selector", "a")
    rows = browser.find_elements("css selector", "#alarm-table tbody tr.alarm-row")
    assert len(rows) == 50
    assert rows[0].get_attribute("id") == "alarm-9061"
    # the oldest rows went, but not the one still to be acknowledged (the station shows it)
    assert rows[-1].get_attribute("id") == f"alarm-{lost.pk}"
    assert rows[-1].find_elements("css selector", "button.ack")
    assert rows[-2].get_attribute("id") == "alarm-9013"


# Injected after HALF_OPEN_SOCKETS_JS: each answer the page's fetch gets, so that a test knows
# when the page has asked whether it is still signed in, and what it heard.
FETCH_ANSWERS_JS = """
(function () {
  const native = window.fetch.bind(window);
  window.__fetchAnswers = [];
  window.fetch = function () {
    return native.apply(null, arguments).then(function (response) {
      window.__fetchAnswers.push(response.type === "opaqueredirect" ? "redirect" : response.status);
      return response;
    });
  };
  window.CardioSpikeSocketTiming.signedOutRecheckMs = 1500;
})();
"""


def test_a_signed_out_answer_during_a_password_change_is_asked_again_before_the_station_stops(
    browser,
    eager_daphne,  # noqa: F811
    staff_user,
    client,
):
    """A password change deletes the old session row while its answer, which brings the new
    cookie, is still on its way. The socket's recheck can close it (4401) in between, and the
    page's question "still signed in?" then goes with the old cookie and hears "signed out":
    the station stopped for good. Here the gap is held open: the old session is deleted, the
    page hears "signed out", and only then does the browser get a new session's cookie."""
    from django.contrib.sessions.models import Session

    log_in(browser, eager_daphne, "staff", "pw-staff-1")
    for script in (HALF_OPEN_SOCKETS_JS, FETCH_ANSWERS_JS):  # in this order: the second amends
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    browser.get(f"{eager_daphne}/station/")
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    old_key = browser.get_cookie("sessionid")["value"]
    client.force_login(staff_user)  # the session the password change's answer would bring
    new_key = client.cookies["sessionid"].value

    Session.objects.filter(session_key=old_key).delete()
    wait_for(browser, lambda d: "redirect" in d.execute_script("return window.__fetchAnswers"))
    browser.delete_cookie("sessionid")
    browser.add_cookie({"name": "sessionid", "value": new_key, "path": "/"})

    wait_for(browser, lambda d: len(station_sockets(d)) >= 2, timeout_s=30)
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    # heard "signed out" first (each of the page's sockets asks), then signed in
    answers = browser.execute_script("return window.__fetchAnswers")
    assert answers[0] == "redirect" and 200 in answers[answers.index("redirect") :], answers
