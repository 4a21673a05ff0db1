"""What does a margin cost? Forward + backward time and peak memory of every arclib margin loss, against the
NormFace "floor" written inline here and against pytorch-metric-learning's ArcFaceLoss.

The floor is the least any of these losses can do: normalise x, normalise W, one matmul, scale, cross-entropy.
The target (issue): ArcFace at most 1.03× the floor's time, and no N×C buffer beyond the floor's.

    python benchmarks/loss_overhead.py                       # N = 256, d = 512, C in {10, 1e3, 1e4, 1e5}
    python benchmarks/loss_overhead.py --classes 10 1000 --repeats 50 --methods arcface pml --profile arcface

Runs are interleaved: each repeat times every method once, in an order rotated from repeat to repeat, so a
slow patch of the machine hits all methods alike; the table shows medians. By default 20 rounds at C <= 1e3,
5 at 1e4 and 3 at 1e5 (one round at C = 1e5 takes tens of seconds on 2 cores), about 5 minutes on 2 cores. Peak memory is the most memory
allocated at any point of one forward + backward beyond what was allocated before it (weights and inputs
excluded, the gradients included): on CPU from the allocation events of torch's profiler, on CUDA from
torch.cuda.max_memory_allocated (MB here is MiB). With d = 512 > N = 256 the peak is usually set in backward
by the C×d weight gradients, which hides N×C buffers; so the table also gives the memory still held when the
forward pass ends (what autograd saved for backward), and "extra N×C held" = (held − the floor's held) /
(N·C·4 bytes): how many float32 N×C buffers a loss keeps beyond the floor's (shown where N·C·4 ≥ 256 KiB).
The "min" columns are the fastest round: on a shared machine they are the least disturbed by other work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from machine import describe  # benchmarks/machine.py, beside this script
from torch import nn

from arclib.losses import NAMES, make

S, M = 64.0, 0.5  # the ArcFace paper's scale and margin, for the floor, arcface and PML alike


class Floor(nn.Module):
    """NormFace with nothing else: the cost every cosine-softmax loss pays."""

    def __init__(self, weight: nn.Parameter, s: float = S) -> None:
        super().__init__()
        self.weight, self.s = weight, s

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        return F.cross_entropy(self.s * cos, labels)


def build_methods(num_classes: int, dim: int, device: torch.device) -> dict[str, nn.Module]:
    """Every method on one shared W (C, d) where the class allows it (PML stores its own W as (d, C))."""
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(num_classes, dim, generator=gen).to(device))
    methods: dict[str, nn.Module] = {"floor (inline NormFace)": Floor(weight)}
    for name in NAMES:
        if name == "softmax":  # a biased linear head, not a cosine head: a different floor
            continue
        kw = {"s": S, "m": M} if name == "arcface" else {}
        loss = make(name, num_classes=num_classes, embedding_dim=dim, **kw).to(device)
        loss.head.weight = weight
        methods[name] = loss
    try:
        from pytorch_metric_learning.losses import ArcFaceLoss
    except ImportError:
        print("(pytorch-metric-learning not installed: skipping its ArcFaceLoss)", file=sys.stderr)
    else:
        pml = ArcFaceLoss(num_classes=num_classes, embedding_size=dim, margin=math.degrees(M), scale=S).to(device)
        with torch.no_grad():
            pml.W.copy_(weight.detach().T)
        methods["pml ArcFaceLoss"] = pml
    return methods


def params(module: nn.Module) -> list[torch.Tensor]:
    return list(module.parameters())


def step(method: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> None:
    """One training step's loss work: forward, backward to x and W. Gradients start from None every time."""
    x.grad = None
    for p in params(method):
        p.grad = None
    method(x, labels).backward()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(method, x, labels, device) -> float:
    sync(device)
    start = time.perf_counter()
    step(method, x, labels)
    sync(device)
    return time.perf_counter() - start


