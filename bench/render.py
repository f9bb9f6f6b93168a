"""Render the benchmark JSON (``kernels_*.json``, ``sampling_*.json``, ``training_*.json`` and
``generation_sweep*.json`` from ``flowfm evaluate-generation``, ``time_to_quality*.json`` from ``flowfm compare``) into markdown tables and plots.

    python -m bench.render [--results bench/results] [--out bench/results/README.md] [--doc docs/results.md]

Writes (atomically) the full tables to ``--out`` and the plots beside the JSON: ``sampling_<device>_speedup.png``
(speed-up over the DDPM-1000 / largest-DDIM reference vs batch size) and, when the rows carry generation quality,
``sampling_<device>_quality.png`` (FFD vs sampling time). With ``--readme``, the block between
``<!-- bench:begin -->`` and ``<!-- bench:end -->`` in that file is replaced (nothing else in it is touched) by the
docs/design.md §7 targets (measured value, met / not met / not measured with the reason) and the per-suite tables, each
stating device, torch / triton versions, commit and settings. ``--check`` exits 1 when that block is out of date
instead of writing it. Other JSON files in the folder are ignored.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from flowfm.data.atomic import atomic_write_text

SUITES = ("kernels", "sampling", "training")


def _f(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def _table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_f(c) for c in row) + " |" for row in rows]
    return lines


def _env(doc: dict) -> list[str]:
    e = doc.get("environment", {})
    line = (f"Device: **{e.get('device_name', doc.get('device'))}** ({doc.get('device')}); torch {e.get('torch')}, "
            f"triton {e.get('triton')}, CUDA {e.get('cuda')}; commit `{e.get('git_commit')}`; "
            f"{e.get('cpu_count')} CPUs, {e.get('torch_threads')} torch threads; {e.get('time_utc')}"
            + ("; **quick run**" if doc.get("quick") else ""))
    out = [line, ""]
    c = doc.get("ceilings")
    if c:
        parts = [f"copy {c['copy_gbps']:.1f} GB/s"] + [f"{k[7:-7]} matmul {v:.2f} TFLOP/s" for k, v in c.items()
                                                       if k.startswith("matmul_") and k.endswith("_tflops")]
        out += ["Measured ceilings (this run): " + ", ".join(parts), ""]
    return out


def _unavailable(doc: dict) -> list[str]:
    items = doc.get("unavailable") or []
    if not items:
        return []
    seen, lines = set(), ["Not measured:", ""]
    for u in items:
        what = u.get("what") or f"{u.get('backend')} for {u.get('case')}"
        key = (u.get("backend") or what, u["reason"]) if "backend" in u else (what, u["reason"])
        if key in seen:
            continue
        seen.add(key)
        if "backend" in u:
            cases = sorted({v["case"] for v in items if v.get("backend") == u["backend"] and v["reason"] == u["reason"]})
            what = f"`{u['backend']}` ({', '.join(cases)})"
        lines.append(f"- {what}: {u['reason']}")
    return lines + [""]


def render_kernels(doc: dict) -> list[str]:
    gpu = doc.get("device") == "cuda"
    headers = ["op", "backend", "B x C x L", "median ms", "p20-p80 ms", "first ms", "GB/s", "GFLOP/s", "x eager"]
    if gpu:
        headers += ["% copy BW", "% matmul"]
    rows = []
    for r in doc["rows"]:
        row = [r["case"], r["backend"], f"{r['B']}x{r['C']}x{r['L']}", r["median_ms"],
               f"{r['p20_ms']:.3g}-{r['p80_ms']:.3g}", r["first_call_ms"], r["gbps"], r["tflops"] * 1e3,
               r.get("speedup_vs_eager")]
        if gpu:
            row += [f"{100 * r['frac_copy_bw']:.0f}", f"{100 * r['frac_matmul']:.1f}"]
        rows.append(row)
    return _table(headers, rows)


def _quality_cells(r: dict) -> list:
    if r.get("frechet") is None:
        note = r.get("quality", "n/a (random weights)")
        return [note, note, "-"]
    return [r["frechet"], r["discriminative_score"], r.get("frechet_le_reference")]


def render_sampling(doc: dict, compact: bool = False) -> list[str]:
    out = [f"Preset `{doc.get('preset')}`, weights: {doc.get('weights')}.", ""]
    q = doc.get("quality_setup")
    if q:
        c, ref = q["conditioning"], q["reference"]
        out += [f"Quality (lower is better): FFD = feature Frechet distance of {c['n']} windows generated from "
                f"E(x) of {q['data']} windows of {len(c['train_subjects'])} training subjects (seed {q['seed']}, "
                f"batch {q['batch']}) to those windows; disc. = discriminative score. Real vs real (held-out "
                f"subjects): FFD {_f(ref.get('real_vs_real_frechet'))}, disc. "
                f"{_f(ref.get('real_vs_real_discriminative_score'))}.", ""]
    headers = ["model", "method", "steps", "NFE", "batch", "CUDA graph", "latency ms"]
    headers += [] if compact else ["p20-p80 ms", "first ms"]
    headers += ["windows/s", "speed-up", "vs", "FFD", "disc. score", "FFD <= ref"]
    rows = []
    for r in doc["rows"]:
        row = [r["model"], r["method"], r["steps"], r["nfe"], r["batch"], r["cuda_graph"], r["median_ms"]]
        row += [] if compact else [f"{r['p20_ms']:.3g}-{r['p80_ms']:.3g}", r["first_call_ms"]]
        row += [r["windows_per_s"], r.get("speedup_vs_reference"), r.get("speedup_reference")] + _quality_cells(r)
        rows.append(row)
    out += _table(headers, rows)
    eq = doc.get("equal_quality")
    if eq:
        out += [""] + [f"- batch {e['batch']}: " + (
            f"**{_f(e['speedup'])}x faster at equal or better quality**: {e['setting']} (FFD {_f(e['frechet'])}) "
            f"vs {e['reference']} (FFD {_f(e['reference_frechet'])})" if e.get("speedup") else
            f"{e.get('note')} ({e['reference']}, FFD {_f(e['reference_frechet'])})") for e in eq]
    return out


def render_generation_sweep(doc: dict, compact: bool = False) -> list[str]:
    from flowfm.evaluation.generation_sweep import sweep_markdown

    return sweep_markdown(doc).rstrip("\n").split("\n")


def render_training(doc: dict, compact: bool = False) -> list[str]:
    out = [f"Preset `{doc.get('preset')}`, batch {doc.get('batch')}, {doc.get('optimizer')}, {doc.get('data')}.", ""]
    headers = ["model", "backend", "step ms", "p20-p80 ms", "first ms", "windows/s", "x FlowFM time", "params",
               "peak MiB"]
    rows = [[r["model"], r["backend"], r["median_ms"], f"{r['p20_ms']:.3g}-{r['p80_ms']:.3g}", r["first_call_ms"],
             r["windows_per_s"], r.get("step_time_vs_flowfm"), r["parameters"], r.get("peak_memory_mib")]
            for r in doc["rows"]]
    return out + _table(headers, rows)


def render_time_to_quality(doc: dict, compact: bool = False) -> list[str]:
    from flowfm.compare import time_to_quality_markdown

    out = [f"From `flowfm compare` ({doc.get('data')}): every method pretrained with the same budget and seeds, "
           f"linear-probe macro-F1 of the encoder after each epoch checkpoint (all labels).", ""]
    return out + time_to_quality_markdown(doc).rstrip("\n").split("\n")


RENDERERS = {"kernels": render_kernels, "sampling": render_sampling, "training": render_training,
             "generation_sweep": render_generation_sweep, "time_to_quality": render_time_to_quality}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def load_docs(results: Path) -> list[tuple[Path, dict]]:
    """(path, doc) of every result JSON with a known ``suite``, sorted by file name."""
    out = []
    for path in sorted(Path(results).glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("suite") in RENDERERS:
            out.append((path, doc))
    return out


def _join(lines: list[str]) -> str:
    """Lines -> text ending in one newline, runs of blank lines collapsed to one."""
    out: list[str] = []
    for line in lines:
        if line == "" and (not out or out[-1] == ""):
            continue
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _device(doc: dict) -> str:
    return doc.get("device") or doc.get("environment", {}).get("device", "?")


def _suite_section(path: Path, doc: dict, level: str, compact: bool) -> list[str]:
    suite = doc["suite"]
    lines = [f"{level} {suite} ({_device(doc)}) - `{path.name}`", ""]
    if suite != "generation_sweep":  # the sweep's own header states its environment
        lines += _env(doc)
    kwargs = {"compact": True} if compact and suite in ("sampling", "generation_sweep") else {}
    return lines + RENDERERS[suite](doc, **kwargs) + [""] + _unavailable(doc)


def render(results: Path) -> str:
    lines = ["# FlowFM benchmark results", "",
             "Generated by `python -m bench.render` from the JSON beside this file (medians after warm-up; "
             "first call separately). Do not edit by hand.", ""]
    docs = load_docs(results)
    for path, doc in docs:
        lines += _suite_section(path, doc, "##", compact=False)
        lines += [f"![{name}]({name})" for name in plot_names(path, doc)] + [""]
    if not docs:
        lines.append("(no benchmark results found)")
    return _join(lines)


# --------------------------------------------------------------------------------------------------------- plots
def plot_names(path: Path, doc: dict) -> list[str]:
    """File names (beside the JSON) of the plots this result gets: decided by the JSON alone, so the markdown does
    not depend on which plots happen to exist on disk."""
    if doc["suite"] == "sampling":
        stem = path.stem
        names = [f"{stem}_speedup.png"]
        if any(r.get("frechet") is not None for r in doc["rows"]):
            names.append(f"{stem}_quality.png")
        return names
    if doc["suite"] == "generation_sweep":
        return [f"{path.stem}_quality_vs_time.png"]
    return []


def _quality_batch(doc: dict) -> int:
    """The batch whose latencies the quality-vs-time plot uses: 64 when measured, else the largest."""
    batches = sorted({r["batch"] for r in doc["rows"] if r.get("frechet") is not None})
    return 64 if 64 in batches else batches[-1]


def write_plots(path: Path, doc: dict) -> list[Path]:
    from bench.figures import plot_speedup_vs_batch
    from flowfm.evaluation.generation_sweep import plot_quality_vs_time

    out = []
    for name in plot_names(path, doc):
        target = path.parent / name
        if name.endswith("_speedup.png"):
            out.append(plot_speedup_vs_batch(doc, target))
        elif doc["suite"] == "sampling":
            b = _quality_batch(doc)
            rows = [dict(r, seconds=r["median_ms"] / 1e3) for r in doc["rows"]
                    if r["batch"] == b and r.get("frechet") is not None]
            ref = (doc.get("quality_setup") or {}).get("reference", {}).get("real_vs_real_frechet")
            out.append(plot_quality_vs_time(rows, target, reference_ffd=ref,
                                            xlabel=f"latency of one batch of {b} (s, log)",
                                            title=f"FFD vs sampling latency, batch {b}, {_device(doc)} (labels: NFE)"))
        else:
            out.append(plot_quality_vs_time(doc["rows"], target, reference_ffd=doc["reference"].get(
                "real_vs_real_frechet"), title=f"{doc['data']}: FFD vs sampling time (labels: NFE)"))
    return out


# ---------------------------------------------------------------------------------------------- results block
def readme_block(results: Path, readme: Path) -> str:
    """The markdown that goes between the bench markers of ``readme`` (docs/results.md): the design's §7 targets, then
    each suite's tables and plots (links relative to that document's folder)."""
    from bench.targets import targets_table

    docs = load_docs(results)
    rel = Path(os.path.relpath(Path(results).resolve(), Path(readme).resolve().parent)).as_posix()
    lines = [f"_Generated by `python -m bench.render --doc docs/results.md` from `{rel}/*.json`; do not edit by hand "
             f"(tests/test_bench.py checks that this block matches the JSON)._", "",
             "Targets (docs/design.md §7):", ""] + targets_table(docs) + [""]
    for path, doc in docs:
        lines += _suite_section(path, doc, "####", compact=True)
        lines += [f"![{name}]({rel}/{name})" for name in plot_names(path, doc)] + [""]
    return _join(lines)


def replace_block(text: str, block: str, where: str = "the document") -> str:
    """``text`` with everything between the BEGIN and END marker lines replaced by ``block``."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{where} must contain exactly one {BEGIN} line followed by one {END} line")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{block}{END}{tail}"


