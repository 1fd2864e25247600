"""Labelled image datasets: the embedded samples, an ImageNet-style folder, a CSV list.

A dataset is a list of ``(id, path, label)`` entries read lazily: ``dataset[i]`` reads the file
with :func:`~srdefense.data.read_image` and applies the dataset's transform. Labels are ImageNet
class indices (0..999). A broken file raises :class:`~srdefense.data.ImageReadError` from
``dataset[i]``; batch jobs use :func:`iter_samples` or :func:`iter_batches`, which report it as a
:class:`SampleError` and go on with the others.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ..models.imagenet import wnid_to_index
from .io import DEFAULT_MAX_PIXELS, read_image
from .samples import embedded_samples
from .transforms import Preprocess

#: file suffixes taken as images in folders (case-insensitive)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")

Transform = Callable[[Tensor], Tensor]


class DatasetError(ValueError):
    """Raised when a dataset cannot be built: bad spec, bad folder layout, bad CSV row."""


@dataclass(frozen=True)
class Sample:
    """One labelled image.

    Attributes:
        id: a stable identifier, unique within the dataset, usable as a file name.
        image: float32 (3, H, W) in [0, 1].
        label: ImageNet class index.
        path: the file it was read from.
    """

    id: str
    image: Tensor
    label: int
    path: Path | None = None


@dataclass(frozen=True)
class SampleError:
    """A dataset item that could not be read (yielded by :func:`iter_samples`).

    Attributes:
        id: the item's identifier.
        index: its position in the dataset.
        path: its file.
        error: the exception raised while reading or transforming it.
    """

    id: str
    index: int
    path: Path | None
    error: Exception = field(compare=False)

    @property
    def message(self) -> str:
        """One line for a report: ``id: error``."""
        return f"{self.id}: {self.error}"


@dataclass(frozen=True)
class _Entry:
    id: str
    path: Path
    label: int


class ImageDataset:
    """Base class: a list of ``(id, path, label)`` entries, read lazily.

    Args:
        entries: ``(id, path, label)`` triples; ids must be unique.
        transform: applied to each image after reading (e.g. :class:`~srdefense.data.Preprocess`).
        max_pixels: pixel limit passed to :func:`~srdefense.data.read_image`.
    """

    def __init__(
        self,
        entries: Iterable[tuple[str, str | Path, int]],
        *,
        transform: Transform | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._entries = [_Entry(str(i), Path(p), int(lab)) for i, p, lab in entries]
        dup = [i for i, c in Counter(e.id for e in self._entries).items() if c > 1]
        if dup:
            raise DatasetError(f"duplicate sample ids: {', '.join(sorted(set(dup))[:5])}")
        self.transform = transform
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Sample:
        """Read item ``index``.

        Raises:
            IndexError: out of range.
            ImageReadError: if its file cannot be read.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} samples")
        e = self._entries[index]
        image = read_image(e.path, max_pixels=self.max_pixels)
        if self.transform is not None:
            image = self.transform(image)
        return Sample(id=e.id, image=image, label=e.label, path=e.path)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    @property
    def ids(self) -> list[str]:
        """Sample ids, in order."""
        return [e.id for e in self._entries]

    @property
    def labels(self) -> list[int]:
        """Labels, in order."""
        return [e.label for e in self._entries]

    @property
    def paths(self) -> list[Path]:
        """Files, in order."""
        return [e.path for e in self._entries]

    def subset(self, indices: Sequence[int]) -> ImageDataset:
        """A dataset of the items at ``indices`` (same transform and pixel limit)."""
        picked = [self._entries[i] for i in indices]
        return ImageDataset(
            [(e.id, e.path, e.label) for e in picked], transform=self.transform, max_pixels=self.max_pixels
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} samples)"


class EmbeddedSamples(ImageDataset):
    """The 20 labelled ImageNet validation photos shipped by foolbox 3.3.4.

    Ids are the file stems (``imagenet_07_609``); the label is the last number.

    Args:
        transform: applied to each image (the photos are 512x512, one 1024x683).
    """

    def __init__(self, *, transform: Transform | None = None) -> None:
        super().__init__([(p.stem, p, lab) for p, lab in embedded_samples("imagenet")], transform=transform)


def _unique_ids(paths: Sequence[Path], prefixes: Sequence[str]) -> list[str]:
    stems = [p.stem for p in paths]
    if len(set(stems)) == len(stems):
        return stems
    ids = [f"{pre}_{s}" for pre, s in zip(prefixes, stems, strict=True)]
    if len(set(ids)) == len(ids):
        return ids
    return [f"{i:06d}_{s}" for i, s in enumerate(ids)]


