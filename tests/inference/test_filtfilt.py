import numpy as np
import pytest
import scipy.signal as sps

from inference.signal import _butter_sos, _sosfiltfilt


@pytest.mark.parametrize("shape", [(500,), (500, 3), (40,), (7,), (2500, 12)])
@pytest.mark.parametrize(
    "design", [(2, (0.5, 40.0), "bandpass", 250.0), (4, (0.5,), "highpass", 360.0)]
)
def test_it_filters_exactly_like_scipy_sosfiltfilt(rng, shape, design):
    sos = _butter_sos(*design)
    signal = rng.normal(size=shape)
    n_taps = 2 * len(sos) + 1
    padlen = min(3 * n_taps, shape[0] - 1)
    expected = sps.sosfiltfilt(sos, signal, axis=0, padlen=padlen)
    np.testing.assert_allclose(_sosfiltfilt(sos, signal), expected, rtol=0, atol=1e-12)
