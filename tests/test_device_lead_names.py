"""A device recording's lead names come from its device (``Device.lead_names``, set by staff:
the protocol has no lead field), not from an assumption that one channel is lead II; a channel
count that differs from the names gives ch1..chN (docs/device-protocol.md, Lead names)."""

import io
import logging
import zipfile

import numpy as np
import pytest
import wfdb
from django.core.exceptions import ValidationError
from django.urls import reverse
from rest_framework.test import APIClient

from monitoring.models import Device, Recording, parse_lead_names
from monitoring.protocol import Chunk, encode_json_chunk

pytestmark = pytest.mark.django_db


@pytest.fixture
def device_api(device_token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Device {device_token}")
    return api


def post_chunk(device_api, session="s1", seq=0, n_channels=1, n_frames=250):
    samples = (np.arange(n_frames * n_channels) % 100).reshape(n_frames, n_channels)
    chunk = Chunk(
        seq=seq,
        first_sample=seq * n_frames,
        fs_hz=250.0,
        gain_adc_per_mv=200.0,
        n_channels=n_channels,
        samples=samples.astype(np.int16),
        session=session,
    )
    response = device_api.post(
        "/api/device/v1/chunks/", encode_json_chunk(chunk), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return Recording.objects.get(pk=response.json()["recording"])


def set_lead_names(device, text):
    device.lead_names = text
    device.full_clean()
    device.save()


def exported_names(client, recording, tmp_path) -> tuple[list[str], str]:
    """The WFDB header's signal names and the CSV's header line."""
    response = client.get(f"/api/recordings/{recording.pk}/export.zip?format=wfdb")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        archive.extractall(tmp_path)
    header = wfdb.rdheader(str(tmp_path / f"recording-{recording.pk}"))
    lines = b"".join(client.get(f"/api/recordings/{recording.pk}/export.csv").streaming_content)
    return header.sig_name, lines.decode().splitlines()[0]


def test_a_new_device_is_lead_ii_as_before(device, device_api, client, clinician, tmp_path):
    assert Device.objects.create(serial="NEW-1").lead_names == "II"
    recording = post_chunk(device_api)
    assert recording.lead_names == ["II"]
    client.force_login(clinician)
    assert exported_names(client, recording, tmp_path) == (["II"], "time_s,sample,II_mv,lead_off")


def test_the_device_lead_name_reaches_the_recording_and_both_exports(
    device, device_api, client, clinician, tmp_path
):
    set_lead_names(device, "V2")  # a patch placed on the chest
    recording = post_chunk(device_api)
    assert recording.lead_names == ["V2"]
    client.force_login(clinician)
    assert exported_names(client, recording, tmp_path) == (["V2"], "time_s,sample,V2_mv,lead_off")
    page = client.get(reverse("recording-results", args=[recording.pk])).content.decode()
    assert "<dt>Channels</dt><dd>V2 at 250 Hz</dd>" in page


def test_several_channels_take_their_names_in_order(
    device, device_api, client, clinician, tmp_path
):
    set_lead_names(device, " I ,II,  V1")
    recording = post_chunk(device_api, n_channels=3)
    assert recording.lead_names == ["I", "II", "V1"]
    client.force_login(clinician)
    sig_name, csv_header = exported_names(client, recording, tmp_path)
    assert sig_name == ["I", "II", "V1"]
    assert csv_header == "time_s,sample,I_mv,II_mv,V1_mv,lead_off"


@pytest.mark.parametrize(
    ("lead_names", "n_channels", "expected"),
    [
        ("II", 3, ["ch1", "ch2", "ch3"]),  # the default on a 3-channel board: which is II?
        ("I, II, V1", 1, ["ch1"]),  # named for three, sends one: which one is not known
    ],
)
def test_another_channel_count_falls_back_to_channel_numbers_and_is_logged(
    device, device_api, caplog, lead_names, n_channels, expected
):
    set_lead_names(device, lead_names)
    with caplog.at_level(logging.WARNING, logger="monitoring.ingest"):
        recording = post_chunk(device_api, n_channels=n_channels)
    assert recording.lead_names == expected
    assert f"device DEV-001: lead names {lead_names!r} do not fit its {n_channels}-channel" in (
        caplog.text
    )


def test_an_invalid_stored_value_falls_back_too(device, device_api, caplog):
    Device.objects.filter(pk=device.pk).update(lead_names="I,,V1")  # around the validation
    with caplog.at_level(logging.WARNING, logger="monitoring.ingest"):
        recording = post_chunk(device_api, n_channels=3)
    assert recording.lead_names == ["ch1", "ch2", "ch3"]
    assert "Lead 2 has no name" in caplog.text


def test_a_recording_keeps_its_names_when_the_device_changes(device, device_api):
    set_lead_names(device, "I")
    first = post_chunk(device_api, session="s1", seq=0)
    set_lead_names(device, "V2")  # staff moved the patch
    assert post_chunk(device_api, session="s1", seq=1).pk == first.pk
    first.refresh_from_db()
    assert first.lead_names == ["I"]
    second = post_chunk(device_api, session="s2", seq=0)  # the next session: the new placement
    assert second.pk != first.pk and second.lead_names == ["V2"]


def test_names_that_a_spreadsheet_or_a_wfdb_header_would_misread_are_written_safely(
    device, device_api, client, clinician, tmp_path
):
    set_lead_names(device, "-aVR, Ⅱ")
    recording = post_chunk(device_api, n_channels=2)
    assert recording.lead_names == ["-aVR", "Ⅱ"]
    client.force_login(clinician)
    sig_name, csv_header = exported_names(client, recording, tmp_path)
    assert sig_name == ["-aVR", "II"]  # the WFDB header is ASCII
    assert csv_header == "time_s,sample,'-aVR_mv,Ⅱ_mv,lead_off"  # not a formula


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("II", ["II"]),
        ("I, II, V1", ["I", "II", "V1"]),
        (" MLII ", ["MLII"]),
        ("Ableitung Ⅱ", ["Ableitung Ⅱ"]),
        (",".join(f"L{i}" for i in range(16)), [f"L{i}" for i in range(16)]),
    ],
)
def test_lead_names_are_parsed(text, names):
    assert parse_lead_names(text) == names


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Give the lead of each channel, in channel order, separated by commas"),
        ("  ", "Give the lead of each channel, in channel order, separated by commas"),
        ("I,,V1", "Lead 2 has no name: give one name per channel, separated by commas"),
        ("II,", "Lead 2 has no name"),
        ("a very long lead name", "Lead name 'a very long lead name' has 21 characters; at most"),
        ("V1\tV2", "Lead name 'V1\\tV2' holds a character that is not printable text"),
        ("II, II", "Lead name 'II' is given twice: each channel needs its own name."),
        (",".join(f"L{i}" for i in range(17)), "17 lead names: a device sends at most 16"),
    ],
)
def test_bad_lead_names_are_refused_saying_why(device, text, message):
    with pytest.raises(ValidationError) as error:
        parse_lead_names(text)
    assert message in error.value.messages[0]
    device.lead_names = text
    with pytest.raises(ValidationError) as error:
        device.full_clean()
    # an empty field is refused by Django first ("This field cannot be blank.")
    expected = "This field cannot be blank." if text == "" else message
    assert expected in " ".join(error.value.message_dict["lead_names"])


def test_staff_set_lead_names_in_the_admin(client, staff_user, device):
    client.force_login(staff_user)
    url = reverse("admin:monitoring_device_change", args=[device.pk])
    page = client.get(url).content.decode()
    assert 'name="lead_names"' in page and 'value="II"' in page
    form = {
        "serial": device.serial,
        "label": device.label,
        "patient": device.patient_id,
        "sampling_rate_hz": "250",
        "gain_adc_per_mv": "200",
        "is_active": "on",
    }
    response = client.post(url, {**form, "lead_names": "I,,V1"})
    assert response.status_code == 200  # the form again, with the reason
    assert "Lead 2 has no name" in response.content.decode()
    device.refresh_from_db()
    assert device.lead_names == "II"

    assert client.post(url, {**form, "lead_names": "V2"}).status_code == 302
    device.refresh_from_db()
    assert device.lead_names == "V2"
