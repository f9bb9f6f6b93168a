"""Crash safety of ``python -m flowfm pretrain``: SIGKILL mid-epoch and mid-checkpoint-write, then ``--resume``.

Method: the training subprocess runs with the test hook ``FLOWFM_TEST_PAUSE`` (:mod:`flowfm.training.crash_hook`),
which parks it at an exact point (before optimisation step K, or inside epoch E's checkpoint write after the model
files and before the train state) and creates ``FLOWFM_TEST_PAUSE_FILE``; the test waits for that file and sends
SIGKILL. So the kill lands at the same point however slow or loaded the machine is (no timing guesses), and
nothing in the process gets to clean up (no ``finally``, no atexit), as in a power loss of the process.

Asserted after the kill: every ``epoch_*`` folder on disk is a complete checkpoint that loads (model + train
state), ``latest`` names the last complete one, the half-written one is only a hidden ``.epoch_*.tmp-*`` folder
that is never taken for a checkpoint, and ``--resume`` ends with weights *bitwise* equal to an uninterrupted run
with the same seed (the checkpoint holds model, optimiser, scheduler, EMA, generator state and epoch; the data
order is a function of (seed, epoch); the same single process does the same float operations in the same order).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from flowfm.checkpoint import load_model, read_state
from flowfm.data import WindowDataset, save_folder
from flowfm.training.resume import named_latest

ARGS = ["--preset", "tiny", "--epochs", "3", "--batch-size", "16", "--warmup-steps", "2", "--ema", "0.9",
        "--seed", "11", "--no-progress"]  # 64 windows: 4 steps per epoch, 12 in all


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(1)
    n, length = 64, 48
    t = np.arange(length) / 30.0
    x = np.sin(2 * np.pi * rng.uniform(0.5, 3.0, (n, 1, 1)) * t) * rng.uniform(0.2, 1.0, (n, 3, 1))
    x = (x + 0.05 * rng.standard_normal((n, 3, length))).astype(np.float32)
    path = tmp_path_factory.mktemp("data") / "toy"
    save_folder(WindowDataset(x=x, pid=np.repeat(np.arange(4), n // 4)), path)
    return path


def _cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flowfm", "pretrain", "--data", str(data), "--out", str(out), *ARGS, *extra]


def _env(**extra):
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def _run(cmd):
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def _park_at(point: str, data: Path, out: Path, tmp_path: Path) -> subprocess.Popen:
    """Start training and return once it is parked at ``point``."""
    flag = tmp_path / f"paused-{point.replace(':', '-')}"
    proc = subprocess.Popen(_cmd(data, out), env=_env(FLOWFM_TEST_PAUSE=point, FLOWFM_TEST_PAUSE_FILE=str(flag)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    while not flag.exists():
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            raise AssertionError(f"training ended (rc {proc.returncode}) before {point}:\n{stdout}\n{stderr}")
        if time.monotonic() - t0 > 300:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(f"not parked at {point} within 300 s")
        time.sleep(0.1)
    return proc


def _kill_at(point: str, data: Path, out: Path, tmp_path: Path) -> None:
    """Start training, wait until it is parked at ``point``, SIGKILL it."""
    proc = _park_at(point, data, out, tmp_path)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


def _assert_checkpoints_complete(ckpt_dir: Path, latest: str) -> None:
    folders = sorted(p for p in ckpt_dir.glob("epoch_*") if p.is_dir())
    assert folders, "no checkpoint"
    for folder in folders:  # every folder that looks like a checkpoint is one
        model = load_model(folder)  # checks that the files exist and the weights' checksum
        state = read_state(folder, "train_state")
        assert int(state["epoch"]) + 1 == model.checkpoint_metadata["epoch"] == int(folder.name.split("_")[1])
    assert (ckpt_dir / "latest").read_text() == latest
    assert named_latest(ckpt_dir) == ckpt_dir / latest


def _assert_bitwise_equal(a: Path, b: Path) -> None:
    wa, wb = load_model(a / "model").state_dict(), load_model(b / "model").state_dict()
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ha, hb = (json.loads((p / "history.json").read_text()) for p in (a, b))
    assert [(h["epoch"], h["loss"], h["lr"]) for h in ha] == [(h["epoch"], h["loss"], h["lr"]) for h in hb]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "run"
    _run(_cmd(data, out))
    return out


def test_sigkill_mid_epoch_then_resume_gives_bitwise_the_uninterrupted_weights(data, uninterrupted, tmp_path):
    out = tmp_path / "run"
    _kill_at("step:7", data, out, tmp_path)  # epoch 2, step 3 of 4: epoch_0001 is complete, epoch 2 is not
    ckpt_dir = out / "checkpoints"
    _assert_checkpoints_complete(ckpt_dir, "epoch_0001")
    assert not (ckpt_dir / "epoch_0002").exists() and not (out / "model").exists()
    _run(_cmd(data, out, "--resume"))
    _assert_bitwise_equal(uninterrupted, out)
    _assert_checkpoints_complete(ckpt_dir, "epoch_0003")


def test_sigkill_during_the_checkpoint_write_leaves_only_a_hidden_temp_folder(data, uninterrupted, tmp_path):
    out = tmp_path / "run"
    _kill_at("checkpoint:2", data, out, tmp_path)  # epoch 2's folder has its model files, not its train state
    ckpt_dir = out / "checkpoints"
    partial = list(ckpt_dir.glob(".epoch_0002.tmp-*"))
    assert len(partial) == 1 and (partial[0] / "model.safetensors").is_file()
    assert not any(p.name.startswith("train_state") for p in partial[0].iterdir())  # really half-written
    assert not (ckpt_dir / "epoch_0002").exists()
    _assert_checkpoints_complete(ckpt_dir, "epoch_0001")
    _run(_cmd(data, out, "--resume"))
    assert not list(ckpt_dir.glob(".epoch_*.tmp-*"))  # the resumed run removed the stale temp folder
    _assert_bitwise_equal(uninterrupted, out)
    _assert_checkpoints_complete(ckpt_dir, "epoch_0003")


def _signal_at(point: str, sig: int, data: Path, out: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Start training, wait until it is parked at ``point``, send ``sig`` (a catchable signal) and let it exit."""
    proc = _park_at(point, data, out, tmp_path)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_epoch_writes_a_resumable_checkpoint_and_resume_matches(data, uninterrupted, tmp_path, sig):
    out = tmp_path / "run"
    done = _signal_at("step:7", sig, data, out, tmp_path)  # arrives before step 7 = epoch 2, step 3 of 4
    assert done.returncode == 128 + sig, done.stderr[-2000:]
    message = done.stderr.strip().splitlines()[-1]
    assert signal.Signals(sig).name in message and "after step 3 of epoch 2" in message and "--resume" in message
    assert "Traceback" not in done.stderr
    ckpt_dir = out / "checkpoints"
    assert (ckpt_dir / "latest").read_text() == "interrupted_e0002_s000003"
    state = read_state(ckpt_dir / "interrupted_e0002_s000003", "train_state")
    assert int(state["epoch"]) == 0 and int(state["resume_step"]) == 3   # epoch 1 complete, 3 steps into epoch 2
    assert (ckpt_dir / "epoch_0001").is_dir() and not (out / "model").exists()
    _run(_cmd(data, out, "--resume"))
    _assert_bitwise_equal(uninterrupted, out)
    _assert_checkpoints_complete(ckpt_dir, "epoch_0003")
    assert not list(ckpt_dir.glob("interrupted_*"))  # superseded by the next complete epoch


