"""An asystole is seen while it goes on, in a live stream (the pause alarm, the live status).

A beat is emitted (labelled, final) only once its next beat is known, so during an asystole
the last beat before it never was, and the episodes, read only up to the last emitted beat,
found the pause only when the beats came back: 90 s of flat line showed HR 72 and "Regular"
in green, and the critical pause alarm came after it ("Pause 88.8 s > 3.0 s"), or never when
the beats did not come back. Pauses are now read from the positions of every beat the QRS
detector has found, emitted or not, up to where it can place no more
(``StreamingAnalyzer.beat_positions_final_through``).
"""

import numpy as np
import pytest
import wfdb

from inference.analysis import analyze_signal
from inference.rhythm import RhythmConfig, episodes_from_beats
from inference.streaming import StreamingAnalyzer
from inference.synthetic import _render

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PAUSE_S = RhythmConfig().pause_s  # 3 s, the patients' default limit too
HR_BPM = 72.0
# How soon after the last R peak a 3-s pause must be known: the limit, plus up to about
# 4.5 s for the QRS detector to rule out a beat (0.4 s on an exactly flat line; its noise
# keeps candidates that search-back might still take for 4 s), plus the push's length.
KNOWN_WITHIN_S = 8.0


def sinus_flat_sinus(sinus_s, flat_s, after_s, fs_hz, noise_uv=0.0, seed=1):
    """Sinus rhythm at HR_BPM for ``sinus_s``, a flat line (0 mV, leads on, with ``noise_uv``
    of white noise) for ``flat_s``, sinus again for ``after_s``, rounded to 5-uV ADC steps;
    (signal in mV, time of the last R peak before the flat line in s)."""
    rr_s = 60.0 / HR_BPM
    before = list(np.arange(0.3, sinus_s, rr_s))
    resume_s = sinus_s + flat_s
    after = list(np.arange(resume_s + 0.3, resume_s + after_s, rr_s))
    end_s = resume_s + after_s
    times_s = before + after
    signal_mv, _ = _render(
        times_s, ["N"] * len(times_s), end_s, fs_hz, [], None, np.random.default_rng(seed)
    )
    signal_mv += np.random.default_rng(seed + 1).normal(0.0, noise_uv / 1000.0, len(signal_mv))
    return np.round(signal_mv * 200.0) / 200.0, before[-1]


def stream_pauses(analyzer, emitted, labels):
    """The pauses a caller finds now: emitted beats with their labels, the pending ones
    unlabelled, up to where every beat's position is known."""
    fs_hz = analyzer.fs_hz
    episodes = episodes_from_beats(
        np.asarray(emitted, dtype=np.float64) / fs_hz,
        labels,
        None,
        analyzer.beat_positions_final_through / fs_hz,
        unlabelled_s=analyzer.pending_beat_samples / fs_hz,
    )
    return [episode for episode in episodes if episode.kind == "PAUSE"]


# --- the analyzer (inference) --------------------------------------------------------------


def test_beats_without_a_class_yet_end_and_begin_pauses_only():
    """``unlabelled_s``: beats whose position is known but not their class (a stream's
    pending beats). They move the pause's start; they make no rate or VT episode."""
    times_s = np.arange(1.0, 20.0, 0.8)  # sinus, labelled
    labels = ["N"] * len(times_s)
    pending_s = times_s[-1] + 0.4 * np.arange(1, 6)  # five fast beats, class not known yet

    def pauses(episodes):
        return [(e.start_s, e.end_s, e.details.get("open")) for e in episodes if e.kind == "PAUSE"]

    with_pending = episodes_from_beats(times_s, labels, None, 30.0, unlabelled_s=pending_s)
    assert pauses(with_pending) == [(pytest.approx(pending_s[-1]), 30.0, "end")]
    assert [e.kind for e in with_pending] == ["PAUSE"]  # no VT from beats without a class
    without = episodes_from_beats(times_s, labels, None, 30.0)
    assert pauses(without) == [(pytest.approx(times_s[-1]), 30.0, "end")]
    # up to 22.6 s: 3.2 s after the last labelled beat, but 1.2 s after the last beat
    assert episodes_from_beats(times_s, labels, None, 22.6, unlabelled_s=pending_s) == []
    with pytest.raises(ValueError, match="unlabelled_s"):
        episodes_from_beats(times_s, labels, None, 30.0, unlabelled_s=[5.0])  # not after
    with pytest.raises(ValueError, match="unlabelled_s"):
        episodes_from_beats(times_s, labels, None, 30.0, unlabelled_s=[[21.0]])
    with pytest.raises(ValueError, match="duration_s"):
        episodes_from_beats(times_s, labels, None, 20.0, unlabelled_s=pending_s)


