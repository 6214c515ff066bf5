"""An upload's results are shown only while its analysis is done, and no analysis stays
pending for ever.

- Queuing an analysis again, and its failure, clear the previous results: the analysis
  endpoint, ``/beats/``, the results CSV and the page never show an old run's results beside
  a pending or failed status.
- A failure shows its class, never the exception's own text (server paths, addresses); the
  log has that.
- A worker killed mid-task loses its task: the periodic sweep fails an analysis pending for
  longer than ``UPLOAD_ANALYSIS_STALE_S``, and the page offers "Analyse again" once it is
  that old. Simulated here without a worker: a queue that takes the task and never runs it.
"""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import analysis, streaming
from monitoring.analysis import analyze_recording, queue_analysis
from monitoring.models import AnalysisStatus, Beat, Episode, Recording
from tests.upload_helpers import (
    api_upload,
    mitdb_folder,
    pending_csv_upload,
    signal_csv,
    wfdb_excerpt,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

SECRET_PATH = "/srv/cardiospike/private/weights/beat-cnn.pt"


@pytest.fixture
def api(client, clinician):
    client.force_login(clinician)
    return client


@pytest.fixture
def analysed(api, patient, tmp_path, django_capture_on_commit_callbacks) -> Recording:
    """A WFDB upload with its .atr, analysed: beats, episodes, summary and agreement."""
    mitdb_folder()
    files = wfdb_excerpt(tmp_path, "208", seconds=30.0)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, files)
    recording = Recording.objects.get(pk=response.json()["id"])
    assert recording.analysis_status == AnalysisStatus.DONE, recording.analysis_error
    assert recording.beats.exists() and recording.analysis_agreement
    assert recording.analysis_summary["n_beats"] == recording.beats.count()
    return recording


@pytest.fixture
def lost_worker(monkeypatch):
    """A queue that takes the analysis task and never runs it: a worker killed mid-task."""
    from monitoring import tasks

    monkeypatch.setattr(tasks.analyze_recording_task, "delay", lambda *args, **kwargs: None)


@pytest.fixture
def failing_analysis(monkeypatch):
    """The analysis raises, with a message naming a server path."""

    def broken(recording):
        raise RuntimeError(f"cannot open {SECRET_PATH}")

    monkeypatch.setattr(analysis, "_analyze_signal", broken)


def assert_no_results(api, recording: Recording, status: str) -> dict:
    """The API and the page show ``status`` and nothing of an earlier run; returns the
    analysis endpoint's answer."""
    body = api.get(f"/api/recordings/{recording.pk}/analysis/").json()
    assert body["analysis_status"] == status
    assert body["analysis_summary"] == {} and body["analysis_agreement"] is None
    assert body["episodes"] == []
    for url in ("beats/", "results.csv"):
        response = api.get(f"/api/recordings/{recording.pk}/{url}")
        assert response.status_code == 409, (url, response.content[:200])
        detail = response.json()["detail"]
        if status == "failed":
            assert detail.startswith("the analysis failed: ")
        else:
            assert "no analysis results yet (analysis pending)" in detail
    assert not Beat.objects.filter(recording=recording).exists()
    assert not Episode.objects.filter(recording=recording).exists()
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert 'id="n-beats"' not in page and 'id="beat-table"' not in page
    assert 'id="confusion"' not in page and 'id="results-csv"' not in page
    return body


# --- No old results beside a new status ---------------------------------------------------


def test_it_shows_no_old_results_after_a_failed_reanalysis(api, analysed, failing_analysis, caplog):
    with caplog.at_level(logging.ERROR, logger="monitoring.analysis"):
        response = api.post(f"/api/recordings/{analysed.pk}/analyze/")
    assert response.status_code == 202
    body = assert_no_results(api, analysed, "failed")
    # the class, not the text: it may name server paths; the log has it all
    assert "RuntimeError" in body["analysis_error"]
    assert SECRET_PATH not in body["analysis_error"]
    beats = api.get(f"/api/recordings/{analysed.pk}/beats/").json()["detail"]
    assert "RuntimeError" in beats and SECRET_PATH not in beats
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    assert 'id="analysis-error"' in page and "RuntimeError" in page and SECRET_PATH not in page
    assert 'id="reanalyze"' in page  # the retry
    assert SECRET_PATH in caplog.text and "Traceback" in caplog.text


