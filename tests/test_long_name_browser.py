"""A long unbroken patient name on a phone (390 px): it wraps inside the screen rather than
widening the page. Before, the patient page's heading was 653 px wide and the page scrolled
sideways (tests/test_dashboard_browser.py checks the same pages with an ordinary name)."""

import pytest

from tests.chromium import log_in, wait_for
from tests.test_dashboard_browser import right_edge, two_alarms

pytestmark = pytest.mark.django_db(transaction=True)

# no space, hyphen or other break opportunity: 120 characters, within Patient.name's 200
LONG_NAME = "Wolfeschlegelsteinhausenbergerdorff" * 3 + "Maximilianus" * 1 + "Q" * 3


def test_a_long_unbroken_name_wraps_on_a_phone(browser, live_server, staff_user, patient):
    patient.name = LONG_NAME
    patient.save()
    two_alarms(patient)  # a coloured tile on the station
    log_in(browser, live_server.url, "staff", "pw-staff-1")
    browser.set_window_size(390, 844)
    for path in (
        "/",
        "/station/",
        f"/patients/{patient.pk}/",
        f"/patients/{patient.pk}/live/",
        f"/manage/patients/{patient.pk}/limits/",
        f"/manage/patients/{patient.pk}/device/",
        f"/manage/patients/{patient.pk}/care-team/",
        f"/manage/patients/{patient.pk}/discharge/",
    ):
        browser.get(live_server.url + path)
        wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")
        assert LONG_NAME[:40] in browser.page_source, path  # the name is on the page
        width = browser.execute_script("return window.innerWidth")
        assert width <= 400, width
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= width, (path, page_width, width)
        assert right_edge(browser, "form[action='/logout/'] button") <= width, path
        if path.startswith("/patients/"):
            assert right_edge(browser, "h1") <= width, path


# a long name with spaces, as most long names are: it wraps at them
SPACED_NAME = "Maria Guadalupe Esperanza Fernández de la Concepción y Villalobos-Hohenstein"

# what station.js does to a tile whose device says an electrode is off (showSignal); the live
# server has no websockets, so the station also says its connection is lost, which hides
# every badge: taken off for the measurement, which runs before the socket's next retry
SHOW_LEADS_OFF_JS = """
document.getElementById('station').classList.remove('connection-lost');
var tile = document.getElementById(arguments[0]);
var badge = tile.querySelector('.signal-badge');
badge.textContent = 'Leads off';
badge.hidden = false;
tile.classList.add('no-signal');
var box = function (element) {
  var rect = element.getBoundingClientRect();
  return {left: rect.left, right: rect.right, top: rect.top, bottom: rect.bottom,
          width: rect.width, height: rect.height};
};
return {badge: box(badge), name: box(tile.querySelector('.name')), tile: box(tile),
        lineHeight: parseFloat(getComputedStyle(tile.querySelector('.name')).lineHeight),
        title: tile.querySelector('.name').title};
"""


@pytest.mark.parametrize("long_name", [LONG_NAME, SPACED_NAME])
@pytest.mark.parametrize("window_width_px", [1400, 390])
def test_a_long_name_leaves_the_tiles_leads_off_badge_its_size(
    browser, live_server, staff_user, patient, other_patient, long_name, window_width_px
):
    """The "Leads off" badge of a tile whose patient has a long name is the size of the one
    beside a short name, inside its tile, and the name keeps to two lines (the whole name in
    its tooltip). Before, the name wrapped to as many lines as it needed and the badge, a flex
    item stretched to the head's height, grew as tall as the name."""
    patient.name = long_name
    patient.save()
    log_in(browser, live_server.url, "staff", "pw-staff-1")
    browser.set_window_size(window_width_px, 900)
    browser.get(live_server.url + "/station/")
    wait_for(browser, lambda d: d.execute_script("return document.readyState") == "complete")
    short = browser.execute_script(SHOW_LEADS_OFF_JS, f"tile-{other_patient.pk}")
    long = browser.execute_script(SHOW_LEADS_OFF_JS, f"tile-{patient.pk}")
    assert long["badge"]["height"] == pytest.approx(short["badge"]["height"], abs=0.5), long
    assert long["badge"]["width"] == pytest.approx(short["badge"]["width"], abs=0.5), long
    assert long["badge"]["right"] <= long["tile"]["right"], long
    # the name truncates: two lines at most, beside the badge, not under or over it
    assert long["name"]["height"] <= 2 * long["lineHeight"] + 1, long
    assert long["name"]["right"] <= long["badge"]["left"], long
    assert long["title"] == long_name