@pytest.mark.parametrize(
    ("sinus_s", "noise_uv", "fs_hz"),
    [(25.0, 0.0, 250.0), (25.0, 20.0, 360.0), (60.0, 0.0, 360.0), (60.0, 20.0, 250.0)],
    ids=["fewer-than-32-beats", "fewer-than-32-beats-noisy", "60s-sinus", "60s-sinus-noisy"],
)
def test_the_analyzer_knows_an_ongoing_pause_within_seconds(sinus_s, noise_uv, fs_hz):
    """Sinus, then a flat line that never ends, in 0.5-s pushes with state round trips: the
    open pause is there within KNOWN_WITHIN_S of the last R peak, and no pause before it.
    (25 s at 72 bpm is 30 beats: the first 32 wait for each other, so none is emitted at all
    before the flat line.)"""
    signal_mv, last_beat_s = sinus_flat_sinus(sinus_s, 60.0, 0.0, fs_hz, noise_uv)
    analyzer = StreamingAnalyzer(fs_hz)
    emitted, labels = [], []
    step = round(0.5 * fs_hz)
    known_at_s = None
    for start in range(0, len(signal_mv), step):
        update = analyzer.push(signal_mv[start : start + step])
        emitted += update.beat_samples.tolist()
        labels += update.beat_labels
        analyzer = StreamingAnalyzer.from_bytes(analyzer.to_bytes())
        pauses = stream_pauses(analyzer, emitted, labels)
        now_s = analyzer.n_samples_pushed / fs_hz
        if now_s < last_beat_s + PAUSE_S:
            assert pauses == [], f"a pause during sinus rhythm at {now_s:.1f} s"
            assert analyzer.beatless_s() < PAUSE_S
        elif pauses and known_at_s is None:
            known_at_s = now_s
            (pause,) = pauses
            assert pause.details["open"] == "end"
            assert pause.start_s == pytest.approx(last_beat_s, abs=0.05)
            assert pause.details["duration_s"] >= PAUSE_S
            assert analyzer.beatless_s() >= PAUSE_S
    assert known_at_s is not None, "the asystole was never seen"
    assert known_at_s - last_beat_s <= KNOWN_WITHIN_S
    # ... and it goes on to the end (less the detector's lag), still open
    (pause,) = stream_pauses(analyzer, emitted, labels)
    assert pause.details["open"] == "end"
    assert pause.end_s > len(signal_mv) / fs_hz - 5.0


def test_a_stream_with_an_asystole_still_equals_one_offline_pass():
    """The pending beats are positions only: the beats, labels and episodes once finished
    are the offline pass's, the pause between the two sinus stretches included."""
    fs_hz = 250.0
    signal_mv, last_beat_s = sinus_flat_sinus(40.0, 20.0, 30.0, fs_hz, noise_uv=20.0)
    analyzer = StreamingAnalyzer(fs_hz)
    updates = []
    step = round(0.7 * fs_hz)
    for start in range(0, len(signal_mv), step):
        updates.append(analyzer.push(signal_mv[start : start + step]))
    updates.append(analyzer.finish())
    assert len(analyzer.pending_beat_samples) == 0
    assert analyzer.beat_positions_final_through == analyzer.beats_final_through == len(signal_mv)
    offline = analyze_signal(signal_mv, fs_hz)
    samples = np.concatenate([update.beat_samples for update in updates])
    labels = [label for update in updates for label in update.beat_labels]
    np.testing.assert_array_equal(samples, offline.r_peaks)
    assert labels == list(offline.labels)
    vf = np.concatenate([update.vf_probabilities for update in updates])
    streamed = episodes_from_beats(
        samples / fs_hz,
        labels,
        vf,
        len(signal_mv) / fs_hz,
        p_wave=np.concatenate([update.beat_p_wave for update in updates]),
    )
    assert streamed == offline.episodes
    pauses = [episode for episode in streamed if episode.kind == "PAUSE"]
    assert len(pauses) == 1 and pauses[0].start_s == pytest.approx(last_beat_s, abs=0.05)


