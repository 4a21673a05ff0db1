"""Record the s and m sweeps of chapter 07 (seed 002, Fig. 3 and 4) in arclib's manifest.

    python scripts/sweeps.py            # about 15 minutes on one CPU thread

Runs ``arclib.pretrained.run_sweeps(SPEC)`` and stores the spec, every accuracy, the wall time and the versions
under ``results["mnist-sweeps"]`` in ``arclib/checkpoints/MANIFEST.json``. Chapter 07 draws its two sweep figures
from that record, or reruns the same spec with ``TRAIN = True``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import arclib
from arclib import pretrained

SPEC = {
    "dataset": "mnist", "embedding_dim": 128, "train_limit": 10_000, "batch_size": 128, "epochs": 1, "seeds": [0, 1],
    "losses": {"ArcFace": ["arcface", 0.5], "Angular SparseMax": ["angular_sparsemax", 0.2]},
    "s_values": [1.0, 1.9, 4.0, 8.0, 16.0, 32.0, 64.0],
    "m_values": [0.0, 0.1, 0.2, 0.3, 0.5, 0.7],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result = pretrained.run_sweeps(SPEC, quick=False)
    seconds = time.perf_counter() - start
    manifest = pretrained.manifest()
    manifest.setdefault("results", {})["mnist-sweeps"] = {
        "command": "python scripts/sweeps.py" + (f" --threads {args.threads}" if args.threads else ""),
        "spec": SPEC, "result": result, "seconds": seconds, "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "arclib_version": arclib.__version__}
    pretrained.MANIFEST.write_text(json.dumps(manifest, indent=1) + "\n")
    for label in SPEC["losses"]:
        print(label, "best s", result["best_s"][label])
    print(f"{seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
