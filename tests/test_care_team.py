"""The care team on the staff pages, one patient a bed under concurrent admissions, and the
admin's audit of the place (2026-12-07).

Before, a patient's care team (``Patient.clinicians``: who may see their data) could be changed
only in the admin; the free-bed check ran in form validation, before the transaction that
admits, so two admissions at once could take one bed; the admin changed a ward or bed
without an audit entry.
"""

import asyncio
import re
import threading
import time
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.urls import reverse

from monitoring import live
from monitoring.forms import (
    EMPTY_CARE_TEAM_MESSAGE,
    STALE_PATIENT_MESSAGE,
    AdmitPatientForm,
    ReadmitForm,
    lock_bed,
    patient_version,
)
from monitoring.models import AuditEntry, Patient
from tests.test_admin_site import admin_url, patient_form
from tests.test_dashboard import DEFAULT_LIMITS, NO_RECIPIENTS


def care_team_url(patient: Patient) -> str:
    return reverse("patient-care-team", args=[patient.pk])


def team_form(patient: Patient, clinicians, **extra) -> dict:
    """The care-team page's form as a page opened now sends it, with ``clinicians`` ticked."""
    opened = patient_version(Patient.objects.get(pk=patient.pk))
    return {"opened_version": opened, "clinicians": [user.pk for user in clinicians], **extra}


def clinician_trail(patient: Patient) -> list[tuple[str, str, str]]:
    entries = AuditEntry.objects.filter(patient=patient, field="clinician").order_by("id")
    return [(e.old_value, e.new_value, e.user.username) for e in entries]


# --- Who may change it --------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_the_care_team_page_is_403_for_clinicians(
    client, clinician, other_clinician, patient, method
):
    client.force_login(clinician)  # on this patient's team, but not staff
    response = getattr(client, method)(care_team_url(patient), {"clinicians": [clinician.pk]})
    assert response.status_code == 403
    assert list(patient.clinicians.all()) == [clinician]
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
def test_the_care_team_page_sends_anonymous_users_to_the_login_page(
    client, other_clinician, patient, method
):
    url = care_team_url(patient)
    response = getattr(client, method)(url, {"clinicians": [other_clinician.pk]})
    assert response.status_code == 302
    assert response["Location"].startswith(f"{reverse('login')}?next={url}")
    assert not patient.clinicians.filter(pk=other_clinician.pk).exists()


@pytest.mark.django_db
def test_the_care_team_page_needs_the_csrf_token(staff_user, other_clinician, patient):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user)
    response = client.post(care_team_url(patient), team_form(patient, [other_clinician]))
    assert response.status_code == 403
    assert not patient.clinicians.filter(pk=other_clinician.pk).exists()


@pytest.mark.django_db
def test_the_patient_page_and_the_manage_page_link_it_for_staff_only(
    client, staff_user, clinician, patient
):
    url = care_team_url(patient)
    client.force_login(staff_user)
    assert f'href="{url}"' in client.get(f"/patients/{patient.pk}/").content.decode()
    assert f'href="{url}"' in client.get("/manage/").content.decode()
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/").content.decode()
    assert f'href="{url}"' not in page
    # the team itself is shown to whoever may see the patient
    assert re.search(r'<dd id="care-team">clinician</dd>', page)


# --- What a change does -------------------------------------------------------------------


@pytest.mark.django_db
def test_adding_and_removing_clinicians_changes_who_sees_the_patient_and_is_audited(
    client, staff_user, clinician, other_clinician, patient
):
    client.force_login(other_clinician)
    assert client.get(f"/patients/{patient.pk}/").status_code == 404  # not on the team yet

    client.force_login(staff_user)
    page = client.get(care_team_url(patient)).content.decode()
    # both offered, the current member ticked
    assert re.search(rf'value="{clinician.pk}"[^>]*checked', page)
    assert f'value="{other_clinician.pk}"' in page
    before = Patient.objects.get(pk=patient.pk).updated_at
    # one clinician swapped for another in one save
    response = client.post(care_team_url(patient), team_form(patient, [other_clinician]))
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.pk}/"
    assert list(patient.clinicians.all()) == [other_clinician]
    assert clinician_trail(patient) == [("", "other", "staff"), ("clinician", "", "staff")]
    # a change of the patient: a page opened before it is stale
    assert Patient.objects.get(pk=patient.pk).updated_at > before
    message = client.get(f"/patients/{patient.pk}/").content.decode()
    assert "Care team saved (clinician other, removed clinician clinician)." in message

    client.force_login(other_clinician)
    assert client.get(f"/patients/{patient.pk}/").status_code == 200
    assert client.get(f"/patients/{patient.pk}/live/").status_code == 200
    assert [p["mrn"] for p in client.get("/api/patients/").json()["results"]] == [patient.mrn]
    client.force_login(clinician)
    assert client.get(f"/patients/{patient.pk}/").status_code == 404
    assert client.get(f"/patients/{patient.pk}/live/").status_code == 404
    assert client.get("/api/patients/").json()["results"] == []


