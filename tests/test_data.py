"""Image reading/writing, preprocessing and datasets."""

from __future__ import annotations

import io
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srdefense.data import (
    CsvDataset,
    DatasetError,
    EmbeddedSamples,
    ImageNetFolder,
    ImageReadError,
    Preprocess,
    Sample,
    SampleError,
    center_crop,
    collate,
    embedded_samples,
    iter_batches,
    iter_samples,
    load_dataset,
    preprocess,
    read_image,
    resize_center_crop,
    resize_shorter,
    to_uint8,
    write_png,
)
from srdefense.models import imagenet_wnids

SAMPLES = embedded_samples()


def _png_header_only(path: Path, w: int, h: int) -> None:
    """A PNG whose header declares w x h pixels, with no image data (a bomb's header)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


# ---------------------------------------------------------------- read_image: failures


def _assert_read_error(path: Path, match: str, **kw: object) -> None:
    with pytest.raises(ImageReadError, match=match) as exc:
        read_image(path, **kw)  # type: ignore[arg-type]
    assert isinstance(exc.value, ValueError)
    assert path.name in str(exc.value) and exc.value.path == path


def test_read_missing_and_empty(tmp_path: Path) -> None:
    _assert_read_error(tmp_path / "missing.png", "not found")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    _assert_read_error(empty, "empty")
    with pytest.raises(ImageReadError, match="not a regular file"):
        read_image(tmp_path)


def test_read_text_named_jpg(tmp_path: Path) -> None:
    f = tmp_path / "notes.jpg"
    f.write_text("this is not a JPEG\n")
    _assert_read_error(f, "not an image")


def test_read_truncated_jpeg_and_png(tmp_path: Path) -> None:
    data = SAMPLES[0][0].read_bytes()
    jpg = tmp_path / "cut.jpg"
    jpg.write_bytes(data[: len(data) // 2])
    _assert_read_error(jpg, "truncated or corrupt")
    png = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(png)
    raw = png.read_bytes()
    png.write_bytes(raw[: len(raw) // 2])
    _assert_read_error(png, "truncated or corrupt")


def test_read_pixel_limit(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.new("RGB", (100, 60)).save(small)
    _assert_read_error(small, r"100x60 = 6000 pixels exceeds max_pixels=5000", max_pixels=5000)
    assert read_image(small, max_pixels=6000).shape == (3, 60, 100)
    # a header declaring 10000 x 10000: refused from the header, nothing decoded
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 10_000, 10_000)
    _assert_read_error(bomb, "exceeds max_pixels=50000000")
    # beyond Pillow's own hard limit: still an ImageReadError
    huge = tmp_path / "huge.png"
    _png_header_only(huge, 40_000, 40_000)
    _assert_read_error(huge, "too many pixels", max_pixels=None)


def test_symlink_loop_and_broken_link_are_named(tmp_path: Path) -> None:
    a, b, me = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "me.png"
    a.symlink_to(b)
    b.symlink_to(a)
    me.symlink_to(me)
    _assert_read_error(a, "symbolic link loop")
    _assert_read_error(me, "symbolic link loop")
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "gone.png")
    _assert_read_error(dangling, "broken symbolic link .*gone.png")
    _assert_read_error(tmp_path / "missing.png", "file not found")


def test_pixel_limit_message_names_the_options(tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.new("RGB", (10, 6)).save(small)
    _assert_read_error(small, "max_pixels= in Python or --max-pixels on the command line", max_pixels=50)


def _tiff_with_bad_tag_type() -> bytes:
    """A TIFF whose StripOffsets entry (IFD entry 5) is re-typed as ASCII: Pillow's plugin then
    raises TypeError ('str' object cannot be interpreted as an integer)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((12, 16, 3), dtype=np.uint8)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    entry = ifd + 2 + 12 * 5
    assert struct.unpack("<H", data[entry : entry + 2])[0] == 273  # StripOffsets
    data[entry + 2 : entry + 4] = struct.pack("<H", 2)
    return bytes(data)


def test_decoder_exceptions_become_image_read_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad_tag.tif"
    bad.write_bytes(_tiff_with_bad_tag_type())
    _assert_read_error(bad, r"truncated or corrupt \(TypeError")


