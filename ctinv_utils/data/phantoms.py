"""Anatomical CT phantoms in HU for head, chest and abdomen, different per patient (seeded).

A phantom is a set of ellipses painted in order (body, fat/muscle, bone, organs, lungs with
vessels, small low-contrast lesions). ``Phantom(region, seed).slice(z, size)`` returns one axial
slice; ``z`` in [0, 1] moves through the scanned range, so organ sizes change smoothly and lesions
appear only on the slices they span, like a real series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .regions import FOV_MM, REGIONS


#: Tissue labels and their nominal HU. ``water`` is the homogeneous 0-HU region (gallbladder,
#: ventricles) used to check the HU calibration; lesions get their own HU per lesion.
TISSUE_HU = {
    "air": -1000.0, "fat": -100.0, "muscle": 40.0, "bone": 1000.0, "cancellous": 250.0,
    "lung": -850.0, "vessel": 40.0, "heart": 40.0, "liver": 60.0, "spleen": 50.0,
    "kidney": 35.0, "water": 0.0, "gray_matter": 40.0, "white_matter": 28.0,
    "lesion": np.nan, "bowel_gas": -1000.0,
}
LABELS = {name: i for i, name in enumerate(TISSUE_HU)}
#: Large homogeneous tissue in which noise is measured, per region.
FLAT_TISSUE = {"head": "white_matter", "chest": "heart", "abdomen": "liver"}


@dataclass(frozen=True)
class Ellipse:
    """Ellipse in mm: centre (cx, cy), semi-axes (a, b), rotation in degrees; x right, y down."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float = 0.0

    def mask(self, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
        t = np.deg2rad(self.angle)
        dx, dy = xx - self.cx, yy - self.cy
        u = dx * np.cos(t) + dy * np.sin(t)
        v = -dx * np.sin(t) + dy * np.cos(t)
        return (u / self.a) ** 2 + (v / self.b) ** 2 <= 1.0


class Phantom:
    """One simulated patient. ``slice(z, size)`` -> (image_hu (size, size) float32, labels uint8,
    pixel_mm)."""

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

    # -- painting helpers --------------------------------------------------------------
    def slice(self, z: float, size: int) -> tuple[np.ndarray, np.ndarray, float]:
        fov = FOV_MM[self.region]
        pixel_mm = fov / size
        coords = (np.arange(size) - (size - 1) / 2) * pixel_mm
        xx, yy = np.meshgrid(coords, coords)
        labels = np.full((size, size), LABELS["air"], dtype=np.uint8)
        hu = np.full((size, size), TISSUE_HU["air"], dtype=np.float32)

        def paint(shape: Ellipse, tissue: str, value: float | None = None) -> np.ndarray:
            m = shape.mask(xx, yy)
            labels[m] = LABELS[tissue]
            hu[m] = TISSUE_HU[tissue] if value is None else value
            return m

        getattr(self, f"_{self.region}")(paint, float(z), xx, yy)
        return hu, labels, pixel_mm

    def _j(self, i: int) -> tuple[float, float]:
        return float(self.jitter[i, 0]), float(self.jitter[i, 1])

    def _paint_lesions(self, paint, host: Ellipse, z: float, base_hu: float) -> None:
        for les in self.lesions:
            if abs(z - les["z"]) > les["dz"]:
                continue
            # spherical lesion: radius shrinks away from its z-centre
            r = les["r"] * np.sqrt(max(0.0, 1 - ((z - les["z"]) / les["dz"]) ** 2))
            if r < 1.5:
                continue
            cx = host.cx + les["u"] * host.a * 0.7
            cy = host.cy + les["v"] * host.b * 0.7
            paint(Ellipse(cx, cy, r, r), "lesion", base_hu + les["contrast"])

    def _body(self, paint, a: float, b: float, cy: float = 0.0) -> Ellipse:
        sw, sh = self.scale
        body = Ellipse(0.0, cy, a * sw, b * sh)
        paint(body, "fat")
        paint(Ellipse(0.0, cy, body.a - 14, body.b - 12), "muscle")
        paint(Ellipse(0.0, cy, body.a - 24, body.b - 22), "fat", -90.0)
        return body

    def _spine(self, paint, cy: float, r: float) -> None:
        paint(Ellipse(0.0, cy, r, r * 0.9), "bone")
        paint(Ellipse(0.0, cy, r - 3, r * 0.9 - 3), "cancellous")
        paint(Ellipse(0.0, cy + r + 14, 5, 14), "bone")  # spinous process
        for side in (-1, 1):
            paint(Ellipse(side * 32.0, cy + r + 10, 22, 17), "muscle")  # paraspinal muscles

    def _ribs(self, paint, a: float, b: float, angles_deg) -> None:
        for ang in angles_deg:
            t = np.deg2rad(ang)
            paint(Ellipse(a * np.cos(t), b * np.sin(t), 6, 4, ang + 90), "bone")
            paint(Ellipse(a * np.cos(t), b * np.sin(t), 3.5, 2, ang + 90), "cancellous")

    # -- regions -----------------------------------------------------------------------
    def _abdomen(self, paint, z, xx, yy) -> None:
        body = self._body(paint, 160, 115, 5)
        s = self.size_jitter
        self._spine(paint, 60.0, 18.0)
        dx, dy = self._j(0)
        liver = Ellipse(-55 + dx, -5 + dy, 68 * s[0] * (1.1 - 0.3 * z), 55 * s[1], 20)
        paint(liver, "liver")
        self._paint_lesions(paint, liver, z, TISSUE_HU["liver"])
        dx, dy = self._j(1)
        paint(Ellipse(-35 + dx, 22 + dy, 22 * s[2], 16 * s[2], 10), "water")  # gallbladder
        dx, dy = self._j(2)
        paint(Ellipse(78 + dx, 15 + dy, 26 * s[3], 38 * s[3] * (1.1 - 0.4 * z), -20), "spleen")
        for side, k in ((-1, 3), (1, 4)):
            dx, dy = self._j(k)
            kr = 0.6 + 0.5 * np.sin(np.pi * z)
            paint(Ellipse(side * 58 + dx, 48 + dy, 19 * kr * s[k], 28 * kr * s[k], side * 30), "kidney")
        paint(Ellipse(14.0, 30.0, 11, 11), "vessel")  # aorta
        paint(Ellipse(-18.0, 32.0, 13, 9), "vessel")  # inferior vena cava
        rng = np.random.default_rng(self.vessel_seed)
        for _ in range(4):  # bowel loops, some with gas
            cx, cy = rng.uniform(-10, 60), rng.uniform(-80, -30)
            paint(Ellipse(cx, cy, rng.uniform(10, 16), rng.uniform(8, 12), rng.uniform(0, 180)), "muscle", 20.0)
            if rng.random() < 0.6:
                paint(Ellipse(cx, cy, rng.uniform(3, 7), rng.uniform(3, 6)), "bowel_gas")
        self._ribs(paint, body.a - 10, body.b - 8, [160, 175, 190, 200, -20, -5, 10, 20])

    def _chest(self, paint, z, xx, yy) -> None:
        body = self._body(paint, 165, 118, 0)
        s = self.size_jitter
        lung_s = 0.75 + 0.3 * np.sin(np.pi * (0.3 + 0.7 * z))
        lungs = []
        for side, k in ((-1, 0), (1, 1)):
            dx, dy = self._j(k)
            lung = Ellipse(side * 68 + dx, -5 + dy, 58 * s[k] * lung_s, 85 * s[k] * lung_s, side * -8)
            paint(lung, "lung")
            lungs.append(lung)
        rng = np.random.default_rng(self.vessel_seed + int(z * 1000))
        for lung in lungs:  # vessels: many small circles, denser near the hilum
            for _ in range(45):
                rr = np.sqrt(rng.uniform(0, 1))
                th = rng.uniform(0, 2 * np.pi)
                cx, cy = lung.cx + 0.9 * rr * lung.a * np.cos(th), lung.cy + 0.9 * rr * lung.b * np.sin(th)
                r = rng.uniform(0.8, 3.2) * (1.3 - 0.8 * rr)
                paint(Ellipse(cx, cy, r, r * rng.uniform(0.7, 1.3), rng.uniform(0, 180)), "vessel")
        self._paint_lesions(paint, lungs[self.seed % 2], z, 30.0)  # solid nodules
        dx, dy = self._j(2)
        heart = Ellipse(18 + dx, 20 + dy, 52 * s[2], 42 * s[2], -30)
        paint(heart, "heart")
        paint(Ellipse(-20.0, 62.0, 12, 12), "vessel")  # descending aorta
        self._spine(paint, 82.0, 16.0)
        paint(Ellipse(0.0, -body.b + 22, 14, 7), "bone")  # sternum
        self._ribs(paint, body.a - 18, body.b - 14, [150, 165, 180, 195, 210, -30, -15, 0, 15, 30])

    def _head(self, paint, z, xx, yy) -> None:
        sw, sh = self.scale
        k = 0.8 + 0.25 * np.sin(np.pi * (0.2 + 0.8 * z))
        outer = Ellipse(0.0, 0.0, 76 * sw * k, 95 * sh * k)
        paint(outer, "muscle", 30.0)  # scalp
        paint(Ellipse(0.0, 0.0, outer.a - 4, outer.b - 4), "bone")  # skull
        brain = Ellipse(0.0, 0.0, outer.a - 11, outer.b - 11)
        paint(brain, "gray_matter")
        wm = Ellipse(0.0, 2.0, brain.a - 14, brain.b - 16)
        paint(wm, "white_matter")
        dx, dy = self._j(0)
        vk = 0.5 + 0.5 * np.sin(np.pi * z)
        for side in (-1, 1):
            paint(Ellipse(side * 11 + dx, -6 + dy, 6 * vk + 1, 22 * vk + 2, side * 12), "water")  # ventricles
        self._paint_lesions(paint, wm, z, TISSUE_HU["white_matter"])

