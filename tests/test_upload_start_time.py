"""A WFDB upload keeps its own start time (docs/upload.md, "When the recording started").

A header's base time and date (``08:00:00 01/03/2026``) are a wall-clock time without a zone,
read in the server's TIME_ZONE; the recording starts then, so that its clock times line up
with a patient diary. Without a date (a time alone, or neither), and for CSV uploads, it
starts at the upload, and the WFDB export then writes no start. Implausible starts are
refused naming the header's line. Until 2026-12-07 every upload started at its upload time
and the export wrote that time as the record's start.
"""

import io
import re
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import wfdb
from django.utils import timezone

from monitoring.analysis import fail_stale_analyses
from monitoring.live import current_recording
from monitoring.models import AnalysisStatus, Recording
from monitoring.uploads import UploadError, parse_upload
from tests.upload_helpers import api_upload, signal_csv, synthetic_wfdb, wfdb_excerpt

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

NEW_YORK = "America/New_York"


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def upload(api, patient, django_capture_on_commit_callbacks):
    """Upload files through the API (the analysis runs on commit, eagerly) and return the
    stored recording."""

    def run(files: dict[str, bytes], **fields) -> Recording:
        with django_capture_on_commit_callbacks(execute=True):
            response = api_upload(api, patient.pk, files, **fields)
        assert response.status_code == 201, response.content
        return Recording.objects.get(pk=response.json()["id"])

    return run


def with_start(files: dict[str, bytes], base: str, comment_first: bool = False) -> dict:
    """The record's files with ``base`` (base time and date as written) added to the end of
    its header's record line; ``comment_first`` puts a comment line before that line."""
    (header_name,) = [name for name in files if name.endswith(".hea")]
    record_line, rest = files[header_name].decode().split("\n", 1)
    text = f"{record_line} {base}".strip() + "\n" + rest
    if comment_first:
        text = "# a Holter copy\n" + text
    return {**files, header_name: text.encode()}


@pytest.fixture
def synthetic(tmp_path) -> dict[str, bytes]:
    """A 400-s synthetic two-lead record at 250 Hz (no data folder needed)."""
    return synthetic_wfdb(tmp_path, "syn", seconds=400.0)


def refusal(files: dict[str, bytes]) -> str:
    with pytest.raises(UploadError) as caught:
        parse_upload(list(files.items()))
    return str(caught.value)


def refusal_free(files: dict[str, bytes]) -> bool:
    """Whether the files parse, with a start from the header."""
    return parse_upload(list(files.items())).started_at is not None


def export_files(api, recording: Recording, folder: Path) -> dict[str, bytes]:
    """The recording's WFDB export, unzipped into ``folder``, as files to upload."""
    response = api.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(folder)
        return {name: archive.read(name) for name in archive.namelist()}


# --- the header's start -----------------------------------------------------------------


def test_the_reported_record_209_starts_when_its_header_says(api, upload, settings, tmp_path):
    """The tester's case: a copy of MIT-BIH 209 whose header says 08:00:00 01/03/2026, on a
    server in New York: it started 2026-12-07 at the upload, and "Go to 08:05" was 20.9 h
    after the start."""
    settings.TIME_ZONE = NEW_YORK
    files = with_start(wfdb_excerpt(tmp_path, "209", seconds=400.0), "08:00:00 01/03/2026")
    recording = upload(files)
    assert recording.analysis_status == AnalysisStatus.DONE
    # 08:00 EST (UTC-5, before the clocks go forward on 8 March)
    assert recording.started_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert recording.ended_at == recording.started_at + timedelta(seconds=400)
    assert not recording.start_is_upload_time

    page = api.get(f"/recordings/{recording.pk}/review/").content.decode()
    assert "Started 2026-03-01 08:00:00 EST" in page
    assert "start-is-upload-time" not in page
    results = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert "2026-03-01 08:00:00 EST (America/New_York), from the file's header" in results
    response = api.get(f"/api/recordings/{recording.pk}/go-to/", {"at": "08:05"})
    assert response.status_code == 200, response.content
    assert response.json()["time_s"] == pytest.approx(300.0)
    assert response.json()["clock"] == "2026-03-01T08:05:00-05:00"


