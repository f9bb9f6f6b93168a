"""``flowfm export``."""
from __future__ import annotations


def run(args) -> int:
    from flowfm.checkpoint import load_model
    from flowfm.export.onnx_export import export_onnx

    model = load_model(args.checkpoint, map_location="cpu")
    out = export_onnx(model, args.out, batch=args.batch, length=args.length)
    length = args.length or model.config.window
    batch = "dynamic" if args.batch is None else args.batch
    print(f"encoder.onnx, velocity.onnx, sampler.json (batch {batch}, length {length}) -> {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="write the encoder and velocity network as ONNX for the ORT runner")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="folder for encoder.onnx, velocity.onnx, sampler.json")
    p.add_argument("--batch", type=int, default=None, help="fixed batch size (default: dynamic)")
    p.add_argument("--length", type=int, default=None, help="window length (default: the training window)")
    p.set_defaults(func=run)
