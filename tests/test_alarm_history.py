"""A patient's alarm history page (/patients/<id>/alarms/, monitoring/alarm_history.py) and
the API's ``since`` and ``until`` (monitoring/api/alarms.py): a night's alarms, not only the
live view's last 20, each with its event's time and a link to its ECG."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import Alarm, Recording

pytestmark = pytest.mark.django_db

FS_HZ = 250.0


def make_alarm(patient, age_s: float, now: datetime, **fields) -> Alarm:
    fields.setdefault("kind", "HR_HIGH")
    fields.setdefault("priority", "warning")
    fields.setdefault("message", f"alarm {age_s:g} s ago")
    fields.setdefault("state", "resolved")
    return Alarm.objects.create(patient=patient, raised_at=now - timedelta(seconds=age_s), **fields)


def night_recording(patient, started_at: datetime, hours: float = 13.0) -> Recording:
    """A device recording of a night, with samples stored up to ``hours`` after its start
    (the running total the review link reads; no chunk is needed for it)."""
    return Recording.objects.create(
        patient=patient,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        lead_names=["II"],
        started_at=started_at,
        end_sample=int(hours * 3600 * FS_HZ),
        stream_state=b"\x00" * 120_000,  # the analyzer's state: no row of the page reads it
    )


def history(client, patient, query: str = ""):
    return client.get(f"/patients/{patient.pk}/alarms/{query}")


def shown_ids(response) -> list[int]:
    return [row["alarm"].pk for row in response.context["rows"]]


def test_it_shows_the_last_12_hours_by_default(client, clinician, patient):
    now = timezone.now()
    early_pause = make_alarm(
        patient, 11.5 * 3600, now, kind="PAUSE", priority="critical", message="Pause 3.7 s"
    )
    recent = make_alarm(patient, 60, now)
    too_old = make_alarm(patient, 12.5 * 3600, now, message="yesterday evening")
    client.force_login(clinician)
    response = history(client, patient)
    assert response.status_code == 200
    assert shown_ids(response) == [recent.pk, early_pause.pk]  # newest first
    page = response.content.decode()
    assert "Pause 3.7 s" in page and "yesterday evening" not in page
    assert "2 alarms</strong> active from" in page
    assert too_old.pk not in shown_ids(history(client, patient, "?range=12h"))
    assert shown_ids(history(client, patient, "?range=24h")) == [
        recent.pk,
        early_pause.pk,
        too_old.pk,
    ]
    assert shown_ids(history(client, patient, "?range=1h")) == [recent.pk]


def test_an_alarm_raised_before_the_range_and_still_open_in_it_is_listed_and_marked(
    client, clinician, patient, staff_user
):
    """The handover at 07:00 asks for the night, 19:00 to 07:00: an alarm raised at 18:50 that
    stayed open all night (acknowledged, not resolved), and one raised at 17:00 and resolved
    at 21:00, were active in it. Only the alarms raised in the range were listed, so the
    night's longest alarm was missing from the night."""
    evening = datetime(2026, 7, 1, 19, 0, tzinfo=UTC)

    def at(hours: float) -> datetime:
        return evening + timedelta(hours=hours)

    def alarm(raised_h: float, resolved_h: float | None, **fields) -> Alarm:
        state = "resolved" if resolved_h is not None else "acknowledged"
        resolved_at = at(resolved_h) if resolved_h is not None else None
        return make_alarm(patient, 0, at(raised_h), state=state, resolved_at=resolved_at, **fields)

    over_before = alarm(-1, -0.5)  # 18:00 to 18:30
    open_all_night = alarm(
        -1 / 6, None, kind="LEADS_OFF", acknowledged_by=staff_user, acknowledged_at=at(0.2)
    )  # 18:50, open
    resolved_in_range = alarm(-2, 2, kind="AF")  # 17:00 to 21:00
    in_range = alarm(7, 7.1, kind="PAUSE")  # 02:00 to 02:06
    after = alarm(12.5, None, kind="VT")  # 07:30, open
    client.force_login(clinician)
    response = history(client, patient, "?from=2026-07-01+19:00&to=2026-07-02+06:59:59")
    # newest raised first, as before: those raised before the range come last
    assert shown_ids(response) == [in_range.pk, open_all_night.pk, resolved_in_range.pk]
    page = response.content.decode()
    assert "3 alarms</strong> active from 2026-07-01 19:00:00 UTC" in page

    def row_html(listed: Alarm) -> str:
        return page.split(f'id="alarm-{listed.pk}"')[1].split("</tr>")[0]

    assert "raised before this range" in row_html(open_all_night)
    assert "2026-07-01 18:50:00 UTC" in row_html(open_all_night)
    assert "raised before this range" in row_html(resolved_in_range)
    assert "raised before this range" not in row_html(in_range)
    # the API's since and until are read the same way
    night = "?since=2026-07-01T19:00:00Z&until=2026-07-02T07:00:00Z"
    assert api_ids(client, night) == shown_ids(response)
    assert api_ids(client, "?since=2026-07-01T19:00:00Z") == [
        after.pk,
        in_range.pk,
        open_all_night.pk,
        resolved_in_range.pk,
    ]
    # until alone: raised before it, whenever resolved
    assert api_ids(client, "?until=2026-07-01T18:55:00Z") == [
        open_all_night.pk,
        over_before.pk,
        resolved_in_range.pk,
    ]