def test_the_header_time_is_read_in_the_servers_time_zone(synthetic, upload, settings):
    settings.TIME_ZONE = "Europe/Berlin"
    recording = upload(with_start(synthetic, "08:00:00.250 01/07/2025"))
    # 08:00:00.25 CEST is 06:00:00.25 UTC; the microseconds are kept
    assert recording.started_at == datetime(2025, 7, 1, 6, 0, 0, 250000, tzinfo=UTC)
    settings.TIME_ZONE = "UTC"
    recording = upload(with_start(synthetic, "8:0:0 1/7/2025"))  # WFDB's short form
    assert recording.started_at == datetime(2025, 7, 1, 8, 0, tzinfo=UTC)


def test_a_clock_time_the_clocks_showed_twice_is_the_first(synthetic, settings):
    settings.TIME_ZONE = NEW_YORK
    parsed = parse_upload(list(with_start(synthetic, "01:30:00 01/11/2026").items()))
    # 01:30 happened at 05:30 UTC (EDT) and again at 06:30 UTC (EST): the first is taken
    assert parsed.started_at == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


# --- no start in the file: the upload time, and said so ---------------------------------


@pytest.mark.parametrize("base", ["", "08:00:00"], ids=["nothing", "a time alone"])
def test_without_a_date_it_starts_at_the_upload_and_the_export_says_so(
    synthetic, upload, api, base, settings, tmp_path
):
    settings.TIME_ZONE = NEW_YORK
    before = timezone.now()
    recording = upload(with_start(synthetic, base))
    assert before <= recording.started_at <= timezone.now()
    assert recording.start_is_upload_time
    # the export writes no base time or date: the upload time is not when it was recorded,
    # and a header with one would be uploaded again as a real start
    exported = export_files(api, recording, tmp_path / "export")
    header = wfdb.rdheader(str(tmp_path / "export" / f"recording-{recording.pk}"))
    assert header.base_time is None and header.base_date is None
    assert header.comments == [
        "start unknown: the uploaded file gave none; CardioSpike counted its clock times from "
        f"the upload, {recording.started_at.astimezone(UTC).isoformat()}"
    ]
    before_again = timezone.now()
    again = upload(exported)
    assert before_again <= again.started_at and again.start_is_upload_time


def test_a_signal_csv_starts_at_the_upload(upload, api, tmp_path):
    """A signal CSV has no way to state a start (one column, and fs_hz in the form)."""
    before = timezone.now()
    recording = upload({"ecg.csv": signal_csv(seconds=20.0)}, fs_hz=250)
    assert before <= recording.started_at <= timezone.now()
    assert recording.start_is_upload_time
    # the pages say so: a reviewer must not line the upload time up with a patient diary
    page = api.get(f"/recordings/{recording.pk}/review/").content.decode()
    assert "the file gave no start time, so clock times are not those of the recording" in page
    results = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert "unknown: the file gave no start time, so clock times count from the upload" in results
    export_files(api, recording, tmp_path)
    header = wfdb.rdheader(str(tmp_path / f"recording-{recording.pk}"))
    assert header.base_date is None and header.comments[0].startswith("start unknown")


# --- the round trip ---------------------------------------------------------------------


