"""Go to through its API with ``read_as``: a time into the recording as the review page
prints positions (the page's default), or a clock time, and the answer says which it used.
And the zone's clock the page gets (``clock_zones``): the server's abbreviations, where they
change. Exploratory test, 2026-12-07: "1:00:00" (one hour in) went to 01:00 o'clock, "6:32.6"
copied from the page was refused, "5:00:00" was "past the end" of a 12-hour recording."""

from datetime import UTC, datetime

import numpy as np
import pytest

from monitoring import review
from monitoring.models import SampleChunk

pytestmark = pytest.mark.django_db

FS_HZ = 250.0
DURATION_S = 43_333.3  # 12:02:13.3, as the page prints it
# 11:12:41 EST: one hour into the recording is 12:12:41 on the clock, 01:00 o'clock is
# 13 h 47 min after the start
STARTED_AT = datetime(2026, 1, 15, 16, 12, 41, tzinfo=UTC)


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def twelve_hours(recording, settings):
    """A 12-hour device recording in New York: a minute stored at its start and a second at
    its end (the rest is a gap: "Go to" needs only the time axis)."""
    settings.TIME_ZONE = "America/New_York"
    recording.started_at = STARTED_AT
    recording.save(update_fields=["started_at"])
    end = round(DURATION_S * FS_HZ)
    SampleChunk.from_samples(recording, 0, 0, np.zeros(int(60 * FS_HZ), np.int16)).save()
    SampleChunk.from_samples(recording, 1, end - 250, np.zeros(250, np.int16)).save()
    return recording


def go_to(api, recording, at, read_as=None):
    query = {"at": at} if read_as is None else {"at": at, "read_as": read_as}
    return api.get(f"/api/recordings/{recording.pk}/go-to/", query)


@pytest.mark.parametrize(
    ("typed", "time_s"),
    [
        ("1:00:00", 3600.0),
        ("6:32.6", 392.6),
        ("5:00:00", 18_000.0),
        ("75", 75.0),
        ("12.5 s", 12.5),
        ("75:00", 4500.0),  # minutes past 59 without hours
        ("12:02:13.3", DURATION_S),  # the end, as the page prints it
    ],
)
def test_into_the_recording_reads_positions_as_the_page_prints_them(
    api, twelve_hours, typed, time_s
):
    body = go_to(api, twelve_hours, typed, "elapsed").json()
    assert body["read_as"] == "elapsed"
    assert body["time_s"] == pytest.approx(time_s)
    assert body["length_s"] is None


def test_what_the_page_prints_reads_back_as_the_same_position(api, twelve_hours):
    for time_s in (0.0, 7.25, 59.97, 392.6, 3600.0, 3599.96, 36_005.5, DURATION_S):
        printed = review.format_elapsed(time_s)
        body = go_to(api, twelve_hours, printed, "elapsed").json()
        assert body["time_s"] == pytest.approx(time_s, abs=0.051), printed


def test_a_view_range_copied_from_the_page_goes_to_that_range(api, twelve_hours):
    body = go_to(api, twelve_hours, "59:55 – 1:00:05 of 12:02:13.3", "elapsed").json()
    assert body["time_s"] == pytest.approx(3600.0) and body["length_s"] == pytest.approx(10.0)
    assert go_to(api, twelve_hours, "10-20", "elapsed").json()["length_s"] == 10.0
    answer = go_to(api, twelve_hours, "1:00:05 – 59:55", "elapsed")
    assert answer.status_code == 400 and "ends before it starts" in answer.json()["detail"]


def test_a_clock_time_is_read_as_one_when_asked(api, twelve_hours):
    body = go_to(api, twelve_hours, "14:30", "clock").json()
    assert body["read_as"] == "clock"
    assert body["time_s"] == pytest.approx(3 * 3600 + 17 * 60 + 19)
    assert body["clock"] == "2026-01-15T14:30:00-05:00"
    # with the abbreviation as the page prints clock times
    assert go_to(api, twelve_hours, "14:30:00 EST", "clock").json()["time_s"] == 11_839.0
    answer = go_to(api, twelve_hours, "14:30:00 CET", "clock")
    assert answer.status_code == 400
    assert "did not show CET then (they showed EST)" in answer.json()["detail"]
    # a time into the recording is no clock time: it says where to read it so
    answer = go_to(api, twelve_hours, "6:32.6", "clock")
    assert answer.status_code == 400 and "“into the recording”" in answer.json()["detail"]


