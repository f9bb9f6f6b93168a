"""Subject-wise evaluation of representations: folds, frozen features, probes and metrics."""
from flowfm.evaluation.features import encode_windows
from flowfm.evaluation.metrics import classification_metrics, summarize
from flowfm.evaluation.probe import linear_probe
from flowfm.evaluation.splits import label_subject_draw, subject_folds

__all__ = ["encode_windows", "classification_metrics", "summarize", "linear_probe", "label_subject_draw",
           "subject_folds"]
