"""The anatomy of the synthetic Medaka: which tissue every voxel holds.

Anatomy is laid out in *reference voxels* of the default shape ``(96, 256, 128)`` and a body
frame that follows the fish's (seeded) curvature: ``s`` runs from the snout along the body,
``u`` is left-right and ``v`` dorsoventral, both measured from the body's midline.
:func:`paint_anatomy` fills a volume with tissue ids (keys of :data:`TISSUES`, in order);
:mod:`.samples_medaka` renders them as CT intensities and organ labels.
"""

from __future__ import annotations

import numpy as np

REFERENCE_SHAPE = (96, 256, 128)

# name: (density, class label, coarse texture, fine texture). Densities are relative
# attenuation (bone ~ 1); soft-tissue ranges overlap once texture and noise are added.
TISSUES: dict[str, tuple[float, int, float, float]] = {
    "medium": (0.20, 0, 0.00, 0.00),
    "muscle": (0.40, 0, 0.05, 0.03),
    "myoseptum": (0.34, 0, 0.03, 0.03),
    "skin": (0.50, 0, 0.04, 0.04),
    "cavity": (0.31, 0, 0.05, 0.03),
    "fin": (0.29, 0, 0.03, 0.02),
    "fin ray": (0.70, 0, 0.00, 0.03),
    "notochord": (0.35, 0, 0.02, 0.02),
    "spinal cord": (0.35, 0, 0.04, 0.03),
    "jaw": (0.78, 0, 0.03, 0.03),
    "rib": (0.80, 0, 0.00, 0.03),
    "otolith": (1.25, 0, 0.00, 0.00),
    "gill": (0.52, 0, 0.08, 0.05),
    "vertebra": (1.25, 1, 0.02, 0.03),
    "retina": (0.58, 2, 0.03, 0.03),
    "vitreous": (0.30, 2, 0.02, 0.02),
    "lens": (0.80, 3, 0.00, 0.01),
    "brain": (0.31, 4, 0.06, 0.03),
    "heart wall": (0.57, 5, 0.08, 0.04),
    "blood": (0.50, 5, 0.03, 0.03),
    "liver": (0.50, 6, 0.07, 0.05),
    "gut wall": (0.53, 7, 0.04, 0.04),
    "gut content": (0.42, 7, 0.10, 0.16),
    "kidney": (0.47, 8, 0.05, 0.09),
    "air": (0.04, 9, 0.02, 0.02),
    "bladder wall": (0.45, 9, 0.03, 0.03),
}
_TISSUE_ID = {name: index for index, name in enumerate(TISSUES)}


class _BodyFrame:
    """Voxel coordinates in reference units and the fish's curved body frame (s, u, v)."""

    def __init__(self, shape: tuple[int, int, int], rng: np.random.Generator) -> None:
        factors = [ref / n for ref, n in zip(REFERENCE_SHAPE, shape, strict=True)]
        z, y, x = (
            ((np.arange(n) + 0.5) * f - (ref / 2 if axis != 1 else 0)).astype(np.float32)
            for axis, (n, f, ref) in enumerate(zip(shape, factors, REFERENCE_SHAPE, strict=True))
        )
        self.head = rng.uniform(10, 16)
        self.length = min(rng.uniform(220, 232), REFERENCE_SHAPE[1] - self.head - 6)
        self.s = y - self.head  # (Y,) distance from the snout
        self.t = self.s / self.length  # (Y,) 0 at the snout, 1 at the tail tip
        # A gentle seeded bend, growing towards the tail, sideways and up/down.
        tail = np.clip(self.t - 0.25, 0, None) ** 2
        centre_x = rng.uniform(-9, 9) * tail + rng.uniform(-2, 2)
        centre_z = rng.uniform(-4, 4) * tail + rng.uniform(-1.5, 1.5)
        self.u = x[None, :] - centre_x[:, None]  # (Y, X)
        self.v = z[:, None] - centre_z[None, :]  # (Z, Y), negative is dorsal
        knots = [0.0, 0.02, 0.06, 0.12, 0.2, 0.3, 0.42, 0.55, 0.7, 0.82, 0.9, 0.91]
        height = [0.15, 0.45, 0.7, 0.86, 0.95, 1.0, 0.96, 0.8, 0.55, 0.36, 0.26, 0.0]
        width = [0.12, 0.5, 0.86, 1.0, 0.86, 0.8, 0.76, 0.58, 0.34, 0.2, 0.15, 0.0]
        inside = (self.t >= 0) & (self.t <= 0.91)
        self.half_height = np.where(inside, np.interp(self.t, knots, height), 0) * rng.uniform(
            32, 36
        )
        self.half_width = np.where(inside, np.interp(self.t, knots, width), 0) * rng.uniform(35, 39)

    def rows(self, t_low: float, t_high: float) -> slice:
        """The Y rows whose body position ``t`` lies in ``[t_low, t_high]``."""
        hits = np.flatnonzero((self.t >= t_low) & (self.t <= t_high))
        return slice(0, 0) if hits.size == 0 else slice(int(hits[0]), int(hits[-1]) + 1)

    def ellipsoid(
        self, centre: tuple[float, float, float], radii: tuple[float, float, float]
    ) -> tuple[slice, np.ndarray]:
        """Normalised radius (< 1 inside) of an ellipsoid at body position ``(t, u, v)``.

        ``radii`` are ``(along the body, left-right, dorsoventral)`` in reference voxels.
        """
        t, u, v = centre
        rows = self.rows(t - radii[0] / self.length, t + radii[0] / self.length)
        along = ((self.s[rows] - t * self.length) / radii[0]) ** 2
        across = ((self.u[rows] - u) / radii[1]) ** 2
        height = ((self.v[:, rows] - v) / radii[2]) ** 2
        return rows, np.sqrt(height[:, :, None] + across[None] + along[None, :, None])