def live_messages(layer, channel: str) -> list[dict]:
    """What reached ``channel`` of the in-memory channel layer so far. (A message sent by a
    commit callback that ran is already there: the short wait only ends the reading.)"""

    async def drain():
        messages = []
        while True:
            try:
                messages.append(await asyncio.wait_for(layer.receive(channel), 0.2))
            except TimeoutError:
                return messages

    return async_to_sync(drain)()


@pytest.mark.django_db
def test_removing_a_clinician_revokes_the_patients_open_live_sockets_on_commit(
    client,
    staff_user,
    clinician,
    other_clinician,
    patient,
    settings,
    django_capture_on_commit_callbacks,
):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    # a socket watching the patient: the group their live views and stations join
    socket = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.patient_group(patient.pk), socket)
    client.force_login(staff_user)

    # adding a clinician takes nobody's access away: nothing to re-check at once
    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(
            care_team_url(patient), team_form(patient, [clinician, other_clinician])
        )
    assert added.status_code == 302
    assert live_messages(layer, socket) == []

    with django_capture_on_commit_callbacks(execute=True):
        removed = client.post(care_team_url(patient), team_form(patient, [other_clinician]))
        assert removed.status_code == 302
        # not before the commit: a socket re-checking then would still find "clinician" on
        # the team and stay open
        assert live_messages(layer, socket) == []
    assert live_messages(layer, socket) == [{"type": "live.revoke", "patient": patient.pk}]
    assert list(patient.clinicians.all()) == [other_clinician]


@pytest.mark.django_db
def test_saving_the_team_unchanged_writes_nothing(client, staff_user, clinician, patient):
    client.force_login(staff_user)
    before = Patient.objects.get(pk=patient.pk).updated_at
    response = client.post(care_team_url(patient), team_form(patient, [clinician]), follow=True)
    assert "Nothing changed." in response.content.decode()
    assert not AuditEntry.objects.exists()
    assert Patient.objects.get(pk=patient.pk).updated_at == before


@pytest.mark.django_db
def test_removing_everyone_is_asked_for_then_warned_of(client, staff_user, clinician, patient):
    client.force_login(staff_user)
    refused = client.post(care_team_url(patient), team_form(patient, []))
    assert refused.status_code == 200
    assert "Tick this to remove everyone from the care team:" in refused.content.decode()
    assert list(patient.clinicians.all()) == [clinician] and not AuditEntry.objects.exists()

    confirmed = client.post(
        care_team_url(patient), team_form(patient, [], confirm_empty="on"), follow=True
    )
    page = confirmed.content.decode()
    assert confirmed.redirect_chain[-1][0] == f"/patients/{patient.pk}/"
    assert EMPTY_CARE_TEAM_MESSAGE.replace("'", "&#x27;") in page
    assert '<dd id="care-team">nobody: only staff see this patient</dd>' in page
    assert not patient.clinicians.exists()
    assert clinician_trail(patient) == [("clinician", "", "staff")]
    client.force_login(clinician)
    assert client.get(f"/patients/{patient.pk}/").status_code == 404


@pytest.mark.django_db
def test_only_active_accounts_are_offered_and_a_deactivated_member_is_not_dropped_unseen(
    client, staff_user, clinician, other_clinician, patient, django_user_model
):
    left = django_user_model.objects.create_user(username="left", password="pw-left-1")
    gone = django_user_model.objects.create_user(username="gone", password="pw-gone-1")
    patient.clinicians.add(gone)
    django_user_model.objects.filter(pk__in=[left.pk, gone.pk]).update(is_active=False)
    client.force_login(staff_user)
    page = client.get(care_team_url(patient)).content.decode()
    assert f'value="{left.pk}"' not in page  # nobody's clinician any more
    # the deactivated member is listed, ticked and marked, so that saving keeps them
    assert re.search(rf'value="{gone.pk}"[^>]*checked', page)
    assert "gone · deactivated: cannot log in" in page
    assert "staff · staff: sees every patient anyway" in page

    refused = client.post(care_team_url(patient), team_form(patient, [clinician, left]))
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert set(patient.clinicians.all()) == {clinician, gone}

    added = client.post(care_team_url(patient), team_form(patient, [clinician, gone, staff_user]))
    assert added.status_code == 302
    assert set(patient.clinicians.all()) == {clinician, gone, staff_user}
    assert clinician_trail(patient) == [("", "staff", "staff")]


