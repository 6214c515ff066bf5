"""Synthetic lead II ECG with labelled rhythms and beats, for the demo model and for tests.

Each beat is a sum of Gaussian waves (P, Q, R, S, T) placed on a time axis at its own R time,
the morphology model of McSharry PE, Clifford GD, Tarassenko L, Smith LA. A dynamical model for
generating synthetic electrocardiogram signals. IEEE Trans Biomed Eng 50(3):289-294 (2003),
written beat by beat instead of as a phase oscillator so that premature beats, pauses and
irregular rhythms are exact. RR intervals carry respiratory (0.25 Hz) and Mayer-wave (0.1 Hz)
modulation; the QT interval follows RR (Bazett). Noise models follow the MIT-BIH Noise Stress
Test's kinds: baseline wander, muscle (EMG), electrode motion, plus powerline.

Synthetic ECG is for demos and tests. It is never a substitute for a real-data result.
"""

from dataclasses import dataclass, field

import numpy as np
from scipy import signal as sps

RHYTHMS = ("NSR", "SBR", "STACH", "AFIB", "VT")
WINDOW_KINDS = ("normal", "pvc", "pac", "afib", "vt", "pause", "brady", "tachy")
DEFAULT_HR_BPM = {"NSR": 72.0, "SBR": 48.0, "STACH": 118.0, "AFIB": 95.0, "VT": 170.0}

# Waves of one beat: (centre relative to R in s, amplitude in mV, Gaussian width in s). The
# P and T centres are scaled per beat (PR interval, QT with RR); see _beat_waves.
NORMAL_WAVES = {
    "P": (-0.17, 0.15, 0.022),
    "Q": (-0.028, -0.10, 0.009),
    "R": (0.0, 1.25, 0.010),
    "S": (0.030, -0.28, 0.011),
    "T": (0.27, 0.32, 0.045),
}
# Waves of a beat of sustained ventricular tachycardia (rhythm "VT"), as above: no P wave, a
# wide QRS (about 170 ms from its onset until the R wave is back at the baseline) upright in
# lead II (one focus with an inferior axis, such as an outflow-tract VT) running into a large
# T wave opposite to it. The shipped beat classifier (trained on MIT-BIH) needs these: a
# sustained rhythm is its own dominant beat, so only the beat's shape tells it from a bundle
# branch block, which MIT-BIH calls N. With the isolated PVC's waves (pointing up or down at
# random) 17 one-minute strips of 30 were labelled almost all N, the others 91-96 % V in
# several short VT episodes; with these, 95-100 % V at 150-190 bpm and 128-1000 Hz, with or
# without noise, in one or two VT episodes at 170 bpm (up to five at 150; docs/simulator.md).
VT_WAVES = {
    "R": (-0.01, 1.8, 0.040),
    "S": (0.07, -0.40, 0.035),
    "T": (0.32, -0.70, 0.070),  # its centre is scaled per beat, as QT with RR
}


@dataclass
class NoiseConfig:
    """Noise amplitudes in mV (0 switches a kind off)."""

    baseline_wander: float = 0.0
    muscle: float = 0.0
    powerline: float = 0.0
    powerline_hz: float = 50.0
    electrode_motion: float = 0.0

    @classmethod
    def none(cls) -> "NoiseConfig":
        return cls()

    @classmethod
    def realistic(cls) -> "NoiseConfig":
        """Modest ambulatory noise: a resting patient on a wearable."""
        return cls(baseline_wander=0.15, muscle=0.02, powerline=0.02, electrode_motion=0.05)


