"""Image quilting (Guo, Rana, Cisse, van der Maaten, ICLR 2018; after Efros & Freeman 2001).

The image is covered by ``patch_size x patch_size`` patches on a grid with stride
``patch_size - overlap`` (the last row and column of patches are aligned with the image edge).
Every patch is replaced by one of its ``k`` nearest neighbours (Euclidean distance over all
channels and pixels) in a database of patches cut from *clean* images, drawn uniformly with
the module's generator; overlapping replacements are averaged. Guo et al. use 5 x 5 patches,
an overlap of 2 (``patch_size // 2``), a database of 1M patches from ImageNet training images
searched with FAISS after PCA to 64 dimensions, and stitch with a minimum-error graph cut.

Deviations, documented: exact nearest-neighbour search in pixel space (``torch.cdist`` in
chunks, batched) instead of approximate search after PCA; averaging instead of the graph cut;
``k = 10`` random neighbours by default (the paper describes a random choice among the K
nearest; its code's default is ``k = 1``, which is available and deterministic). The database
must be given: a folder of clean images or a tensor of images (patches are cut at random
positions, at most ``max_patches``, reproducibly from ``database_seed``). Quilting has no
gradient; the BPDA stand-in is the identity.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from .._random import RandomSource, make_generator, randint
from .._validation import check_image_batch
from ..data.io import read_image
from .base import Purifier
from .registry import register_defense

__all__ = ["ImageQuilting", "build_patch_database", "quilt"]

_GUO = (
    "Guo, Rana, Cisse, van der Maaten, Countering Adversarial Images using Input Transformations, "
    "ICLR 2018 (image quilting: Efros & Freeman, SIGGRAPH 2001)"
)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


def _read_folder(folder: Path) -> list[Tensor]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(
            f"quilting database: no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}"
        )
    return [read_image(f) for f in files]


def build_patch_database(
    source: str | Path | Tensor | list[Tensor],
    patch_size: int = 5,
    max_patches: int = 100_000,
    seed: int = 0,
) -> Tensor:
    """Cut up to ``max_patches`` random ``patch_size`` patches from clean images.

    Patches are distributed over the images in proportion to their number of patch positions
    and drawn at random positions (without replacement within an image when it has fewer
    positions than its share, all of them then).

    Args:
        source: a folder of images (searched recursively; read with
            :func:`srdefense.data.io.read_image`),
            a float tensor (N, 3, H, W) in [0, 1], or a list of (3, H, W) tensors.
        patch_size: side of the square patches.
        max_patches: size bound of the database.
        seed: seed of the position draws (the same seed gives the same database).

    Returns:
        Patches as rows, (P, 3 * patch_size**2), flattened in ``unfold`` order.

    Raises:
        FileNotFoundError: the folder does not exist or holds no images.
        ValueError: no image is at least ``patch_size`` on each side.
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"quilting database: {folder} is not a folder")
        images = _read_folder(folder)
    elif isinstance(source, Tensor):
        check_image_batch(source, "database")
        images = list(source.detach().float().cpu())
    elif isinstance(source, list):
        images = [check_image_batch(t[None], "database images")[0].detach().float().cpu() for t in source]
    else:
        raise TypeError(
            f"database: expected a folder path, an image tensor or a list of tensors, got "
            f"{type(source).__name__}"
        )
    if max_patches < 1:
        raise ValueError(f"max_patches: expected >= 1, got {max_patches}")
    p = patch_size
    counts = [max(0, (im.shape[-2] - p + 1) * (im.shape[-1] - p + 1)) for im in images]
    total = sum(counts)
    if total == 0:
        raise ValueError(f"quilting database: no image is at least {p} x {p}")
    g = torch.Generator().manual_seed(int(seed))
    budget = min(max_patches, total)
    rows = []
    for im, cnt in zip(images, counts, strict=True):
        if cnt == 0:
            continue
        share = min(cnt, math.ceil(budget * cnt / total))
        pos = torch.randperm(cnt, generator=g)[:share] if share < cnt else torch.arange(cnt)
        ncols = im.shape[-1] - p + 1
        r, c = pos // ncols, pos % ncols
        dr = torch.arange(p)
        ri = r[:, None] + dr[None, :]  # (S, p)
        ci = c[:, None] + dr[None, :]
        patches = im[:, ri[:, :, None], ci[:, None, :]]  # (3, S, p, p)
        rows.append(patches.permute(1, 0, 2, 3).reshape(share, -1))
    db = torch.cat(rows)
    if db.shape[0] > budget:
        db = db[torch.randperm(db.shape[0], generator=g)[:budget]]
    return db.contiguous()


