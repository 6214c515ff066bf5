"""Late chunks of a recording that a newer session replaced, on the live pages.

A device that starts a new session (a reboot, a move, a 409 "new_session") may still deliver
chunks of its old one: a request in flight, a buffer sent late. Ingest stores them in the old
recording, which stays closed (docs/device-protocol.md), and the patient's group gets their
samples like any others, tagged with the old recording's id. The pages draw only the newest
recording they have heard of (ids grow: a new session's recording has a larger id than the one
it replaced): live.js and station.js drop samples, waves and statuses of an older one. The
first test checks the messages that rule relies on; the browser tests that the pages keep it
(the trace neither reset nor drawn over, the recording line and the signal unchanged).
"""

import json
import time

import pytest
from channels.db import database_sync_to_async

from monitoring import live
from monitoring.models import Recording
from tests.chromium import log_in, wait_for
from tests.test_daphne import daphne_process, daphne_server  # noqa: F401 (fixtures)
from tests.test_device_ingest import make_chunk
from tests.test_live import connect, deliver, drain
from tests.test_live_browser import (  # noqa: F401 (fixtures)
    canvas_png,
    eager_daphne,
    module_service_env,
)
from tests.test_live_socket_browser import HALF_OPEN_SOCKETS_JS, wait_for_backlog

pytestmark = pytest.mark.django_db(transaction=True)

FS_HZ = 250
OLD_SESSION, NEW_SESSION = "0dd5e551", "4e115e55"


def second(session: str, index: int):
    """One second of a session's random samples: seq ``index``, from sample ``index`` x 250."""
    return make_chunk(seq=index, n=FS_HZ, session=session)


@pytest.mark.asyncio
async def test_a_late_chunk_of_a_replaced_recording_comes_tagged_with_its_older_id(
    clinician, patient, device, eager_celery
):
    for index in range(3):
        await database_sync_to_async(deliver)(device.pk, second(OLD_SESSION, index))
    patient_stream, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    station, _, _ = await connect("/ws/station/", clinician)
    await drain(patient_stream)
    await drain(station)

    # the device starts anew, then the old session's 4th second arrives (sent before the
    # restart, or buffered): it is stored, in the old recording, which stays closed
    await database_sync_to_async(deliver)(device.pk, second(NEW_SESSION, 0))
    await database_sync_to_async(deliver)(device.pk, second(OLD_SESSION, 3))
    old = await database_sync_to_async(Recording.objects.get)(session=OLD_SESSION)
    new = await database_sync_to_async(Recording.objects.get)(session=NEW_SESSION)
    assert (old.status, old.end_sample) == (Recording.Status.CLOSED, 4 * FS_HZ)
    assert old.pk < new.pk  # what the pages' rule rests on

    samples = [m for m in await drain(patient_stream, quiet_s=1.0) if m["type"] == "samples"]
    waves = [m for m in await drain(station, quiet_s=1.0) if m["type"] == "wave"]
    await patient_stream.disconnect()
    await station.disconnect()
    # in the order they came, each tagged with its recording: the pages drop the old one's
    assert [(m["recording"], m["first_sample"]) for m in samples] == [
        (new.pk, 0),
        (old.pk, 3 * FS_HZ),
    ]
    assert [m["recording"] for m in waves] == [new.pk, old.pk]
    # the patient's current recording, as a page opened now hears it, is the new one
    current = await database_sync_to_async(live.current_recording)(patient.pk)
    assert current.pk == new.pk
    reopened, _, _ = await connect(f"/ws/patients/{patient.pk}/", clinician)
    backlog = await drain(reopened)
    await reopened.disconnect()
    assert backlog[0]["type"] == "hello" and backlog[0]["recording"]["id"] == new.pk
    assert {m["recording"] for m in backlog if m["type"] in ("samples", "status")} == {new.pk}


# --- The pages, in Chromium -------------------------------------------------------------


def samples(recording: int, first_sample: int, values_mv: list[float]) -> dict:
    return {
        "type": "samples",
        "recording": recording,
        "first_sample": first_sample,
        "fs_hz": FS_HZ,
        "samples_mv": values_mv,
        "sent_at": time.time(),
    }


def sawtooth_mv(n: int) -> list[float]:
    """A trace with some shape: 0 to 1 mV ramps, a quarter of a second each."""
    return [round((i % 62) / 62, 3) for i in range(n)]


