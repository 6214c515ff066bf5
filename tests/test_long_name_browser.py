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