def test_a_failure_of_a_direct_run_also_clears_the_old_results(analysed, failing_analysis):
    # a run not queued through queue_analysis (a redelivered task, a shell) clears them too
    result = analyze_recording(analysed.pk, force=True)
    analysed.refresh_from_db()
    assert result["status"] == analysed.analysis_status == AnalysisStatus.FAILED
    assert result["n_beats"] is None
    assert analysed.analysis_summary == {} and analysed.analysis_agreement is None
    assert not analysed.beats.exists() and not analysed.episodes.exists()


def test_it_shows_no_old_results_while_the_new_analysis_is_pending(api, analysed, lost_worker):
    response = api.post(f"/api/recordings/{analysed.pk}/analyze/")
    assert response.status_code == 202 and response.json()["analysis_status"] == "pending"
    assert_no_results(api, analysed, "pending")
    page = api.get(f"/recordings/{analysed.pk}/").content.decode()
    assert 'id="analysis-pending"' in page and 'http-equiv="refresh"' in page
    assert 'id="reanalyze"' not in page  # running: nothing to retry yet


def test_the_analysis_after_a_failure_serves_its_results_again(api, analysed, monkeypatch):
    def broken(recording):
        raise RuntimeError("once")

    original = analysis._analyze_signal
    monkeypatch.setattr(analysis, "_analyze_signal", broken)
    api.post(f"/recordings/{analysed.pk}/analyze/")
    monkeypatch.setattr(analysis, "_analyze_signal", original)
    api.post(f"/recordings/{analysed.pk}/analyze/")
    analysed.refresh_from_db()
    assert analysed.analysis_status == AnalysisStatus.DONE
    beats = api.get(f"/api/recordings/{analysed.pk}/beats/").json()
    assert beats["count"] == analysed.beats.count() == analysed.analysis_summary["n_beats"]


# --- An analysis whose worker died ----------------------------------------------------------


def queued_minutes_ago(recording: Recording, minutes: float) -> None:
    Recording.objects.filter(pk=recording.pk).update(
        analysis_queued_at=timezone.now() - timedelta(minutes=minutes)
    )


def test_the_sweep_fails_an_analysis_left_pending_by_a_lost_worker(
    api, patient, settings, lost_worker
):
    settings.UPLOAD_ANALYSIS_STALE_S = 1800
    stale, fresh = pending_csv_upload(patient), pending_csv_upload(patient)
    for recording in (stale, fresh):
        queue_analysis(recording.pk)  # taken by a worker that never finishes
    queued_minutes_ago(stale, 31)
    queued_minutes_ago(fresh, 29)

    result = streaming.sweep()  # what celery beat (or the server's schedule) runs
    assert result["stale_uploads"] == [stale.pk]
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.analysis_status == AnalysisStatus.FAILED
    assert stale.analysis_error == (
        "it did not finish within 30 minutes; its worker stopped (or its task was lost). "
        "Analyse again."
    )
    assert fresh.analysis_status == AnalysisStatus.PENDING  # still within the limit
    page = api.get(f"/recordings/{stale.pk}/").content.decode()
    assert "did not finish within 30 minutes" in page and 'id="reanalyze"' in page
    assert 'http-equiv="refresh"' not in page
    assert streaming.sweep()["stale_uploads"] == []  # once


def test_an_upload_never_queued_counts_from_its_creation(patient, settings):
    # the server died between storing the upload and queuing its analysis (on commit)
    settings.UPLOAD_ANALYSIS_STALE_S = 60
    recording = pending_csv_upload(patient)
    assert recording.analysis_queued_at is None
    assert analysis.fail_stale_analyses(timezone.now() + timedelta(seconds=30)) == []
    assert analysis.fail_stale_analyses(timezone.now() + timedelta(seconds=90)) == [recording.pk]


