"""The purification service through an in-process client: every endpoint, every bad input.

A tiny stand-in classifier and the fast ``nearest`` x2 defense serve most tests; one test runs
the real embedded classifier (EfficientNet-Lite0) behind the ``paper`` defense on one photo,
and one starts ``srdefense serve`` as a process on 127.0.0.1 to check SIGTERM.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

import _eval_helpers
import srdefense
from serve_standin import factory as tiny_classifier
from srdefense.attacks import FGSM
from srdefense.data.io import decode_image, to_uint8
from srdefense.data.transforms import preprocess
from srdefense.purification import Defended
from srdefense.serve import ServeConfig, create_app, is_loopback
from srdefense.serve.batching import BatchWorker
from srdefense.serve.service import quantize_within

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TESTS = Path(__file__).parent


_one_thread = _eval_helpers._one_thread  # one intra-op thread for this module


def png_bytes(h: int = 40, w: int = 50, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([xx, yy, 1 - xx * yy], axis=2)
    arr = np.clip(base + 0.15 * rng.random((h, w, 3)), 0, 1)
    buf = io.BytesIO()
    Image.fromarray((arr * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def decode_b64(s: str) -> torch.Tensor:
    return decode_image(base64.b64decode(s))


def multipart(data: bytes, field: str = "image") -> dict[str, Any]:
    return {"files": {field: ("photo.png", data, "image/png")}}


def error_of(r: httpx.Response, status: int, code: str | None = None) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert body["error"]["status"] == status
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]["message"]


class Served:
    """An app with its lifespan running, and an httpx client over ASGI (no socket)."""

    def __init__(self, config: ServeConfig, classifier: torch.nn.Module | None = None) -> None:
        self.app = create_app(config, classifier=classifier)
        self.config = config

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://test")
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def tiny_config(**kw: Any) -> ServeConfig:
    return ServeConfig(**{"classifier": "tiny", "defense": "nearest", "max_wait_ms": 1.0, **kw})


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    return tiny_classifier()


# -- the endpoints


def test_healthz_models_and_page(tiny: torch.nn.Module) -> None:
    async def go() -> None:
        async with Served(tiny_config(max_eps=8 / 255, max_steps=7, max_top_k=6), tiny) as c:
            h = (await c.get("/healthz")).json()
            assert h == {"status": "ok", "worker": True, "queue_length": 0, "api_key_required": False}
            m = (await c.get("/v1/models")).json()
            assert m["classifier"]["name"] == "tiny"
            assert m["classifier"]["input_size"] == [3, 32, 32]
            assert m["default_defense"] == "nearest"
            assert [d["name"] for d in m["defenses"]] == [d.name for d in srdefense.list_defenses()]
            assert m["limits"]["max_eps_255"] == pytest.approx(8.0)
            assert m["limits"]["max_steps"] == 7 and m["limits"]["max_top_k"] == 6
            assert m["limits"]["attacks"] == ["fgsm", "pgd"]
            page = await c.get("/")
            assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
            html = page.text
            for needle in ('id="file"', 'id="purified"', 'id="attack-button"', 'id="eps"', "/v1/classify"):
                assert needle in html
            # offline: no external resource of any kind
            assert "http://" not in html and "https://" not in html and "//fonts" not in html

    run(go())


def test_purify_multipart_and_raw_body_match_the_library(tiny: torch.nn.Module) -> None:
    data = png_bytes(40, 50)
    image = decode_image(data)
    want = to_uint8(srdefense.create_defense("nearest")(image[None])[0])

    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            for kwargs in (multipart(data), {"content": data, "headers": {"content-type": "image/png"}}):
                r = await c.post("/v1/purify", **kwargs)
                assert r.status_code == 200, r.text
                assert r.headers["content-type"] == "image/png"
                assert r.headers["x-purified-size"] == "100x80"
                got = to_uint8(decode_image(r.content))
                assert got.shape == (3, 80, 100)
                assert (got.int() - want.int()).abs().max() <= 1
            # the resolution policy: native resizes the 2x image back to the upload's size
            r = await c.post("/v1/purify?defense=nearest&resolution=native", **multipart(data))
            assert r.status_code == 200, r.text
            assert decode_image(r.content).shape == (3, 40, 50)
            # a defense spec with parameters
            r = await c.post("/v1/purify?defense=wd:sigma=0.05", **multipart(data))
            assert r.status_code == 200 and decode_image(r.content).shape == (3, 40, 50)
            assert r.headers["x-defense"] == "wd:sigma=0.05"

    run(go())


def test_classify_matches_the_library_and_returns_images(tiny: torch.nn.Module) -> None:
    data = png_bytes(60, 45, seed=3)
    x = preprocess(decode_image(data), 32, tiny.cfg.crop_pct)[None]
    defense = srdefense.create_defense("nearest")
    with torch.no_grad():
        p_plain = tiny(x).softmax(-1)[0]
        p_def = Defended(defense, tiny)(x).softmax(-1)[0]

    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            r = await c.post("/v1/classify?top_k=3&images=true", **multipart(data))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["defense"] == "nearest"
            assert body["input_size"] == [32, 32] and body["purified_size"] == [64, 64]
            for key, probs in (("without_defense", p_plain), ("with_defense", p_def)):
                preds = body[key]
                assert [p["rank"] for p in preds] == [1, 2, 3]
                top = probs.topk(3)
                assert [p["index"] for p in preds] == top.indices.tolist()
                np.testing.assert_allclose([p["probability"] for p in preds], top.values.numpy(), atol=1e-5)
                assert all(p["wnid"] is None and p["name"] == str(p["index"]) for p in preds)
            t = body["timings"]
            assert t["batch_size"] == 1
            assert t["total_ms"] >= t["decode_ms"] and t["purify_ms"] >= 0 and t["classify_ms"] > 0
            assert decode_b64(body["input_png"]).shape == (3, 32, 32)
            assert decode_b64(body["purified_png"]).shape == (3, 64, 64)
            np.testing.assert_allclose(
                decode_b64(body["input_png"]).numpy(), x[0].numpy(), atol=0.5 / 255 + 1e-6
            )
            plain = await c.post("/v1/classify", **multipart(data))
            assert plain.json()["input_png"] is None and len(plain.json()["with_defense"]) == 5

    run(go())


def test_attack_fgsm_matches_the_library_and_its_images_agree(tiny: torch.nn.Module) -> None:
    data = png_bytes(32, 32, seed=5)
    eps = 8 / 255
    x = (preprocess(decode_image(data), 32, tiny.cfg.crop_pct)[None].clamp(0, 1) * 255).round() / 255
    with torch.no_grad():
        label = tiny(x).argmax(1)
    adv = quantize_within(FGSM(eps=eps)(tiny, x, label), x, eps)

    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            r = await c.post("/v1/attack?method=fgsm&eps=8/255&top_k=10", **multipart(data))
            assert r.status_code == 200, r.text
            b = r.json()
            assert b["method"] == "fgsm" and b["steps"] == 1 and b["eps"] == pytest.approx(eps)
            assert b["reference_source"] == "clean prediction" and b["reference"]["index"] == int(label)
            clean, adv_img = decode_b64(b["input_png"]), decode_b64(b["adversarial_png"])
            pert = decode_b64(b["perturbation_png"])
            np.testing.assert_allclose(clean.numpy(), x[0].numpy(), atol=1e-6)
            # the library's FGSM gives the same image (a sign step: allow a rare flip of a ~0 gradient)
            assert (adv_img - adv[0]).abs().gt(1e-6).float().mean() < 1e-3
            # the adversarial PNG is exactly what was classified
            with torch.no_grad():
                probs = tiny(adv_img[None]).softmax(-1)[0]
                probs_def = tiny(srdefense.create_defense("nearest")(adv_img[None])).softmax(-1)[0]
            for key, want in (("without_defense", probs), ("with_defense", probs_def)):
                got = torch.zeros(10)
                for p in b["adversarial"][key]:
                    got[p["index"]] = p["probability"]
                np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5)
            adv_top = b["adversarial"]["without_defense"][0]["index"]
            assert b["undefended"]["correct"] == (adv_top == int(label))
            assert b["undefended"]["predicted"]["index"] == adv_top
            assert b["defended"]["correct"] == (b["adversarial"]["with_defense"][0]["index"] == int(label))
            delta = adv_img - clean
            assert delta.abs().max() <= eps + 1e-6
            assert b["linf"] == pytest.approx(float(delta.abs().max()), abs=1e-5)
            assert delta.abs().ge(eps - 1e-6).float().mean() > 0.5  # FGSM moves most pixels by eps
            # the amplified perturbation is 0.5 + delta / (2 eps), to 8-bit rounding
            np.testing.assert_allclose(
                pert.numpy(), (0.5 + delta / (2 * eps)).clamp(0, 1).numpy(), atol=1 / 255
            )

    run(go())


def test_attack_pgd_with_a_given_label(tiny: torch.nn.Module) -> None:
    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            r = await c.post("/v1/attack?method=pgd&eps=0.02&steps=3&label=7", **multipart(png_bytes(seed=2)))
            assert r.status_code == 200, r.text
            b = r.json()
            assert b["method"] == "pgd" and b["steps"] == 3
            assert b["reference_source"] == "label" and b["reference"]["index"] == 7
            assert b["linf"] <= 0.02 + 1e-6
            assert b["timings"]["attack_ms"] > 0

    run(go())


def test_real_classifier_and_paper_defense_on_an_embedded_photo() -> None:
    path, label = srdefense.data.embedded_samples()[0]
    data = path.read_bytes()
    clf = srdefense.create_classifier("efficientnet_lite0")
    x = preprocess(srdefense.read_image(path), 224, clf.cfg.crop_pct)[None]
    with torch.no_grad():
        p_plain = clf(x).softmax(-1)[0]

    async def go() -> None:
        async with Served(ServeConfig(defense="paper"), clf) as c:
            r = await c.post("/v1/classify?top_k=5", **multipart(data))
            assert r.status_code == 200, r.text
            b = r.json()
            assert b["classifier"] == "efficientnet_lite0" and b["defense"] == "paper"
            assert b["purified_size"] == [448, 448]  # the paper: the classifier sees the 2x image
            top = b["without_defense"][0]
            assert top["index"] == label == int(p_plain.argmax())
            assert top["name"] == srdefense.imagenet_classes()[label]
            assert top["wnid"] is not None and top["wnid"].startswith("n")
            assert top["probability"] == pytest.approx(float(p_plain[label]), abs=1e-4)
            assert len(b["with_defense"]) == 5
            assert b["timings"]["purify_ms"] > 0

    run(go())


# -- batching


def test_concurrent_requests_share_batches_and_match_single_runs(tiny: torch.nn.Module) -> None:
    sizes = [(40, 50), (64, 64), (33, 47), (40, 50)]
    uploads = [png_bytes(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    with torch.no_grad():
        singles = [
            tiny(preprocess(decode_image(d), 32, tiny.cfg.crop_pct)[None].double().float()).softmax(-1)[0]
            for d in uploads
        ]

    async def go() -> None:
        async with Served(tiny_config(max_batch=4, max_wait_ms=500), tiny) as c:
            # classify preprocesses to the classifier's size: all four sizes share one batch
            rs = await asyncio.gather(*(c.post("/v1/classify?top_k=10", **multipart(d)) for d in uploads))
            for r, probs in zip(rs, singles, strict=True):
                b = r.json()
                assert b["timings"]["batch_size"] == 4
                got = torch.zeros(10)
                for p in b["without_defense"]:
                    got[p["index"]] = p["probability"]
                np.testing.assert_allclose(got.numpy(), probs.numpy(), atol=1e-5)
            # purify keeps each upload's size: batches are grouped by size
            rs = await asyncio.gather(*(c.post("/v1/purify", **multipart(d)) for d in uploads))
            batch_sizes = [int(r.headers["x-batch-size"]) for r in rs]
            assert batch_sizes == [2, 1, 1, 2]
            assert [decode_image(r.content).shape[1:] for r in rs] == [(2 * h, 2 * w) for h, w in sizes]
            metrics = (await c.get("/metrics")).text
            counts = _samples(metrics, "srdefense_batch_size_count")
            assert counts[("kind", "classify")] == 1 and counts[("kind", "purify")] == 3

    run(go())


def test_the_event_loop_answers_while_the_worker_computes() -> None:
    slow = tiny_classifier(delay=0.4)
    order: list[str] = []

    async def go() -> None:
        async with Served(tiny_config(), slow) as c:

            async def classify() -> None:
                r = await c.post("/v1/classify", **multipart(png_bytes()))
                assert r.status_code == 200
                order.append("classify")

            async def health() -> None:
                await asyncio.sleep(0.15)  # the worker is inside the slow forward pass by now
                h = (await c.get("/healthz")).json()
                assert h["status"] == "ok"
                order.append("healthz")

            await asyncio.gather(classify(), health())

    run(go())
    assert order == ["healthz", "classify"]


def test_batch_worker_groups_keys_and_isolates_a_failing_input() -> None:
    seen: list[tuple[str, list[int]]] = []

    def compute(key: Any, payloads: list[int]) -> list[Any]:
        seen.append((key, list(payloads)))
        if 13 in payloads:
            raise ValueError("unlucky")
        return [p * 10 for p in payloads]

    async def go() -> list[Any]:
        w = BatchWorker(compute, max_batch=3, max_wait_s=0.3)
        w.start()
        jobs = [("a", 1), ("b", 2), ("a", 3), ("a", 13), ("a", 5), ("b", 6)]
        out = await asyncio.gather(*(w.submit(k, p) for k, p in jobs), return_exceptions=True)
        w.stop(timeout=5)
        assert not w.running
        return out

    out = run(go())
    assert out[:3] == [10, 20, 30] and out[4:] == [50, 60]
    assert isinstance(out[3], ValueError)
    # first batch: the first three "a" jobs (max_batch); the failing batch is retried one by one
    assert seen[0] == ("a", [1, 3, 13])
    assert ("a", [1]) in seen and ("a", [3]) in seen and ("a", [13]) in seen
    assert ("b", [2, 6]) in seen and ("a", [5]) in seen


# -- bad input and limits


def test_every_bad_input_gets_a_json_error_and_the_server_keeps_serving(tiny: torch.nn.Module) -> None:
    good = png_bytes(40, 50)
    big = png_bytes(200, 200)  # 40 000 pixels
    limit_mb = 0.25

    async def go() -> None:
        cfg = tiny_config(
            max_upload_mb=limit_mb, max_pixels=20_000, max_eps=8 / 255, max_steps=5, max_top_k=8
        )
        async with Served(cfg, tiny) as c:
            oversized = b"\x89PNG" + os.urandom(int(limit_mb * 1024 * 1024) + 10)
            msg = error_of(await c.post("/v1/purify", **multipart(oversized)), 413, "too_large")
            assert "0.25 MiB" in msg and "--max-upload-mb" in msg
            error_of(await c.post("/v1/classify", content=oversized), 413, "too_large")

            async def chunks() -> Any:  # no Content-Length: the limit applies while streaming
                for _ in range(40):
                    yield b"x" * 8192

            error_of(await c.post("/v1/classify", content=chunks()), 413, "too_large")
            msg = error_of(await c.post("/v1/classify", **multipart(big)), 413, "image_too_large")
            assert "200x200 = 40000 pixels exceeds max_pixels=20000" in msg

            msg = error_of(await c.post("/v1/purify", **multipart(b"just some text")), 415)
            assert "not an image" in msg and "PNG, JPEG" in msg
            error_of(await c.post("/v1/purify", content=b"%PDF-1.4 not an image"), 415)
            msg = error_of(await c.post("/v1/purify", **multipart(good[:120])), 422, "unreadable_image")
            assert "truncated or corrupt" in msg
            msg = error_of(await c.post("/v1/purify", content=b""), 422, "missing_image")
            assert "'image'" in msg
            msg = error_of(await c.post("/v1/purify", **multipart(good, field="photo")), 422, "missing_image")
            assert "'image'" in msg and "'photo'" in msg
            error_of(await c.post("/v1/purify", data={"image": "x"}), 415)
            r = await c.post(
                "/v1/purify", content=b"--b\r\nbroken", headers={"content-type": "multipart/form-data"}
            )
            error_of(r, 422, "bad_form")

            msg = error_of(await c.post("/v1/purify?defense=nope", **multipart(good)), 422, "unknown_defense")
            assert "'nope'" in msg and "paper" in msg and "wd" in msg and "jpeg" in msg
            msg = error_of(
                await c.post("/v1/classify?defense=wd:colour=1", **multipart(good)), 422, "bad_defense"
            )
            assert "colour" in msg and "sigma" in msg
            msg = error_of(await c.post("/v1/purify?defense=jpeg&resolution=2x", **multipart(good)), 422)
            assert "no resolution policy" in msg
            error_of(await c.post("/v1/purify?resolution=4x", **multipart(good)), 422, "invalid_parameter")

            msg = error_of(await c.post("/v1/attack?eps=16/255", **multipart(good)), 422, "limit_exceeded")
            assert "--max-eps" in msg and "8/255" in msg
            error_of(await c.post("/v1/attack?eps=0", **multipart(good)), 422, "limit_exceeded")
            msg = error_of(
                await c.post("/v1/attack?method=pgd&steps=6", **multipart(good)), 422, "limit_exceeded"
            )
            assert "--max-steps" in msg and "1..5" in msg
            msg = error_of(await c.post("/v1/attack?eps=lots", **multipart(good)), 422, "invalid_parameter")
            assert "4/255" in msg
            msg = error_of(await c.post("/v1/attack?method=cw", **multipart(good)), 422, "invalid_parameter")
            assert "method" in msg and "fgsm" in msg
            msg = error_of(await c.post("/v1/attack?label=10", **multipart(good)), 422, "invalid_parameter")
            assert "0..9" in msg
            msg = error_of(await c.post("/v1/classify?top_k=9", **multipart(good)), 422, "invalid_parameter")
            assert "1..8" in msg
            msg = error_of(
                await c.post("/v1/classify?top_k=many", **multipart(good)), 422, "invalid_parameter"
            )
            assert "top_k" in msg
            error_of(await c.get("/v1/nothing"), 404, "not_found")
            error_of(await c.get("/v1/purify"), 405, "method_not_allowed")

            # still serving
            for path in ("/v1/purify", "/v1/classify", "/v1/attack"):
                assert (await c.post(path, **multipart(good))).status_code == 200
            assert (await c.get("/healthz")).json()["worker"] is True

    run(go())


def test_a_large_upload_is_kept_in_memory(
    tiny: torch.nn.Module, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import starlette.formparsers

    def no_disk(*a: object, **k: object) -> None:
        raise AssertionError("the server tried to create a temporary file")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    for name in ("SpooledTemporaryFile", "NamedTemporaryFile", "TemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    monkeypatch.setattr(starlette.formparsers, "SpooledTemporaryFile", no_disk)
    data = png_bytes(1000, 1000)
    assert len(data) > 2 * 1024 * 1024  # above Starlette's 1 MiB spool threshold

    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            r = await c.post("/v1/classify", **multipart(data))
            assert r.status_code == 200, r.text

    run(go())
    assert list(tmp_path.iterdir()) == []


# -- access


def test_host_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    with pytest.raises(ValueError, match="requires an API key"):
        ServeConfig(host="0.0.0.0")
    assert ServeConfig(host="0.0.0.0", api_key="k").api_key == "k"
    assert ServeConfig().host == "127.0.0.1"
    with pytest.raises(ValueError, match="max_eps"):
        ServeConfig(max_eps=2.0)


def test_cli_refuses_a_public_host_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from srdefense.cli.main import _load_commands, app

    monkeypatch.delenv("SRDEFENSE_API_KEY", raising=False)
    _load_commands()
    res = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--classifier", "x.py:f"])
    assert res.exit_code == 2
    assert "requires an API key" in res.output and "SRDEFENSE_API_KEY" in res.output
    res = CliRunner().invoke(app, ["serve", "--defense", "nope"])
    assert res.exit_code == 2 and "unknown defense 'nope'" in res.output


def test_api_key_is_checked_on_every_v1_request(tiny: torch.nn.Module) -> None:
    async def go() -> None:
        async with Served(tiny_config(api_key="s3cret"), tiny) as c:
            for method, path in (
                ("GET", "/v1/models"),
                ("POST", "/v1/purify"),
                ("POST", "/v1/classify"),
                ("POST", "/v1/attack"),
            ):
                r = await c.request(method, path, content=png_bytes())
                assert "X-API-Key" in error_of(r, 401, "unauthorized")
            error_of(await c.get("/v1/models", headers={"X-API-Key": "wrong"}), 401)
            assert (await c.get("/v1/models", headers={"X-API-Key": "s3cret"})).status_code == 200
            assert (await c.get("/v1/models", headers={"Authorization": "Bearer s3cret"})).status_code == 200
            r = await c.post("/v1/classify", content=png_bytes(), headers={"X-API-Key": "s3cret"})
            assert r.status_code == 200
            h = await c.get("/healthz")
            assert h.status_code == 200 and h.json()["api_key_required"] is True

    run(go())


def test_cors_is_off_unless_an_origin_is_given(tiny: torch.nn.Module) -> None:
    preflight = {"Origin": "http://app.test", "Access-Control-Request-Method": "POST"}

    async def go() -> None:
        async with Served(tiny_config(), tiny) as c:
            r = await c.get("/v1/models", headers={"Origin": "http://app.test"})
            assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
            r = await c.options("/v1/classify", headers=preflight)
            assert "access-control-allow-origin" not in r.headers
        async with Served(tiny_config(cors=("http://app.test",)), tiny) as c:
            r = await c.get("/v1/models", headers={"Origin": "http://app.test"})
            assert r.headers["access-control-allow-origin"] == "http://app.test"
            r = await c.options("/v1/classify", headers=preflight)
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://app.test"
            r = await c.get("/v1/models", headers={"Origin": "http://other.test"})
            assert "access-control-allow-origin" not in r.headers

    run(go())


# -- metrics


def _samples(text: str, name: str) -> dict[tuple[str, ...], float]:
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out[tuple(x for kv in sorted(s.labels.items()) for x in kv)] = s.value
    return out


def test_metrics_count_requests_latency_batches_and_queue(tiny: torch.nn.Module) -> None:
    async def go() -> str:
        async with Served(tiny_config(), tiny) as c:
            for _ in range(3):
                assert (await c.post("/v1/classify", **multipart(png_bytes()))).status_code == 200
            assert (await c.post("/v1/classify?defense=nope", **multipart(png_bytes()))).status_code == 422
            assert (await c.post("/v1/attack", **multipart(png_bytes()))).status_code == 200
            await c.get("/no/such/page")
            r = await c.get("/metrics")
            assert r.headers["content-type"].startswith("text/plain")
            return r.text

    text = run(go())
    req = _samples(text, "srdefense_requests_total")
    assert req[("endpoint", "/v1/classify", "status", "200")] == 3
    assert req[("endpoint", "/v1/classify", "status", "422")] == 1
    assert req[("endpoint", "/v1/attack", "status", "200")] == 1
    assert req[("endpoint", "other", "status", "404")] == 1
    lat = _samples(text, "srdefense_request_duration_seconds_count")
    assert lat[("endpoint", "/v1/classify")] == 4
    sizes = _samples(text, "srdefense_batch_size_sum")
    assert sizes[("kind", "classify")] == 3 and sizes[("kind", "attack")] == 1
    assert _samples(text, "srdefense_queue_length") == {(): 0.0}


# -- the command, as a process: SIGTERM finishes the requests in flight


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_finishes_requests_in_flight_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)]),
        "OMP_NUM_THREADS": "1",
        "HOME": str(tmp_path),
    }
    env.pop("SRDEFENSE_API_KEY", None)
    cmd = [
        sys.executable,
        "-m",
        "srdefense.cli.main",
        "serve",
        "--classifier",
        f"{TESTS / 'serve_standin.py'}:factory",
        "--defense",
        "nearest",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-wait-ms",
        "1500",
        "--log-level",
        "info",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        result: dict[str, Any] = {}

        def request() -> None:
            r = httpx.post(
                base + "/v1/classify", files={"image": ("p.png", png_bytes(), "image/png")}, timeout=30
            )
            result["status"], result["body"] = r.status_code, r.json()

        t = threading.Thread(target=request)
        t.start()
        time.sleep(0.5)  # the request waits for its batch to fill (--max-wait-ms 1500)
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result.get("status") == 200, result
        assert len(result["body"]["with_defense"]) == 5
        # uvicorn re-raises the signal once its graceful shutdown is done
        assert proc.wait(30) in (0, -signal.SIGTERM)
        log = proc.stdout.read() if proc.stdout else ""
        assert "Application shutdown complete" in log, log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(httpx.TransportError):
        httpx.get(base + "/healthz", timeout=1)