def hand_to_page(driver, path_part: str, message: dict) -> None:
    """Hand the page's socket for ``path_part`` a message as if the server had sent it."""
    # the path read outside the filter's callback: inside it, arguments[1] is the array index
    driver.execute_script(
        "var part = arguments[1];"
        "var entry = window.__sockets.filter(function (s) {"
        "  return s.url.indexOf(part) >= 0; }).pop();"
        "entry.socket.dispatchEvent(new MessageEvent('message', {data: arguments[0]}));",
        json.dumps(message),
        path_part,
    )


def settled_png(driver, selector: str) -> str:
    """The canvas once the page has drawn what it was given (it draws on animation frames)."""
    time.sleep(0.5)
    return canvas_png(driver, selector)


@pytest.mark.services
def test_the_pages_draw_no_late_chunk_of_a_replaced_recording(
    browser,
    eager_daphne,  # noqa: F811
    clinician,
    patient,
    device,
):
    from django.db import transaction

    from monitoring.ingest import ingest_chunk

    # the old session, then the new one: the hello names the new recording
    for chunk in (second(OLD_SESSION, 0), second(NEW_SESSION, 0)):
        with transaction.atomic():
            ingest_chunk(device, chunk)
    old = Recording.objects.get(session=OLD_SESSION)
    new = Recording.objects.get(session=NEW_SESSION)
    log_in(browser, eager_daphne, "clinician", "pw-clinician-1")
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HALF_OPEN_SOCKETS_JS}
    )

    # the live view: 8 s of the new recording after its stored second, then a late second of
    # the old one that lies inside the visible sweep (sample 5 s): it must not be drawn there,
    # nor restart the trace
    browser.get(f"{eager_daphne}/patients/{patient.pk}/live/")
    wait_for(browser, lambda d: d.find_element("id", "live-connection").text == "connected")
    # the server's hello (it names the lead) and backlog first: handled after the samples on
    # a loaded machine, the hello rewrote the recording line after the test had read it, and
    # the backlog's samples drew over the trace. (The page's own HTML already names the lead.)
    wait_for_backlog(browser, "/ws/patients/")
    hand_to_page(browser, "/ws/patients/", samples(new.pk, FS_HZ, sawtooth_mv(8 * FS_HZ)))
    info = browser.find_element("id", "recording-info").text
    assert info == f"#{new.pk} · 250 Hz · lead II · live", info
    before = settled_png(browser, "#live-ecg")
    hand_to_page(browser, "/ws/patients/", samples(old.pk, 5 * FS_HZ, [3.0] * FS_HZ))
    assert settled_png(browser, "#live-ecg") == before
    assert browser.find_element("id", "recording-info").text == info
    # nor does its last round's status ("ended": closed) say the patient has no signal
    hand_to_page(
        browser,
        "/ws/patients/",
        {"type": "status", "recording": old.pk, "signal": "ended", "hr_bpm": None},
    )
    assert not browser.find_element("id", "signal-state").is_displayed()
    assert browser.find_element("id", "recording-info").text == info

    # the station: the same for the tile's decimated wave (50 Hz)
    browser.get(f"{eager_daphne}/station/")
    wait_for(browser, lambda d: d.find_element("id", "station-connection").text == "connected")
    wait_for_backlog(browser, "/ws/station/")  # the hello, the stored second's wave, a status
    tile = f"#tile-{patient.pk}"
    wave = {"type": "wave", "patient": patient.pk, "fs_hz": 50.0, "sent_at": time.time()}
    # 5 s after the stored second (50 samples at 50 Hz)
    hand_to_page(
        browser,
        "/ws/station/",
        {**wave, "recording": new.pk, "first_sample": 50, "samples_mv": sawtooth_mv(250)},
    )
    before = settled_png(browser, f"{tile} canvas.wave")
    late = {**wave, "recording": old.pk, "first_sample": 150, "samples_mv": [3.0] * 50}
    hand_to_page(browser, "/ws/station/", late)
    assert settled_png(browser, f"{tile} canvas.wave") == before
    hand_to_page(
        browser,
        "/ws/station/",
        {"type": "status", "patient": patient.pk, "recording": old.pk, "signal": "ended"},
    )
    assert not browser.find_element("css selector", f"{tile} .signal-badge").is_displayed()
