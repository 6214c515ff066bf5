"""An upload analysed by a real Celery worker (Redis broker), queued when the upload commits."""

import time

import pytest

from monitoring import tasks
from monitoring.models import AnalysisStatus, Recording
from tests import test_celery_worker
from tests.upload_helpers import api_upload, signal_csv

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

worker = test_celery_worker.worker  # a real Celery worker on a queue of its own


def test_a_worker_analyses_an_upload_after_it_commits(
    worker, client, clinician, patient, monkeypatch
):
    queue, log_path = worker
    # Route the task to this test's own worker; what runs there is the real task.
    monkeypatch.setattr(
        tasks.analyze_recording_task,
        "delay",
        lambda *args, **kwargs: tasks.analyze_recording_task.apply_async(
            args=args, kwargs=kwargs, queue=queue
        ),
    )
    client.force_login(clinician)
    response = api_upload(client, patient.pk, {"strip.csv": signal_csv(30.0)}, fs_hz="250")
    assert response.status_code == 201
    recording_id = response.json()["id"]

    deadline = time.monotonic() + 120
    recording = Recording.objects.get(pk=recording_id)
    while recording.analysis_status == AnalysisStatus.PENDING and time.monotonic() < deadline:
        time.sleep(0.1)
        recording.refresh_from_db()
    assert recording.analysis_status == AnalysisStatus.DONE, (
        recording.analysis_error or log_path.read_text(errors="replace")[-3000:]
    )
    assert recording.beats.count() == recording.analysis_summary["n_beats"] > 25
    assert "analyze_recording_task" in log_path.read_text(errors="replace")