def test_an_exported_record_uploaded_again_keeps_its_start(
    synthetic, upload, api, settings, tmp_path
):
    """On the same server and on one in another zone: the export writes the start on the
    server's clock, as the upload read it, with the comment that gives its offset, which the
    upload reads back. Until 2026-12-07 the export wrote it in UTC (04:59:58.5 here): a WFDB
    viewer showed every time 5 hours off the pages'."""
    settings.TIME_ZONE = NEW_YORK
    first = upload(with_start(synthetic, "23:59:58.5 07/03/2026"))
    assert first.started_at == datetime(2026, 3, 8, 4, 59, 58, 500000, tzinfo=UTC)
    exported = export_files(api, first, tmp_path / "one")
    header = wfdb.rdheader(str(tmp_path / "one" / f"recording-{first.pk}"))
    assert header.base_datetime == datetime(2026, 3, 7, 23, 59, 58, 500000)  # EST, naive
    assert header.comments == [
        "started_at 2026-03-07T23:59:58.500000-05:00",
        "time_zone America/New_York (the base time and date are its clock)",
    ]

    again = upload(exported)
    assert again.started_at == first.started_at and not again.start_is_upload_time
    settings.TIME_ZONE = "Asia/Tokyo"
    elsewhere = upload(export_files(api, again, tmp_path / "two"))
    assert elsewhere.started_at == first.started_at


def test_a_header_edited_after_the_export_is_read_as_it_now_says(
    synthetic, upload, api, settings, tmp_path
):
    """The comment only says which clock the base time is on while the two agree."""
    settings.TIME_ZONE = NEW_YORK
    first = upload(with_start(synthetic, "08:00:00 01/03/2026"))
    exported = export_files(api, first, tmp_path)
    name = f"recording-{first.pk}.hea"
    edited = re.sub(rb"08:00:00 01/03/2026", b"09:00:00 01/03/2026", exported[name])
    assert edited != exported[name]
    again = upload({**exported, name: edited})
    assert again.started_at == datetime(2026, 3, 1, 14, 0, tzinfo=UTC)  # 09:00 EST


def test_an_export_in_the_hour_the_clocks_repeat_keeps_its_start(
    synthetic, upload, api, settings, tmp_path
):
    """01:30 happened twice on 1 November 2026 in New York; the export of a recording that
    started at the second (EST) writes 01:30 with the offset that says which, and the upload
    keeps it, where the bare header would be read as the first (EDT)."""
    settings.TIME_ZONE = NEW_YORK
    first = upload(with_start(synthetic, "08:00:00 01/03/2026"))
    second_0130 = datetime(2026, 11, 1, 6, 30, 0, 123456, tzinfo=UTC)  # 01:30 EST
    Recording.objects.filter(pk=first.pk).update(started_at=second_0130)
    first.refresh_from_db()
    exported = export_files(api, first, tmp_path)
    header = wfdb.rdheader(str(tmp_path / f"recording-{first.pk}"))
    assert header.base_datetime == datetime(2026, 11, 1, 1, 30, 0, 123456)
    assert header.comments[0] == "started_at 2026-11-01T01:30:00.123456-05:00"
    again = upload(exported)
    assert again.started_at == second_0130


# --- starts that cannot be right are refused ---------------------------------------------


def test_a_start_in_the_future_is_refused_naming_the_line(synthetic, api, patient, settings):
    settings.TIME_ZONE = NEW_YORK
    # noon: never in an hour a clock change skips
    tomorrow = (timezone.localtime() + timedelta(days=1)).replace(hour=12, minute=0, second=0)
    files = with_start(synthetic, f"{tomorrow:%H:%M:%S %d/%m/%Y}", comment_first=True)
    message = refusal(files)
    assert message.startswith(
        f"syn.hea line 2: its base time and date ({tomorrow:%H:%M:%S %d/%m/%Y}) put the "
        f"recording's start at {tomorrow:%Y-%m-%d %H:%M:%S} ({NEW_YORK}, the server's time "
        "zone, in which WFDB times are read) and its end, 6.7 min later, after the upload"
    )
    assert "a recording cannot end after it is uploaded" in message
    assert message.endswith(
        "or delete the base time and date from that line to have the recording start at the "
        "upload time"
    )
    # nothing is stored
    response = api_upload(api, patient.pk, files)
    assert response.status_code == 400 and response.json()["detail"] == message
    assert not Recording.objects.exists()


