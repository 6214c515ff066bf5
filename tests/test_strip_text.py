"""Text in a strip PNG is drawn as written: a lead name from an uploaded WFDB header such as
"$\\foo$" made matplotlib parse a formula, raise, and answer the strip with a 500 (found by an
exploratory security test; "$\\sqrt{x}$" was typeset as a formula, which a PNG test
cannot see)."""

import numpy as np
import pytest

from monitoring.models import AnalysisStatus, SampleChunk

pytestmark = pytest.mark.django_db


def test_a_lead_name_with_dollar_signs_draws_as_text(client, clinician, recording):
    recording.lead_names = ["$\\foo$"]
    recording.analysis_status = AnalysisStatus.DONE  # strip.png draws analysed recordings
    recording.save()
    rng = np.random.default_rng(0)
    SampleChunk.from_samples(recording, 0, 0, rng.integers(-300, 300, 2500).astype(np.int16)).save()
    client.force_login(clinician)
    for url in ("range.png?start_s=0&length_s=8", "strip.png?start_s=0&length_s=8"):
        response = client.get(f"/api/recordings/{recording.pk}/{url}")
        assert response.status_code == 200, (url, response.content[:300])
        assert response["Content-Type"] == "image/png"
        assert response.content.startswith(b"\x89PNG")
