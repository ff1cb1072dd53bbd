"""A self-contained HTML explorer of precomputed invariances: one file, opened from disk.

Per denoiser x distance, the alpha grid's x, x_inv, f(x), f(x_inv) and both differences, with a slider
for alpha and dropdowns for denoiser, distance and HU window. Images travel as HU rounded to int16,
base64 in a JSON block; the page windows them in JavaScript onto canvases. No server, kernel, CDN or
URL of any kind.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import atomic
from ..errors import BadArgumentError
from ..names import display_name
from ..units import DIFFERENCE, WINDOWS

#: the windows offered for the CT panels (the difference window is fixed on the difference panels)
CT_WINDOWS = [name for name in WINDOWS if name != DIFFERENCE.name]
INT16_RANGE = (-32768, 32767)


def write_explorer_html(entries: Mapping[tuple[str, str], Mapping[str, Any]], path: str | os.PathLike, *,
                        title: str, caption: str = "", provenance: Mapping[str, Any] | None = None,
                        window: str = "lung", tol_hu: float = 5.0) -> Path:
    """Write the explorer to ``path`` (atomically) and return it.

    ``entries``: ``{(denoiser, distance): {"x": (H, W), "f_x": (H, W), "x_inv": (A, H, W),
    "f_x_inv": (A, H, W), "alphas": (A,) strictly increasing}}``, images in HU; optional
    ``"converged"``: A bools. ``window``: the CT window shown first (a name in ``units.WINDOWS``).
    ``tol_hu``: an output change above this RMS (HU) is labelled "NOT unchanged", as in the talk panels.
    """
    if not entries:
        raise BadArgumentError("write_explorer_html: no entries; pass {(denoiser, distance): arrays}")
    if window not in CT_WINDOWS:
        raise BadArgumentError(f"write_explorer_html: unknown window {window!r}; choose one of {CT_WINDOWS}")
    data = {
        "windows": {name: [WINDOWS[name].center, WINDOWS[name].width] for name in CT_WINDOWS},
        "window": window,
        "difference_window": [DIFFERENCE.center, DIFFERENCE.width],
        "tol_hu": float(tol_hu),
        "entries": [_entry(key, arrays) for key, arrays in entries.items()],
        "provenance": dict(provenance) if provenance else {},
    }
    blob = script_json(data)
    page = (_PAGE.replace("@TITLE@", html.escape(title))
            .replace("@CAPTION@", html.escape(caption))
            .replace("@PROVENANCE@", html.escape(_provenance_line(provenance)))
            .replace("@DATA@", blob)
            .replace("@SCRIPT@", _SCRIPT))
    return atomic.write_bytes(path, page.encode("utf-8"))


#: Characters that JSON leaves as they are but that can end or re-open a <script> block (``</script>``,
#: ``<!--``, ``<script``), start an entity, or end a line in older JavaScript: written as \\u escapes,
#: which JSON.parse reads back to the same text.
_SCRIPT_UNSAFE = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script type="application/json">`` block: no ``<``,
    ``>`` or ``&`` (so no ``</script>``, ``<!--`` or ``<script`` can end the block early or swallow the
    next one), every non-ASCII character as a \\u escape; ``JSON.parse`` and ``json.loads`` give back
    ``data`` unchanged."""
    text = json.dumps(data, separators=(",", ":"), default=str, ensure_ascii=True)
    for char, escaped in _SCRIPT_UNSAFE.items():
        text = text.replace(char, escaped)
    return text


def encode_int16(image_hu: np.ndarray) -> str:
    """HU (any shape) -> base64 of the values rounded to little-endian int16 (what the page decodes)."""
    return base64.b64encode(np.rint(image_hu).astype("<i2").tobytes()).decode("ascii")


def decode_int16(text: str, shape) -> np.ndarray:
    """Inverse of :func:`encode_int16`: base64 -> int16 array of ``shape`` (HU)."""
    return np.frombuffer(base64.b64decode(text), dtype="<i2").reshape(shape)


