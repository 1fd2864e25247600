"""Reading and writing images: one reader for every format Pillow reads, one atomic PNG writer.

Every image comes out as a float32 tensor (3, H, W) in [0, 1], RGB, with these rules:

- EXIF orientation is applied (``ImageOps.exif_transpose``), so photos come out upright.
- Grayscale (``1``, ``L``) is replicated to three channels; palette (``P``) is expanded.
- Transparency (``RGBA``, ``LA``, ``PA``, a palette or ``tRNS`` transparent colour) is
  composited on **white**, as a viewer shows it on a white page; dropping the alpha channel
  would instead expose whatever colour happens to be stored under transparent pixels.
- 16-bit images (``I;16``, ``I;16B``, and ``I``, which 16-bit PNG/TIFF decode to) are scaled by
  1/65535; 32-bit float images (``F``) are taken as [0, 1] and clipped. Pillow reduces 16-bit
  *colour* images to 8 bits per channel itself.
- CMYK, YCbCr, LAB and HSV are converted to RGB by Pillow.
- Animated/multi-page files (GIF, TIFF): the first frame.

Every failure raises :class:`ImageReadError` (a ``ValueError``) naming the file: missing,
a broken symbolic link or a link loop, unreadable, empty, not an image, truncated or corrupt
(whatever exception Pillow's decoder raises), or more pixels than ``max_pixels`` (checked from
the header, before anything is decoded, against decompression bombs).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

#: default pixel limit of :func:`read_image` (W x H): 50 megapixels, 600 MB as float32 RGB.
DEFAULT_MAX_PIXELS = 50_000_000


class ImageReadError(ValueError):
    """Raised when an image file cannot be read; the message names the file.

    Attributes:
        path: the file.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class NotAnImageError(ImageReadError):
    """An :class:`ImageReadError` for data that is not an image format Pillow identifies."""


class ImageTooLargeError(ImageReadError):
    """An :class:`ImageReadError` for an image with more pixels than the reader's limit."""


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert a loaded PIL image to a float32 (H, W, 3) array in [0, 1]."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im).astype(np.float32) / 65535.0
        a = np.clip(a, 0.0, 1.0)
        return np.repeat(a[:, :, None], 3, axis=2)
    if mode == "F":
        a = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
        return np.repeat(a[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
    elif mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.float32) / 255.0


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as a regular file, or ``None`` if it can be."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
        return "file not found"
    except PermissionError:
        return "permission denied (cannot look up the file)"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points, directly or not, to itself)"
        if exc.errno == errno.ENAMETOOLONG:
            return "file name too long"
        return f"cannot access the file ({exc.strerror or exc})"
    except ValueError as exc:  # e.g. an embedded NUL byte in the name
        return f"invalid file name ({exc})"
    if stat.S_ISDIR(st.st_mode):
        return "not a regular file (a directory)"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_size == 0:
        return "the file is empty"
    return None


_PIL_DIR = os.path.dirname(os.path.abspath(PIL.__file__)) + os.sep


