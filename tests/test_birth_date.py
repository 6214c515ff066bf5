"""A patient's birth date must be a real one: not in the future, not before 1900. The check is
the model field's validator, so the admit form, the admin and ``full_clean`` agree."""

from datetime import date, timedelta

import pytest
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from monitoring.models import Patient
from tests.test_dashboard import DEFAULT_LIMITS, NO_RECIPIENTS

pytestmark = pytest.mark.django_db


def admit(client, mrn: str, birth_date: str):
    return client.post(
        "/manage/patients/admit/",
        {
            "mrn": mrn,
            "name": "New Admission",
            "sex": "U",
            "birth_date": birth_date,
            **DEFAULT_LIMITS,
            **NO_RECIPIENTS,
        },
    )


@pytest.mark.parametrize(
    ("birth_date", "message"),
    [
        ("2099-01-01", "The birth date 2099-01-01 is in the future"),
        ("tomorrow", "is in the future"),
        ("1899-12-31", "The birth date 1899-12-31 is before 1900-01-01"),
    ],
)
def test_the_admit_form_refuses_a_birth_date_in_the_future_or_before_1900(
    client, staff_user, birth_date, message
):
    if birth_date == "tomorrow":
        birth_date = (timezone.localdate() + timedelta(days=1)).isoformat()
    client.force_login(staff_user)
    response = admit(client, "MRN-300", birth_date)
    assert response.status_code == 200  # the form again, with the error
    assert message in response.content.decode()
    assert not Patient.objects.filter(mrn="MRN-300").exists()


@pytest.mark.parametrize("birth_date", ["1900-01-01", "1958-03-14", "today"])
def test_the_admit_form_takes_a_birth_date_from_1900_to_today(client, staff_user, birth_date):
    if birth_date == "today":  # a newborn
        birth_date = timezone.localdate().isoformat()
    client.force_login(staff_user)
    response = admit(client, "MRN-301", birth_date)
    assert response.status_code == 302
    assert Patient.objects.get(mrn="MRN-301").birth_date == date.fromisoformat(birth_date)


def test_the_admin_and_the_model_refuse_a_future_birth_date(rf, staff_user, patient):
    request = rf.get("/admin/")
    request.user = staff_user
    form_class = admin.site._registry[Patient].get_form(request, patient, change=True)
    data = {
        "mrn": patient.mrn,
        "name": patient.name,
        "birth_date": "2099-01-01",
        "sex": "U",
        "is_active": "on",
        **DEFAULT_LIMITS,
    }
    form = form_class(data=data, instance=patient)
    assert not form.is_valid()
    assert "is in the future" in str(form.errors["birth_date"])

    patient.birth_date = date(2099, 1, 1)
    with pytest.raises(ValidationError) as refused:
        patient.full_clean()
    assert "birth_date" in refused.value.message_dict
