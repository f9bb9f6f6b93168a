"""Ownership of an output folder: one run writes it at a time, and an existing run is never replaced silently.

:func:`claim` takes ``OUT/.flowfm.lock`` (created with ``O_CREAT | O_EXCL``, holding JSON
``{"pid", "host", "run_id"}``) and applies the overwrite policy:

* a lock held by a live process refuses the second writer, naming its pid and host;
* a lock left by a dead process on this host is stale: it is named in the error and removed only with
  ``--resume`` or ``--overwrite``;
* ranks of one ``torchrun`` job share the lock (same ``TORCHELASTIC_RUN_ID``);
* a folder that already holds run files is refused unless ``resume`` (continue it) or ``overwrite``
  (replace it; said on stderr) is given;
* ``overwrite`` removes only the entries the command writes (``writes``: names or glob patterns); anything else in
  the folder (a user's notes, another tool's files) is left and listed.

Single-file outputs (``embed``'s .npz, ``sample``'s .npy, ...) follow the same rule through :func:`check_new_file`.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional

from flowfm.data.atomic import describe_entries

__all__ = ["LOCK_NAME", "RunFolderError", "check_new_file", "claim", "owned", "release"]

LOCK_NAME = ".flowfm.lock"


class RunFolderError(ValueError):
    """An output folder that this run may not write (held by another run, or holding one)."""


def _run_id() -> str:
    return os.environ.get("TORCHELASTIC_RUN_ID") or f"pid-{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holds_run(out: Path) -> bool:
    return any(p.name != LOCK_NAME for p in out.iterdir()) if out.is_dir() else False


def check_new_file(path, overwrite: bool = False, flag: str = "--out") -> Path:
    """``path`` as a Path if a command may write it: it does not exist yet, or it is a file and ``overwrite``;
    RunFolderError otherwise (a folder is never replaced by a file). Call it before the work, so nothing runs
    (and nothing is written) for an output that would be refused."""
    path = Path(path)
    if path.is_dir():
        raise RunFolderError(f"{flag} {path} is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise RunFolderError(f"{path} already exists; pass --overwrite to replace it, or another {flag}")
    return path


def _remove_outputs(out: Path, writes: Iterable[str], what: str) -> None:
    writes = list(writes)  # each with the atomic writers' leftovers (.NAME.tmp-*, .NAME.old-*) of a crash
    ours = {p for pattern in writes + [f".{w}.*" for w in writes] for p in out.glob(pattern) if p.name != LOCK_NAME}
    for p in sorted(ours):
        shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    others = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    note = f"; left {describe_entries(others)} it did not write" if others else ""
    print(f"--overwrite: replacing the {what} in {out} (removed {len(ours)} entries it wrote{note})",
          file=sys.stderr)


def claim(out, *, resume: bool = False, overwrite: bool = False, what: str = "run",
          writes: Optional[Iterable[str]] = None, resumable: bool = True) -> Path:
    """Lock ``out`` for this process (creating it) and return the lock path; raise RunFolderError if refused.

    ``writes``: the names / glob patterns of the entries this command writes, removed under ``overwrite``
    (None: nothing is removed; the command replaces its outputs itself). ``resumable``: whether the command has
    ``--resume`` (the refusals only offer the flags it has)."""
    choices = "--resume to continue it, --overwrite to replace it," if resumable else "--overwrite to replace it"
    out = Path(out)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: give one")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file; expected a folder (new, or one to --resume / --overwrite)")
    out.mkdir(parents=True, exist_ok=True)
    lock = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "run_id": _run_id()}
    try:
        held = json.loads(lock.read_text())
    except FileNotFoundError:
        held = None
    except (OSError, ValueError):
        held = {"pid": -1, "host": "?", "run_id": "?"}
    if held is not None and held.get("run_id") != me["run_id"]:
        same_host = held.get("host") == me["host"]
        if not same_host or _alive(int(held.get("pid", -1))):
            raise RunFolderError(f"{out} is in use by another {what} (pid {held.get('pid')} on host "
                                 f"{held.get('host')}, lock {lock}); wait for it or choose another --out")
        if not (resume or overwrite):
            raise RunFolderError(f"{out} holds a stale lock from dead process {held.get('pid')} (an interrupted "
                                 f"{what}); give {choices} or another --out")
        lock.unlink()
        held = None
    if held is None:
        if _holds_run(out) and not (resume or overwrite):
            article = "an" if what[:1].lower() in "aeiou" else "a"
            raise RunFolderError(f"{out} already holds {article} {what}; give {choices} or another --out")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = json.loads(lock.read_text() or "{}")
            if held.get("run_id") != me["run_id"]:
                raise RunFolderError(f"{out} is in use by another {what} (pid {held.get('pid')} on host "
                                     f"{held.get('host')}); choose another --out") from None
        else:
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            if overwrite and _holds_run(out):
                if writes is None:
                    print(f"--overwrite: replacing the {what} in {out}", file=sys.stderr)
                else:
                    _remove_outputs(out, writes, what)
    return lock


def release(lock: Path) -> None:
    """Remove ``lock`` if this process (or this torchrun job) holds it."""
    try:
        held = json.loads(Path(lock).read_text())
        if held.get("run_id") == _run_id() and held.get("pid") == os.getpid():
            Path(lock).unlink()
    except (OSError, ValueError):
        pass


@contextlib.contextmanager
def owned(out, *, resume: bool = False, overwrite: bool = False, what: str = "run",
          writes: Optional[Iterable[str]] = None, resumable: bool = True) -> Iterator[Path]:
    """``with owned(out, ...):`` hold the folder lock for the block (:func:`claim`); released on exit (also on
    errors). A folder this call created and that is still empty at the end (the command failed before writing)
    is removed, so a refused input leaves nothing behind."""
    created = not Path(out).exists()
    lock = claim(out, resume=resume, overwrite=overwrite, what=what, writes=writes, resumable=resumable)
    try:
        yield lock
    finally:
        release(lock)
        if created:
            try:
                Path(out).rmdir()  # only succeeds when empty
            except OSError:
                pass