def _raised_by_decoder(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside Pillow (its decoders) rather than in this package.

    Pillow's plugins raise whatever a malformed file provokes (``TypeError``, ``IndexError``,
    ``struct.error``, ``ZeroDivisionError``...), so every exception from a frame of Pillow is a
    property of the file. An exception raised in this package's own code is a bug and is not
    turned into a per-file error.
    """
    if isinstance(exc, (OSError, EOFError, SyntaxError)):
        return True  # I/O and Pillow's "not/broken image" errors, wherever raised
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(_PIL_DIR)


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """Read an image file as a float32 RGB tensor (3, H, W) in [0, 1].

    Args:
        path: the file (any format Pillow reads).
        max_pixels: refuse images with more than this many pixels (W x H), checked before
            decoding; ``None`` disables this limit (Pillow's own hard limit of
            ``2 * PIL.Image.MAX_IMAGE_PIXELS``, about 179 megapixels, still applies).

    Returns:
        The image, upright (EXIF orientation applied), alpha composited on white.

    Raises:
        ImageReadError: naming the file when it is missing (or a broken link, or a link loop),
            not readable, empty, not an image, truncated, corrupt, or too large. Whatever
            exception Pillow raises on a malformed file becomes this error; an exception raised
            by this package's own code is a bug and propagates unchanged.

    Example:
        >>> from srdefense.data import embedded_samples
        >>> read_image(embedded_samples()[0][0]).shape
        torch.Size([3, 512, 512])
    """
    path = Path(path)
    problem = _file_problem(path)
    if problem is not None:
        raise ImageReadError(path, problem)
    try:
        f = open(path, "rb")  # closed once Pillow has read it
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot open the file ({exc.strerror or exc})") from None
    with f:
        return _decode(f, path, max_pixels)


def decode_image(
    data: bytes, *, name: str = "<upload>", max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> Tensor:
    """Decode an image held in memory, with the rules and errors of :func:`read_image`.

    Nothing is written to disk; the service uses it for uploads.

    Args:
        data: the encoded file (any format Pillow reads).
        name: what error messages call it (a file name or ``<upload>``).
        max_pixels: refuse images with more than this many pixels, checked before decoding.

    Returns:
        A float32 RGB tensor (3, H, W) in [0, 1].

    Raises:
        ImageReadError: naming ``name``: empty, not an image (:class:`NotAnImageError`),
            truncated or corrupt, or too large (:class:`ImageTooLargeError`).
    """
    if not data:
        raise ImageReadError(name, "the file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(source: Any, path: str | Path, max_pixels: int | None) -> Tensor:
    """Decode an open binary file; every exception Pillow raises on it becomes :class:`ImageReadError`."""
    im: Image.Image  # an ImageFile when opened, a plain Image once transposed
    try:
        with warnings.catch_warnings():
            # the explicit max_pixels check below replaces Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(source)
            except UnidentifiedImageError:
                raise NotAnImageError(path, "not an image file Pillow can identify") from None
            except Image.DecompressionBombError as exc:
                raise ImageTooLargeError(
                    path, f"too many pixels, above Pillow's hard limit of 2 x Image.MAX_IMAGE_PIXELS ({exc})"
                ) from None
            with im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageTooLargeError(
                        path,
                        f"{w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels} "
                        "(a guard against decompression bombs; raise the limit with max_pixels= "
                        "in Python or --max-pixels on the command line)",
                    )
                im.load()
                im = ImageOps.exif_transpose(im)
                arr = _to_rgb_array(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"too many pixels ({exc})") from None
    except Exception as exc:
        if not _raised_by_decoder(exc):
            raise
        raise ImageReadError(path, f"truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if not np.isfinite(arr).all():
        raise ImageReadError(path, "corrupt: the decoded pixels contain NaN or infinite values")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def to_uint8(image: Tensor) -> Tensor:
    """Quantise float images in [0, 1] to uint8: ``round(clamp(x, 0, 1) * 255)``.

    Args:
        image: a float tensor of any shape.

    Returns:
        A uint8 tensor of the same shape, on the same device.

    Raises:
        TypeError: if ``image`` is not a floating-point tensor.
        ValueError: if it contains NaN.
    """
    if not isinstance(image, Tensor) or not torch.is_floating_point(image):
        got = getattr(image, "dtype", type(image).__name__)
        raise TypeError(f"image: expected a floating-point tensor, got {got}")
    if torch.isnan(image).any():
        raise ValueError("image: contains NaN")
    # one float temporary, scaled and rounded in place (a 12-megapixel photo's 2x output is 576 MB)
    return image.detach().clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def encode_png(image: Tensor) -> bytes:
    """Encode a float image (3, H, W) or (1, H, W) in [0, 1] as 8-bit PNG bytes, in memory.

    Values are rounded as in :func:`write_png`.

    Raises:
        TypeError: if ``image`` is not a floating-point tensor.
        ValueError: if its shape is not (3, H, W) or (1, H, W), or it contains NaN.
    """
    if not isinstance(image, Tensor):
        raise TypeError(f"image: expected a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image: expected shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    arr = to_uint8(image).cpu().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)).save(buf, format="PNG")
    return buf.getvalue()


def default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666`` less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _move_no_replace(src: str, dst: Path) -> None:
    """Move ``src`` to ``dst`` unless ``dst`` exists (:class:`FileExistsError`).

    Atomic where the file system has hard links.
    """
    try:
        os.link(src, dst)  # fails with FileExistsError if dst exists, whatever its type
    except FileExistsError:
        raise FileExistsError(f"{dst} exists (not replaced)") from None
    except OSError:  # no hard links here (e.g. FAT, some network file systems): check, then move
        if os.path.lexists(dst):
            raise FileExistsError(f"{dst} exists (not replaced)") from None
        os.replace(src, dst)
        return
    os.unlink(src)


def write_png(path: str | Path, image: Tensor, *, overwrite: bool = True) -> Path:
    """Write a float image (3, H, W) or (1, H, W) in [0, 1] as an 8-bit PNG, atomically.

    Values are clamped to [0, 1] and rounded to the nearest of the 256 levels
    (:func:`to_uint8`). The PNG is written to a temporary file in the same folder and moved
    into place with ``os.replace``: a failure leaves no partial file and does not touch an
    existing file at ``path``. With ``overwrite=False`` the move is a hard link, which fails if
    ``path`` exists, so an existing file is never replaced, even by a concurrent writer.

    Args:
        path: the destination (its folder must exist).
        image: the image tensor, any device.
        overwrite: replace an existing file at ``path``; ``False`` raises
            :class:`FileExistsError` instead.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: if ``image`` is not a floating-point tensor.
        ValueError: if its shape is not (3, H, W) or (1, H, W), or it contains NaN.
        FileNotFoundError: if the destination folder does not exist.
        FileExistsError: if ``overwrite`` is false and ``path`` exists.
    """
    path = Path(path)
    if not isinstance(image, Tensor):
        raise TypeError(f"image: expected a torch.Tensor, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image: expected shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    arr = to_uint8(image).cpu().permute(1, 2, 0).numpy()
    pil = Image.fromarray(np.ascontiguousarray(arr[:, :, 0] if arr.shape[2] == 1 else arr))
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {folder} does not exist")
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists (not replaced)")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            pil.save(f, format="PNG")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, default_file_mode())  # mkstemp creates 0600; use the umask's mode
        if overwrite:
            os.replace(tmp_name, path)
        else:
            _move_no_replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    return path
