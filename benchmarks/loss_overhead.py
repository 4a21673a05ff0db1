"""What does a margin cost? Forward + backward time and peak memory of every arclib margin loss, against the
NormFace "floor" written inline here and against pytorch-metric-learning's ArcFaceLoss.

The floor is the least any of these losses can do: normalise x, normalise W, one matmul, scale, cross-entropy.
The target (issue): ArcFace at most 1.03× the floor's time, and no N×C buffer beyond the floor's. Two more rows
come from ``arclib.scale``: "arcface chunked" (8192 classes at a time, no N×C buffer; backward redoes the forward
matmul per chunk) and "arcface fused" (one N×C buffer, reused in place in backward).

    python benchmarks/loss_overhead.py                       # N = 256, d = 512, C in {10, 1e3, 1e4, 1e5, 1e6}
    python benchmarks/loss_overhead.py --classes 10 1000 --repeats 50 --methods arcface pml --profile arcface

Past C = 1e5 (``--large-methods``) only the floor, arcface and the two arclib.scale rows run by default: one
C = 1e6 round of the other losses takes minutes on 2 cores.

Runs are interleaved: each repeat times every method once, in an order rotated from repeat to repeat, so a
slow patch of the machine hits all methods alike; the table shows medians. By default 20 rounds at C <= 1e3,
5 at 1e4 and 3 at 1e5 and 1e6 (one round at C = 1e5 takes tens of seconds on 2 cores, at C = 1e6 minutes): with
C = 1e6 the default run takes most of an hour on 2 cores, and the floor's step there allocates about 10 GB beyond
W (drop it with --classes 10 1000 10000 100000). Peak memory is the most memory
allocated at any point of one forward + backward beyond what was allocated before it (weights and inputs
excluded, the gradients included): on CPU from the allocation events of torch's profiler, on CUDA from
torch.cuda.max_memory_allocated (MB here is MiB). With d = 512 > N = 256 the peak is usually set in backward
by the C×d weight gradients, which hides N×C buffers; so the table also gives the memory still held when the
forward pass ends (what autograd saved for backward), and "extra N×C held" = (held − the floor's held) /
(N·C·4 bytes): how many float32 N×C buffers a loss keeps beyond the floor's (shown where N·C·4 ≥ 256 KiB).
The "min" columns are the fastest round: on a shared machine they are the least disturbed by other work.
Memory is measured for each method in a process of its own (this script started again with ``--memory-of``):
one warm-up step, then the profiled step; "process peak RSS" is that process's whole resident peak (torch,
W and its gradient included), so the methods' footprints do not mix.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from machine import describe  # benchmarks/machine.py, beside this script
from torch import nn

from arclib.losses import NAMES, make
from arclib.scale import chunked_margin_loss, fused_margin_loss, peak_rss, quiet_stderr

S, M = 64.0, 0.5  # the ArcFace paper's scale and margin, for the floor, arcface and PML alike


class Floor(nn.Module):
    """NormFace with nothing else: the cost every cosine-softmax loss pays."""

    def __init__(self, weight: nn.Parameter, s: float = S) -> None:
        super().__init__()
        self.weight, self.s = weight, s

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = F.linear(F.normalize(x, dim=1), F.normalize(self.weight, dim=1))
        return F.cross_entropy(self.s * cos, labels)


class Scaled(nn.Module):
    """An arclib.scale path (``chunked_margin_loss`` or ``fused_margin_loss``) around an arclib loss."""

    def __init__(self, loss: nn.Module, fn, **kwargs) -> None:
        super().__init__()
        self.loss, self.fn, self.kwargs = loss, fn, kwargs

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.fn(self.loss, x, labels, **self.kwargs)


FLOOR = "floor (inline NormFace)"
SCALE_ROWS = ("arcface chunked", "arcface fused")
LARGE_C = 100_000  # past this, only --large-methods run


def method_names() -> list[str]:
    names = [FLOOR] + [n for n in NAMES if n != "softmax"]  # softmax: a biased linear head, a different floor
    return names[:names.index("arcface") + 1] + list(SCALE_ROWS) + names[names.index("arcface") + 1:] + \
        ["pml ArcFaceLoss"]


def build_methods(num_classes: int, dim: int, device: torch.device, only: list[str] | None = None
                  ) -> dict[str, nn.Module]:
    """The methods named in ``only`` (default: all) on one shared W (C, d) where the class allows it (PML stores
    its own W as (d, C))."""
    gen = torch.Generator().manual_seed(0)
    weight = nn.Parameter(torch.randn(num_classes, dim, generator=gen).to(device))
    methods: dict[str, nn.Module] = {}
    for name in method_names():
        if only is not None and name not in only:
            continue
        if name == FLOOR:
            methods[name] = Floor(weight)
        elif name == "pml ArcFaceLoss":
            try:
                from pytorch_metric_learning.losses import ArcFaceLoss
            except ImportError:
                print("(pytorch-metric-learning not installed: skipping its ArcFaceLoss)", file=sys.stderr)
                continue
            pml = ArcFaceLoss(num_classes=num_classes, embedding_size=dim, margin=math.degrees(M), scale=S)
            pml = pml.to(device)
            with torch.no_grad():
                pml.W.copy_(weight.detach().T)
            methods[name] = pml
        else:
            base = name.split()[0]
            kw = {"s": S, "m": M} if base in ("arcface", "subcenter_arcface") else {}
            loss = make(base, num_classes=num_classes, embedding_dim=dim, **kw).to(device)
            if base == "subcenter_arcface":  # K = 3 sub-centres per class: W is (3C, d), the shared W plus two more
                extra = torch.randn(2 * num_classes, dim, generator=gen).to(device)
                loss.head.weight = nn.Parameter(torch.cat([weight.detach(), extra]))
            else:
                loss.head.weight = weight
            if name == "arcface chunked":
                methods[name] = Scaled(loss, chunked_margin_loss, chunk_size=8192)
            elif name == "arcface fused":
                methods[name] = Scaled(loss, fused_margin_loss)
            else:
                methods[name] = loss
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
    mem.sort(key=lambda e: e["ts"])  # the trace can list them out of order (arclib.scale.peak_memory)
    if not mem:
        return 0, 0
    base = mem[0]["args"]["Total Allocated"] - mem[0]["args"]["Bytes"]
    peak = max(e["args"]["Total Allocated"] for e in mem) - base
    fwd = next(e for e in events if e.get("name") == "bench_forward" and e.get("cat") == "user_annotation")
    end = fwd["ts"] + fwd["dur"]
    in_forward = [e for e in mem if e["ts"] <= end]
    held = (in_forward[-1]["args"]["Total Allocated"] - base) if in_forward else 0
    return max(0, peak), held


def memory_in_own_process(name: str, num_classes: int, args: argparse.Namespace) -> tuple[int, int, int]:
    """(peak, held, process peak RSS) of ``name`` measured by this script in a fresh process (``--memory-of``)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-of", name, "--classes", str(num_classes),
           "--batch", str(args.batch), "--dim", str(args.dim), "--threads", str(args.threads), "--device", args.device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"memory of {name} at C = {num_classes} failed:\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["peak"], out["held"], out["rss"]


