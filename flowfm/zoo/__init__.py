"""Pretrained models shipped inside the package, by name (``flowfm.pretrained("small-hapt")``,
``--checkpoint small-hapt`` on every command).

Each model is a checkpoint folder under ``flowfm/zoo/<folder>/`` (``config.json`` + ``model.safetensors``, the
library's checkpoint format) with a ``MANIFEST.json`` of the SHA-256 of every file and a ``MODEL_CARD.md`` saying
what it was trained on and what it is not. :func:`resolve_checkpoint` is the one place where a ``--checkpoint``
value becomes a folder: an existing path wins, else a shipped name is looked up and its manifest verified.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from flowfm.data.digest import sha256_file

__all__ = ["MODELS", "names", "model_folder", "resolve_checkpoint", "PretrainedError"]

ROOT = Path(__file__).resolve().parent
#: name -> (folder under flowfm/zoo/, one-line description)
MODELS = {
    "small-hapt": ("small_hapt", "FlowFM small preset (1.24 M parameters, z of dim 256) pretrained 12 epochs on all "
                                 "4,400 HAPT windows (30 subjects, waist phone, 30 Hz, 10 s, g)"),
}


class PretrainedError(ValueError):
    """A shipped model's files do not match its manifest, or the name is unknown."""


def names() -> list[str]:
    return sorted(MODELS)


def model_folder(name: str, verify: bool = True) -> Path:
    """The folder of the shipped model ``name``, its files checked against ``MANIFEST.json``."""
    if name not in MODELS:
        raise PretrainedError(f"no shipped model {name!r}; shipped: {', '.join(names())}")
    folder = ROOT / MODELS[name][0]
    manifest_path = folder / "MANIFEST.json"
    if not manifest_path.is_file():
        raise PretrainedError(f"shipped model {name!r} is incomplete: {manifest_path} is missing (reinstall flowfm)")
    if verify:
        manifest = json.loads(manifest_path.read_text())
        for fname, digest in manifest["files"].items():
            path = folder / fname
            if not path.is_file() or sha256_file(path) != digest:
                raise PretrainedError(f"shipped model {name!r}: {path} is missing or does not match its SHA-256 in "
                                      "MANIFEST.json (reinstall flowfm)")
    return folder


def resolve_checkpoint(spec: Union[str, Path]) -> Path:
    """A checkpoint argument -> a folder: an existing path as is, else a shipped model's (verified) folder, else
    the path as given (the caller reports that it does not exist)."""
    path = Path(spec)
    if path.exists() or str(spec) not in MODELS:
        return path
    return model_folder(str(spec))


def write_manifest(folder: Path) -> Path:
    """(For maintainers adding a model.) Write ``MANIFEST.json`` with the SHA-256 of every other file."""
    files = {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "MANIFEST.json"}
    out = folder / "MANIFEST.json"
    out.write_text(json.dumps({"files": files}, indent=2) + "\n")
    return out
