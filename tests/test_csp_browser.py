"""Every kind of page under the Content-Security-Policy in a real headless Chromium.

The browser fixture (tests/conftest.py) fails any browser test whose pages the
policy refused something on; this walks the pages no other browser test opens (the admin with
its widgets, the API docs, DRF's browsable API), naming the page that broke it, and checks
that the console check sees a refusal at all.
"""

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from tests.chromium import csp_violations, log_in, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def visit(driver, url: str, ready: str = "body") -> list[str]:
    """Open ``url``, wait for the CSS selector ``ready``, and return what the policy refused."""
    driver.get(url)
    wait_for(driver, lambda d: d.find_elements("css selector", ready))
    wait_for(driver, lambda d: d.execute_script("return document.readyState") == "complete")
    return csp_violations(driver)


def test_no_page_breaks_the_policy(browser, live_server, staff_user, patient, recording, device):
    base = live_server.url
    log_in(browser, base, "staff", "pw-staff-1")
    pages = [
        ("/", "body"),
        ("/station/", "body"),
        (f"/patients/{patient.pk}/", "body"),
        (f"/patients/{patient.pk}/live/", "body"),
        (f"/patients/{patient.pk}/upload/", "body"),
        (f"/recordings/{recording.pk}/", "body"),
        (f"/recordings/{recording.pk}/review/", "body"),
        ("/analyzer/", "body"),
        ("/diagnosis/", "body"),
        ("/manage/", "body"),
        ("/no-such-page/", "body"),
        # Swagger UI drew the operations: its bundle and the start-up script ran
        ("/docs/api/", "#swagger-ui .opblock"),
        ("/api/", ".response-info"),
        (f"/api/patients/{patient.pk}/", ".response-info"),
        ("/admin/", "#content"),
        # the admin's widgets: the two-box clinician picker, autocomplete (select2), the
        # date drill-down
        (f"/admin/monitoring/patient/{patient.pk}/change/", ".selector"),
        (f"/admin/monitoring/device/{device.pk}/change/", ".select2"),
        ("/admin/monitoring/recording/", "#changelist"),
        ("/admin/auth/user/add/", "#content"),
        ("/admin/password_change/", "#content"),
    ]
    # and every model's list and add form
    as_staff = RequestFactory().get("/admin/")
    as_staff.user = staff_user
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        pages.append((reverse("admin:{}_{}_changelist".format(*info)), "#changelist"))
        if model_admin.has_add_permission(as_staff):
            pages.append((reverse("admin:{}_{}_add".format(*info)), "#content"))
    refused = {}
    for address, ready in pages:
        found = visit(browser, base + address, ready)
        if found:
            refused[address] = found
    # the admin's shown-once token page
    visit(browser, base + reverse("admin:monitoring_device_rotate_token", args=[device.pk]))
    browser.find_element("css selector", "input[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements("id", "device-token"))
    assert browser.find_element("id", "device-token").value_of_css_property("font-size") != (
        browser.find_element("css selector", "#content p").value_of_css_property("font-size")
    )  # enlarged by standalone.css
    if found := csp_violations(browser):
        refused["token page"] = found
    assert refused == {}


def test_the_research_notice_keeps_its_style_from_a_file(browser, live_server, staff_user):
    # the admin does not load app.css: the notice's colours come from standalone.css
    log_in(browser, live_server.url, "staff", "pw-staff-1")
    browser.get(live_server.url + "/admin/")
    notice = browser.find_element("css selector", ".research-disclaimer")
    assert notice.value_of_css_property("background-color") == "rgba(255, 243, 205, 1)"


def test_the_policy_refuses_an_inline_script_and_the_check_sees_it(browser, live_server, clinician):
    log_in(browser, live_server.url, "clinician", "pw-clinician-1")
    browser.get(live_server.url + "/analyzer/")
    csp_violations(browser)  # whatever came before
    # what a template's inline <script> would do: WebDriver's own scripts are exempt, the
    # element they insert is not
    browser.execute_script(
        "var s = document.createElement('script'); s.textContent = 'window.ran = true';"
        "document.body.appendChild(s);"
    )
    assert browser.execute_script("return window.ran === true") is False
    refused = csp_violations(browser)
    assert len(refused) == 1 and "inline script" in refused[0]