def test_the_sweep_leaves_device_recordings_and_finished_analyses_alone(
    patient, recording, settings
):
    settings.UPLOAD_ANALYSIS_STALE_S = 60
    done = pending_csv_upload(patient)
    long_ago = timezone.now() - timedelta(days=1)
    Recording.objects.filter(pk=done.pk).update(
        analysis_status=AnalysisStatus.DONE, analysis_queued_at=long_ago
    )
    Recording.objects.filter(pk=recording.pk).update(  # a device's stream
        analysis_status=AnalysisStatus.PENDING, created_at=long_ago
    )
    assert analysis.fail_stale_analyses() == []


def test_the_page_offers_analyse_again_once_a_pending_analysis_is_stale(
    api, patient, settings, lost_worker
):
    settings.UPLOAD_ANALYSIS_STALE_S = 1800
    recording = pending_csv_upload(patient)
    queue_analysis(recording.pk)
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert 'id="reanalyze"' not in page and 'http-equiv="refresh"' in page

    queued_minutes_ago(recording, 31)  # no sweep has run (celery beat down)
    page = api.get(f"/recordings/{recording.pk}/").content.decode()
    assert 'id="analysis-stale"' in page and "pending for over 30 minutes" in page
    assert 'id="reanalyze"' in page and 'http-equiv="refresh"' not in page


def test_a_worker_that_finishes_after_the_sweep_still_stores_its_result(
    patient, settings, lost_worker
):
    settings.UPLOAD_ANALYSIS_STALE_S = 60
    recording = pending_csv_upload(patient, n_samples=2500)
    queue_analysis(recording.pk)
    queued_minutes_ago(recording, 5)
    assert analysis.fail_stale_analyses() == [recording.pk]
    # only slow, not dead: its result replaces the failure
    assert analyze_recording(recording.pk)["status"] == AnalysisStatus.DONE


def test_a_task_that_kills_its_worker_is_not_delivered_again_for_ever():
    """A decision (docs/upload.md): a killed pool process's task is acknowledged, not
    redelivered, so an analysis that runs out of memory every time cannot loop; the sweep
    above fails it instead, and a person decides whether to run it again."""
    from cardiospike.celery import app

    assert app.conf.task_acks_late is True
    assert not app.conf.task_reject_on_worker_lost


def test_a_message_written_for_users_is_shown_as_it_is(patient):
    # samples 2500-2999 missing: our own check, whose message says what is wrong
    recording = pending_csv_upload(patient, first_samples=(0, 3000))
    analyze_recording(recording.pk)
    recording.refresh_from_db()
    expected = f"recording {recording.pk} has a gap: samples 2500-2999 are missing"
    assert recording.analysis_error == expected


