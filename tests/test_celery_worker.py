"""A real Celery worker process, on the Redis and the database of the test run."""

import uuid

import numpy as np
import pytest
from kombu.exceptions import EncodeError

from monitoring.models import SampleChunk
from monitoring.tasks import summarize_recording
from tests.conftest import require_redis_url, start_process, stop_process, wait_until

# transaction=True: the worker reads what the test created, so it must be committed
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(module_service_env, tmp_path_factory):
    """A worker consuming a queue of its own, so no other worker can take the test's task;
    one for the module's tests (starting one takes seconds)."""
    require_redis_url()
    queue = f"test-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    process = start_process(
        [
            "celery",
            "-A",
            "cardiospike",
            "worker",
            "--pool=solo",
            f"--queues={queue}",
            f"--hostname={queue}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        module_service_env,
        log_path,
    )
    try:
        wait_until(
            lambda: "ready." in log_path.read_text(errors="replace"),
            timeout_s=60,
            what="the Celery worker to start",
            process=process,
            log_path=log_path,
        )
        yield queue, log_path
    finally:
        stop_process(process)


def test_it_runs_a_task_on_a_real_worker_and_returns_json(worker, recording):
    queue, log_path = worker
    SampleChunk.from_samples(recording, seq=0, first_sample=0, samples=np.zeros(500)).save()
    SampleChunk.from_samples(recording, seq=1, first_sample=750, samples=np.zeros(250)).save()

    result = summarize_recording.apply_async(args=[recording.pk], queue=queue)
    summary = result.get(timeout=60)

    assert summary == {
        "recording": recording.pk,
        "n_chunks": 2,
        "n_samples": 750,
        "first_sample": 0,
        "end_sample": 1000,
        "missing_samples": 250,
        "gaps": [[500, 750]],
        "duration_s": 3.0,
        "analysis_cursor": 0,
    }
    # It really ran in the worker process, not eagerly here.
    assert result.id in log_path.read_text(errors="replace")


def test_it_refuses_task_arguments_that_are_not_json(worker, recording):
    queue, _ = worker
    with pytest.raises(EncodeError):
        summarize_recording.apply_async(args=[recording], queue=queue)