def test_from_and_to_are_read_in_the_pages_zone_and_hold_their_last_second(
    client, clinician, patient
):
    berlin_night = datetime(2026, 7, 1, 23, 0, tzinfo=UTC)  # 01:00 CEST on 2 July
    inside = make_alarm(patient, 0, berlin_night)
    just_before = make_alarm(patient, 1, berlin_night - timedelta(hours=1))  # 23:59:59 CEST
    at_to = make_alarm(patient, -0.4, berlin_night + timedelta(hours=5))  # 06:00:00.4 CEST
    after_to = make_alarm(patient, -1, berlin_night + timedelta(hours=5))  # 06:00:01 CEST
    client.force_login(clinician)
    with timezone.override("Europe/Berlin"):
        response = history(client, patient, "?from=2026-07-02+00:00&to=2026-07-02+06:00:00")
        assert response.status_code == 200
        assert set(shown_ids(response)) == {inside.pk, at_to.pk}
        page = response.content.decode()
        # the range as the other pages write times, with the zone's abbreviation
        assert "active from 2026-07-02 00:00:00 CEST to 2026-07-02 06:00:00 CEST" in page
        assert just_before.pk not in shown_ids(response) and after_to.pk not in shown_ids(response)
        # a time as the page prints it, abbreviation included, is read back as the same moment
        again = history(client, patient, "?from=2026-07-02+00:00:00+CEST&to=2026-07-02+06:00")
        assert set(shown_ids(again)) == {inside.pk, at_to.pk}


def test_from_and_to_typed_win_over_the_menus_range_and_the_range_links_keep_the_filters(
    client, clinician, patient
):
    now = timezone.now()
    two_days_ago = make_alarm(patient, 48 * 3600, now, kind="AF", priority="warning")
    client.force_login(clinician)
    preset = history(client, patient, "?range=24h&kind=AF")
    page = preset.content.decode()
    # the menu's range rides along in the form, whose from and to are left empty for it
    assert '<input type="hidden" name="range" value="24h">' in page
    assert 'name="from" value=""' in page
    assert '<a href="?range=7d&amp;kind=AF">last 7 days</a>' in page
    assert shown_ids(preset) == []
    # times typed into that form (range=24h still in it) are what is shown
    since = timezone.localtime(now - timedelta(hours=49)).strftime("%Y-%m-%d %H:%M")
    typed = history(client, patient, f"?range=24h&kind=AF&from={since}")
    assert shown_ids(typed) == [two_days_ago.pk]
    assert typed.context["time_range"].key == "custom"
    assert f'name="from" value="{since}:00 UTC"' in typed.content.decode()