def test_a_bug_in_this_package_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import srdefense.data.io as io_mod

    good = tmp_path / "good.png"
    Image.new("RGB", (4, 4)).save(good)

    def buggy(im: Image.Image) -> np.ndarray:
        raise TypeError("a bug in srdefense")

    monkeypatch.setattr(io_mod, "_to_rgb_array", buggy)
    with pytest.raises(TypeError, match="a bug in srdefense"):
        read_image(good)


def _fuzz_seeds() -> dict[str, bytes]:
    """Small valid files of every format the reader is documented for (and a few variants)."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    im = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exercises exif_transpose
    second = {"save_all": True, "append_images": [im.rotate(90).convert("P")]}
    cases: list[tuple[str, Image.Image, str, dict]] = [
        ("png", im, "PNG", {}),
        ("png-rgba", Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])), "PNG", {}),
        ("png-palette-trns", im.convert("P"), "PNG", {"transparency": 3}),
        ("png-16bit", Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257), "PNG", {}),
        ("jpeg-exif", im, "JPEG", {"exif": exif.tobytes(), "quality": 90}),
        ("jpeg-progressive", im, "JPEG", {"progressive": True}),
        ("gif-2-frames", im.convert("P"), "GIF", second),
        ("bmp", im, "BMP", {}),
        ("tiff", im, "TIFF", {}),
        ("tiff-lzw", im, "TIFF", {"compression": "tiff_lzw"}),
        ("tiff-deflate", im, "TIFF", {"compression": "tiff_adobe_deflate"}),
        ("tiff-float", Image.fromarray(rgb[:, :, 0].astype(np.float32) / 255), "TIFF", {}),
        ("webp", im, "WEBP", {"quality": 80}),
        ("webp-lossless", im, "WEBP", {"lossless": True}),
        ("ppm", im, "PPM", {}),
        ("tga", im, "TGA", {}),
        ("ico", im, "ICO", {}),
    ]
    out = {}
    for name, image, fmt, kw in cases:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        out[name] = buf.getvalue()
    return out


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(data)
    op = rng.integers(0, 5)
    if op == 0:  # a few bytes anywhere
        for _ in range(rng.integers(1, 9)):
            b[rng.integers(0, len(b))] ^= int(rng.integers(1, 256))
    elif op == 1:  # header bytes set to boundary values
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(0, min(len(b), 96))] = int(rng.choice([0, 1, 0x7F, 0x80, 0xFF]))
    elif op == 2:  # truncated
        b = b[: rng.integers(1, len(b))]
    elif op == 3:  # a run of random bytes
        i, n = rng.integers(0, len(b)), rng.integers(1, 32)
        b[i : i + n] = rng.integers(0, 256, len(b[i : i + n]), dtype=np.uint8).tobytes()
    else:  # a slice dropped or repeated
        i = rng.integers(0, len(b))
        j = min(len(b), i + rng.integers(1, 64))
        b = b[:i] + (b[i:j] * 2 if rng.integers(0, 2) else b"") + b[j:]
    return bytes(b)


def _tiff_tag_mutations(data: bytes) -> list[bytes]:
    """Each IFD entry of a TIFF re-typed (ASCII, RATIONAL, UNDEFINED, SRATIONAL, DOUBLE) and
    re-counted: where Pillow's TIFF plugin raised TypeError."""
    ifd = struct.unpack("<I", data[4:8])[0]
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    out = []
    for e in range(n):
        entry = ifd + 2 + 12 * e
        for typ in (2, 5, 7, 10, 12):
            for count in (1, 3):
                m = bytearray(data)
                m[entry + 2 : entry + 8] = struct.pack("<HI", typ, count)
                out.append(bytes(m))
    return out