@contextlib.contextmanager
def quiet_stderr():
    """The CPU profiler prints start/stop lines from C++ straight to fd 2; keep the report readable."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def memory(method, x, labels, device) -> tuple[int, int]:
    """(peak, held): the most bytes allocated at once during one forward + backward beyond what was allocated
    before it, and the bytes still allocated when the forward pass ends (what it saves for backward)."""
    x.grad = None
    for p in params(method):
        p.grad = None
    if device.type == "cuda":
        sync(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = method(x, labels)
        sync(device)
        held = torch.cuda.memory_allocated(device) - before
        out.backward()
        sync(device)
        return torch.cuda.max_memory_allocated(device) - before, held
    from torch.profiler import ProfilerActivity, profile, record_function

    with quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            with record_function("bench_forward"):
                out = method(x, labels)
            out.backward()
        del out
        fd, path = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        try:
            prof.export_chrome_trace(path)
            with open(path) as f:
                events = json.load(f)["traceEvents"]
        finally:
            os.remove(path)
    # "[memory]" events: each allocation (Bytes > 0) or free (Bytes < 0) of the CPU allocator, with the running
    # total of bytes allocated after it. The total before the first event is the baseline.
    mem = [e for e in events if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    if not mem:
        return 0, 0
    base = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    peak = max(e["args"]["Total Allocated"] for e in mem) - base
    fwd = next(e for e in events if e.get("name") == "bench_forward" and e.get("cat") == "user_annotation")
    end = fwd["ts"] + fwd["dur"]
    in_forward = [e for e in mem if e["ts"] <= end]
    held = (in_forward[-1]["args"]["Total Allocated"] - base) if in_forward else 0
    return max(0, peak), held


def profile_top_ops(method, x, labels, rows: int = 15) -> str:
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step(method, x, labels)
    with quiet_stderr():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(10):
                step(method, x, labels)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1_000, 10_000, 100_000],
                        help="class counts C to run (default: 10 1000 10000 100000)")
    parser.add_argument("--batch", type=int, default=256, help="batch size N (default 256)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size d (default 512)")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed rounds for C <= 1e3; a quarter of it (at least 3) at C <= 1e4 (default 20)")
    parser.add_argument("--large-repeats", type=int, default=3,
                        help="timed rounds for C > 1e4, where one round takes seconds (default 3)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed rounds first; 1 for C > 1e3 (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads on CPU (default 2)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--methods", nargs="+", metavar="PREFIX", default=None,
                        help="run only the methods whose name starts with one of these (the floor always runs), "
                             "e.g. --methods arcface pml")
    parser.add_argument("--profile", metavar="METHOD", default=None,
                        help="also print torch.profiler's top ops of METHOD (e.g. arcface, floor) at each C")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    torch.set_num_threads(args.threads)

    print("# arclib loss overhead: forward + backward of each margin loss vs the NormFace floor\n")
    given = sys.argv[1:] if argv is None else argv
    print(f"Command: `python {shlex.join(['benchmarks/loss_overhead.py', *given])}`\n")
    print(describe(device))
    print(f"- N = {args.batch}, d = {args.dim}, float32, device {device}; s = {S:g}, ArcFace m = {M:g} "
          f"(PML: margin = {math.degrees(M):.4g}°); arclib hyper-parameters otherwise at their defaults\n")

    rows = []
    for num_classes in args.classes:
        gen = torch.Generator().manual_seed(1)
        x = torch.randn(args.batch, args.dim, generator=gen).to(device).requires_grad_()
        labels = torch.randint(0, num_classes, (args.batch,), generator=gen).to(device)
        methods = build_methods(num_classes, args.dim, device)
        names = [n for i, n in enumerate(methods)
                 if i == 0 or args.methods is None or any(n.startswith(p) for p in args.methods)]
        for _ in range(args.warmup if num_classes <= 1_000 else min(args.warmup, 1)):
            for name in names:
                step(methods[name], x, labels)
        if num_classes <= 1_000:
            repeats = args.repeats
        elif num_classes <= 10_000:
            repeats = max(3, args.repeats // 4)
        else:
            repeats = args.large_repeats
        times: dict[str, list[float]] = {name: [] for name in names}
        started = time.perf_counter()
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                times[name].append(time_once(methods[name], x, labels, device))
        mem = {name: memory(methods[name], x, labels, device) for name in names}
        floor_ms = statistics.median(times[names[0]]) * 1e3
        floor_min = min(times[names[0]]) * 1e3
        nc_bytes = args.batch * num_classes * 4
        for name in names:
            ms, best = statistics.median(times[name]) * 1e3, min(times[name]) * 1e3
            (peak, held), (floor_peak, floor_held) = mem[name], mem[names[0]]
            # in N×C units only where an N×C buffer (≥ 256 KiB) stands out from the O(N·d + C·d) memory
            buffers = f"{(held - floor_held) / nc_bytes:+.2f}" if nc_bytes >= 2**18 else "–"
            rows.append((name, num_classes, ms, ms / floor_ms, best, best / floor_min, peak / 2**20,
                         (peak - floor_peak) / 2**20, held / 2**20, buffers, repeats))
        print(f"(C = {num_classes}: {repeats} interleaved rounds in {time.perf_counter() - started:.1f} s)",
              file=sys.stderr)
        if args.profile:
            match = [n for n in names if n.startswith(args.profile)]
            if match:
                print(f"\n## torch.profiler, 10 calls of {match[0]} at C = {num_classes}\n\n```")
                print(profile_top_ops(methods[match[0]], x, labels))
                print("```\n")
        del methods, x, labels

    print("| method | C | median ms | ratio to floor | min ms | ratio (min) | peak extra MB | Δ peak vs floor MB "
          "| held after forward MB | extra N×C held vs floor | rounds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, c, ms, ratio, best, ratio_min, peak, dpeak, held, buffers, reps in rows:
        print(f"| {name} | {c} | {ms:.3f} | {ratio:.3f} | {best:.3f} | {ratio_min:.3f} | {peak:.2f} | {dpeak:+.2f} "
              f"| {held:.2f} | {buffers} | {reps} |")

if __name__ == "__main__":
    main()