@pytest.mark.django_db
def test_a_discharged_patients_team_can_be_changed(client, staff_user, other_clinician, patient):
    # their clinicians review their recordings after discharge; the team comes back with them
    client.force_login(staff_user)
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    assert "Care team" in client.get(f"/patients/{patient.pk}/").content.decode()
    response = client.post(care_team_url(patient), team_form(patient, [other_clinician]))
    assert response.status_code == 302
    assert list(patient.clinicians.all()) == [other_clinician]
    client.force_login(other_clinician)
    assert client.get(f"/patients/{patient.pk}/").status_code == 200


@pytest.mark.django_db
def test_a_stale_care_team_page_does_not_undo_a_change_made_meanwhile(
    client, staff_user, clinician, other_clinician, patient, django_user_model
):
    third = django_user_model.objects.create_user(username="third", password="pw-third-1")
    client.force_login(staff_user)
    a_opened = team_form(patient, [clinician, third])  # A opens the page, ticks "third"
    # B adds "other" meanwhile
    assert (
        client.post(
            care_team_url(patient), team_form(patient, [clinician, other_clinician])
        ).status_code
        == 302
    )
    # A saves: the page sends the team as A saw it, without "other": refused
    response = client.post(care_team_url(patient), a_opened, follow=True)
    assert STALE_PATIENT_MESSAGE in response.content.decode()
    assert response.redirect_chain[-1][0] == care_team_url(patient)  # shown as it is now
    assert set(patient.clinicians.all()) == {clinician, other_clinician}
    assert clinician_trail(patient) == [("", "other", "staff")]
    # the admin's patient page, opened before B's change, is stale too
    stale_admin = {**patient_form(patient), "opened_version": a_opened["opened_version"]}
    stale_admin["clinicians"] = [clinician.pk]
    refused = client.post(admin_url(Patient, "change", patient.pk), stale_admin)
    assert refused.status_code == 200 and STALE_PATIENT_MESSAGE in refused.content.decode()
    assert set(patient.clinicians.all()) == {clinician, other_clinician}


@pytest.mark.django_db
def test_the_readmission_page_points_to_the_care_team_page(client, staff_user, patient):
    client.force_login(staff_user)
    client.post(f"/manage/patients/{patient.pk}/discharge/")
    page = client.get(f"/manage/patients/{patient.pk}/readmit/").content.decode()
    assert "the care team in the admin" not in page
    assert "Change them on their page once readmitted (Alarm limits and recipients, Care" in page


# --- One patient a bed, under concurrent admissions ---------------------------------------


@pytest.mark.django_db
def test_a_bed_taken_after_the_admit_form_was_validated_is_refused(client, staff_user, monkeypatch):
    validated = AdmitPatientForm.clean

    def clean_then_someone_takes_the_bed(form):
        cleaned = validated(form)
        Patient.objects.create(mrn="MRN-FAST", name="Faster Arrival", ward="ICU", bed="4")
        return cleaned

    monkeypatch.setattr(AdmitPatientForm, "clean", clean_then_someone_takes_the_bed)
    client.force_login(staff_user)
    admit = {"mrn": "MRN-777", "name": "New Arrival", "sex": "U", "ward": "icu", "bed": "4"}
    response = client.post("/manage/patients/admit/", {**admit, **DEFAULT_LIMITS, **NO_RECIPIENTS})
    assert response.status_code == 200
    assert "Bed 4 of ward icu is Faster Arrival&#x27;s (MRN MRN-FAST)" in response.content.decode()
    assert not Patient.objects.filter(mrn="MRN-777").exists()
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
def test_a_bed_taken_after_the_readmit_form_was_validated_is_refused(
    client, staff_user, patient, monkeypatch
):
    client.force_login(staff_user)
    assert client.post(f"/manage/patients/{patient.pk}/discharge/").status_code == 302
    validated = ReadmitForm.clean

    def clean_then_someone_takes_the_bed(form):
        cleaned = validated(form)
        Patient.objects.create(mrn="MRN-FAST", name="Faster Arrival", ward="A", bed="1")
        return cleaned

    monkeypatch.setattr(ReadmitForm, "clean", clean_then_someone_takes_the_bed)
    response = client.post(f"/manage/patients/{patient.pk}/readmit/", {"ward": "A", "bed": "1"})
    assert response.status_code == 200  # the confirmation page again, with the reason
    page = response.content.decode()
    assert "Bed 1 of ward A is Faster Arrival&#x27;s (MRN MRN-FAST)" in page
    assert 'id="confirm"' in page
    patient.refresh_from_db()
    assert not patient.is_active
    assert not AuditEntry.objects.filter(field="is_active", new_value="True").exists()