def _paint(tissue: np.ndarray, rows: slice, mask: np.ndarray, name: str) -> None:
    tissue[:, rows][mask] = _TISSUE_ID[name]


def _paint_ellipsoid(tissue, frame, centre, radii, layers, size: float = 1.0) -> None:
    """Concentric shells: ``layers`` of ``(normalised outer radius, tissue)``, outermost first."""
    rows, radius = frame.ellipsoid(centre, tuple(r * size for r in radii))
    for outer, name in layers:
        _paint(tissue, rows, radius <= outer, name)


def _body(tissue: np.ndarray, frame: _BodyFrame) -> np.ndarray:
    """Body, skin, fins and jaw; returns the normalised body radius (< 1 inside)."""
    half_w = np.maximum(frame.half_width, 1e-3)[None, :, None]
    half_h = np.maximum(frame.half_height, 1e-3)[None, :]
    q = np.sqrt((frame.u[None] / half_w) ** 2 + ((frame.v / half_h) ** 2)[:, :, None])
    q[:, frame.half_width <= 0, :] = np.inf
    tissue[q <= 1.0] = _TISSUE_ID["skin"]
    tissue[q <= 0.93] = _TISSUE_ID["muscle"]
    # Myosepta: thin chevrons between the muscle blocks, one per vertebra or so.
    chevron = (
        frame.s[None, :, None] + 0.45 * np.abs(frame.u)[None] + 0.25 * np.abs(frame.v)[:, :, None]
    )
    septa = (
        (np.cos(2 * np.pi * chevron / 7.3) > 0.93) & (q <= 0.9) & (frame.t > 0.25)[None, :, None]
    )
    tissue[septa] = _TISSUE_ID["myoseptum"]
    snout = (frame.t < 0.07)[None, :, None]
    tissue[snout & (q > 0.72) & (q <= 0.86)] = _TISSUE_ID["jaw"]
    # Median fins: thin sheets on the midline with bony rays; caudal fin fans out at the tail.
    thin = np.abs(frame.u) <= 1.1  # (Y, X)
    t = frame.t[None, :]
    h = frame.half_height[None, :]
    v = frame.v
    dorsal = (
        (t > 0.64) & (t < 0.8) & (v < -h + 1) & (v > -h - 9 * np.sin(np.pi * (t - 0.64) / 0.16))
    )
    anal = (t > 0.5) & (t < 0.84) & (v > h - 1) & (v < h + 6 * np.sin(np.pi * (t - 0.5) / 0.34))
    fan = 9 + 70 * np.clip(t - 0.88, 0, None)
    caudal = (t > 0.88) & (t < 1.0) & (np.abs(v) < fan)
    fins = dorsal | anal | caudal  # (Z, Y)
    rays = np.cos(v * np.pi / 2.2) > 0.55
    fin_mask = fins[:, :, None] & thin[None] & (q > 0.93)
    tissue[fin_mask] = _TISSUE_ID["fin"]
    tissue[fin_mask & rays[:, :, None]] = _TISSUE_ID["fin ray"]
    return q


