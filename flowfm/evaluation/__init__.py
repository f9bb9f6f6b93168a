"""Subject-wise evaluation of representations (folds, frozen features, probes, metrics) and of generation quality."""
from flowfm.evaluation.features import encode_windows
from flowfm.evaluation.generation import (discriminative_score, feature_frechet_distance, frechet_distance,
                                         generation_report, reconstruction_correlation, trtr_macro_f1,
                                         tstr_macro_f1)
from flowfm.evaluation.generation_features import FEATURE_NAMES, window_features
from flowfm.evaluation.metrics import classification_metrics, summarize
from flowfm.evaluation.probe import linear_probe
from flowfm.evaluation.splits import label_subject_draw, subject_folds

__all__ = ["encode_windows", "classification_metrics", "summarize", "linear_probe", "label_subject_draw",
           "subject_folds",
           "window_features", "FEATURE_NAMES", "frechet_distance", "feature_frechet_distance",
           "discriminative_score", "tstr_macro_f1", "trtr_macro_f1", "reconstruction_correlation",
           "generation_report"]
