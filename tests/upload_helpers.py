"""Files to upload in the upload tests: real MIT-BIH excerpts, synthetic signals, beat rows.

MIT-BIH excerpts are cut from the PhysioNet MIT-BIH Arrhythmia Database (Moody GB, Mark RG.
The impact of the MIT-BIH Arrhythmia Database. IEEE Eng in Med and Biol 20(3):45-50, 2001;
ODC-By 1.0) at test time and written to a temporary folder; nothing is committed.
"""

from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.aami import aami_class
from inference.datasets import data_dir
from inference.synthetic import generate
from tests.conftest import services_required


def mitdb_folder() -> Path:
    """The MIT-BIH folder of the data folder; without it the test skips (in CI: fails)."""
    try:
        folder = data_dir() / "mitdb"
    except FileNotFoundError as exc:  # no data folder at all (a clone away from ../shared)
        folder, message = None, str(exc)
    else:
        message = f"needs the MIT-BIH Arrhythmia Database in {folder} (CARDIOSPIKE_DATA_DIR)"
    if folder is None or not (folder / "208.hea").exists():
        if services_required():
            pytest.fail(message)
        pytest.skip(message)
    return folder


def wfdb_excerpt(
    folder: Path, record: str = "208", seconds: float = 120.0, with_atr: bool = True
) -> dict[str, bytes]:
    """The first ``seconds`` of a MIT-BIH record as WFDB files (.hea, .dat, .atr) in memory.

    Written with the record's own format (212), gains and baselines, so the upload stores
    the same integers.
    """
    import wfdb

    source = mitdb_folder()
    n = int(seconds * 360)
    original = wfdb.rdrecord(str(source / record), sampto=n, physical=False)
    wfdb.wrsamp(
        record,
        fs=original.fs,
        units=original.units,
        sig_name=original.sig_name,
        d_signal=original.d_signal,
        fmt=original.fmt,
        adc_gain=original.adc_gain,
        baseline=original.baseline,
        write_dir=str(folder),
    )
    names = [f"{record}.hea", f"{record}.dat"]
    if with_atr:
        annotation = wfdb.rdann(str(source / record), "atr", sampto=n - 1)
        wfdb.wrann(
            record,
            "atr",
            annotation.sample,
            np.asarray(annotation.symbol),
            write_dir=str(folder),
            fs=original.fs,
        )
        names.append(f"{record}.atr")
    return {name: (folder / name).read_bytes() for name in names}


def synthetic_wfdb(folder: Path, record: str = "syn", seconds: float = 10.0) -> dict[str, bytes]:
    """A synthetic two-lead WFDB record at 250 Hz (format 16): no data folder needed."""
    import wfdb

    ecg = generate(seconds, fs=250.0, seed=3).signal_mv
    signals = np.stack([ecg, 0.5 * ecg], axis=1)
    wfdb.wrsamp(
        record,
        fs=250,
        units=["mV", "mV"],
        sig_name=["II", "V1"],
        p_signal=signals,
        fmt=["16", "16"],
        adc_gain=[200.0, 200.0],
        baseline=[0, 0],
        write_dir=str(folder),
    )
    return {name: (folder / name).read_bytes() for name in (f"{record}.hea", f"{record}.dat")}


def signal_csv(
    seconds: float = 60.0, fs_hz: float = 250.0, header: bool = True, seed: int = 7
) -> bytes:
    """A synthetic lead II strip with PVCs as a one-column CSV in millivolts."""
    ecg = generate(seconds, fs=fs_hz, pvc_per_min=6.0, seed=seed).signal_mv
    lines = (["ecg_mv"] if header else []) + [f"{value:.4f}" for value in ecg]
    return ("\n".join(lines) + "\n").encode()


def mitdb_beats(record: str = "208", seconds: float = 120.0):
    """Signal (MLII, mV, 360 Hz), reference R peaks and AAMI labels of a MIT-BIH excerpt."""
    import wfdb

    source = mitdb_folder()
    n = int(seconds * 360)
    signal = wfdb.rdrecord(str(source / record), sampto=n, channel_names=["MLII"]).p_signal[:, 0]
    annotation = wfdb.rdann(str(source / record), "atr", sampto=n - 1)
    beats = [
        (int(sample), aami_class(symbol))
        for sample, symbol in zip(annotation.sample, annotation.symbol, strict=True)
        if aami_class(symbol)
    ]
    return signal, beats


def beat_rows_of(layout: str, record: str = "208", seconds: float = 120.0, limit: int = 60):
    """Rows in a seed's layout built from a MIT-BIH excerpt's reference beats
    (``inference.beat_rows.rows_from_record``), and their AAMI labels."""
    from inference.beat_rows import rows_from_record

    signal, beats = mitdb_beats(record, seconds)
    r_peaks = np.array([sample for sample, _ in beats])
    rows = rows_from_record(signal, 360.0, r_peaks, layout)
    return rows[:limit], [label for _, label in beats][:limit]


def window216_rows(record: str = "208", seconds: float = 120.0, limit: int = 60):
    """216-value rows (90 samples before the R peak, 126 after, mV) and their labels."""
    return beat_rows_of("window216", record, seconds, limit)


def kaggle187_rows(record: str = "208", seconds: float = 120.0, limit: int = 60):
    """187-value rows in the Kaggle layout (Kachuee et al. 2018) and their labels."""
    return beat_rows_of("kaggle187", record, seconds, limit)


def rows_csv(rows: np.ndarray, labels: list[str] | None = None, numeric: bool = True) -> bytes:
    """Rows as CSV, optionally with the label as the last column (0-4 or N/S/V/F/Q)."""
    codes = {name: str(i) for i, name in enumerate("NSVFQ")}
    lines = []
    for i, row in enumerate(rows):
        cells = [f"{value:.5f}" for value in row]
        if labels is not None:
            cells.append(codes[labels[i]] if numeric else labels[i])
        lines.append(",".join(cells))
    return ("\n".join(lines) + "\n").encode()


def files_payload(files: dict[str, bytes]) -> list[SimpleUploadedFile]:
    return [SimpleUploadedFile(name, data) for name, data in files.items()]


def pending_csv_upload(patient, first_samples=(0,), n_samples: int = 2500):
    """A stored one-column CSV upload awaiting analysis: zero chunks at ``first_samples``."""
    from monitoring.models import AnalysisStatus, Recording, SampleChunk, UploadFormat

    recording = Recording.objects.create(
        patient=patient,
        source=Recording.Source.UPLOAD,
        source_name="ecg.csv",
        sampling_rate_hz=250.0,
        gain_adc_per_mv=1000.0,
        lead_names=["ECG"],
        upload_format=UploadFormat.CSV_SIGNAL,
        analysis_status=AnalysisStatus.PENDING,
    )
    for seq, first in enumerate(first_samples):
        chunk = np.zeros(n_samples, dtype=np.int16)
        SampleChunk.from_samples(recording, seq, first, chunk).save()
    return recording


def api_upload(client, patient_id: int, files: dict[str, bytes], **fields):
    """POST files to the upload endpoint as a browser or script would (multipart)."""
    return client.post(
        f"/api/patients/{patient_id}/uploads/",
        {"files": files_payload(files), **fields},
    )