def test_a_time_the_clocks_skipped_or_a_bad_filter_is_refused_naming_it(client, clinician, patient):
    client.force_login(clinician)
    with timezone.override("Europe/Berlin"):
        skipped = history(client, patient, "?from=2026-03-29+02:30&to=2026-03-29+06:00")
    assert skipped.status_code == 400
    assert "skipped 2026-03-29 02:30:00" in skipped.context["error"]
    for query, words in [
        ("?from=last+night", "from must be a date and time"),
        ("?from=2026-07-02+06:00&to=2026-07-02+01:00", "must be before to"),
        ("?from=2026-02-30+01:00", "from is not a date and time"),
        ("?range=3h", "range must be one of 1h, 12h, 24h, 7d, custom"),
        ("?priority=urgent", "priority must be one of critical, warning, technical"),
        ("?kind=STEMI", "kind must be one of HR_HIGH"),
        ("?to=0001-01-01+00:00", "years 1900 to 2999"),
    ]:
        response = history(client, patient, query)
        assert response.status_code == 400, query
        assert words in response.context["error"], (query, response.context["error"])
        assert words.split(" must")[0] in response.content.decode()


def test_it_filters_by_priority_and_kind(client, clinician, patient):
    now = timezone.now()
    pause = make_alarm(patient, 300, now, kind="PAUSE", priority="critical", message="Pause")
    af = make_alarm(patient, 200, now, kind="AF", priority="warning", message="AF onset")
    leads = make_alarm(patient, 100, now, kind="LEADS_OFF", priority="technical", message="LO")
    client.force_login(clinician)
    assert shown_ids(history(client, patient, "?priority=critical")) == [pause.pk]
    assert shown_ids(history(client, patient, "?kind=AF")) == [af.pk]
    assert shown_ids(history(client, patient, "?priority=technical&kind=LEADS_OFF")) == [leads.pk]
    assert shown_ids(history(client, patient, "?priority=critical&kind=AF")) == []


def test_it_pages_50_at_a_time_and_the_links_keep_the_range_and_filters(client, clinician, patient):
    now = timezone.now()
    alarms = [make_alarm(patient, 60 * (i + 1), now, message=f"night {i}") for i in range(53)]
    make_alarm(patient, 90, now, kind="AF", priority="warning")  # filtered out below
    client.force_login(clinician)
    first = history(client, patient, "?kind=HR_HIGH")
    assert shown_ids(first) == [a.pk for a in alarms[:50]]
    page = first.content.decode()
    assert "53 alarms</strong> active from" in page and "page 1 of 2" in page
    [older] = [
        link for link in page.split('href="')[1:] if link.startswith("?") and "page=2" in link
    ]
    older = older.split('"')[0].replace("&amp;", "&")
    assert "kind=HR_HIGH" in older and "from=" in older and "to=" in older
    # an alarm raised meanwhile does not push the second page's rows along: the link pins
    # the range to the first page's from and to
    make_alarm(patient, -2, now, message="raised while reading")
    second = client.get(f"/patients/{patient.pk}/alarms/{older}")
    assert shown_ids(second) == [a.pk for a in alarms[50:]]


