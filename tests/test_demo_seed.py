import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from monitoring.models import Device, Patient

pytestmark = pytest.mark.django_db


def seed() -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out)
    return out.getvalue()


def password_of(output: str, username: str) -> str:
    return re.search(rf"user {username} password (\S+)", output).group(1)


def test_it_seeds_a_demo_whose_printed_login_works(client, settings):
    settings.DEBUG = True
    output = seed()
    response = client.post(
        "/login/", {"username": "demo", "password": password_of(output, "demo")}, follow=True
    )
    page = response.content.decode()
    assert response.redirect_chain[-1][0] == "/"
    assert [mrn for mrn in ("DEMO-0001", "DEMO-0002", "DEMO-0003", "DEMO-0004") if mrn in page] == [
        "DEMO-0001",
        "DEMO-0002",
        "DEMO-0003",
    ]
    assert len(re.findall(r"Device ESP32-DEMO-0\d token \(shown once\): csd_", output)) == 2
    admin_login = client.post(
        "/admin/login/", {"username": "admin", "password": password_of(output, "admin")}
    )
    assert admin_login.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_it_reseeds_with_new_passwords_and_keeps_the_rows(client, settings):
    settings.DEBUG = True
    first = seed()
    second = seed()
    assert Patient.objects.count() == 4 and Device.objects.count() == 2
    assert "token" not in second  # tokens are shown once, when issued
    assert password_of(first, "demo") != password_of(second, "demo")
    assert not client.login(username="demo", password=password_of(first, "demo"))
    assert client.login(username="demo", password=password_of(second, "demo"))


def test_it_refuses_to_seed_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="only with DEBUG on"):
        seed()
    assert not Patient.objects.exists()


def test_a_reseed_leaves_a_demo_patient_the_device_they_were_given(settings):
    # one device per patient: a demo device deleted and another given to its patient must
    # not stop the quick start (an IntegrityError), nor take the patient's device away
    settings.DEBUG = True
    seed()
    Device.objects.filter(serial="ESP32-DEMO-01").delete()
    own = Device.objects.create(serial="WARD-7", patient=Patient.objects.get(mrn="DEMO-0001"))
    seed()
    own.refresh_from_db()
    assert own.patient.mrn == "DEMO-0001"
    assert Device.objects.get(serial="ESP32-DEMO-01").patient is None