def _spine(tissue, frame, q, rng) -> tuple[np.ndarray, np.ndarray]:
    """Vertebral column, notochord, spinal cord, neural and haemal spines, ribs.

    Returns the spine's dorsoventral position and outer centrum radius along the body.
    """
    t0, t1 = 0.26, 0.92
    rows = frame.rows(t0, t1)
    t = frame.t[rows]
    count = int(rng.integers(28, 33))
    period = (t1 - t0) * frame.length / count
    radius = 4.0 * (1 - 0.45 * np.clip((t - 0.3) / 0.6, 0, 1))  # (y,)
    centre_v = -0.3 * frame.half_height[rows]
    along = np.mod(frame.s[rows] - t0 * frame.length, period) - period / 2  # (y,)
    dv = frame.v[:, rows] - centre_v[None]  # (Z, y)
    du = frame.u[rows]  # (y, X)
    r = np.sqrt(dv[:, :, None] ** 2 + du[None] ** 2)
    sub = tissue[:, rows]
    centrum = np.abs(along) < 0.42 * period
    # Amphicoelous centra: the notochord canal is narrow mid-centrum and wide at the ends.
    canal = radius * (0.3 + 0.55 * (along / (0.42 * period)) ** 2)
    sub[(r <= radius[None, :, None] * 0.9)] = _TISSUE_ID["notochord"]
    bone = centrum[None, :, None] & (r <= radius[None, :, None]) & (r >= canal[None, :, None])
    # Spinal cord in its neural arch, dorsal to the centrum.
    cord_v = centre_v - radius - 2.2
    r_cord = np.sqrt((frame.v[:, rows] - cord_v[None])[:, :, None] ** 2 + du[None] ** 2)
    sub[r_cord <= 1.9] = _TISSUE_ID["spinal cord"]
    arch = (np.abs(along) < 0.25 * period)[None, :, None] & (r_cord > 1.9) & (r_cord <= 2.9)
    # Neural (dorsal) and haemal (ventral, tail only) spines lean backwards.
    depth_up = (cord_v[None] - 2.5) - frame.v[:, rows]  # (Z, y) > 0 above the arch
    depth_down = frame.v[:, rows] - (centre_v + radius)[None]
    reach = 0.62 * frame.half_height[rows][None]
    spines = np.zeros_like(bone)
    for depth, allowed in ((depth_up, np.ones_like(t, bool)), (depth_down, t > 0.6)):
        phase = np.mod(frame.s[rows][None] - t0 * frame.length - 0.5 * depth, period) - period / 2
        rod = (np.abs(phase) < 0.7) & (depth > 0) & (depth < reach) & allowed[None]
        spines |= rod[:, :, None] & (np.abs(du) < 0.9)[None]
    # Ribs: thin shells inside the body wall of the abdomen, one pair per vertebra.
    abdomen = ((t > 0.3) & (t < 0.6) & (np.abs(along) < 0.5))[None, :, None]
    ribs = abdomen & (np.abs(q[:, rows] - 0.84) < 0.035) & (dv > 0)[:, :, None]
    sub[ribs] = _TISSUE_ID["rib"]
    sub[bone | arch | spines] = _TISSUE_ID["vertebra"]
    full_v = np.interp(frame.t, t, centre_v, left=np.nan, right=np.nan)
    full_r = np.interp(frame.t, t, radius)
    return full_v, full_r


def _jitter(rng: np.random.Generator, spread: float) -> float:
    """A seeded offset in ``[-spread, spread]``: each fish differs a little."""
    return float(rng.uniform(-spread, spread))


def _size(rng: np.random.Generator) -> float:
    """A seeded organ size factor."""
    return float(rng.uniform(0.88, 1.12))


def _abdomen(tissue, frame, q, spine_v, spine_r, rng) -> None:
    """Abdominal cavity, kidney, swim bladder, liver and gut, hung below the spine."""
    spine_v = np.nan_to_num(spine_v, nan=-10)

    def below_spine(t: float) -> float:  # dorsoventral position of the centrum's ventral edge
        return float(np.interp(t, frame.t, spine_v) + np.interp(t, frame.t, spine_r))

    rows = frame.rows(0.23, 0.62)
    below = frame.v[:, rows] > (spine_v[rows] + 5)[None]
    rounded = 0.8 * np.sqrt(np.sin(np.pi * (frame.t[rows] - 0.23) / 0.39))  # closes at both ends
    _paint(tissue, rows, (q[:, rows] < rounded[None, :, None]) & below[:, :, None], "cavity")
    # Kidney: right under the spine, the head kidney anterior and wider.
    t_k = 0.27 + _jitter(rng, 0.01)
    for tc, radii in ((t_k, (9, 7.5, 4.5)), (t_k + 0.15, (30, 5, 3))):
        centre = (tc, _jitter(rng, 1), below_spine(tc) + radii[2] + 0.6)
        _paint_ellipsoid(tissue, frame, centre, radii, [(1, "kidney")])
    # Swim bladder: gas-filled, between kidney and gut.
    t_b = 0.45 + _jitter(rng, 0.02)
    rv_b = 7 * _size(rng)
    centre = (t_b, _jitter(rng, 1.5), below_spine(t_b) + 3.5 + rv_b)
    radii_b = (32 * _size(rng), 12 * _size(rng), rv_b)
    _paint_ellipsoid(tissue, frame, centre, radii_b, [(1, "bladder wall"), (0.86, "air")])
    # Liver: large, left and ventral in the anterior abdomen, two lobes.
    size, liver_u = _size(rng), -6 + _jitter(rng, 2)
    for tc, radii, du, dv in ((0.33, (18, 16, 14), 0, 0), (0.4, (14, 12, 9), 7, 6)):
        centre = (tc + _jitter(rng, 0.01), liver_u + du, 10 + dv + _jitter(rng, 2))
        _paint_ellipsoid(tissue, frame, centre, radii, [(1, "liver")], size)
    # Gut: an intestinal bulb running back on the right, then a loop down to the anus.
    for (ta, tb), (ua, ub), (va, vb), (ra, rb) in (
        ((0.29, 0.52), (6, 12), (2, 10), (9.0, 6.5)),
        ((0.42, 0.61), (-10, 0), (14, 26), (6.0, 4.0)),
    ):
        rows = frame.rows(ta, tb)
        f = (frame.t[rows] - ta) / (tb - ta)
        wobble = 2.0 * np.sin(2 * np.pi * (f * 1.3 + rng.uniform()))
        cu = ua + (ub - ua) * f + wobble + _jitter(rng, 1)
        cv = va + (vb - va) * f
        radius = (ra + (rb - ra) * f) * _size(rng)
        dv2 = ((frame.v[:, rows] - cv[None]) ** 2)[:, :, None]
        du2 = ((frame.u[rows] - cu[:, None]) ** 2)[None]
        dist = np.sqrt(dv2 + du2) / radius[None, :, None]
        _paint(tissue, rows, dist <= 1, "gut wall")
        _paint(tissue, rows, dist <= 0.62, "gut content")


