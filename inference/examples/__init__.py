"""Short real ECG excerpts shipped with CardioSpike for the analyzer page and demos.

The excerpts are 10-second pieces of lead MLII from the MIT-BIH Arrhythmia Database,
resampled to 250 Hz, with their reference beat labels. They are redistributed under the
Open Data Commons Attribution License v1.0 with this attribution:

    Moody GB, Mark RG. The impact of the MIT-BIH Arrhythmia Database. IEEE Eng in Med and
    Biol 20(3):45-50 (2001). Goldberger AL, et al. PhysioBank, PhysioToolkit, and PhysioNet.
    Circulation 101(23):e215-e220 (2000).

Rebuild the file from a MIT-BIH copy with ``python -m inference.examples [--data DIR]``.
"""

import json
from pathlib import Path

EXCERPTS_FILE = Path(__file__).resolve().parent / "mitdb-excerpts.json"
ATTRIBUTION = (
    "MIT-BIH Arrhythmia Database (Moody & Mark 2001; Goldberger et al. 2000, PhysioNet), "
    "ODC Attribution License v1.0"
)

# (record, start in seconds, what a reader sees there). Records 100, 119, 201, 203, 209 and
# 232 are in DS2 or DS1 alike: these are for looking at, not for any reported metric.
EXCERPTS = [
    ("100", 60.0, "Normal sinus rhythm"),
    ("119", 0.0, "Ventricular bigeminy (PVCs)"),
    ("201", 30.0, "Atrial fibrillation"),
    ("203", 44.0, "Ventricular tachycardia run"),
    ("209", 556.0, "Supraventricular tachyarrhythmia"),
    ("232", 0.0, "Sinus bradycardia with atrial premature beats"),
]
EXCERPT_S = 10.0
EXCERPT_FS_HZ = 250.0


def load_excerpts() -> list[dict]:
    """The shipped excerpts: id, record, start_s, description, fs, ecg (mV), beats, labels."""
    return json.loads(EXCERPTS_FILE.read_text())["excerpts"]


def build(data: str | None = None) -> Path:
    """Cut the excerpts from a MIT-BIH copy and write ``mitdb-excerpts.json``."""
    import numpy as np

    from inference.datasets import data_dir
    from inference.datasets.mitdb import load_record

    mitdb = data_dir(data) / "mitdb"
    excerpts = []
    for record_name, start_s, description in EXCERPTS:
        record = load_record(mitdb, record_name).resampled(EXCERPT_FS_HZ)
        start = round(start_s * EXCERPT_FS_HZ)
        end = start + round(EXCERPT_S * EXCERPT_FS_HZ)
        in_span = (record.beat_samples >= start) & (record.beat_samples < end)
        excerpts.append(
            {
                "id": f"mitdb-{record_name}-{int(start_s)}s",
                "record": record_name,
                "start_s": start_s,
                "description": description,
                "fs": EXCERPT_FS_HZ,
                "ecg": [round(float(v), 3) for v in record.signal_mv[start:end]],
                "beats": (record.beat_samples[in_span] - start).tolist(),
                "beat_labels": [
                    symbol
                    for symbol, keep in zip(record.beat_symbols, in_span, strict=True)
                    if keep
                ],
                "rhythms": sorted(
                    {label for s, e, label in record.rhythms if s < end and e > start}
                ),
            }
        )
        print(f"{record_name} at {start_s:g} s: {int(np.sum(in_span))} beats, {description}")
    EXCERPTS_FILE.write_text(
        json.dumps({"attribution": ATTRIBUTION, "excerpts": excerpts}, separators=(",", ":"))
    )
    return EXCERPTS_FILE
