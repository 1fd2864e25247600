"""The service's web page as a person uses it: Debian's Chromium driven by Playwright.

The server runs in this process (uvicorn on 127.0.0.1, a free port) with the real embedded
classifier (EfficientNet-Lite0) behind the ``paper`` defense. Needs Debian's ``chromium``
package (``apt-get install -y --no-install-recommends chromium``; ``make test`` installs it
where missing) and the ``playwright`` Python package (its own browser download is not used).
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import srdefense
from srdefense.serve import ServeConfig, create_app

pytestmark = [pytest.mark.browser, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM = "/usr/bin/chromium"
SETUP = "apt-get update && apt-get install -y --no-install-recommends chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="needs the playwright package (test extra)"
)
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"Debian's chromium is not installed (set-up: {SETUP})", allow_module_level=True)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    import uvicorn

    n_threads = torch.get_num_threads()
    torch.set_num_threads(2)
    app = create_app(ServeConfig(defense="paper", max_eps=16 / 255))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(30)
        sock.close()
        torch.set_num_threads(n_threads)


def _set_range(page: object, selector: str, value: int) -> None:
    page.eval_on_selector(  # type: ignore[attr-defined]
        selector,
        "(el, v) => { el.value = String(v); el.dispatchEvent(new Event('input', {bubbles: true})); }",
        value,
    )


def test_page_purifies_classifies_and_attacks_an_embedded_photo(server: str, tmp_path: Path) -> None:
    path, label = srdefense.data.embedded_samples()[0]
    label_name = srdefense.imagenet_classes()[label]
    console_errors: list[str] = []
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: console_errors.append(f"uncaught: {e}"))
            page.goto(server + "/")
            page.wait_for_selector("body[data-state=ready]", timeout=30_000)
            assert page.eval_on_selector("#defense", "el => el.value") == "paper"
            assert page.eval_on_selector("#eps", "el => el.max") == "16"

            # upload one of the embedded photos
            page.set_input_files("#file", str(path))
            page.wait_for_selector("body[data-state=classified]", timeout=120_000)
            sizes = page.evaluate(
                "() => ['original', 'purified'].map(id => { const i = document.getElementById(id);"
                " return [i.complete, i.naturalWidth, i.naturalHeight]; })"
            )
            assert sizes == [[True, 224, 224], [True, 448, 448]]  # both decoded; the paper's 2x image
            for bars in ("#bars-plain .bar", "#bars-defended .bar"):
                assert page.locator(bars).count() == 5
                widths = page.eval_on_selector_all(
                    bars + " .fill", "els => els.map(e => e.getBoundingClientRect().width)"
                )
                assert all(w > 0 for w in widths) and widths == sorted(widths, reverse=True)
            assert page.locator("#bars-plain .bar .name").first.inner_text() == label_name
            # the zoom shows a detail of both images (not a blank canvas)
            spread = page.evaluate(
                "() => ['zoom-original', 'zoom-purified'].map(id => { const c = document.getElementById(id);"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]);"
                " hi = Math.max(hi, d[i]); } return hi - lo; })"
            )
            assert min(spread) > 20

            # the attack control: FGSM at 8/255
            page.select_option("#method", "fgsm")
            _set_range(page, "#eps", 8)
            assert page.inner_text("#eps-value") == "8/255"
            page.click("#attack-button")
            page.wait_for_selector("body[data-state=attacked]", timeout=120_000)
            decoded = page.evaluate(
                "() => ['adversarial', 'perturbation'].map(id => { const i = document.getElementById(id);"
                " return [i.complete, i.naturalWidth, i.naturalHeight]; })"
            )
            assert decoded == [[True, 224, 224], [True, 224, 224]]
            assert page.locator("#adv-bars-plain .bar").count() == 5
            assert page.locator("#adv-bars-defended .bar").count() == 5
            reference = page.inner_text("#reference")
            assert label_name in reference and "FGSM at eps 8/255" in reference
            for who in ("undefended", "defended"):
                cls = page.eval_on_selector(f"#verdict-{who}", "el => el.className")
                text = page.inner_text(f"#verdict-{who}")
                adv_top = page.locator(f"#adv-bars-{'plain' if who == 'undefended' else 'defended'} .name")
                top_name = adv_top.first.inner_text()
                # the verdict agrees with the bars: right iff the top class is still the reference
                if top_name == label_name:
                    assert cls == "verdict ok" and "still right" in text
                else:
                    assert cls == "verdict bad" and top_name in text
                    clean_top = page.locator(f"#bars-{'plain' if who == 'undefended' else 'defended'} .name")
                    was_right = clean_top.first.inner_text() == label_name
                    assert ("fooled" in text) == was_right and ("already said" in text) == (not was_right)
            # FGSM at 8/255 fools the undefended EfficientNet-Lite0 on this photo
            assert page.eval_on_selector("#verdict-undefended", "el => el.className") == "verdict bad"

            shot = tmp_path / "serve_page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert console_errors == []

            # an unreadable file: the server's error in plain words on the page
            notes = tmp_path / "notes.png"
            notes.write_text("these are notes, not a picture")
            page.set_input_files("#file", str(notes))
            page.wait_for_selector("body[data-state=error]", timeout=30_000)
            assert page.is_visible("#error")
            assert "This file is not an image the server can read" in page.inner_text("#error")
            # the browser logs the failed request itself, and nothing else
            assert len(console_errors) == 1 and "status of 415" in console_errors[0], console_errors
        finally:
            browser.close()

    with Image.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert pixels.shape[1] == 1280 and pixels.shape[0] >= 1000
    assert pixels.std() > 20  # not a blank page
    print(f"screenshot: {shot}")