def memory_of(name: str, num_classes: int, args: argparse.Namespace, device: torch.device) -> None:
    """The ``--memory-of`` mode: build one method, one warm-up step, one measured step; print JSON."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, args.dim, generator=gen).to(device).requires_grad_()
    labels = torch.randint(0, num_classes, (args.batch,), generator=gen).to(device)
    method = build_methods(num_classes, args.dim, device, only=[name])[name]
    step(method, x, labels)
    peak, held = memory(method, x, labels, device)
    rss = peak_rss()
    print(json.dumps({"peak": peak, "held": held, "rss": rss}))


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
    parser.add_argument("--classes", type=int, nargs="+", default=[10, 1_000, 10_000, 100_000, 1_000_000],
                        help="class counts C to run (default: 10 1000 10000 100000 1000000)")
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
    parser.add_argument("--large-methods", nargs="+", metavar="PREFIX", default=["arcface"],
                        help=f"past C = {LARGE_C:g} run only the floor and these (default: arcface, which "
                             "includes its chunked and fused rows)")
    parser.add_argument("--memory-of", metavar="METHOD", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="METHOD", default=None,
                        help="also print torch.profiler's top ops of METHOD (e.g. arcface, floor) at each C")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    torch.set_num_threads(args.threads)
    if args.memory_of:
        memory_of(args.memory_of, args.classes[0], args, device)
        return

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
        prefixes = args.methods if num_classes <= LARGE_C else \
            [p for p in args.large_methods if args.methods is None or any(p.startswith(q) for q in args.methods)]
        names = [n for n in method_names()
                 if n == FLOOR or prefixes is None or any(n.startswith(p) for p in prefixes)]
        methods = build_methods(num_classes, args.dim, device, only=names)
        names = list(methods)
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
        del methods  # memory is measured in a fresh process per method, with nothing else in it
        mem = {name: memory_in_own_process(name, num_classes, args) for name in names}
        floor_ms = statistics.median(times[names[0]]) * 1e3
        floor_min = min(times[names[0]]) * 1e3
        nc_bytes = args.batch * num_classes * 4
        for name in names:
            ms, best = statistics.median(times[name]) * 1e3, min(times[name]) * 1e3
            (peak, held, rss), (floor_peak, floor_held, _) = mem[name], mem[names[0]]
            # in N×C units only where an N×C buffer (≥ 256 KiB) stands out from the O(N·d + C·d) memory
            buffers = f"{(held - floor_held) / nc_bytes:+.2f}" if nc_bytes >= 2**18 else "–"
            rows.append((name, num_classes, ms, ms / floor_ms, best, best / floor_min, peak / 2**20,
                         (peak - floor_peak) / 2**20, held / 2**20, buffers, rss / 2**20, repeats))
        print(f"(C = {num_classes}: {repeats} interleaved rounds in {time.perf_counter() - started:.1f} s)",
              file=sys.stderr)
        if args.profile:
            match = [n for n in names if n.startswith(args.profile)]
            if match:
                method = build_methods(num_classes, args.dim, device, only=match[:1])[match[0]]
                print(f"\n## torch.profiler, 10 calls of {match[0]} at C = {num_classes}\n\n```")
                print(profile_top_ops(method, x, labels))
                print("```\n")
        del x, labels

    print("| method | C | median ms | ratio to floor | min ms | ratio (min) | peak extra MB | Δ peak vs floor MB "
          "| held after forward MB | extra N×C held vs floor | process peak RSS MB | rounds |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, c, ms, ratio, best, ratio_min, peak, dpeak, held, buffers, rss, reps in rows:
        print(f"| {name} | {c} | {ms:.3f} | {ratio:.3f} | {best:.3f} | {ratio_min:.3f} | {peak:.2f} | {dpeak:+.2f} "
              f"| {held:.2f} | {buffers} | {rss:.0f} | {reps} |")

if __name__ == "__main__":
    main()
