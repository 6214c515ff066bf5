import hashlib

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from monitoring.models import Device, Patient, Recording, SampleChunk

pytestmark = pytest.mark.django_db


def test_it_enforces_unique_recording_and_seq_in_the_database(recording):
    SampleChunk.from_samples(recording, seq=7, first_sample=0, samples=np.arange(10)).save()
    duplicate = SampleChunk.from_samples(recording, seq=7, first_sample=10, samples=np.arange(5))
    with pytest.raises(IntegrityError), transaction.atomic():
        # bulk_create skips model validation: the constraint itself must hold
        SampleChunk.objects.bulk_create([duplicate])
    assert recording.chunks.count() == 1


def test_it_allows_the_same_seq_in_another_recording(recording, patient):
    other = Recording.objects.create(
        patient=patient, sampling_rate_hz=360, gain_adc_per_mv=200, lead_names=["MLII"]
    )
    SampleChunk.from_samples(recording, 0, 0, np.arange(3)).save()
    SampleChunk.from_samples(other, 0, 0, np.arange(3)).save()
    assert SampleChunk.objects.filter(seq=0).count() == 2


@pytest.mark.parametrize("fixture", ["recording", "twelve_lead_recording"])
def test_it_round_trips_chunk_samples_through_the_database(request, rng, fixture):
    recording = request.getfixturevalue(fixture)
    samples = rng.integers(-32768, 32768, size=(250, recording.n_channels))
    SampleChunk.from_samples(recording, seq=0, first_sample=0, samples=samples).save()
    stored = SampleChunk.objects.get(recording=recording)  # fresh from the database
    assert stored.n_samples == 250
    assert len(bytes(stored.data)) == 250 * recording.n_channels * 2
    np.testing.assert_array_equal(stored.samples(), samples)


def test_it_refuses_a_chunk_with_the_wrong_channel_count(twelve_lead_recording):
    with pytest.raises(ValueError, match=r"expected \(n, 12\)"):
        SampleChunk.from_samples(twelve_lead_recording, 0, 0, np.zeros((10, 2), dtype=int))


def test_it_refuses_an_empty_chunk_in_the_database(recording):
    chunk = SampleChunk(recording=recording, seq=0, first_sample=0, n_samples=0, data=b"")
    with pytest.raises(IntegrityError), transaction.atomic():
        chunk.save()


def test_it_requires_one_lead_name_per_channel(patient):
    with pytest.raises(ValidationError, match="2 lead names for 1 channels"):
        Recording.objects.create(
            patient=patient, sampling_rate_hz=250, gain_adc_per_mv=200, lead_names=["I", "II"]
        )
    assert not Recording.objects.exists()


def test_it_converts_adc_units_to_millivolts(patient):
    recording = Recording(
        patient=patient, sampling_rate_hz=360, gain_adc_per_mv=200, baseline_adc=1024
    )
    np.testing.assert_allclose(recording.to_mv(np.array([1024, 1224, 824])), [0.0, 1.0, -1.0])


def test_it_keeps_the_heart_rate_limits_ordered():
    patient = Patient(mrn="X", name="X", hr_low_limit_bpm=130, hr_high_limit_bpm=120)
    with pytest.raises(ValidationError, match="below the high limit"):
        patient.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        patient.save()


def test_it_gives_sensible_default_alarm_limits():
    patient = Patient.objects.create(mrn="Y", name="Y")
    assert (patient.hr_low_limit_bpm, patient.hr_high_limit_bpm) == (50, 120)
    assert patient.pause_limit_s == 3.0


def test_it_stores_only_a_hash_of_the_device_token(device):
    token = device.issue_token()
    device.refresh_from_db()
    assert token.startswith("csd_") and len(token) > 40
    assert device.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in [str(value) for value in device.__dict__.values()]
    assert device.token_hint == token[:8]
    assert Device.objects.authenticate(token) == device


def test_it_forgets_a_rotated_or_revoked_token(device):
    old = device.issue_token()
    new = device.issue_token()
    assert Device.objects.authenticate(old) is None
    assert Device.objects.authenticate(new) == device
    device.is_active = False
    device.save()
    assert Device.objects.authenticate(new) is None
    assert Device.objects.authenticate("") is None
    assert Device.objects.authenticate("not-a-token") is None


def test_a_token_rotation_saves_only_the_token(device):
    # the admin rotates from the device it read; a discharge that unassigned the device since
    # must not be undone by the rest of that older object
    stale = Device.objects.get(pk=device.pk)
    Device.objects.filter(pk=device.pk).update(patient=None)
    token = stale.issue_token()
    device.refresh_from_db()
    assert device.patient is None
    assert Device.objects.authenticate(token) == device


def test_it_scopes_patients_to_their_clinicians(
    clinician, other_clinician, staff_user, patient, other_patient
):
    assert list(Patient.objects.visible_to(clinician)) == [patient]
    assert list(Patient.objects.visible_to(other_clinician)) == [other_patient]
    assert set(Patient.objects.visible_to(staff_user)) == {patient, other_patient}


def test_it_protects_a_patient_with_recordings_from_deletion(recording):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        recording.patient.delete()


def test_a_p_wave_is_stored_empty_when_unknown_and_to_six_decimals():
    from monitoring.models import Beat

    assert Beat.stored_p_wave(float("nan")) is None
    assert Beat.stored_p_wave(np.float32(0.123456789)) == 0.123457
    assert Beat.stored_p_wave(-0.5) == -0.5
