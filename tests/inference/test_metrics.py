import numpy as np
import pytest

from inference.metrics import binary_metrics, roc_auc, roc_curve


def test_it_counts_the_confusion_matrix_and_derived_rates():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4])
    metrics = binary_metrics(labels, scores)
    assert metrics["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 2}
    assert metrics["sensitivity"] == pytest.approx(2 / 3)
    assert metrics["specificity"] == pytest.approx(3 / 4)
    assert metrics["ppv"] == pytest.approx(2 / 3)
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    assert metrics["f1"] == pytest.approx(2 / 3)


def test_it_computes_roc_auc_as_the_rank_statistic():
    labels = np.array([1, 1, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4])
    # 0.9 outscores all 4 negatives, 0.6 three of them, 0.2 one: 8 of the 12 pairs
    assert roc_auc(labels, scores) == pytest.approx(8 / 12)
    assert roc_auc([0, 1], [0.2, 0.8]) == 1.0
    assert roc_auc([0, 1], [0.8, 0.2]) == 0.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.1, 0.2]))


def test_it_matches_the_area_under_its_own_roc_curve(rng):
    labels = rng.integers(0, 2, 300)
    scores = labels * 0.3 + rng.random(300)
    fpr, tpr = roc_curve(labels, scores)
    assert np.trapezoid(tpr, fpr) == pytest.approx(roc_auc(labels, scores), abs=1e-9)
