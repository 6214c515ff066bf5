"""The central station page's cost does not grow with its tiles, and its tiles show what the
live status messages show (monitoring/dashboard_views.py, monitoring/live.py)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring import live
from monitoring.models import Alarm, Patient, Recording

pytestmark = pytest.mark.django_db

# the streaming analyzer's pickled state is about 120 kB on a live recording; no page reads it
STREAM_STATE = b"\x00" * 120_000


def admit(number: int, clinician=None) -> Patient:
    """A patient with a live device recording (with analyzer state) and two open alarms."""
    patient = Patient.objects.create(
        mrn=f"MRN-Q{number:03d}", name=f"Patient {number}", ward="W", bed=str(number)
    )
    if clinician is not None:
        patient.clinicians.add(clinician)
    Recording.objects.create(
        patient=patient,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        stream_state=STREAM_STATE,
    )
    Alarm.objects.create(patient=patient, kind="HR_HIGH", priority="warning", message="HR high")
    Alarm.objects.create(patient=patient, kind="VT", priority="critical", message=f"VT {number}")
    return patient


def station_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/station/")
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def test_station_queries_do_not_grow_with_the_tiles(client, clinician, other_clinician):
    client.force_login(clinician)
    for number in range(2):
        admit(number, clinician)
    admit(90, other_clinician)  # not this clinician's: no tile, but rows in the same tables
    two = station_queries(client)
    for number in range(2, 6):
        admit(number, clinician)
    six = station_queries(client)
    page = client.get("/station/").content.decode()
    assert page.count('class="tile critical"') == 6
    assert len(six) == len(two), "\n".join(sql[:90] for sql in six)


def test_station_does_not_read_the_analyzer_state(client, staff_user):
    admit(1)
    client.force_login(staff_user)
    assert not [sql[:90] for sql in station_queries(client) if "stream_state" in sql]


def test_a_tile_shows_the_alarm_top_alarm_picks(client, staff_user, clinician):
    """Priority, acknowledgement and age disagree: priority first, then one nobody
    acknowledged, then the newest; a resolved alarm never shows."""
    now = timezone.now()
    first, second = admit(1, clinician), admit(2, clinician)
    Alarm.objects.filter(patient__in=[first, second]).delete()

    def alarm(patient, kind, priority, age_s, acknowledged=False, state="raised"):
        return Alarm.objects.create(
            patient=patient,
            kind=kind,
            priority=priority,
            message=f"{kind} of {patient.name}",
            raised_at=now - timedelta(seconds=age_s),
            state="acknowledged" if acknowledged else state,
            acknowledged_by=staff_user if acknowledged else None,
            acknowledged_at=now if acknowledged else None,
        )

    alarm(first, "HR_HIGH", "warning", age_s=5)  # the newest, but only a warning
    alarm(first, "VT", "critical", age_s=30, acknowledged=True)  # newer, but acknowledged
    alarm(first, "VF", "critical", age_s=300)  # the oldest critical nobody acknowledged
    expected = alarm(first, "PAUSE", "critical", age_s=120)  # a newer one: this one
    alarm(first, "AF", "critical", age_s=1, state="resolved")  # over
    # the second patient's alarms are newer and interleave with the first's
    alarm(second, "VT", "critical", age_s=2, acknowledged=True)
    alarm(second, "PVC", "warning", age_s=3)

    client.force_login(staff_user)
    response = client.get("/station/")
    tiles = {tile["patient"].pk: tile["alarm"] for tile in response.context["tiles"]}
    assert tiles[first.pk] == live.top_alarm(first.pk)
    assert tiles[first.pk] == {
        "id": expected.pk,
        "kind": "PAUSE",
        "priority": "critical",
        "message": "PAUSE of Patient 1",
        "state": "raised",
        "acknowledged_by": None,
        "unacknowledged": 3,
    }
    # every open alarm acknowledged but a warning: the acknowledged critical one leads
    assert tiles[second.pk] == live.top_alarm(second.pk)
    assert (tiles[second.pk]["kind"], tiles[second.pk]["acknowledged_by"]) == ("VT", "staff")
    assert tiles[second.pk]["unacknowledged"] == 1
    page = response.content.decode()
    assert f'class="tile critical" id="tile-{first.pk}"' in page
    assert "PAUSE of Patient 1" in page and "VF of Patient 1" not in page


def test_a_clinician_sees_only_their_patients_and_their_alarms(client, clinician, other_clinician):
    mine = [admit(number, clinician) for number in range(3)]
    theirs = admit(7, other_clinician)
    discharged = admit(8, clinician)
    Patient.objects.filter(pk=discharged.pk).update(is_active=False)
    client.force_login(clinician)
    response = client.get("/station/")
    assert [tile["patient"].pk for tile in response.context["tiles"]] == [p.pk for p in mine]
    page = response.content.decode()
    assert f'id="tile-{theirs.pk}"' not in page and "VT 7" not in page
    assert f'id="tile-{discharged.pk}"' not in page and "VT 8" not in page
    assert all(f"VT {number}" in page for number in range(3))


def test_the_live_view_names_the_recording_the_socket_names(client, clinician, patient):
    """The live page's recording is ``live.current_recording``'s when one is live: a device
    recording (not an upload), the newest by start then id; its analyzer state left unread."""
    started = timezone.now() - timedelta(minutes=5)

    def recording(**fields):
        return Recording.objects.create(
            patient=patient,
            sampling_rate_hz=250.0,
            gain_adc_per_mv=200.0,
            lead_names=["II"],
            stream_state=STREAM_STATE,
            **fields,
        )

    recording(started_at=started)
    newest = recording(started_at=started)  # the same start: the later row
    recording(source=Recording.Source.UPLOAD, started_at=timezone.now())  # newer, not a device
    recording(started_at=timezone.now(), status=Recording.Status.CLOSED)
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    current = live.current_recording(patient.pk)
    assert current.pk == newest.pk and f">#{newest.pk} · 250.0 Hz" in page
    assert "stream_state" in current.get_deferred_fields()


def test_the_live_view_names_the_analysed_lead_as_the_socket_does(client, clinician, patient):
    from monitoring.consumers import backlog_messages

    Recording.objects.create(
        patient=patient,
        sampling_rate_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=2,
        lead_names=["I", "II"],
        analysis_lead=1,
    )
    client.force_login(clinician)
    page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    hello, _ = backlog_messages(patient.pk, since_s=0)
    assert hello["recording"]["lead"] == "II"
    assert "· lead II<" in page and "· lead I<" not in page
