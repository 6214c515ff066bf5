"""A stream of chunks through saved states, for the QRS detector's exactness tests."""

import numpy as np

from inference.qrs import StreamingQrsDetector


def streamed_beats(
    ecg_mv,
    fs_hz: float,
    sizes: list[int],
    restore_every: int | None = 3,
    saved_states: list[dict] | None = None,
) -> np.ndarray:
    """The beats of ``ecg_mv`` pushed in chunks of ``sizes`` (in turn), the detector rebuilt
    from its ``state_dict()`` every ``restore_every`` chunks (as a worker resumes a stream;
    None: never), then flushed: what a stream gives, to compare with ``detect_qrs``. Each
    saved state is appended to ``saved_states`` when given, for a test to look into."""
    detector = StreamingQrsDetector(fs_hz)
    found, start, index = [], 0, 0
    while start < len(ecg_mv):
        size = sizes[index % len(sizes)]
        found.append(detector.push(ecg_mv[start : start + size]))
        start, index = start + size, index + 1
        if restore_every and index % restore_every == 0:
            state = detector.state_dict()
            if saved_states is not None:
                saved_states.append(state)
            detector = StreamingQrsDetector.from_state_dict(state)
    found.append(detector.flush())
    return np.concatenate(found)