def test_fuzzed_files_give_an_image_or_the_named_error(tmp_path: Path) -> None:
    """Seeded byte mutations of small valid files of every format, and TIFF tag re-typing:
    reading returns a valid image or raises ImageReadError naming the file, nothing else."""
    seeds = _fuzz_seeds()
    rng = np.random.default_rng(1234)
    cases = [(f"{name}-{k}", _mutate(data, rng)) for name, data in seeds.items() for k in range(16)]
    cases += [(f"tiff-tag-{k}", m) for k, m in enumerate(_tiff_tag_mutations(seeds["tiff"]))]
    assert len(cases) >= 300
    outcomes = {"image": 0, "error": 0}
    for k, (name, data) in enumerate(cases):
        path = tmp_path / f"{k:03d}-{name}.bin"
        path.write_bytes(data)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pillow warns about some corrupt files
                x = read_image(path, max_pixels=1_000_000)
        except ImageReadError as exc:
            assert exc.path == path and path.name in str(exc)
            outcomes["error"] += 1
            continue
        assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3, name
        assert torch.isfinite(x).all() and x.min() >= 0 and x.max() <= 1, name
        outcomes["image"] += 1
    assert outcomes["image"] > 20 and outcomes["error"] > 20, outcomes  # both paths exercised


# ---------------------------------------------------------------- read_image: modes


def test_read_rgb_sample() -> None:
    x = read_image(SAMPLES[0][0])
    assert x.dtype == torch.float32 and x.shape == (3, 512, 512)
    assert x.min() >= 0 and x.max() <= 1 and x.is_contiguous()
    ref = np.asarray(Image.open(SAMPLES[0][0]).convert("RGB"), dtype=np.float32) / 255
    assert torch.equal(x, torch.from_numpy(ref).permute(2, 0, 1))


def test_read_exif_rotated_jpeg(tmp_path: Path) -> None:
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (255, 0, 0)  # left half red
    a[:, 20:] = (0, 0, 255)  # right half blue
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    f = tmp_path / "rotated.jpg"
    im.save(f, quality=95, exif=exif.tobytes())
    x = read_image(f)
    assert x.shape == (3, 40, 20)  # upright: portrait
    top, bottom = x[:, 2:18].mean((1, 2)), x[:, 22:38].mean((1, 2))
    assert top[0] > 0.9 and top[2] < 0.1  # the left half (red) went to the top
    assert bottom[2] > 0.9 and bottom[0] < 0.1


def test_read_grayscale(tmp_path: Path) -> None:
    f = tmp_path / "gray.png"
    Image.fromarray(np.full((5, 7), 100, dtype=np.uint8)).save(f)
    x = read_image(f)
    assert x.shape == (3, 5, 7) and torch.allclose(x, torch.full_like(x, 100 / 255))
    b = tmp_path / "bw.png"
    Image.new("1", (4, 4), 1).save(b)
    assert torch.equal(read_image(b), torch.ones(3, 4, 4))


def test_read_palette_with_transparency(tmp_path: Path) -> None:
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    f = tmp_path / "pal.png"
    im.save(f, transparency=0)  # index 0 (red) is transparent -> white
    x = read_image(f)
    assert torch.equal(x[:, 0, 0], torch.ones(3))  # transparent red -> white
    assert torch.equal(x[:, 0, 1], torch.tensor([0.0, 1.0, 0.0]))
    g = tmp_path / "pal.gif"
    im.save(g)  # no transparency: the palette colours
    assert torch.equal(read_image(g)[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))


def test_read_rgba_and_la_composited_on_white(tmp_path: Path) -> None:
    a = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 255, 128]]], dtype=np.uint8)
    f = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(f)
    x = read_image(f)
    expect = np.array([[255, 0, 0], [255, 255, 255], [127, 127, 255]], dtype=np.float32) / 255
    assert torch.allclose(x[:, 0].T, torch.from_numpy(expect), atol=1.01 / 255)
    la = tmp_path / "la.png"
    Image.fromarray(np.array([[[0, 255], [0, 0]]], dtype=np.uint8), "LA").save(la)
    y = read_image(la)
    assert torch.equal(y[:, 0, 0], torch.zeros(3)) and torch.equal(y[:, 0, 1], torch.ones(3))


def test_read_16bit(tmp_path: Path) -> None:
    v = np.array([[0, 1000, 32768, 65535]], dtype=np.uint16)
    f = tmp_path / "g16.png"
    Image.fromarray(v).save(f)
    assert Image.open(f).mode.startswith("I")
    x = read_image(f)
    expect = torch.from_numpy(v.astype(np.float32) / 65535)
    assert x.shape == (3, 1, 4)
    for c in range(3):
        assert torch.allclose(x[c], expect, atol=1e-6)
    t = tmp_path / "g32.tif"
    Image.fromarray(v.astype(np.int32)).save(t)  # mode "I"
    assert torch.allclose(read_image(t)[0], expect, atol=1e-6)