# The races below run on SQLite and on PostgreSQL, and what makes the second admission wait
# differs: on PostgreSQL the bed's advisory lock (``lock_bed``); on SQLite the database's write
# lock, which every transaction takes as it begins (``transaction_mode`` IMMEDIATE), so
# ``lock_bed`` takes nothing there. Each test holds the other admission open until the request
# under test is seen waiting for it, then lets it commit: no sleep decides the order. On SQLite
# the request is seen beginning its transaction (it cannot go on while the other one holds the
# write lock); on PostgreSQL, waiting for an advisory lock. So on PostgreSQL each test fails
# when the saving code does not take the bed's lock; on SQLite when transactions do not
# serialise (the request then fails with "database is locked" instead of waiting).

# Long enough never to be reached on a busy machine; a thread that gets this far has hung.
GIVE_UP_S = 60.0


@contextmanager
def bed_being_taken(ward: str, bed: str):
    """Another admission to ``ward`` and ``bed`` in progress in another thread (its own
    database connection): inside its transaction it holds the bed's lock and has created its
    patient, not yet committed. It commits when the Event it yields is set (at the latest
    when the block ends)."""
    holding = threading.Event()
    release = threading.Event()
    failures = []

    def other_admission():
        try:
            with transaction.atomic():
                lock_bed(ward, bed)
                Patient.objects.create(mrn="MRN-FAST", name="Faster Arrival", ward=ward, bed=bed)
                holding.set()
                if not release.wait(GIVE_UP_S):
                    raise TimeoutError("the other admission was never let commit")
        except Exception as error:  # reported by the test, not lost in the thread
            failures.append(error)
        finally:
            holding.set()
            connection.close()

    thread = threading.Thread(target=other_admission)
    thread.start()
    try:
        assert holding.wait(GIVE_UP_S) and not failures, failures
        yield release
    finally:
        release.set()
        thread.join(GIVE_UP_S)
    assert not failures and not thread.is_alive(), failures


@contextmanager
def request_in_a_thread(send):
    """``send()`` (a test client's request) in a thread of its own, with its own database
    connection, so that the test can watch it wait. Yields (thread, began, outcome): ``began``
    is set when the request begins a transaction on SQLite; ``outcome`` holds its "response",
    or the "error" it raised, once the thread has ended."""
    began = threading.Event()
    outcome = {}

    def note_sqlite_begin(execute, sql, params, many, context):
        if sql.startswith("BEGIN IMMEDIATE"):
            began.set()  # before it runs: it waits there while another transaction is open
        return execute(sql, params, many, context)

    def run():
        try:
            with connection.execute_wrapper(note_sqlite_begin):
                outcome["response"] = send()
        except Exception as error:
            outcome["error"] = error
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield thread, began, outcome
    finally:
        thread.join(GIVE_UP_S)
    assert not thread.is_alive(), "the request never ended"


def waits_for_the_other_admission(request: threading.Thread, began: threading.Event) -> bool:
    """Whether the request came to wait for the other admission's transaction (True) rather
    than ending without waiting (False). On PostgreSQL a session of this database waits for
    an advisory lock: the other admission holds the only one taken, the bed's. On SQLite the
    request began a transaction, which cannot go on while the other one is open."""
    deadline = time.monotonic() + GIVE_UP_S
    while request.is_alive() and time.monotonic() < deadline:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = "
                    "current_database())"
                )
                if cursor.fetchone()[0]:
                    return True
        elif began.is_set():
            return True
        time.sleep(0.05)
    return False


