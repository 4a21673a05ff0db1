"""MNIST, Fashion-MNIST, CIFAR-10 and Omniglot through torchvision, with one loader factory for every notebook and
the CLI.

Two things here are not stock torchvision:

- **Data already on disk wins.** ``download=None`` (the default) looks in the data root first and only goes
  to the network for files that are missing; with no network the error names the directory it looked in
  and how to point arclib at the data (``$ARCLIB_DATA`` or ``root=``).
- **A second, explicit CIFAR-10 checksum set.** The project's offline mirror (``/work/shared/data``) holds
  CIFAR-10 batches whose pixels, labels and order are the originals but whose pickled bytes are new, so their
  md5s differ from torchvision's list. ``CIFAR10_CHECKSUMS["offline-mirror"]`` records those md5s; a root is
  accepted if it matches torchvision's published set, or the mirror's set *when asked for* by
  ``cifar10_checksums="offline-mirror"`` or ``ARCLIB_CIFAR10_CHECKSUMS=offline-mirror``. Verification is
  never switched off: a tampered file fails both sets.

Omniglot (Lake et al., Science 2015) is read by torchvision's ``Omniglot`` class from the folders it extracts. The
mirror has the original PNGs but not the original zips, so the zip md5 check cannot pass on it:
``omniglot_checksums="offline-mirror"`` (or ``ARCLIB_OMNIGLOT_CHECKSUMS=offline-mirror``) checks the folders
instead, against the sha256 of the mirror's list of per-image sha256s (32,460 images; about a second).

Without augmentation a split is decoded and normalised once into a float tensor (``TensorImages``): MNIST's
60,000 images cost 188 MB and an epoch then spends no time in PIL, which matters on a 2-core CPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision import datasets, transforms
from torchvision.datasets.utils import extract_archive

from arclib._checks import check_choice, check_int
from arclib.config import data_root, quick_mode

DATASETS = ("mnist", "fashion_mnist", "cifar10")
NUM_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10}

#: Per-channel (mean, std) of each training set, the usual normalisation.
NORMALISATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}

#: Known md5 sets for the six CIFAR-10 batch files. "torchvision" is torchvision's published list; "offline-mirror"
#: is the project's pixel-exact rebuild (see /work/shared/data/README.md), accepted only when asked for.
CIFAR10_CHECKSUMS: dict[str, dict[str, str]] = {
    "torchvision": {name: md5 for name, md5 in datasets.CIFAR10.train_list + datasets.CIFAR10.test_list},
    "offline-mirror": {
        "data_batch_1": "da10cf8bcf55dd1b81d68d2e800f20ab",
        "data_batch_2": "5d4cde6f22c545ee4744610cc2cfd3e6",
        "data_batch_3": "31524cdfcddbd5dd857f25a2ba3bfbaf",
        "data_batch_4": "34d931c84b1a4214a968f2887c529a03",
        "data_batch_5": "33c4c9b005c6df03689ca3808e07fdaf",
        "test_batch": "1a3b2f341fa03612d93efae347473c31",
    },
}
CHECKSUM_ENV = "ARCLIB_CIFAR10_CHECKSUMS"

#: Omniglot: "torchvision" checks the two zips (torchvision's md5s); "offline-mirror" checks the extracted PNGs: the
#: sha256 of the text ``"<sha256 of the PNG>  <split>/<alphabet>/<character>/<file>\n"`` over all 32,460 images in
#: byte order of the path (the mirror's ``omniglot-sha256.txt``).
OMNIGLOT_CHECKSUMS = ("torchvision", "offline-mirror")
OMNIGLOT_MIRROR_SHA256 = "8745d3284205c70953ebeacd9061b7dfdadc5961afab7b71a1553c9aa5bcb1af"
OMNIGLOT_CHECKSUM_ENV = "ARCLIB_OMNIGLOT_CHECKSUMS"
OMNIGLOT_SPLITS = {"background": 964, "evaluation": 659}  # characters per split, 20 drawers each
#: (mean, std) of the background set's strokes-as-ink images at 28×28 (ink = 1), the normalisation of every split.
OMNIGLOT_NORMALISATION = (0.0780, 0.2329)

QUICK_TRAIN, QUICK_TEST = 512, 256


class DatasetNotFoundError(FileNotFoundError):
    """The data is not in the data root and could not be downloaded; the message says where and how to fix it."""


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cifar10_checksum_sets(cifar10_checksums: str | None = None) -> tuple[str, ...]:
    """The checksum sets a CIFAR-10 root may match: always torchvision's, plus the mirror's when asked for."""
    choice = cifar10_checksums if cifar10_checksums is not None else os.environ.get(CHECKSUM_ENV) or "torchvision"
    check_choice("cifar10_checksums" if cifar10_checksums is not None else CHECKSUM_ENV, choice,
                 tuple(CIFAR10_CHECKSUMS))
    return ("torchvision",) if choice == "torchvision" else ("torchvision", choice)


def cifar10_matching_set(folder: str | os.PathLike) -> str | None:
    """Name of the checksum set the six batch files in ``folder`` match exactly, or None (missing or altered)."""
    folder = Path(folder)
    names = CIFAR10_CHECKSUMS["torchvision"]
    if not all((folder / n).is_file() for n in names):
        return None
    md5s = {n: _md5(folder / n) for n in names}
    for set_name, expected in CIFAR10_CHECKSUMS.items():
        if md5s == expected:
            return set_name
    return None


class CIFAR10(datasets.CIFAR10):
    """torchvision's CIFAR10 that also accepts the checksum sets named in ``checksum_sets``.

    Only ``_check_integrity`` changes: all six batch files must match one known set, which is one of the
    allowed ones. Anything else (a missing or edited file) is refused as before.
    """

    def __init__(self, root, train: bool = True, checksum_sets: Sequence[str] = ("torchvision",), **kwargs) -> None:
        self.checksum_sets = tuple(checksum_sets)
        self.matched_checksums: str | None = None
        super().__init__(root, train=train, **kwargs)

    def _check_integrity(self) -> bool:
        self.matched_checksums = cifar10_matching_set(os.path.join(self.root, self.base_folder))
        return self.matched_checksums in self.checksum_sets


class TensorImages(Dataset):
    """A whole split decoded and normalised once: ``images`` (N, C, H, W) float32, ``targets`` (N,) int64."""

    def __init__(self, images: Tensor, targets: Tensor, classes: Sequence[str]) -> None:
        self.images, self.targets, self.classes = images, targets, list(classes)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.images[i], int(self.targets[i])


class Selection(Dataset):
    """The items ``indices`` of ``base``, with labels renumbered by ``label_map`` (e.g. digits 7, 8, 9 → 0, 1, 2)."""

    def __init__(self, base: Dataset, indices: Sequence[int], label_map: dict[int, int] | None = None) -> None:
        self.base, self.indices, self.label_map = base, list(indices), label_map
        targets = _targets(base)[torch.as_tensor(self.indices, dtype=torch.long)]
        self.targets = targets if label_map is None else torch.tensor([label_map[int(t)] for t in targets])

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        x, _ = self.base[self.indices[i]]
        return x, int(self.targets[i])


def _targets(dataset: Dataset) -> Tensor:
    return torch.as_tensor(dataset.targets, dtype=torch.long)


def _missing(name: str, where: Path, why: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{name} not found in {where.resolve()} ({why}). Fix: set ARCLIB_DATA to a folder that holds it (or pass "
        f"root=... / --data-root), e.g. `/work/shared/data/materialize DIR && export ARCLIB_DATA=DIR` with the "
        f"project's offline mirror, or pass download=True on a machine with internet access.")


def _mnist_like(name: str, root: Path, train: bool, download: bool | None, transform):
    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    raw = root / cls.__name__ / "raw"
    # Local .gz files with the published md5s are extracted without touching the network ("try local first").
    for url, md5 in cls.resources:
        gz = raw / os.path.basename(url)
        if not (raw / gz.stem).exists() and gz.is_file() and _md5(gz) == md5:
            extract_archive(str(gz), str(raw))
    try:
        return cls(str(root), train=train, transform=transform, download=False)
    except RuntimeError as err:
        if download is False:
            raise _missing(name, raw, "no extracted idx files; download=False") from err
    try:
        return cls(str(root), train=train, transform=transform, download=True)
    except Exception as err:  # no network, DNS failure, bad md5, ...
        raise _missing(name, raw, f"download failed: {type(err).__name__}: {err}") from err


def _cifar10(root: Path, train: bool, download: bool | None, transform, cifar10_checksums: str | None):
    sets = cifar10_checksum_sets(cifar10_checksums)
    folder = root / CIFAR10.base_folder
    try:
        return CIFAR10(str(root), train=train, transform=transform, checksum_sets=sets, download=False)
    except RuntimeError as err:
        matched = cifar10_matching_set(folder) if folder.is_dir() else None
        if matched is not None and matched not in sets:
            raise DatasetNotFoundError(
                f"cifar10 in {folder.resolve()} matches the {matched!r} checksum set, which is not enabled: pass "
                f"cifar10_checksums={matched!r} or set {CHECKSUM_ENV}={matched} to accept it") from err
        if folder.is_dir() and any(folder.iterdir()):
            why = "files present but their md5s match no known checksum set: corrupted or edited"
            if download is not True:
                raise _missing("cifar10", folder, why) from err
        if download is False:
            raise _missing("cifar10", folder, "missing batch files; download=False") from err
    try:
        return CIFAR10(str(root), train=train, transform=transform, checksum_sets=sets, download=True)
    except Exception as err:
        raise _missing("cifar10", folder, f"download failed: {type(err).__name__}: {err}") from err


def transform(name: str, train: bool = False, augment: bool = False) -> transforms.Compose:
    """PIL image → normalised tensor, with the usual light augmentation for training when ``augment``."""
    mean, std = NORMALISATION[check_choice("name", name, DATASETS)]
    steps: list = []
    if train and augment:
        if name == "cifar10":
            steps += [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()]
        else:  # digits must not flip; a few degrees and pixels of jitter
            steps += [transforms.RandomAffine(degrees=8, translate=(0.08, 0.08))]
    return transforms.Compose(steps + [transforms.ToTensor(), transforms.Normalize(mean, std)])


def load(name: str, train: bool, root: str | os.PathLike | None = None, augment: bool = False,
         download: bool | None = None, cifar10_checksums: str | None = None) -> Dataset:
    """One split of ``name`` ("mnist", "fashion_mnist" or "cifar10"), normalised.

    ``root``: argument, else ``$ARCLIB_DATA``, else ``./data`` (``arclib.config.data_root``). ``download``: None
    tries local files first and downloads only what is missing; False never downloads; True may download.
    ``augment`` only affects the training split. Without augmentation the split comes back as ``TensorImages``.
    ``cifar10_checksums``: "offline-mirror" also accepts the project's mirror (default: ``$ARCLIB_CIFAR10_CHECKSUMS``).
    """
    check_choice("name", name, DATASETS)
    root = data_root(root)
    augmenting = train and augment
    tf = transform(name, train, augment) if augmenting else None
    if name == "cifar10":
        ds = _cifar10(root, train, download, tf, cifar10_checksums)
        if augmenting:
            return ds
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255)
    else:
        ds = _mnist_like(name, root, train, download, tf)
        if augmenting:
            return ds
        images = ds.data.unsqueeze(1).float().div_(255)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in NORMALISATION[name])
    return TensorImages(images.sub_(mean).div_(std).contiguous(), _targets(ds), ds.classes)


def select(dataset: Dataset, classes: Sequence[int] | None = None, limit: int | None = None) -> Dataset:
    """Keep only ``classes`` (relabelled 0..k−1 in the order given) and then the first ``limit`` items."""
    targets = _targets(dataset)
    if classes is None:
        indices = torch.arange(len(targets))
        label_map = None
    else:
        classes = [int(c) for c in classes]
        n = len(getattr(dataset, "classes", [])) or int(targets.max()) + 1
        bad = [c for c in classes if not 0 <= c < n]
        if bad or len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"classes must be at least 2 distinct class ids in [0, {n}), got {classes}")
        indices = torch.nonzero(torch.isin(targets, torch.tensor(classes))).flatten()
        label_map = {c: i for i, c in enumerate(classes)}
    if limit is not None:
        indices = indices[: check_int("limit", limit, 1, 1 << 40)]
    if label_map is None and limit is None:
        return dataset
    if isinstance(dataset, TensorImages):
        new_targets = targets[indices]
        if label_map is not None:
            new_targets = torch.tensor([label_map[int(t)] for t in new_targets], dtype=torch.long)
            names = [dataset.classes[c] for c in classes] if dataset.classes else [str(c) for c in classes]
        else:
            names = dataset.classes
        return TensorImages(dataset.images[indices], new_targets, names)
    return Selection(dataset, indices.tolist(), label_map)


def num_classes(dataset: Dataset) -> int:
    """Number of distinct labels after ``select`` (labels are always 0..k−1)."""
    return int(_targets(dataset).max()) + 1


def _limit(quick_limit: int | None, limit: int | None, what: str) -> int | None:
    """The smaller of the quick-mode size and a requested first-N limit (None: no limit)."""
    if limit is None:
        return quick_limit
    limit = check_int(what, limit, 1, 1 << 40)
    return limit if quick_limit is None else min(quick_limit, limit)


def loaders(name: str, batch_size: int = 128, root: str | os.PathLike | None = None,
            classes: Sequence[int] | None = None, quick: bool | None = None, num_workers: int = 0, seed: int = 0,
            augment: bool = False, download: bool | None = None, cifar10_checksums: str | None = None,
            train_limit: int | None = None, test_limit: int | None = None) -> tuple[DataLoader, DataLoader]:
    """(train_loader, test_loader) for ``name``, optionally restricted to ``classes`` (e.g. digits 0–6).

    Quick mode (``quick=None`` reads ``ARCLIB_QUICK``) keeps the first 512 training and 256 test images after
    the class filter: tiny, fixed, and through the same code path. ``train_limit`` / ``test_limit`` keep only the
    first N images of a split (after the class filter; in quick mode the smaller of N and the quick size): a
    deterministic subset for a CPU budget, through the same code path. The training loader shuffles with its own
    ``torch.Generator`` seeded by ``seed``; ``arclib.train.fit`` reseeds it at every epoch so a resumed run
    sees the same batches as an uninterrupted one.
    """
    check_int("batch_size", batch_size, 1, 1 << 20)
    check_int("num_workers", num_workers, 0, 256)
    quick = quick_mode() if quick is None else quick
    kw = dict(root=root, download=download, cifar10_checksums=cifar10_checksums)
    train = select(load(name, True, augment=augment, **kw), classes,
                   _limit(QUICK_TRAIN if quick else None, train_limit, "train_limit"))
    test = select(load(name, False, **kw), classes, _limit(QUICK_TEST if quick else None, test_limit, "test_limit"))
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                              generator=generator, drop_last=len(train) > batch_size,
                              persistent_workers=num_workers > 0)
    test_loader = DataLoader(test, batch_size=max(batch_size, 256), shuffle=False, num_workers=num_workers)
    return train_loader, test_loader


def test_loader(name: str, batch_size: int = 512, root: str | os.PathLike | None = None,
                classes: Sequence[int] | None = None, quick: bool | None = None, limit: int | None = None,
                download: bool | None = None, cifar10_checksums: str | None = None) -> DataLoader:
    """The test split alone, as ``loaders`` would return it (same class filter, quick size and limit), for
    evaluating a trained or shipped model without decoding the training split."""
    check_int("batch_size", batch_size, 1, 1 << 20)
    quick = quick_mode() if quick is None else quick
    test = select(load(name, False, root=root, download=download, cifar10_checksums=cifar10_checksums), classes,
                  _limit(QUICK_TEST if quick else None, limit, "limit"))
    return DataLoader(test, batch_size=batch_size, shuffle=False)


def parse_classes(spec: str | Sequence[int] | None) -> list[int] | None:
    """"0-6" → [0, …, 6]; "1,3,5" → [1, 3, 5]; "0-2,7" → [0, 1, 2, 7]; None → None."""
    if spec is None or not isinstance(spec, str):
        return None if spec is None else [int(c) for c in spec]
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ValueError(f"classes must look like '0-6' or '1,3,5' (integers, ranges low-high), got {spec!r}") \
                from None
    return out


class Omniglot(datasets.Omniglot):
    """torchvision's Omniglot that may check the extracted folders instead of the zips (see the module docstring)."""

    def __init__(self, root, background: bool = True, checksums: str = "torchvision", **kwargs) -> None:
        self.checksums = check_choice("omniglot_checksums", checksums, OMNIGLOT_CHECKSUMS)
        super().__init__(root, background=background, **kwargs)

    def _check_integrity(self) -> bool:
        if self.checksums == "torchvision":
            return super()._check_integrity()
        return omniglot_mirror_digest(self.root) == OMNIGLOT_MIRROR_SHA256