def test_read_cmyk(tmp_path: Path) -> None:
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 0, 0, 0), (255, 0, 0, 0), (0, 0, 0, 255)])
    f = tmp_path / "cmyk.tif"
    im.save(f)
    x = read_image(f)
    assert torch.equal(x[:, 0, 0], torch.ones(3))  # no ink: white
    assert torch.equal(x[:, 0, 1], torch.tensor([0.0, 1.0, 1.0]))  # cyan
    assert torch.equal(x[:, 0, 2], torch.zeros(3))  # full black
    j = tmp_path / "cmyk.jpg"
    im.resize((16, 16)).save(j, quality=100)
    assert read_image(j).shape == (3, 16, 16)


# ---------------------------------------------------------------- write_png


def test_to_uint8_rounds_and_clamps() -> None:
    x = torch.tensor([0.0, 1.0, 0.2, 1.5, -1.0, 0.4 / 255, 0.6 / 255])
    assert to_uint8(x).tolist() == [0, 255, 51, 255, 0, 0, 1]
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.tensor([float("nan")]))
    with pytest.raises(TypeError):
        to_uint8(torch.zeros(3, dtype=torch.uint8))


def test_write_png_round_trip_exact(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 256, (3, 17, 23), generator=g).float() / 255
    f = write_png(tmp_path / "out.png", q)
    assert f == tmp_path / "out.png"
    assert torch.equal(read_image(f), q)
    assert torch.equal(read_image(write_png(tmp_path / "g.png", q[:1])), q[:1].expand(3, -1, -1))
    # a value between two levels is rounded to the nearest
    write_png(tmp_path / "r.png", torch.full((3, 2, 2), 100.4 / 255))
    assert torch.equal(read_image(tmp_path / "r.png"), torch.full((3, 2, 2), 100 / 255))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "out.png", "r.png"]