def current_block(text: str) -> str:
    """What lies between the markers (the format :func:`replace_block` writes)."""
    replace_block(text, "")  # checks the markers
    return text.split(BEGIN, 1)[1].split(END, 1)[0].removeprefix("\n")


def update_readme(readme: Path, block: str) -> bool:
    """Replace the bench block of ``readme`` atomically; False (nothing written) when it is already up to date."""
    text = Path(readme).read_text()
    new = replace_block(text, block, str(readme))
    if new == text:
        return False
    atomic_write_text(readme, new)
    return True


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--out", default=None, help="default: <results>/README.md")
    parser.add_argument("--doc", "--readme", dest="readme", default=None,
                        help="also rewrite the block between the bench markers of this document (docs/results.md)")
    parser.add_argument("--check", action="store_true", help="with --readme: exit 1 if the block is out of date")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    results = Path(args.results)
    if args.check:
        if not args.readme:
            raise SystemExit("--check needs --doc")
        if current_block(Path(args.readme).read_text()) != readme_block(results, Path(args.readme)):
            raise SystemExit(f"{args.readme}: the bench block is out of date; run python -m bench.render "
                             f"--doc {args.readme}")
        print(f"{args.readme}: bench block up to date")
        return ""
    text = render(results)
    print(text)
    atomic_write_text(Path(args.out) if args.out else results / "README.md", text)
    if not args.no_plots:
        for path, doc in load_docs(results):
            for p in write_plots(path, doc):
                print(f"wrote {p}")
    if args.readme:
        changed = update_readme(Path(args.readme), readme_block(results, Path(args.readme)))
        print(f"{args.readme}: bench block {'updated' if changed else 'already up to date'}")
    return text


if __name__ == "__main__":
    main()
