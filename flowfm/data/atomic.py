"""Crash-safe writes: a reader sees the old content or the complete new content, never a half-written one.

File level (:func:`atomic_open`, :func:`atomic_write_bytes`, :func:`atomic_write_text`): write a temp file in
the *same directory* as the target, flush + ``fsync`` it, ``os.replace`` it over the target (atomic on POSIX and
Windows), then ``fsync`` the directory so the rename itself is durable.

Folder level (:func:`atomic_dir`): build the whole folder as a hidden temp folder next to the target, fsync
its files, then move it into place. A missing target is created by one ``rename``; an existing target is
swapped in one step with Linux ``renameat2(RENAME_EXCHANGE)`` where available, else by
rename-old-aside / rename-new-in / delete-old (a crash between those two renames leaves no target folder
but the complete old one as ``.<name>.old-*`` beside it: never a mix). On an exception inside the ``with``
block the temp folder is deleted and the target is untouched.

Temp names start with ``.<target name>.`` so they are hidden and easy to recognise; the files get the usual
umask permissions (not ``mkstemp``'s 0600).
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional, Union

__all__ = ["atomic_open", "atomic_write_bytes", "atomic_write_text", "atomic_dir", "fsync_dir"]

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """``fsync`` a directory so renames/creations inside it are durable (no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_name(target: Path, tag: str) -> Path:
    return target.with_name(f".{target.name}.{tag}-{secrets.token_hex(6)}")


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, fsync: bool = True,
                encoding: str | None = None) -> Iterator[IO]:
    """Open a temp file beside ``path`` for writing; on a clean exit it atomically replaces ``path``.

    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default utf-8). On an exception the temp file is removed
    and ``path`` keeps its old content (or stays absent). Usable with ``np.save``, ``torch.save``, ``json.dump``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open supports mode 'wb' or 'w', got {mode!r}")
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot atomically write a file over the directory {target}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, "tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if mode == "w" else None) as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        fsync_dir(target.parent)


def atomic_write_bytes(path: PathLike, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + ``os.replace``)."""
    with atomic_open(path, "wb", fsync=fsync) as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, *, encoding: str = "utf-8", fsync: bool = True) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", fsync=fsync, encoding=encoding) as f:
        f.write(text)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                continue
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(dirpath)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2(RENAME_EXCHANGE)``; False if unsupported here."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False  # filesystem/kernel without exchange support: use the fallback
    raise OSError(err, f"renameat2(RENAME_EXCHANGE) {a} <-> {b} failed: {os.strerror(err)}")


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if not target.exists() and not target.is_symlink():
        try:
            os.rename(tmp, target)
            return
        except OSError as e:  # appeared meanwhile
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    if not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    if not target.is_dir() or target.is_symlink():
        raise FileExistsError(f"{target} exists and is not a directory; refusing to replace it with a folder")
    if _exchange(tmp, target):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
        return
    old = _temp_name(target, "old")
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def describe_entries(names: list[str]) -> str:
    """``"N entr(y|ies) (the first five names, ...)"``: how refusals and notes name a folder's entries."""
    more = ", ..." if len(names) > 5 else ""
    return f"{len(names)} entr{'y' if len(names) == 1 else 'ies'} ({', '.join(names[:5])}{more})"


def check_replaceable(path: PathLike, replaces: Iterable[str]) -> None:
    """FileExistsError if the folder ``path`` holds an entry not named in ``replaces`` (so replacing it would
    delete files its writer did not make); nothing to check when it does not exist."""
    target = Path(path)
    if not target.is_dir():
        return
    foreign = sorted(p.name for p in target.iterdir() if p.name not in set(replaces))
    if foreign:
        raise FileExistsError(f"{target} holds {describe_entries(foreign)} that this kind of folder does not; "
                              f"refusing to replace it: write into a new or empty folder")


@contextlib.contextmanager
def atomic_dir(path: PathLike, *, overwrite: bool = True, fsync: bool = True,
               replaces: Optional[Iterable[str]] = None) -> Iterator[Path]:
    """Yield an empty temp folder beside ``path``; on a clean exit it becomes ``path`` atomically.

    Example::

        with atomic_dir("out/ds") as tmp:
            np.save(tmp / "X.npy", x)
            np.save(tmp / "pid.npy", pid)

    On an exception the temp folder is deleted and ``path`` is left exactly as it was. An existing folder at
    ``path`` is replaced (``overwrite=True``) or refused with FileExistsError. A non-folder at ``path`` is
    always refused. ``replaces``: the names this kind of folder holds; an existing folder holding anything else
    (files this writer did not make: another run, the user's own) is refused, never deleted.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a directory")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    if replaces is not None:
        check_replaceable(target, replaces)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(target, "tmp")
    os.mkdir(tmp, 0o777)
    try:
        yield tmp
        if fsync:
            _fsync_tree(tmp)
        _move_into_place(tmp, target, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if fsync:
        fsync_dir(target.parent)
