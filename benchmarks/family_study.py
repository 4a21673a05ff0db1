"""The family after ArcFace, each on the data it was made for (chapter 11): sub-centre ArcFace under label noise,
AdaFace on images of mixed quality, AdaCos's self-set scale — on MNIST, over seeds.

Each run trains ``arclib.robust.train_run`` (``MnistNet`` 64-D, 20,000 training images fixed per seed, 6 epochs,
one-cycle SGD to lr 0.1, a one-epoch margin warm-up) and writes one JSON result to ``benchmarks/family/<run>.json``
(its final weights under ``runs/family/``). Finished runs are skipped, so the same command continues a study.

    python benchmarks/family_study.py --grid noise --grid quality --grid scale --workers 2
    python benchmarks/family_study.py --report      # benchmarks/family_study.md
    python benchmarks/family_study.py --ship        # arclib/checkpoints/family-*.pt and FAMILY.json
    python benchmarks/family_study.py --quick       # a smoke run (tiny, into a temp folder)

Data: ``$ARCLIB_DATA`` holds MNIST (``/work/shared/data/materialize DIR`` lays it out).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the shared helpers in benchmarks/machine.py
from machine import write_result  # noqa: E402

RESULTS = HERE / "family"
CHECKPOINTS = HERE.parent / "runs" / "family"
SEEDS = (0, 1, 2)
S = 16.0  # the series' scale for ten classes, the same for every loss with a fixed s
EPOCHS, NUM_IMAGES, DIM = 6, 20000, 64

#: label -> (loss name, hyperparameters); the grids below combine them with data settings
NOISE_LOSSES = {"arcface": ("arcface", {"s": S, "m": 0.5}),
                "subcenter": ("subcenter_arcface", {"s": S, "m": 0.5, "sub_centres": 3})}
NOISE_RATES = (0.0, 0.2, 0.4)
QUALITY_LOSSES = {"arcface": ("arcface", {"s": S, "m": 0.4}), "cosface": ("cosface", {"s": S, "m": 0.4}),
                  "adaface": ("adaface", {"s": S, "m": 0.4, "h": 0.333})}
DEGRADED_SHARE = 0.5
SCALE_LOSSES = {"adacos": ("adacos", {}), "normface-s16": ("normface", {"s": S}),
                "normface-s3.11": ("normface", {"s": 3.11})}  # 3.11 = sqrt(2)·ln 9, AdaCos's fixed scale
THRESHOLD = 75.0  # degrees from the dominant sub-centre beyond which the paper drops a sample
SHIP = ("noise0.4-arcface-seed0", "noise0.4-subcenter-seed0", "quality-arcface-seed0", "quality-cosface-seed0",
        "quality-adaface-seed0", "scale-adacos-seed0")


def grid(name: str) -> list[dict]:
    specs = []
    for seed in SEEDS:
        if name == "noise":
            for rate in NOISE_RATES:
                for label, (loss, kw) in NOISE_LOSSES.items():
                    specs.append({"grid": name, "label": label, "loss": loss, "loss_kw": kw, "noise": rate})
                if rate:
                    specs.append({"grid": name, "label": "cleaned", "loss": "arcface", "loss_kw": NOISE_LOSSES[
                        "arcface"][1], "noise": rate, "cleaned_by": f"noise{rate}-subcenter-seed{seed}"})
            for spec in specs:
                spec.setdefault("run", f"noise{spec['noise']}-{spec['label']}-seed{seed}")
        elif name == "quality":
            for label, (loss, kw) in QUALITY_LOSSES.items():
                specs.append({"grid": name, "label": label, "loss": loss, "loss_kw": kw,
                              "degraded_share": DEGRADED_SHARE, "run": f"quality-{label}-seed{seed}"})
        elif name == "scale":
            for label, (loss, kw) in SCALE_LOSSES.items():
                specs.append({"grid": name, "label": label, "loss": loss, "loss_kw": kw, "record_every": 10,
                              "run": f"scale-{label}-seed{seed}"})
        else:
            raise SystemExit(f"--grid must be noise, quality or scale; got {name!r}")
        for spec in specs:
            spec.setdefault("seed", seed)
    return specs


def _data(quick: bool):
    from arclib import data

    train, test = data.load("mnist", train=True), data.load("mnist", train=False)
    if quick:
        test = data.TensorImages(test.images[:500], test.targets[:500], test.classes)
    return train, test


def _embed_train(model, images, labels):
    from torch.utils.data import DataLoader

    from arclib.data import TensorImages
    from arclib.train import embed

    return embed(model, DataLoader(TensorImages(images, labels, [str(i) for i in range(10)]), batch_size=1000))[0]


def _final(run: str, checkpoints: Path):
    import torch

    from arclib import losses, models

    state = torch.load(checkpoints / run / "final.pt", weights_only=True)
    model = models.MnistNet(DIM)
    model.load_state_dict(state["model"])
    loss = losses.make(state["loss_name"], **state["loss_hparams"])
    loss.load_state_dict(state["loss"])
    return model.eval(), loss


def run_one(spec: dict, results: Path, checkpoints: Path, quick: bool = False, specs: dict | None = None) -> dict:
    import torch

    from arclib import robust
    from arclib.metrics import accuracy

    torch.set_num_threads(1)
    out = results / f"{spec['run']}.json"
    if out.exists():
        return json.loads(out.read_text())
    train, test = _data(quick)
    num_images = 1000 if quick else NUM_IMAGES
    noise, share = spec.get("noise", 0.0), spec.get("degraded_share", 0.0)
    indices, images, labels, flipped, levels = robust.training_data(train, spec["seed"], noise, share, num_images)
    keep = None
    if "cleaned_by" in spec:  # ArcFace retrained on what the sub-centre run's outlier test kept
        source = spec["cleaned_by"]
        if not (checkpoints / source / "final.pt").exists():
            run_one(specs[source], results, checkpoints, quick, specs)
        sub_model, sub_loss = _final(source, checkpoints)
        keep = ~sub_loss.outliers(_embed_train(sub_model, images, labels), labels, THRESHOLD)
    start = time.perf_counter()
    trained = robust.train_run(train, spec["loss"], spec["seed"], spec["loss_kw"], noise=noise, degraded_share=share,
                               num_images=num_images, keep=keep, epochs=2 if quick else EPOCHS, embedding_dim=DIM,
                               record_every=spec.get("record_every", 0), max_steps=3 if quick else None)
    seconds = time.perf_counter() - start
    model, loss, h = trained["model"].eval(), trained["loss"], trained["history"]
    from torch.utils.data import DataLoader

    from arclib.train import embed

    test_emb, test_labels = embed(model, DataLoader(test, batch_size=1000))
    result = dict(spec, epochs=h.epochs, train_loss=h.train_loss[-1], train_acc=100 * h.train_acc[-1],
                  test_acc=100 * accuracy(loss, test_emb, test_labels), seconds=seconds, num_images=num_images)
    if keep is not None:
        result.update(kept=int(keep.sum()), kept_noisy=float(flipped[keep].float().mean()),
                      dropped_noisy=float(flipped[~keep].float().mean()) if (~keep).any() else None)
    if spec["grid"] == "noise" and "cleaned_by" not in spec:
        emb = _embed_train(model, images, labels)
        if spec["loss"] == "subcenter_arcface":
            result["subcentres"] = robust.subcentre_report(loss, emb, labels, flipped, THRESHOLD)
            single = loss.single_centre_head(loss.dominant_sub_centres(emb, labels))
            result["test_acc_dominant_only"] = 100 * float((single(test_emb).argmax(1) == test_labels).float().mean())
        else:  # the same test on plain ArcFace: beyond THRESHOLD from the (only) centre of the given class
            import math

            cos = loss.scores(emb)[torch.arange(len(labels)), labels]
            out_mask = cos < math.cos(math.radians(THRESHOLD))
            result["outliers"] = {"outliers": float(out_mask.float().mean()),
                                  "outliers_noisy": float(flipped[out_mask].float().mean()) if out_mask.any() else None,
                                  "noisy_found": float(out_mask[flipped].float().mean()) if flipped.any() else None}
    result["centre_angles"] = centre_angles(loss)
    if spec["grid"] == "quality":
        result["quality"] = robust.quality_report(model, loss, test)
    if spec.get("record_every"):
        result["scales"] = trained["scales"]
        result["final_s"] = float(loss.s)
    # the weights first: a result file is what marks a run finished, and a cleaned run reads these weights
    (checkpoints / spec["run"]).mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "loss": loss.state_dict(), "loss_name": loss.name,
                "loss_hparams": loss.hparams()}, checkpoints / spec["run"] / "final.pt")
    write_result(out, result)
    print(f"{spec['run']}: test {result['test_acc']:.2f} % ({seconds:.0f} s)", flush=True)
    return result


def _worker(args):
    spec, results, checkpoints, quick, specs = args
    try:
        return run_one(spec, Path(results), Path(checkpoints), quick, specs)
    except Exception as err:  # one failed run must not stop the others; it is reported and rerun next time
        import traceback

        traceback.print_exc()
        print(f"{spec['run']}: FAILED {type(err).__name__}: {err}", flush=True)
        return None


# ---- the report --------------------------------------------------------------------------------------------

def load_results(results: Path = RESULTS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]


def mean_std(values) -> tuple[float, float, int]:
    import statistics

    values = [v for v in values if v is not None and v == v]  # None or NaN: nothing measured (no flipped labels)
    if not values:
        return float("nan"), float("nan"), 0
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0), len(values)


def _cell(values, digits: int = 2) -> str:
    mean, std, n = mean_std(values)
    return "—" if n == 0 else f"{mean:.{digits}f} ± {std:.{digits}f} ({n})"


def report(results: Path = RESULTS) -> str:
    rows = load_results(results)
    pick = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]  # noqa: E731
    lines = ["# The family after ArcFace on MNIST: label noise, mixed quality, a self-set scale", "",
             "Written by `python benchmarks/family_study.py --report` from `benchmarks/family/*.json`; every cell is",
             "mean ± standard deviation over seeds (the count in brackets). Recipe: `MnistNet` 64-D, 20,000 training",
             "images fixed per seed, 6 epochs, SGD one-cycle to lr 0.1, weight decay 5e-4, a one-epoch margin",
             "warm-up; the same initialisation and batches for every loss of a seed. Test: the 10,000 MNIST test images.",
             "", "Commands: `python benchmarks/family_study.py --grid noise --grid quality --grid scale --workers 2`, then",
             "`--report` and `--ship`.", "",
             "## Label noise: ArcFace against sub-centre ArcFace (K = 3), s = 16, m = 0.5", "",
             "| labels flipped | ArcFace test % | sub-centre test % | sub-centre, dominant only % | ArcFace retrained on what the sub-centres kept % |",
             "| --- | --- | --- | --- | --- |"]
    for rate in NOISE_RATES:
        lines.append(f"| {rate:.0%} | {_cell([r['test_acc'] for r in pick(grid='noise', noise=rate, label='arcface')])} | "
                     f"{_cell([r['test_acc'] for r in pick(grid='noise', noise=rate, label='subcenter')])} | "
                     f"{_cell([r.get('test_acc_dominant_only') for r in pick(grid='noise', noise=rate, label='subcenter')])} | "
                     f"{_cell([r['test_acc'] for r in pick(grid='noise', noise=rate, label='cleaned')])} |")
    lines += ["", "Where the training samples sit (sub-centre runs, training images embedded after training), and the",
              f"cleaning test (farther than {THRESHOLD:g}° from the dominant sub-centre; for ArcFace, from the class's one",
              "centre):", "",
              "| labels flipped | clean on dominant % | flipped on dominant % | dropped % | of the dropped, flipped % | flipped found % | ArcFace: dropped % | ArcFace: flipped found % |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for rate in NOISE_RATES:
        sub = [r["subcentres"] for r in pick(grid="noise", noise=rate, label="subcenter")]
        arc = [r["outliers"] for r in pick(grid="noise", noise=rate, label="arcface")]
        pct = lambda rs, k: _cell([None if r.get(k) is None else 100 * r[k] for r in rs], 1)  # noqa: E731
        lines.append(f"| {rate:.0%} | {pct(sub, 'clean_on_dominant')} | {pct(sub, 'noisy_on_dominant')} | "
                     f"{pct(sub, 'outliers')} | {pct(sub, 'outliers_noisy')} | {pct(sub, 'noisy_found')} | "
                     f"{pct(arc, 'outliers')} | {pct(arc, 'noisy_found')} |")
    lines += ["", "Degrees between the class centres at the end (smallest pair / mean over pairs; sub-centre ArcFace: the",
              "nearest sub-centres of two classes). Ten random directions in 64-D are about 90° apart:", "",
              "| labels flipped | ArcFace min | ArcFace mean | sub-centre min | sub-centre mean |", "| --- | --- | --- | --- | --- |"]
    for rate in NOISE_RATES:
        arc = [r.get("centre_angles") or {} for r in pick(grid="noise", noise=rate, label="arcface")]
        sub = [r.get("centre_angles") or {} for r in pick(grid="noise", noise=rate, label="subcenter")]
        lines.append(f"| {rate:.0%} | {_cell([a.get('min') for a in arc], 1)} | {_cell([a.get('mean') for a in arc], 1)} | "
                     f"{_cell([a.get('min') for a in sub], 1)} | {_cell([a.get('mean') for a in sub], 1)} |")
    lines += ["", f"## Mixed quality: {DEGRADED_SHARE:.0%} of the training images at a lower resolution (14, 10 or 7 pixels a side), s = 16, m = 0.4", "",
              "Test accuracy % on the test images at each level (0: as they are; 1-3: 14×14, 10×10, 7×7), and the mean",
              "feature norm ‖x‖ there:", "",
              "| loss | level 0 | level 1 | level 2 | level 3 | ‖x‖ level 0 | ‖x‖ level 3 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label in QUALITY_LOSSES:
        qs = [r["quality"] for r in pick(grid="quality", label=label)]
        accs = " | ".join(_cell([100 * q["accuracy"][i] for q in qs]) for i in range(4))
        lines.append(f"| {label} | {accs} | {_cell([q['norm_mean'][0] for q in qs])} | {_cell([q['norm_mean'][3] for q in qs])} |")
    lines += ["", "## AdaCos's scale against fixed scales (clean labels and images)", "",
              "| loss | test % | s at the end |", "| --- | --- | --- |"]
    for label in SCALE_LOSSES:
        rs = pick(grid="scale", label=label)
        lines.append(f"| {label} | {_cell([r['test_acc'] for r in rs])} | {_cell([r.get('final_s') for r in rs])} |")
    from machine import describe  # benchmarks/machine.py, beside this script

    lines += ["", "Seconds per run (one core each, two runs at a time): " + _cell([r["seconds"] for r in rows], 0),
              "", "Machine (where the report was written; the runs ran there too):", describe(), ""]
    return "\n".join(lines)


def centre_angles(loss) -> dict[str, float]:
    """Degrees between the class centres: the smallest and the mean over pairs of classes (sub-centre ArcFace:
    between the nearest sub-centres of the two classes)."""
    import torch
    import torch.nn.functional as F

    w = F.normalize(loss.head.weight.detach().double(), dim=1)
    k = getattr(loss, "sub_centres", 1)
    c = w.shape[0] // k
    cos = (w @ w.T).view(c, k, c, k).amax(dim=(1, 3))
    pairs = cos[~torch.eye(c, dtype=torch.bool)].clamp(-1, 1)
    degrees = torch.rad2deg(torch.acos(pairs))
    return {"min": float(degrees.min()), "mean": float(degrees.mean()), "max": float(degrees.max())}


def ship(results: Path = RESULTS, checkpoints: Path = CHECKPOINTS) -> Path:
    """Export the ``SHIP`` runs into ``arclib/checkpoints/family-*.pt`` and write ``FAMILY.json``: every run's
    result and, per shipped model, its sha256, size and the clean test accuracy the shipped (float16) weights reach."""
    import torch
    from torch.utils.data import DataLoader

    from arclib import pretrained, robust
    from arclib.metrics import accuracy
    from arclib.train import embed

    rows = load_results(results)
    for row in rows:  # how far apart the class centres ended (a collapse shows here first), kept in the result
        if "centre_angles" not in row and (checkpoints / row["run"] / "final.pt").exists():
            row["centre_angles"] = centre_angles(_final(row["run"], checkpoints)[1])
            (results / f"{row['run']}.json").write_text(json.dumps(row, indent=1, sort_keys=True) + "\n")
    by_run = {r["run"]: r for r in rows}
    _, test = _data(False)
    entries = {}
    for run in SHIP:
        model, loss = _final(run, checkpoints)
        name = "family-" + run.removesuffix("-seed0")
        path = pretrained.export(model, loss, pretrained.DIR / f"{name}.pt", meta={"run": run})
        back, back_loss, _ = pretrained.load_file(path, pretrained.sha256(path))
        emb, labels = embed(back, DataLoader(test, batch_size=1000))
        entries[name] = {"file": path.name, "sha256": pretrained.sha256(path), "bytes": path.stat().st_size,
                         "run": run, "spec": {k: by_run[run][k] for k in ("loss", "loss_kw", "seed", "noise",
                                                                           "degraded_share") if k in by_run[run]},
                         "shipped_test_acc": 100 * accuracy(back_loss, emb, labels), "torch": torch.__version__}
    out = {"runs": rows, "models": entries, "recipe": {"epochs": EPOCHS, "num_images": NUM_IMAGES,
                                                        "embedding_dim": DIM, "threshold_degrees": THRESHOLD},
           "commands": ["python benchmarks/family_study.py --grid noise --grid quality --grid scale --workers 2",
                        "python benchmarks/family_study.py --ship"]}
    robust.STUDY.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return robust.STUDY


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--grid", action="append", default=[], help="noise, quality, scale (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="only these seeds")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--report", action="store_true", help="write benchmarks/family_study.md")
    p.add_argument("--ship", action="store_true", help="export the chapter's models and FAMILY.json")
    p.add_argument("--quick", action="store_true", help="a tiny smoke run into a temporary folder")
    args = p.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            specs = [s for g in ("noise", "quality", "scale") for s in grid(g) if s["seed"] == 0]
            specs = [s for s in specs if s["run"] in ("noise0.4-cleaned-seed0", "quality-adaface-seed0",
                                                      "scale-adacos-seed0")]
            by_run = {s["run"]: s for g in ("noise",) for s in grid(g)}
            for spec in specs:
                run_one(spec, Path(tmp) / "results", Path(tmp) / "ckpt", quick=True, specs=by_run)
            print(report(Path(tmp) / "results"))
        return
    specs = [s for g in args.grid for s in grid(g) if args.seeds is None or s["seed"] in args.seeds]
    by_run = {s["run"]: s for g in ("noise", "quality", "scale") for s in grid(g)}
    # the runs a cleaned run depends on go first
    specs.sort(key=lambda s: (s["seed"], "cleaned_by" in s))  # seed 0 of every grid first
    jobs = [(s, str(RESULTS), str(CHECKPOINTS), False, by_run) for s in specs]
    if args.workers > 1 and jobs:
        with mp.get_context("spawn").Pool(args.workers) as pool:
            list(pool.imap_unordered(_worker, jobs))
    else:
        for job in jobs:
            _worker(job)
    if args.report:
        (HERE / "family_study.md").write_text(report() + "\n")
        print(f"wrote {HERE / 'family_study.md'}")
    if args.ship:
        print(f"wrote {ship()}")
    if not (args.grid or args.report or args.ship):
        p.print_help()
        sys.exit(2)


if __name__ == "__main__":
    main()