@pytest.mark.parametrize("record", ["201", "203"])
def test_beat_positions_final_through_bounds_every_beat_still_to_come(record):
    """Every R peak before the frontier is known when it is reported (emitted or pending),
    every one found later lies at or after it: on MIT-BIH DS1 records whose search-back
    takes candidates after the last beat (a frontier that forgot them failed here), at
    three rates, in random pushes with state round trips."""
    from tests.inference.conftest import physionet_folder

    folder = physionet_folder("mitdb", record)
    from inference.signal import resample

    ecg_360 = wfdb.rdrecord(str(folder / record), sampto=360 * 180).p_signal[:, 0]
    rng = np.random.default_rng(int(record))
    for fs_hz in (360.0, 250.0, 128.0):
        ecg = ecg_360 if fs_hz == 360.0 else resample(ecg_360, 360.0, fs_hz)
        analyzer = StreamingAnalyzer(fs_hz)
        emitted, reports = [], []
        start, lags_s = 0, []
        while start < len(ecg):
            n = int(np.exp(rng.uniform(0.0, np.log(3.0 * fs_hz))))
            emitted += analyzer.push(ecg[start : start + n]).beat_samples.tolist()
            start += n
            if rng.random() < 0.1:
                analyzer = StreamingAnalyzer.from_bytes(analyzer.to_bytes())
            frontier = analyzer.beat_positions_final_through
            assert analyzer.beats_final_through <= frontier <= analyzer.n_samples_pushed
            known = emitted + analyzer.pending_beat_samples.tolist()
            assert known == sorted(set(known))
            reports.append((known, frontier))
            lags_s.append((analyzer.n_samples_pushed - frontier) / fs_hz)
        emitted += analyzer.finish().beat_samples.tolist()
        for known, frontier in reports:
            assert [sample for sample in emitted if sample < frontier] == [
                sample for sample in known if sample < frontier
            ]
        # and it is close behind the signal (beats_final_through trails it by about 6.5 s)
        assert np.median(lags_s) < 1.0


# --- the live analysis (monitoring) --------------------------------------------------------


def one_second_chunks(signal_mv, fs_hz, session="asys0001"):
    """The signal as a device sends it: 1-s chunks of ADC values (200 per mV, baseline 0)."""
    from monitoring.protocol import Chunk

    adc = np.round(signal_mv * 200.0).astype(np.int16)
    n = round(fs_hz)
    return [
        Chunk(
            seq=seq,
            first_sample=start,
            fs_hz=fs_hz,
            gain_adc_per_mv=200.0,
            baseline_adc=0,
            n_channels=1,
            samples=adc[start : start + n, np.newaxis],
            session=session,
        )
        for seq, start in enumerate(range(0, len(adc), n))
    ]


def open_pause_alarm(patient):
    from monitoring.models import Alarm

    return Alarm.objects.filter(patient=patient, kind="PAUSE", resolved_at__isnull=True).first()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("sinus_s", "noise_uv"),
    [(25.0, 0.0), (60.0, 20.0)],
    ids=["25s-sinus-exactly-flat", "60s-sinus-noisy-flat"],
)
def test_an_asystole_raises_the_pause_alarm_and_shows_in_the_status_while_it_lasts(
    device, eager_celery, django_capture_on_commit_callbacks, sinus_s, noise_uv
):
    """The tester's case through the ingest path, in 1-s chunks: sinus, 20 s of flat line
    (the pause is known within KNOWN_WITHIN_S, then checked for the 12 s or more left of it),
    sinus again for 15 s (the return after a flat line was once read as VF within 4 s). While
    the line is still flat: an ongoing PAUSE episode is stored, the critical pause alarm is
    raised and the live status says PAUSE with a heart rate of 0, not the 72 bpm of the beats
    before it. When the beats are back, the pause has ended."""
    from monitoring import live
    from monitoring.models import Recording
    from tests.test_streaming_analysis import deliver

    fs_hz, flat_s = 250.0, 20.0
    signal_mv, last_beat_s = sinus_flat_sinus(sinus_s, flat_s, 15.0, fs_hz, noise_uv)
    resume_s = sinus_s + flat_s
    seen_at_s = None
    for chunk in one_second_chunks(signal_mv, fs_hz):
        deliver(device, chunk, django_capture_on_commit_callbacks)
        now_s = chunk.end_sample / fs_hz
        recording = Recording.objects.get()
        status = live.status_message(recording, device.patient_id)
        ongoing = recording.episodes.filter(kind="PAUSE", details__ongoing=True)
        if now_s < last_beat_s + PAUSE_S:
            assert not ongoing.exists() and open_pause_alarm(device.patient) is None
            if now_s > 15.0:  # enough beats for a rate
                assert status["hr_bpm"] == pytest.approx(HR_BPM, abs=2)
        elif seen_at_s is None and ongoing.exists():
            seen_at_s = now_s
        if seen_at_s is not None and now_s < resume_s:
            # for the rest of the flat line: the pause, its alarm, no stale heart rate
            pause = ongoing.get()
            assert pause.start_s == pytest.approx(last_beat_s, abs=0.05)
            assert pause.details["open"] == "end"
            assert pause.end_s > now_s - KNOWN_WITHIN_S + PAUSE_S
            alarm = open_pause_alarm(device.patient)
            assert alarm is not None and alarm.priority == "critical"
            assert alarm.message.startswith("Pause ") and alarm.message.endswith(" s (>= 3 s)")
            assert status["rhythm"] == "PAUSE"
            assert status["hr_bpm"] == 0
            assert status["signal"] == "live"
        if now_s >= resume_s + 2.0:
            # the first beat after it (at resume_s + 0.3 s) is known: the pause is over at once
            assert not ongoing.exists()
            assert status["rhythm"] != "PAUSE" and status["hr_bpm"] != 0
    assert seen_at_s is not None, "the asystole was not seen while it lasted"
    assert seen_at_s - last_beat_s <= KNOWN_WITHIN_S
    # the beats are back: the pause has ended (its alarm is held for a minute, then resolves)
    recording = Recording.objects.get()
    assert not recording.episodes.filter(kind="PAUSE", details__ongoing=True).exists()
    (pause,) = recording.episodes.filter(kind="PAUSE")
    assert pause.start_s == pytest.approx(last_beat_s, abs=0.05)
    # to the first beat after it (until 2026-12-07 the VF detector read the beats' return
    # after an exactly flat line as VF, 64-68 s in the 25-s case, and clipped the pause there:
    # tests/inference/test_vf_after_flat.py)
    assert resume_s <= pause.end_s <= resume_s + 0.35
    assert not recording.episodes.filter(kind="VF").exists()
    status = live.status_message(recording, device.patient_id)
    assert status["rhythm"] != "PAUSE" and status["hr_bpm"] != 0