def test_past_the_end_into_the_recording_says_where_the_clock_time_lies(api, twelve_hours):
    answer = go_to(api, twelve_hours, "14:30:00", "elapsed")
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        "14:30:00 into the recording is outside it (0 to 12:02:13.3 stored); as a clock time, "
        "14:30:00 is 3:17:19 into it: choose “clock time” to go there"
    )
    answer = go_to(api, twelve_hours, "99:00:00", "elapsed")
    assert answer.status_code == 400 and "clock time" not in answer.json()["detail"]


@pytest.mark.parametrize("typed", ["noon", "1:75", "1:00:75", "1:60:00", "1e3", "nan", ""])
def test_what_is_no_time_into_the_recording_is_refused(api, twelve_hours, typed):
    answer = go_to(api, twelve_hours, typed, "elapsed")
    assert answer.status_code == 400
    assert "is not a time into the recording" in answer.json()["detail"]


def test_without_read_as_it_reads_as_before_and_says_how(api, twelve_hours):
    """Callers of the API before read_as keep its reading: a number is seconds, HH:MM[:SS] a
    clock time. The answer now says which."""
    body = go_to(api, twelve_hours, "75").json()
    assert body["read_as"] == "elapsed" and body["time_s"] == 75.0
    body = go_to(api, twelve_hours, "12:12:41").json()
    assert body["read_as"] == "clock" and body["time_s"] == 3600.0
    answer = go_to(api, twelve_hours, "5", "minutes")
    assert answer.status_code == 400
    assert "read_as must be elapsed or clock" in answer.json()["detail"]


def test_parse_elapsed_leaves_other_shapes_alone():
    assert review.parse_elapsed("1:00:00") == 3600.0
    assert review.parse_elapsed("14:30 EST") is None
    with pytest.raises(ValueError, match="minutes and seconds go to 59"):
        review.parse_elapsed("1:60:00")


def test_the_page_gets_the_servers_abbreviations_where_they_change(recording, settings):
    """New York's clocks went back at 06:00 UTC on 2026-11-01 (02:00 EDT to 01:00 EST). The
    browser's names for a zone depend on its locale (en-GB: "GMT-4", "GMT-5"); the page prints
    these, as the header and "Go to" do."""
    settings.TIME_ZONE = "America/New_York"
    recording.started_at = datetime(2026, 11, 1, 5, 59, 0, 250_000, tzinfo=UTC)
    recording.save(update_fields=["started_at"])
    SampleChunk.from_samples(recording, 0, 0, np.zeros(int(120 * FS_HZ), np.int16)).save()
    zones = review.review_overview(recording)["clock_zones"]
    assert zones == [
        {"from_s": 0.0, "offset_s": -4 * 3600, "abbreviation": "EDT"},
        {"from_s": 59.75, "offset_s": -5 * 3600, "abbreviation": "EST"},
    ]
    settings.TIME_ZONE = "Europe/Berlin"
    recording.started_at = datetime(2026, 1, 15, 11, 0, 0, tzinfo=UTC)
    recording.save(update_fields=["started_at"])
    zones = review.review_overview(recording)["clock_zones"]
    assert zones == [{"from_s": 0.0, "offset_s": 3600, "abbreviation": "CET"}]


def test_the_header_names_the_zone_in_an_hour_the_clocks_repeat(api, recording, settings):
    """Django's |date:"T" is blank for a time that happened twice: the header read "Started
    2026-11-01 01:59:00 (America/New_York)" where the range line said EDT."""
    settings.TIME_ZONE = "America/New_York"
    recording.started_at = datetime(2026, 11, 1, 5, 59, 0, tzinfo=UTC)  # 01:59:00 EDT
    recording.save(update_fields=["started_at"])
    SampleChunk.from_samples(recording, 0, 0, np.zeros(int(10 * FS_HZ), np.int16)).save()
    page = api.get(f"/recordings/{recording.pk}/review/").content.decode()
    assert "Started 2026-11-01 01:59:00 EDT (America/New_York)" in page
