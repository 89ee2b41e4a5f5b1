"""Analytic axial lumbar anatomy of the phantom and its partial-volume rendering.

Every structure is an analytic 2D shape (star-shaped blob given by a radial table, or a capsule)
whose parameters are interpolated along z between the level centres, so shapes change smoothly
cranio-caudally. A shape's coverage of a pixel comes from its signed distance d (mm):
``clip(0.5 - d / h, 0, 1)`` with h the pixel size, i.e. the exact area fraction for a straight edge
(analytic in-plane supersampling); through-slice partial volume comes from rendering several
sub-slice positions per slice and averaging. Shapes are painted in order (later covers earlier).
Coordinates are patient LPS in mm: x to the patient's left, y posterior, z superior.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ParaspinalLBPCore.structures import MUSCLES

# Label channels: index in the fraction stack -> label value (structures.py values).
CHANNEL_VALUES = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17], dtype=np.uint8)
CHANNEL = {int(v): i for i, v in enumerate(CHANNEL_VALUES)}
VB, POST, CANAL, DISC, SUBCUT, SKIN, ABDOMEN, IMFAT = 10, 11, 12, 13, 14, 15, 16, 17
MUSCLE_VALUE = {s.name: s.value for s in MUSCLES}

# Base (female, body_scale 1) per-level CSA in cm² — MF and psoas grow caudally, ES shrinks
# (TUM01: MF 5–11, ES 13–23 cm² per slice; psoas ~5 at L1 to ~15–20 at L4–L5; QL ~4–7).
BASE_CSA_CM2 = {
    "multifidus": (4.0, 5.5, 7.0, 8.5, 10.0),
    "erector_spinae": (21.0, 20.0, 18.0, 15.0, 11.5),
    "psoas": (4.5, 8.0, 12.0, 15.0, 17.0),
    "quadratus_lumborum": (4.0, 5.5, 6.5, 6.5, 4.5),
}
ASPECT = {  # AP / LR semi-axis ratio per level
    "multifidus": (1.5, 1.35, 1.25, 1.15, 1.05),
    "erector_spinae": (0.62, 0.64, 0.67, 0.71, 0.76),
    "psoas": (0.92, 0.9, 0.88, 0.86, 0.85),
    "quadratus_lumborum": (0.42, 0.44, 0.46, 0.48, 0.5),
}
VB_SEMI_MM = ((19.0, 14.0), (20.5, 14.8), (22.0, 15.5), (23.5, 16.2), (25.0, 17.0))
TP_LENGTH_MM = (22.0, 25.0, 28.0, 26.0, 24.0)
MALE_AREA_SCALE = 1.3
MALE_LENGTH_SCALE = 1.08
FASCIA_GAP_MM = 1.8  # fat/fascia plane between neighbouring muscles
HALO_MM = 1.2  # fat/fascia sheath painted around each muscle before the bones
FASCIA_MM = 0.5  # fascia between multifidus and erector spinae (thinner: they share a border)
OVERLAP_STEP_MM = 0.5  # raster step of the ES/MF overlap estimate


@dataclass
class Shape:
    """One painted structure: label value and either a star (radial table) or a capsule."""

    label: int
    center: tuple[float, float]
    radius_table: np.ndarray | None = None  # r(theta) on N angles in [-pi, pi)
    grad_table: np.ndarray | None = None  # 1 / sqrt(1 + (r'/r)^2): radial -> normal distance
    rotation: float = 0.0
    segment: tuple[float, float, float, float] | None = None  # capsule x0, y0, x1, y1
    capsule_radius: float = 0.0
    margin: float = 2.0  # bbox margin in mm
    parent: Shape | None = None  # halo: coverage from the parent's distance minus ``offset``
    offset: float = 0.0
    _extent: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    _extent_key: tuple | None = None

    def extent(self) -> tuple[float, float, float, float]:
        """Bounding box (xmin, xmax, ymin, ymax) in mm with a 2 mm margin."""
        if self.segment is not None:
            x0, y0, x1, y1 = self.segment
            r = self.capsule_radius + self.margin
            return min(x0, x1) - r, max(x0, x1) + r, min(y0, y1) - r, max(y0, y1) + r
        if self.parent is not None:
            return self.parent.extent()
        key = (self.center, self.margin)
        if self._extent_key != key:
            bx, by = boundary(self)
            m = self.margin
            self._extent = (
                float(bx.min()) - m,
                float(bx.max()) + m,
                float(by.min()) - m,
                float(by.max()) + m,
            )
            self._extent_key = key
        return self._extent

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm, negative inside) at grid x (1, W) and y (H, 1)."""
        if self.segment is not None:
            x0, y0, x1, y1 = self.segment
            vx, vy = x1 - x0, y1 - y0
            px, py = x - x0, y - y0
            t = np.clip((px * vx + py * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
            return np.hypot(px - t * vx, py - t * vy) - self.capsule_radius
        return self.from_polar(*self.polar(x, y))

    def polar(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Radius and angle-table index of grid points in the star's frame."""
        dx = x - self.center[0]
        dy = y - self.center[1]
        if self.rotation:
            c, s = np.cos(self.rotation), np.sin(self.rotation)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        rho = np.hypot(dx, dy)
        idx = ((np.arctan2(dy, dx) + np.pi) * (N_ANGLES / (2 * np.pi))).astype(np.int32)
        idx[idx >= N_ANGLES] = 0
        return rho, idx

    def from_polar(self, rho: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Signed distance from :meth:`polar` output (shapes sharing centre and rotation share it)."""
        return (rho - self.radius_table[idx]) * self.grad_table[idx]


N_ANGLES = 720
_THETA = np.linspace(-np.pi, np.pi, N_ANGLES, endpoint=False)


_ABS_COS, _ABS_SIN = np.abs(np.cos(_THETA)), np.abs(np.sin(_THETA))
_HARMONIC_CACHE: dict[tuple[int, float], np.ndarray] = {}


def _harmonic(k: int, phase: float) -> np.ndarray:
    key = (k, round(phase, 9))
    if key not in _HARMONIC_CACHE:
        _HARMONIC_CACHE[key] = np.cos(k * _THETA + phase)
    return _HARMONIC_CACHE[key]


def _finish_table(r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ext = np.concatenate((r[-1:], r, r[:1]))
    dr = (ext[2:] - ext[:-2]) * (N_ANGLES / (4 * np.pi))
    dr /= r
    return r.astype(np.float32), (1.0 / np.sqrt(1.0 + dr * dr)).astype(np.float32)


def star(label: int, center: tuple[float, float], a: float, b: float, *, area_mm2: float | None = None,
         n: float = 2.0, rotation: float = 0.0, harmonics: tuple[tuple[int, float, float], ...] = ()) -> Shape:  # fmt: skip
    """Superellipse (exponent n, semi-axes a, b) with smooth Fourier bumps, optionally scaled to an exact area."""
    if n == 2.0:
        r = 1.0 / np.sqrt((_ABS_COS / a) ** 2 + (_ABS_SIN / b) ** 2)
    else:
        r = (np.power(_ABS_COS / a, n) + np.power(_ABS_SIN / b, n)) ** (-1.0 / n)
    for k, amp, phase in harmonics:
        r = r * (1.0 + amp * _harmonic(k, phase))
    if area_mm2 is not None:
        area = 0.5 * float(np.sum(r * r)) * (2 * np.pi / N_ANGLES)
        r = r * np.sqrt(area_mm2 / area)
    table, grad = _finish_table(r)
    return Shape(label, center, table, grad, rotation)


def inset(shape: Shape, label: int, thickness: float) -> Shape:
    """The same star moved inwards by ``thickness`` mm along the normal (negative: outwards)."""
    r = shape.radius_table - thickness / shape.grad_table
    table, grad = _finish_table(np.maximum(r, 1.0))
    return Shape(label, shape.center, table, grad, shape.rotation)


def boundary(shape: Shape) -> tuple[np.ndarray, np.ndarray]:
    """Boundary points (x, y) of a star shape."""
    c, s = np.cos(shape.rotation), np.sin(shape.rotation)
    lx, ly = shape.radius_table * np.cos(_THETA), shape.radius_table * np.sin(_THETA)
    return shape.center[0] + c * lx - s * ly, shape.center[1] + s * lx + c * ly


def separate(moving: Shape, fixed: list[Shape], direction: tuple[float, float], gap: float) -> None:
    """Shift ``moving`` along ``direction`` in 0.5 mm steps until it keeps ``gap`` mm from ``fixed``."""
    norm = float(np.hypot(*direction))
    ux, uy = direction[0] / norm, direction[1] / norm
    for _ in range(12):
        bx, by = boundary(moving)
        deficit = gap - min(float(f.distance(bx, by).min()) for f in fixed)
        if deficit <= 0:
            return
        step = deficit + 0.25
        moving.center = (moving.center[0] + step * ux, moving.center[1] + step * uy)


def overlap_area(mass: Shape, inner: Shape, grow: float) -> float:
    """Area (mm²) of ``mass`` covered by ``inner`` grown by ``grow`` mm, on a fine raster."""
    a, b = inner.extent(), mass.extent()
    xmin, xmax, ymin, ymax = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    if xmax <= xmin or ymax <= ymin:
        return 0.0
    xs = np.arange(xmin, xmax, OVERLAP_STEP_MM, dtype=np.float32)[None, :]
    ys = np.arange(ymin, ymax, OVERLAP_STEP_MM, dtype=np.float32)[:, None]
    both = (inner.distance(xs, ys) < grow) & (mass.distance(xs, ys) < 0)
    return float(both.sum()) * OVERLAP_STEP_MM**2


def capsule(label: int, p0: tuple[float, float], p1: tuple[float, float], radius: float) -> Shape:
    """Segment p0–p1 thickened by ``radius`` (laminae, processes, pedicles)."""
    return Shape(label, ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2), segment=(*p0, *p1), capsule_radius=radius)


def star_area_mm2(shape: Shape) -> float:
    """Exact area of a star shape from its radial table."""
    r = shape.radius_table.astype(np.float64)
    return 0.5 * float(np.sum(r * r)) * (2 * np.pi / N_ANGLES)


@dataclass
class Layout:
    """Geometry constants of one case, in mm (already scaled for sex and body size)."""

    scale: float
    area_scale: float
    subcut_mm: float
    body_a: float
    body_b: float
    body_y: float


def make_layout(sex: str, body_scale: float, subcut_mm: float) -> Layout:
    """Body size and muscle scale from sex and body_scale."""
    length = body_scale * (MALE_LENGTH_SCALE if sex == "male" else 1.0)
    area = body_scale**2 * (MALE_AREA_SCALE if sex == "male" else 1.0)
    sub = subcut_mm * body_scale
    back = 80.0 * length + sub + 4.0  # spinous tip + fat + skin
    body_b = 100.0 * length + 0.5 * (sub - 16.0)
    return Layout(length, area, sub, 145.0 * length + (sub - 16.0), body_b, back - body_b)


def static_shapes(lay: Layout, rng: np.random.Generator) -> list[Shape]:
    """Shapes constant along z: skin, subcutaneous fat, abdominal contents, retroperitoneal fat."""
    bumps = tuple((k, float(rng.uniform(0.004, 0.012)), float(rng.uniform(0, 2 * np.pi))) for k in (3, 4, 5))
    body = star(SKIN, (0.0, lay.body_y), lay.body_a, lay.body_b, n=2.6, harmonics=bumps)
    # midline groove of the back over the spinous processes (posterior = +y = theta pi/2)
    groove = 5.0 * lay.scale * np.exp(-(((_THETA - np.pi / 2) / 0.09) ** 2))
    body.radius_table, body.grad_table = _finish_table(body.radius_table.astype(np.float64) - groove)
    subcut = inset(body, SUBCUT, 2.0)
    abdomen = inset(body, ABDOMEN, 2.0 + lay.subcut_mm)
    s = lay.scale
    pad = star(IMFAT, (0.0, 62.0 * s), 95.0 * s, 40.0 * s, n=2.6)  # posterior paraspinal compartment
    return [body, subcut, abdomen, pad]


def level_geometry(lay: Layout, frac_level: float, muscle_area: dict[str, float]) -> list[Shape]:
    """Spine and muscle shapes at a (fractional) level index 0=L1..4=L5 for given muscle areas (mm²)."""
    s = lay.scale

    def interp(values: tuple[float, ...]) -> float:
        return float(np.interp(frac_level, np.arange(len(values)), values))

    vba, vbb = interp(tuple(v[0] for v in VB_SEMI_MM)) * s, interp(tuple(v[1] for v in VB_SEMI_MM)) * s
    y_vb = 10.0 * s
    ca, cb = 10.5 * s, 8.0 * s
    yc = y_vb + vbb + 2.0 * s + cb
    arch_post = yc + cb + 4.0 * s
    sp_tip = 80.0 * s
    tp_len = interp(TP_LENGTH_MM) * s
    tp_y = yc - 3.0 * s
    shapes: list[Shape] = []
    for side in (-1.0, 1.0):
        shapes.append(capsule(POST, (side * (ca + 1.0 * s), y_vb), (side * (ca + 1.0 * s), yc), 4.0 * s))
        shapes.append(
            capsule(
                POST, (side * (ca + 3.0 * s), yc + 0.6 * cb), (side * 3.0 * s, arch_post + 1.0 * s), 3.0 * s
            )
        )
        shapes.append(
            capsule(
                POST, (side * (ca + 4.0 * s), tp_y), (side * (ca + 4.0 * s + tp_len), tp_y - 3.0 * s), 3.0 * s
            )
        )
    shapes.append(capsule(POST, (0.0, arch_post - 2.0 * s), (0.0, sp_tip), 3.5 * s))
    shapes.append(star(POST, (0.0, yc), ca + 4.0 * s, cb + 4.0 * s))
    shapes.append(star(VB, (0.0, y_vb), vba, vbb, n=2.3, harmonics=((2, -0.04, 0.0),)))
    shapes.append(star(CANAL, (0.0, yc), ca, cb, n=2.0, harmonics=((3, 0.06, np.pi / 2),)))

    def ax_ay(group: str, area: float) -> tuple[float, float]:
        asp = interp(ASPECT[group])
        ax = np.sqrt(area / (np.pi * asp))
        return float(ax), float(ax * asp)

    muscles: list[Shape] = []
    for side, sname in ((1.0, "left"), (-1.0, "right")):  # +x = patient left
        a_mf = muscle_area[f"multifidus_{sname}"]
        a_es = muscle_area[f"erector_spinae_{sname}"]
        a_ps = muscle_area[f"psoas_{sname}"]
        a_ql = muscle_area[f"quadratus_lumborum_{sname}"]
        mfx, mfy = ax_ay("multifidus", a_mf)
        esx, esy = ax_ay("erector_spinae", a_es)
        psx, psy = ax_ay("psoas", a_ps)
        qlx, qly = ax_ay("quadratus_lumborum", a_ql)
        x_mf = 3.5 * s + 1.5 + mfx
        y_mf = arch_post + 0.85 * mfy
        x_es = x_mf + mfx + 0.97 * esx
        y_es = y_mf - 0.1 * esy
        x_ps = vba + 2.5 * s + 0.95 * psx
        y_ps = y_vb - 0.45 * psy
        x_ql = ca + 4.0 * s + tp_len + 0.8 * qlx
        y_ql = tp_y - 1.0 * s
        mirror = 0.0 if side > 0 else np.pi
        mf = star(MUSCLE_VALUE[f"multifidus_{sname}"], (side * x_mf, y_mf), mfx, mfy, area_mm2=a_mf,
                  n=2.2, harmonics=((3, 0.05, mirror + 0.5),))  # fmt: skip
        # Erector spinae = a paraspinal mass reaching medially over the multifidus, minus the
        # multifidus and its thin fascia: the two share a long interface, as in real images.
        m_left, m_right = x_mf, x_es + esx
        es = star(MUSCLE_VALUE[f"erector_spinae_{sname}"], (side * (m_left + m_right) / 2, y_es),
                  (m_right - m_left) / 2, max(esy, 0.8 * mfy), area_mm2=a_es + 0.5 * a_mf, n=2.3,
                  rotation=side * 0.1, harmonics=((3, 0.03, mirror + 1.0), (5, 0.015, 0.3)))  # fmt: skip
        fascia = FASCIA_MM * s
        for _ in range(2):  # mass area = ES request + the part of it the multifidus + fascia take
            target = a_es + overlap_area(es, mf, fascia)
            factor = np.float32(np.sqrt(target / star_area_mm2(es)))
            es.radius_table = es.radius_table * factor
            es._extent_key = None
        ps = star(MUSCLE_VALUE[f"psoas_{sname}"], (side * x_ps, y_ps), psx, psy, area_mm2=a_ps,
                  rotation=side * 0.5, harmonics=((2, 0.05, 0.0),))  # fmt: skip
        ql = star(MUSCLE_VALUE[f"quadratus_lumborum_{sname}"], (side * x_ql, y_ql), qlx, qly, area_mm2=a_ql,
                  rotation=-side * 0.35)  # fmt: skip
        gap = FASCIA_GAP_MM * s
        separate(ql, [es], (0.0, -1.0), gap)
        separate(ps, [ql], (-0.3 * side, -1.0), gap)
        mf.margin = 2.0 + fascia
        muscles += [es, Shape(IMFAT, mf.center, parent=mf, offset=fascia), mf, ps, ql]
    halo = HALO_MM * lay.scale
    halos = []
    for m in muscles:
        if m.label in (1, 2) or m.parent is not None:
            continue  # the multifidus has its fascia painted over the ES mass instead
        m.margin = 2.0 + halo
        halos.append(Shape(IMFAT, m.center, parent=m, offset=halo))
    return halos + shapes + muscles


def coverage(shape: Shape, x: np.ndarray, y: np.ndarray, h: float,
             cache: dict[int, tuple[slice, slice, np.ndarray]] | None = None) -> tuple[slice, slice, np.ndarray] | None:  # fmt: skip
    """Area fraction of each pixel (grid x, y in mm, pixel size h) covered by ``shape``, within its bbox.

    With ``cache``, a shape's signed distance is kept so that its halo (painted earlier, computed
    later when painting back to front) reuses it.
    """
    if shape.parent is not None and cache is not None and id(shape.parent) in cache:
        sj, si, d = cache[id(shape.parent)]
        return sj, si, np.clip(0.5 - (d - shape.offset) / h, 0.0, 1.0)
    xmin, xmax, ymin, ymax = shape.extent()
    i0, i1 = np.searchsorted(x, xmin), np.searchsorted(x, xmax)
    j0, j1 = np.searchsorted(y, ymin), np.searchsorted(y, ymax)
    if i1 <= i0 or j1 <= j0:
        return None
    sj, si = slice(j0, j1), slice(i0, i1)
    src = shape.parent if shape.parent is not None else shape
    d = src.distance(x[None, i0:i1], y[j0:j1, None])
    if cache is not None:
        cache[id(shape)] = (sj, si, d)
    return sj, si, np.clip(0.5 - (d - shape.offset) / h, 0.0, 1.0)


def paint(frac: np.ndarray, shape: Shape, x: np.ndarray, y: np.ndarray, h: float,
          clip: np.ndarray | None = None) -> None:  # fmt: skip
    """Paint ``shape`` over the fraction stack ``frac`` (channels, H, W) in place, within its bbox."""
    res = coverage(shape, x, y, h)
    if res is None:
        return
    sj, si, cov = res
    if clip is not None:
        np.minimum(cov, clip[sj, si], out=cov)
    region = frac[:, sj, si]
    region *= 1.0 - cov
    region[CHANNEL[shape.label]] += cov


def paint_static(static: np.ndarray, shapes: list[Shape], x: np.ndarray, y: np.ndarray, h: float) -> None:
    """Paint full-frame shapes in order; the first three (body, subcutaneous, abdomen) share one polar grid."""
    rho, idx = shapes[0].polar(x[None, :], y[:, None])
    for i, shp in enumerate(shapes):
        if i < 3:
            cov = np.clip(0.5 - shp.from_polar(rho, idx) / h, 0.0, 1.0)
        else:  # retroperitoneal/posterior fat pad, only inside the abdominal contour
            cov = np.minimum(
                np.clip(0.5 - shp.distance(x[None, :], y[:, None]) / h, 0.0, 1.0), static[CHANNEL[ABDOMEN]]
            )
        static *= 1.0 - cov
        static[CHANNEL[shp.label]] += cov


def render_over(static: np.ndarray, shape_sets: list[list[Shape]], x: np.ndarray, y: np.ndarray,
                h: float) -> np.ndarray:  # fmt: skip
    """Mean over sub-slices of painting each shape list (in order) over the ``static`` stack.

    Painted back to front: a shape's fraction is its coverage times what later shapes leave
    uncovered, so each shape costs a few single-channel operations on its bbox only.
    """
    acc = np.zeros_like(static)
    rem_sum = np.zeros(static.shape[1:], dtype=np.float32)
    for shapes in shape_sets:
        rem = np.ones(static.shape[1:], dtype=np.float32)
        cache: dict[int, tuple[slice, slice, np.ndarray]] = {}
        for shp in reversed(shapes):
            res = coverage(shp, x, y, h, cache)
            if res is None:
                continue
            sj, si, cov = res
            r = rem[sj, si]
            acc[CHANNEL[shp.label], sj, si] += cov * r
            r *= 1.0 - cov
        rem_sum += rem
    acc += static * rem_sum
    acc /= len(shape_sets)
    return acc
