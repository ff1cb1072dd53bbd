"""Anatomical CT phantoms in HU for head, chest and abdomen, different per patient (seeded).

``Phantom(region, seed).slice(z, size)`` returns one axial slice of a simulated patient; ``z`` in
[0, 1] moves through the scanned range (:data:`Z_EXTENT_MM` long, z = 0 cranial for chest and
abdomen, caudal for the head), so organs change smoothly and lesions appear only on the slices they
span, like a real series.

The anatomy is three-dimensional and defined in mm, never in pixels: organ outlines are ellipses
whose size and position are smooth functions of z; vessel and airway trees, bowel loops and ribs are
tubes (3-D segments with a radius) cut by the slice plane; textures (parenchyma, fat septa, trabecular
bone, cortical folding, bowel content) are Gaussian random fields on fixed-mm lattices, seeded per
patient and tile, evaluated at the pixel centres. ``slice(z, 512)`` and ``slice(z, 256)`` therefore
show the same patient at two samplings. Structures thinner than a pixel (vessels, septa, trabeculae,
sulci) are painted with their pixel coverage (partial volume); labels go to the tissue covering at
least half of a pixel.

What each region holds (textures as std on the eroded label, see :data:`FLAT_TISSUE`):

- body wall (chest, abdomen): skin; subcutaneous fat (-100 HU) with septa running across it and a
  superficial fascia; a muscle wall with fat planes between its lateral layers and a linea alba;
  visceral or extrapleural fat with septa and small vessels.
- chest: lungs (-865 HU, ~20 HU of fine grain, denser posteriorly) filling the cavity, with
  pulmonary artery and vein trees (a few thousand branches each, from the hila outwards, calibres by
  Murray's law) and bronchi with walls beside the larger arteries; trachea and main bronchi,
  mediastinal fat, the heart in epicardial fat, aorta, pulmonary trunk, caval and brachiocephalic
  veins, oesophagus; ribs, sternum, scapulae and thoracic vertebrae; the diaphragm domes at the base.
- abdomen: liver (60 HU, ~4 HU texture) with a left lobe and portal and hepatic vein trees (about
  -16 HU); gallbladder (water); spleen; kidneys with cortex, medullary pyramids and a sinus open at
  the hilum in perirenal fat; pancreas (lobulated); stomach, colon and small-bowel loops (walls,
  fluid or mottled contents, gas above an air-fluid level); aorta, IVC, renal and splenic veins;
  psoas and paraspinal muscles; lumbar vertebrae (or discs) and lower ribs.
- bone everywhere: cortical shells (900-1550 HU by patient and site) over trabecular bone, a web of
  trabeculae (~600 HU, cells 2-4 mm) in marrow (-10 to 60 HU).
- head: scalp, skull with outer and inner tables and diploe, varying in thickness; cortex folded by
  sulci, gray matter (38 HU) over white matter (27 HU), the interhemispheric fissure and falx, deep
  gray nuclei, lateral ventricles (water); the low-contrast lesions in the white matter.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import fft, ndimage

from .regions import FOV_MM, REGIONS

#: Tissue labels and their nominal HU (textures vary around it). ``water`` is the homogeneous 0-HU
#: region (gallbladder, lateral ventricles) used to check the HU calibration: it carries no texture;
#: ``lesion`` gets its own HU per lesion. Labels appended after ``bowel_gas`` came with the textured
#: anatomy; the label value of a name is its position here and never changes for an existing name.
TISSUE_HU = {
    "air": -1000.0, "fat": -100.0, "muscle": 40.0, "bone": 1000.0, "cancellous": 250.0,
    "lung": -850.0, "vessel": 40.0, "heart": 40.0, "liver": 60.0, "spleen": 50.0,
    "kidney": 35.0, "water": 0.0, "gray_matter": 40.0, "white_matter": 28.0,
    "lesion": np.nan, "bowel_gas": -1000.0,
    "skin": 30.0, "septum": 30.0, "csf": 5.0, "airway": -1000.0, "airway_wall": 30.0,
    "bowel_wall": 40.0, "bowel_content": 15.0, "kidney_medulla": 27.0, "pancreas": 40.0, "disc": 85.0,
}
LABELS = {name: i for i, name in enumerate(TISSUE_HU)}
#: Large homogeneous-ish tissue in which noise is measured, per region. Its texture is a smooth field
#: of a few HU: std on the label eroded by 3 px, white matter ~1.5 HU, heart ~2.2 HU, liver ~4.4 HU
#: (parenchyma ~4 HU plus its vessels, which keep the label ``liver``).
FLAT_TISSUE = {"head": "white_matter", "chest": "heart", "abdomen": "liver"}
#: Length (mm) of the scanned range z in [0, 1] per region: the z scale of all 3-D anatomy.
Z_EXTENT_MM = {"head": 110.0, "chest": 260.0, "abdomen": 240.0}

_OFFSET = 1 << 20   # keeps plane indices non-negative in the seed sequence


@dataclass(frozen=True)
class Ellipse:
    """Ellipse in mm: centre (cx, cy), semi-axes (a, b), rotation in degrees; x right, y down.

    ``harmonics``: ((k, amplitude, phase_rad), ...) modulate the outline's radius by
    ``1 + sum amplitude cos(k theta + phase)`` (theta the elliptic angle from the a axis): organ and
    body outlines that are not perfect ellipses.

    Example
    -------
    >>> Ellipse(0.0, 0.0, 10.0, 5.0).mask(np.array([0.0, 11.0]), np.array([0.0, 0.0])).tolist()
    [True, False]
    """

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0
    harmonics: tuple = ()

    def rho(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Normalised radius: 1 on the outline, < 1 inside (dimensionless)."""
        t = np.deg2rad(self.angle)
        dx, dy = xx - self.cx, yy - self.cy
        u = (dx * np.cos(t) + dy * np.sin(t)) / self.a
        v = (-dx * np.sin(t) + dy * np.cos(t)) / self.b
        r = np.sqrt(u**2 + v**2)
        if self.harmonics:
            e = (u + 1j * v) / np.maximum(r, 1e-12)  # exp(i theta)
            kmax = max(k for k, _, _ in self.harmonics)
            powers = [np.ones_like(e)]
            for _ in range(kmax):
                powers.append(powers[-1] * e)
            mod = 1 + sum(amp * (powers[k] * np.exp(1j * ph)).real for k, amp, ph in self.harmonics)
            r = r / mod
        return r

    def mask(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """True inside the ellipse; ``xx, yy`` in mm, any shape."""
        if not self.harmonics or any(np.ndim(v) for v in (self.cx, self.cy, self.a, self.b)):
            return self.rho(xx, yy) <= 1.0
        # the harmonics only matter near the outline: evaluate them there
        plain = Ellipse(self.cx, self.cy, self.a, self.b, self.angle).rho(xx, yy)
        s = sum(abs(amp) for _, amp, _ in self.harmonics)
        out = plain <= 1 - s
        band = (plain > 1 - s) & (plain <= 1 + s)
        out[band] = self.rho(xx[band], yy[band]) <= 1.0
        return out

    def bbox(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) in mm enclosing the ellipse."""
        t = np.deg2rad(self.angle)
        grow = 1 + sum(abs(amp) for _, amp, _ in self.harmonics)
        hx = float(np.hypot(self.a * np.cos(t), self.b * np.sin(t))) * grow
        hy = float(np.hypot(self.a * np.sin(t), self.b * np.cos(t))) * grow
        return self.cx - hx, self.cx + hx, self.cy - hy, self.cy + hy

    def scaled(self, k: float, dk_mm: float = 0.0) -> Ellipse:
        """The same ellipse with semi-axes ``k * a + dk_mm`` and ``k * b + dk_mm``."""
        return Ellipse(self.cx, self.cy, np.maximum(self.a * k + dk_mm, 0.1), np.maximum(self.b * k + dk_mm, 0.1),
                       self.angle, self.harmonics)

    def depth(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        """Approximate depth (mm) below the outline along the ray from the centre (< 0 outside)."""
        rho = self.rho(xx, yy)
        return (1 - rho) * np.hypot(xx - self.cx, yy - self.cy) / np.maximum(rho, 1e-6)


# -- random fields in mm -----------------------------------------------------------------------

def _smoothstep(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _coverage(dist_mm: np.ndarray, half_width_mm, pixel_mm: float) -> np.ndarray:
    """Fraction of a pixel (side ``pixel_mm``) at distance ``dist_mm`` from the axis of a strip of
    half-width ``half_width_mm`` that the strip covers: the partial volume of thin structures."""
    lo = np.maximum(dist_mm - pixel_mm / 2, -half_width_mm)
    hi = np.minimum(dist_mm + pixel_mm / 2, half_width_mm)
    return np.clip((hi - lo) / pixel_mm, 0.0, 1.0)


def _bspline(t: float) -> np.ndarray:
    """Cubic B-spline weights of the four lattice planes around a point at fraction t of a cell."""
    return np.array([(1 - t) ** 3, 3 * t**3 - 6 * t**2 + 4, -3 * t**3 + 3 * t**2 + 3 * t + 1, t**3]) / 6


class _Fields:
    """Unit-variance Gaussian random fields of one patient, defined in mm.

    White noise lives on a periodic lattice of ``cells`` x ``cells`` (default 256) points spaced
    ``sigma / 2`` mm in x, y (a period of ``cells * sigma / 2`` mm: 128 sigma by default) and on
    planes every ``z_corr`` mm in z (default ``2 sigma``), each plane seeded by patient, field name
    and plane index. The planes are filtered exactly by FFT with a Gaussian of ``sigma`` mm (or a
    difference of Gaussians ``sigma, sigma2``: band-pass), blended with cubic B-spline weights in z
    (smooth along the series) and interpolated at the query points, so a value at a point in mm
    does not depend on the window or the pixel size asked for. Filtered planes are cached:
    neighbouring slices share them."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._spectra: dict = {}   # filtered planes (Fourier domain), shared by neighbouring slices
        self._kernels: dict = {}   # filter transfer functions
        self._planes: dict = {}    # fields (and gradients) in space at one z, shared by the tissues of a slice

    @staticmethod
    def _remember(cache: dict, key, value, size: int):
        if len(cache) >= size:
            cache.pop(next(iter(cache)))
        cache[key] = value
        return value

    def _kernel(self, h: float, cells: int, sigma_mm: float, sigma2_mm: float | None) -> np.ndarray:
        ck = (h, cells, sigma_mm, sigma2_mm)
        g = self._kernels.get(ck)
        if g is None:
            ky = 2 * np.pi * np.fft.fftfreq(cells, d=h)[:, None]
            kx = 2 * np.pi * np.fft.rfftfreq(cells, d=h)[None, :]
            g = np.exp(-0.5 * sigma_mm**2 * (kx**2 + ky**2))
            if sigma2_mm is not None:
                g = g - np.exp(-0.5 * sigma2_mm**2 * (kx**2 + ky**2))
            # unit variance for unit white noise: the mean of g^2 over the full (two-sided) spectrum
            weight = np.full(g.shape[1], 2.0)
            weight[0] = 1.0
            if cells % 2 == 0:
                weight[-1] = 1.0
            g = (g / np.sqrt((g**2 * weight).sum() / cells**2)).astype(np.float32)
            self._remember(self._kernels, ck, g, 64)
        return g

    def _spectrum(self, key: int, plane: int, h: float, cells: int, sigma_mm: float, sigma2_mm: float | None):
        ck = (key, plane, h, cells, sigma_mm, sigma2_mm)
        spec = self._spectra.get(ck)
        if spec is None:
            white = np.random.default_rng([self.seed, key, plane + _OFFSET]).standard_normal((cells, cells),
                                                                                              dtype=np.float32)
            spec = fft.rfft2(white) * self._kernel(h, cells, sigma_mm, sigma2_mm)
            self._remember(self._spectra, ck, spec, 96)
        return spec

    def _plane(self, key: int, z_mm: float, h: float, hz: float, cells: int, sigma_mm: float,
               sigma2_mm: float | None, grad: bool) -> list[np.ndarray]:
        """The field (and its gradient) on the lattice at ``z_mm``: B-spline blend of four planes."""
        ck = (key, z_mm, h, hz, cells, sigma_mm, sigma2_mm, grad)
        out = self._planes.get(ck)
        if out is None:
            u = z_mm / hz
            k0 = int(np.floor(u))
            w = _bspline(u - k0)
            spec = sum(np.complex64(w[i]) * self._spectrum(key, k0 - 1 + i, h, cells, sigma_mm, sigma2_mm)
                       for i in range(4))
            spec /= np.float32(np.sqrt((w**2).sum()))
            fields = [spec]
            if grad:
                ky = (2j * np.pi * np.fft.fftfreq(cells, d=h)[:, None]).astype(np.complex64)
                kx = (2j * np.pi * np.fft.rfftfreq(cells, d=h)[None, :]).astype(np.complex64)
                fields += [spec * kx, spec * ky]
            out = [fft.irfft2(f, s=(cells, cells)).astype(np.float32) for f in fields]
            self._remember(self._planes, ck, out, 32)
        return out

    def sample(self, name: str, x, y, z_mm: float, sigma_mm: float, sigma2_mm: float | None = None,
               z_corr_mm: float | None = None, grad: bool = False, cells: int = 256):
        """Field ``name`` at points ``(x, y)`` (mm) of the plane ``z_mm``; with ``grad`` also its
        gradient (1/mm) as ``(value, d/dx, d/dy)``."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if x.size == 0:
            zero = np.zeros(x.shape)
            return (zero, zero, zero) if grad else zero
        key = zlib.crc32(name.encode())
        h = sigma_mm / 2.0
        hz = z_corr_mm or 2.0 * (sigma2_mm or sigma_mm)
        coords = np.array([np.mod(y.ravel() / h, cells), np.mod(x.ravel() / h, cells)])
        out = [ndimage.map_coordinates(f, coords, order=1, mode="grid-wrap").reshape(x.shape)
               for f in self._plane(key, float(z_mm), h, hz, cells, sigma_mm, sigma2_mm, grad)]
        return tuple(out) if grad else out[0]

    def strands(self, name: str, x, y, z_mm: float, sigma_mm: float, half_width_mm, pixel_mm: float,
                sigma2_mm: float | None = None, z_corr_mm: float | None = None) -> np.ndarray:
        """Pixel coverage (0-1) of a network of strands of half-width ``half_width_mm``: the zero set
        of a field (its distance estimated as ``|f| / |grad f|``), a web of cells about 3 sigma wide."""
        v, gx, gy = self.sample(name, x, y, z_mm, sigma_mm, sigma2_mm, z_corr_mm, grad=True)
        dist = np.abs(v) / np.maximum(np.hypot(gx, gy), 1e-3)
        return _coverage(dist, half_width_mm, pixel_mm)


# -- tubes: vessel trees, airways, bowel -------------------------------------------------------

@dataclass
class _Tubes:
    """Straight 3-D segments ``p0 -> p1`` (mm, (n, 3): x, y, z) with radius ``r`` (mm, (n,))."""

    p0: np.ndarray
    p1: np.ndarray
    r: np.ndarray

    @staticmethod
    def polyline(points, r) -> _Tubes:
        pts = np.asarray(points, dtype=np.float64)
        rr = np.broadcast_to(np.asarray(r, dtype=np.float64), (len(pts) - 1,)).copy()
        return _Tubes(pts[:-1].copy(), pts[1:].copy(), rr)

    def cut(self, z_mm: float, extra_mm: float = 0.0) -> np.ndarray:
        """Indices of the segments whose capsule (radius + extra) reaches the plane ``z_mm``."""
        lo = np.minimum(self.p0[:, 2], self.p1[:, 2]) - self.r - extra_mm
        hi = np.maximum(self.p0[:, 2], self.p1[:, 2]) + self.r + extra_mm
        return np.nonzero((lo <= z_mm) & (hi >= z_mm))[0]


def _segment_distance(X, Y, z, p0, p1):
    """Distance (mm) of the points (X, Y, z) to the 3-D segment p0-p1, and the y (mm) of the nearest
    axis point."""
    d = p1 - p0
    qx, qy, qz = X - p0[0], Y - p0[1], z - p0[2]
    dd = float(d @ d)
    t = np.clip((qx * d[0] + qy * d[1] + qz * d[2]) / dd, 0.0, 1.0) if dd > 0 else np.zeros_like(X)
    ex, ey, ez = qx - t * d[0], qy - t * d[1], qz - t * d[2]
    return np.sqrt(ex * ex + ey * ey + ez * ez), p0[1] + t * d[1]


def _sample_inside(rng: np.random.Generator, inside, lo, hi, n: int) -> np.ndarray:
    """``n`` points drawn uniformly in the box ``lo..hi`` (mm, (3,)) where ``inside`` holds."""
    out = np.zeros((0, 3))
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    for _ in range(50):
        cand = rng.uniform(lo, hi, size=(4 * n, 3))
        out = np.concatenate([out, cand[inside(cand)]])
        if len(out) >= n:
            return out[:n]
    return out


def _grow_tree(rng: np.random.Generator, origin, targets: np.ndarray, r_terminal_mm: float,
               reach: float = 0.5, bend: float = 0.08) -> _Tubes:
    """A space-filling branching tree from ``origin`` (mm, (3,)) to every point of ``targets``
    (mm, (n, 3)), by recursive halving: a branch serving a set of targets runs ``reach`` of the way
    towards their centroid, then forks, the set split in two across its longest (principal) axis,
    until each terminal branch reaches its own target. The radius follows Murray's law with flow
    proportional to the number of targets served, ``r = r_terminal * n^(1/3)``, so calibres shrink
    from the hilum outwards; each branch is drawn as two segments with a slightly bent middle."""
    seg0, seg1, segr = [], [], []
    stack = [(np.asarray(origin, float), np.arange(len(targets)))]
    while stack:
        p, idx = stack.pop()
        pts = targets[idx]
        n = len(idx)
        c = pts.mean(axis=0)
        end = c if n == 1 else p + rng.uniform(0.7, 1.3) * reach * (c - p)
        length = float(np.linalg.norm(end - p))
        mid = (p + end) / 2 + rng.normal(0.0, bend * length, 3)
        r = r_terminal_mm * n ** (1 / 3)
        seg0 += [p, mid]
        seg1 += [mid, end]
        segr += [r, r]
        if n == 1:
            continue
        q = pts - c
        axis = np.linalg.eigh(q.T @ q)[1][:, -1]
        proj = q @ axis
        order = np.argsort(proj)
        cut = int(np.clip(round(n * rng.uniform(0.35, 0.65)), 1, n - 1))
        stack.append((end, idx[order[:cut]]))
        stack.append((end, idx[order[cut:]]))
    return _Tubes(np.array(seg0).reshape(-1, 3), np.array(seg1).reshape(-1, 3), np.array(segr))


# -- the canvas: one slice being painted -------------------------------------------------------

class _Canvas:
    """The slice being painted: HU and label arrays, pixel centres in mm, and painting in windows
    (only the pixels near a shape are touched, which keeps 512 px slices fast)."""

    def __init__(self, size: int, fov_mm: float, z_mm: float, fields: _Fields):
        self.size = size
        self.pixel_mm = fov_mm / size
        self.coords = (np.arange(size) - (size - 1) / 2) * self.pixel_mm
        self.hu = np.full((size, size), TISSUE_HU["air"], dtype=np.float32)
        self.labels = np.full((size, size), LABELS["air"], dtype=np.uint8)
        self.z = float(z_mm)
        self.fields = fields

    def window(self, x0: float, x1: float, y0: float, y1: float):
        half = (self.size - 1) / 2
        c0 = max(0, int(np.ceil(x0 / self.pixel_mm + half)))
        c1 = min(self.size, int(np.floor(x1 / self.pixel_mm + half)) + 1)
        r0 = max(0, int(np.ceil(y0 / self.pixel_mm + half)))
        r1 = min(self.size, int(np.floor(y1 / self.pixel_mm + half)) + 1)
        if c1 <= c0 or r1 <= r0:
            return None
        return slice(r0, r1), slice(c0, c1)

    def xy(self, win):
        return np.meshgrid(self.coords[win[1]], self.coords[win[0]])

    def region(self, shape: Ellipse):
        """(window, X, Y, mask) of an ellipse, or None when it misses the image."""
        win = self.window(*shape.bbox())
        if win is None:
            return None
        X, Y = self.xy(win)
        m = shape.mask(X, Y)
        return (win, X, Y, m) if m.any() else None

    def put(self, win, m, tissue: str, value=None) -> None:
        """Label ``m`` (mask within ``win``) as ``tissue`` with HU ``value`` (nominal when None;
        a scalar or one value per masked pixel)."""
        self.labels[win][m] = LABELS[tissue]
        self.hu[win][m] = TISSUE_HU[tissue] if value is None else value

    def blend(self, win, m, cov, tissue: str | None, value) -> None:
        """Partial volume: HU moves towards ``value`` by the coverage ``cov`` (per masked pixel);
        the label changes where ``cov >= 0.5``."""
        hu = self.hu[win]
        old = hu[m]
        hu[m] = old + cov * (value - old)
        if tissue is not None:
            lab = self.labels[win]
            sub = lab[m]
            sub[cov >= 0.5] = LABELS[tissue]
            lab[m] = sub

    def ellipse(self, shape: Ellipse, tissue: str, value=None, where=None):
        """Paint an ellipse; ``value`` may be a function ``(x_mm, y_mm) -> HU`` of the masked pixels;
        ``where``: a function ``(window) -> bool mask`` restricting the paint. Returns the region."""
        reg = self.region(shape)
        if reg is None:
            return None
        win, X, Y, m = reg
        if where is not None:
            m = m & where(win)
        if callable(value):
            value = value(X[m], Y[m])
        self.put(win, m, tissue, value)
        return win, X, Y, m

    def tubes(self, tubes: _Tubes, tissue: str | None, value: float, grow_mm: float = 0.0, only=None) -> None:
        """Paint tube segments (radius + ``grow_mm``) with partial volume; ``only``: labels that
        may be painted over (None: any)."""
        allowed = None if only is None else np.array([LABELS[t] for t in only], dtype=np.uint8)
        idx = tubes.cut(self.z, grow_mm)
        if len(idx) == 0:
            return
        p0, p1, r = tubes.p0[idx], tubes.p1[idx], tubes.r[idx] + grow_mm
        d = p1 - p0
        # the part of each segment whose capsule reaches the plane, and its pixel footprint
        dz = np.where(np.abs(d[:, 2]) < 1e-9, 1e-9, d[:, 2])
        ta = np.clip(np.minimum((self.z - r - p0[:, 2]) / dz, (self.z + r - p0[:, 2]) / dz), 0, 1)
        tb = np.clip(np.maximum((self.z - r - p0[:, 2]) / dz, (self.z + r - p0[:, 2]) / dz), 0, 1)
        flat = np.abs(d[:, 2]) < 1e-9
        ta[flat], tb[flat] = 0.0, 1.0
        a, b = p0 + ta[:, None] * d, p0 + tb[:, None] * d
        half = (self.size - 1) / 2
        lo = (np.minimum(a[:, :2], b[:, :2]) - r[:, None]) / self.pixel_mm + half  # (col, row) in px
        hi = (np.maximum(a[:, :2], b[:, :2]) + r[:, None]) / self.pixel_mm + half
        start = np.floor(lo).astype(int)
        extent = (np.ceil(hi).astype(int) - start + 1).max(axis=1)
        cov_img = np.zeros(self.size * self.size, np.float32)
        k = 4
        while k // 2 < self.size:  # segments grouped by footprint size (px)
            k *= 2
            sel = np.nonzero((extent <= k // 2) & ((extent > k // 4) | (k == 8)))[0]
            k_px = k // 2
            if len(sel) == 0:
                continue
            for chunk in np.array_split(sel, max(1, len(sel) * k_px * k_px // 400_000)):
                off = np.arange(k_px)
                cols = start[chunk, 0][:, None, None] + off[None, None, :]
                rows = start[chunk, 1][:, None, None] + off[None, :, None]
                X = (cols - half) * self.pixel_mm
                Y = (rows - half) * self.pixel_mm
                q0 = p0[chunk][:, :, None, None]
                dd = d[chunk][:, :, None, None]
                qx, qy, qz = X - q0[:, 0], Y - q0[:, 1], self.z - q0[:, 2]
                den = np.maximum((d[chunk] ** 2).sum(axis=1), 1e-12)[:, None, None]
                t = np.clip((qx * dd[:, 0] + qy * dd[:, 1] + qz * dd[:, 2]) / den, 0, 1)
                dist = np.sqrt((qx - t * dd[:, 0]) ** 2 + (qy - t * dd[:, 1]) ** 2 + (qz - t * dd[:, 2]) ** 2)
                cov = _coverage(dist, r[chunk][:, None, None], self.pixel_mm)
                ok = (cov > 0) & (rows >= 0) & (rows < self.size) & (cols >= 0) & (cols < self.size)
                np.maximum.at(cov_img, (rows * self.size + cols)[ok], cov[ok].astype(np.float32))
        cov_img = cov_img.reshape(self.size, self.size)
        m = cov_img > 0
        if allowed is not None:
            m &= np.isin(self.labels, allowed)
        if m.any():
            win = (slice(0, self.size), slice(0, self.size))
            self.blend(win, m, cov_img[m], tissue, value)

    def noise(self, name: str, x, y, sigma_mm: float, **kw):
        return self.fields.sample(name, x, y, self.z, sigma_mm, **kw)


class Phantom:
    """One simulated patient; ``slice(z, size)`` paints an axial slice.

    Parameters
    ----------
    region : str
        ``"head"``, ``"chest"`` or ``"abdomen"``.
    seed : int
        The patient: body and organ sizes and positions, vessel and airway trees, bowel loops,
        textures and the low-contrast lesions all follow from it; the same seed gives the same
        slices bit for bit.

    Raises
    ------
    ValueError
        For an unknown region.

    Example
    -------
    >>> hu, labels, pixel_mm = Phantom("abdomen", 3).slice(0.4, 256)
    >>> hu.shape, labels.dtype.name, round(pixel_mm, 3)
    ((256, 256), 'uint8', 1.484)
    """

    def __init__(self, region: str, seed: int):
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}; choose one of {REGIONS}")
        self.region = region
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        self.scale = rng.uniform(0.88, 1.08, size=2)  # body width / height factors
        self.jitter = rng.normal(0.0, 4.0, size=(16, 2))  # organ position jitter (mm)
        self.size_jitter = rng.uniform(0.85, 1.15, size=16)
        n_les = int(rng.integers(2, 5))
        # lesions: position in organ-relative units, radius mm, HU contrast, z-centre, z half-extent
        self.lesions = [
            dict(u=rng.uniform(-0.6, 0.6), v=rng.uniform(-0.6, 0.6), r=rng.uniform(3.0, 8.0),
                 contrast=rng.choice([-1, 1]) * rng.uniform(8.0, 25.0),
                 z=rng.uniform(0.0, 1.0), dz=rng.uniform(0.15, 0.5))
            for _ in range(n_les)
        ]
        self.vessel_seed = int(rng.integers(2**31))
        # everything below is new anatomy, drawn from its own stream so the draws above stay as they were
        extra = np.random.default_rng([self.seed, 26])
        self.fields = _Fields(int(extra.integers(2**31)))
        self.z_extent = Z_EXTENT_MM[region]
        self.spine_phase = float(extra.uniform(0.0, 1.0))
        self.cortical_hu = float(extra.uniform(1050.0, 1300.0))
        self.marrow_hu = float(extra.uniform(-10.0, 60.0))   # red (young) to yellow (older) marrow
        self.fat_mm = float(extra.uniform(-4.0, 6.0))        # subcutaneous fat thicker or thinner
        self.rib_jitter = extra.normal(0.0, 2.0, 16)         # rib heights (mm)
        # body outline: flatter at the back, a little irregular
        self.body_harmonics = ((1, 0.02, np.pi / 2), (2, float(extra.normal(0, 0.015)), float(extra.uniform(0, 6.3))),
                               (3, float(extra.normal(0, 0.012)), float(extra.uniform(0, 6.3))),
                               (4, -0.02, float(extra.uniform(-0.3, 0.3))))
        self._anatomy_seed = int(extra.integers(2**31))
        self._trees: dict | None = None

    # -- public ------------------------------------------------------------------------------
    def slice(self, z: float, size: int) -> tuple[np.ndarray, np.ndarray, float]:
        """One axial slice.

        Parameters
        ----------
        z : float
            Position in the scanned range, 0 to 1 (:data:`Z_EXTENT_MM` of the region long).
        size : int
            Pixels per side; the field of view is ``FOV_MM[region]`` whatever the size.

        Returns
        -------
        image_hu : (size, size) float32
            The slice in HU.
        labels : (size, size) uint8
            Tissue per pixel, values of :data:`LABELS`.
        pixel_mm : float
            Pixel side in mm.
        """
        fov = FOV_MM[self.region]
        cv = _Canvas(int(size), fov, float(z) * self.z_extent, self.fields)
        if self._trees is None:
            self._trees = self._build_trees()
        getattr(self, f"_{self.region}")(cv, float(z))
        return cv.hu, cv.labels, cv.pixel_mm

    # -- shared pieces -----------------------------------------------------------------------
    def _j(self, i: int) -> tuple[float, float]:
        return float(self.jitter[i, 0]), float(self.jitter[i, 1])

    def _paint_lesions(self, cv: _Canvas, host: Ellipse, z: float, base_hu: float) -> None:
        """The patient's low-contrast lesions (homogeneous spheres) in ``host``, organ-relative."""
        for les in self.lesions:
            if abs(z - les["z"]) > les["dz"]:
                continue
            # spherical lesion: radius shrinks away from its z-centre
            r = les["r"] * np.sqrt(max(0.0, 1 - ((z - les["z"]) / les["dz"]) ** 2))
            if r < 1.5:
                continue
            cx = host.cx + les["u"] * host.a * 0.7
            cy = host.cy + les["v"] * host.b * 0.7
            cv.ellipse(Ellipse(cx, cy, r, r), "lesion", base_hu + les["contrast"])

    def _textured(self, cv: _Canvas, base: float, parts) -> Callable:
        """A value function ``(x_mm, y_mm) -> HU``: ``base`` plus the sum of ``amp * field(sigma)`` for
        (amp HU, sigma mm) in ``parts``. Tissues share one field per sigma (they lie apart)."""
        def value(x, y):
            out = np.full(x.shape, base, dtype=np.float64)
            for amp, sigma in parts:
                out += amp * cv.noise(f"texture{sigma:g}", x, y, sigma)
            return out
        return value

    def _fat(self, cv: _Canvas, win, X, Y, m, strand_sigma: float, density: float,
             vessels: bool = False, arc=None) -> None:
        """Fat with thin soft-tissue septa (a faded web of 0.6 mm strands, cells ~3 sigma wide) and,
        in visceral fat, small vessels (blobs of 1-3 mm). ``arc``: (u, depth) coordinates (mm along
        and below the skin) of the masked pixels: the septa then run mostly across the fat layer."""
        x, y = X[m], Y[m]
        p = cv.pixel_mm
        hu = -100.0 + 4.0 * cv.noise("texture3", x, y, 3.0)
        if arc is None:
            cov = cv.fields.strands(f"septa{strand_sigma:g}", x, y, cv.z, strand_sigma, 0.3, p, z_corr_mm=8.0)
        else:
            u, depth = arc
            f, fu, fv = cv.fields.sample(f"septa{strand_sigma:g}", u, 0.3 * depth, cv.z, strand_sigma, z_corr_mm=8.0,
                                         grad=True)
            cov = _coverage(np.abs(f) / np.maximum(np.hypot(fu, 0.3 * fv), 1e-3), 0.3, p)
        fade = np.clip(density + 0.8 * cv.noise("texture10", x, y, 10.0), 0.0, 1.0)
        cov = cov * fade
        hu = hu + cov * (30.0 - hu)
        lab = np.full(x.shape, LABELS["fat"], np.uint8)
        lab[cov >= 0.5] = LABELS["septum"]
        if vessels:
            blob = cv.noise("fat_vessels", x, y, 1.2, z_corr_mm=10.0)
            c = np.clip((blob - 2.3) * 1.5, 0.0, 1.0)
            hu = hu + c * (40.0 - hu)
            lab[c >= 0.5] = LABELS["vessel"]
        cv.hu[win][m] = hu
        cv.labels[win][m] = lab

    def _trabecular(self, cv: _Canvas, x, y, strut_hu: float = 600.0) -> np.ndarray:
        """Cancellous bone: a web of trabeculae (about 0.9 mm thick, cells 2-4 mm) in marrow."""
        cov = cv.fields.strands("trabeculae", x, y, cv.z, 0.7, 0.45, cv.pixel_mm, sigma2_mm=1.4, z_corr_mm=2.0)
        marrow = self.marrow_hu + 12.0 * cv.noise("marrow", x, y, 2.0)
        return marrow + cov * (strut_hu - marrow)

    def _bone(self, cv: _Canvas, shape: Ellipse, cortex_mm: float, cortex_hu: float | None = None) -> None:
        """A bone: cortical shell ``cortex_mm`` thick over trabecular bone (cortex only if thin)."""
        hu = self.cortical_hu if cortex_hu is None else cortex_hu
        cv.ellipse(shape, "bone", self._textured(cv, hu, [(40.0, 2.0)]))
        core = shape.scaled(1.0, -cortex_mm)
        if min(np.min(core.a), np.min(core.b)) > 0.8:
            cv.ellipse(core, "cancellous", lambda x, y: self._trabecular(cv, x, y))

    def _body(self, cv: _Canvas, a: float, b: float, cy: float = 0.0) -> tuple[Ellipse, Ellipse]:
        """Skin; subcutaneous fat with septa across it and a superficial fascia; the muscle wall
        (laterally three layers split by thin fat planes, a linea alba in front); the inner
        (visceral / extrapleural) fat. Returns (body outline, inner fat outline)."""
        body, muscle, inner = self._wall(a, b, cy)
        cv.ellipse(body, "skin", self._textured(cv, 30.0, [(4.0, 1.0)]))
        t = 14.0 + self.fat_mm
        reg = cv.region(body.scaled(1.0, -1.8))
        arc_len = (body.a + body.b) / 2
        if reg is not None:
            win, X, Y, m = reg
            m = m & ~muscle.mask(X, Y)
            x, y = X[m], Y[m]
            u, depth = np.arctan2(x, -(y - cy)) * arc_len, body.depth(x, y)
            self._fat(cv, win, X, Y, m, 2.5, 0.35, arc=(u, depth))
            fascia = 1.8 + 0.45 * (t - 1.8) + 1.5 * cv.noise("fascia", u, np.zeros_like(u), 15.0)
            cov = _coverage(np.abs(depth - fascia), 0.35, cv.pixel_mm)
            cov *= np.clip(0.6 + 0.8 * cv.noise("fascia_f", u, np.zeros_like(u), 20.0), 0, 1)
            cv.blend(win, m, cov, "septum", 30.0)
        reg = cv.region(muscle)
        if reg is not None:
            win, X, Y, m = reg
            m = m & ~inner.mask(X, Y)
            x, y = X[m], Y[m]
            hu = 45.0 + 4.0 * cv.noise("texture1.2", x, y, 1.2) + 2.0 * cv.noise("texture6", x, y, 6.0)
            phi = np.abs(np.arctan2(x, -(y - cy)))  # 0 in front, pi at the back
            depth = muscle.depth(x, y)
            lateral = _smoothstep(0.8, 1.1, phi) * (1 - _smoothstep(2.0, 2.3, phi))
            planes = np.zeros_like(hu)
            for frac in (0.33, 0.66):
                planes = np.maximum(planes, _coverage(np.abs(depth - 10.0 * frac), 0.4, cv.pixel_mm) * lateral)
            planes = np.maximum(planes, _coverage(np.abs(x), 1.5, cv.pixel_mm) * (phi < 0.5))  # linea alba
            hu = hu + planes * (-90.0 - hu)
            lab = np.where(planes >= 0.5, LABELS["fat"], LABELS["muscle"]).astype(np.uint8)
            cv.put(win, m, "muscle", hu)
            cv.labels[win][m] = lab
        reg = cv.region(inner)
        if reg is not None:
            self._fat(cv, *reg, 4.5, 0.15, vessels=True)
        return body, inner

    def _vertebra(self, cv: _Canvas, cy: float, r: float, period_mm: float, disc_mm: float) -> None:
        """A vertebra (cortical shell over a trabecular body; pedicles, laminae, spinous and
        transverse processes around the spinal canal) or, between vertebrae, an intervertebral disc;
        periodic in z."""
        u = (cv.z + self.spine_phase * period_mm) % period_mm  # 0..disc: disc, then the vertebra
        h = (u - disc_mm) / (period_mm - disc_mm)  # 0 at the upper endplate, 1 at the lower one
        body = Ellipse(0.0, cy, r, r * 0.82, 0.0, ((2, -0.04, 0.0), (1, -0.03, -np.pi / 2)))
        if u < disc_mm:  # disc: annulus brighter than the nucleus
            cv.ellipse(body.scaled(1.03), "disc", self._textured(cv, 95.0, [(5.0, 1.5)]))
            cv.ellipse(body.scaled(0.55), "disc", self._textured(cv, 75.0, [(4.0, 1.5)]))
        elif u < disc_mm + 1.2 or u > period_mm - 1.2:  # endplate
            cv.ellipse(body, "bone", self._textured(cv, 700.0, [(80.0, 1.0)]))
        else:
            self._bone(cv, body, 1.3)
        c = cy + r * 0.82 + 8.0  # canal centre
        parts = []  # (shape, cortex mm) of the neural arch: cortices first, then all cores (one bone)
        if 0.1 < h < 0.6:  # pedicles
            parts += [(Ellipse(side * 10.5, c - 3.0, 4.0, 8.0, side * -12), 1.2) for side in (-1, 1)]
        if 0.35 < h < 1.0 or u < disc_mm:  # laminae and the spinous process
            parts += [(Ellipse(side * 8.0, c + 9.0, 3.2, 10.0, side * 50), 1.0) for side in (-1, 1)]
            parts.append((Ellipse(0.0, c + 20.0, 3.8, 10.0), 1.2))
        if 0.25 < h < 0.65:  # transverse processes
            parts += [(Ellipse(side * 24.0, c - 1.0, 13.0, 4.5, side * 18), 1.3) for side in (-1, 1)]
        cortex = self._textured(cv, self.cortical_hu - 150, [(40.0, 2.0)])
        for shape, _ in parts:
            cv.ellipse(shape, "bone", cortex)
        for shape, t in parts:
            cv.ellipse(shape.scaled(1.0, -t), "cancellous", lambda x, y: self._trabecular(cv, x, y))
        cv.ellipse(Ellipse(0.0, c, 9.0, 7.5), "csf", 12.0)  # canal: cord / cauda equina in CSF

    def _paraspinal(self, cv: _Canvas, cy: float, r: float) -> None:
        for side in (-1, 1):
            cv.ellipse(Ellipse(side * 28.0, cy + r + 14, 20, 16, side * 10), "muscle",
                       self._textured(cv, 45.0, [(4.0, 1.2), (2.0, 6.0)]))

    def _ribs(self, cv: _Canvas, ring: Ellipse, z_first: float, n: int, spacing: float,
              max_angle_deg: float) -> None:
        """Ribs: each runs from the spine around the body along ``ring`` and descends caudally,
        slowly at the back and steeply at the side and front (by ``20 phi + 12 phi^2`` mm at the
        angle phi from the spine); a slice cuts it where its height matches, as a lens-shaped oval
        (10 mm high, 6 mm thick rib: cortex over trabecular bone), long near the spine, short at
        the side."""
        x0, x1, y0, y1 = ring.bbox()
        win = cv.window(x0 - 6, x1 + 6, y0 - 6, y1 + 6)
        if win is None:
            return
        X, Y = cv.xy(win)
        rho = ring.rho(X, Y)
        band = np.abs(rho - 1) < 0.08
        if not band.any():
            return
        x, y = X[band], Y[band]
        rr = rho[band]
        radius = np.hypot(x - ring.cx, y - ring.cy) / np.maximum(rr, 1e-6)
        radial = (rr - 1) * radius  # mm outside the ring
        ang = np.abs(np.arctan2(x - ring.cx, y - ring.cy))  # 0 at the spine, pi at the sternum
        cortex = np.zeros(x.shape, bool)
        marrow = np.zeros(x.shape, bool)
        side = np.sign(x - ring.cx)
        for i in range(n):
            zi = z_first + i * spacing + self.rib_jitter[i % len(self.rib_jitter)] + 20.0 * ang + 12.0 * ang**2
            dz = cv.z - zi - 2.0 * side * self.rib_jitter[-1]
            ok = ang < np.deg2rad(max_angle_deg)
            e = (radial / 3.2) ** 2 + (dz / 5.5) ** 2
            cortex |= ok & (e <= 1)
            marrow |= ok & ((radial / 1.9) ** 2 + (dz / 4.2) ** 2 <= 1)
        if cortex.any():
            m = np.zeros(X.shape, bool)
            m[band] = cortex
            cv.put(win, m, "bone", self._textured(cv, self.cortical_hu - 100, [(40.0, 2.0)])(X[m], Y[m]))
            m = np.zeros(X.shape, bool)
            m[band] = marrow
            cv.put(win, m, "cancellous", self._trabecular(cv, X[m], Y[m]))

    # -- 3-D trees and tubes (built once per patient) -------------------------------------------
    def _build_trees(self) -> dict:
        rng = np.random.default_rng([self._anatomy_seed, 1])
        if self.region == "chest":
            return self._chest_trees(rng)
        if self.region == "abdomen":
            return self._abdomen_tubes(rng)
        return {}

    def _wall(self, a: float, b: float, cy: float) -> tuple[Ellipse, Ellipse, Ellipse]:
        """(body outline, outer edge of the muscle wall, inner edge of the wall) in mm."""
        sw, sh = self.scale
        body = Ellipse(0.0, cy, a * sw, b * sh, 0.0, self.body_harmonics)
        muscle = body.scaled(1.0, -(14.0 + self.fat_mm))
        return body, muscle, muscle.scaled(1.0, -10.0)

    def _lung_shape(self, side: int, z_mm) -> Ellipse:
        """Right (side -1, image left) or left lung outline at z (mm; scalar or array): small at the
        apex (z = 0), largest from the hila down; clipped to the chest cavity where painted."""
        k = 0 if side < 0 else 1
        dx, dy = self._j(k)
        s = 1 + 0.5 * (self.size_jitter[k] - 1)
        zz = np.asarray(z_mm, float) / self.z_extent
        ls = 0.42 + 0.6 * np.sqrt(_smoothstep(-0.05, 0.55, zz))
        return Ellipse(side * (70 - 20 * (1 - ls)) + dx, -2 + dy + 25 * (1 - ls), 68 * s * ls, 92 * s * ls,
                       side * -6.0)

    def _chest_trees(self, rng) -> dict:
        Z = self.z_extent
        cavity = self._wall(165, 118, 0.0)[2].scaled(1.0, -4.0)
        trees = {}
        for side in (-1, 1):
            def inside(p, side=side):
                lung = self._lung_shape(side, p[:, 2]).scaled(1.0, -4.0)
                ok = lung.mask(p[:, 0], p[:, 1]) & cavity.mask(p[:, 0], p[:, 1]) & (side * p[:, 0] > 12)
                return ok & (p[:, 2] > 8) & (p[:, 2] < 1.02 * Z)
            mid = self._lung_shape(side, 0.43 * Z)
            hilum = np.array([side * 40.0 + self._j(side + 1)[0], mid.cy + 12, 0.43 * Z])
            vhil = hilum + np.array([side * 4.0, 8.0, 0.1 * Z])
            # targets spread through the lung volume: arteries and veins each reach ~4000 of them
            lo, hi = (side * 80 - 80, -100, 0.0), (side * 80 + 80, 100, Z)
            arteries = _grow_tree(rng, hilum, _sample_inside(rng, inside, lo, hi, 4500), 0.5)
            veins = _grow_tree(rng, vhil, _sample_inside(rng, inside, lo, hi, 4000), 0.5)
            # bronchi run beside the arteries down to ~1.5 mm: the bronchovascular bundles
            big = arteries.r >= 2.0
            d = arteries.p1[big] - arteries.p0[big]
            off = np.cross(d, np.array([0.0, 0.0, 1.0]))
            flat = np.linalg.norm(off, axis=1) < 1e-6 * np.linalg.norm(d, axis=1)
            off[flat] = np.array([1.0, 0.0, 0.0])
            off /= np.linalg.norm(off, axis=1, keepdims=True)
            lumen = 0.85 * arteries.r[big]
            shift = (arteries.r[big] + lumen * 1.2 + 0.9)[:, None] * off
            bronchi = _Tubes(arteries.p0[big] + shift, arteries.p1[big] + shift, lumen)
            trees[side] = dict(arteries=arteries, veins=veins, bronchi=bronchi, hilum=hilum)
        return trees

    def _abdomen_tubes(self, rng) -> dict:
        Z = self.z_extent
        s = self.size_jitter
        out = {}
        # liver: portal vein from the porta hepatis, hepatic veins converging on the IVC at the dome
        def liver_inside(p):
            z = p[:, 2] / Z
            ok = self._liver_shape(z).scaled(1.0, -3.0).mask(p[:, 0], p[:, 1])
            ok |= self._left_lobe(z).scaled(1.0, -3.0).mask(p[:, 0], p[:, 1]) & (z < 0.6)
            return ok & (p[:, 2] > 0)
        dx, dy = self._j(0)
        porta = np.array([-30.0 + dx, 12.0 + dy, 0.45 * Z])
        hv_root = np.array([-22.0, 22.0, 0.04 * Z])
        lo, hi = (-140, -80, 0.0), (30, 70, Z)
        out["portal"] = _grow_tree(rng, porta, _sample_inside(rng, liver_inside, lo, hi, 500), 0.6)
        out["hepatic"] = _grow_tree(rng, hv_root, _sample_inside(rng, liver_inside, lo, hi, 400), 0.6)
        # colon: ascending (patient's right = image left), transverse, descending, as one tube
        cr = float(rng.uniform(16.0, 22.0))
        colon = [(-92, -5, 1.05 * Z), (-95, -12, 0.75 * Z), (-80, -45, 0.58 * Z), (-30, -78, 0.52 * Z),
                 (30, -78, 0.50 * Z), (85, -45, 0.40 * Z), (100, -5, 0.45 * Z), (98, 0, 0.75 * Z),
                 (95, -10, 1.05 * Z)]
        colon = [(x * self.scale[0] + rng.normal(0, 4), y * self.scale[1] + rng.normal(0, 4), z) for x, y, z in colon]
        out["colon"] = [dict(tubes=_Tubes.polyline(colon, cr), wall=2.5, kind="colon",
                             gas=float(rng.uniform(0.15, 0.5)))]
        # small bowel: random smooth loops in the anterior central abdomen, lower two thirds
        loops = []
        for _ in range(int(rng.integers(30, 40))):
            p = np.array([rng.uniform(-70, 70) * self.scale[0], rng.uniform(-85, 0) * self.scale[1],
                          rng.uniform(0.4, 1.0) * Z])
            d = rng.normal(size=3)
            pts = [p.copy()]
            for _step in range(20):
                d = d / np.linalg.norm(d) + rng.normal(0, 0.45, 3)
                d /= np.linalg.norm(d)
                p = p + 9.0 * d
                for ax, lo, hi in ((0, -80 * self.scale[0], 80 * self.scale[0]),
                                   (1, -92 * self.scale[1], 15.0), (2, 0.35 * Z, 1.1 * Z)):
                    if not lo <= p[ax] <= hi:
                        d[ax] = -d[ax]
                        p[ax] = np.clip(p[ax], lo, hi)
                pts.append(p.copy())
            loops.append(dict(tubes=_Tubes.polyline(pts, rng.uniform(9.5, 14.0)), wall=2.0, kind="small",
                              gas=float(rng.uniform(0.1, 0.35)) if rng.random() < 0.35 else 0.0))
        out["small_bowel"] = loops
        out["stomach"] = dict(tubes=_Tubes.polyline([(62 + s[5] * 4, -22, -0.1 * Z), (52, -42, 0.22 * Z),
                                                     (30, -55, 0.42 * Z)], 30.0 * s[5]),
                              wall=4.0, kind="stomach", gas=float(rng.uniform(0.15, 0.35)))
        return out

    # -- bowel ------------------------------------------------------------------------------
    def _bowel(self, cv: _Canvas, tube: dict, cavity: Ellipse) -> None:
        """A bowel tube inside the peritoneal ``cavity``: wall, content (fluid, chyme or mottled faeces
        with bubbles) and gas on the non-dependent (anterior, image-up) side above a horizontal
        air-fluid level."""
        t: _Tubes = tube["tubes"]
        idx = t.cut(cv.z)
        if len(idx) == 0:
            return
        r = float(t.r[idx].max())
        xs = np.concatenate([t.p0[idx, 0], t.p1[idx, 0]])
        ys = np.concatenate([t.p0[idx, 1], t.p1[idx, 1]])
        win = cv.window(xs.min() - r - 1, xs.max() + r + 1, ys.min() - r - 1, ys.max() + r + 1)
        if win is None:
            return
        X, Y = cv.xy(win)
        dist = np.full(X.shape, np.inf)
        axis_y = np.zeros(X.shape)
        rad = np.zeros(X.shape)
        for i in idx:
            d, ay = _segment_distance(X, Y, cv.z, t.p0[i], t.p1[i])
            closer = d < dist
            dist[closer], axis_y[closer], rad[closer] = d[closer], ay[closer], t.r[i]
        outer = (dist <= rad) & cavity.mask(X, Y)
        if not outer.any():
            return
        # the cross-section radius in this plane: sqrt(r^2 - dz^2) at the nearest axis point
        wall = tube["wall"]
        if tube["kind"] == "stomach":  # rugae: a thicker, folded wall
            wall = wall + 2.0 * np.clip(cv.noise("rugae", X, Y, 2.5), 0, None)
        lumen = dist <= rad - wall
        wall_m = outer & ~lumen
        cv.put(win, wall_m, "bowel_wall", self._textured(cv, 40.0, [(4.0, 1.0)])(X[wall_m], Y[wall_m]))
        if not lumen.any():
            return
        x, y = X[lumen], Y[lumen]
        if tube["kind"] == "colon":  # faeces: mottled soft tissue/fat with gas bubbles
            hu = 0.0 + 35.0 * cv.noise("faeces", x, y, 1.3)
            bub = np.clip((cv.noise("bubbles", x, y, 0.9) - 1.4) * 2.0, 0, 1)
            hu = hu + bub * (-950.0 - hu)
        elif tube["kind"] == "small":
            hu = 15.0 + 6.0 * cv.noise("chyme", x, y, 2.0) + 8.0 * cv.noise("mottle", x, y, 0.8)
        else:
            hu = 12.0 + 4.0 * cv.noise("fluid", x, y, 3.0)
        lab = np.full(x.shape, LABELS["bowel_content"], np.uint8)
        # gas above a horizontal level (y down: anterior is small y); the lumen radius here is sqrt(r^2 - dz^2)
        if tube["gas"] > 0:
            lum_r = rad[lumen] - wall if np.ndim(wall) == 0 else rad[lumen] - wall[lumen]
            gas = (y - axis_y[lumen]) < -lum_r + 2 * lum_r * tube["gas"]
            hu[gas] = -1000.0
        lab[hu < -500] = LABELS["bowel_gas"]
        cv.hu[win][lumen] = hu
        cv.labels[win][lumen] = lab

    # -- regions -----------------------------------------------------------------------------
    def _liver_shape(self, z) -> Ellipse:
        """The right lobe (the lesions' host): rounded laterally, flattened towards the kidney."""
        s = self.size_jitter
        dx, dy = self._j(0)
        tip = 1.0 - 0.8 * _smoothstep(0.7, 1.02, z)  # the inferior tip of the right lobe
        return Ellipse(-55 + dx - 20 * (1 - tip), -5 + dy + 10 * (1 - tip), 68 * s[0] * (1.1 - 0.3 * z) * np.sqrt(tip),
                       55 * s[1] * tip, 20, ((2, 0.06, 0.3), (3, 0.04, 2.0)))

    def _left_lobe(self, z) -> Ellipse | None:
        """The left lobe: a wedge reaching across the midline in front of the stomach (upper slices)."""
        q = 1.0 - _smoothstep(0.35, 0.65, z)
        if np.ndim(q) == 0 and q < 0.05:
            return None
        r = self._liver_shape(z)
        return Ellipse(r.cx + 0.8 * r.a, r.cy - 0.45 * r.b, 0.75 * r.a * np.maximum(q, 0.05), 0.32 * r.b, -18,
                       ((3, 0.08, 0.0),))

    def _abdomen(self, cv: _Canvas, z: float) -> None:
        body, inner = self._body(cv, 160, 115, 5)
        s = self.size_jitter
        tubes = self._trees
        # hollow organs first: solid organs are painted over them
        if z < 0.5:
            self._bowel(cv, tubes["stomach"], inner)
        for loop in tubes["colon"] + tubes["small_bowel"]:
            self._bowel(cv, loop, inner)
        self._paraspinal(cv, 60.0, 18.0)
        psoas = _smoothstep(0.35, 0.9, z)
        if psoas > 0.05:
            for side in (-1, 1):
                cv.ellipse(Ellipse(side * (18 + 14 * psoas), 52.0, 6 + 9 * psoas, 8 + 8 * psoas, side * 25),
                           "muscle", self._textured(cv, 45.0, [(4.0, 1.2), (2.0, 6.0)]))
        # pancreas (lobulated, fat clefts) with the splenic vein behind it
        pz = np.sqrt(max(0.0, 1 - ((z - 0.45) / 0.13) ** 2))
        if pz > 0:
            pan = _Tubes.polyline([(-28, 14, 0), (-5, 6, 0), (30, 2, 0), (60, 6, 0), (82, 16, 0)], 10.0 * pz)
            pan.p0[:, 2] = pan.p1[:, 2] = cv.z
            reg = cv.window(-45, 100, -15, 35)
            if reg is not None:
                X, Y = cv.xy(reg)
                dist = np.min([_segment_distance(X, Y, cv.z, pan.p0[i], pan.p1[i])[0] for i in range(len(pan.r))],
                              axis=0)
                m = dist <= pan.r[0] * (1 + 0.15 * cv.noise("pancreas_edge", X, Y, 3.0))
                if m.any():
                    x, y = X[m], Y[m]
                    hu = 42.0 + 5.0 * cv.noise("pancreas", x, y, 1.5)
                    cleft = np.clip((cv.noise("pancreas_lob", x, y, 1.2) - 1.5) * 1.2, 0, 1)
                    hu = hu + cleft * (-90.0 - hu)
                    cv.put(reg, m, "pancreas", hu)
                    sv = _Tubes.polyline([(-15, 18, cv.z), (30, 13, cv.z), (70, 16, cv.z)], 3.5)
                    cv.tubes(sv, "vessel", 42.0)
        liver = self._liver_shape(z)
        liver_hu = self._textured(cv, 60.0, [(3.5, 2.0), (2.0, 8.0)])
        cv.ellipse(liver, "liver", liver_hu)
        lobe = self._left_lobe(z)
        if lobe is not None:
            cv.ellipse(lobe, "liver", liver_hu)
        cv.tubes(tubes["portal"], None, 44.0, only=("liver",))   # vessels stay labelled liver (the organ)
        cv.tubes(tubes["hepatic"], None, 42.0, only=("liver",))
        self._paint_lesions(cv, liver, z, TISSUE_HU["liver"])
        dx, dy = self._j(1)
        gz = np.sqrt(max(0.0, 1 - ((z - 0.45) / 0.35) ** 2))
        if gz > 0.2:
            gb = Ellipse(-35 + dx, 22 + dy, 22 * s[2] * gz, 16 * s[2] * gz, 10)
            cv.ellipse(gb.scaled(1.0, 1.8), "bowel_wall", 40.0, where=lambda w: cv.labels[w] == LABELS["liver"])
            cv.ellipse(gb, "water")  # gallbladder: homogeneous 0 HU
        dx, dy = self._j(2)
        sz = 1.0 - _smoothstep(0.45, 0.75, z)
        if sz > 0.05:
            spleen = Ellipse(78 + dx, 15 + dy, 26 * s[3] * (0.5 + 0.5 * sz), 38 * s[3] * (1.1 - 0.4 * z) * sz, -20)
            cv.ellipse(spleen, "spleen", self._textured(cv, 50.0, [(4.0, 2.5)]))
        for side, k in ((-1, 3), (1, 4)):
            dx, dy = self._j(k)
            kz = 1.0 - ((z - 0.62) / 0.4) ** 2
            if kz <= 0.05:
                continue
            kr = 0.5 + 0.5 * np.sqrt(kz)
            kid = Ellipse(side * 58 + dx, 48 + dy, 19 * kr * s[k], 28 * kr * s[k], side * 30)
            self._kidney(cv, kid, side, np.sqrt(kz))
        aorta = Ellipse(14.0, 30.0, 11, 11)
        cv.ellipse(aorta.scaled(1.0, 1.5), "vessel", 55.0)  # aortic wall, slightly denser
        cv.ellipse(aorta, "vessel", self._textured(cv, 42.0, [(2.0, 3.0)]))
        cv.ellipse(Ellipse(-18.0, 32.0, 13, 9), "vessel", self._textured(cv, 42.0, [(2.0, 3.0)]))  # IVC
        if 0.42 < z < 0.56:  # renal veins to the IVC
            for side, k in ((-1, 3), (1, 4)):
                dx, dy = self._j(k)
                rv = _Tubes.polyline([(side * 40 + dx, 40 + dy, cv.z), (-10.0, 30.0, cv.z)], 3.5)
                cv.tubes(rv, "vessel", 42.0, only=("fat", "septum", "vessel", "muscle"))
        self._vertebra(cv, 60.0, 18.0, 36.0, 9.0)
        if z < 0.55:
            ring = body.scaled(1.0, -(19.0 + self.fat_mm))
            self._ribs(cv, ring, -0.6 * self.z_extent, 7, 30.0, 115.0)

    def _kidney(self, cv: _Canvas, kid: Ellipse, side: int, zk: float) -> None:
        """Kidney: cortex (textured) over medullary pyramids; at mid-kidney the sinus (fat, the renal
        pelvis) opens medially at the hilum."""
        reg = cv.region(kid.scaled(1.0, 4.0))  # perirenal fat with bridging septa
        if reg is not None:
            self._fat(cv, *reg, 2.0, 0.3)
        cv.ellipse(kid, "kidney", self._textured(cv, 36.0, [(3.0, 1.5)]))
        t = np.deg2rad(kid.angle)
        ux, uy = np.cos(t), np.sin(t)       # kidney's short axis (u) in the image
        vx, vy = -np.sin(t), np.cos(t)      # long axis (v)
        for phi in np.linspace(-2.2, 2.2, 6):
            # pyramids around the sinus, on the lateral side (u away from the hilum), pointing inwards
            pu, pv = 0.55 * kid.a * np.cos(phi) * side, 0.62 * kid.b * np.sin(phi)
            cx, cy = kid.cx + pu * ux + pv * vx, kid.cy + pu * uy + pv * vy
            ang = np.rad2deg(np.arctan2(cy - kid.cy, cx - kid.cx))
            cv.ellipse(Ellipse(cx, cy, 0.28 * kid.a, 0.16 * kid.b, ang), "kidney_medulla",
                       self._textured(cv, 27.0, [(3.0, 1.5)]))
        if zk > 0.4:
            hs = np.sqrt((zk - 0.4) / 0.6)
            cx, cy = kid.cx - side * 0.72 * kid.a * ux, kid.cy - side * 0.72 * kid.a * uy
            cv.ellipse(Ellipse(cx, cy, 0.5 * kid.a * hs + 0.5, 0.38 * kid.b * hs + 0.5, kid.angle), "fat", -90.0)
            cv.ellipse(Ellipse(cx + side * 2 * ux, cy + side * 2 * uy, 0.22 * kid.a * hs + 0.3,
                               0.16 * kid.b * hs + 0.3, kid.angle), "csf", 8.0)  # renal pelvis (urine)

    def _chest(self, cv: _Canvas, z: float) -> None:
        body, inner = self._body(cv, 165, 118, 0)
        s = self.size_jitter
        Z = self.z_extent
        self._paraspinal(cv, 82.0, 16.0)
        # lungs: parenchyma with fine texture, denser posteriorly (gravity), filling the chest cavity
        cavity = inner.scaled(1.0, -1.0)
        lungs = []
        for side in (-1, 1):
            lung = self._lung_shape(side, cv.z)
            lungs.append(lung)

            def lung_hu(x, y, lung=lung):
                return (-865.0 + 25.0 * (y - lung.cy) / lung.b + 14.0 * cv.noise("lung_fine", x, y, 0.7)
                        + 8.0 * cv.noise("lung_coarse", x, y, 4.0))
            cv.ellipse(lung, "lung", lung_hu, where=lambda w: cavity.mask(*cv.xy(w)))
        for side in (-1, 1):
            tr = self._trees[side]
            cv.tubes(tr["veins"], "vessel", 40.0, only=("lung", "vessel"))
            cv.tubes(tr["arteries"], "vessel", 40.0, only=("lung", "vessel"))
        for side in (-1, 1):
            br = self._trees[side]["bronchi"]
            wall = 0.15 * br.r + 0.4
            cv.tubes(_Tubes(br.p0, br.p1, br.r + wall), "airway_wall", 20.0, only=("lung", "vessel", "airway_wall"))
        for side in (-1, 1):
            cv.tubes(self._trees[side]["bronchi"], "airway", -1000.0, only=("lung", "vessel", "airway_wall", "airway"))
        self._paint_lesions(cv, lungs[self.seed % 2], z, 30.0)  # solid nodules
        # mediastinum: fat, heart in its pericardial fat, great vessels, airways, oesophagus
        hz = np.sqrt(np.clip((z - 0.3) / 0.25, 0.0, 1.0)) * (1 - 0.5 * _smoothstep(0.85, 1.05, z))
        med = Ellipse(4.0, 8.0, 20.0 + 12.0 * hz, 62.0 + 10 * hz)
        reg = cv.region(med)
        if reg is not None:
            self._fat(cv, *reg, 5.0, 0.0, vessels=True)
        dx, dy = self._j(2)
        if hz > 0.05:
            heart = Ellipse(15 + dx, 4 + dy, 52 * s[2] * hz, 42 * s[2] * hz, -30, ((2, 0.04, 1.0), (3, 0.03, 0.5)))
            reg = cv.region(heart.scaled(1.0, 3.5))
            if reg is not None:
                self._fat(cv, *reg, 3.0, 0.0)
            cv.ellipse(heart, "heart", self._textured(cv, 40.0, [(2.2, 3.0), (1.0, 10.0)]))
        blood = self._textured(cv, 42.0, [(2.0, 3.0)])
        Zc = 0.36 * Z  # carina
        great = [
            _Tubes.polyline([(8.0, -6.0, 0.56 * Z), (6.0, -10.0, 0.30 * Z)], 15.0 * s[6]),   # ascending aorta
            _Tubes.polyline([(6.0, -10.0, 0.30 * Z), (14.0, 20.0, 0.27 * Z), (22.0, 56.0, 0.30 * Z)], 12.5 * s[6]),
            _Tubes.polyline([(22.0, 56.0, 0.30 * Z), (24.0, 58.0, 1.1 * Z)], 12.0 * s[6]),   # descending aorta
            _Tubes.polyline([(-24.0, -8.0, 0.10 * Z), (-24.0, -4.0, 0.50 * Z)], 10.0),      # superior vena cava
            _Tubes.polyline([(22.0, -8.0, 0.58 * Z), (20.0, -16.0, 0.42 * Z)], 13.0),       # pulmonary trunk
            _Tubes.polyline([(18.0, -14.0, 0.42 * Z), (-30.0, 8.0, 0.44 * Z)], 9.5),        # right PA
            _Tubes.polyline([(20.0, -14.0, 0.42 * Z), (42.0, 4.0, 0.41 * Z)], 9.5),         # left PA
            _Tubes.polyline([(-6.0, -6.0, 0.28 * Z), (-10.0, -2.0, -0.1 * Z)], 6.5),        # brachiocephalic a.
            _Tubes.polyline([(10.0, 4.0, 0.28 * Z), (12.0, 6.0, -0.1 * Z)], 4.5),           # left carotid
            _Tubes.polyline([(20.0, 14.0, 0.28 * Z), (34.0, 16.0, -0.1 * Z)], 5.5),         # left subclavian
            _Tubes.polyline([(26.0, -20.0, 0.18 * Z), (-20.0, -10.0, 0.22 * Z)], 6.5),      # left brachiocephalic v.
            _Tubes.polyline([(-24.0, -8.0, 0.10 * Z), (-34.0, -16.0, -0.1 * Z)], 7.5),      # right brachiocephalic v.
            _Tubes.polyline([(-30.0, 20.0, 0.55 * Z), (-26.0, 30.0, 0.62 * Z)], 6.0),       # pulmonary veins
            _Tubes.polyline([(30.0, 22.0, 0.53 * Z), (30.0, 32.0, 0.60 * Z)], 6.0),
        ]
        for t in great:
            self._solid_tube(cv, t, "vessel", blood)
        self._solid_tube(cv, _Tubes.polyline([(8.0, 56.0, -0.1 * Z), (12.0, 58.0, 1.1 * Z)], 7.0), "muscle",
                         self._textured(cv, 38.0, [(3.0, 1.0)]))  # oesophagus
        airways = [_Tubes.polyline([(0.0, 34.0, -0.1 * Z), (0.0, 38.0, Zc)], 9.5),
                   _Tubes.polyline([(0.0, 38.0, Zc), (-30.0, 14.0, 0.42 * Z)], 7.0),
                   _Tubes.polyline([(0.0, 38.0, Zc), (34.0, 18.0, 0.42 * Z)], 6.0)]
        for t in airways:
            cv.tubes(t, "airway_wall", 30.0, grow_mm=1.8)
        for t in airways:
            cv.tubes(t, "airway", -1000.0)
        if z > 0.78:  # the diaphragm domes: liver under the right lung, spleen/stomach under the left
            q = _smoothstep(0.78, 1.05, z)
            cv.ellipse(Ellipse(-60.0, 0.0, 70 * q, 80 * q), "liver",
                       self._textured(cv, 60.0, [(3.5, 2.0), (2.0, 8.0)]))
            cv.ellipse(Ellipse(62.0, 0.0, 45 * q, 55 * q), "spleen", self._textured(cv, 50.0, [(4.0, 2.5)]))
        self._vertebra(cv, 82.0, 16.0, 26.0, 5.0)
        sternum = Ellipse(0.0, -body.b + 22 + self.fat_mm, 14, 7)
        cv.ellipse(sternum, "bone", self.cortical_hu - 150)
        cv.ellipse(sternum.scaled(1.0, -1.5), "cancellous", lambda x, y: self._trabecular(cv, x, y))
        ring = body.scaled(1.0, -(19.0 + self.fat_mm))
        self._ribs(cv, ring, -0.25 * Z, 12, 26.0, 150.0)
        if z < 0.5:  # scapulae, posterior to the ribs
            q = 1 - _smoothstep(0.25, 0.5, z)
            inside = body.scaled(1.0, -(4.0 + self.fat_mm))
            for side in (-1, 1):
                sc = Ellipse(side * (body.a - 58), body.b - 45, 38 * q + 1, 4.5, side * -35)
                cv.ellipse(sc.scaled(1.0, 7.0), "muscle", self._textured(cv, 45.0, [(4.0, 1.2), (2.0, 6.0)]),
                           where=lambda w: inside.mask(*cv.xy(w)))
                self._bone(cv, sc, 1.5, self.cortical_hu - 150)

    def _solid_tube(self, cv: _Canvas, t: _Tubes, tissue: str, value) -> None:
        """Paint tube segments as solid (binary) cross-sections with a value function."""
        for i in t.cut(cv.z):
            p0, p1, r = t.p0[i], t.p1[i], t.r[i]
            lo = np.minimum(p0, p1) - r
            hi = np.maximum(p0, p1) + r
            win = cv.window(lo[0], hi[0], lo[1], hi[1])
            if win is None:
                continue
            X, Y = cv.xy(win)
            dist, _ = _segment_distance(X, Y, cv.z, p0, p1)
            m = dist <= r
            if m.any():
                cv.put(win, m, tissue, value(X[m], Y[m]))

    def _head(self, cv: _Canvas, z: float) -> None:
        sw, sh = self.scale
        k = 0.8 + 0.25 * np.sin(np.pi * (0.2 + 0.8 * z))
        outer = Ellipse(0.0, 0.0, 76 * sw * k, 95 * sh * k)
        reg = cv.region(outer)
        if reg is None:
            return
        win, X, Y, m = reg
        x, y = X[m], Y[m]
        # depth below the scalp surface (mm), along rays from the centre; u: arc length (mm) around
        # the head, 0 at the back, seam at the front midline
        rho = outer.rho(x, y)
        r = np.hypot(x, y)
        depth = (1 - rho) * r / np.maximum(rho, 1e-6)
        u = np.arctan2(x, y) * (outer.a + outer.b) / 2
        zeros = np.zeros_like(u)
        skull_t = np.clip(6.2 + 1.6 * cv.noise("skull_t", u, zeros, 15.0), 3.5, 10.0)
        d_skull = depth - 4.5            # scalp: 1.5 mm skin, 2 mm fat, 1 mm galea
        d_brain = d_skull - skull_t - 0.6  # meninges
        hu = np.empty(x.shape)
        lab = np.empty(x.shape, np.uint8)
        scalp = d_skull < 0
        hu[scalp], lab[scalp] = 35.0 + 4 * cv.noise("scalp", x[scalp], y[scalp], 1.0), LABELS["skin"]
        fat = scalp & (depth > 1.5) & (depth < 3.5)
        hu[fat], lab[fat] = -90.0 + 5 * cv.noise("scalpfat", x[fat], y[fat], 1.0), LABELS["fat"]
        bone = (d_skull >= 0) & (d_brain < -0.6)
        hu[bone], lab[bone] = self.cortical_hu + 250 + 50 * cv.noise("skull", x[bone], y[bone], 1.5), LABELS["bone"]
        diploe = bone & (d_skull > 1.7) & (d_skull < skull_t - 1.5)
        hu[diploe] = self._trabecular(cv, x[diploe], y[diploe], strut_hu=900.0)
        lab[diploe] = LABELS["cancellous"]
        meninges = (d_brain >= -0.6) & (d_brain < 0)
        hu[meninges], lab[meninges] = 8.0, LABELS["csf"]
        brain = d_brain >= 0
        self._brain(cv, x[brain], y[brain], u[brain], d_brain[brain], z, hu, lab, brain)
        cv.hu[win][m] = hu
        cv.labels[win][m] = lab
        dx, dy = self._j(0)
        vk = np.sin(np.pi * np.clip((z - 0.05) / 0.75, 0.0, 1.0))
        nz = _smoothstep(0.1, 0.3, z) * (1 - _smoothstep(0.5, 0.65, z))
        if nz > 0.05:  # deep gray nuclei: caudate heads, lentiform nuclei, thalami
            gm = self._textured(cv, 37.0, [(2.0, 2.0)])
            for side in (-1, 1):
                cv.ellipse(Ellipse(side * (13 + 5 * vk) + dx, -18 + dy, 6 * nz, 9 * nz, -side * 20), "gray_matter", gm)
                cv.ellipse(Ellipse(side * (28 + 4 * vk) + dx, 2 + dy, 7 * nz, 17 * nz, side * 8), "gray_matter", gm)
                cv.ellipse(Ellipse(side * 10 + dx, 18 + dy, 8 * nz, 10 * nz, side * 10), "gray_matter", gm)
        wm = Ellipse(0.0, 2.0, outer.a - 25, outer.b - 27)
        if vk > 0.15:
            for side in (-1, 1):  # lateral ventricles: frontal horn, body, atrium, either side of the septum
                cv.ellipse(Ellipse(side * (6.5 + 3 * vk) + dx, -16 + dy, 3 + 4 * vk, 4 + 12 * vk, side * 25), "water")
                cv.ellipse(Ellipse(side * (8 + 3 * vk) + dx, 2 + dy, 2.5 + 3.5 * vk, 4 + 14 * vk, -side * 6), "water")
                cv.ellipse(Ellipse(side * (12 + 3 * vk) + dx, 20 + dy, 3 + 4 * vk, 3 + 8 * vk, -side * 30), "water")
        self._paint_lesions(cv, wm, z, TISSUE_HU["white_matter"])

    def _brain(self, cv: _Canvas, x, y, u, db, z, hu, lab, where) -> None:
        """Cortex folded by sulci (CSF clefts 1-3 mm wide, 5-18 mm deep, running inwards from the
        surface), gray matter 2.5-3 mm thick along the surface and the sulci, white matter beneath,
        and the interhemispheric fissure with the falx."""
        p = cv.pixel_mm
        zeros = np.zeros_like(u)
        v = 0.45 * db  # sulci vary slowly with depth: they run inwards, bending
        f, fu, _ = cv.fields.sample("sulci", u, v, cv.z, 2.2, z_corr_mm=4.0, grad=True)
        d_sulcus = np.abs(f) / np.maximum(np.abs(fu), 1e-3)
        depth = np.clip(12.0 + 4.0 * cv.noise("sulcal_depth", u, zeros, 6.0), 5.0, 20.0)
        # interhemispheric fissure: the midline (slightly curved), deep except over the corpus callosum
        xm = x - 1.5 * cv.noise("midline", zeros, y, 20.0)
        callosum = (np.abs(y) < 35) & (z < 0.75)
        fis_depth = np.where(callosum, 12.0, 80.0)
        d_mid = np.abs(xm)
        gm = (db < 2.8) | ((d_sulcus < 2.6) & (db < depth + 2.5)) | ((d_mid < 3.2) & (db < fis_depth + 2.5))
        val = np.where(gm, 38.0 + 1.8 * cv.noise("gm", x, y, 2.0),
                       27.0 + 1.3 * cv.noise("wm0", x, y, 2.0) + 0.5 * cv.noise("wm1", x, y, 8.0))
        labs = np.where(gm, LABELS["gray_matter"], LABELS["white_matter"]).astype(np.uint8)
        # CSF in the sulci (wider near the surface) and the fissure, with partial volume
        hw = (0.35 + 0.6 * np.exp(-db / 4.0)) * np.clip((depth - db) / 2.0, 0.0, 1.0)
        c = _coverage(d_sulcus, hw, p)
        c = np.maximum(c, _coverage(db, 0.4 + 0.3 * np.minimum(cv.noise("sas", u, zeros, 10.0) ** 2, 2.0), p))
        cf = _coverage(d_mid, (0.7 + 0.8 * np.exp(-db / 6.0)) * np.clip((fis_depth - db) / 2.0, 0.0, 1.0), p)
        c = np.maximum(c, cf)
        val = val + c * (5.0 - val)
        labs[c >= 0.5] = LABELS["csf"]
        falx = _coverage(d_mid, 0.3, p) * (db < fis_depth)
        val = val + falx * (70.0 - val)
        hu[where] = val
        lab[where] = labs
