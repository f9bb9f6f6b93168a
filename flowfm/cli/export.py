"""``flowfm export``."""
from __future__ import annotations

from flowfm.argument_types import BATCH, int_in
from flowfm.cli.common import add_overwrite


def run(args) -> int:
    from flowfm.checkpoint import load_model
    from flowfm.export.onnx_export import EXPORT_FILES, check_export_args, export_onnx
    from flowfm.run_folder import owned

    model = load_model(args.checkpoint, map_location="cpu")
    check_export_args(model, args.batch, args.length)
    with owned(args.out, overwrite=args.overwrite, what="ONNX export", writes=EXPORT_FILES,
               resumable=False):
        out = export_onnx(model, args.out, batch=args.batch, length=args.length)
    length = args.length or model.config.window
    batch = "dynamic" if args.batch is None else args.batch
    print(f"encoder.onnx, velocity.onnx, sampler.json (batch {batch}, length {length}) -> {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write the encoder and velocity network as ONNX for the ORT runner")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for encoder.onnx, velocity.onnx, sampler.json")
    p.add_argument("--batch", type=BATCH, default=None, help="fixed batch size (default: dynamic)")
    add_overwrite(p, "the export in --out")
    p.add_argument("--length", type=int_in(16, 1_000_000), default=None,
                   help="window length (default: the training window)")
    p.set_defaults(func=run)