def _positions(n: int, p: int, stride: int) -> Tensor:
    """Patch starts along a side of length ``n >= p``: every ``stride``, the last one at ``n - p``."""
    pos = list(range(0, n - p + 1, stride))
    if pos[-1] != n - p:
        pos.append(n - p)
    return torch.tensor(pos)


def _knn(queries: Tensor, database: Tensor, k: int, chunk_elements: int = 1 << 24) -> Tensor:
    """Indices (Q, k) of the k nearest database rows of each query, exact, chunked over queries."""
    q_chunk = max(1, chunk_elements // max(1, database.shape[0]))
    out = []
    for start in range(0, queries.shape[0], q_chunk):
        d = torch.cdist(queries[start : start + q_chunk], database)
        out.append(d.topk(k, dim=1, largest=False).indices)
    return torch.cat(out) if out else queries.new_zeros((0, k), dtype=torch.int64)


def quilt(
    images: Tensor,
    database: Tensor,
    patch_size: int = 5,
    overlap: int = 2,
    k: int = 10,
    *,
    generator: RandomSource | None = None,
) -> Tensor:
    """Replace every grid patch by one of its ``k`` nearest database patches; average overlaps.

    Patch positions are every ``patch_size - overlap`` pixels, plus a last row/column of patches
    aligned with the bottom/right edge where the stride does not reach it exactly.

    Args:
        images: float RGB images in [0, 1].
        database: patches (P, 3 * patch_size**2) from :func:`build_patch_database`.
        patch_size: side of the patches (must match the database).
        overlap: overlap of neighbouring patches, in [0, patch_size).
        k: number of nearest neighbours to choose from (uniformly at random).
        generator: random generator for the choice (``None``: torch's global one).

    Returns:
        The quilted images, (N, 3, H, W), in [0, 1].
    """
    check_image_batch(images, "images")
    p, stride = patch_size, patch_size - overlap
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap: expected in [0, {patch_size}), got {overlap}")
    if database.ndim != 2 or database.shape[1] != 3 * p * p:
        raise ValueError(
            f"database: expected shape (P, {3 * p * p}) for {p} x {p} patches, got {tuple(database.shape)}"
        )
    if not 1 <= k <= database.shape[0]:
        raise ValueError(f"k: expected in [1, {database.shape[0]}] (database size), got {k}")
    n, c, h, w = images.shape
    if n == 0:
        return images.clone()
    if h < p or w < p:  # too small for one patch: pad (edge replication), quilt, crop
        x = nn.functional.pad(images, (0, max(0, p - w), 0, max(0, p - h)), mode="replicate")
        return quilt(x, database, p, overlap, k, generator=generator)[..., :h, :w]
    dev = images.device
    rows = (_positions(h, p, stride)[:, None] + torch.arange(p)).to(dev)  # (Ly, p)
    cols = (_positions(w, p, stride)[:, None] + torch.arange(p)).to(dev)  # (Lx, p)
    ly, lx = rows.shape[0], cols.shape[0]
    r_idx, c_idx = rows[:, None, :, None], cols[None, :, None, :]  # -> (Ly, Lx, p, p)
    patches = images[:, :, r_idx, c_idx]  # (N, C, Ly, Lx, p, p)
    queries = patches.permute(0, 2, 3, 1, 4, 5).reshape(n * ly * lx, c * p * p)
    db = database.to(device=dev, dtype=images.dtype)
    nn_idx = _knn(queries, db, k)
    if k > 1:
        pick = randint(0, k, (n * ly * lx,), generator, dev)
        chosen = db[nn_idx.gather(1, pick[:, None]).squeeze(1)]
    else:
        chosen = db[nn_idx[:, 0]]
    values = chosen.reshape(n, ly, lx, c, p, p).permute(0, 3, 1, 2, 4, 5).reshape(n, c, -1)
    flat_idx = (r_idx * w + c_idx).expand(ly, lx, p, p).reshape(-1)
    summed = images.new_zeros((n, c, h * w)).index_add_(2, flat_idx, values)
    counts = images.new_zeros((h * w,)).index_add_(0, flat_idx, torch.ones_like(flat_idx, dtype=images.dtype))
    return (summed / counts).reshape(n, c, h, w).clamp(0, 1)


class ImageQuilting(Purifier):
    """Image quilting with a patch database of clean images (Guo et al., ICLR 2018).

    See the module documentation for the algorithm, defaults and deviations.

    Args:
        database: a folder of clean images, an image tensor (N, 3, H, W) in [0, 1], or a ready
            patch matrix (P, 3 * patch_size**2) (used as is).
        patch_size: side of the patches (default 5, Guo et al.).
        overlap: overlap of neighbouring patches (default 2 = ``patch_size // 2``, Guo et al.).
        k: neighbours to choose from at random (default 10; 1 is deterministic).
        max_patches: bound on the database size (default 100,000; Guo et al. used 1M).
        database_seed: seed of the patch positions cut from the images.
        generator: random generator for the neighbour choice; mutually exclusive with ``seed``.
        seed: seed of a new CPU generator, so that draws can be replayed.

    Raises:
        ValueError: when no database is given.
    """

    differentiable = False
    randomized = True
    reference = _GUO
    database: Tensor

    def __init__(
        self,
        database: str | Path | Tensor | list[Tensor] | None,
        patch_size: int = 5,
        overlap: int = 2,
        k: int = 10,
        max_patches: int = 100_000,
        database_seed: int = 0,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if database is None:
            raise ValueError(
                "image quilting needs a database of clean patches: pass database=<folder of clean "
                "images> or an image tensor (N, 3, H, W), e.g. create_defense('quilting:database=/path')"
            )
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size: expected a positive integer, got {patch_size!r}")
        if not 0 <= overlap < patch_size:
            raise ValueError(f"overlap: expected in [0, {patch_size}), got {overlap}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected a positive integer, got {k!r}")
        if isinstance(database, Tensor) and database.ndim == 2:
            if database.shape[1] != 3 * patch_size**2:
                raise ValueError(
                    f"database: a patch matrix must have {3 * patch_size**2} columns for "
                    f"{patch_size} x {patch_size} patches, got {tuple(database.shape)}"
                )
            patches = database.detach().float()[:max_patches]
        else:
            patches = build_patch_database(database, patch_size, max_patches, database_seed)
        if k > patches.shape[0]:
            raise ValueError(f"k={k} exceeds the database size {patches.shape[0]}")
        self.patch_size = patch_size
        self.overlap = overlap
        self.k = k
        self.register_buffer("database", patches, persistent=False)
        self.generator = make_generator(generator, seed)
        self.randomized = k > 1

    def purify(self, x: Tensor) -> Tensor:
        """Quilt every image from the database."""
        return quilt(x, self.database, self.patch_size, self.overlap, self.k, generator=self.generator)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"patches={self.database.shape[0]}, patch_size={self.patch_size}, overlap={self.overlap}, "
            f"k={self.k}"
        )


@register_defense(
    "quilting",
    reference=_GUO,
    description="replace 5x5 patches by one of 10 nearest clean patches (needs database=folder)",
    fast=False,
)
def _quilting(
    database: str | None = None,
    patch_size: int = 5,
    overlap: int = 2,
    k: int = 10,
    max_patches: int = 100_000,
    database_seed: int = 0,
    seed: int | None = None,
) -> ImageQuilting:
    return ImageQuilting(
        database,
        patch_size=patch_size,
        overlap=overlap,
        k=k,
        max_patches=max_patches,
        database_seed=database_seed,
        seed=seed,
    )
