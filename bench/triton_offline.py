"""Compile every autotune config of FlowFM's Triton kernels for sm_90 without a GPU; report registers, spills, smem.

What it does: runs each Triton wrapper on small CPU tensors of a production shape with every kernel launch
*captured* instead of executed (the wrappers' device check is bypassed for the capture only), binds the captured
arguments exactly as Triton's launcher does (same specialisation: divisibility-16 attributes, ``== 1`` constants),
and compiles each config with ``triton.compile(ASTSource, target=GPUTarget("cuda", 90, 32))``. The PTX is run
through the ptxas Triton uses for sm_90 (from the wheel; ``-v --gpu-name sm_90a``) for registers and spill bytes; static
shared memory comes from the compiled kernel's metadata. For every config it also reports whether the kernel's
early prune (what the autotuner would keep on that shape) drops it, and counts vector loads/stores in the PTX
(``ld.global.v4`` etc.), so the effect of the alignment hints is visible.

Shapes: the small U-Net's (C 64 / 128 / 256 at L 300 / 150 / 75, 8 groups, and C 128 at L 300: 8,192-element
groups); the batch only changes sample strides, so a
small B is compiled (the grid is not part of the compiled code). Output: JSON (``--out``, default
``bench/results/triton_offline_sm90.json``) and a markdown table on stdout. Offline numbers (compiler output), not
GPU timings. Uses Triton internals (``create_function_from_signature``, ``JITFunction._pack_args``): tested with
triton 3.9.

    python -m bench.triton_offline [--out PATH] [--quick]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9 warns when unset; 1 = its default

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.autotuner import Autotuner  # noqa: E402
from triton.runtime.jit import JITFunction, create_function_from_signature  # noqa: E402

from flowfm_kernels import triton_support as ts  # noqa: E402
from flowfm_kernels.conv_block import triton as ct  # noqa: E402
from flowfm_kernels.gn_film_silu import triton as gt  # noqa: E402

SMEM_LIMIT = 232448  # sm_90: 227 KB of shared memory per block (opt-in maximum)
TARGET = GPUTarget("cuda", 90, 32)


def _ptxas() -> str:
    """The ptxas Triton itself uses for sm_90 (triton 3.9 picks the wheel's CUDA 13 ``ptxas-blackwell``)."""
    from triton.backends.nvidia.compiler import get_ptxas
    path = get_ptxas(90).path
    if not os.path.exists(path):
        raise FileNotFoundError(f"no ptxas ({path}); offline compilation needs the one in the triton wheel")
    return path


def _kernels() -> list:
    """Every launchable Triton kernel object of the conv / GN modules (autotuned or plain @triton.jit)."""
    found = []
    for mod in (ct, gt):
        for name in sorted(vars(mod)):
            obj = getattr(mod, name)
            if isinstance(obj, (Autotuner, JITFunction)) and name.startswith("_") and name.endswith("_kernel"):
                found.append((f"{mod.__name__.rsplit('.', 2)[-2]}.{name}", obj))
    return found


@contextlib.contextmanager
def capturing():
    """Launches of the conv / GN kernels are recorded (kernel, args, kwargs) instead of run; device checks pass."""
    calls = []
    saved = []
    for _, obj in _kernels():
        def fake_run(*args, _obj=obj, **kwargs):
            calls.append((_obj, args, {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")},
                          kwargs.get("grid")))
        saved.append((obj, obj.run))
        obj.run = fake_run
    launch = [(m, m.check_launchable) for m in (ct, gt) if hasattr(m, "check_launchable")]
    for m, _ in launch:
        m.check_launchable = lambda *t: t[0].device
    try:
        yield calls
    finally:
        for obj, run in saved:
            obj.run = run
        for m, fn in launch:
            m.check_launchable = fn


def _jit_fn(obj) -> JITFunction:
    fn = obj
    while not isinstance(fn, JITFunction):
        fn = fn.fn
    return fn


def _compile(fn: JITFunction, args, kwargs, config: triton.Config | None):
    from triton.compiler import make_backend
    backend = make_backend(TARGET)
    all_kwargs = dict(kwargs)
    if config is not None:
        all_kwargs.update(config.all_kwargs())
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound_args, specialization, options = binder(*args, **all_kwargs)
    options, signature, constexprs, attrs = fn._pack_args(backend, all_kwargs, bound_args, specialization, options)
    return triton.compile(ASTSource(fn, signature, constexprs, attrs), target=TARGET, options=options.__dict__)


_PTXAS_RE = re.compile(r"Used (\d+) registers")
_SPILL_RE = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def _ptxas_report(ptx: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        res = subprocess.run([_ptxas(), "-v", "--gpu-name", "sm_90a", src, "-o", os.path.join(tmp, "k.cubin")],
                             capture_output=True, text=True, check=True)
    log = res.stdout + res.stderr
    regs = _PTXAS_RE.search(log)
    spill = _SPILL_RE.search(log)
    return dict(registers=int(regs.group(1)) if regs else None,
                spill_store_bytes=int(spill.group(1)) if spill else None,
                spill_load_bytes=int(spill.group(2)) if spill else None)


_LDST_RE = re.compile(r"\b(ld|st)\.global((?:\.[A-Za-z0-9:_]+)*)\s")
_CP_ASYNC_RE = re.compile(r"cp\.async\.c[ag]\.shared\.global\s*\[[^\]]*\],\s*\[[^\]]*\],\s*(0x[0-9a-f]+|\d+)")


def _access_widths(ptx: str) -> dict:
    """Bytes moved per global access instruction, counted: ``{"load": {bytes: n}, "store": {...}, "cp_async":
    {...}}`` (``ld.global.v4.b32`` = 16 bytes; a 4-byte fp32 / 2-byte bf16 entry is a scalar access)."""
    out = {"load": {}, "store": {}, "cp_async": {}}
    for op, mods in _LDST_RE.findall(ptx):
        parts = mods.strip(".").split(".")
        vec = next((int(p[1:]) for p in parts if re.fullmatch(r"v[248]", p)), 1)
        bits = next((int(p[1:]) for p in reversed(parts) if re.fullmatch(r"[bfsu](8|16|32|64)", p)), 32)
        width = vec * bits // 8
        side = out["load" if op == "ld" else "store"]
        side[width] = side.get(width, 0) + 1
    for size in _CP_ASYNC_RE.findall(ptx):
        width = int(size, 0)
        out["cp_async"][width] = out["cp_async"].get(width, 0) + 1
    return {k: {str(w): n for w, n in sorted(v.items())} for k, v in out.items()}


def _config_str(config) -> str:
    if config is None:
        return "-"
    meta = ",".join(f"{k}={v}" for k, v in config.kwargs.items())
    return f"{meta + ' ' if meta else ''}w{config.num_warps} s{config.num_stages}"


def _kept_by_prune(obj, args, kwargs) -> list | None:
    """The configs the autotuner's early prune keeps for these arguments (None: no prune / not autotuned)."""
    if not isinstance(obj, Autotuner) or obj.early_config_prune is None:
        return None
    nargs = dict(zip(obj.arg_names, args))
    return obj.early_config_prune(obj.configs, nargs, **kwargs)


def _workloads(quick: bool):
    """(label, callable) pairs: each runs one wrapper at a production shape on CPU tensors."""
    shapes = [(64, 64, 300, 8), (128, 128, 150, 8)] if quick else \
        [(64, 64, 300, 8), (128, 128, 150, 8), (256, 256, 75, 8), (128, 128, 300, 8)]
    dtypes = [torch.float32, torch.bfloat16]
    B = 4
    out = []
    for cin, cout, L, G in shapes:
        for dtype in dtypes:
            tag = f"B{B} C{cin}->{cout} L{L} G{G} {str(dtype).replace('torch.', '')}"
            x = torch.randn(B, cin, L).to(dtype)
            w = torch.randn(cout, cin, 3).to(dtype)
            bias = torch.randn(cout).to(dtype)
            h = torch.randn(B, cout, L).to(dtype)
            gamma, beta = torch.randn(cout).to(dtype), torch.randn(cout).to(dtype)
            scale, shift = torch.randn(B, cout).to(dtype), torch.randn(B, cout).to(dtype)
            mean = torch.zeros(B, G)
            rstd = torch.ones(B, G)

            def conv_fwd(x=x, w=w, bias=bias):
                ct.conv1d_k3_forward(x, w, bias, "tf32", with_stats=True)

            def wgrad(h=h, x=x):
                ct.conv1d_k3_wgrad(h, x, "tf32")

            def gn_fwd(h=h, gamma=gamma, beta=beta, scale=scale, shift=shift):
                gt.gn_film_silu_forward(h, gamma, beta, scale, shift, G)

            def gn_tiled_fwd(h=h, mean=mean, rstd=rstd, gamma=gamma, beta=beta, scale=scale, shift=shift):
                gt.group_stats(h, G)
                gt.gn_film_silu_apply(h, mean, rstd, gamma, beta, scale, shift, G)

            def gn_bwd(h=h, mean=mean, rstd=rstd, gamma=gamma, beta=beta, scale=scale, shift=shift):
                gt.gn_film_silu_backward_core(h, h, mean, rstd, gamma, beta, scale, shift, G)

            out += [(tag, conv_fwd), (tag, wgrad), (tag, gn_fwd), (tag, gn_tiled_fwd), (tag, gn_bwd)]
            if gt.use_fused(cout // G, L):
                def gn_tiled_bwd(h=h, mean=mean, rstd=rstd, gamma=gamma, beta=beta, scale=scale, shift=shift):
                    saved = gt.FUSED_MAX_ELEMS
                    gt.FUSED_MAX_ELEMS = 0  # force the tiled path (its kernels at this shape)
                    try:
                        gt.gn_film_silu_backward_core(h, h, mean, rstd, gamma, beta, scale, shift, G)
                    finally:
                        gt.FUSED_MAX_ELEMS = saved
                out.append((tag + " (tiled)", gn_tiled_bwd))
    return out


def run(quick: bool = False) -> dict:
    if ts.INTERPRETED_AT_IMPORT:
        sys.exit("bench.triton_offline compiles the GPU configs: run it without TRITON_INTERPRET")
    rows = []
    seen = set()
    for tag, work in _workloads(quick):
        with capturing() as calls:
            work()
        for obj, args, kwargs, _grid in calls:
            name = next(n for n, o in _kernels() if o is obj)
            configs = obj.configs if isinstance(obj, Autotuner) else [None]
            kept = _kept_by_prune(obj, args, kwargs)
            for config in configs:
                key = (tag, name, _config_str(config))
                if key in seen:
                    continue
                seen.add(key)
                t0 = time.time()
                row = dict(shape=tag, kernel=name, config=_config_str(config),
                           kept_by_prune=None if kept is None else any(config is k for k in kept))
                try:
                    k = _compile(_jit_fn(obj), args, kwargs, config)
                    row.update(_ptxas_report(k.asm["ptx"]))
                    row["shared_bytes"] = int(k.metadata.shared)
                    row["smem_over_limit"] = row["shared_bytes"] > SMEM_LIMIT
                    row["access_bytes"] = _access_widths(k.asm["ptx"])
                except Exception as exc:  # noqa: BLE001 - report (e.g. out of shared memory) and go on
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                row["compile_s"] = round(time.time() - t0, 2)
                rows.append(row)
                print(_md_row(row), flush=True)
    return dict(target="cuda sm_90 (ptxas --gpu-name sm_90a)", triton=triton.__version__, torch=torch.__version__,
                smem_limit_bytes=SMEM_LIMIT, note="offline compiler output, no GPU run", rows=rows)


def _widths(d: dict) -> str:
    return " ".join(f"{w}B:{n}" for w, n in d.items()) or "-"


def _md_row(r: dict) -> str:
    acc = r.get("access_bytes", {})
    return (f"| {r['shape']} | {r['kernel'].split('.')[-1]} | {r['config']} | {r.get('kept_by_prune')} | "
            f"{r.get('registers')} | {r.get('spill_store_bytes')}/{r.get('spill_load_bytes')} | "
            f"{r.get('shared_bytes')} | {_widths(acc.get('load', {}))} | {_widths(acc.get('cp_async', {}))} | "
            f"{_widths(acc.get('store', {}))} | {r.get('error', '')} |")


MD_HEADER = ("| shape | kernel | config | kept by prune | regs | spill st/ld B | smem B | ld.global widths | "
             "cp.async widths | st.global widths | error |\n|---|---|---|---|---|---|---|---|---|---|---|")


def summary(report: dict) -> list[dict]:
    """Per (kernel, dtype): configs compiled / kept by the prune, worst registers and spills among the kept configs
    (and among all), configs over the smem limit (and whether the prune keeps any), and the global-load widths
    summed over the kept configs (bytes per instruction: count)."""
    groups: dict = {}
    for r in report["rows"]:
        if "error" in r:
            continue
        dtype = r["shape"].split()[4]
        groups.setdefault((r["kernel"].split(".")[-1], dtype), []).append(r)
    out = []
    for (kernel, dtype), rows in sorted(groups.items()):
        kept = [r for r in rows if r["kept_by_prune"] is not False]
        loads: dict = {}
        for r in kept:
            for part in ("load", "cp_async"):
                for w, n in r["access_bytes"][part].items():
                    loads[w] = loads.get(w, 0) + n
        out.append(dict(kernel=kernel, dtype=dtype, configs=len(rows), kept=len(kept),
                        max_regs_kept=max((r["registers"] for r in kept), default=None),
                        max_spill_kept=max((r["spill_store_bytes"] + r["spill_load_bytes"] for r in kept), default=0),
                        max_spill_all=max(r["spill_store_bytes"] + r["spill_load_bytes"] for r in rows),
                        over_smem=sum(r["smem_over_limit"] for r in rows),
                        over_smem_kept=sum(r["smem_over_limit"] for r in kept),
                        load_widths={k: loads[k] for k in sorted(loads, key=int)}))
    return out


def summary_md(report: dict, title: str) -> str:
    lines = [f"### {title} (triton {report['triton']}, {len(report['rows'])} compiled configs)", "",
             "| kernel | dtype | configs | kept | max regs (kept) | max spill B (kept) | max spill B (all) | "
             "> 227 KB smem (kept) | global load widths, kept configs (bytes: instructions) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary(report):
        lines.append(f"| {s['kernel']} | {s['dtype']} | {s['configs']} | {s['kept']} | {s['max_regs_kept']} | "
                     f"{s['max_spill_kept']} | {s['max_spill_all']} | {s['over_smem']} ({s['over_smem_kept']}) | "
                     f"{_widths(s['load_widths'])} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                 "triton_offline_sm90.json"))
    p.add_argument("--quick", action="store_true", help="two shapes only")
    p.add_argument("--label", default="this tree")
    p.add_argument("--compare", default=None, help="an earlier JSON of this tool: write both summaries")
    p.add_argument("--from-json", default=None, help="re-render the summaries of an existing JSON (no compile)")
    a = p.parse_args(argv)
    if a.from_json:
        with open(a.from_json) as f:
            report = json.load(f)
        return _write_markdown(report, a.out, a.compare)
    print(MD_HEADER)
    report = run(a.quick)
    report["label"] = a.label
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, a.out)
    return _write_markdown(report, a.out, a.compare)


MD_NOTE = """Registers and spill bytes per thread from ptxas -v (the ptxas Triton uses for sm_90), static shared memory
from the compiled kernel; "kept" = configs the kernel's early prune keeps at that shape (what the autotuner may
time). Load widths count global load / cp.async instructions by bytes per instruction over the kept configs: in
the GroupNorm span / row kernels the 2- and 4-byte entries are the per-element gathers of the FiLM parameters and
(B, G) statistics (a few distinct, L1-resident addresses per warp), the 16-byte entries the loads of h / dy; in the
conv kernels the 4-byte cp.async entries are the shifted taps' x tiles (and, in fp32, all x tiles: the tf32 MMA
takes them transposed). Offline compiler output only; no GPU ran any of this.
"""


def _write_markdown(report: dict, out: str, compare) -> int:
    md = [summary_md(report, report.get("label", "this tree"))]
    if compare:
        with open(compare) as f:
            before = json.load(f)
        md.insert(0, summary_md(before, before.get("label", compare)))
    md_path = os.path.splitext(out)[0] + ".md"
    with open(md_path + ".tmp", "w") as f:
        f.write("# Offline sm_90 compile of every Triton autotune config (no GPU run)\n\n"
                "Generated by `python -m bench.triton_offline`; per-config rows in the JSON beside this file.\n\n"
                + MD_NOTE + "\n" + "\n".join(md))
    os.replace(md_path + ".tmp", md_path)
    print("\n".join(md))
    print(f"wrote {md_path} ({len(report['rows'])} compiled configs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