class ImageNetFolder(ImageDataset):
    """An ImageNet-style folder: ``ROOT/<wnid>/<image>``, one sub-folder per class.

    Sub-folders are WordNet ids of the 1000 ImageNet classes (``n01440764``...); the label is
    the wnid's index. Files with an image suffix (:data:`IMAGE_EXTENSIONS`) are taken, hidden
    files skipped. Ids are the file stems (prefixed by the wnid if stems repeat).

    Args:
        root: the folder.
        transform: applied to each image.
        max_pixels: pixel limit of :func:`~srdefense.data.read_image`.

    Raises:
        DatasetError: if ``root`` is not a folder, has sub-folders that are not ImageNet wnids,
            or holds no image.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        transform: Transform | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root} is not a folder")
        index = wnid_to_index()
        folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        unknown = [d.name for d in folders if d.name not in index]
        if unknown:
            raise DatasetError(
                f"{root}: expected one sub-folder per ImageNet class named by its WordNet id "
                f"(e.g. n01440764); not ImageNet wnids: {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        files: list[Path] = []
        labels: list[int] = []
        prefixes: list[str] = []
        for d in folders:
            for f in sorted(d.iterdir()):
                if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS:
                    files.append(f)
                    labels.append(index[d.name])
                    prefixes.append(d.name)
        if not files:
            raise DatasetError(
                f"{root}: no images found in <wnid>/ sub-folders ({', '.join(IMAGE_EXTENSIONS)})"
            )
        ids = _unique_ids(files, prefixes)
        super().__init__(zip(ids, files, labels, strict=True), transform=transform, max_pixels=max_pixels)
        self.root = root


def _parse_label(text: str, index: dict[str, int], where: str) -> int:
    t = text.strip()
    if t in index:
        return index[t]
    try:
        lab = int(t)
    except ValueError:
        raise DatasetError(f"{where}: label {t!r} is neither a class index nor an ImageNet wnid") from None
    if not 0 <= lab < 1000:
        raise DatasetError(f"{where}: label {lab} out of range 0..999")
    return lab


class CsvDataset(ImageDataset):
    """A CSV list of ``path,label`` rows (a ``path,label`` header is optional).

    Relative paths are resolved against the CSV file's folder. A label is a class index
    (0..999) or an ImageNet WordNet id. With a header, an optional ``id`` column names the
    samples; otherwise ids are file stems (made unique with the row number if they repeat).
    Files are not opened here: a missing file fails when the item is read (see
    :func:`iter_samples`).

    Args:
        file: the CSV file.
        transform: applied to each image.
        max_pixels: pixel limit of :func:`~srdefense.data.read_image`.

    Raises:
        DatasetError: naming the file and line for a malformed row, or for an empty list.
    """

    def __init__(
        self,
        file: str | Path,
        *,
        transform: Transform | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        file = Path(file)
        if not file.is_file():
            raise DatasetError(f"CSV file {file} not found")
        index = wnid_to_index()
        with open(file, newline="", encoding="utf-8-sig") as f:
            rows = [(n, r) for n, r in enumerate(csv.reader(f), start=1) if r and any(c.strip() for c in r)]
        if not rows:
            raise DatasetError(f"{file}: no rows")
        cols = {"path": 0, "label": 1}
        id_col: int | None = None
        header = [c.strip().lower() for c in rows[0][1]]
        if "path" in header and "label" in header:
            cols = {"path": header.index("path"), "label": header.index("label")}
            id_col = header.index("id") if "id" in header else None
            rows = rows[1:]
        entries: list[tuple[str | None, Path, int]] = []
        for n, row in rows:
            where = f"{file}, line {n}"
            need = max(cols.values()) + 1
            if len(row) < need:
                raise DatasetError(f"{where}: expected 'path,label', got {','.join(row)!r}")
            p = Path(row[cols["path"]].strip()).expanduser()
            if not p.is_absolute():
                p = file.parent / p
            label = _parse_label(row[cols["label"]], index, where)
            sid = row[id_col].strip() if id_col is not None and len(row) > id_col else None
            entries.append((sid or None, p, label))
        if not entries:
            raise DatasetError(f"{file}: no rows after the header")
        if all(sid is not None for sid, _, _ in entries):
            ids = [str(sid) for sid, _, _ in entries]
        else:
            ids = _unique_ids([p for _, p, _ in entries], [f"{i:06d}" for i in range(len(entries))])
        super().__init__(
            [(i, p, lab) for i, (_, p, lab) in zip(ids, entries, strict=True)],
            transform=transform,
            max_pixels=max_pixels,
        )
        self.file = file


def load_dataset(
    spec: str | Path,
    *,
    size: int | None = 224,
    crop_pct: float = 0.875,
    n: int | None = None,
    seed: int = 0,
    interpolation: str = "bicubic",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageDataset:
    """Open a dataset from a spec: ``"samples"``, an ImageNet-style folder, or a ``.csv`` file.

    Args:
        spec: ``"samples"`` (the 20 embedded ImageNet photos), a folder ``ROOT/<wnid>/*``, or
            a CSV file of ``path,label`` rows.
        size: output side of the standard preprocessing (:func:`~srdefense.data.preprocess`);
            ``None`` keeps the images as they are.
        crop_pct: crop fraction of the preprocessing.
        n: keep a random subset of ``n`` items (drawn with ``seed``, kept in dataset order);
            ``None`` or ``n >= len`` keeps all.
        seed: seed of the subset draw.
        interpolation: resize interpolation of the preprocessing.
        max_pixels: pixel limit of :func:`~srdefense.data.read_image`.

    Returns:
        The dataset.

    Raises:
        DatasetError: if ``spec`` is none of the above, or the dataset is malformed.
    """
    transform = None if size is None else Preprocess(size, crop_pct, interpolation=interpolation)
    text = str(spec)
    path = Path(text).expanduser()
    ds: ImageDataset
    if text == "samples":
        ds = EmbeddedSamples(transform=transform)
        ds.max_pixels = max_pixels
    elif path.is_dir():
        ds = ImageNetFolder(path, transform=transform, max_pixels=max_pixels)
    elif path.suffix.lower() == ".csv":
        ds = CsvDataset(path, transform=transform, max_pixels=max_pixels)
    else:
        hint = "file not found" if not path.exists() else "not a folder or a .csv file"
        raise DatasetError(
            f"dataset {text!r}: {hint}; expected 'samples' (the embedded ImageNet photos), "
            "a folder ROOT/<wnid>/<images>, or a CSV file of 'path,label' rows"
        )
    if n is not None:
        if n < 1:
            raise ValueError(f"n: expected a positive number of samples, got {n}")
        if n < len(ds):
            g = torch.Generator().manual_seed(int(seed))
            picked = sorted(torch.randperm(len(ds), generator=g)[:n].tolist())
            ds = ds.subset(picked)
    return ds


def collate(samples: Sequence[Sample]) -> tuple[Tensor, Tensor, list[str]]:
    """Stack samples into a batch.

    Args:
        samples: samples whose images all have the same shape.

    Returns:
        ``(images (N, 3, H, W), labels int64 (N,), ids)``.

    Raises:
        ValueError: for an empty list or images of different shapes.
    """
    if not samples:
        raise ValueError("collate: no samples")
    shapes = {tuple(s.image.shape) for s in samples}
    if len(shapes) > 1:
        detail = ", ".join(f"{s.id}: {tuple(s.image.shape)}" for s in samples[:4])
        raise ValueError(f"collate: images differ in shape ({detail}); preprocess them to one size")
    images = torch.stack([s.image for s in samples])
    labels = torch.tensor([s.label for s in samples], dtype=torch.int64)
    return images, labels, [s.id for s in samples]


def iter_samples(dataset: ImageDataset) -> Iterator[Sample | SampleError]:
    """Iterate over a dataset, yielding a :class:`SampleError` for an item that fails instead of raising.

    Example:
        >>> ds = load_dataset("samples")
        >>> good = [s for s in iter_samples(ds) if isinstance(s, Sample)]
        >>> len(good)
        20
    """
    ids, paths = dataset.ids, dataset.paths
    for i in range(len(dataset)):
        try:
            yield dataset[i]
        except Exception as exc:  # a batch job skips and reports any per-item failure
            yield SampleError(id=ids[i], index=i, path=paths[i], error=exc)


class Batch(NamedTuple):
    """A batch from :func:`iter_batches`: stacked good items and the errors met on the way."""

    images: Tensor
    labels: Tensor
    ids: list[str]
    errors: list[SampleError]


def iter_batches(dataset: ImageDataset, batch_size: int) -> Iterator[Batch]:
    """Iterate over a dataset in batches of up to ``batch_size`` readable items.

    Unreadable items are skipped and reported in the ``errors`` of the batch that follows
    them; a final batch with no images (``images`` of shape (0, 3, 0, 0)) carries trailing errors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    good: list[Sample] = []
    errors: list[SampleError] = []
    for item in iter_samples(dataset):
        if isinstance(item, SampleError):
            errors.append(item)
            continue
        good.append(item)
        if len(good) == batch_size:
            yield Batch(*collate(good), errors)
            good, errors = [], []
    if good:
        yield Batch(*collate(good), errors)
    elif errors:
        yield Batch(torch.empty(0, 3, 0, 0), torch.empty(0, dtype=torch.int64), [], errors)
