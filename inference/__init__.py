"""CardioSpike's ECG and machine-learning code: plain Python, no Django.

Filters, QRS detection, beat features, synthetic ECG, dataset loaders, PyTorch models,
training, evaluation and the serving predictor live here, so that training, evaluation and
benchmarks run without a web server. ``monitoring`` calls this package, never the reverse.
"""

from inference.registry import WEIGHTS_DIR, list_models

__all__ = ["WEIGHTS_DIR", "list_models"]
