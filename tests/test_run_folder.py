"""Output-folder ownership (flowfm.run_folder): a live lock refuses a second writer, a stale lock is named, an
existing run is refused without --resume / --overwrite, and --overwrite replaces it."""
import json
import os
import socket
import subprocess
import sys

import pytest

from flowfm.run_folder import LOCK_NAME, RunFolderError, claim, owned, release


def test_new_folder_is_claimed_and_released(tmp_path):
    out = tmp_path / "run"
    with owned(out) as lock:
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()


def test_live_lock_refuses_second_writer(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(),
                                                      "run_id": "other"}))
        with pytest.raises(RunFolderError, match=f"pid {holder.pid}"):
            claim(tmp_path, overwrite=True)
    finally:
        holder.kill()
        holder.wait()


def test_stale_lock_is_named_and_cleared_by_resume(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "run_id": "x"}))
    with pytest.raises(RunFolderError, match=f"stale lock from dead process {dead.pid}"):
        claim(tmp_path)
    lock = claim(tmp_path, resume=True)
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    release(lock)


def test_existing_run_refused_then_overwritten(tmp_path, capsys):
    (tmp_path / "train_config.json").write_text("{}")
    with pytest.raises(RunFolderError, match="--resume .* --overwrite"):
        claim(tmp_path)
    assert (tmp_path / "train_config.json").exists()
    release(claim(tmp_path, resume=True))
    assert (tmp_path / "train_config.json").exists()
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / ".train_config.json.tmp-0a1b2c").write_text("")   # an atomic write's leftover
    release(claim(tmp_path, overwrite=True, writes=("train_config.json",)))
    assert not (tmp_path / "train_config.json").exists() and not (tmp_path / ".train_config.json.tmp-0a1b2c").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"           # not written by the run: left, and named
    err = capsys.readouterr().err
    assert "--overwrite" in err and "left 1 entry (notes.txt) it did not write" in err


def test_new_file_outputs_are_never_replaced_silently(tmp_path):
    from flowfm.run_folder import check_new_file

    target = tmp_path / "z.npz"
    assert check_new_file(target) == target
    target.write_bytes(b"old")
    with pytest.raises(RunFolderError, match="already exists; pass --overwrite"):
        check_new_file(target)
    assert check_new_file(target, overwrite=True) == target
    with pytest.raises(RunFolderError, match="is a folder"):
        check_new_file(tmp_path, overwrite=True)


def test_cli_pretrain_second_run_refused_overwrite_replaces(tmp_path, capsys):
    import numpy as np

    from flowfm.cli import main

    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "X.npy", np.random.default_rng(0).standard_normal((8, 3, 300)).astype("float32"))
    out = tmp_path / "run"
    base = ["pretrain", "--data", str(data), "--out", str(out), "--preset", "tiny", "--epochs", "1",
            "--batch-size", "4", "--no-progress", "--null-fit-steps", "0", "--z-bank-size", "0"]
    assert main(base) == 0
    first = json.loads((out / "train_config.json").read_text())
    before = {p.name: p.stat().st_mtime_ns for p in out.rglob("*")}
    capsys.readouterr()
    assert main(base + ["--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "already holds" in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert main(base + ["--seed", "5", "--overwrite"]) == 0
    assert "--overwrite: replacing" in capsys.readouterr().err
    assert json.loads((out / "train_config.json").read_text())["seed"] == 5 != first["seed"]
    assert not (out / LOCK_NAME).exists()


def test_bench_default_out_is_the_checkout_not_the_cwd(tmp_path, monkeypatch):
    from pathlib import Path

    import bench.common

    monkeypatch.chdir(tmp_path)
    out = Path(bench.common.make_parser("x").parse_args([]).out)
    assert out.is_absolute() and out == Path(bench.common.__file__).resolve().parent / "results"


def test_cli_pretrain_cuda_without_gpu_writes_nothing(tmp_path, capsys):
    import torch

    from flowfm.cli import main

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    out = tmp_path / "run"
    assert main(["pretrain", "--out", str(out), "--device", "cuda", "--preset", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
