"""No command replaces an earlier output without ``--overwrite``, and none deletes files it did not write.

| command / API              | existing output, no --overwrite | with --overwrite                                 |
|----------------------------|---------------------------------|--------------------------------------------------|
| embed / sample (one file)  | refused before any work, exit 2 | replaced atomically                              |
| export (folder of 3 files) | refused, folder lock            | only encoder.onnx / velocity.onnx / sampler.json |
| shard                      | refused, folder lock            | only shard_* removed; other files left, named    |
| demo                       | refused                         | only the demo's outputs                          |
| finetune (classifier)      | refused before training         | an existing classifier folder replaced           |
| model.save / save_folder   | n/a (API)                       | a folder holding foreign files is refused        |
| convert                    | refused                         | OUT = / inside / around RAW refused always       |
"""
import json

import numpy as np
import pytest

from flowfm.cli import main
from flowfm.data import WindowDataset, save_folder
from flowfm.run_folder import LOCK_NAME


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("policy")
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((24, 3, 64)) * 0.1 + np.array([0, 0, 1.0])[None, :, None]).astype(np.float32)
    save_folder(WindowDataset(x=x, pid=np.repeat(np.arange(4), 6), y=np.tile([0, 1], 12)), root / "data")
    assert main(["pretrain", "--data", str(root / "data"), "--out", str(root / "run"), "--preset", "tiny",
                 "--epochs", "1", "--batch-size", "8", "--no-progress", "--null-fit-steps", "0",
                 "--z-bank-size", "0"]) == 0
    return root


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("command", ["embed", "sample"])
def test_single_file_outputs_need_overwrite(trained, tmp_path, capsys, command):
    out = tmp_path / ("z.npz" if command == "embed" else "s.npy")
    args = {"embed": ["embed", "--checkpoint", str(trained / "run" / "model"), "--data", str(trained / "data")],
            "sample": ["sample", "--checkpoint", str(trained / "run" / "model"), "--n", "2", "--steps", "2",
                       "--cond-data", str(trained / "data")]}[command]
    assert main(args + ["--out", str(out)]) == 0
    first = out.read_bytes()
    capsys.readouterr()
    assert main(args + ["--out", str(out)]) == 2
    _one_line_error(capsys, "already exists", "--overwrite")
    assert out.read_bytes() == first
    assert main(args + ["--out", str(out), "--overwrite"]) == 0


def test_export_folder_is_locked_and_overwrite_replaces_only_its_files(trained, tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "onnx"
    base = ["export", "--checkpoint", str(trained / "run" / "model"), "--out", str(out)]
    assert main(base) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(base) == 2
    _one_line_error(capsys, "already holds an ONNX export", "--overwrite")
    assert main(base + ["--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "sampler.json").is_file()
    assert "left 1 entry (notes.txt) it did not write" in capsys.readouterr().err
    assert not (out / LOCK_NAME).exists()
    capsys.readouterr()
    assert main(["export", "--checkpoint", str(trained / "run" / "model"), "--out", str(tmp_path / "bad"),
                 "--batch", "-3"]) == 2
    _one_line_error(capsys, "--batch: expected an integer in 1..65536")
    assert not (tmp_path / "bad").exists()   # refused before the folder was made


def test_shard_refuses_a_used_folder_and_leaves_nothing_when_refused(tmp_path, capsys):
    rec = tmp_path / "rec.npy"
    np.save(rec, (np.random.default_rng(0).standard_normal((30 * 40, 3)) * 0.1 + [0, 0, 1]).astype(np.float32))
    out = tmp_path / "shards"
    assert main(["shard", str(rec), "--fs", "30", "--out", str(out)]) == 0
    before = sorted(p.name for p in out.iterdir())
    capsys.readouterr()
    assert main(["shard", str(rec), "--fs", "30", "--out", str(out)]) == 2
    _one_line_error(capsys, "already holds a shard corpus", "--overwrite")
    assert "--resume" not in capsys.readouterr().err   # shard cannot resume: the message offers what exists
    assert sorted(p.name for p in out.iterdir()) == before
    (out / "README.txt").write_text("mine")
    assert main(["shard", str(rec), "--fs", "30", "--out", str(out), "--overwrite"]) == 0
    assert (out / "README.txt").read_text() == "mine"
    capsys.readouterr()
    assert main(["shard", str(tmp_path / "missing.npy"), "--fs", "30", "--out", str(tmp_path / "new")]) == 2
    assert not (tmp_path / "new").exists()


def test_finetune_refuses_an_existing_classifier_before_training(trained, tmp_path, capsys):
    out = tmp_path / "clf"
    base = ["finetune", "--checkpoint", str(trained / "run" / "model"), "--data", str(trained / "data"),
            "--mode", "linear", "--quiet", "--out", str(out)]
    assert main(base) == 0
    stamp = (out / "classifier.json").read_text()
    capsys.readouterr()
    assert main(base) == 2
    _one_line_error(capsys, "already exists", "--overwrite")
    assert (out / "classifier.json").read_text() == stamp
    assert main(base + ["--overwrite"]) == 0


def test_model_save_never_deletes_files_it_did_not_write(trained, tmp_path):
    from flowfm.model import FlowFM

    run = trained / "run"
    entries = sorted(p.name for p in run.iterdir())
    model = FlowFM.load(run / "model")
    with pytest.raises(FileExistsError, match="refusing to replace it"):
        model.save(run)                       # the run folder, not its model/ subfolder
    assert sorted(p.name for p in run.iterdir()) == entries
    model.save(tmp_path / "copy")
    model.save(tmp_path / "copy")             # an existing model folder is replaced
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == ["config.json", "model.safetensors"]


def test_save_folder_refuses_a_folder_with_other_files(tmp_path):
    ds = WindowDataset(x=np.zeros((2, 3, 16), np.float32), pid=np.array([0, 1]))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "subject1.csv").write_text("1,2,3\n")
    with pytest.raises(FileExistsError, match="subject1.csv"):
        save_folder(ds, raw, overwrite=True)
    assert (raw / "subject1.csv").is_file()
    save_folder(ds, tmp_path / "ds")
    save_folder(ds, tmp_path / "ds", overwrite=True)   # a dataset folder is replaced


@pytest.mark.parametrize("relation", ["same", "inside", "parent"])
def test_convert_output_apart_from_the_raw_folder(tmp_path, capsys, relation):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "keep.dat").write_text("raw data")
    out = {"same": raw, "inside": raw / "out", "parent": tmp_path}[relation]
    assert main(["convert", "wisdm", str(raw), str(out), "--overwrite"]) == 2
    _one_line_error(capsys, "RAW_DIR", "apart from the raw files")
    assert (raw / "keep.dat").read_text() == "raw data" and not (raw / "out").exists()


def test_demo_refuses_a_used_folder(tmp_path, capsys):
    (tmp_path / "summary.json").write_text(json.dumps({"old": True}))
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress"]) == 2
    _one_line_error(capsys, "already holds a demo run", "--overwrite")
    assert json.loads((tmp_path / "summary.json").read_text()) == {"old": True}


def test_evaluate_generation_refuses_existing_sweep_files(tmp_path, capsys):
    (tmp_path / "generation_sweep.json").write_text("{}")
    assert main(["evaluate-generation", "--flow", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "generation_sweep.json already exists", "--overwrite")