def test_a_row_gives_the_events_time_and_opens_the_review_at_the_event(
    client, clinician, patient, staff_user
):
    started = datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    recording = night_recording(patient, started)
    event_sample = int((3 * 3600 + 42.5) * FS_HZ)  # 01:00:42.5
    pause = Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind="PAUSE",
        priority="critical",
        message="Pause 3.7 s",
        raised_at=started + timedelta(hours=3, seconds=42.5 + 19),  # 19 s after the event
        acknowledged_by=staff_user,
        acknowledged_at=started + timedelta(hours=3, minutes=2),
        resolved_at=started + timedelta(hours=3, minutes=5, seconds=1.5),
        state="resolved",
        details={"sample": event_sample},
    )
    repeat = Alarm.objects.create(
        patient=patient,
        recording=recording,
        kind="LEADS_OFF",
        priority="technical",
        message="Leads off (DEV-1)",
        raised_at=started + timedelta(hours=4),
        details={"sample": int(4 * 3600 * FS_HZ), "repeat_of": 1234},
    )
    client.force_login(clinician)
    response = history(client, patient, "?from=2026-07-01+22:00&to=2026-07-02+06:00")
    rows = {row["alarm"].pk: row for row in response.context["rows"]}
    assert rows[pause.pk]["event_at"] == started + timedelta(hours=3, seconds=42.5)
    page = response.content.decode()
    row_html = page.split(f'id="alarm-{pause.pk}"')[1].split("</tr>")[0]
    assert "2026-07-02 01:00:42 UTC" in row_html  # event at
    assert "2026-07-02 01:01:01 UTC" in row_html and "(19 s after the event)" in row_html
    assert "staff at" in row_html and "2026-07-02 01:02:00 UTC" in row_html
    assert "(lasted 4 min 0 s)" in row_html
    # the ECG link: the review page on the window the e-mail's strip shows, 8 s before the
    # event to 4 s after it (notifications.review_url)
    event_s = event_sample / FS_HZ
    expected = f"/recordings/{recording.pk}/review/#t={event_s - 8:.3f}&amp;w=12"
    assert f'class="ecg-link" href="{expected}"' in row_html
    repeat_html = page.split(f'id="alarm-{repeat.pk}"')[1].split("</tr>")[0]
    assert "repeat of alarm #1234, not notified again" in repeat_html
    assert "not acknowledged" in repeat_html and "open" in repeat_html


def test_an_alarm_without_a_recording_or_an_event_sample_shows_only_when_raised(
    client, clinician, patient
):
    now = timezone.now()
    make_alarm(patient, 60, now, kind="DEVICE_OFFLINE", priority="technical")
    client.force_login(clinician)
    response = history(client, patient)
    [row] = response.context["rows"]
    assert row["event_at"] is None and row["review_url"] == ""
    assert "not recorded" in response.content.decode()


def test_a_clinician_not_assigned_gets_404_and_staff_see_everyone(
    client, clinician, staff_user, other_patient
):
    make_alarm(other_patient, 60, timezone.now(), message="someone else's")
    client.force_login(clinician)
    assert history(client, other_patient).status_code == 404
    client.force_login(staff_user)
    response = history(client, other_patient)
    assert response.status_code == 200 and "someone else&#x27;s" in response.content.decode()


def test_the_patient_page_and_the_live_view_link_to_it(client, clinician, patient):
    client.force_login(clinician)
    url = f'href="/patients/{patient.pk}/alarms/"'
    assert url in client.get(f"/patients/{patient.pk}/").content.decode()
    live = client.get(f"/patients/{patient.pk}/live/").content.decode()
    assert f'<a id="all-alarms" {url}>All alarms…</a>' in live


def page_queries(client, patient) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        response = history(client, patient, "?range=7d")
    assert response.status_code == 200
    return [query["sql"] for query in queries.captured_queries]


def test_its_queries_do_not_grow_with_the_rows_nor_read_the_analyzer_state(
    client, clinician, patient, django_user_model
):
    now = timezone.now()
    client.force_login(clinician)

    def add(number: int) -> None:
        # each its own recording and acknowledging user, as a week of device sessions
        recording = night_recording(patient, now - timedelta(hours=13))
        user = django_user_model.objects.create_user(username=f"nurse{number}")
        make_alarm(
            patient,
            60 * (number + 1),
            now,
            recording=recording,
            acknowledged_by=user,
            acknowledged_at=now,
            details={"sample": 1000 + number},
        )

    for number in range(2):
        add(number)
    two = page_queries(client, patient)
    for number in range(2, 60):
        add(number)
    sixty = page_queries(client, patient)
    assert len(sixty) == len(two), "\n".join(sql[:120] for sql in sixty)
    # the rows read the recording's time axis and the user's name, not the analyzer's state
    # nor the password hash (the login's own read of the user is the auth middleware's)
    alarm_reads = [sql for sql in sixty if "monitoring_alarm" in sql]
    assert len(alarm_reads) == 2  # the count and the page's rows, with what they show
    assert not [s for s in alarm_reads if "stream_state" in s or "password" in s]


