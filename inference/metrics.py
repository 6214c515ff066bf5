"""Classification metrics, in numpy (no scikit-learn dependency for a handful of formulas)."""

import numpy as np


def binary_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, sensitivity, specificity, +P, F1 and ROC AUC of a binary classifier.

    Parameters
    ----------
    labels : array of 0/1, 1 = positive (arrhythmia)
    scores : predicted probability of the positive class
    threshold : a score >= threshold predicts positive
    """
    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    predicted = (scores >= threshold).astype(int)
    tp = int(np.sum((predicted == 1) & (labels == 1)))
    tn = int(np.sum((predicted == 0) & (labels == 0)))
    fp = int(np.sum((predicted == 1) & (labels == 0)))
    fn = int(np.sum((predicted == 0) & (labels == 1)))
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    return {
        "n": int(len(labels)),
        "n_positive": int(labels.sum()),
        "accuracy": (tp + tn) / len(labels) if len(labels) else float("nan"),
        "sensitivity": sensitivity,
        "specificity": tn / (tn + fp) if tn + fp else float("nan"),
        "ppv": ppv,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan"),
        "roc_auc": roc_auc(labels, scores),
        "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp},
        "threshold": threshold,
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random
    negative (Mann-Whitney U statistic, ties counted half)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks over ties
    _, first_index, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average_rank = first_index + (counts + 1) / 2.0
    ranks[order] = np.repeat(average_rank, counts)
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, for plotting."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")
    hits = labels[order]
    tpr = np.concatenate([[0.0], np.cumsum(hits) / max(hits.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(~hits) / max((~hits).sum(), 1)])
    return fpr, tpr