def test_write_png_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        write_png(tmp_path / "a.png", torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "a.png", torch.full((3, 4, 4), float("nan")))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_png(tmp_path / "no" / "a.png", torch.rand(3, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_write_png_without_overwrite_keeps_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="a.png exists"):
        write_png(target, torch.zeros(3, 4, 4), overwrite=False)
    assert target.read_bytes() == b"old"
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(FileExistsError):
        write_png(tmp_path / "dangling.png", torch.zeros(3, 4, 4), overwrite=False)
    assert not (tmp_path / "nowhere.png").exists()
    fresh = write_png(tmp_path / "b.png", torch.ones(3, 4, 4), overwrite=False)
    assert torch.equal(read_image(fresh), torch.ones(3, 4, 4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png", "dangling.png"]


def test_write_png_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.png"
    write_png(target, torch.zeros(3, 4, 4))
    before = target.read_bytes()

    def failing_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        fp.write(b"\x89PNG partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, torch.ones(3, 4, 4))
    with pytest.raises(OSError, match="disk full"):
        write_png(tmp_path / "new.png", torch.ones(3, 4, 4))
    assert target.read_bytes() == before  # not clobbered
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]  # no partial or temp file


# ---------------------------------------------------------------- transforms


def test_preprocess_sizes_and_batch() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 300, 400, generator=g)
    y = preprocess(x)
    assert y.shape == (2, 3, 224, 224) and y.min() >= 0 and y.max() <= 1
    assert torch.allclose(preprocess(x[1]), y[1], atol=1e-6)
    assert torch.equal(Preprocess(224, 0.875)(x), y)
    assert torch.equal(resize_center_crop(x, 224, crop_pct=0.875), y)
    assert resize_shorter(x, 256).shape == (2, 3, 256, 341)
    assert resize_shorter(torch.rand(3, 500, 375), 256).shape == (3, 341, 256)
    assert preprocess(torch.rand(3, 100, 60), 240, 0.875).shape == (3, 240, 240)  # upscaled
    assert center_crop(torch.arange(25.0).view(1, 5, 5), 3)[0, 0].tolist() == [6.0, 7.0, 8.0]
    assert preprocess(torch.rand(0, 3, 50, 50)).shape == (0, 3, 224, 224)
    with pytest.raises(ValueError, match="crop_pct"):
        preprocess(x, 224, 1.5)
    with pytest.raises(ValueError, match="cannot crop"):
        center_crop(x, 500)
    with pytest.raises(TypeError, match="floating"):
        preprocess(torch.zeros(3, 8, 8, dtype=torch.uint8))


def test_preprocess_matches_pil_reference(tmp_path: Path) -> None:
    big = Image.open(SAMPLES[10][0]).convert("RGB")  # 1024 x 683
    x = read_image(SAMPLES[10][0])
    ours = preprocess(x, 224, 0.875)
    # PIL: shorter side 683 -> 256, longer 1024 -> int(256 * 1024 / 683) = 383, crop the centre
    r = big.resize((383, 256), Image.BICUBIC)
    left, top = int(round((383 - 224) / 2)), int(round((256 - 224) / 2))
    ref = np.asarray(r.crop((left, top, left + 224, top + 224)), dtype=np.float32) / 255
    diff = (ours - torch.from_numpy(ref).permute(2, 0, 1)).abs()
    # measured: mean 0.0011, max 0.0124 (PIL rounds to uint8; torch keeps floats)
    assert diff.mean() < 0.002 and diff.max() < 0.02, (diff.mean().item(), diff.max().item())


# ---------------------------------------------------------------- datasets


def test_embedded_samples_dataset() -> None:
    ds = EmbeddedSamples()
    assert len(ds) == 20 and ds.ids[7] == "imagenet_07_609" and ds.labels[7] == 609
    s = ds[7]
    assert isinstance(s, Sample) and s.id == "imagenet_07_609" and s.label == 609
    assert s.image.shape == (3, 512, 512)  # no transform: the stored size
    assert EmbeddedSamples(transform=preprocess)[10].image.shape == (3, 224, 224)  # 1024x683 photo
    with pytest.raises(IndexError):
        ds[20]


def _imagenet_tree(root: Path) -> list[int]:
    wnids = imagenet_wnids()
    labels = []
    for p, lab in SAMPLES:
        d = root / wnids[lab]
        d.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, d / f"{p.stem}.JPEG")
        labels.append(lab)
    (root / wnids[SAMPLES[0][1]] / "README.txt").write_text("not an image, ignored")
    return labels


def test_imagenet_folder(tmp_path: Path) -> None:
    _imagenet_tree(tmp_path)
    ds = ImageNetFolder(tmp_path)
    assert len(ds) == 20
    expect = {p.stem: lab for p, lab in SAMPLES}
    assert {i: lab for i, lab in zip(ds.ids, ds.labels, strict=True)} == expect
    s = ds[0]
    assert s.label == expect[s.id] and s.path is not None and s.path.parent.name == imagenet_wnids()[s.label]
    via_spec = load_dataset(tmp_path)
    assert isinstance(via_spec, ImageNetFolder) and via_spec[0].image.shape == (3, 224, 224)


def test_imagenet_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "cats").mkdir()
    with pytest.raises(DatasetError, match="not ImageNet wnids: cats"):
        ImageNetFolder(tmp_path)
    (tmp_path / "cats").rmdir()
    (tmp_path / "n01440764").mkdir()
    with pytest.raises(DatasetError, match="no images"):
        ImageNetFolder(tmp_path)


