"""Where a resumed pretraining run continues from: the newest *intact* checkpoint of *this* run.

A run folder's ``checkpoints/`` holds ``epoch_NNNN`` folders (after epoch N) and, after SIGINT / SIGTERM,
``interrupted_eEEEE_sSSSSS`` (S steps into epoch E), a file ``latest`` naming the newest and a file ``run_id``
written when the run started. Each checkpoint's train state records the run id and the SHA-256 of the weights
beside it, so:

* ``latest`` may only name a checkpoint folder of this ``checkpoints/`` (no path, no ``..``);
* a checkpoint whose weights or train state fail their checksums, whose train state belongs to other weights
  (copied in from another checkpoint) or to another run (another run id) is not resumed from: the newest intact
  one before it is, and the fallback is said;
* pruning old epochs removes only this run's checkpoints.

Checkpoints written before run ids existed carry neither field and are accepted as they are.
"""
from __future__ import annotations

import json
import re
import secrets
from pathlib import Path
from typing import Callable, Optional

from flowfm.checkpoint import CONFIG, WEIGHTS, CheckpointError, read_state, sha256_file

__all__ = ["CHECKPOINT_NAME", "RUN_ID_FILE", "new_run_id", "read_run_id", "named_latest", "checkpoint_order",
           "check_intact", "resume_point", "state_run_id"]

CHECKPOINT_NAME = re.compile(r"^(epoch_(\d{4,})|interrupted_e(\d{4,})_s(\d{6,}))$")
RUN_ID_FILE = "run_id"


def new_run_id() -> str:
    return secrets.token_hex(8)


def read_run_id(ckpt_dir: Path) -> Optional[str]:
    path = Path(ckpt_dir) / RUN_ID_FILE
    return path.read_text().strip() if path.is_file() else None


def checkpoint_order(name: str) -> tuple[int, int]:
    """(completed epochs, steps into the next): ``epoch_0003`` -> (3, 0), ``interrupted_e0004_s000002`` -> (3, 2)."""
    m = CHECKPOINT_NAME.match(name)
    if m is None:
        raise ValueError(f"{name!r} is not a checkpoint name")
    return (int(m.group(2)), 0) if m.group(2) else (int(m.group(3)) - 1, int(m.group(4)))


def named_latest(ckpt_dir: Path) -> Optional[Path]:
    """The checkpoint folder ``ckpt_dir/latest`` names (None: no pointer, or it names no folder);
    CheckpointError when it names anything but a checkpoint folder of ``ckpt_dir`` itself."""
    pointer = Path(ckpt_dir) / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not CHECKPOINT_NAME.match(name):
        raise CheckpointError(f"{pointer} names {name!r}; expected a checkpoint folder of {ckpt_dir} (epoch_NNNN "
                              "or interrupted_eNNNN_sNNNNNN), never a path elsewhere")
    path = Path(ckpt_dir) / name
    return path if path.is_dir() else None


def state_run_id(folder: Path) -> Optional[str]:
    """The run id a checkpoint's train state records (read from its JSON skeleton, no checksum), or None."""
    try:
        doc = json.loads((Path(folder) / "train_state.json").read_text())
        return doc["state"].get("run_id")
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def check_intact(folder: Path, run_id: Optional[str]) -> dict:
    """The train state of checkpoint ``folder`` if it is whole and this run's; CheckpointError saying why not."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{folder / CONFIG} is unreadable ({exc})") from None
    if not (folder / WEIGHTS).is_file():
        raise CheckpointError(f"{folder / WEIGHTS} is missing")
    weights = sha256_file(folder / WEIGHTS)
    if weights != config.get("weights_sha256"):
        raise CheckpointError(f"{folder / WEIGHTS} does not match its recorded checksum")
    state = read_state(folder, "train_state")
    if state.get("model_sha256") not in (None, weights):
        raise CheckpointError(f"{folder}/train_state belongs to other weights than {folder / WEIGHTS} (copied from "
                              "another checkpoint?)")
    if run_id is not None and state.get("run_id") not in (None, run_id):
        raise CheckpointError(f"{folder} belongs to another run (run id {state.get('run_id')}, this folder's is "
                              f"{run_id})")
    return state


def resume_point(ckpt_dir: Path, log: Optional[Callable[[str], None]] = print) -> Optional[tuple[Path, dict]]:
    """(folder, train state) of the newest intact checkpoint of this run under ``ckpt_dir``: the one ``latest``
    names, else (said through ``log``) the newest intact one before it; None when there is none at all."""
    ckpt_dir = Path(ckpt_dir)
    latest = named_latest(ckpt_dir)
    run_id = read_run_id(ckpt_dir)
    others = sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and CHECKPOINT_NAME.match(p.name)
                     and p != latest), key=lambda p: checkpoint_order(p.name), reverse=True) \
        if ckpt_dir.is_dir() else []
    if latest is not None:
        others = [p for p in others if checkpoint_order(p.name) < checkpoint_order(latest.name)]
    problems = []
    for folder in ([latest] if latest is not None else []) + others:
        try:
            state = check_intact(folder, run_id)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        if problems and log is not None:
            log(f"note: not resuming from the newer checkpoint(s): {'; '.join(problems)}; resuming from the "
                f"intact {folder.name} instead")
        return folder, state
    if problems:
        raise CheckpointError(f"no intact checkpoint under {ckpt_dir}: {'; '.join(problems)}")
    return None
