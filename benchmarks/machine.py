"""The machine a benchmark ran on, as Markdown bullet lines: every figure a benchmark prints depends on it."""

from __future__ import annotations

import contextlib
import json
import os
import platform
from pathlib import Path

import torch


def describe(device: torch.device | None = None) -> str:
    """CPU model and cores, torch threads and version, Python, OS, the load average (another job on a 2-core
    machine changes every number), and the GPU when ``device`` is a CUDA device."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    lines = [f"- CPU: {cpu} ({os.cpu_count()} logical cores), torch threads: {torch.get_num_threads()}",
             f"- torch {torch.__version__}, Python {platform.python_version()}, {platform.system()} {platform.release()}"]
    if hasattr(os, "getloadavg"):
        lines.append("- load average at start (1/5/15 min): " + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    if device is not None and device.type == "cuda":
        lines.append(f"- GPU: {torch.cuda.get_device_name(device)}")
    return "\n".join(lines)


def write_result(path: Path, result: dict) -> None:
    """One run's result as JSON, written whole or not at all: a result file is what marks a run finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