@dataclass
class SyntheticECG:
    """A generated strip. ``beats`` are R-peak sample indices; ``rhythms`` are
    ``(start_sample, end_sample, label)`` with labels in RHYTHMS or "PAUSE"."""

    signal_mv: np.ndarray
    fs: float
    beats: np.ndarray
    beat_labels: list[str]
    rhythms: list[tuple[int, int, str]]
    events: list[str] = field(default_factory=list)

    def window_labels(self, window_s: float = 2.0, step_s: float = 2.0) -> np.ndarray:
        """1 (arrhythmia) for windows holding a non-N beat or overlapping a rhythm other
        than NSR (pauses included), else 0: the rule of the MIT-BIH window labels."""
        length = round(window_s * self.fs)
        step = round(step_s * self.fs)
        starts = np.arange(0, len(self.signal_mv) - length + 1, step)
        labels = np.zeros(len(starts), dtype=np.int64)
        abnormal = self.beats[[label != "N" for label in self.beat_labels]]
        for index, start in enumerate(starts):
            end = start + length
            if np.any((abnormal >= start) & (abnormal < end)):
                labels[index] = 1
            for r_start, r_end, label in self.rhythms:
                if label != "NSR" and r_start < end and r_end > start:
                    labels[index] = 1
        return labels


def _check(fs: float, duration_s: float) -> None:
    if not 50.0 <= fs <= 2000.0:
        raise ValueError(f"fs must be between 50 and 2000 Hz, got {fs}")
    if not duration_s > 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")


def _rr_series(
    duration_s: float, hr_bpm: float, rng: np.random.Generator, irregular: bool
) -> np.ndarray:
    """Beat times (s) at a mean rate, with HRV (regular) or AF-like irregularity."""
    mean_rr = 60.0 / hr_bpm
    times, t = [], rng.uniform(0.1, 0.6) * mean_rr
    phase_resp, phase_mayer = rng.uniform(0, 2 * np.pi, 2)
    while t < duration_s:
        times.append(t)
        if irregular:
            # irregularly irregular: independent RRs, CV ~ 0.25
            rr = mean_rr * rng.gamma(16.0, 1 / 16.0)
        else:
            rr = mean_rr * (
                1
                + 0.03 * np.sin(2 * np.pi * 0.25 * t + phase_resp)
                + 0.02 * np.sin(2 * np.pi * 0.1 * t + phase_mayer)
                + rng.normal(0, 0.01)
            )
        t += float(np.clip(rr, 0.25, 3.0))
    return np.asarray(times)


def _beat_waves(
    kind: str,
    rr_s: float,
    rng: np.random.Generator,
    af: bool,
    v_polarity: float = 1.0,
    sustained_vt: bool = False,
) -> list[tuple]:
    """(centre s, amplitude mV, width s) of the waves of one beat. ``v_polarity`` is the
    QRS direction of ventricular beats: one focus per strip, so a VT run is monomorphic.
    ``sustained_vt``: ventricular beats take ``VT_WAVES`` (a strip of rhythm "VT")."""
    jitter = lambda scale=0.05: 1 + rng.normal(0, scale)  # noqa: E731
    qt_scale = np.sqrt(np.clip(rr_s, 0.3, 2.0))  # Bazett: QT ~ sqrt(RR)
    if kind == "V" and sustained_vt:
        waves = []
        for name, (centre, amplitude, width) in VT_WAVES.items():
            if name == "T":
                centre = centre * qt_scale
            waves.append((centre, amplitude * jitter(), width * jitter()))
        return waves
    if kind == "V":
        # ectopic ventricular beat: no P, wide bizarre QRS, T opposite to the QRS
        polarity = v_polarity
        return [
            (-0.01, polarity * 1.5 * jitter(), 0.035 * jitter()),
            (0.06, -polarity * 0.6 * jitter(), 0.035 * jitter()),
            (0.30 * qt_scale, -polarity * 0.45 * jitter(), 0.07 * jitter()),
        ]
    waves = []
    for name, (centre, amplitude, width) in NORMAL_WAVES.items():
        if name == "P":
            if af:
                continue  # no organised atrial activity
            if kind == "S":
                # ectopic atrial focus: earlier, smaller, often inverted P
                centre, amplitude, width = -0.13, -0.09, 0.018
        if name == "T":
            centre = centre * qt_scale
        waves.append((centre * jitter(0.03), amplitude * jitter(), width * jitter(0.04)))
    return waves


