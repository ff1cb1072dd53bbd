"""The self-contained HTML explorer: input checks, embedded data, and a real headless Chromium
(Debian's chromium, driven through Playwright with the system browser; skipped when absent)."""

import io
import json
import re
from pathlib import Path

import numpy as np
import needs
import pytest

from ctinv_utils.errors import BadArgumentError
from ctinv_utils.figures.explorer_html import decode_int16, write_explorer_html

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def entries(n_alpha=3, size=32):
    """2 denoisers x 2 distances, each alpha's x_inv a different checkerboard amplitude (HU)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    x = -600.0 + 700.0 * disc + rng.normal(0, 20, (size, size))
    check = np.where((yy // 4 + xx // 4) % 2, 1.0, -1.0)
    out = {}
    for i, den in enumerate(("cnn10", "wganvgg")):
        for j, dist in enumerate(("mse", "dssim")):
            amp = 100.0 * (1 + i + 2 * j) * np.arange(1, n_alpha + 1)[:, None, None]
            x_inv = x + amp * check
            out[(den, dist)] = {"x": x, "f_x": x * 0.9, "x_inv": x_inv, "f_x_inv": x_inv * 0.9 + 0.1 * x,
                                "alphas": np.array([0.01, 0.05, 0.2][:n_alpha]), "converged": [True] * n_alpha}
    return out


def embedded(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(blob)


@pytest.mark.parametrize("change, message", [
    (lambda e: e.pop("alphas"), "missing ['alphas']"),
    (lambda e: e.update(x=np.zeros((3, 32, 32))), "x has shape (3, 32, 32)"),
    (lambda e: e.update(f_x=np.zeros((32, 31))), "f_x has shape (32, 31); expected (32, 32)"),
    (lambda e: e.update(x_inv=np.zeros((2, 32, 32))), "x_inv has shape (2, 32, 32); expected (3, 32, 32)"),
    (lambda e: e.update(alphas=np.array([0.01, 0.2, 0.05])), "not strictly increasing"),
    (lambda e: e["f_x_inv"].__setitem__((1, 0, 0), np.nan), "f_x_inv has 1 non-finite"),
    (lambda e: e.update(converged=[True]), "converged has 1 values for 3 alphas"),
    (lambda e: e.update(x=e["x"] * 1e3), "outside the int16 range"),
])
def test_bad_input_names_entry_and_problem(tmp_path, change, message):
    es = entries()
    change(es[("wganvgg", "dssim")])
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        write_explorer_html(es, tmp_path / "e.html", title="t")
    assert isinstance(err.value, BadArgumentError)
    assert "explorer entry wganvgg x dssim" in str(err.value)
    assert not (tmp_path / "e.html").exists()


def test_bad_keys_and_empty(tmp_path):
    with pytest.raises(ValueError, match="no entries"):
        write_explorer_html({}, tmp_path / "e.html", title="t")
    with pytest.raises(ValueError, match="must be a \\(denoiser, distance\\) pair"):
        write_explorer_html({"cnn10": entries()[("cnn10", "mse")]}, tmp_path / "e.html", title="t")
    with pytest.raises(ValueError, match="unknown window 'bone'"):
        write_explorer_html(entries(), tmp_path / "e.html", title="t", window="bone")


def test_embedded_data_round_trips_and_no_urls(tmp_path):
    es = entries()
    path = write_explorer_html(es, tmp_path / "sub" / "explorer.html", title="A <b>title</b>", caption="quick & dirty",
                               provenance={"git_commit": "abc123", "preset": "quick", "seed": 0, "versions": {"a": 1}})
    text = path.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!data:)[a-z]+:""", text, re.I)  # only data: URLs
    assert not re.search(r"""(src|href)\s*=\s*["']?//""", text, re.I)
    assert "A &lt;b&gt;title&lt;/b&gt;" in text and "quick &amp; dirty" in text
    assert "git_commit: abc123 · preset: quick · seed: 0" in text
    assert not list(path.parent.glob(".*.tmp"))  # written atomically: no temporary left
    data = embedded(path)
    assert [(e["denoiser"], e["distance"]) for e in data["entries"]] == list(es)
    assert data["entries"][0]["denoiser_label"] == "CNN-10"
    assert data["windows"]["abdomen"] == [50, 400] and data["difference_window"] == [0, 100]
    for e in data["entries"]:
        src = es[(e["denoiser"], e["distance"])]
        n = len(e["alphas"])
        for k in ("x", "f_x"):
            np.testing.assert_array_equal(decode_int16(e[k], e["shape"]), np.rint(src[k]))
        for k in ("x_inv", "f_x_inv"):
            np.testing.assert_array_equal(decode_int16(e[k], (n, *e["shape"])), np.rint(src[k]))
        rms = np.sqrt(np.mean((src["x_inv"] - src["x"]) ** 2, axis=(1, 2)))
        np.testing.assert_allclose(e["rms_in_hu"], rms)
        assert e["alphas"] == src["alphas"].tolist()


def chromium():
    """Path of the system Chromium (a skip outside CI where it is missing; a failure in CI)."""
    return needs.chromium()


def test_explorer_in_headless_chromium(tmp_path):
    exe = chromium()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    path = write_explorer_html(entries(), tmp_path / "explorer.html", title="synthetic",
                               provenance={"preset": "test"})
    errors = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 850})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())

            def pixels(panel):  # the canvas's RGBA bytes, summed and hashed
                return page.evaluate("""id => { const c = document.getElementById('canvas-' + id);
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let s = 0, h = 0; for (let i = 0; i < d.length; i++) { s += d[i]; h = (h * 31 + d[i]) | 0; }
                    return [c.width, c.height, s, h]; }""", panel)

            def label():
                return page.inner_text("#alpha-label")

            assert label() == "α = 0.01"
            x0, inv0 = pixels("x"), pixels("x_inv")
            assert x0[:2] == [32, 32] and x0[2] > 0
            assert page.inner_text("#window-x") == "C=-600 / W=1500 HU"
            assert page.inner_text("#window-dx").startswith("C=0 / W=100 HU")

            page.focus("#alpha")
            page.keyboard.press("ArrowRight")  # the slider steps through the alpha index
            assert label() == "α = 0.05"
            inv1 = pixels("x_inv")
            assert inv1 != inv0 and pixels("x") == x0
            assert "(2 of 3)" in page.inner_text("#alpha-facts")

            page.select_option("#denoiser", "wganvgg")  # keeps alpha, shows the other denoiser's x_inv
            assert label() == "α = 0.05" and pixels("x_inv") != inv1

            page.select_option("#window", "abdomen")
            assert pixels("x") != x0
            assert page.inner_text("#window-x") == "C=50 / W=400 HU"

            png = page.screenshot(full_page=True)

            # an 800 px wide window: nothing overflows sideways, all six panels side by side in it
            page.set_viewport_size({"width": 800, "height": 900})
            page.wait_for_timeout(100)
            assert page.evaluate("document.documentElement.scrollWidth") <= 800
            boxes = page.evaluate("""() => [...document.querySelectorAll('canvas')].map(c => {
                const r = c.getBoundingClientRect(); return [r.left, r.right, r.width, r.height]; })""")
            assert len(boxes) == 6 and all(0 <= left and right <= 800 and w > 150 and abs(w - h) < 1
                                           for left, right, w, h in boxes), boxes
        finally:
            browser.close()
    shot = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert shot.std() > 20, "the screenshot looks blank"
    assert errors == []