def _entry(key, arrays: Mapping[str, Any]) -> dict:
    """One (denoiser, distance) checked and encoded; any problem is one BadArgumentError naming it."""
    if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, str) for k in key)):
        raise BadArgumentError(f"explorer entry {key!r}: the key must be a (denoiser, distance) pair of strings")
    name = f"explorer entry {key[0]} x {key[1]}"

    def bad(problem: str):
        return BadArgumentError(f"{name}: {problem}")

    missing = [k for k in ("x", "f_x", "x_inv", "f_x_inv", "alphas") if k not in arrays]
    if missing:
        raise bad(f"missing {missing}; each entry needs x, f_x (H, W), x_inv, f_x_inv (A, H, W) and alphas (A,)")
    a = {k: np.asarray(arrays[k], dtype=np.float64) for k in ("x", "f_x", "x_inv", "f_x_inv", "alphas")}
    if a["x"].ndim != 2:
        raise bad(f"x has shape {a['x'].shape}; expected (H, W) in HU")
    h, w = a["x"].shape
    alphas = a["alphas"]
    if alphas.ndim != 1 or alphas.size == 0:
        raise bad(f"alphas has shape {alphas.shape}; expected (A,) with A >= 1")
    n = alphas.size
    for k, shape in (("f_x", (h, w)), ("x_inv", (n, h, w)), ("f_x_inv", (n, h, w))):
        if a[k].shape != shape:
            raise bad(f"{k} has shape {a[k].shape}; expected {shape} (x is {(h, w)}, {n} alphas)")
    for k, v in a.items():
        if not np.isfinite(v).all():
            raise bad(f"{k} has {int((~np.isfinite(v)).sum())} non-finite values (NaN or inf)")
    outside = [k for k in ("x", "f_x", "x_inv", "f_x_inv")
               if a[k].min() < INT16_RANGE[0] or a[k].max() > INT16_RANGE[1]]
    if outside:
        raise bad(f"{outside} reach outside the int16 range {INT16_RANGE}; are the images in HU?")
    if n > 1 and not (np.diff(alphas) > 0).all():
        raise bad(f"alphas {alphas.tolist()} are not strictly increasing")
    converged = arrays.get("converged")
    if converged is not None:
        converged = [bool(c) for c in np.asarray(converged).reshape(-1)]
        if len(converged) != n:
            raise bad(f"converged has {len(converged)} values for {n} alphas")
    d_in, d_out = a["x_inv"] - a["x"], a["f_x_inv"] - a["f_x"]
    half = DIFFERENCE.width / 2
    return {
        "denoiser": key[0], "distance": key[1],
        "denoiser_label": display_name(key[0]), "distance_label": display_name(key[1]),
        "shape": [h, w], "alphas": alphas.tolist(), "converged": converged,
        # facts per alpha, from the unrounded arrays: RMS change in HU and the share of pixels the
        # difference window clips
        "rms_in_hu": np.sqrt(np.mean(d_in ** 2, axis=(1, 2))).tolist(),
        "rms_out_hu": np.sqrt(np.mean(d_out ** 2, axis=(1, 2))).tolist(),
        "clipped_in": np.mean(np.abs(d_in - DIFFERENCE.center) > half, axis=(1, 2)).tolist(),
        "clipped_out": np.mean(np.abs(d_out - DIFFERENCE.center) > half, axis=(1, 2)).tolist(),
        **{k: encode_int16(a[k]) for k in ("x", "f_x", "x_inv", "f_x_inv")},
    }


def _provenance_line(provenance: Mapping[str, Any] | None) -> str:
    """The provenance's scalar items as one line ("git_commit: 743e1a0 · preset: quick · seed: 0")."""
    if not provenance:
        return ""
    items = []
    for k, v in provenance.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            if isinstance(v, float) and not math.isfinite(v):
                v = str(v)
            items.append(f"{k}: {v}")
    return " · ".join(items)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>@TITLE@</title>
