"""Every ``flowfm`` command against missing, invalid, negative and absurd input: each case must end in one line
``error: ...`` that names the problem (the needle below), exit code 2, no traceback, and nothing written at the
command's output path.

| command | cases (argument or input -> what the error names) |
|---|---|
| (any) | unknown command; missing required argument |
| pretrain | --epochs 0; --batch-size -1; --lr nan; --lr 0; --p-uncond 2; --data missing; --data garbage X.npy; --data a single window (< batch); --device cuda without a GPU; --resume with nothing to resume |
| sample | --n -3; --n 10**12; --steps 0; --steps 10**9; --guidance inf; --checkpoint missing; tampered weights; config with an unknown key; config sizes that would allocate 100 GB; config relabelled as another method; a size given as a string; a config far larger than its weights (no config checksum); config + weights of different models |
| embed | --batch-size 0; --fs -30; --data garbage file; --checkpoint not a model |
| evaluate | --seeds 0; --folds 1; --draws 0; --val-fraction 1.5; --label-subjects more than exist; a one-subject dataset; a one-class dataset |
| finetune | --max-epochs 0; one-class dataset; --checkpoint tampered |
| predict | --model missing; --model a model (not a classifier) folder |
| export | --batch -3; --length 5 |
| shard | --fs 0; --windows-per-shard 0; a recording of text |
| prepare | a CSV with no time column; a missing file |
| convert | unknown dataset; RAW_DIR missing |
| compare | --seeds 0; --folds 1; --label-subjects 0; --methods unknown; --variant with a bad flag; --epochs -2 |
| evaluate-generation | --n -3; no checkpoint given |
| bench | unknown suite |
| demo | --epochs 0 |
"""
import json
import shutil

import numpy as np
import pytest

from flowfm.cli import main
from flowfm.data import WindowDataset, save_folder


def _windows(n, rng, length=64):
    return (rng.standard_normal((n, 3, length)) * 0.1 + np.array([0, 0, 1.0])[None, :, None]).astype(np.float32)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    save_folder(WindowDataset(x=_windows(24, rng), pid=np.repeat(np.arange(4), 6), y=np.tile([0, 1], 12)),
                root / "data")
    save_folder(WindowDataset(x=_windows(12, rng), pid=np.zeros(12, int), y=np.tile([0, 1], 6)), root / "one_subject")
    save_folder(WindowDataset(x=_windows(12, rng), pid=np.repeat(np.arange(3), 4), y=np.zeros(12, int)),
                root / "one_class")
    save_folder(WindowDataset(x=_windows(1, rng), pid=np.zeros(1, int)), root / "one_window")
    (root / "garbage").mkdir()
    (root / "garbage" / "X.npy").write_bytes(b"this is not a numpy file" * 10)
    (root / "text.npy").write_text("hello\nworld\n")
    (root / "notime.csv").write_text("x,y,z\n0,0,1\n0,0,1\n")
    common = ["--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--no-progress", "--null-fit-steps", "0",
              "--z-bank-size", "0"]
    for name, seed in (("run", "0"), ("run_b", "1")):
        assert main(["pretrain", "--data", str(root / "data"), "--out", str(root / name), "--seed", seed] + common) == 0
    model = root / "run" / "model"
    tampered = root / "tampered"
    shutil.copytree(model, tampered)
    blob = bytearray((tampered / "model.safetensors").read_bytes())
    blob[-1] ^= 0xFF
    (tampered / "model.safetensors").write_bytes(bytes(blob))
    unknown = root / "unknown_key"
    shutil.copytree(model, unknown)
    doc = json.loads((unknown / "config.json").read_text())
    doc["config"]["wings"] = 2
    doc.pop("config_sha256")   # edited configs without a checksum (older files) still meet the field checks
    (unknown / "config.json").write_text(json.dumps(doc))
    huge = root / "huge"
    shutil.copytree(model, huge)
    doc = json.loads((huge / "config.json").read_text())
    doc["config"].update(unet_channels=[4096] * 8, unet_blocks=16)   # ~26 billion parameters
    doc.pop("config_sha256")
    (huge / "config.json").write_text(json.dumps(doc))
    for name, change in (("relabelled", {"method": "diffusion"}), ("string_size", {"config": {"unet_blocks": "2"}}),
                         ("wide_config", {"config": {"unet_channels": [2048] * 4, "unet_blocks": 4}})):
        shutil.copytree(model, root / name)
        doc = json.loads((root / name / "config.json").read_text())
        for key, value in change.items():
            doc[key] = {**doc[key], **value} if isinstance(value, dict) else value
        if name != "relabelled":
            doc.pop("config_sha256")   # as files written before config checksums: the field checks still hold
        (root / name / "config.json").write_text(json.dumps(doc))
    swapped = root / "swapped"
    shutil.copytree(model, swapped)
    shutil.copy(root / "run_b" / "model" / "model.safetensors", swapped / "model.safetensors")
    return root


