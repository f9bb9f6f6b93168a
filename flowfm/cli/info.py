"""``flowfm info``."""
from __future__ import annotations




def resolution_lines(device) -> list[str]:
    """``flowfm info``'s table of what each backend request runs per op on ``device``, then the reasons (each
    distinct reason once, with the ops it applies to)."""
    from flowfm_kernels import dispatch

    requests = ("auto",) + dispatch.BACKENDS
    ops = dispatch.registered_ops()
    found = {(r.op, r.request): r for r in dispatch.explain_all(device)}
    width = max(len(op) for op in ops) + 2
    lines = [f"op resolution on {device} (what each request runs; '-' = raises):",
             "  " + "op".ljust(width) + "".join(q.ljust(8) for q in requests) + "auto order on CUDA"]
    for op in ops:
        cells = "".join((found[op, q].backend or "-").ljust(8) for q in requests)
        lines.append("  " + op.ljust(width) + cells + " > ".join(dispatch.cuda_preference(op)))
    reasons: dict[tuple[str, str], list[str]] = {}
    for op in ops:
        for q in requests:
            r = found[op, q]
            if r.reason != "requested":
                reasons.setdefault((q, r.reason), []).append(op)
    for (q, reason), which in reasons.items():
        scope = "all ops" if len(which) == len(ops) else ", ".join(which)
        lines.append(f"  {q} ({scope}): {reason}")
    for op in ops:
        for backend, note in dispatch.implementation_notes(op).items():
            lines.append(f"  {op} under {backend}: {note}")
    return lines


def run(args) -> int:
    import platform

    import torch

    import flowfm
    import flowfm_kernels
    from flowfm_kernels.dispatch import registered_ops

    print(f"flowfm {flowfm.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}")
    except ImportError:
        print("triton: not installed")
    cuda = torch.cuda.is_available()
    print(f"CUDA GPU: {torch.cuda.get_device_name(0) if cuda else 'none'}")
    devices = ["cpu", "cuda"] if cuda else ["cpu"]
    for device in devices:
        print(f"backends on {device}:")
        for backend, reason in flowfm_kernels.available_backends(device).items():
            print(f"  {backend:<7} {'available' if reason is None else 'unavailable: ' + reason}")
    print(f"ops: {', '.join(registered_ops())}")
    for device in devices:
        print("\n".join(resolution_lines(device)))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="versions, GPU and kernel backends (and why one is unavailable)")
    p.set_defaults(func=run)

