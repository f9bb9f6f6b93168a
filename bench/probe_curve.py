"""Probe quality during pretraining: subject-wise linear-probe macro-F1 of the encoder after every epoch.

    python -m bench.probe_curve --name aug --epochs 6 [--config '{"encoder_view": "identical"}']
                                [--train '{"encoder_lr_scale": 1.0}'] [--out bench/results]

Pretrains the small FlowFM on all HAPT windows (labels unused) and, after each epoch, probes the frozen encoder
with all labels and with labels of 3 training subjects per fold (2 draws), GroupKFold(5). Writes
``<out>/probe_curve_<name>.json``. One torch thread, so two runs can share a 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flowfm.config import FlowFMConfig
from flowfm.data import load_hapt
from flowfm.data.atomic import atomic_write_text
from flowfm.evaluation import encode_windows, linear_probe
from flowfm.model import FlowFM
from flowfm.training import TrainConfig, pretrain


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--config", default="{}", help="JSON of FlowFMConfig overrides")
    parser.add_argument("--train", default="{}", help="JSON of TrainConfig overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_hapt()
    labelled = ds.labelled()
    torch.manual_seed(args.seed)
    model = FlowFM(FlowFMConfig(preset="small", **json.loads(args.config))).fit_normalizer(ds.x)
    rows = []

    def probe(epoch: int, record: dict) -> None:
        feats = encode_windows(model, labelled.x)
        full = linear_probe(feats, labelled.y, labelled.pid, seed=args.seed)["macro_f1"]["mean"]
        low = linear_probe(feats, labelled.y, labelled.pid, label_subjects=3, draws=2,
                           seed=args.seed)["macro_f1"]["mean"]
        rows.append({"epoch": epoch + 1, "loss": record["loss"], "probe_f1_all": full, "probe_f1_3_subjects": low,
                     "seconds": record["seconds"]})
        print(json.dumps(rows[-1]), flush=True)

    t0 = time.perf_counter()
    train = TrainConfig(epochs=args.epochs, warmup_steps=100, seed=args.seed, **json.loads(args.train))
    pretrain(model, ds.x, train, Path(args.out) / f"probe_curve_{args.name}_run", progress=False,
             on_epoch_end=probe)
    report = {"name": args.name, "config": json.loads(args.config), "train": json.loads(args.train),
              "seed": args.seed, "rows": rows, "wall_seconds": time.perf_counter() - t0,
              "device": "cpu", "torch": torch.__version__}
    atomic_write_text(Path(args.out) / f"probe_curve_{args.name}.json", json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
