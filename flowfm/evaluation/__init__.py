"""Subject-wise evaluation of representations and of generation quality.

Representations (docs/design.md §5): ``evaluate_encoder`` runs the leak-free protocol (protocol.py) in mode linear /
mlp / finetune / scratch over seeds, from folds (splits.py), validation subjects (validation.py), heads (heads.py) and
the early-stopping loop (fit.py); ``paired_differences`` (paired.py) and ``markdown_table`` / ``bar_plot``
(report.py) compare reports; ``encoder_model`` (sources.py) loads a checkpoint of any method or a random init.
"""
from flowfm.evaluation.features import READOUTS, encode_windows
from flowfm.evaluation.generation import (discriminative_score, feature_frechet_distance, frechet_distance,
                                         generation_report, reconstruction_correlation, trtr_macro_f1,
                                         tstr_macro_f1)
from flowfm.evaluation.generation_features import FEATURE_NAMES, window_features
from flowfm.evaluation.generation_sweep import generation_sweep, sweep_markdown, write_sweep
from flowfm.evaluation.metrics import classification_metrics, summarize
from flowfm.evaluation.fit import FitConfig, FitResult, fit_classifier, predict
from flowfm.evaluation.heads import EncoderClassifier, MLPHead, class_weights
from flowfm.evaluation.paired import paired_differences
from flowfm.evaluation.probe import linear_probe
from flowfm.evaluation.protocol import MODES, PerFold, evaluate_encoder, protocol_splits
from flowfm.evaluation.report import bar_plot, markdown_table, report_markdown
from flowfm.evaluation.sources import encoder_model
from flowfm.evaluation.splits import label_subject_draw, subject_folds
from flowfm.evaluation.validation import LeakError, ProtocolSplit, carve_validation, check_split

__all__ = ["READOUTS", "encode_windows", "classification_metrics", "summarize", "linear_probe", "label_subject_draw",
           "subject_folds",
           "window_features", "FEATURE_NAMES", "frechet_distance", "feature_frechet_distance",
           "discriminative_score", "tstr_macro_f1", "trtr_macro_f1", "reconstruction_correlation",
           "generation_report", "generation_sweep", "write_sweep", "sweep_markdown",
           "MODES", "PerFold", "evaluate_encoder", "protocol_splits", "FitConfig", "FitResult", "fit_classifier", "predict",
           "MLPHead", "EncoderClassifier", "class_weights", "paired_differences", "markdown_table", "bar_plot",
           "report_markdown", "encoder_model", "LeakError", "ProtocolSplit", "carve_validation", "check_split"]