M = "{root}/run/model"
CASES = [
    ("unknown command", ["fly"], "invalid choice: 'fly'"),
    ("missing required", ["sample"], "required: --checkpoint"),
    ("pretrain epochs 0", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--epochs", "0"], "--epochs"),
    ("pretrain batch -1", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--batch-size", "-1"],
     "--batch-size: expected an integer in 1..65536"),
    ("pretrain lr nan", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--lr", "nan"], "--lr"),
    ("pretrain lr 0", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--lr", "0"], "(0, 10]"),
    ("pretrain p-uncond 2", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--p-uncond", "2"], "[0, 1]"),
    ("pretrain data missing", ["pretrain", "--data", "{root}/nowhere", "--out", "{out}"], "nowhere"),
    ("pretrain data garbage", ["pretrain", "--data", "{root}/garbage", "--out", "{out}"], "X.npy"),
    ("pretrain one window", ["pretrain", "--data", "{root}/one_window", "--out", "{out}", "--preset", "tiny"],
     "1 window(s), fewer than --batch-size 64"),
    ("pretrain resume nothing", ["pretrain", "--data", "{root}/data", "--out", "{out}", "--resume"],
     "no complete checkpoint"),
    ("sample n -3", ["sample", "--checkpoint", M, "--n", "-3", "--out", "{out}"], "--n"),
    ("sample n 1e12", ["sample", "--checkpoint", M, "--n", str(10**12), "--out", "{out}"], "1..1000000"),
    ("sample steps 0", ["sample", "--checkpoint", M, "--steps", "0", "--out", "{out}"], "--steps"),
    ("sample steps 1e9", ["sample", "--checkpoint", M, "--steps", str(10**9), "--out", "{out}"], "1..10000"),
    ("sample guidance inf", ["sample", "--checkpoint", M, "--guidance", "inf", "--out", "{out}"], "--guidance"),
    ("sample checkpoint missing", ["sample", "--checkpoint", "{root}/nowhere", "--out", "{out}"], "nowhere"),
    ("sample tampered weights", ["sample", "--checkpoint", "{root}/tampered", "--out", "{out}"], "checksum"),
    ("sample unknown config key", ["sample", "--checkpoint", "{root}/unknown_key", "--out", "{out}"], "wings"),
    ("sample 100 GB config", ["sample", "--checkpoint", "{root}/huge", "--out", "{out}"], "billion parameters"),
    ("sample relabelled method", ["sample", "--checkpoint", "{root}/relabelled", "--out", "{out}"],
     "edited after it was written"),
    ("sample string size", ["sample", "--checkpoint", "{root}/string_size", "--out", "{out}"],
     "unet_blocks must be an integer or null, got '2'"),
    ("sample config not of these weights", ["sample", "--checkpoint", "{root}/wide_config", "--out", "{out}"],
     "does not belong to these weights"),
    ("sample swapped weights", ["sample", "--checkpoint", "{root}/swapped", "--out", "{out}"], "checksum"),
    ("embed batch 0", ["embed", "--checkpoint", M, "--data", "{root}/data", "--batch-size", "0", "--out", "{out}"],
     "--batch-size"),
    ("embed fs -30", ["embed", "--checkpoint", M, "--data", "{root}/data", "--fs", "-30", "--out", "{out}"], "--fs"),
    ("embed garbage data", ["embed", "--checkpoint", M, "--data", "{root}/text.npy", "--fs", "30", "--out", "{out}"],
     "text.npy"),
    ("embed not a model", ["embed", "--checkpoint", "{root}/data", "--data", "{root}/data", "--out", "{out}"],
     "model.safetensors is missing"),
    ("evaluate seeds 0", ["evaluate", "--checkpoint", M, "--data", "{root}/data", "--seeds", "0", "--out", "{out}"],
     "--seeds"),
    ("evaluate folds 1", ["evaluate", "--checkpoint", M, "--data", "{root}/data", "--folds", "1", "--out", "{out}"],
     "--folds"),
    ("evaluate draws 0", ["evaluate", "--checkpoint", M, "--data", "{root}/data", "--draws", "0", "--out", "{out}"],
     "--draws"),
    ("evaluate val 1.5", ["evaluate", "--checkpoint", M, "--data", "{root}/data", "--val-fraction", "1.5",
                          "--out", "{out}"], "--val-fraction"),
    ("evaluate k > subjects", ["evaluate", "--checkpoint", M, "--data", "{root}/data", "--folds", "2",
                               "--label-subjects", "50", "--out", "{out}"], "label"),
    ("evaluate one subject", ["evaluate", "--checkpoint", M, "--data", "{root}/one_subject", "--out", "{out}"],
     "subjects"),
    ("evaluate one class", ["evaluate", "--checkpoint", M, "--data", "{root}/one_class", "--folds", "3",
                            "--out", "{out}"], "class"),
    ("finetune epochs 0", ["finetune", "--checkpoint", M, "--data", "{root}/data", "--max-epochs", "0",
                           "--out", "{out}"], "--max-epochs"),
    ("finetune one class", ["finetune", "--checkpoint", M, "--data", "{root}/one_class", "--out", "{out}"], "class"),
    ("finetune tampered", ["finetune", "--checkpoint", "{root}/tampered", "--data", "{root}/data", "--out", "{out}"],
     "checksum"),
    ("predict model missing", ["predict", "--model", "{root}/nowhere", "--data", "{root}/data", "--out", "{out}"],
     "nowhere"),
    ("predict not a classifier", ["predict", "--model", M, "--data", "{root}/data", "--out", "{out}"],
     "not a classifier"),
    ("export batch -3", ["export", "--checkpoint", M, "--out", "{out}", "--batch", "-3"], "--batch"),
    ("export length 5", ["export", "--checkpoint", M, "--out", "{out}", "--length", "5"], "--length"),
    ("shard fs 0", ["shard", "{root}/text.npy", "--fs", "0", "--out", "{out}"], "--fs"),
    ("shard per-shard 0", ["shard", "{root}/text.npy", "--fs", "30", "--windows-per-shard", "0", "--out", "{out}"],
     "--windows-per-shard"),
    ("shard text recording", ["shard", "{root}/text.npy", "--fs", "30", "--out", "{out}"], "text.npy"),
    ("prepare no time column", ["prepare", "{root}/notime.csv", "--out", "{out}"], "notime.csv"),
    ("prepare missing file", ["prepare", "{root}/absent.csv", "--out", "{out}"], "absent.csv"),
    ("convert unknown", ["convert", "hapt2", "{root}/data", "{out}"], "unknown dataset 'hapt2'"),
    ("convert raw missing", ["convert", "wisdm", "{root}/nowhere", "{out}"], "nowhere"),
    ("compare seeds 0", ["compare", "--data", "{root}/data", "--out", "{out}", "--seeds", "0"], "--seeds"),
    ("compare folds 1", ["compare", "--data", "{root}/data", "--out", "{out}", "--folds", "1"], "--folds"),
    ("compare label 0", ["compare", "--data", "{root}/data", "--out", "{out}", "--label-subjects", "0"],
     "label regimes"),
    ("compare unknown method", ["compare", "--data", "{root}/data", "--out", "{out}", "--methods", "flowfm,gan"],
     "gan"),
    ("compare bad variant", ["compare", "--data", "{root}/data", "--out", "{out}", "--variant",
                             "V=--method flowfm --wings 2"], "--wings"),
    ("compare epochs -2", ["compare", "--data", "{root}/data", "--out", "{out}", "--epochs", "-2"], "--epochs"),
    ("evaluate-generation n -3", ["evaluate-generation", "--flow", M, "--n", "-3", "--out", "{out}"], "--n"),
    ("evaluate-generation none", ["evaluate-generation", "--out", "{out}"], "--checkpoint"),
    ("bench unknown suite", ["bench", "speed"], "invalid choice: 'speed'"),
    ("demo epochs 0", ["demo", "--epochs", "0", "--out", "{out}"], "--epochs"),
]


@pytest.mark.parametrize("argv, needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_one_clear_line_and_writes_nothing(env, tmp_path, capsys, argv, needle):
    out = tmp_path / "out"
    args = [a.format(root=env, out=out) for a in argv]
    before = sorted(p.name for p in env.rglob("*"))
    rc = main(args)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert needle in err, err
    assert not out.exists(), f"{out} was written"
    assert sorted(p.name for p in env.rglob("*")) == before