# --- The API: since and until ------------------------------------------------------------


def api_ids(client, query: str) -> list[int]:
    response = client.get(f"/api/alarms/{query}")
    assert response.status_code == 200, response.json()
    return [alarm["id"] for alarm in response.json()["results"]]


def test_the_api_lists_the_alarms_raised_since_and_until(client, clinician, patient):
    night = datetime(2026, 7, 1, 22, 0, tzinfo=UTC)
    evening = make_alarm(patient, 3600, night)  # 21:00 UTC
    at_since = make_alarm(patient, 0, night)  # 22:00 UTC: since holds it
    early = make_alarm(patient, -3 * 3600, night)  # 01:00 UTC
    at_until = make_alarm(patient, -8 * 3600, night)  # 06:00 UTC: until does not
    client.force_login(clinician)
    assert api_ids(client, "?since=2026-07-01T22:00:00Z") == [at_until.pk, early.pk, at_since.pk]
    # the same moments in another zone; "+" encoded as a client library sends it
    query = "?since=2026-07-02T00:00:00%2B02:00&until=2026-07-02T08:00%2B02:00"
    assert api_ids(client, query) == [early.pk, at_since.pk]
    assert api_ids(client, "?until=2026-07-01T22:00:00Z") == [evening.pk]
    # a "+" typed into the URL unencoded arrives as a space: read as the "+" it was
    assert api_ids(client, "?since=2026-07-02T00:00:00+02:00&until=2026-07-02T08:00:00+02:00") == [
        early.pk,
        at_since.pk,
    ]
    assert api_ids(client, f"?patient={patient.pk}&since=2026-07-02T00:30Z&priority=warning") == [
        at_until.pk,
        early.pk,
    ]


@pytest.mark.parametrize(
    "query, words",
    [
        ("?since=yesterday", "since must be an ISO 8601 date and time with its zone"),
        ("?until=2026-07-02T06:00:00", "until must give its zone"),
        ("?since=2026-07-02", "since must give its zone"),
        ("?since=2026-13-02T06:00Z", "since must be an ISO 8601"),
        ("?since=0001-01-01T00:00%2B05:00", "since is out of range"),
        ("?since=2026-07-02T06:00Z&until=2026-07-02T01:00Z", "must be before until"),
    ],
)
def test_the_api_refuses_a_bad_since_or_until_with_400(client, clinician, query, words):
    client.force_login(clinician)
    response = client.get(f"/api/alarms/{query}")
    assert response.status_code == 400
    assert words in response.json()["detail"]


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "Asia/Dubai", "Asia/Kolkata"])
def test_the_page_links_work_where_the_zones_abbreviation_is_an_offset(
    client, clinician, patient, settings, zone
):
    """São Paulo's clocks read "-03", Dubai's "+04": the links carry from and to as the page
    prints them, and a pattern that wanted letters refused them, 400 on every "older" link
    and on the form sent again (a review of 2026-12-07)."""
    settings.TIME_ZONE = zone
    now = timezone.now()
    alarms = [make_alarm(patient, 60 * (i + 1), now, message=f"night {i}") for i in range(53)]
    client.force_login(clinician)
    first = history(client, patient)
    page = first.content.decode()
    [older] = [
        link for link in page.split('href="')[1:] if link.startswith("?") and "page=2" in link
    ]
    older = older.split('"')[0].replace("&amp;", "&")
    second = client.get(f"/patients/{patient.pk}/alarms/{older}")
    assert second.status_code == 200, second.content.decode()[:500]
    assert shown_ids(second) == [a.pk for a in alarms[50:]]