def test_csv_dataset(tmp_path: Path) -> None:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    wnids = imagenet_wnids()
    rows = []
    for k, (p, lab) in enumerate(SAMPLES[:6]):
        shutil.copy(p, imgs / p.name)
        rows.append(f"imgs/{p.name},{wnids[lab] if k % 2 else lab}")
    (tmp_path / "with_header.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "with_header.csv")
    assert isinstance(ds, CsvDataset) and len(ds) == 6
    assert ds.labels == [lab for _, lab in SAMPLES[:6]]
    assert ds.ids == [p.stem for p, _ in SAMPLES[:6]]
    assert ds[1].image.shape == (3, 224, 224)
    # no header, absolute path, id column absent
    absolute = f"{(imgs / SAMPLES[0][0].name).resolve()},{SAMPLES[0][1]}"
    (tmp_path / "plain.csv").write_text("\n".join([absolute, *rows[1:3]]) + "\n")
    assert CsvDataset(tmp_path / "plain.csv").labels == [lab for _, lab in SAMPLES[:3]]
    # header with an id column, columns in another order
    (tmp_path / "ids.csv").write_text("label,path,id\n609,imgs/" + SAMPLES[6][0].name + ",a\n")
    shutil.copy(SAMPLES[6][0], imgs / SAMPLES[6][0].name)
    assert CsvDataset(tmp_path / "ids.csv").ids == ["a"]


def test_csv_errors(tmp_path: Path) -> None:
    f = tmp_path / "bad.csv"
    f.write_text("path,label\na.jpg,3\nb.jpg,kitten\n")
    with pytest.raises(DatasetError, match=r"bad.csv, line 3: label 'kitten'"):
        CsvDataset(f)
    f.write_text("a.jpg,1000\n")
    with pytest.raises(DatasetError, match="out of range"):
        CsvDataset(f)
    f.write_text("a.jpg\n")
    with pytest.raises(DatasetError, match="line 1"):
        CsvDataset(f)
    f.write_text("path,label\n")
    with pytest.raises(DatasetError, match="no rows"):
        CsvDataset(f)


def test_load_dataset_specs_and_subset(tmp_path: Path) -> None:
    ds = load_dataset("samples", size=112, crop_pct=1.0)
    assert len(ds) == 20 and ds[0].image.shape == (3, 112, 112)
    raw = load_dataset("samples", size=None)
    assert raw[0].image.shape == (3, 512, 512) and raw[10].image.shape == (3, 683, 1024)
    sub = load_dataset("samples", n=5, seed=0)
    assert len(sub) == 5 and sub.ids == load_dataset("samples", n=5, seed=0).ids
    assert sub.ids == sorted(sub.ids)  # dataset order kept
    assert sub.ids != load_dataset("samples", n=5, seed=1).ids
    assert len(load_dataset("samples", n=100)) == 20
    with pytest.raises(ValueError, match="n:"):
        load_dataset("samples", n=0)
    with pytest.raises(DatasetError, match="expected 'samples'"):
        load_dataset(tmp_path / "nothing_here")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DatasetError, match="not a folder or a .csv"):
        load_dataset(tmp_path / "x.txt")


def test_iter_samples_reports_bad_items(tmp_path: Path) -> None:
    for p, _ in SAMPLES[:4]:
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "broken.jpg").write_text("not an image")
    rows = [f"{p.name},{lab}" for p, lab in SAMPLES[:2]] + ["broken.jpg,1", "gone.jpg,2"]
    rows += [f"{p.name},{lab}" for p, lab in SAMPLES[2:4]]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(tmp_path / "list.csv")
    items = list(iter_samples(ds))
    assert [type(i).__name__ for i in items] == ["Sample"] * 2 + ["SampleError"] * 2 + ["Sample"] * 2
    errs = [i for i in items if isinstance(i, SampleError)]
    assert errs[0].id == "broken" and errs[0].index == 2 and isinstance(errs[0].error, ImageReadError)
    assert "broken.jpg" in errs[0].message and "not found" in errs[1].message
    with pytest.raises(ImageReadError, match="broken.jpg"):
        ds[2]
    batches = list(iter_batches(ds, 3))
    assert [b.ids for b in batches] == [
        [SAMPLES[0][0].stem, SAMPLES[1][0].stem, SAMPLES[2][0].stem],
        [SAMPLES[3][0].stem],
    ]
    assert [e.id for e in batches[0].errors] == ["broken", "gone"] and batches[1].errors == []
    assert batches[0].images.shape == (3, 3, 224, 224) and batches[0].labels.dtype == torch.int64


def test_collate() -> None:
    ds = load_dataset("samples", n=3)
    images, labels, ids = collate([ds[i] for i in range(3)])
    assert images.shape == (3, 3, 224, 224) and labels.tolist() == ds.labels and ids == ds.ids
    small = Sample(id="s", image=torch.rand(3, 10, 10), label=0)
    with pytest.raises(ValueError, match="differ in shape"):
        collate([ds[0], small])
    with pytest.raises(ValueError, match="no samples"):
        collate([])


def test_no_stray_files_in_cwd() -> None:
    assert not any(n.endswith(".tmp") and n.startswith(".") for n in os.listdir("."))