def omniglot_mirror_digest(folder: str | os.PathLike) -> str | None:
    """sha256 of the per-image sha256 list of ``folder`` (``omniglot-py``), or None if a split folder is missing."""
    folder = Path(folder)
    if not all((folder / f"images_{split}").is_dir() for split in OMNIGLOT_SPLITS):
        return None
    paths = sorted(p.relative_to(folder).as_posix() for split in OMNIGLOT_SPLITS
                   for p in (folder / f"images_{split}").glob("*/*/*.png"))
    listing = hashlib.sha256()
    for rel in paths:
        listing.update(f"{hashlib.sha256((folder / rel).read_bytes()).hexdigest()}  {rel}\n".encode())
    return listing.hexdigest()


def omniglot_image(image, size: int = 28) -> Tensor:
    """One Omniglot image (PIL, white paper, black ink) → a (1, size, size) float tensor, ink = 1, normalised.

    Box-filtered down from 105×105, so thin strokes become grey rather than vanish."""
    from PIL import Image, ImageOps

    ink = ImageOps.invert(image.convert("L")).resize((size, size), Image.BOX)
    mean, std = OMNIGLOT_NORMALISATION
    return (torch.frombuffer(bytearray(ink.tobytes()), dtype=torch.uint8).view(1, size, size).float() / 255 - mean) / std