def test_a_recording_that_would_end_after_its_upload_is_refused(synthetic, settings):
    settings.TIME_ZONE = NEW_YORK
    started = timezone.localtime() - timedelta(minutes=5)  # 400 s long: ends in 1.7 min
    message = refusal(with_start(synthetic, f"{started:%H:%M:%S %d/%m/%Y}"))
    assert "and its end, 6.7 min later, after the upload" in message
    settings.TIME_ZONE = "UTC"  # the same wall clock 5 hours earlier: accepted
    assert refusal_free(with_start(synthetic, f"{started:%H:%M:%S %d/%m/%Y}"))


@pytest.mark.parametrize("date_text", ["01/03/1900", "01/03/0026", "31/12/1959"])
def test_a_start_before_1960_is_refused(synthetic, date_text):
    year = int(date_text[-4:])
    assert refusal(with_start(synthetic, f"08:00:00 {date_text}")) == (
        f"syn.hea line 1: its base time and date (08:00:00 {date_text}) put the recording's "
        f"start in {year}, before 1960, when no ambulatory ECG was recorded: the date is a "
        "placeholder or a typo; fix it (dates are DD/MM/YYYY); or delete the base time and "
        "date from that line to have the recording start at the upload time"
    )
    assert refusal_free(with_start(synthetic, "08:00:00 01/01/1960"))


def test_a_base_time_without_hours_is_refused(synthetic):
    """WFDB reads 08:00 as 8 minutes past midnight, not 8 o'clock."""
    assert refusal(with_start(synthetic, "08:00 01/03/2026")).startswith(
        "syn.hea line 1: the base time '08:00' has no hours: WFDB reads it as 00:08:00 "
        "(minutes:seconds past midnight); write the time of day as HH:MM:SS (such as 08:00:00)"
    )


def test_a_clock_time_the_clocks_skipped_is_refused(synthetic, settings):
    settings.TIME_ZONE = NEW_YORK
    assert refusal(with_start(synthetic, "02:30:00 08/03/2026")).startswith(
        "syn.hea line 1: its base time and date (02:30:00 08/03/2026) did not happen in "
        "America/New_York, the server's time zone, in which WFDB times are read: on "
        "2026-03-08 the clocks went from 02:00 EST to 03:00 EDT; fix the time"
    )


def test_a_year_past_the_calendar_is_refused_not_a_crash(synthetic, settings):
    settings.TIME_ZONE = NEW_YORK  # 9999-12-31 23:00 EST is past datetime.max in UTC
    assert "a recording cannot end after it is uploaded" in refusal(
        with_start(synthetic, "23:00:00 31/12/9999")
    )


# --- what is keyed on the start, for an upload years in the past ------------------------


def test_an_upload_started_years_ago_is_listed_analysed_and_never_live(
    synthetic, upload, api, patient, recording, settings
):
    """The patient's recordings (page and API, newest start first), the stale-analysis sweep
    (it counts from the upload) and the live view's current recording (device recordings
    only) with an upload that started in 2019."""
    settings.TIME_ZONE = "UTC"
    old = upload(with_start(synthetic, "10:00:00 15/06/2019"))
    assert old.started_at == datetime(2019, 6, 15, 10, 0, tzinfo=UTC)
    assert old.analysis_status == AnalysisStatus.DONE and old.analysis_summary["n_beats"] > 0
    newer = upload(with_start(synthetic, "10:00:00 15/06/2020"))

    listed = api.get("/api/recordings/", {"patient": patient.pk}).json()["results"]
    assert [row["id"] for row in listed] == [recording.pk, newer.pk, old.pk]
    page = api.get(f"/patients/{patient.pk}/").content.decode()
    assert "2019-06-15 10:00:00 UTC" in page and page.index("2020-06-15") < page.index("2019-06-15")

    # pending again just now: the sweep reads when it was queued, not when it started
    Recording.objects.filter(pk=old.pk).update(
        analysis_status=AnalysisStatus.PENDING, analysis_queued_at=timezone.now()
    )
    assert fail_stale_analyses() == []
    assert current_recording(patient.pk) == recording  # the device's, not an upload
