"""The class-sharded ArcFace loss (arclib.distributed) with 1, 2 and 4 gloo processes on this machine: step time,
memory per rank, bytes handed to collectives per step, and what that predicts for 8 GPUs.

    python benchmarks/sharded.py                     # C = 1e6, global batch N = 256, d = 512, P in {1, 2, 4}
    python benchmarks/sharded.py --classes 20000 --batch 32 --dim 64 --processes 1 2 --steps 1   # a smoke run

"CPU s per rank" is the process's CPU time during the step (all its threads): on a machine shared with other
jobs it moves far less than the wall time. Each run starts P processes (torch.multiprocessing, gloo, ``arclib.distributed.launch``); rank r holds
C/P class centres and N/P samples; one step is forward + backward of ``ShardedMarginLoss`` (chunked per rank,
8192 classes at a time). The machine's cores are split between the processes (``--cores``), so on a 2-core
machine P = 4 cannot be faster than P = 2: what the table shows there is memory and traffic per rank.

How the 8-GPU line is made (a model, not a measurement): per rank, the step is four (N × d) · (d × C/P) matrix
products (forward, its recomputation in backward, two gradient products), 8·N·d·C/P floating-point operations,
divided by an assumed sustained GPU throughput (``--gpu-tflops``); plus the bytes per rank measured here for
P = 1, 2, 4 (they follow a formula in N, d, P, checked against the counts) extrapolated to P = 8, times 2·(P − 1)/P
for a ring, over an assumed link bandwidth (``--link-gbytes``), plus an assumed latency per collective call.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch
import torch.distributed as dist
from machine import describe  # benchmarks/machine.py, beside this script

from arclib.distributed import ShardedMarginLoss, launch, reset_traffic, traffic, world
from arclib.losses import make
from arclib.scale import peak_memory, peak_rss


def rank_steps(num_classes: int, batch: int, dim: int, steps: int, chunk_size: int) -> dict:
    """Run on every rank: one warm-up step, then ``steps`` timed steps and one profiled for memory."""
    rank, world_size = world()
    torch.manual_seed(rank)
    loss = ShardedMarginLoss(make("arcface", s=64.0, m=0.5), num_classes, dim, chunk_size=chunk_size)
    x = torch.randn(batch // world_size, dim, requires_grad=True)
    labels = torch.randint(0, num_classes, (batch // world_size,))

    def step() -> None:
        x.grad = loss.weight.grad = None  # as optimiser.zero_grad() does: no old gradient to add the new one to
        loss(x, labels).backward()

    step()  # warm-up
    times, cpu = [], []
    for _ in range(steps):
        dist.barrier()
        reset_traffic()
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        cpu.append(time.process_time() - cpu_start)
        dist.barrier()
        times.append(time.perf_counter() - start)
        sent = dict(traffic)
    x.grad = loss.weight.grad = None  # freed before the measurement, not inside it
    peak = peak_memory(lambda: loss(x, labels).backward())
    return {"times": times, "cpu": cpu, "bytes": sent["bytes"], "calls": sent["calls"], "peak": peak,
            "weight": loss.weight.numel() * loss.weight.element_size(),
            "rss": peak_rss()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=1_000_000, help="number of classes C (default 1e6)")
    parser.add_argument("--batch", type=int, default=256, help="global batch N, split over the ranks (default 256)")
    parser.add_argument("--dim", type=int, default=512, help="embedding size d (default 512)")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4], help="P values (default 1 2 4)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run (default 2)")
    parser.add_argument("--chunk-size", type=int, default=8192, help="classes per chunk on each rank")
    parser.add_argument("--cores", type=int, default=2, help="CPU cores to split between the processes (default 2)")
    parser.add_argument("--gpu-tflops", type=float, default=50.0,
                        help="assumed sustained fp32/TF32 matmul throughput of one GPU, TFLOP/s (default 50)")
    parser.add_argument("--link-gbytes", type=float, default=100.0,
                        help="assumed all-reduce bus bandwidth per GPU, GB/s (default 100)")
    parser.add_argument("--latency-us", type=float, default=20.0,
                        help="assumed latency of one collective call, microseconds (default 20)")
    args = parser.parse_args(argv)
    if any(args.batch % p for p in args.processes):
        parser.error(f"--batch {args.batch} must be a multiple of every --processes value")

    print("# arclib.distributed: ArcFace with W sharded over P processes (gloo, CPU)\n")
    given = sys.argv[1:] if argv is None else argv
    print(f"Command: `python {shlex.join(['benchmarks/sharded.py', *given])}`\n")
    print(describe(torch.device("cpu")).replace(f"torch threads: {torch.get_num_threads()}",
                                                "torch threads: cores / P per process"))
    print(f"- C = {args.classes}, global batch N = {args.batch}, d = {args.dim}, float32; ArcFace s = 64, m = 0.5; "
          f"chunk {args.chunk_size} classes; {args.cores} cores split between the processes\n")

    rows = []
    for p in args.processes:
        started = time.perf_counter()
        results = launch(rank_steps, p, args.classes, args.batch, args.dim, args.steps, args.chunk_size,
                         threads=max(1, args.cores // p))
        print(f"(P = {p}: {time.perf_counter() - started:.1f} s)", file=sys.stderr)
        step_s = statistics.median(max(r["times"][i] for r in results) for i in range(args.steps))
        cpu_s = statistics.median(max(r["cpu"][i] for r in results) for i in range(args.steps))
        rows.append((p, step_s, cpu_s, max(r["weight"] for r in results), max(r["peak"] for r in results),
                     max(r["rss"] for r in results), max(r["bytes"] for r in results), results[0]["calls"]))

    print("| processes P | step s (median, wall) | CPU s per rank per step | W per rank MB "
          "| peak extra per rank MB (step, W's gradient incl.) | process peak RSS per rank MB "
          "| bytes to collectives per rank per step | collective calls |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for p, step_s, cpu_s, weight, peak, rss, sent, calls in rows:
        print(f"| {p} | {step_s:.2f} | {cpu_s:.2f} | {weight / 2**20:.0f} | {peak / 2**20:.0f} | {rss / 2**20:.0f} "
              f"| {sent} | {calls} |")

    # what the counts should be: forward all-gathers the batch size (P ints), the features (N·d floats) and labels
    # (N int64), all-reduces the maxima, the sums and the target logits (3·N floats); backward all-reduces the
    # features' gradient (N·d floats)
    n, d = args.batch, args.dim

    def formula(p: int) -> int:
        return 0 if p == 1 else 8 * p + 4 * n * d + 8 * n + 3 * 4 * n + 4 * n * d

    checked = all(sent == formula(p) for p, *_, sent, _ in rows)
    print(f"\nBytes per step follow 8·P + 8·N·d + 20·N (P > 1): {'yes, for every P above' if checked else 'NO'}.")
    p = 8
    flops = 8 * n * d * args.classes / p
    compute_s = flops / (args.gpu_tflops * 1e12)
    comm_s = formula(p) * 2 * (p - 1) / p / (args.link_gbytes * 1e9) + 7 * args.latency_us * 1e-6
    print(f"\nPrediction for 8 GPUs (assumed {args.gpu_tflops:g} TFLOP/s, {args.link_gbytes:g} GB/s, "
          f"{args.latency_us:g} µs per collective; not measured): compute {flops:.3g} FLOP per rank = "
          f"{compute_s * 1e3:.2f} ms, communication {formula(p)} bytes per rank = {comm_s * 1e3:.2f} ms, "
          f"step ≈ {(compute_s + comm_s) * 1e3:.2f} ms; W per GPU {args.classes * d * 4 / p / 2**20:.0f} MB "
          f"(+ as much for its gradient).")
    measured = [(p, s) for p, s, *_ in rows]  # wall seconds
    p1 = dict(measured).get(1)
    if p1:
        rate = 8 * n * d * args.classes / p1 / 1e9
        print(f"Here one process ran {rate:.1f} GFLOP/s (the same count over the measured P = 1 step).")


if __name__ == "__main__":
    main()
