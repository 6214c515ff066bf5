"""What the pages' "Analysis delayed" rule reads from the server (docs/dashboard.md, "Analysis
delayed"): every status' ``last_sample`` (the analysis cursor) and, on the station, every wave's
``end_sample`` and ``recording_fs_hz`` (where its chunk ends in the recording's own samples, at
the recording's rate), so that a tile can tell how many seconds the analysis is behind the
newest samples it drew although its waves are decimated.

A healthy stream's status reaches the newest wave; a stream whose analysis cannot go on (here
a chunk missing, which the analysis waits for: DEVICE_GAP_WAIT_S) keeps sending waves and no
status, and the lag the rule computes grows with them, as with a stopped worker. The pages
themselves: tests/test_stale_analysis_browser.py.
"""

import pytest

from monitoring.consumers import decimated_rate
from tests.test_device_ingest import make_chunk
from tests.test_live import connect, deliver_all, drain

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250


def lags_at_statuses(messages: list[dict]) -> list[float]:
    """At each status, seconds from its analysed end to the newest wave before it, as
    station.js computes them."""
    newest, lags = None, []
    for message in messages:
        if message["type"] == "wave":
            newest = max(newest or 0, message["end_sample"])
        elif message["type"] == "status" and newest is not None:
            lags.append((newest - message["last_sample"]) / FS_HZ)
    return lags


@pytest.mark.asyncio
async def test_the_station_can_tell_how_far_the_analysis_is_behind_its_waves(
    clinician, patient, device, eager_celery
):
    chunks = [make_chunk(seq=seq, n=FS_HZ, session="1a9c0001") for seq in range(6)]
    station, _, _ = await connect("/ws/station/?since_s=0", clinician)
    await drain(station)

    await deliver_all(device, chunks[:3])
    healthy = await drain(station, quiet_s=1.0)
    waves = [m for m in healthy if m["type"] == "wave"]
    _, wave_hz = decimated_rate(FS_HZ)
    assert len(waves) == 3
    for wave, chunk in zip(waves, chunks, strict=False):
        # the recording's own samples, not the decimated ones the wave carries
        assert wave["end_sample"] == chunk.first_sample + FS_HZ
        assert wave["recording_fs_hz"] == FS_HZ and wave["fs_hz"] == wave_hz
    # analysed as they came: each status reaches the newest wave
    assert lags_at_statuses(healthy) == [0.0, 0.0, 0.0]

    # the fourth second never comes: the analysis waits for it, the waves go on
    await deliver_all(device, chunks[4:])
    stalled = await drain(station, quiet_s=1.0)
    await station.disconnect()
    assert [m["type"] for m in stalled] == ["wave", "wave"]
    analysed_end = [m for m in healthy if m["type"] == "status"][-1]["last_sample"]
    assert (stalled[-1]["end_sample"] - analysed_end) / FS_HZ == 3.0
