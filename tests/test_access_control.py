"""Login by default everywhere; clinicians see only their patients; device tokens are not users."""

import re

import numpy as np
import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from monitoring.models import ApiToken, Device, Patient, SampleChunk

pytestmark = pytest.mark.django_db

PUBLIC = {"/health", "/health/", "/login/", "/admin/login/"}  # and static files


def all_paths(resolver=None, prefix: str = "") -> list[str]:
    """A concrete path for every URL pattern, converters filled with 1 or a word."""
    paths = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            paths.extend(all_paths(entry, route))
        elif isinstance(entry, URLPattern):
            path = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\.", ".")
            path = path.replace("<drf_format_suffix:format>", ".json")
            path = re.sub(r"<int:\w+>|<path:\w+>", "1", path)
            path = re.sub(r"<(?:str|slug):\w+>|<\w+>", "x", path)
            path = re.sub(r"\(\?P<\w+>[^)]*\)", "1", path)
            if any(ch in path for ch in "()[]*+?^$\\"):
                continue  # a regex pattern (format suffixes): the plain route is covered
            paths.append("/" + path)
    return sorted(set(paths))


def test_it_requires_login_everywhere_but_health_and_login(client):
    paths = [p for p in all_paths() if p not in PUBLIC and not p.startswith("/static/")]
    assert len(paths) >= 25, paths  # the walk really found the project's pages
    for path in paths:
        response = client.get(path)
        if path.startswith("/api/") or path == "/predict":
            assert response.status_code in (401, 403), (path, response.status_code)
        else:
            assert response.status_code == 302, (path, response.status_code)
            assert "login/?next=" in response["Location"], path
    for path in PUBLIC:
        assert client.get(path).status_code == 200, path


def test_it_answers_anonymous_api_calls_with_401_and_a_challenge(client):
    response = client.get("/api/patients/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "credentials" in response.json()["detail"]


def test_it_shows_a_clinician_only_assigned_patients(client, clinician, patient, other_patient):
    client.force_login(clinician)
    home = client.get("/").content.decode()
    assert patient.name in home and other_patient.name not in home
    # the list links to the patient's page, not to the JSON API
    assert f'href="/patients/{patient.pk}/"' in home
    assert client.get(f"/patients/{patient.pk}/").status_code == 200
    assert client.get(f"/patients/{other_patient.pk}/").status_code == 404


def test_it_shows_staff_every_patient(client, staff_user, patient, other_patient):
    client.force_login(staff_user)
    home = client.get("/").content.decode()
    assert patient.name in home and other_patient.name in home


def test_it_scopes_the_api_to_assigned_patients(
    client, clinician, staff_user, patient, other_patient, recording
):
    other_device = Device.objects.create(serial="DEV-OTHER", patient=other_patient)
    client.force_login(clinician)
    assert [p["mrn"] for p in client.get("/api/patients/").json()["results"]] == ["MRN-001"]
    assert [d["serial"] for d in client.get("/api/devices/").json()["results"]] == ["DEV-001"]
    assert [r["id"] for r in client.get("/api/recordings/").json()["results"]] == [recording.pk]
    assert client.get(f"/api/patients/{other_patient.pk}/").status_code == 404
    assert client.get(f"/api/devices/{other_device.pk}/").status_code == 404
    client.force_login(staff_user)
    assert client.get("/api/patients/").json()["count"] == 2


def test_it_hides_another_clinicians_recording(client, other_clinician, recording):
    client.force_login(other_clinician)
    assert client.get(f"/api/recordings/{recording.pk}/").status_code == 404
    assert client.get(f"/api/recordings/{recording.pk}/summary/").status_code == 404


def test_it_summarizes_a_recording_through_the_api(client, clinician, recording):
    SampleChunk.from_samples(recording, seq=0, first_sample=0, samples=np.zeros(10)).save()
    SampleChunk.from_samples(recording, seq=1, first_sample=20, samples=np.zeros(5)).save()
    client.force_login(clinician)
    summary = client.get(f"/api/recordings/{recording.pk}/summary/").json()
    assert (summary["n_samples"], summary["missing_samples"], summary["end_sample"]) == (15, 10, 25)


def test_it_accepts_api_tokens_and_stores_only_their_hash(client, clinician):
    token, key = ApiToken.issue(clinician, "notebook")
    assert key.startswith("csu_") and key not in (token.key_hash, token.hint)
    assert not ApiToken.objects.filter(key_hash=key).exists()
    response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 200 and response.json()["username"] == "clinician"
    token.refresh_from_db()
    assert token.last_used_at is not None
    bad = client.get("/api/me/", HTTP_AUTHORIZATION="Token not-a-real-token")
    assert bad.status_code == 401
    # a deactivated user's token, and a deleted token, open nothing
    clinician.is_active = False
    clinician.save()
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401
    clinician.is_active = True
    clinician.save()
    token.delete()
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 401


def test_the_admin_issues_an_api_key_once(client, staff_user, clinician):
    client.force_login(staff_user)
    response = client.post(
        "/admin/monitoring/apitoken/add/", {"user": clinician.pk, "name": "analysis script"}
    )
    assert response.status_code == 200 and response["Cache-Control"].startswith("no-store")
    key = re.search(r'id="api-key"[^>]*>(csu_[^<]+)<', response.content.decode()).group(1)
    token = ApiToken.objects.get()
    assert (token.user, token.name) == (clinician, "analysis script")
    page = client.get(f"/admin/monitoring/apitoken/{token.pk}/change/").content.decode()
    assert key not in page and token.hint in page
    client.logout()
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").json()["username"] == (
        "clinician"
    )


