"""Checkpoint folders: weights in safetensors, everything else in JSON; written atomically, loaded without pickle.

A model folder holds

    model.safetensors   every parameter and buffer (the normaliser's mean/std included)
    config.json         {"format": "flowfm-checkpoint", "version": 1, "method": ..., "config": {...},
                         "normalizer": {"mean": [...], "std": [...]}, "weights_sha256": ..., "metadata": {...},
                         "data": {"sample_rate_hz": 30.0, "window_length": 300, "hop": 150, "unit": "g",
                                  "channels": ["x", "y", "z"]}}

``"data"`` is the model's :class:`~flowfm.data.window_spec.WindowSpec` (what its windows are); a file written before
it existed reads as the convention (30 Hz, the config's window, hop L / 2, g, x/y/z). A loaded model is in **eval
mode** (BatchNorm reads its running statistics): call ``model.train()`` to train it further.

A training checkpoint adds ``train_state.safetensors`` + ``train_state.json`` (optimiser, scheduler, EMA, RNG,
epoch) through :func:`write_state` / :func:`read_state`, which split any nested state into tensors and JSON.
The SHA-256 of the weights file is checked on load, so a tampered or truncated file is refused.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors.torch import load_file, save_file

from flowfm.data.atomic import atomic_dir
from flowfm.data.digest import sha256_file
from flowfm.data.window_spec import WindowSpec
from flowfm.methods import METHODS, model_class
from flowfm.zoo import resolve_checkpoint

FORMAT, VERSION = "flowfm-checkpoint", 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete, tampered with or of an unknown format."""


class CheckpointMixin:
    """``save`` / ``load`` of a model as a checkpoint folder (every model class of the library has them), and the
    model's :attr:`data_spec`."""

    @property
    def data_spec(self) -> WindowSpec:
        """The windows this model is for (rate, length, hop, unit, channel order); stored in its checkpoints. Unless
        set (by ``flowfm pretrain`` from its data, or by loading), the convention for the config's channels and
        window: 30 Hz, hop = window // 2, g."""
        spec = self.__dict__.get("_data_spec")
        return spec if spec is not None else WindowSpec.default(self.config.in_channels, self.config.window)

    @data_spec.setter
    def data_spec(self, spec: WindowSpec) -> None:
        if not isinstance(spec, WindowSpec):
            raise TypeError(f"data_spec must be a WindowSpec, got {type(spec).__name__}")
        if len(spec.channels) != self.config.in_channels:
            raise ValueError(f"data_spec names {len(spec.channels)} channels {list(spec.channels)}; this model has "
                             f"{self.config.in_channels}")
        self.__dict__["_data_spec"] = spec

    def save(self, path, metadata: Optional[dict] = None) -> None:
        """Write a checkpoint folder (safetensors weights + JSON config), atomically."""
        save_model(self, path, metadata)

    @classmethod
    def load(cls, path, map_location="cpu", backend: Optional[str] = None):
        """Load a folder written by :meth:`save` (never unpickles); returns the class recorded in it, in eval mode."""
        return load_model(path, map_location=map_location, backend=backend)

    def save_pretrained(self, save_directory, *, repo_id: Optional[str] = None, push_to_hub: bool = False,
                        metadata: Optional[dict] = None, **push_kwargs) -> Optional[str]:
        """huggingface_hub ``ModelHubMixin.save_pretrained``: the folder :meth:`save` writes (config.json +
        model.safetensors, the Hub's layout); ``push_to_hub=True`` then uploads it to ``repo_id`` (the ``hub``
        extra). Returns the commit URL when pushed, else None."""
        save_model(self, save_directory, metadata)
        if not push_to_hub:
            return None
        if not repo_id:
            raise ValueError("push_to_hub=True needs repo_id='user/name'")
        api = _hub().HfApi(token=push_kwargs.pop("token", None))
        api.create_repo(repo_id, exist_ok=True, private=push_kwargs.pop("private", None))
        return str(api.upload_folder(repo_id=repo_id, folder_path=str(save_directory), **push_kwargs))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: Optional[str] = None, cache_dir=None,
                        token=None, local_files_only: bool = False, map_location="cpu",
                        backend: Optional[str] = None, **_hub_kwargs):
        """huggingface_hub ``ModelHubMixin.from_pretrained``: a local folder or a shipped name (``"small-hapt"``)
        loads like :meth:`load`; another ``user/name`` is downloaded from the Hub first (config.json +
        model.safetensors only; the ``hub`` extra). The checksums are checked either way; eval mode."""
        target = str(pretrained_model_name_or_path)
        local = resolve_checkpoint(target)
        if not local.exists() and target.count("/") == 1 and not target.startswith((".", "/")):
            local = Path(_hub().snapshot_download(repo_id=target, revision=revision, cache_dir=cache_dir,
                                                  token=token, local_files_only=local_files_only,
                                                  allow_patterns=[CONFIG, WEIGHTS]))
        return load_model(local, map_location=map_location, backend=backend)


