"""Each upload format is stored, analysed on commit, and its results read back.

Real MIT-BIH excerpts (record 208: frequent PVCs and fusion beats) are written to a
temporary folder with wfdb; the signal CSV is synthetic (inference.synthetic).
"""

import csv
import io
from datetime import timedelta

import matplotlib.image
import numpy as np
import pytest
from django.utils.html import escape

from inference.analysis import beat_saliency
from inference.synthetic import generate
from monitoring.analysis import analyze_recording, recording_adc, recording_signal_mv
from monitoring.models import AnalysisStatus, Beat, Episode, Recording, UploadFormat
from monitoring.uploads import parse_upload, store_upload
from tests.upload_helpers import (
    api_upload,
    files_payload,
    kaggle187_rows,
    mitdb_folder,
    pending_csv_upload,
    rows_csv,
    signal_csv,
    wfdb_excerpt,
    window216_rows,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def upload(api, patient, django_capture_on_commit_callbacks):
    """Upload files and run what the commit queues (the analysis task, eager here)."""

    def run(files: dict[str, bytes], **fields) -> Recording:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api_upload(api, patient.pk, files, **fields)
        assert response.status_code == 201, response.content
        assert response.json()["analysis_status"] == "pending"  # stored before analysed
        assert len(callbacks) == 1
        return Recording.objects.get(pk=response.json()["id"])

    return run


@pytest.fixture(scope="module")
def record_208(tmp_path_factory):
    mitdb_folder()
    return wfdb_excerpt(tmp_path_factory.mktemp("wfdb"), "208", seconds=120.0)


def test_it_stores_a_wfdb_record_losslessly_and_analyses_its_mlii_lead(upload, record_208):
    import wfdb

    recording = upload(record_208)
    assert recording.upload_format == UploadFormat.WFDB
    assert recording.source_name == "208"
    assert recording.lead_names == ["MLII", "V1"] and recording.analysis_lead == 0
    assert (recording.sampling_rate_hz, recording.gain_adc_per_mv) == (360.0, 200.0)
    assert recording.baseline_adc == 1024
    original = wfdb.rdrecord(str(mitdb_folder() / "208"), sampto=120 * 360, physical=False)
    np.testing.assert_array_equal(recording_adc(recording), original.d_signal)

    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    summary = recording.analysis_summary
    n_reference = len(recording.reference_annotations["samples"])
    assert abs(summary["n_beats"] - n_reference) <= 0.05 * n_reference
    assert summary["lead"] == "MLII"
    assert 40 <= summary["heart_rate_bpm"]["mean"] <= 160
    assert sum(summary["counts"].values()) == summary["n_beats"] == recording.beats.count()

    agreement = recording.analysis_agreement
    assert agreement["qrs"]["se"] > 0.95 and agreement["qrs"]["ppv"] > 0.95
    confusion = np.array(agreement["confusion"])
    assert confusion.sum() == agreement["n_matched"]
    assert agreement["classes"]["V"]["support"] == recording.reference_annotations["labels"].count(
        "V"
    )
    labelled = recording.beats.exclude(reference_label="")
    assert labelled.count() == agreement["n_matched"]


def test_it_finds_the_pvcs_of_record_208(upload, record_208):
    """208's first two minutes hold many PVCs; the shipped models must find most of them."""
    recording = upload(record_208)
    v = recording.analysis_agreement["classes"]["V"]
    assert v["support"] > 50
    assert v["se"] > 0.6 and v["ppv"] > 0.6


def test_it_records_who_uploaded_a_recording(api, upload, clinician):
    recording = upload({"ecg.csv": signal_csv(20.0)}, fs_hz=250)
    assert recording.uploaded_by == clinician
    assert api.get(f"/api/recordings/{recording.pk}/analysis/").json()["uploaded_by"] == "clinician"
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert "by clinician</dd>" in page


def test_it_analyses_a_signal_csv_at_its_stated_rate(upload):
    recording = upload({"strip.csv": signal_csv(60.0, fs_hz=250.0)}, fs_hz="250")
    assert recording.upload_format == UploadFormat.CSV_SIGNAL
    assert recording.sampling_rate_hz == 250.0
    truth = generate(60.0, fs=250.0, pvc_per_min=6.0, seed=7)
    # the stored int16 keeps the signal to within half an ADC step
    stored = recording.to_mv(recording_adc(recording)[:, 0])
    step = 1.0 / recording.gain_adc_per_mv
    assert np.max(np.abs(stored - np.round(truth.signal_mv, 4))) <= 0.5 * step + 1e-12
    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    summary = recording.analysis_summary
    assert abs(summary["n_beats"] - len(truth.beats)) <= 2
    assert 60 <= summary["heart_rate_bpm"]["mean"] <= 85
    assert recording.analysis_agreement is None  # a plain signal carries no labels


def test_an_upload_ends_its_duration_after_it_starts(patient):
    # ended_at was now() taken before the model's default took started_at: it came first
    parsed = parse_upload([("strip.csv", signal_csv(30.0, fs_hz=250.0))], fs_hz=250.0)
    assert parsed.n_samples == 7500
    recording = store_upload(patient, parsed)
    recording.refresh_from_db()
    assert recording.ended_at - recording.started_at == timedelta(seconds=30)


def zeros_csv(n_samples: int = 10800) -> bytes:
    """The reviewer's file: ``np.savetxt('zeros.csv', np.zeros(10800))``, a flat 30 s at 360 Hz."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.zeros(n_samples))
    return buffer.getvalue().encode()


def wander_csv(seconds: float = 30.0, fs_hz: float = 360.0) -> bytes:
    """A lead that was off: 0.1 mV of slow baseline wander and no QRS. (A strip in volts is
    refused at upload: tests/test_upload_amplitude.py.)"""
    buffer = io.StringIO()
    np.savetxt(buffer, 0.1 * np.sin(2 * np.pi * 0.3 * np.arange(int(seconds * fs_hz)) / fs_hz))
    return buffer.getvalue().encode()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (zeros_csv(), "the signal is flat (constant at 0 mV)"),
        (wander_csv(), "the signal spans only 0.2 mV peak to peak"),
    ],
    ids=["flat", "lead-off"],
)
def test_a_signal_without_beats_is_analysed_as_inference_analyze_does(api, upload, content, says):
    # it was "ValueError: cannot reshape array of size 0 into shape (0,newaxis)": Failed
    from inference.analysis import analyze_signal

    recording = upload({"strip.csv": content}, fs_hz="360")
    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    summary = recording.analysis_summary
    assert summary["n_beats"] == 0 and not recording.beats.exists()
    assert summary["heart_rate_bpm"] == {"mean": None, "min": None, "max": None}
    assert summary["counts"] == {name: 0 for name in "NSVFQ"}
    assert summary["note"].startswith("No beats were found in lead") and says in summary["note"]
    # the same beats, episodes and summary as the command line's pipeline on the stored lead
    direct = analyze_signal(recording.to_mv(recording_adc(recording)[:, 0]), 360.0)
    assert len(direct.r_peaks) == 0
    stored = list(recording.episodes.values_list("kind", "start_s", "end_s"))
    assert stored == [(e.kind, e.start_s, e.end_s) for e in direct.episodes]
    assert stored == [("PAUSE", 0.0, 30.0)]  # the whole strip: no beat at all
    assert summary["episodes"]["PAUSE"] == {"count": 1, "seconds": 30.0}
    assert {k: summary[k] for k in direct.summary} == direct.summary

    # and every view of the results takes a recording without beats
    analysis = api.get(f"/api/recordings/{recording.pk}/analysis/").json()
    assert analysis["analysis_status"] == "done" and analysis["analysis_summary"]["n_beats"] == 0
    assert analysis["analysis_summary"]["note"] == summary["note"]
    assert api.get(f"/api/recordings/{recording.pk}/beats/").json()["count"] == 0
    table = api.get(f"/api/recordings/{recording.pk}/results.csv").content.decode()
    assert table.splitlines()[0].startswith("beat,sample,time_s") and len(table.splitlines()) == 1
    strip = api.get(f"/api/recordings/{recording.pk}/strip.png", HTTP_ACCEPT="image/png")
    assert strip.status_code == 200 and strip.content[:8] == PNG_MAGIC
    page = api.get(f"/recordings/{recording.pk}/")
    assert page.status_code == 200
    note = f'<p class="note" id="summary-note">{escape(summary["note"])}</p>'
    assert note in page.content.decode()  # the results page says why there are no beats


def test_the_no_beats_note_tells_flat_small_and_large_signals_apart():
    from monitoring.analysis import no_beats_note

    flat = no_beats_note(np.full(1000, 0.25), "II")
    assert flat.startswith("No beats were found in lead II: the signal is flat (constant at 0.25")
    small = no_beats_note(np.linspace(0.0, 0.0016, 1000), "MLII")
    assert "spans only 0.00157 mV peak to peak" in small and "not in millivolts" in small
    large = no_beats_note(np.linspace(-1.0, 1.0, 1000), "MLII")
    assert "although the signal spans 1.96 mV peak to peak" in large
    assert "millivolts" not in large


def test_it_analyses_kaggle_rows_with_their_labels(upload):
    rows, labels = kaggle187_rows("208", seconds=120.0, limit=60)
    recording = upload({"kaggle.csv": rows_csv(rows, labels, numeric=True)})
    assert recording.upload_format == UploadFormat.KAGGLE187
    assert recording.sampling_rate_hz == 125.0
    assert recording_adc(recording).shape == (60 * 187, 1)
    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    beats = list(recording.beats.order_by("index"))
    assert [beat.row for beat in beats] == list(range(1, 61))
    assert [beat.sample for beat in beats] == [187 * i for i in range(60)]  # R at value 1
    assert [beat.reference_label for beat in beats] == labels
    summary = recording.analysis_summary
    assert summary["heart_rate_bpm"] is None and summary["rhythm_context"] is False
    assert not recording.episodes.exists()
    assert recording.analysis_agreement["n_matched"] == 60


def test_it_analyses_unlabelled_window216_rows(upload):
    rows, _ = window216_rows("208", seconds=120.0, limit=40)
    recording = upload({"beats.csv": rows_csv(rows)})
    assert recording.upload_format == UploadFormat.WINDOW216
    assert recording.sampling_rate_hz == 360.0
    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    assert recording.beats.count() == 40
    assert recording.beats.first().sample == 90  # the R peak of row 1
    assert recording.analysis_agreement is None
    assert set(recording.beats.values_list("reference_label", flat=True)) == {""}


def test_it_takes_letter_labels_and_a_header_line(upload):
    rows, labels = window216_rows("208", seconds=60.0, limit=10)
    text = ",".join(f"v{i}" for i in range(216)) + ",label\n"
    text += rows_csv(rows, labels, numeric=False).decode()
    recording = upload({"beats.csv": text.encode()})
    assert recording.reference_annotations == {"labels": labels}


def test_it_writes_a_results_csv_line_per_beat(api, upload, record_208):
    recording = upload(record_208)
    response = api.get(f"/api/recordings/{recording.pk}/results.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    table = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(table) == recording.beats.count()
    first = table[0]
    assert set(first) >= {"beat", "sample", "time_s", "label", "confidence", "reference_label"}
    total = sum(float(first[f"p_{name}"]) for name in "NSVFQ")
    assert total == pytest.approx(1.0, abs=1e-3)
    assert float(first["confidence"]) == pytest.approx(float(first[f"p_{first['label']}"]))


def test_it_writes_a_results_csv_line_per_row(api, upload):
    rows, labels = window216_rows("208", seconds=60.0, limit=12)
    recording = upload({"beats.csv": rows_csv(rows, labels)})
    table = list(
        csv.DictReader(
            io.StringIO(api.get(f"/api/recordings/{recording.pk}/results.csv").content.decode())
        )
    )
    assert [int(line["row"]) for line in table] == list(range(1, 13))
    assert [line["reference_label"] for line in table] == labels


def test_it_draws_a_strip_png_with_a_beats_saliency(api, upload, record_208):
    recording = upload(record_208)
    url = f"/api/recordings/{recording.pk}/strip.png"
    plain = api.get(url, {"start_s": "10", "length_s": "8"}, HTTP_ACCEPT="image/png")
    assert plain.status_code == 200 and plain["Content-Type"] == "image/png"
    assert plain.content[:8] == PNG_MAGIC
    beat = recording.beats.filter(sample__gte=12 * 360).order_by("index").first()
    window = {"start_s": "10", "length_s": "8"}  # the same strip, with the beat explained
    explained = api.get(url, {**window, "beat": beat.index + 1}, HTTP_ACCEPT="image/png")
    assert explained.status_code == 200 and explained.content[:8] == PNG_MAGIC
    # the heat overlay changes the plot itself, not only a caption: compare below the title
    plain_pixels = matplotlib.image.imread(io.BytesIO(plain.content), format="png")
    explained_pixels = matplotlib.image.imread(io.BytesIO(explained.content), format="png")
    assert plain_pixels.shape == explained_pixels.shape
    below_title = slice(plain_pixels.shape[0] // 8, None)
    changed = np.abs(explained_pixels[below_title] - plain_pixels[below_title]).max(axis=2) > 0.05
    assert changed.mean() > 0.002
    bad = api.get(url, {"length_s": "600"})
    assert bad.status_code == 400 and "length_s must be between" in bad.json()["detail"]
    missing = api.get(url, {"beat": "99999"})
    assert missing.status_code == 400 and "beat 99999 does not exist" in missing.json()["detail"]


def test_it_gives_a_beats_saliency_as_data(api, upload, record_208):
    recording = upload(record_208)
    beat = recording.beats.order_by("index")[5]
    response = api.get(f"/api/recordings/{recording.pk}/beats/6/saliency/")
    assert response.status_code == 200
    data = response.json()
    values = np.array(data["values"])
    assert values.min() >= 0.0 and values.max() == pytest.approx(1.0)
    assert data["start"] <= beat.sample < data["start"] + len(values)
    assert data["fs"] == 360.0
    again = api.get(f"/api/recordings/{recording.pk}/beats/6/saliency/").json()
    assert again == data  # deterministic


def test_an_uploads_saliency_is_the_whole_recordings(api, upload, record_208):
    """Read around the beat only, the map is still the one of the whole recording, which the
    upload's labels came from."""
    recording = upload(record_208)
    peaks = np.array(recording.beats.order_by("index").values_list("sample", flat=True))
    last = len(peaks) - 1
    data = api.get(f"/api/recordings/{recording.pk}/beats/{last + 1}/saliency/").json()
    whole = beat_saliency(recording_signal_mv(recording), 360.0, peaks, last)
    assert data == whole
    assert data["label"] == recording.beats.get(index=last).label


def test_it_lists_beats_and_the_analysis_through_the_api(api, upload, record_208):
    recording = upload(record_208)
    beats = api.get(f"/api/recordings/{recording.pk}/beats/", {"limit": 5}).json()
    assert beats["count"] == recording.beats.count() and len(beats["results"]) == 5
    assert beats["results"][0]["number"] == 1
    # an upload's beats are final: only a live recording's newest beats are provisional
    assert not any(beat["provisional"] for beat in beats["results"])
    analysis = api.get(f"/api/recordings/{recording.pk}/analysis/").json()
    assert analysis["analysis_status"] == "done"
    assert analysis["analysed_lead"] == "MLII"
    assert analysis["analysis_summary"]["n_beats"] == beats["count"]
    assert len(analysis["episodes"]) == recording.episodes.count()


def test_analysing_again_replaces_the_results_without_duplicates(upload, record_208):
    recording = upload(record_208)
    before = list(recording.beats.order_by("index").values_list("sample", "label"))
    assert analyze_recording(recording.pk)["status"] == "done"  # done: left as it is
    assert analyze_recording(recording.pk, force=True)["status"] == "done"
    after = list(recording.beats.order_by("index").values_list("sample", "label"))
    assert after == before
    assert Beat.objects.filter(recording=recording).count() == len(before)


def test_a_failed_analysis_is_marked_with_its_error_and_stores_nothing(patient):
    # samples 2500-2999 are missing: a batch analysis cannot run on a signal with a hole
    recording = pending_csv_upload(patient, first_samples=(0, 3000))
    result = analyze_recording(recording.pk)
    recording.refresh_from_db()
    assert result["status"] == recording.analysis_status == AnalysisStatus.FAILED
    assert "samples 2500-2999 are missing" in recording.analysis_error
    assert not Beat.objects.exists() and not Episode.objects.exists()
    assert recording.analysis_summary == {}


def test_the_results_page_shows_counts_beats_the_strip_and_agreement(api, upload, record_208):
    recording = upload(record_208)
    page = api.get(f"/recordings/{recording.pk}/", {"beat": "3"}).content.decode()
    assert 'id="class-counts"' in page and 'id="beat-table"' in page
    assert f"/api/recordings/{recording.pk}/strip.png?" in page and "beat=3" in page
    assert 'id="confusion"' in page and "MLII" in page
    assert "Research software, not a medical device" in page


def test_the_results_page_says_rows_have_no_rhythm_context(api, upload):
    rows, labels = window216_rows("208", seconds=60.0, limit=8)
    recording = upload({"beats.csv": rows_csv(rows, labels)})
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert "no heart rate and no rhythm episodes" in page
    assert 'id="episodes"' not in page and 'id="confusion"' in page


def test_the_upload_page_stores_and_opens_the_results(
    api, patient, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            f"/patients/{patient.pk}/upload/",
            {"files": files_payload({"strip.csv": signal_csv(20.0)}), "fs_hz": "250"},
        )
    recording = Recording.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/recordings/{recording.pk}/"
    assert api.get(response["Location"]).status_code == 200
    patient_page = api.get(f"/patients/{patient.pk}/").content.decode()
    assert f'href="/recordings/{recording.pk}/"' in patient_page


def test_a_queue_that_cannot_take_the_task_marks_the_analysis_failed(
    api, patient, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    from monitoring import tasks

    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.analyze_recording_task, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, {"strip.csv": signal_csv(20.0)}, fs_hz="250")
    assert response.status_code == 201  # the upload itself is stored
    recording = Recording.objects.get()
    assert recording.analysis_status == AnalysisStatus.FAILED
    assert "could not queue the analysis (OperationalError)" in recording.analysis_error
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert "could not queue the analysis (OperationalError)" in page
    # the broker's own message names its address: in the log, not on the page
    assert "127.0.0.1:6379" not in page and "127.0.0.1:6379" not in recording.analysis_error


def test_analyse_again_on_the_page_replaces_the_results(api, upload):
    recording = upload({"strip.csv": signal_csv(20.0)}, fs_hz="250")
    before = list(recording.beats.values_list("sample", flat=True))
    response = api.post(f"/recordings/{recording.pk}/analyze/")
    assert response.status_code == 302 and response["Location"] == f"/recordings/{recording.pk}/"
    recording.refresh_from_db()
    assert recording.analysis_status == AnalysisStatus.DONE
    assert list(recording.beats.values_list("sample", flat=True)) == before
    assert api.get(f"/recordings/{recording.pk}/analyze/").status_code == 405


def test_numpy_numbers_from_the_pipeline_are_stored_as_plain_json():
    from monitoring.analysis import _jsonable

    value = {"n": np.int64(3), "hr": np.float32(61.5), "rr": np.array([0.8, 0.9]), "ok": True}
    assert _jsonable(value) == {"n": 3, "hr": 61.5, "rr": [0.8, 0.9], "ok": True}