def test_an_analysis_records_when_it_was_queued(api, patient, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_upload(api, patient.pk, {"strip.csv": signal_csv(20.0)}, fs_hz="250")
    recording = Recording.objects.get(pk=response.json()["id"])
    assert recording.analysis_status == AnalysisStatus.DONE
    assert recording.analysis_queued_at is not None
    assert api.get(f"/api/recordings/{recording.pk}/beats/").status_code == 200


# --- "Analyse again" while an analysis is pending -------------------------------------------


@pytest.fixture
def queued_tasks(monkeypatch) -> list:
    """A queue that records the analysis tasks it is given and never runs them."""
    from monitoring import tasks

    taken = []
    monkeypatch.setattr(
        tasks.analyze_recording_task, "delay", lambda *args, **kwargs: taken.append(args)
    )
    return taken


def test_the_api_refuses_a_second_analysis_while_one_is_pending(
    api, patient, settings, queued_tasks
):
    settings.UPLOAD_ANALYSIS_STALE_S = 1800
    recording = pending_csv_upload(patient)
    assert queue_analysis(recording.pk) is True  # the upload's own analysis
    queued_at = Recording.objects.get(pk=recording.pk).analysis_queued_at

    response = api.post(f"/api/recordings/{recording.pk}/analyze/")
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"the analysis of recording {recording.pk} is already pending" in detail
    assert "pending for over 30 minutes" in detail
    assert len(queued_tasks) == 1  # no second run
    recording.refresh_from_db()
    assert recording.analysis_queued_at == queued_at  # and its age is not reset either

    queued_minutes_ago(recording, 31)  # its worker most likely stopped: run it again
    response = api.post(f"/api/recordings/{recording.pk}/analyze/")
    assert response.status_code == 202 and response.json()["analysis_status"] == "pending"
    assert len(queued_tasks) == 2


def test_the_page_says_why_analyse_again_did_nothing_while_one_is_pending(
    api, patient, settings, queued_tasks
):
    settings.UPLOAD_ANALYSIS_STALE_S = 1800
    recording = pending_csv_upload(patient)
    queue_analysis(recording.pk)
    # a second tab, opened before the first click, still shows the button
    response = api.post(f"/recordings/{recording.pk}/analyze/", follow=True)
    assert response.redirect_chain == [(f"/recordings/{recording.pk}/", 302)]
    page = response.content.decode()
    assert "is already pending (queued or running): wait for its results" in page
    assert len(queued_tasks) == 1


def test_analyse_again_is_decided_on_the_row_not_on_an_earlier_read(
    api, analysed, queued_tasks, monkeypatch
):
    """Two clicks at the same moment: both views read the recording as done, and only one
    analysis may be queued. The other click's queuing lands between this view's read and its
    queuing."""
    from monitoring.api import uploads

    read = uploads.visible_recording

    def read_then_other_click(request, pk):
        recording = read(request, pk)
        assert recording.analysis_status == AnalysisStatus.DONE
        assert queue_analysis(pk, force=True) is True  # the other click
        return recording

    monkeypatch.setattr(uploads, "visible_recording", read_then_other_click)
    response = api.post(f"/api/recordings/{analysed.pk}/analyze/")
    assert response.status_code == 409
    assert len(queued_tasks) == 1


def test_the_check_and_the_change_are_one_conditional_update(patient, queued_tasks):
    """Race-free: no read of the status before the write, which two requests could both pass;
    the UPDATE itself says which rows it may change (the database serialises two of them)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    recording = pending_csv_upload(patient)
    with CaptureQueriesContext(connection) as queries:
        assert queue_analysis(recording.pk) is True
        assert queue_analysis(recording.pk, force=True) is False
    on_recording = [
        q["sql"]
        for q in queries.captured_queries
        if 'FROM "monitoring_recording"' in q["sql"] or 'UPDATE "monitoring_recording"' in q["sql"]
    ]
    assert on_recording[0].startswith('UPDATE "monitoring_recording"')
    assert '"analysis_status"' in on_recording[0].split("WHERE", 1)[1]
    refused = [q for q in on_recording if q.startswith('UPDATE "monitoring_recording"')][-1]
    assert '"analysis_queued_at"' in refused.split("WHERE", 1)[1]
    assert len(queued_tasks) == 1


@pytest.mark.django_db(transaction=True)
def test_two_clicks_at_the_same_moment_queue_one_analysis(patient, queued_tasks):
    """On PostgreSQL, with real concurrent transactions: both clicks wait on the row while a
    worker stores its result; once it commits, one queues the analysis and the other is
    refused."""
    import threading

    from django.db import connection, connections, transaction

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite runs one writer at a time")
    recording = pending_csv_upload(patient)
    Recording.objects.filter(pk=recording.pk).update(analysis_status=AnalysisStatus.DONE)
    held, release = threading.Event(), threading.Event()
    results = []

    def worker_storing():  # as analysis._store holds the row
        try:
            with transaction.atomic():
                Recording.objects.select_for_update().get(pk=recording.pk)
                held.set()
                release.wait(60)
        finally:
            connections.close_all()

    def click():
        try:
            results.append(queue_analysis(recording.pk, force=True))
        finally:
            connections.close_all()

    worker = threading.Thread(target=worker_storing)
    worker.start()
    assert held.wait(60)
    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    waiting = 0
    for _ in range(6000):  # until both clicks wait for the row lock (a bound, not a timing)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            waiting = cursor.fetchone()[0]
        if waiting == 2 or len(results) == 2:
            break
        threading.Event().wait(0.01)
    release.set()
    for thread in (worker, *clicks):
        thread.join(60)
    assert sorted(results) == [False, True]
    assert len(queued_tasks) == 1