def _hub():
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError("the Hugging Face Hub needs huggingface_hub: pip install 'flowfm[hub]'") from None
    return huggingface_hub


def model_method(model) -> str:
    return getattr(model, "method", "flowfm")


def model_data_spec(model) -> WindowSpec:
    """``model.data_spec``, or the convention for its config when the class has none."""
    spec = getattr(model, "data_spec", None)
    return spec if isinstance(spec, WindowSpec) else WindowSpec.default(model.config.in_channels,
                                                                         model.config.window)


def read_data_spec(doc: dict, config) -> WindowSpec:
    """The :class:`WindowSpec` of a checkpoint's config.json ``doc``; the convention for ``config`` when the file
    predates it (no ``"data"`` entry) or lacks some of its fields."""
    try:
        return WindowSpec.from_dict(doc.get("data") or {}, config.in_channels, config.window)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the 'data' entry of {CONFIG} is invalid: {exc}") from None


def write_model_files(model, folder: Path, metadata: Optional[dict] = None) -> None:
    """Write model.safetensors + config.json into an existing folder (callers make the folder atomic)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(folder / WEIGHTS))
    doc = {
        "format": FORMAT, "version": VERSION, "method": model_method(model), "config": model.config.to_dict(),
        "normalizer": {"mean": model.normalizer.mean.tolist(), "std": model.normalizer.std.tolist()},
        "weights_sha256": sha256_file(folder / WEIGHTS), "metadata": metadata or {},
        "data": model_data_spec(model).to_dict(),
    }
    doc["config_sha256"] = config_digest(doc)
    (folder / CONFIG).write_text(json.dumps(doc, indent=2))


def config_digest(doc: dict) -> str:
    """SHA-256 over everything in config.json but this digest (canonical JSON: sorted keys, no spaces), so an edit of
    the method, the config, the normaliser, the data spec or the metadata is caught like an edit of the weights."""
    import hashlib

    body = {k: v for k, v in doc.items() if k != "config_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def stored_tensor_elements(path: Path) -> int:
    """The number of elements the safetensors file ``path`` holds, from its header (no tensor is read)."""
    import math
    import struct

    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        if not 2 <= size <= 100 * 2**20:
            raise CheckpointError(f"{path} has no valid safetensors header (header size {size})")
        header = json.loads(f.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def save_model(model, path, metadata: Optional[dict] = None) -> Path:
    """Write ``model`` to the folder ``path`` atomically (a crash leaves the old folder or none, never half). An
    existing model folder is replaced; a folder holding anything else (a run folder, the user's files) is refused
    with FileExistsError, never deleted."""
    path = Path(path)
    with atomic_dir(path, replaces=(WEIGHTS, CONFIG)) as tmp:
        write_model_files(model, Path(tmp), metadata)
    return path


def read_config(path) -> dict:
    """config.json of the checkpoint folder ``path`` (or shipped model name, :mod:`flowfm.zoo`), format-checked."""
    path = resolve_checkpoint(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} does not exist (expected a folder with {WEIGHTS} and "
                              f"{CONFIG})")
    for name in (WEIGHTS, CONFIG):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} is incomplete: {name} is missing")
    try:
        doc = json.loads((path / CONFIG).read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path / CONFIG} is not valid JSON: {exc}") from None
    if doc.get("format") != FORMAT or doc.get("version") != VERSION:
        raise CheckpointError(f"{path / CONFIG} is not a {FORMAT} v{VERSION} file "
                              f"(format={doc.get('format')!r}, version={doc.get('version')!r})")
    return doc


def load_model(path, map_location="cpu", backend: Optional[str] = None):
    """Rebuild the model saved in ``path``: same class, config, weights, buffers and ``data_spec`` (bit-identical
    outputs), in eval mode (``.train()`` before training it further). ``path`` may name a shipped model
    (``"small-hapt"``, :mod:`flowfm.zoo`)."""
    path = resolve_checkpoint(path)
    doc = read_config(path)
    actual = sha256_file(path / WEIGHTS)
    if actual != doc.get("weights_sha256"):
        raise CheckpointError(f"{path / WEIGHTS} does not match the checksum recorded in {CONFIG} "
                              f"(file was modified or truncated)")
    if "config_sha256" in doc and doc["config_sha256"] != config_digest(doc):  # files before it carry none
        raise CheckpointError(f"{path / CONFIG} does not match its recorded checksum (config_sha256): it was "
                              "edited after it was written")
    method = doc.get("method", "flowfm")
    if method not in METHODS:
        raise CheckpointError(f"checkpoint method {method!r} is unknown; known: {sorted(METHODS)}")
    cls = model_class(method)
    try:
        config = cls.config_type.from_dict(doc["config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG} holds an invalid config: {exc}") from None
    if hasattr(config, "approx_parameters"):
        described, stored = config.approx_parameters(), stored_tensor_elements(path / WEIGHTS)
        if described > 4 * stored + 1_000_000:
            raise CheckpointError(f"{path / CONFIG} describes a model of about {described:,} parameters but "
                                  f"{path / WEIGHTS} holds {stored:,} values: the config does not belong to these "
                                  "weights")
    model = cls(config, backend=backend)
    try:
        state = load_file(str(path / WEIGHTS), device=str(map_location))
    except Exception as exc:
        raise CheckpointError(f"cannot read {path / WEIGHTS}: {exc}") from None
    optional = set(getattr(model, "optional_state_keys", ()))
    missing, unexpected = set(model.state_dict()) - set(state) - optional, set(state) - set(model.state_dict())
    if missing or unexpected:
        raise CheckpointError(f"{path / WEIGHTS} does not fit the config: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    model.load_state_dict(state)
    model.checkpoint_metadata = doc.get("metadata", {})
    model.data_spec = read_data_spec(doc, config)
    return model.to(map_location).eval()


# ---------------------------------------------------------------------------------------------- nested state
def _split(obj: Any, prefix: str, tensors: dict) -> Any:
    if torch.is_tensor(obj):
        tensors[prefix] = obj.detach().contiguous().cpu()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[_split(k, f"{prefix}.k{i}", tensors), _split(v, f"{prefix}.{i}", tensors)]
                             for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, (list, tuple)):
        items = [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {prefix!r} in a checkpoint (tensors, dicts, lists, "
                    "tuples, numbers, strings and None only)")


def _join(obj: Any, tensors: dict) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def write_state(folder, name: str, state: Any) -> None:
    """Store a nested structure of tensors/dicts/lists/scalars as ``name``.safetensors + ``name``.json."""
    folder = Path(folder)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "s", tensors)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps({"sha256": sha256_file(folder / f"{name}.safetensors"),
                                                     "state": skeleton}))


def read_state(folder, name: str) -> Any:
    folder = Path(folder)
    for suffix in (".safetensors", ".json"):
        if not (folder / f"{name}{suffix}").is_file():
            raise CheckpointError(f"checkpoint {folder} is incomplete: {name}{suffix} is missing")
    doc = json.loads((folder / f"{name}.json").read_text())
    if sha256_file(folder / f"{name}.safetensors") != doc.get("sha256"):
        raise CheckpointError(f"{folder / (name + '.safetensors')} does not match its recorded checksum")
    return _join(doc["state"], load_file(str(folder / f"{name}.safetensors")))
