"""What the alarm rules cost to judge a backlog: time and database queries.

    python bench/alarm_backlog.py [--backlogs 30,120,600] [--runs 7] [--hours 1]
                                  [--postgres postgres://postgres@127.0.0.1:5432] [--json FILE]

A long streaming-analysis round (a backlog: a device resending what it buffered while its
network was down, workers that fell behind) is judged by the physiological alarm rules at every
second of its signal (``monitoring/alarms.py``, ``ROUND_REPLAY_STEP_S``; docs/alarms.md), up to
its last ``ROUND_REPLAY_MAX_S`` (600 s). This builds one admitted patient's live device
recording on a fresh database (SQLite in a temporary folder, or with ``--postgres`` a fresh
PostgreSQL database, dropped afterwards) holding ``--hours`` of stored analysis: final beats at
75 bpm, every 10th a V beat (7.5 a minute, under the limit of 10), and a 2-s window verdict
("normal") every 2 s, the patient's window-model alarm switched on so that every rule reads its
rows. Then, for each ``--backlogs`` length, it judges a round of that length ending at the
analysis cursor (``alarms.evaluate_alarms(since_sample=...)``, as ``streaming.py`` calls it
after a round) and reports the median wall time over ``--runs`` and the number of SQL queries
(counted in a run of its own: counting slows the queries it counts). The rhythm is steady and
normal, so nothing is raised or resolved: this is the judging alone. Also a live round (1 s,
judged at its end only) for comparison. Prints a table and writes JSON.
"""

import argparse
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FS_HZ = 250.0
BPM = 75.0
V_EVERY = 10  # every 10th beat a V beat: 7.5 a minute
WINDOW_S = 2.0
LIVE_S = 1.0


def setup_django(database_url: str | None, workdir: Path) -> None:
    """Django on the product's settings, production-like (DEBUG off: no query log kept), on
    ``database_url`` or a SQLite file in ``workdir``; migrated."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "cardiospike.settings"
    os.environ["DEBUG"] = "false"
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    os.environ["ALLOWED_HOSTS"] = "127.0.0.1,localhost"
    # a production start needs e-mail and the site's address; alarm e-mails stay in memory
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ["SITE_URL"] = "http://127.0.0.1"
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["SQLITE_PATH"] = str(workdir / "db.sqlite3")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def build_recording(hours: float):
    """A patient, a device and its live recording with ``hours`` of stored analysis."""
    from django.utils import timezone

    from monitoring.alarms import BEAT_FINAL_LAG_S
    from monitoring.models import Beat, Device, Patient, Prediction, Recording

    patient = Patient.objects.create(
        mrn="BENCH-1", name="Bench Patient", ward="A", bed="1", sustained_arrhythmia_alarm=True
    )
    device = Device.objects.create(serial="BENCH-DEV-1", label="bed 1", patient=patient)
    recording = Recording.objects.create(
        patient=patient,
        device=device,
        sampling_rate_hz=FS_HZ,
        gain_adc_per_mv=200.0,
        n_channels=1,
        lead_names=["II"],
    )
    seconds = hours * 3600.0
    rr = round(60.0 / BPM * FS_HZ)
    n_beats = int(seconds * BPM / 60.0)
    Beat.objects.bulk_create(
        (
            Beat(
                recording=recording,
                index=index,
                sample=(index + 1) * rr,
                label="V" if index % V_EVERY == 0 else "N",
                confidence=0.9,
                probabilities={"N": 0.9},
            )
            for index in range(n_beats)
        ),
        batch_size=2000,
    )
    window = round(WINDOW_S * FS_HZ)
    Prediction.objects.bulk_create(
        (
            Prediction(
                recording=recording,
                model_name="window-cnn-mitdb",
                model_version="1.0.0",
                window_start=number * window,
                window_length=window,
                label="normal",
                probabilities={"normal": 0.9, "arrhythmia": 0.1},
            )
            for number in range(int(seconds / WINDOW_S))
        ),
        batch_size=2000,
    )
    cursor = n_beats * rr + round(BEAT_FINAL_LAG_S * FS_HZ)
    Recording.objects.filter(pk=recording.pk).update(
        analysis_cursor=cursor,
        end_sample=cursor,
        # heard from "tomorrow": the device-offline rule must not fire during the runs
        last_chunk_at=timezone.now() + timedelta(days=1),
    )
    recording.refresh_from_db()
    return recording


def judge(recording, backlog_s: float) -> list:
    from monitoring.alarms import evaluate_alarms

    since = recording.analysis_cursor - round(backlog_s * FS_HZ)
    return evaluate_alarms(recording.pk, since_sample=since)


def measure(recording, backlog_s: float, runs: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitoring.alarms import replay_ends

    if judge(recording, backlog_s):  # also warms up
        raise SystemExit("the steady rhythm raised or resolved an alarm: not judging alone")
    durations = []
    for _ in range(runs):
        started = time.perf_counter()
        judge(recording, backlog_s)
        durations.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        judge(recording, backlog_s)
    median_s = statistics.median(durations)
    since = recording.analysis_cursor - round(backlog_s * FS_HZ)
    return {
        "backlog_s": backlog_s,
        "moments": len(replay_ends(recording, since)) + 1,  # its steps and its end
        "median_s": round(median_s, 5),
        "min_s": round(min(durations), 5),
        "queries": len(queries),
        "ms_per_signal_s": round(1000.0 * median_s / backlog_s, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlogs", default="30,120,600", help="seconds, comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hours", type=float, default=1.0, help="analysis stored before")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--json", default="bench/results/alarm_backlog.json")
    args = parser.parse_args()
    backlogs = [float(value) for value in args.backlogs.split(",")]
    if args.runs < 1 or any(not LIVE_S < value <= 600.0 for value in backlogs):
        raise SystemExit("--runs must be >= 1 and each backlog over 1 s and at most 600 s")

    database = "SQLite"
    with tempfile.TemporaryDirectory(prefix="cardiospike-alarm-bench-") as tmp:
        drop = None
        database_url = None
        if args.postgres:
            import psycopg

            server = args.postgres.rstrip("/")
            name = f"cardiospike_bench_alarms_{os.getpid()}"
            with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{name}"')
            database_url, database = f"{server}/{name}", "PostgreSQL"

            def drop() -> None:
                from django.db import connections

                connections.close_all()
                with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        try:
            setup_django(database_url, Path(tmp))
            recording = build_recording(args.hours)
            results = [measure(recording, value, args.runs) for value in [LIVE_S, *backlogs]]
        finally:
            if drop is not None:
                drop()

    print(
        f"\nJudging a round that ends at the cursor, {args.hours:g} h of analysis stored, "
        f"{database}; median of {args.runs} runs ({os.cpu_count()} cores, "
        f"{platform.python_version()})"
    )
    print("| round | moments judged | median | min | ms per s of signal | SQL queries |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results:
        print(
            f"| {r['backlog_s']:g} s | {r['moments']} | {1000 * r['median_s']:.1f} ms "
            f"| {1000 * r['min_s']:.1f} ms | {r['ms_per_signal_s']:.2f} | {r['queries']} |"
        )
    output = ROOT / args.json
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "alarm_backlog",
                "settings": {k: v for k, v in vars(args).items() if k not in ("json", "postgres")},
                "database": database,
                "cores": os.cpu_count(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
