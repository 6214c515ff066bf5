"""The 12-lead diagnosis page (issue 7): pick a PTB-XL example or upload a 12-lead WFDB record,
see it on ECG grid paper, edit the patient metadata and ask the PTB-XL models.

The page is a shell; diagnosis.js draws the record and calls ``/api/diagnosis/`` (see
monitoring/api/diagnosis.py and docs/diagnosis.md). Login is required as everywhere
(LoginRequiredMiddleware). Research software, not a medical device.
"""

from django.shortcuts import render

from inference.datasets.ptbxl import copy_summary
from inference.ptbxl_models import MAX_TRAINED_AGE_YEARS, best_model_name, load_model
from monitoring.api.diagnosis import load_examples

# The heart axis as the form offers it: PTB-XL's codes and the deviation the models read.
HEART_AXIS_CHOICES = [
    ("", "unknown"),
    ("-2", "ALAD: extreme left axis deviation"),
    ("-1", "LAD: left axis deviation"),
    ("0", "MID: normal axis"),
    ("1", "RAD: right axis deviation"),
    ("2", "ARAD: extreme right axis deviation"),
]

# How the page names the metadata features in its text.
FEATURE_WORDS = {
    "age_years": "age",
    "sex_female": "sex",
    "height_cm": "height",
    "weight_kg": "weight",
    "pacemaker": "pacemaker",
    "device_cs": "device",
    "heart_axis": "heart axis",
}


def word_list(names: list[str]) -> str:
    """["sex_female", "pacemaker", "device_cs"] -> "sex, pacemaker and device"."""
    words = [FEATURE_WORDS[name] for name in names]
    return " and ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


def diagnosis(request):
    examples = load_examples()
    # what the page says about the training data and test fold comes from the card of the
    # model that serves records, so weights trained on a full download describe themselves
    _, card = load_model(best_model_name(True))
    return render(
        request,
        "monitoring/diagnosis.html",
        {
            "examples": examples["records"],
            "attribution": examples["attribution"],
            "licence": examples["licence"],
            "heart_axis_choices": HEART_AXIS_CHOICES,
            "max_trained_age_years": int(MAX_TRAINED_AGE_YEARS),
            "n_test_records": card["metrics"]["n_test_records"],
            "n_test_patients": card["metrics"]["n_test_patients"],
            "training_data": copy_summary(card["data"].get("copy")),
            # the features a blank reaches the model as the typical value, from the card, so
            # the sentence under the form follows the model's input layout
            "imputed_without_flag": word_list(card["data"]["imputed_without_flag"]),
        },
    )