def test_a_password_change_revokes_the_users_api_keys_but_a_rehash_does_not(
    client, clinician, settings
):
    _, key = ApiToken.issue(clinician, "script")
    me = {"HTTP_AUTHORIZATION": f"Token {key}"}
    assert client.get("/api/me/", **me).status_code == 200
    # a login that upgrades the password's hash (a new Django's iteration count) keeps keys
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]
    clinician.refresh_from_db()
    assert clinician.check_password("pw-clinician-1")  # rehashed and saved with the new one
    clinician.refresh_from_db()
    assert clinician.password.startswith("pbkdf2_sha1$")
    assert client.get("/api/me/", **me).status_code == 200
    # a changed password revokes them: a key made with a stolen password dies with it
    clinician.set_password("a-new-Passw0rd-for-clinician")
    clinician.save()
    assert client.get("/api/me/", **me).status_code == 401
    assert not ApiToken.objects.filter(user=clinician).exists()


def test_it_lets_a_device_read_itself_and_records_last_seen(client, device, device_token):
    before = timezone.now()
    response = client.get("/api/device/v1/self/", HTTP_AUTHORIZATION=f"Device {device_token}")
    assert response.status_code == 200
    assert response.json()["serial"] == "DEV-001"
    assert response.json()["patient_assigned"] is True
    device.refresh_from_db()
    assert device.last_seen_at >= before


@pytest.mark.parametrize(
    "header",
    [None, "Device csd_wrong", "Device", "Device a b", "Bearer something"],
)
def test_it_refuses_devices_without_a_valid_token(client, device, device_token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/api/device/v1/self/", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Device"


def test_it_refuses_a_revoked_device(client, device, device_token):
    device.is_active = False
    device.save()
    response = client.get("/api/device/v1/self/", HTTP_AUTHORIZATION=f"Device {device_token}")
    assert response.status_code == 401


def test_it_never_treats_a_device_token_as_a_user(client, device_token):
    for path in ("/api/patients/", "/api/me/", "/api/recordings/"):
        response = client.get(path, HTTP_AUTHORIZATION=f"Device {device_token}")
        assert response.status_code in (401, 403), path


def test_it_keeps_users_off_device_endpoints(client, clinician):
    client.force_login(clinician)
    assert client.get("/api/device/v1/self/").status_code in (401, 403)
    _, key = ApiToken.issue(clinician)
    response = client.get("/api/device/v1/self/", HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 401


def test_it_logs_out_with_post(client, clinician):
    client.force_login(clinician)
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_a_list_gives_at_most_1000_rows_a_page_and_links_the_rest(client, staff_user):
    Patient.objects.bulk_create(
        [Patient(mrn=f"MRN-BULK-{number:04d}", name=f"P {number}") for number in range(1001)]
    )
    client.force_login(staff_user)
    page = client.get("/api/patients/?limit=100000").json()
    assert page["count"] == Patient.objects.count() > 1000
    assert len(page["results"]) == 1000 and "offset=1000" in page["next"]
    assert len(client.get("/api/patients/").json()["results"]) == 100


@pytest.mark.django_db(transaction=True)
def test_tokens_made_by_drf_before_keep_working_and_are_no_longer_stored_in_clear(
    client, clinician
):
    """Migration 0013 hashes DRF's token table (rest_framework.authtoken, no longer
    installed) into ApiToken and empties it."""
    from django.contrib.admin.models import ADDITION, LogEntry
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("monitoring")
    executor.migrate([("monitoring", "0012_one_device_per_patient")])
    old_key = "0123456789abcdef0123456789abcdef01234567"  # DRF's: 40 hex digits
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                "created timestamp with time zone NOT NULL, user_id integer NOT NULL)"
                if connection.vendor == "postgresql"
                else "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, "
                "created datetime NOT NULL, user_id integer NOT NULL)"
            )
            cursor.execute(
                "INSERT INTO authtoken_token VALUES (%s, %s, %s)",
                [old_key, timezone.now(), clinician.pk],
            )
        # DRF's admin wrote the key as the token's name into the admin's history
        drf_token = ContentType.objects.create(app_label="authtoken", model="tokenproxy")
        LogEntry.objects.create(
            user=clinician,
            content_type=drf_token,
            object_id=old_key,
            object_repr=old_key,
            action_flag=ADDITION,
        )
        MigrationExecutor(connection).migrate(latest)
        assert not LogEntry.objects.filter(object_repr=old_key).exists()
        assert not LogEntry.objects.filter(object_id=old_key).exists()
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM authtoken_token")
            assert cursor.fetchone()[0] == 0  # no key left in clear
        token = ApiToken.objects.get()
        assert token.user == clinician and token.hint == "0123"
        response = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {old_key}")
        assert response.json()["username"] == "clinician"
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")
        MigrationExecutor(connection).migrate(latest)


def test_a_staff_member_who_is_not_a_superuser_issues_keys_only_for_themselves(
    client, staff_user, django_user_model
):
    from django.contrib.auth.models import Permission

    helper = django_user_model.objects.create_user("desk", password="pw-desk-1", is_staff=True)
    helper.user_permissions.set(Permission.objects.filter(codename__endswith="_apitoken"))
    ApiToken.issue(staff_user, "the superuser's own")
    client.force_login(helper)
    url = "/admin/monitoring/apitoken/add/"
    assert 'name="user"' not in client.get(url).content.decode()  # no user to choose
    # a user slipped into the form is ignored: the key is the helper's own
    assert client.post(url, {"user": staff_user.pk, "name": "mine"}).status_code == 200
    assert ApiToken.objects.get(name="mine").user == helper
    # nor do they see, or revoke, anyone else's
    listed = client.get("/admin/monitoring/apitoken/").content.decode()
    assert "mine" in listed and "the superuser" not in listed
