"""``--second-lead``: the beat network's cross-validation experiment with MIT-BIH's other lead.

The tests on a real record use DS1's record 114 (whose first signal is V5, not MLII) and skip,
saying why, when the data are absent.
"""

import argparse

import numpy as np
import pytest
import torch

from inference.beats import BEAT_CLASSES, RR_FEATURES, WINDOW_SAMPLES


def test_it_refuses_the_second_lead_outside_cross_validation_and_beside_the_baselines(capsys):
    from inference.beat_training import main

    with pytest.raises(SystemExit) as refused:
        main(["--second-lead", "--epochs", "1"])
    assert refused.value.code == 2
    assert (
        "--second-lead is a cross-validation experiment; the served classifier reads one lead"
        in capsys.readouterr().err
    )
    for other in (["--model", "hgb"], ["--synthetic-s-p-wave", "donor"]):
        with pytest.raises(SystemExit):
            main(["--cv", "5", "--second-lead", *other])
        assert "--second-lead is for the network" in capsys.readouterr().err


def test_it_reads_the_lead_that_is_not_mlii_and_caches_the_two_variants_apart(mitdb, tmp_path):
    from inference.beat_training import SECOND_LEAD_KEYS, record_features, second_lead_name

    assert second_lead_name(mitdb, "114") == "V5"  # 114's first signal; MLII is its second
    assert second_lead_name(mitdb, "101") == "V1"
    one = record_features(mitdb, "114", tmp_path)
    two = record_features(mitdb, "114", tmp_path, second_lead=True)
    assert len(list(tmp_path.glob("114-*.npz"))) == 2  # one file per variant
    assert not set(SECOND_LEAD_KEYS) & set(one)
    # the MLII features are the same in both; the second lead is a lead of its own
    for key, value in one.items():
        assert np.array_equal(two[key], value, equal_nan=value.dtype.kind == "f"), key
    windows, templates = (two[key] for key in SECOND_LEAD_KEYS)
    assert windows.shape == templates.shape == one["windows"].shape
    assert not np.allclose(windows, one["windows"])
    # read back from the cache, each variant is what it was; the one-lead read is not the
    # two-lead file's (it would carry the second lead's keys)
    again = record_features(mitdb, "114", tmp_path)
    assert set(again) == set(one)
    stored = record_features(mitdb, "114", tmp_path, second_lead=True)
    assert np.array_equal(stored[SECOND_LEAD_KEYS[0]], windows)


def test_augmenting_two_leads_shifts_and_scales_them_together_and_one_lead_as_before():
    from inference.beat_training import RR_COLUMN, augment

    n = 64
    windows = torch.zeros(n, 2, WINDOW_SAMPLES)
    windows[:, 0, 60] = 1.0  # a spike at the R peak, twice as tall in the second lead
    windows[:, 1, 60] = 2.0
    rhythm = torch.ones(n, len(RR_FEATURES))
    out, new_rhythm = augment(windows, rhythm, torch.Generator().manual_seed(0))
    assert out.shape == windows.shape
    # one R peak: both leads moved by the same jitter (the noise is far below the spike)
    assert torch.equal(out[:, 0].argmax(dim=1), out[:, 1].argmax(dim=1))
    assert len(set(out[:, 0].argmax(dim=1).tolist())) > 1  # and the jitter does vary
    # one scale: the leads' peaks keep their ratio, as the amplitude feature does
    peak_0, peak_1 = out[:, 0].amax(dim=1), out[:, 1].amax(dim=1)
    assert torch.allclose(peak_1 / peak_0, torch.full((n,), 2.0), atol=0.15)
    amplitude = new_rhythm[:, RR_COLUMN["amplitude_over_dominant"]]
    assert torch.allclose(amplitude, peak_0, atol=0.1)
    assert amplitude.min() < 0.9 and amplitude.max() > 1.1
    # each lead its own noise
    quiet_0, quiet_1 = out[:, 0, :40], out[:, 1, :40]
    assert not torch.allclose(quiet_0, quiet_1)

    # one lead as (n, 1, samples) draws exactly what the served model's (n, samples) did
    single = torch.randn(n, WINDOW_SAMPLES, generator=torch.Generator().manual_seed(1))
    flat, flat_rhythm = augment(single, rhythm, torch.Generator().manual_seed(2))
    stacked, stacked_rhythm = augment(single.unsqueeze(1), rhythm, torch.Generator().manual_seed(2))
    assert torch.equal(stacked[:, 0], flat) and torch.equal(stacked_rhythm, flat_rhythm)


@pytest.mark.parametrize("difference_channel", [False, True])
def test_the_two_lead_network_scales_each_lead_by_its_own_dominant_beat(difference_channel):
    from inference.beat_training import TwoLeadBeatNet

    torch.manual_seed(0)
    network = TwoLeadBeatNet(difference_channel=difference_channel).eval()
    generator = torch.Generator().manual_seed(0)
    windows = torch.randn(8, 2, WINDOW_SAMPLES, generator=generator)
    templates = torch.randn(8, 2, WINDOW_SAMPLES, generator=generator)
    rhythm = torch.randn(8, len(RR_FEATURES), generator=generator)
    with torch.inference_mode():
        logits = network(windows, templates, rhythm)
        # a second lead recorded with 3 times the gain reads the same
        gain = torch.tensor([1.0, 3.0]).view(1, 2, 1)
        assert torch.allclose(network(windows * gain, templates * gain, rhythm), logits, atol=1e-5)
        # but the second lead's shape is read
        other = windows.clone()
        other[:, 1] = torch.randn(8, WINDOW_SAMPLES, generator=generator)
        assert not torch.allclose(network(other, templates, rhythm), logits)
    assert logits.shape == (8, len(BEAT_CLASSES))


def test_it_cross_validates_the_network_on_two_leads():
    from inference.beat_training import cross_validate, with_second_lead

    rng = np.random.default_rng(0)
    n = 160
    labels = np.where(np.arange(n) % 5 == 0, 2, 0).astype(np.int64)

    def leads():
        return rng.normal(size=(n, WINDOW_SAMPLES)).astype(np.float32)

    data = {
        "windows": leads(),
        "templates": leads(),
        "windows_second_lead": leads(),
        "templates_second_lead": leads(),
        "rhythm": np.ones((n, len(RR_FEATURES)), dtype=np.float32),
        "labels": labels,
        "record": np.repeat(np.array(["a", "b", "c", "d"]), n // 4),
    }
    two = with_second_lead(data)
    assert two["windows"].shape == (n, 2, WINDOW_SAMPLES)
    assert np.array_equal(two["windows"][:, 1], data["windows_second_lead"])
    assert "windows_second_lead" not in two
    args = argparse.Namespace(
        cv=2,
        fold_seed=0,
        model="cnn",
        epochs=2,
        seed=0,
        batch_size=32,
        learning_rate=1e-3,
        weight_decay=1e-4,
        weight_power=0.5,
        f_weight_scale=0.2,
        morphology_dropout=0.3,
        difference_channel=False,
        augment=True,
        synthetic_premature=0.1,
        synthetic_premature_runs=0.05,
        synthetic_s_p_wave="keep",
        p_wave_feature=None,
        fold_s_in_af=False,
        second_lead=True,
    )
    result = cross_validate(two, args)
    assert result["probabilities"].shape == (2, n, len(BEAT_CLASSES))
    assert np.allclose(result["probabilities"].sum(axis=2), 1.0, atol=1e-5)
