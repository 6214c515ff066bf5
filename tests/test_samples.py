import numpy as np
import pytest

from monitoring.samples import INT16_MAX, INT16_MIN, decode_int16, encode_int16


@pytest.mark.parametrize("n_channels", [1, 12])
def test_it_round_trips_int16_samples_exactly(rng, n_channels):
    samples = rng.integers(INT16_MIN, INT16_MAX + 1, size=(1000, n_channels), dtype=np.int64)
    samples[0, :] = INT16_MIN  # the extremes must survive too
    samples[1, :] = INT16_MAX
    data = encode_int16(samples)
    assert len(data) == 2 * samples.size
    decoded = decode_int16(data, n_channels)
    assert decoded.dtype == np.int16
    assert decoded.shape == (1000, n_channels)
    np.testing.assert_array_equal(decoded, samples)


def test_it_interleaves_channels_frame_by_frame_little_endian():
    samples = np.array([[1, 2, 3], [256, -1, 4]])
    assert encode_int16(samples) == bytes([1, 0, 2, 0, 3, 0, 0, 1, 0xFF, 0xFF, 4, 0])


def test_it_takes_a_1d_array_as_one_channel():
    np.testing.assert_array_equal(decode_int16(encode_int16([5, -5]), 1), [[5], [-5]])


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([0, 40000], "out of int16 range"),
        ([-40000], "out of int16 range"),
        ([1.5, 2.0], "integer ADC units"),
        ([np.nan, 1.0], "NaN"),
        ([np.inf], "NaN or infinite"),
        ([], "empty"),
        (np.zeros((2, 2, 2)), "1-D or 2-D"),
    ],
)
def test_it_refuses_samples_it_cannot_store_exactly(samples, message):
    with pytest.raises(ValueError, match=message):
        encode_int16(np.asarray(samples))


def test_it_refuses_bytes_that_are_not_whole_frames():
    with pytest.raises(ValueError, match="not a whole number of 12-channel"):
        decode_int16(b"\x00" * 26, 12)
