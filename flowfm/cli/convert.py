"""``flowfm convert``."""
from __future__ import annotations

import sys




def run(args) -> int:
    from flowfm.data.converters import CONVERTERS, convert

    if args.list:
        for name, conv in CONVERTERS.items():
            print(f"{name:<12} {conv.description}")
        return 0
    if not (args.name and args.raw_dir and args.out_dir):
        print("error: usage: flowfm convert NAME RAW_DIR OUT_DIR (flowfm convert --list for the names)",
              file=sys.stderr)
        return 2
    try:
        summary = convert(args.name, args.raw_dir, args.out_dir, keep_unlabelled=args.keep_unlabelled,
                          overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary)
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a public dataset from its original raw files to a window folder "
                                       "(30 Hz, 10 s, g; --list shows the datasets)")
    p.add_argument("name", nargs="?", help="dataset: pamap2, wisdm, opportunity, realworld, adl, capture24")
    p.add_argument("raw_dir", nargs="?", help="folder holding the dataset's original files (searched recursively)")
    p.add_argument("out_dir", nargs="?", help="output folder: X.npy (N, 300, 3) in g, Y.npy, pid.npy, meta.json")
    p.add_argument("--list", action="store_true", help="list the converters with a one-line description")
    p.add_argument("--keep-unlabelled", action="store_true",
                   help="keep windows without a valid label (label -1), e.g. for pretraining")
    p.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists and is not empty")
    p.set_defaults(func=run)

