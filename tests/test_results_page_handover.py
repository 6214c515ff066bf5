"""The results page as a clinician hands a recording over with it (exploratory test,
2026-12-07): the start's clock time for a device recording too (the "Started" row was an
upload's only), each episode's onset as a clock time, an episode's strip opening before its
onset (it started exactly there and cut the first beat's QRS), the episode details in words
with units (they were the stored keys, "n_beats 3, n_v_beats 3, mean_hr_bpm 150.2") and the
patient's MRN beside the name on the results and review pages."""

import re
from datetime import UTC, datetime

import numpy as np
import pytest
from django.utils.html import escape

from inference.synthetic import generate
from monitoring.models import AnalysisStatus, Episode, SampleChunk
from monitoring.upload_views import episode_details_text

pytestmark = pytest.mark.django_db

FS_HZ = 250.0
# 23:59:00 CET, to the microsecond as the ingest's clock gives it: an episode 90 s in is
# on the next day
STARTED_AT = datetime(2026, 1, 15, 22, 59, 0, 123456, tzinfo=UTC)


@pytest.fixture
def analysed(recording, settings):
    """A device recording of 120 s of ECG, analysed, with a VT and an AF episode."""
    settings.TIME_ZONE = "Europe/Berlin"
    recording.started_at = STARTED_AT
    recording.analysis_status = AnalysisStatus.DONE
    recording.save()
    ecg = generate(120.0, fs=FS_HZ, seed=3)
    adc = np.round(ecg.signal_mv * recording.gain_adc_per_mv).astype(np.int16)
    SampleChunk.from_samples(recording, 0, 0, adc).save()
    details = {"n_beats": 3, "n_v_beats": 3, "mean_hr_bpm": 150.2, "max_hr_bpm": 171.4}
    Episode.objects.create(
        recording=recording, kind="VT", start_s=30.5, end_s=31.7, details=details
    )
    Episode.objects.create(
        recording=recording,
        kind="AF",
        start_s=90.0,
        end_s=118.0,
        details={"n_beats": 31, "mean_hr_bpm": 66.4},
    )
    return recording


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


def episode_rows(page: str) -> list[str]:
    table = page.split('id="episodes"', 1)[1].split("</table>", 1)[0]
    return re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>", 1)[1])


def test_it_shows_a_device_recordings_start_and_each_episodes_onset_clock(api, analysed):
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    started = page.split('id="started-at">', 1)[1].split("</dd>", 1)[0]
    assert started == "2026-01-15 23:59:00 CET (Europe/Berlin)"
    assert "Onset (clock)" in page
    vt, af = episode_rows(page)
    assert '<td class="episode-clock">23:59:30 CET</td>' in vt
    # past midnight: with its date
    assert '<td class="episode-clock">2026-01-16 00:00:30 CET</td>' in af
    assert "<td>1.2</td>" in vt  # duration (s)


def test_an_episodes_strip_opens_two_seconds_before_its_onset(api, analysed):
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    vt, af = episode_rows(page)
    href = re.search(r'href="([^"]+)"', vt)[1]
    assert href == "?start_s=28.5&amp;length_s=10"
    assert '<a href="?start_s=88.0&amp;length_s=10">90.0</a>' in af
    assert "2 s before the onset" in page
    strip_page = api.get(f"/recordings/{analysed.pk}/", {"start_s": "28.5", "length_s": "10"})
    assert escape("?start_s=28.5&length_s=10") in strip_page.content.decode()


def test_an_episode_at_the_start_opens_at_the_start(api, analysed):
    Episode.objects.create(recording=analysed, kind="PAUSE", start_s=0.0, end_s=3.5)
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    assert '<a href="?start_s=0.0&amp;length_s=10">0.0</a>' in episode_rows(page)[0]


def test_the_episode_details_are_in_words_with_units(api, analysed):
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    vt, af = episode_rows(page)
    assert ("3 beats, 3 V beats, mean heart rate 150.2 bpm, highest heart rate 171.4 bpm") in vt
    assert "31 beats, mean heart rate 66.4 bpm" in af
    assert "n_beats" not in page and "mean_hr_bpm" not in page
    assert episode_details_text({"duration_s": 3.52, "open": "end", "ongoing": True}) == (
        "3.5 s without a beat, to the recording's end, ongoing"
    )
    assert episode_details_text({"min_hr_bpm": 41.0, "mean_probability": 0.873}) == (
        "lowest heart rate 41 bpm, mean VF probability 0.87"
    )
    # a key the page does not know yet is shown as stored, not dropped
    assert episode_details_text({"new_key": 2}) == "new_key 2"


def test_the_results_and_review_pages_show_the_patients_mrn(api, analysed):
    for url in (f"/recordings/{analysed.pk}/", f"/recordings/{analysed.pk}/review/"):
        page = api.get(url).content.decode()
        identity = page.split('id="patient-identity">', 1)[1].split("</a>", 1)[0]
        assert identity == "Assigned Patient (MRN MRN-001)", url


def test_an_upload_without_a_start_shows_no_episode_clock_times(api, analysed):
    # an upload whose file gave no start starts at its upload (Recording.start_is_upload_time)
    analysed.source = "upload"
    analysed.started_at = analysed.created_at
    analysed.save()
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    assert "unknown: the file gave no start time" in page
    vt, _ = episode_rows(page)
    assert '<td class="episode-clock">—</td>' in vt
    assert "No clock times: the file gave no start time." in page
