import numpy as np
import pytest

from monitoring.models import SampleChunk
from monitoring.recordings import summarize

pytestmark = pytest.mark.django_db


def test_it_summarizes_stored_samples_and_the_gap_between_chunks(recording):
    # chunks arrive out of order; samples 250..499 never arrive
    SampleChunk.from_samples(recording, seq=2, first_sample=500, samples=np.zeros(250)).save()
    SampleChunk.from_samples(recording, seq=0, first_sample=0, samples=np.zeros(250)).save()
    summary = summarize(recording)
    assert summary["n_chunks"] == 2
    assert summary["n_samples"] == 500
    assert summary["end_sample"] == 750
    assert summary["missing_samples"] == 250
    assert summary["gaps"] == [[250, 500]]
    assert summary["duration_s"] == 2.0


def test_it_summarizes_an_empty_recording(recording):
    summary = summarize(recording)
    assert (summary["n_chunks"], summary["n_samples"], summary["missing_samples"]) == (0, 0, 0)
    assert summary["gaps"] == []
