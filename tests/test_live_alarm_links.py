"""The live view's alarm rows link the ECG at the event, as the alarm history's rows do
(``notifications.review_path``): the rows the server writes, and the alarm objects live.js
adds rows from (the socket's alarm messages and backlog, the API it reads again every 30 s
and the acknowledgment's answer). tests/test_live_socket_browser.py checks that live.js
writes the link from them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from monitoring import consumers, live
from monitoring.models import Alarm
from monitoring.notifications import review_path
from tests.test_alarm_history import FS_HZ, night_recording

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_alarms(patient):
    """A pause with its recording and event sample, and a silent device's offline alarm,
    which has no recording."""
    started = datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    recording = night_recording(patient, started)
    pause = Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind="PAUSE",
        priority="critical",
        message="Pause 3.7 s (>= 3 s)",
        raised_at=started + timedelta(hours=3, seconds=62),
        details={"sample": int((3 * 3600 + 42.5) * FS_HZ)},
    )
    offline = Alarm.objects.create(
        patient=patient,
        kind="DEVICE_OFFLINE",
        priority="technical",
        message="No data from DEV-002 since it was assigned at 01:00:00 UTC (> 60 s)",
        raised_at=started + timedelta(hours=3, minutes=5),
    )
    return pause, offline


def row_html(page: str, alarm: Alarm) -> str:
    return page.split(f'id="alarm-{alarm.pk}"')[1].split("</tr>")[0]


def test_the_rows_the_server_writes_link_the_ecg_as_the_history_does(
    client, clinician, patient, two_alarms
):
    pause, offline = two_alarms
    client.force_login(clinician)
    history = client.get(f"/patients/{patient.pk}/alarms/?range=7d")
    # the link the history page gives the same alarm (with &amp; in the page)
    [history_url] = [row["review_url"] for row in history.context["rows"] if row["alarm"] == pause]
    assert history_url.startswith(f"/recordings/{pause.recording_id}/review/#t=")
    with CaptureQueriesContext(connection) as queries:
        live_page = client.get(f"/patients/{patient.pk}/live/").content.decode()
    expected = history_url.replace("&", "&amp;")
    assert f'<a class="ecg-link" href="{expected}">ECG</a>' in row_html(live_page, pause)
    assert "ecg-link" not in row_html(live_page, offline)  # no recording: no link
    # the rows read their recording with them, not its analyzer state
    alarm_reads = [q["sql"] for q in queries.captured_queries if "monitoring_alarm" in q["sql"]]
    assert alarm_reads and not [sql for sql in alarm_reads if "stream_state" in sql]


def test_the_alarm_objects_live_js_adds_rows_from_carry_the_link(
    client, clinician, patient, two_alarms, monkeypatch
):
    pause, offline = two_alarms
    expected = {pause.pk: review_path(pause), offline.pk: None}
    # the socket's backlog after a reconnect
    backlog = {
        m["alarm"]["id"]: m["alarm"]["review_path"] for m in consumers.backlog_alarms(patient.pk)
    }
    assert backlog == expected
    # a published change (an alarm read without its recording, as a resolution has it)
    sends = []
    monkeypatch.setattr(live, "_send_all", lambda pairs, what: sends.append(pairs))
    monkeypatch.setattr(live, "_layer_down_until", 0.0)
    live.publish_alarms(list(Alarm.objects.filter(patient=patient)))
    published = {
        event["message"]["alarm"]["id"]: event["message"]["alarm"]["review_path"]
        for _, event in sends[0]
    }
    assert published == expected
    # the API live.js reads again every 30 s, and the acknowledgment's answer
    client.force_login(clinician)
    listed = client.get(f"/api/alarms/?patient={patient.pk}").json()["results"]
    assert {alarm["id"]: alarm["review_path"] for alarm in listed} == expected
    answer = client.post(f"/api/alarms/{pause.pk}/acknowledge/").json()
    assert answer["acknowledged_by"] == "clinician"
    assert answer["review_path"] == expected[pause.pk]