def _head(tissue, frame, rng) -> None:
    """Heart, gill arches, brain, otoliths and eyes."""
    # Heart: ventricle, atrium and bulbus, ventral behind the gills.
    t_h, size = 0.25 + _jitter(rng, 0.01), _size(rng)
    for dt, du, dv, radii in (
        (0.0, 0, 19, (8, 8, 7)),
        (-0.035, -4, 13, (6, 6, 5)),
        (0.035, 1, 21, (4, 3.5, 3.5)),
    ):
        centre = (t_h + dt, du + _jitter(rng, 1), dv + _jitter(rng, 1.5))
        _paint_ellipsoid(tissue, frame, centre, radii, [(1, "heart wall"), (0.6, "blood")], size)
    # Gill arches: bright bars on both sides of the pharynx (unlabelled).
    for k in range(4):
        for side in (-1, 1):
            centre = (0.19 + 0.022 * k, side * 13, 8)
            _paint_ellipsoid(tissue, frame, centre, (1.6, 3.5, 9), [(1, "gill")])
    # Brain: telencephalon, paired optic tecta, cerebellum and hindbrain on the midline.
    size = _size(rng)
    for (tc, uc, vc), radii in (
        ((0.075, 0, -6), (9, 7, 8)),
        ((0.14, -8, -9), (12, 8, 11)),
        ((0.14, 8, -9), (12, 8, 11)),
        ((0.2, 0, -12), (6, 7, 7)),
        ((0.235, 0, -7), (11, 5.5, 7)),
    ):
        centre = (tc + _jitter(rng, 0.004), uc, vc + _jitter(rng, 1))
        _paint_ellipsoid(tissue, frame, centre, radii, [(1, "brain")], size)
    # Otoliths: small, very dense, beside the hindbrain (unlabelled bone-like distractors).
    for side in (-1, 1):
        _paint_ellipsoid(tissue, frame, (0.22, side * 9, -4), (2, 1.6, 1.6), [(1, "otolith")])
    # Eyes: large and lateral; a retina shell around the vitreous, the lens towards the outside.
    t_e, r_e = 0.1 + _jitter(rng, 0.008), 12.5 * _size(rng)
    for side in (-1, 1):
        centre = (t_e, side * (r_e + 12), -1 + _jitter(rng, 1))
        eye = [(1, "retina"), (0.75, "vitreous")]
        _paint_ellipsoid(tissue, frame, centre, (r_e, r_e * 0.92, r_e), eye)
        lens = (t_e, side * (r_e + 12 + 0.42 * r_e), centre[2])
        _paint_ellipsoid(tissue, frame, lens, (0.4 * r_e,) * 3, [(1, "lens")])


def paint_anatomy(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """``(Z, Y, X)`` uint8 tissue ids (indices into :data:`TISSUES`) of one seeded fish."""
    frame = _BodyFrame(shape, rng)
    tissue = np.full(shape, _TISSUE_ID["medium"], dtype=np.uint8)
    q = _body(tissue, frame)
    spine_v, spine_r = _spine(tissue, frame, q, rng)
    _abdomen(tissue, frame, q, spine_v, spine_r, rng)
    _head(tissue, frame, rng)
    return tissue
