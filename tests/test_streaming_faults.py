"""Faults of the streaming analysis, on real processes: a Celery worker killed in the middle
of an analysis, and Redis going down while devices keep posting.

Both need the real services of the test run (PostgreSQL or SQLite shared with the child
processes, Redis). Workers get a queue of their own (``CELERY_QUEUE``) and run the periodic
sweep in-process (``-B``) every second, so nothing else in the test run takes their tasks.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from inference.analysis import analyze_signal
from monitoring.models import Beat, Recording, SampleChunk
from monitoring.protocol import Chunk, encode_binary_chunk
from tests.conftest import free_port, services_required, start_process, stop_process, wait_until
from tests.test_daphne import http_ok
from tests.test_streaming_analysis import MITDB_BASELINE, MITDB_GAIN, mitdb_adc

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def mitdb_folder():
    from tests.inference.conftest import physionet_folder

    return physionet_folder("mitdb", "100")


def stream_env(service_env: dict, queue: str, **extra) -> dict:
    env = dict(service_env)
    env.update(
        CELERY_QUEUE=queue,
        STREAM_SWEEP_S="1",
        STREAM_STALE_S="3",
        STREAM_MAX_ROUND_S="10",
        DEVICE_GAP_WAIT_S="5",
        OMP_NUM_THREADS="1",
    )
    env.update(extra)
    return env


def start_worker(env: dict, log_path, queue: str, wait: bool = True) -> subprocess.Popen:
    """A worker with its beat on ``queue``; with ``wait=False`` it is left starting (call
    :func:`wait_for_worker`), so that another process can start meanwhile."""
    process = start_process(
        [
            "celery",
            "-A",
            "cardiospike",
            "worker",
            "-B",
            "--pool=solo",
            f"--queues={queue}",
            f"--hostname={queue}-{uuid.uuid4().hex[:4]}@%h",
            f"--schedule={log_path.with_suffix('.beat')}",
            "--without-gossip",
            "--without-mingle",
            "--loglevel=INFO",
        ],
        env,
        log_path,
    )
    process.log_path = log_path
    if wait:
        wait_for_worker(process)
    return process


def wait_for_worker(process: subprocess.Popen) -> None:
    wait_until(
        lambda: "ready." in process.log_path.read_text(errors="replace"),
        timeout_s=60,
        what="the Celery worker to start",
        process=process,
        log_path=process.log_path,
    )


# what a worker logs (--loglevel=INFO) when it takes an analysis task off the queue
TOOK_ANALYSIS = re.compile(r"analyze_stream_task\[[0-9a-f-]+\] received")


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its children (read from /proc), children first."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            children.append(int(stat.parent.name))
    for child in children:
        kill_tree(child)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def offline_peaks_and_labels(adc: np.ndarray, fs_hz: float):
    result = analyze_signal((adc.astype(np.float64) - MITDB_BASELINE) / MITDB_GAIN, fs_hz)
    return result.r_peaks, list(result.labels)


def assert_beats_match(recording_id: int, adc: np.ndarray, fs_hz: float) -> None:
    rows = list(Beat.objects.filter(recording_id=recording_id).order_by("index"))
    assert [row.index for row in rows] == list(range(len(rows)))  # none duplicated or lost
    peaks, labels = offline_peaks_and_labels(adc, fs_hz)
    samples = np.array([row.sample for row in rows])
    assert len(samples) == len(peaks) > 50
    assert np.max(np.abs(samples - peaks)) <= 1
    assert [row.label for row in rows] == labels


def test_a_worker_killed_mid_analysis_is_taken_over_and_nothing_is_lost_or_doubled(
    service_env, redis_url, mitdb_folder, device, tmp_path
):
    """5 minutes of record 208 wait in the database; two workers on the same queue start
    together; the one that takes the analysis is killed with SIGKILL part-way, and the
    other's sweep takes the stale claim over (while the claim was live, it left it alone).

    Thirty rounds of STREAM_MAX_ROUND_S (10 s): the kill comes as soon as the first round has
    committed, well before the last (checked below); the record's ventricular beats start in
    its first minute."""
    adc, fs_hz = mitdb_adc(mitdb_folder, "208", seconds=300)
    recording = Recording.objects.create(
        patient=device.patient,
        device=device,
        session="killed01",
        sampling_rate_hz=fs_hz,
        gain_adc_per_mv=MITDB_GAIN,
        baseline_adc=MITDB_BASELINE,
        lead_names=["MLII"],
        status=Recording.Status.CLOSED,
        closed_by=Recording.ClosedBy.DEVICE,
    )
    chunk_frames = round(fs_hz)
    SampleChunk.objects.bulk_create(
        SampleChunk.from_samples(recording, seq, start, adc[start : start + chunk_frames])
        for seq, start in enumerate(range(0, len(adc), chunk_frames))
    )
    Recording.objects.filter(pk=recording.pk).update(
        end_sample=len(adc), stored_samples=len(adc), next_seq=-(-len(adc) // chunk_frames)
    )

    queue = f"stream-{uuid.uuid4().hex[:8]}"
    env = stream_env(service_env, queue)
    # side by side: each takes seconds to import the project
    workers = [start_worker(env, tmp_path / f"worker-{n}.log", queue, wait=False) for n in (1, 2)]
    try:
        for worker in workers:
            wait_for_worker(worker)

        def cursor() -> int:
            return Recording.objects.get(pk=recording.pk).analysis_cursor

        wait_until(lambda: cursor() > 0, 60, "a worker to start the analysis", workers[0])
        analysing = [w for w in workers if TOOK_ANALYSIS.search(w.log_path.read_text())]
        assert len(analysing) == 1, "one worker, and only one, took the analysis"
        first = analysing[0]
        kill_tree(first.pid)  # -B forks beat as a child; it must not outlive the dead worker
        first.wait(timeout=10)
        at_kill = cursor()
        assert 0 < at_kill < len(adc), "the kill must land in the middle of the analysis"

        second = next(w for w in workers if w is not first)
        wait_until(
            lambda: Recording.objects.filter(
                pk=recording.pk, analysis_cursor=len(adc), stream_state__isnull=True
            ).exists(),
            timeout_s=120,
            what="the other worker to finish the analysis",
            process=second,
            log_path=second.log_path,
        )
    finally:
        for worker in workers:
            stop_process(worker)
    assert_beats_match(recording.pk, adc, fs_hz)


# --- Redis down ---------------------------------------------------------------------------


def start_redis(port: int, log_path) -> subprocess.Popen:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed: the Redis-down test starts a Redis of its own"
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    log = open(log_path, "ab")  # noqa: SIM115 (closed by stop_redis)
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.log_file = log
    wait_until(
        lambda: b"Ready to accept connections" in log_path.read_bytes(),
        timeout_s=20,
        what="a private redis-server",
        process=process,
        log_path=log_path,
    )
    return process


def post_chunk(base: str, token: str, chunk: Chunk) -> int:
    request = urllib.request.Request(  # noqa: S310 (a local test server)
        f"http://{base}/api/device/v1/chunks/",
        data=encode_binary_chunk(chunk),
        headers={
            "Authorization": f"Device {token}",
            "Content-Type": "application/vnd.cardiospike.chunk",
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_devices_keep_uploading_while_redis_is_down_and_the_analysis_catches_up(
    service_env, redis_url, mitdb_folder, device, device_token, tmp_path
):
    redis_port = free_port()
    redis_log = tmp_path / "redis.log"
    redis = start_redis(redis_port, redis_log)
    queue = f"stream-{uuid.uuid4().hex[:8]}"
    env = stream_env(service_env, queue, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0")
    port = free_port()
    base = f"127.0.0.1:{port}"
    daphne_log = tmp_path / "daphne.log"
    daphne = start_process(
        ["daphne", "-b", "127.0.0.1", "-p", str(port), "cardiospike.asgi:application"],
        env,
        daphne_log,
    )
    worker = None
    try:
        # both start side by side: each takes seconds to import the project
        worker = start_worker(env, tmp_path / "worker.log", queue, wait=False)
        wait_until(lambda: http_ok(f"http://{base}/health"), 60, "daphne", daphne, daphne_log)
        wait_for_worker(worker)

        adc, fs_hz = mitdb_adc(mitdb_folder, "100", seconds=90)
        frames = round(fs_hz)
        chunks = [
            Chunk(
                seq=seq,
                first_sample=start,
                fs_hz=fs_hz,
                gain_adc_per_mv=MITDB_GAIN,
                baseline_adc=MITDB_BASELINE,
                n_channels=1,
                samples=adc[start : start + frames, np.newaxis],
                session="0000beef",
            )
            for seq, start in enumerate(range(0, len(adc), frames))
        ]
        third = len(chunks) // 3
        assert [post_chunk(base, device_token, c) for c in chunks[:third]] == [201] * third
        recording = Recording.objects.get(device=device, session="0000beef")

        def cursor() -> int:
            return Recording.objects.get(pk=recording.pk).analysis_cursor

        wait_until(lambda: cursor() > 0, 60, "the analysis to start", worker)

        # Redis goes away: devices keep posting, and every chunk is stored
        redis.terminate()
        redis.wait(timeout=10)
        redis.log_file.close()
        started = time.monotonic()
        statuses = [post_chunk(base, device_token, c) for c in chunks[third : 2 * third]]
        seconds_per_chunk = (time.monotonic() - started) / third
        assert statuses == [201] * third
        assert SampleChunk.objects.filter(recording=recording).count() == 2 * third
        stuck_at = cursor()
        assert stuck_at <= chunks[2 * third].first_sample
        assert seconds_per_chunk < 1.0, "ingest must not wait on the broker"

        # Redis comes back (empty: it keeps nothing on disk); no more chunks are needed for
        # the sweep to find the lagging cursor and queue the analysis
        redis = start_redis(redis_port, redis_log)
        wait_until(
            lambda: cursor() == chunks[2 * third - 1].end_sample,
            timeout_s=90,
            what="the analysis to catch up after Redis came back",
            process=worker,
            log_path=tmp_path / "worker.log",
        )
        assert cursor() > stuck_at

        for chunk in chunks[2 * third :]:
            assert post_chunk(base, device_token, chunk) == 201
        closing = urllib.request.Request(  # noqa: S310
            f"http://{base}/api/device/v1/recordings/close/",
            data=json.dumps({"session": "0000beef"}).encode(),
            headers={"Authorization": f"Device {device_token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(closing, timeout=10) as response:  # noqa: S310
            assert response.status == 200
        wait_until(
            lambda: Recording.objects.filter(
                pk=recording.pk, analysis_cursor=len(adc), stream_state__isnull=True
            ).exists(),
            timeout_s=60,
            what="the analysis to finish the closed recording",
            process=worker,
            log_path=tmp_path / "worker.log",
        )
        assert_beats_match(recording.pk, adc, fs_hz)
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(daphne)
        if redis.poll() is None:
            redis.terminate()
            redis.wait(timeout=10)
        redis.log_file.close()
