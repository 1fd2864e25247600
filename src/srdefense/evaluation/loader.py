"""The input pipeline of an evaluation: batch windows by dataset position, decoded ahead.

Windows can be decoded in ``DataLoader`` worker processes.

Window ``b`` covers dataset positions ``[b * batch_size, (b + 1) * batch_size)``; which samples
share a batch depends only on their positions, never on which other files happened to be
readable. A rank of a sharded run loads only the windows it owns (:mod:`.distributed`).

``torch.utils.data.DataLoader`` does the multiprocessing (worker processes, prefetching, pinned
memory); each of its items is one whole window, loaded by :class:`WindowDataset`, so an
unreadable image is reported in the window's ``warnings`` and skipped inside the worker, never
fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

__all__ = [
    "Batch",
    "WindowDataset",
    "data_ids",
    "data_size",
    "first_batch",
    "iter_batches",
    "iter_stream",
    "iter_windows",
]


@dataclass
class Batch:
    """One batch window of the data: the readable samples among positions ``[start, stop)``.

    Attributes:
        index: the window index.
        start: first position of the window.
        stop: one past the last position of the window.
        positions: dataset positions of the readable samples.
        ids: their sample ids.
        images: ``(n, 3, H, W)`` float images (``n`` may be 0 when nothing was readable).
        labels: ``(n,)`` labels.
        skipped: ``(position, message)`` of the unreadable samples of the window.
    """

    index: int
    start: int
    stop: int
    positions: list[int]
    ids: list[str]
    images: Tensor
    labels: Tensor
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def pin_memory(self) -> Batch:
        """Page-locked copies of the tensors (called by ``DataLoader(pin_memory=True)``)."""
        self.images = self.images.pin_memory()
        self.labels = self.labels.pin_memory()
        return self


def _tensor_data(data: Any) -> bool:
    return isinstance(data, tuple | list) and len(data) in (2, 3) and isinstance(data[0], Tensor)


def data_size(data: Any) -> int | None:
    """Number of items of ``data`` (``None`` for an iterable without a length)."""
    if _tensor_data(data):
        return int(data[0].shape[0])
    try:
        return len(data)
    except TypeError:
        return None


def data_ids(data: Any) -> list[str] | None:
    """Sample ids of ``data`` when it declares them (tensors: the third element or positions)."""
    if _tensor_data(data):
        return [str(i) for i in data[2]] if len(data) == 3 else [str(i) for i in range(data[0].shape[0])]
    ids = getattr(data, "ids", None)
    return [str(i) for i in ids] if ids is not None else None


def _sample(item: Any) -> tuple[str, Tensor, int] | str:
    """``(id, image, label)`` of a dataset item, or the reason it is unusable."""
    if isinstance(item, BaseException):
        return f"skipped an unreadable sample: {item}"
    if isinstance(item, tuple) and len(item) == 2 and (item[0] is None or isinstance(item[1], BaseException)):
        return f"skipped an unreadable sample: {item[1]}"
    err = getattr(item, "error", None)
    if err is not None:
        return f"skipped sample {getattr(item, 'id', '?')}: {err}"
    return str(item.id), item.image, int(item.label)


def _item(data: Any, i: int) -> tuple[str, Tensor, int] | str:
    """Item ``i`` of an indexable dataset (tensors, or ``__getitem__`` + ``__len__``)."""
    if _tensor_data(data):
        ids = data[2] if len(data) == 3 else None
        return (str(ids[i]) if ids is not None else str(i)), data[0][i], int(data[1][i])
    try:
        item = data[i]
    except Exception as exc:  # noqa: BLE001 - any per-item failure is reported and skipped
        ids = getattr(data, "ids", None)
        name = ids[i] if ids is not None else i
        return f"skipped an unreadable sample: sample {name}: {exc}"
    return _sample(item)


def _indexable(data: Any) -> bool:
    return _tensor_data(data) or (hasattr(data, "__getitem__") and hasattr(data, "__len__"))


def _make(b: int, size: int, items: list[tuple[int, tuple[str, Tensor, int] | str]]) -> Batch:
    good = [(p, s) for p, s in items if not isinstance(s, str)]
    return Batch(
        index=b,
        start=b * size,
        stop=(b + 1) * size,
        positions=[p for p, _ in good],
        ids=[s[0] for _, s in good],
        images=torch.stack([s[1].float() for _, s in good]) if good else torch.zeros(0, 3, 1, 1),
        labels=torch.tensor([s[2] for _, s in good], dtype=torch.long),
        skipped=[(p, s) for p, s in items if isinstance(s, str)],
    )


class WindowDataset(torch.utils.data.Dataset):
    """Item ``i`` is the whole window ``windows[i]`` of an indexable dataset, as a :class:`Batch`.

    Args:
        data: a dataset with ``__getitem__`` and ``__len__``, or ``(images, labels[, ids])`` tensors.
        batch_size: positions per window.
        windows: the window indices to serve, in order.
    """

    def __init__(self, data: Any, batch_size: int, windows: Sequence[int]) -> None:
        self.data = data
        self.batch_size = batch_size
        self.windows = list(windows)
        self.n = data_size(data) or 0

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> Batch:
        b = self.windows[i]
        stop = min((b + 1) * self.batch_size, self.n)
        return _make(b, self.batch_size, [(p, _item(self.data, p)) for p in range(b * self.batch_size, stop)])


def _identity(item: Batch) -> Batch:
    return item


def iter_windows(
    data: Any,
    batch_size: int,
    windows: Sequence[int],
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """The given windows of ``data``, in order; empty windows (nothing readable) included.

    Args:
        data: the dataset (indexable, or any iterable: then every item is read in this process
            and the windows not asked for are dropped).
        batch_size: positions per window.
        windows: window indices, increasing.
        workers: ``DataLoader`` worker processes decoding ahead (0: in this process).
        pin_memory: page-locked batches (for asynchronous copies to a GPU).
    """
    if not _indexable(data):
        wanted = set(windows)
        for batch in _iter_all(data, batch_size):
            if batch.index in wanted:
                yield batch
        return
    ds = WindowDataset(data, batch_size, windows)
    if workers <= 0 and not pin_memory:
        for i in range(len(ds)):
            yield ds[i]
        return
    loader = torch.utils.data.DataLoader(
        ds,
        batch_size=None,
        shuffle=False,
        num_workers=max(0, workers),
        # batch_size=None: the loader passes single items, not the lists its stub types collate_fn for
        collate_fn=cast(Callable[[list[Any]], Any], _identity),
        pin_memory=pin_memory,
        # the loader's own seed draw must not advance the global generator
        generator=torch.Generator().manual_seed(0),
    )
    yield from loader


def _iter_all(data: Any, batch_size: int) -> Iterator[Batch]:
    buf: list[tuple[int, tuple[str, Tensor, int] | str]] = []
    window = 0
    for pos, item in enumerate(data):
        b = pos // batch_size
        if b != window:
            yield _make(window, batch_size, buf)
            buf, window = [], b
        buf.append((pos, _sample(item)))
    if buf:
        yield _make(window, batch_size, buf)


def iter_stream(data: Any, batch_size: int, keep: Callable[[int], bool]) -> Iterator[Batch]:
    """The windows ``w`` of ``data`` with ``keep(w)``, reading every item in this process."""
    for batch in _iter_all(data, batch_size) if not _indexable(data) else iter_batches_all(data, batch_size):
        if keep(batch.index):
            yield batch


def iter_batches_all(data: Any, batch_size: int) -> Iterator[Batch]:
    """Every window of an indexable ``data`` in order, in this process (empty ones included)."""
    n = data_size(data) or 0
    yield from iter_windows(data, batch_size, range((n + batch_size - 1) // batch_size))


def first_batch(data: Any, batch_size: int) -> Batch | None:
    """The first window with a readable sample (``None`` when there is none)."""
    source = _iter_all(data, batch_size) if not _indexable(data) else iter_batches_all(data, batch_size)
    for batch in source:
        if batch.ids:
            return batch
    return None


def iter_batches(data: Any, batch_size: int, warnings: list[dict[str, str]]) -> Iterator[Batch]:
    """Every non-empty batch window of ``data`` in order; unreadable items reported in ``warnings``."""
    source = _iter_all(data, batch_size) if not _indexable(data) else iter_batches_all(data, batch_size)
    for batch in source:
        warnings.extend({"check": "data", "message": m} for _, m in batch.skipped)
        if batch.ids:
            yield batch