class OmniglotImages(TensorImages):
    """One Omniglot split as tensors, with what a study needs beside the character label.

    ``targets``: character index in torchvision's order (alphabet, then character); ``drawers``: 0..19, the
    drawer number of the file name (``0709_03.png`` → 2); ``alphabets``: the alphabet index of each image;
    ``classes``: "alphabet/characterNN"."""

    def __init__(self, images: Tensor, targets: Tensor, classes: Sequence[str], drawers: Tensor,
                 alphabets: Tensor) -> None:
        super().__init__(images, targets, classes)
        self.drawers, self.alphabets = drawers, alphabets


def omniglot(split: str = "background", root: str | os.PathLike | None = None, size: int = 28,
             download: bool | None = None, omniglot_checksums: str | None = None) -> OmniglotImages:
    """The ``split`` ("background": 964 characters, "evaluation": 659) of Omniglot as ``OmniglotImages``.

    ``root`` as for ``load`` (the folder that holds ``omniglot-py``). ``download``: None uses what is on disk and
    downloads only when nothing is there; False never downloads. ``omniglot_checksums``: "torchvision" (default,
    or ``$ARCLIB_OMNIGLOT_CHECKSUMS``) checks torchvision's zips; "offline-mirror" checks the extracted images.
    """
    check_choice("split", split, tuple(OMNIGLOT_SPLITS))
    check_int("size", size, 8, 105)
    checks = omniglot_checksums if omniglot_checksums is not None else (
        os.environ.get(OMNIGLOT_CHECKSUM_ENV) or "torchvision")
    check_choice("omniglot_checksums" if omniglot_checksums is not None else OMNIGLOT_CHECKSUM_ENV, checks,
                 OMNIGLOT_CHECKSUMS)
    root = data_root(root)
    folder = root / Omniglot.folder
    background = split == "background"
    try:
        ds = Omniglot(str(root), background=background, checksums=checks, download=False)
    except RuntimeError as err:
        if checks == "torchvision" and (folder / f"images_{split}").is_dir() and \
                not (folder / f"images_{split}.zip").is_file():
            raise DatasetNotFoundError(
                f"omniglot in {folder.resolve()} has the image folders but not torchvision's zips, so their md5s "
                f"cannot be checked: pass omniglot_checksums='offline-mirror' or set "
                f"{OMNIGLOT_CHECKSUM_ENV}=offline-mirror to check the images themselves") from err
        if download is False or checks == "offline-mirror":
            raise _missing("omniglot", folder, "images missing or altered" if folder.is_dir() else
                           "no omniglot-py folder") from err
        try:
            ds = Omniglot(str(root), background=background, checksums=checks, download=True)
        except Exception as err2:
            raise _missing("omniglot", folder, f"download failed: {type(err2).__name__}: {err2}") from err2
    from PIL import Image

    # torchvision lists folders in file-system order; sorted, the character indices are the same on every machine
    split_folder = Path(ds.target_folder)
    characters = sorted(p.relative_to(split_folder).as_posix() for p in split_folder.glob("*/*") if p.is_dir())
    alphabets = sorted({c.split("/")[0] for c in characters})
    images, targets, drawers = [], [], []
    for index, character in enumerate(characters):
        for png in sorted((split_folder / character).glob("*.png")):
            with Image.open(png) as img:
                images.append(omniglot_image(img, size))
            targets.append(index)
            drawers.append(int(png.stem.split("_")[-1]) - 1)
    if len(characters) != OMNIGLOT_SPLITS[split] or len(images) != 20 * len(characters):
        raise _missing("omniglot", split_folder, f"{len(characters)} characters and {len(images)} images, expected "
                       f"{OMNIGLOT_SPLITS[split]} and {20 * OMNIGLOT_SPLITS[split]}")
    targets_t = torch.tensor(targets, dtype=torch.long)
    alphabet_of = torch.tensor([alphabets.index(c.split("/")[0]) for c in characters])
    return OmniglotImages(torch.stack(images), targets_t, characters, torch.tensor(drawers, dtype=torch.long),
                          alphabet_of[targets_t])


def omniglot_subset(data: OmniglotImages, characters: Sequence[int], drawers: Sequence[int]) -> TensorImages:
    """The images of ``characters`` (relabelled 0..k−1 in the order given) by ``drawers`` (0..19)."""
    characters = torch.as_tensor(list(characters), dtype=torch.long)
    keep = torch.isin(data.targets, characters) & torch.isin(data.drawers, torch.as_tensor(list(drawers)))
    relabel = torch.full((len(data.classes),), -1, dtype=torch.long)
    relabel[characters] = torch.arange(len(characters))
    return TensorImages(data.images[keep], relabel[data.targets[keep]], [data.classes[int(c)] for c in characters])
