"""A device token issued or rotated in the admin goes into the audit trail of the patient who
wears the device: who, when, which device and the token's hint, never the token itself.
Before, a rotation left only the admin's own log entry, which the patient's trail and its
page did not show."""

import pytest
from django.urls import reverse

from monitoring.models import AuditEntry, Device

pytestmark = pytest.mark.django_db


def token_on_page(response) -> str:
    return response.content.decode().split('id="device-token"')[1].split(">")[1].split("<")[0]


def test_it_audits_a_token_rotation_for_the_patient_wearing_the_device(
    client, staff_user, patient, device, device_token
):
    old_hint = Device.objects.get(pk=device.pk).token_hint
    client.force_login(staff_user)
    response = client.post(reverse("admin:monitoring_device_rotate_token", args=[device.pk]))
    new_token = token_on_page(response)
    new_hint = Device.objects.get(pk=device.pk).token_hint
    assert new_token.startswith(new_hint) and new_hint != old_hint
    entry = AuditEntry.objects.get(patient=patient, field="device_token")
    assert entry.user == staff_user
    assert (entry.old_value, entry.new_value) == (f"DEV-001 {old_hint}…", f"DEV-001 {new_hint}…")
    # the hint only: neither token is anywhere in the trail
    for token in (device_token, new_token):
        assert token not in entry.old_value + entry.new_value
    # and the patient's page shows it, by its name
    page = client.get(reverse("patient-page", args=[patient.pk])).content.decode()
    assert 'data-field="device_token"' in page and "device token" in page
    assert new_token not in page


def test_it_audits_nothing_for_a_device_nobody_wears(client, staff_user, patient, device):
    Device.objects.filter(pk=device.pk).update(patient=None)
    client.force_login(staff_user)
    response = client.post(reverse("admin:monitoring_device_rotate_token", args=[device.pk]))
    assert token_on_page(response).startswith("csd_")
    assert not AuditEntry.objects.filter(field="device_token").exists()


def test_a_rotation_is_audited_for_whoever_wears_the_device_when_it_is_made(
    client, staff_user, patient, other_patient, device
):
    # the confirmation page was opened while the device was the first patient's; it was
    # moved before the button was pressed
    client.force_login(staff_user)
    url = reverse("admin:monitoring_device_rotate_token", args=[device.pk])
    assert client.get(url).status_code == 200
    Device.objects.filter(pk=device.pk).update(patient=other_patient)
    client.post(url)
    assert AuditEntry.objects.get(field="device_token").patient == other_patient


def test_the_first_token_of_a_device_created_for_a_patient_is_audited(client, staff_user, patient):
    client.force_login(staff_user)
    form = {
        "serial": "NEW-1",
        "patient": patient.pk,
        "firmware_version": "1.0",
        "sampling_rate_hz": "250",
        "gain_adc_per_mv": "200",
        "lead_names": "II",
        "is_active": "on",
    }
    response = client.post(reverse("admin:monitoring_device_add"), form)
    token = token_on_page(response)
    hint = Device.objects.get(serial="NEW-1").token_hint
    fields = list(
        AuditEntry.objects.filter(patient=patient)
        .order_by("id")
        .values_list("field", "old_value", "new_value")
    )
    assert fields == [("device", "", "NEW-1"), ("device_token", "", f"NEW-1 {hint}…")]
    assert token not in str(fields)
