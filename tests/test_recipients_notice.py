"""The warning on the patient page and the live view when nobody hears of an alarm when it is
raised: it must say what is true when there are recipients, all of them escalation only."""

import pytest
from django.urls import reverse

from monitoring.models import AlarmRecipient

pytestmark = pytest.mark.django_db


def notice(client, url: str) -> str:
    """The text of the page's no-recipient warning ("" when there is none)."""
    page = client.get(url).content.decode()
    start = page.find('id="no-recipients"')
    return "" if start < 0 else page[start : page.index("</p>", start)]


def pages(patient) -> list[str]:
    return [reverse("patient-page", args=[patient.pk]), f"/patients/{patient.pk}/live/"]


def test_two_escalation_only_recipients_are_no_first_call_recipient_not_no_recipient(
    client, clinician, patient
):
    for address in ("chief@hospital.example", "charge@hospital.example"):
        AlarmRecipient.objects.create(patient=patient, address=address, escalation=True)
    client.force_login(clinician)
    for url in pages(patient):
        text = notice(client, url)
        assert "No first-call alarm recipient." in text
        assert "No alarm recipient" not in text  # there are two, listed on the patient page
        assert "only the escalation list (2 recipients)" in text


def test_without_any_recipient_the_notice_names_no_escalation_list(client, staff_user, patient):
    client.force_login(staff_user)
    for url in pages(patient):
        text = notice(client, url)
        assert "No first-call alarm recipient." in text and "escalation" not in text
        assert "Add a first-call recipient" in text


def test_a_first_call_recipient_removes_the_notice(client, clinician, patient):
    AlarmRecipient.objects.create(
        patient=patient, address="chief@hospital.example", escalation=True
    )
    AlarmRecipient.objects.create(patient=patient, address="ward@hospital.example")
    client.force_login(clinician)
    for url in pages(patient):
        assert notice(client, url) == ""
