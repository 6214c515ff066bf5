"""Draw docs/img/synthetic-ecg.png: one strip of each synthetic kind on ECG grid paper.

python docs/make_synthetic_figure.py
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from inference.synthetic import NoiseConfig, generate, generate_window  # noqa: E402

FS = 250.0
STRIPS = [
    (
        "Normal sinus rhythm, 72 bpm, ambulatory noise",
        lambda: generate(6, FS, "NSR", seed=2, noise=NoiseConfig.realistic()),
    ),
    (
        "PVCs: wide, no P, T opposite, compensatory pause",
        lambda: generate(6, FS, "NSR", hr_bpm=75, pvc_per_min=25, seed=11),
    ),
    (
        "PACs: premature, abnormal P, narrow QRS",
        lambda: generate(6, FS, "NSR", hr_bpm=70, pac_per_min=25, seed=4),
    ),
    ("Atrial fibrillation: irregular RR, f-waves, no P", lambda: generate(6, FS, "AFIB", seed=3)),
    ("Ventricular tachycardia run", lambda: generate_window("vt", FS, 6.0, seed=8)),
    ("Sinus pause (sinus arrest)", lambda: generate(6, FS, "NSR", pauses=1, seed=5)),
]


def grid(axis, seconds: float, low_mv: float, high_mv: float) -> None:
    """ECG paper: 1 mm = 0.04 s and 0.1 mV; bold lines every 5 mm."""
    for x in np.arange(0, seconds + 1e-9, 0.04):
        major = round(x / 0.04) % 5 == 0
        axis.axvline(x, color="#e8a0a0" if major else "#f6d6d6", lw=0.8 if major else 0.4, zorder=0)
    for y in np.arange(np.floor(low_mv * 10) / 10, high_mv + 1e-9, 0.1):
        major = round(y / 0.1) % 5 == 0
        axis.axhline(y, color="#e8a0a0" if major else "#f6d6d6", lw=0.8 if major else 0.4, zorder=0)


def main() -> None:
    figure, axes = plt.subplots(len(STRIPS), 1, figsize=(12, 2.0 * len(STRIPS)))
    for axis, (title, make) in zip(axes, STRIPS, strict=True):
        strip = make()
        t = np.arange(len(strip.signal_mv)) / FS
        grid(axis, t[-1], -1.0, 2.0)
        axis.plot(t, strip.signal_mv, color="black", lw=0.9)
        for r, label in zip(strip.beats, strip.beat_labels, strict=True):
            if label != "N":
                axis.text(r / FS, 1.75, label, ha="center", color="#b3122e", fontsize=9)
        axis.set(xlim=(0, t[-1]), ylim=(-1.0, 2.0), yticks=[], title=title)
        axis.title.set_fontsize(10)
        axis.tick_params(labelsize=8)
    axes[-1].set_xlabel("seconds (25 mm/s paper: small squares 0.04 s, 0.1 mV)")
    figure.tight_layout()
    output = Path(__file__).resolve().parent / "img" / "synthetic-ecg.png"
    figure.savefig(output, dpi=100)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