@pytest.mark.django_db
def test_the_status_gives_no_stale_heart_rate_during_an_ongoing_pause(recording):
    """Beats at 72 bpm stored, then an ongoing pause after them: the status's heart rate is
    0, not 72, and its rhythm the pause; once the pause is over, the rate of the beats."""
    from monitoring import live
    from monitoring.models import Beat, Episode

    fs_hz = recording.sampling_rate_hz
    samples = np.round((1.0 + np.arange(20) * 60.0 / HR_BPM) * fs_hz).astype(int)
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=int(sample),
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
            p_wave=0.9,
        )
        for index, sample in enumerate(samples)
    )
    recording.analysis_cursor = int(samples[-1]) + round(10 * fs_hz)
    recording.save()
    assert live.status_message(recording, recording.patient_id)["hr_bpm"] == HR_BPM
    last_s = samples[-1] / fs_hz
    pause = Episode.objects.create(
        recording=recording,
        kind="PAUSE",
        start_s=last_s,
        end_s=last_s + 6.0,
        details={"duration_s": 6.0, "open": "end", "ongoing": True},
    )
    status = live.status_message(recording, recording.patient_id)
    assert status["hr_bpm"] == 0 and status["rhythm"] == "PAUSE"
    pause.details = {"duration_s": 6.0}  # over
    pause.save()
    status = live.status_message(recording, recording.patient_id)
    assert status["hr_bpm"] == HR_BPM and status["rhythm"] != "PAUSE"


@pytest.mark.django_db
def test_vf_without_beats_is_seen_as_far_as_the_pause_would_be_and_clips_it(recording):
    """VF in which the QRS detector finds no beat: the last beat before it waits for a next
    beat that does not come, as in an asystole. The VF segments are read as far as the beat
    positions are known, so the VF (not a pause) is ongoing there, and no pause is read in
    it: pauses are clipped out of VF time (docs/rhythm.md). Only the VF segments stored
    count: one not stored yet is not read as "not VF"."""
    from monitoring import streaming
    from monitoring.models import Beat, Prediction

    fs_hz = recording.sampling_rate_hz
    samples = np.round((1.0 + np.arange(24) * 0.8) * fs_hz).astype(int)  # to 19.4 s
    Beat.objects.bulk_create(
        Beat(
            recording=recording,
            index=index,
            sample=int(sample),
            label="N",
            confidence=0.9,
            probabilities={"N": 0.9},
        )
        for index, sample in enumerate(samples[:-1])  # the last one is pending
    )
    segment = round(2.0 * fs_hz)
    n_stored = 13  # VF segments stored: 0-26 s, VF from 20 s
    Prediction.objects.bulk_create(
        Prediction(
            recording=recording,
            model_name=streaming.VF_MODEL_NAME,
            model_version="1",
            window_start=k * segment,
            window_length=segment,
            label="VF" if k >= 10 else "other",
            probabilities={"VF": 0.99 if k >= 10 else 0.01},
        )
        for k in range(n_stored)
    )
    streaming._update_episodes(
        recording,
        0,
        int(samples[-1]),  # every beat before the pending one is final
        finished=False,
        positions_end=round(28.5 * fs_hz),  # no beat since 19.4 s, as far as is known
        pending_samples=samples[-1:],
    )
    stored = {episode.kind: episode for episode in recording.episodes.all()}
    assert set(stored) == {"VF"}, stored
    assert stored["VF"].start_s == 20.0 and stored["VF"].end_s == 26.0
    assert stored["VF"].details["ongoing"] is True