<style>
  body { background: #161616; color: #ddd; font: 14px/1.4 system-ui, sans-serif; margin: 16px clamp(8px, 3vw, 24px); }
  h1 { font-size: 18px; font-weight: 600; margin: 0 0 10px; }
  .controls { display: flex; flex-wrap: wrap; gap: 8px 22px; align-items: center; margin-bottom: 6px; }
  .controls label { color: #aaa; }
  select { background: #262626; color: #eee; border: 1px solid #555; border-radius: 3px; padding: 2px 4px;
           font: inherit; }
  #alpha { width: min(220px, 50vw); vertical-align: middle; }
  #alpha-label { display: inline-block; min-width: 7.5em; font-weight: 600; color: #fff;
                 font-variant-numeric: tabular-nums; }
  #alpha-facts, #alpha-grid { color: #bbb; font-variant-numeric: tabular-nums; }
  #alpha-grid { font-size: 12px; color: #888; }
  #pixel { font-size: 12px; color: #bbb; margin-bottom: 12px; min-height: 1.4em; font-variant-numeric: tabular-nums; }
  /* three panels a row at any width: they shrink with the window (never wider than drawn) */
  .grid { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 14px clamp(6px, 2vw, 18px); }
  figure { margin: 0; min-width: 0; }
  figcaption { font-size: 13px; margin-bottom: 3px; overflow-wrap: anywhere; }
  .window { font-size: 12px; color: #999; margin-top: 2px; overflow-wrap: anywhere; }
  .warn { color: #f0a050; }
  canvas { display: block; background: #000; image-rendering: pixelated; width: 100%; height: auto; }
  footer { margin-top: 16px; font-size: 11px; color: #888; max-width: 1000px; }
  .load-error { background: #5c1a1a; color: #fff; border: 1px solid #c44; border-radius: 3px;
                padding: 8px 12px; margin-bottom: 12px; font-weight: 600; }
  .load-error[hidden] { display: none; }
</style>
</head>
<body>
<div id="load-error" class="load-error" role="alert">This explorer did not start: its script did not run, or
  its embedded data could not be read. Open the file in a current browser with JavaScript on; if this stays,
  the file is damaged: write it again (ctinv_utils.figures.explorer_html.write_explorer_html).</div>
<h1>@TITLE@</h1>
<div class="controls">
  <span><label for="denoiser">Denoiser</label> <select id="denoiser"></select></span>
  <span><label for="distance">Distance</label> <select id="distance"></select></span>
  <span><label for="window">CT window</label> <select id="window"></select></span>
</div>
<div class="controls">
  <span><label for="alpha">trade-off</label> <input type="range" id="alpha" min="0" max="0" step="1" value="0">
        <span id="alpha-label"></span></span>
  <span id="alpha-facts"></span>
</div>
<div id="alpha-grid"></div>
<div id="pixel">Point at an image for its values in HU.</div>
<div class="grid">
  <figure><figcaption id="title-x">x (input)</figcaption><canvas id="canvas-x"></canvas>
    <div class="window" id="window-x"></div></figure>
  <figure><figcaption id="title-x_inv">x_inv</figcaption><canvas id="canvas-x_inv"></canvas>
    <div class="window" id="window-x_inv"></div></figure>
  <figure><figcaption id="title-dx">x_inv − x</figcaption><canvas id="canvas-dx"></canvas>
    <div class="window" id="window-dx"></div></figure>
  <figure><figcaption id="title-f_x">f(x)</figcaption><canvas id="canvas-f_x"></canvas>
    <div class="window" id="window-f_x"></div></figure>
  <figure><figcaption id="title-f_x_inv">f(x_inv)</figcaption><canvas id="canvas-f_x_inv"></canvas>
    <div class="window" id="window-f_x_inv"></div></figure>
  <figure><figcaption id="title-df">f(x_inv) − f(x)</figcaption><canvas id="canvas-df"></canvas>
    <div class="window" id="window-df"></div></figure>
</div>
<footer><div id="caption">@CAPTION@</div><div id="provenance">@PROVENANCE@</div></footer>
<script type="application/json" id="explorer-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_SCRIPT = r"""
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  // the banner is shown until the first render succeeded; an error on the way says what failed
  function fail(what, err) {
    const banner = $("load-error");
    banner.hidden = false;
    banner.textContent = "This explorer cannot be shown: " + what + " (" + (err && err.message ? err.message : err) +
      "). The file is damaged or was cut short: write it again (ctinv_utils.figures.explorer_html.write_explorer_html).";
  }
  let DATA;
  try {
    const block = $("explorer-data");
    if (!block) throw new Error("no element with id explorer-data");
    DATA = JSON.parse(block.textContent);
    if (!DATA || !Array.isArray(DATA.entries) || DATA.entries.length === 0) throw new Error("no entries in it");
  } catch (err) {
    fail("its embedded data could not be read", err);
    return;
  }
  try {
    const decoded = new Map();  // entry index -> {x, f_x, x_inv, f_x_inv} as Int16Array (HU)
    const DISPLAY_PX = 320;     // panels are upscaled by an integer factor to about this size

    function int16(b64) {
      const bytes = atob(b64), view = new DataView(new ArrayBuffer(bytes.length));
      for (let i = 0; i < bytes.length; i++) view.setUint8(i, bytes.charCodeAt(i));
      const out = new Int16Array(bytes.length / 2);
      for (let i = 0; i < out.length; i++) out[i] = view.getInt16(2 * i, true);
      return out;
    }
    function arrays(i) {
      if (!decoded.has(i)) {
        const e = DATA.entries[i];
        decoded.set(i, {x: int16(e.x), f_x: int16(e.f_x), x_inv: int16(e.x_inv), f_x_inv: int16(e.f_x_inv)});
      }
      return decoded.get(i);
    }
    const fmtAlpha = (a) => String(Number(a.toPrecision(3)));
    const fmtHU = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1));
    const windowText = (c, w) => "C=" + c + " / W=" + w + " HU";

    function draw(id, values, h, w, center, width) {
      const canvas = $("canvas-" + id);
      if (canvas.width !== w || canvas.height !== h) {
        canvas.width = w; canvas.height = h;
        const scale = w < DISPLAY_PX ? Math.max(1, Math.floor(DISPLAY_PX / w)) : DISPLAY_PX / w;
        // as wide as its column allows, at most the drawn size; the grid no wider than three of them
        canvas.style.maxWidth = Math.round(w * scale) + "px";
        canvas.style.imageRendering = scale >= 1 ? "pixelated" : "auto";
        const grid = canvas.closest(".grid");
        if (grid) grid.style.maxWidth = "calc(" + 3 * Math.round(w * scale) + "px + 2 * clamp(6px, 2vw, 18px))";
      }
      const ctx = canvas.getContext("2d"), img = ctx.createImageData(w, h), lo = center - width / 2;
      for (let i = 0; i < h * w; i++) {
        const g = Math.round(255 * Math.min(1, Math.max(0, (values[i] - lo) / width)));
        img.data[4 * i] = img.data[4 * i + 1] = img.data[4 * i + 2] = g;
        img.data[4 * i + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
    }
    function minus(a, b) {
      const out = new Float32Array(a.length);
      for (let i = 0; i < a.length; i++) out[i] = a[i] - b[i];
      return out;
    }
    function entryIndex() {
      const den = $("denoiser").value, dist = $("distance").value;
      return DATA.entries.findIndex((e) => e.denoiser === den && e.distance === dist);
    }
    function fillDistances(keep) {
      const den = $("denoiser").value, sel = $("distance");
      sel.innerHTML = "";
      for (const e of DATA.entries) {
        if (e.denoiser === den) sel.add(new Option(e.distance_label, e.distance));
      }
      if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
    }
    function setAlphaGrid(keepAlpha) {
      // a new entry may have another alpha grid: keep the alpha nearest (on a log scale) to the old one
      const e = DATA.entries[entryIndex()], slider = $("alpha");
      slider.max = e.alphas.length - 1;
      let best = 0;
      if (keepAlpha !== null) {
        const lg = (a) => Math.log(Math.max(a, 1e-300));
        const d = e.alphas.map((a) => Math.abs(lg(a) - lg(keepAlpha)));
        best = d.indexOf(Math.min(...d));
      }
      slider.value = best;
      $("alpha-grid").textContent = "α grid (" + e.alphas.length + "): " + e.alphas.map(fmtAlpha).join(", ");
    }
    function currentAlpha() {
      const i = entryIndex();
      return i < 0 ? null : DATA.entries[i].alphas[Number($("alpha").value)];
    }

    function render() {
      const idx = entryIndex(), e = DATA.entries[idx], A = arrays(idx);
      const [h, w] = e.shape, n = h * w, k = Number($("alpha").value);
      const [c, wd] = DATA.windows[$("window").value], [dc, dw] = DATA.difference_window;
      const xInv = A.x_inv.subarray(k * n, (k + 1) * n), fInv = A.f_x_inv.subarray(k * n, (k + 1) * n);
      draw("x", A.x, h, w, c, wd);
      draw("x_inv", xInv, h, w, c, wd);
      draw("f_x", A.f_x, h, w, c, wd);
      draw("f_x_inv", fInv, h, w, c, wd);
      draw("dx", minus(xInv, A.x), h, w, dc, dw);
      draw("df", minus(fInv, A.f_x), h, w, dc, dw);
      for (const id of ["x", "x_inv", "f_x", "f_x_inv"]) $("window-" + id).textContent = windowText(c, wd);
      const rmsIn = e.rms_in_hu[k], rmsOut = e.rms_out_hu[k];
      $("title-dx").textContent = "x_inv − x: RMS " + fmtHU(rmsIn) + " HU";
      const df = $("title-df");
      df.textContent = "f(x_inv) − f(x): RMS " + fmtHU(rmsOut) + " HU";
      if (rmsOut > DATA.tol_hu) {
        const warn = document.createElement("span");
        warn.className = "warn";
        warn.textContent = " (> " + DATA.tol_hu + " HU: NOT unchanged)";
        df.appendChild(warn);
      }
      const clipped = (f) => (f > 0 ? " · " + Math.round(100 * f) + " % of pixels beyond ±" + dw / 2 + " HU" : "");
      $("window-dx").textContent = windowText(dc, dw) + clipped(e.clipped_in[k]);
      $("window-df").textContent = windowText(dc, dw) + clipped(e.clipped_out[k]);
      const label = "α = " + fmtAlpha(e.alphas[k]);
      $("alpha-label").textContent = label;
      $("alpha").setAttribute("aria-valuetext", label);
      const conv = e.converged === null ? "" : (e.converged[k] ? " · converged" : " · NOT converged");
      $("alpha-facts").textContent = "(" + (k + 1) + " of " + e.alphas.length + ")" + conv +
        " · input change " + fmtHU(rmsIn) + " HU RMS · output change " + fmtHU(rmsOut) + " HU RMS";
    }

    const seen = new Set();
    for (const e of DATA.entries) {
      if (!seen.has(e.denoiser)) { seen.add(e.denoiser); $("denoiser").add(new Option(e.denoiser_label, e.denoiser)); }
    }
    for (const [name, [c, w]] of Object.entries(DATA.windows)) {
      $("window").add(new Option(name + " (" + windowText(c, w) + ")", name));
    }
    $("window").value = DATA.window;
    fillDistances(null);
    setAlphaGrid(null);
    // what was shown before a dropdown changed (a change event sees the new value already)
    let alphaBefore = null, distanceBefore = null;
    function remember() { alphaBefore = currentAlpha(); distanceBefore = $("distance").value; }
    $("denoiser").addEventListener("change", () => {
      fillDistances(distanceBefore); setAlphaGrid(alphaBefore); remember(); render();
    });
    $("distance").addEventListener("change", () => { setAlphaGrid(alphaBefore); remember(); render(); });
    $("window").addEventListener("change", render);
    for (const canvas of document.querySelectorAll("canvas")) {
      canvas.addEventListener("mousemove", (ev) => {
        const idx = entryIndex(), e = DATA.entries[idx], A = arrays(idx), [h, w] = e.shape;
        const r = canvas.getBoundingClientRect();
        const col = Math.min(w - 1, Math.floor((ev.clientX - r.left) / r.width * w));
        const row = Math.min(h - 1, Math.floor((ev.clientY - r.top) / r.height * h));
        const i = row * w + col, j = Number($("alpha").value) * h * w + i;
        $("pixel").textContent = "pixel (row " + row + ", col " + col + "): x = " + A.x[i] + " HU, x_inv = " +
          A.x_inv[j] + " HU, f(x) = " + A.f_x[i] + " HU, f(x_inv) = " + A.f_x_inv[j] + " HU";
      });
    }
    $("alpha").addEventListener("input", () => { remember(); render(); });
    remember();
    render();
    $("load-error").hidden = true;
  } catch (err) {
    fail("drawing it failed", err);
  }
})();
"""