def test_a_signal_on_the_last_step_of_an_epoch_keeps_the_epoch_checkpoint(data, uninterrupted, tmp_path):
    out = tmp_path / "run"
    done = _signal_at("step:8", signal.SIGTERM, data, out, tmp_path)  # step 8 ends epoch 2
    assert done.returncode == 128 + signal.SIGTERM and "after epoch 2" in done.stderr
    _assert_checkpoints_complete(out / "checkpoints", "epoch_0002")
    _run(_cmd(data, out, "--resume"))
    _assert_bitwise_equal(uninterrupted, out)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one_and_stops_clearly(data, uninterrupted, tmp_path,
                                                                                   monkeypatch, capsys):
    import errno

    import flowfm.training.trainer as trainer
    from flowfm.cli import main

    real_write_state, calls = trainer.write_state, []

    def disk_full_at_epoch_two(folder, name, state):
        calls.append(folder)
        if len(calls) == 2:   # epoch 2's train state: the model files are written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(folder) / f"{name}.safetensors"))
        return real_write_state(folder, name, state)

    monkeypatch.setattr(trainer, "write_state", disk_full_at_epoch_two)
    out = tmp_path / "run"
    argv = ["pretrain", "--data", str(data), "--out", str(out), *ARGS]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "No space left on device" in err and len(err.splitlines()) == 1, err
    ckpt_dir = out / "checkpoints"
    _assert_checkpoints_complete(ckpt_dir, "epoch_0001")           # the previous checkpoint is intact
    assert not (ckpt_dir / "epoch_0002").exists() and not list(ckpt_dir.glob(".epoch_*"))  # no half folder left
    monkeypatch.setattr(trainer, "write_state", real_write_state)  # space again: resume finishes the same run
    _run(_cmd(data, out, "--resume"))
    _assert_bitwise_equal(uninterrupted, out)
