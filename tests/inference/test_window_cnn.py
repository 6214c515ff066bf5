import numpy as np
import pytest
import torch

from inference.models import SeedCNN, count_parameters, prepare_windows


def test_it_builds_the_seed_architecture_exactly():
    model = SeedCNN()
    conv1, relu1, pool1, conv2, relu2, pool2 = model.features
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size) == (1, 32, (7,))
    assert (conv2.in_channels, conv2.out_channels, conv2.kernel_size) == (32, 64, (5,))
    assert isinstance(relu1, torch.nn.ReLU) and isinstance(relu2, torch.nn.ReLU)
    assert pool1.kernel_size == pool2.kernel_size == 2
    _, fc1, _, fc2 = model.classifier
    assert (fc1.in_features, fc1.out_features) == (64 * 121, 128)
    assert (fc2.in_features, fc2.out_features) == (128, 2)
    # 256 + 10,304 + 991,360 + 258
    assert count_parameters(model) == 1_002_178


def test_it_maps_a_batch_of_500_sample_windows_to_two_logits():
    model = SeedCNN().eval()
    features = model.features(torch.zeros(3, 1, 500))
    assert features.shape == (3, 64, 121)
    assert model(torch.zeros(3, 500)).shape == (3, 2)


def test_it_prepares_windows_the_same_way_at_any_rate():
    t = np.arange(720) / 360.0
    window_360 = np.sin(2 * np.pi * 1.2 * t) + 0.3 * np.sin(2 * np.pi * 9 * t)
    t250 = np.arange(500) / 250.0
    window_250 = np.sin(2 * np.pi * 1.2 * t250) + 0.3 * np.sin(2 * np.pi * 9 * t250)
    prepared = prepare_windows(np.stack([window_360]), fs=360.0)
    direct = prepare_windows(window_250, fs=250.0)
    assert prepared.shape == direct.shape == (1, 500)
    assert prepared.dtype == np.float32
    assert prepared.min() == 0.0 and prepared.max() == 1.0
    assert np.abs(prepared - direct)[0, 25:-25].max() < 0.05


def test_it_pads_a_short_window_at_the_end():
    prepared = prepare_windows(np.linspace(-1, 1, 300), fs=250.0)
    assert prepared.shape == (1, 500)


def test_it_refuses_windows_with_nan():
    window = np.zeros(500)
    window[10] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        prepare_windows(window)