def race(ward: str, bed: str, send):
    """``send()`` made while another admission to ``ward`` and ``bed`` is in progress; that
    one commits once the request is seen waiting for it. The request's response."""
    with bed_being_taken(ward, bed) as release:
        with request_in_a_thread(send) as (request, began, outcome):
            waited = waits_for_the_other_admission(request, began)
            release.set()
    assert "error" not in outcome, outcome.get("error")
    assert waited, "the request did not wait for the other admission: it took the bed unlocked"
    return outcome["response"]


@pytest.mark.django_db(transaction=True)
def test_two_admissions_to_one_bed_at_once_admit_one(client, staff_user):
    client.force_login(staff_user)
    admit = {"mrn": "MRN-777", "name": "New Arrival", "sex": "U", "ward": "icu", "bed": "4"}
    # The form's check finds the bed free (the other admission has not committed); the view's,
    # after waiting for it, finds it taken.
    response = race(
        "ICU",
        "4",
        lambda: client.post(
            "/manage/patients/admit/", {**admit, **DEFAULT_LIMITS, **NO_RECIPIENTS}
        ),
    )
    assert response.status_code == 200
    assert "Bed 4 of ward icu is Faster Arrival&#x27;s (MRN MRN-FAST)" in response.content.decode()
    assert list(Patient.objects.values_list("mrn", flat=True)) == ["MRN-FAST"]
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_readmission_to_a_bed_being_taken_is_refused(client, staff_user, patient):
    Patient.objects.filter(pk=patient.pk).update(is_active=False)  # discharged from A 1
    client.force_login(staff_user)
    # As above: the form's check finds ICU 4 free, readmission's check under the bed's lock,
    # after waiting for the other admission, finds it taken.
    response = race(
        "ICU",
        "4",
        lambda: client.post(f"/manage/patients/{patient.pk}/readmit/", {"ward": "icu", "bed": "4"}),
    )
    assert response.status_code == 200  # the confirmation page again, with the reason
    page = response.content.decode()
    assert "Bed 4 of ward icu is Faster Arrival&#x27;s (MRN MRN-FAST)" in page
    assert 'id="confirm"' in page
    patient.refresh_from_db()
    assert not patient.is_active and (patient.ward, patient.bed) == ("A", "1")
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_admin_moving_a_patient_into_a_bed_being_taken_is_refused(client, staff_user):
    moving = Patient.objects.create(mrn="MRN-778", name="Next Door", ward="ICU", bed="5")
    client.force_login(staff_user)
    form = patient_form(moving, bed="4")
    # The admin validates inside its transaction, under the bed's lock: it waits for the other
    # admission, then sees it.
    response = race("ICU", "4", lambda: client.post(admin_url(Patient, "change", moving.pk), form))
    assert response.status_code == 200
    assert "Bed 4 of ward ICU is Faster Arrival" in response.content.decode()
    moving.refresh_from_db()
    assert moving.bed == "5"
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_lock_bed_outside_a_transaction_is_an_error():
    # in autocommit the lock would be let go as soon as it was taken
    with pytest.raises(RuntimeError, match="outside a transaction"):
        lock_bed("ICU", "4")


# --- The admin audits the place -----------------------------------------------------------


@pytest.mark.django_db
def test_ward_and_bed_changed_in_the_admin_are_audited_as_readmission_audits_them(
    client, staff_user, patient
):
    client.force_login(staff_user)
    moved = client.post(
        admin_url(Patient, "change", patient.pk), patient_form(patient, ward="ICU", bed="7")
    )
    assert moved.status_code == 302, moved.content.decode()[:2000]
    trail = AuditEntry.objects.filter(patient=patient).order_by("id")
    assert [(e.field, e.old_value, e.new_value, e.user) for e in trail] == [
        ("ward", "A", "ICU", staff_user),
        ("bed", "1", "7", staff_user),
    ]
    # a patient added in the admin: the starting limits and admission, as before (the admit
    # page does not audit the place either)
    added = client.post(
        admin_url(Patient, "add"),
        {
            **patient_form(patient, mrn="MRN-900", ward="B", bed="3", clinicians=[]),
            "opened_version": "",
        },
    )
    assert added.status_code == 302, added.content.decode()[:2000]
    new = Patient.objects.get(mrn="MRN-900")
    fields = set(AuditEntry.objects.filter(patient=new).values_list("field", flat=True))
    assert fields == {*DEFAULT_LIMITS, "sustained_arrhythmia_alarm", "is_active"}