def _noise(n: int, fs: float, config: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    noise = np.zeros(n)
    if config.baseline_wander:
        for hz in (rng.uniform(0.15, 0.3), rng.uniform(0.05, 0.12)):
            noise += config.baseline_wander * 0.7 * np.sin(2 * np.pi * hz * t + rng.uniform(0, 6.3))
    if config.muscle:
        high = min(150.0, 0.45 * fs)
        sos = sps.butter(4, [20.0, high], btype="bandpass", fs=fs, output="sos")
        emg = sps.sosfilt(sos, rng.normal(size=n))
        noise += config.muscle * emg / (np.std(emg) + 1e-12)
    if config.powerline and config.powerline_hz < fs / 2:
        noise += config.powerline * np.sin(
            2 * np.pi * config.powerline_hz * t + rng.uniform(0, 6.3)
        )
    if config.electrode_motion:
        # sporadic low-frequency bursts, as when the electrode moves on the skin
        sos = sps.butter(2, 3.0, btype="lowpass", fs=fs, output="sos")
        motion = sps.sosfilt(sos, rng.normal(size=n))
        envelope = np.zeros(n)
        for _ in range(max(1, int(n / fs / 8))):
            start = rng.integers(0, n)
            envelope[start : start + int(rng.uniform(0.3, 1.0) * fs)] = 1.0
        noise += config.electrode_motion * 3 * envelope * motion / (np.std(motion) + 1e-12)
    return noise


def add_noise_at_snr(clean_mv: np.ndarray, noise_mv: np.ndarray, snr_db: float) -> np.ndarray:
    """``clean + k * noise`` with k set so that 10 log10(P_clean / P_noise) = snr_db."""
    power_clean = np.mean(np.square(clean_mv - np.mean(clean_mv)))
    power_noise = np.mean(np.square(noise_mv - np.mean(noise_mv)))
    if power_noise == 0:
        raise ValueError("noise has no power")
    scale = np.sqrt(power_clean / (power_noise * 10 ** (snr_db / 10)))
    return clean_mv + scale * noise_mv


def _render(
    beat_times: list[float],
    beat_kinds: list[str],
    duration_s: float,
    fs: float,
    af_spans: list[tuple[float, float]],
    noise: NoiseConfig | None,
    rng: np.random.Generator,
    sustained_vt: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The clean-plus-noise signal and the R sample of each beat; ``sustained_vt`` draws the
    ventricular beats with ``VT_WAVES``, upright."""
    n = round(duration_s * fs)
    signal = np.zeros(n)
    support = round(0.6 * fs)  # each wave is drawn only within +-0.6 s of its R
    offsets = np.arange(-support, support + 1) / fs
    r_samples = []
    v_polarity = 1.0 if rng.random() < 0.7 else -1.0  # drawn always: same strips as before
    if sustained_vt:
        v_polarity = 1.0  # VT_WAVES are upright (their comment says why)
    for index, (time_s, kind) in enumerate(zip(beat_times, beat_kinds, strict=True)):
        rr = beat_times[index] - beat_times[index - 1] if index else 0.8
        in_af = any(start <= time_s < end for start, end in af_spans)
        centre = round(time_s * fs)
        lo, hi = max(0, centre - support), min(n, centre + support + 1)
        local = offsets[lo - (centre - support) : len(offsets) - ((centre + support + 1) - hi)]
        waves = _beat_waves(kind, rr, rng, in_af, v_polarity, sustained_vt)
        for wave_centre, amplitude, width in waves:
            signal[lo:hi] += amplitude * np.exp(-0.5 * ((local - wave_centre) / width) ** 2)
        r_samples.append(min(max(centre, 0), n - 1))
    t = np.arange(n) / fs
    for start, end in af_spans:
        # fibrillatory f-waves, 4-9 Hz, ~0.05 mV
        mask = (t >= start) & (t < end)
        hz = rng.uniform(4.5, 8.5)
        wobble = 0.6 * np.sin(2 * np.pi * 0.3 * t[mask] + rng.uniform(0, 6.3))
        signal[mask] += 0.05 * np.sin(2 * np.pi * (hz + wobble) * t[mask] + rng.uniform(0, 6.3))
    # The R peak of the waveform sits at the labelled sample (small wave jitter can move a
    # Gaussian sum's maximum by a sample): snap labels to the local maximum of |signal|.
    snapped = []
    half = max(1, round(0.02 * fs))
    for r in r_samples:
        lo, hi = max(0, r - half), min(n, r + half + 1)
        snapped.append(lo + int(np.argmax(np.abs(signal[lo:hi]))))
    if noise is not None:
        signal = signal + _noise(n, fs, noise, rng)
    return signal, np.asarray(snapped, dtype=np.int64)


def generate(
    duration_s: float,
    fs: float = 250.0,
    rhythm: str = "NSR",
    hr_bpm: float | None = None,
    pvc_per_min: float = 0.0,
    pac_per_min: float = 0.0,
    pauses: int = 0,
    vt_runs: int = 0,
    noise: NoiseConfig | None = None,
    seed: int = 0,
    pause_range_s: tuple[float, float] = (2.5, 3.5),
) -> SyntheticECG:
    """A labelled synthetic lead II strip of ``duration_s`` seconds at ``fs`` Hz.

    ``rhythm`` sets the underlying rhythm; PVCs (compensatory pause), PACs (reset, no full
    compensation), pauses (sinus arrest: R to R uniform in ``pause_range_s``, 2.5-3.5 s by
    default) and VT runs (3-8 wide beats at 140-200 bpm) are inserted at random beats. Same
    arguments and seed, same strip.
    """
    _check(fs, duration_s)
    if rhythm not in RHYTHMS:
        raise ValueError(f"rhythm must be one of {', '.join(RHYTHMS)}; got {rhythm!r}")
    hr_bpm = DEFAULT_HR_BPM[rhythm] if hr_bpm is None else hr_bpm
    if not 20.0 <= hr_bpm <= 300.0:
        raise ValueError(f"hr_bpm must be between 20 and 300, got {hr_bpm}")
    if min(pvc_per_min, pac_per_min, pauses, vt_runs) < 0:
        raise ValueError("event rates and counts must not be negative")
    pause_min_s, pause_max_s = (float(value) for value in pause_range_s)
    if not 0.0 < pause_min_s <= pause_max_s <= 20.0:
        raise ValueError(
            f"pause_range_s must be (low, high) with 0 < low <= high <= 20 s; got {pause_range_s}"
        )
    rng = np.random.default_rng(seed)
    base = _rr_series(duration_s, hr_bpm, rng, irregular=rhythm == "AFIB")
    kinds = ["V" if rhythm == "VT" else "N"] * len(base)
    times = list(base)
    mean_rr = 60.0 / hr_bpm
    n_beats = len(times)
    # choose beats for each event among the inner beats, without overlap
    free = list(range(2, max(2, n_beats - 3)))
    rng.shuffle(free)
    n_pvc = rng.poisson(pvc_per_min * duration_s / 60.0) if pvc_per_min else 0
    n_pac = rng.poisson(pac_per_min * duration_s / 60.0) if pac_per_min else 0
    plan = ["pvc"] * n_pvc + ["pac"] * n_pac + ["pause"] * pauses + ["vt"] * vt_runs
    chosen = {}
    for event in plan:
        while free:
            index = free.pop()
            if all(abs(index - other) > 3 for other in chosen):
                chosen[index] = event
                break
    shift = 0.0
    new_times, new_kinds = [], []
    events = []
    rhythms_s: list[tuple[float, float, str]] = []
    for index, (time_s, kind) in enumerate(zip(times, kinds, strict=True)):
        time_s += shift
        event = chosen.get(index)
        if event == "pvc":
            new_times.append(new_times[-1] + 0.6 * mean_rr)
            new_kinds.append("V")
            events.append("pvc")
            # the sinus beat it pre-empts is blocked and the next one comes on schedule: a
            # full compensatory pause (RR before + RR after = 2 RR)
            continue
        if event == "pac":
            previous = new_times[-1]
            pac = previous + 0.65 * mean_rr
            new_times.append(pac)
            new_kinds.append("S")
            events.append("pac")
            # the sinus node resets: the next beat follows one RR after the PAC
            shift += (pac + mean_rr) - time_s
            new_times.append(pac + mean_rr)
            new_kinds.append(kind)
            continue
        if event == "pause":
            # the same one draw whatever the range: a strip's other events do not move
            gap = rng.uniform(pause_min_s, pause_max_s)
            previous = new_times[-1]
            rhythms_s.append((previous + 1.2 * mean_rr, previous + gap, "PAUSE"))
            shift += (previous + gap) - time_s
            new_times.append(previous + gap)
            new_kinds.append(kind)
            events.append("pause")
            continue
        if event == "vt":
            previous = new_times[-1]
            vt_rr = 60.0 / rng.uniform(140, 200)
            n_run = int(rng.integers(3, 9))
            run = [previous + 0.55 * mean_rr + i * vt_rr for i in range(n_run)]
            new_times.extend(run)
            new_kinds.extend(["V"] * n_run)
            rhythms_s.append((run[0], run[-1] + vt_rr / 2, "VT"))
            events.append("vt")
            resume = run[-1] + mean_rr * 1.1
            shift += resume - time_s
            new_times.append(resume)
            new_kinds.append(kind)
            continue
        new_times.append(time_s)
        new_kinds.append(kind)
    keep = [i for i, t in enumerate(new_times) if 0.05 <= t < duration_s - 0.05]
    new_times = [new_times[i] for i in keep]
    new_kinds = [new_kinds[i] for i in keep]
    af_spans = [(0.0, duration_s)] if rhythm == "AFIB" else []
    signal, beats = _render(
        new_times, new_kinds, duration_s, fs, af_spans, noise, rng, sustained_vt=rhythm == "VT"
    )
    n = len(signal)
    rhythms = [(0, n, rhythm)] if rhythm != "NSR" else [(0, n, "NSR")]
    rhythms += [
        (round(start * fs), min(n, round(end * fs)), label)
        for start, end, label in rhythms_s
        if start < duration_s
    ]
    return SyntheticECG(signal, float(fs), beats, new_kinds, rhythms, events)


def generate_window(
    kind: str,
    fs: float = 250.0,
    duration_s: float = 2.0,
    seed: int = 0,
    noise: NoiseConfig | None = None,
) -> SyntheticECG:
    """A strip of ``duration_s`` (2 s for the window model) that surely shows ``kind``.

    Kinds: normal (sinus 60-100 bpm, N beats only), pvc, pac, afib, vt, pause, brady (< 60
    bpm), tachy (> 100 bpm). Events are placed inside the strip, clear of its edges.
    """
    if kind not in WINDOW_KINDS:
        raise ValueError(f"kind must be one of {', '.join(WINDOW_KINDS)}; got {kind!r}")
    _check(fs, duration_s)
    rng = np.random.default_rng(seed)
    if kind == "afib":
        return generate(duration_s, fs, "AFIB", rng.uniform(80, 130), noise=noise, seed=seed)
    hr = {"brady": rng.uniform(38, 55), "tachy": rng.uniform(105, 150)}.get(
        kind, rng.uniform(60, 95)
    )
    rhythm = {"brady": "SBR", "tachy": "STACH"}.get(kind, "NSR")
    rr = 60.0 / hr
    first = rng.uniform(0.1, 0.35)
    times, kinds = [], []
    t = first
    while t < duration_s:
        times.append(t)
        kinds.append("N")
        t += rr * (1 + rng.normal(0, 0.01))
    rhythms_s: list[tuple[float, float, str]] = []
    events = [] if kind in ("normal", "brady", "tachy") else [kind]
    middle = duration_s / 2
    if kind in ("pvc", "pac"):
        # premature beat near the middle of the strip, the sinus beat before it kept
        before = (
            max(i for i, t in enumerate(times) if t < middle - 0.3 * rr)
            if any(t < middle - 0.3 * rr for t in times)
            else 0
        )
        early = times[before] + (0.6 if kind == "pvc" else 0.65) * rr
        after = times[before] + 2 * rr if kind == "pvc" else early + rr
        times = times[: before + 1] + [early]
        kinds = kinds[: before + 1] + ["V" if kind == "pvc" else "S"]
        t = after
        while t < duration_s:
            times.append(t)
            kinds.append("N")
            t += rr
    elif kind == "vt":
        vt_rr = 60.0 / rng.uniform(150, 200)
        start = times[0] + rr * 0.55
        run = [start + i * vt_rr for i in range(int((duration_s - start - 0.1) / vt_rr) + 1)]
        run = [t for t in run if t < duration_s - 0.05]
        times, kinds = times[:1] + run, ["N"] + ["V"] * len(run)
        rhythms_s.append((run[0], duration_s, "VT"))
    elif kind == "pause":
        times, kinds = times[:1], ["N"]
        rhythms_s.append((times[0] + 0.3, duration_s, "PAUSE"))
    times_kept = [(t, k) for t, k in zip(times, kinds, strict=True) if t < duration_s - 0.05]
    times = [t for t, _ in times_kept]
    kinds = [k for _, k in times_kept]
    signal, beats = _render(times, kinds, duration_s, fs, [], noise, rng)
    n = len(signal)
    rhythms = [(0, n, rhythm)] + [
        (round(s * fs), min(n, round(e * fs)), label) for s, e, label in rhythms_s
    ]
    return SyntheticECG(signal, float(fs), beats, kinds, rhythms, events)


def make_binary_dataset(
    n_normal: int = 150,
    n_arrhythmia: int = 150,
    fs: float = 250.0,
    duration_s: float = 2.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The seed recipe's data: windows of normal sinus rhythm (label 0) and of arrhythmia
    (label 1, the abnormal kinds in turn), with realistic noise of random strength.

    Returns ``(windows float32 (n, round(duration_s * fs)), labels int64)``.
    """
    rng = np.random.default_rng(seed)
    abnormal = [kind for kind in WINDOW_KINDS if kind != "normal"]
    kinds = ["normal"] * n_normal + [abnormal[i % len(abnormal)] for i in range(n_arrhythmia)]
    windows, labels = [], []
    for kind in kinds:
        level = rng.uniform(0.0, 1.5)
        base = NoiseConfig.realistic()
        noise = NoiseConfig(
            baseline_wander=base.baseline_wander * level,
            muscle=base.muscle * level,
            powerline=base.powerline * level,
            powerline_hz=float(rng.choice([50.0, 60.0])),
            electrode_motion=base.electrode_motion * level,
        )
        strip = generate_window(kind, fs, duration_s, int(rng.integers(2**31)), noise)
        label = int(strip.window_labels(duration_s, duration_s)[0])
        if label != (kind != "normal"):
            raise RuntimeError(f"generated {kind} window labelled {label}")  # a generator bug
        windows.append(strip.signal_mv)
        labels.append(label)
    return np.asarray(windows, dtype=np.float32), np.asarray(labels, dtype=np.int64)
