"""Procedural matting shots with exact ground truth.

The demo and the tests use these shots instead of external footage, so nothing
has to be downloaded. A shot is a static, textured background (which is also
the clean plate) with a moving subject composited over it: a head and torso
with soft edges, thin hair strands on one side, and a semi-transparent veil.
Everything is drawn with numpy and OpenCV, sized in proportion to the frame
height, and fully determined by the seed.

All images are display-referred sRGB, float32 in [0, 1], and every frame obeys
the compositing equation ``image = alpha * foreground + (1 - alpha) * plate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SHIFT = 4  # fixed-point bits for sub-pixel drawing with cv2
_ONE = 1 << _SHIFT

# Subject geometry in canonical units: 1.0 is the frame height, origin at the
# subject's anchor point, y pointing down.
_HEAD_CENTRE = (0.0, -0.16)
_HEAD_RADII = (0.10, 0.125)
_TORSO_CENTRE = (0.0, 0.185)
_TORSO_RADII = (0.22, 0.17)
_VEIL_CENTRE = (0.26, 0.17)
_VEIL_RADII = (0.15, 0.16)
# Canonical area covered by the subject's colour textures.
_TEX_ORIGIN = (-0.5, -0.5)
_TEX_SIZE = (1.2, 1.0)

_HAIR_OPACITY = np.array([0.35, 0.6, 0.85, 1.0], np.float32)
_SNAP = 1.0 / 1024.0  # alpha closer than this to 0 or 1 becomes exactly 0 or 1


@dataclass(frozen=True, eq=False)
class Shot:
    """A synthetic shot, display-referred sRGB.

    image: (N, H, W, 3) float32 in [0, 1], composite I = alpha*F + (1-alpha)*B per frame
    plate: (H, W, 3) float32 in [0, 1], the clean plate B (the background without the subject)
    alpha: (N, H, W) float32 in [0, 1], ground truth
    foreground: (N, H, W, 3) float32 in [0, 1], the foreground colour F
    first: int, frame number of image[0]
    """

    image: np.ndarray
    plate: np.ndarray
    alpha: np.ndarray
    foreground: np.ndarray
    first: int


def make_shot(width: int = 640, height: int = 360, frames: int = 12, first: int = 1,
              seed: int = 0) -> Shot:
    """Render a shot of ``frames`` frames at ``width`` x ``height``.

    Returns a ``Shot`` whose arrays are float32 in [0, 1]: image and foreground
    (frames, height, width, 3), alpha (frames, height, width), plate
    (height, width, 3). The same arguments always give identical arrays.
    """
    if width < 16 or height < 16:
        raise ValueError(f"shot must be at least 16x16, got {width}x{height}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    rng = np.random.default_rng(seed)
    plate = make_background(width, height, rng)
    textures = _subject_textures(height, rng)
    hair = _hair_strands(height, rng)
    path = _path(width, height, rng)

    shape = (frames, height, width)
    alpha = np.zeros(shape, np.float32)
    colour = np.empty(shape + (3,), np.float32)
    for i in range(frames):
        t = i / (frames - 1) if frames > 1 else 0.0
        _render_subject(alpha[i], colour[i], t, path, textures, hair)
    a = alpha[..., None]
    image = np.clip(a * colour + (1.0 - a) * plate, 0.0, 1.0)
    return Shot(image=image, plate=plate, alpha=alpha, foreground=colour, first=int(first))


def make_background(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A colourful natural-looking texture: (height, width, 3) float32 in [0, 1].

    Multi-octave smooth noise drives hue, saturation and value, with a
    vertical light gradient, noise-warped stripes and a few soft blobs on top.
    """
    h, w = height, width
    noise = _noise(h, w, 0.4 * h, rng, octaves=5, channels=3)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    hue = (rng.uniform(0, 360) + 160 * (noise[..., 0] - 0.5) + 90 * xx / w) % 360
    sat = 0.3 + 0.55 * noise[..., 1]
    val = (0.3 + 0.6 * noise[..., 2]) * (0.75 + 0.3 * (1 - yy / h))

    # Stripes bent by the noise, fading in and out across the frame.
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(0.04, 0.09) * h
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    stripes = np.sin(phase + 8 * noise[..., 0])
    strength = np.clip(2.5 * (noise[..., 1] - 0.4), 0, 1)
    val = val * (1 + 0.22 * strength * stripes)
    hue = (hue + 25 * strength * stripes) % 360

    hsv = np.dstack([hue, np.clip(sat, 0, 1), np.clip(val, 0, 1)]).astype(np.float32)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)

    # Soft out-of-focus blobs, drawn small (they are blurred anyway) and enlarged.
    f = min(1.0, 180 / h)
    hs, ws = max(2, round(h * f)), max(2, round(w * f))
    layer = np.zeros((hs, ws, 4), np.float32)
    for _ in range(int(rng.integers(8, 15))):
        centre = (int(rng.uniform(0, ws) * _ONE), int(rng.uniform(0, hs) * _ONE))
        radius = int(rng.uniform(0.02, 0.09) * hs * _ONE)
        cover = rng.uniform(0.25, 0.6)
        tint = [*(cover * rng.uniform(0.1, 1.0, 3)), cover]  # premultiplied
        cv2.circle(layer, centre, radius, tint, -1, cv2.LINE_AA, _SHIFT)
    layer = cv2.GaussianBlur(layer, (0, 0), 0.012 * hs)
    layer = cv2.resize(layer, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = rgb * (1 - layer[..., 3:]) + layer[..., :3]

    grain = _noise(h, w, 0.012 * h, rng, octaves=2, channels=1)
    rgb = rgb * (0.94 + 0.12 * grain)
    return np.clip(rgb, 0, 1).astype(np.float32)


def trimap_from_alpha(alpha: np.ndarray, band: int = 10) -> np.ndarray:
    """Trimap for an (H, W) alpha matte in [0, 1] (any float dtype).

    Returns (H, W) uint8: 128 (unknown) within ``band`` pixels of any
    fractional alpha or of a direct 0/1 alpha edge, otherwise 255 where
    alpha == 1 and 0 where alpha == 0.
    """
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"alpha must be (H, W), got shape {alpha.shape}")
    if band < 0:
        raise ValueError(f"band must be >= 0, got {band}")
    zero = (alpha == 0).astype(np.uint8)
    one = (alpha == 1).astype(np.uint8)
    cross = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(zero, cross) & one) | (cv2.dilate(one, cross) & zero)
    seed = ((zero | one) == 0).astype(np.uint8) | edge
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    unknown = cv2.dilate(seed, kernel) > 0
    trimap = np.where(one > 0, 255, 0).astype(np.uint8)
    trimap[unknown] = 128
    return trimap


# --------------------------------------------------------------------------- helpers


def _noise(h: int, w: int, cell: float, rng: np.random.Generator, octaves: int,
           channels: int) -> np.ndarray:
    """Smooth value noise, (h, w, channels) float32 stretched to [0, 1].

    ``cell`` is the feature size in pixels of the coarsest octave; each further
    octave halves it and its weight.
    """
    # Work at the lowest resolution that still gives the finest octave ~4 pixels.
    f = min(1.0, 4.0 / max(cell / 2 ** (octaves - 1), 1.0))
    hs, ws = max(2, round(h * f)), max(2, round(w * f))
    out = np.zeros((hs, ws, channels), np.float32)
    weight = 1.0
    for octave in range(octaves):
        size = max(f * cell / 2 ** octave, 2.0)
        grid = rng.random((int(hs / size) + 2, int(ws / size) + 2, channels), dtype=np.float32)
        layer = cv2.resize(grid, (ws, hs), interpolation=cv2.INTER_CUBIC)
        out += weight * layer.reshape(hs, ws, channels)
        weight *= 0.5
    lo = out.min(axis=(0, 1))
    hi = out.max(axis=(0, 1))
    out = (out - lo) / np.maximum(hi - lo, 1e-6)
    if (hs, ws) != (h, w):
        out = cv2.resize(out, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, channels)
    return out


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0, 1)
    return t * t * (3 - 2 * t)


def _subject_textures(height: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Colour and opacity textures in canonical space.

    Colours are (th, tw, 3) float32 in [0, 1]; "aux" is (th, tw, 2): where the
    body edge is soft, and the veil's opacity. ``density`` texels make one
    canonical unit: one texel per frame pixel up to 540 lines, coarser above.
    """
    density = min(height, 540)
    th, tw = int(np.ceil(_TEX_SIZE[1] * density)), int(np.ceil(_TEX_SIZE[0] * density))
    v, u = np.mgrid[0:th, 0:tw].astype(np.float32) / density
    u += _TEX_ORIGIN[0]
    v += _TEX_ORIGIN[1]
    n = _noise(th, tw, 0.15 * density, rng, octaves=4, channels=4)
    fine = _noise(th, tw, 0.02 * density, rng, octaves=2, channels=1)[..., 0]

    # Skin lit from the upper left, darker towards the head's rim.
    hu = (u - _HEAD_CENTRE[0]) / _HEAD_RADII[0]
    hv = (v - _HEAD_CENTRE[1]) / _HEAD_RADII[1]
    rim = np.clip(hu * hu + hv * hv, 0, 1.5)
    light = 1.05 - 0.3 * rim - 0.1 * (hu + hv)
    skin = np.array([0.87, 0.63, 0.50], np.float32) * (light * (0.85 + 0.25 * n[..., 0]))[..., None]
    # Garment: wavy diagonal stripes between two dyes, with a woven grain.
    dye_a = np.array([0.72, 0.14, 0.18], np.float32)
    dye_b = np.array([0.92, 0.72, 0.22], np.float32)
    wave = np.sin((u + 0.6 * v) * 2 * np.pi / 0.07 + 3 * n[..., 1])
    stripe = _smoothstep(-0.35, 0.35, wave)[..., None]
    garment = (dye_a * (1 - stripe) + dye_b * stripe) * (0.8 + 0.3 * fine[..., None])
    neckline = _smoothstep(0.01, 0.04, v)[..., None]
    body = skin * (1 - neckline) + garment * neckline

    dark = np.array([0.30, 0.17, 0.08], np.float32)
    blond = np.array([0.98, 0.84, 0.52], np.float32)
    # Darker near the roots, sun-bleached further out, blotchy in between.
    reach = np.sqrt(hu * hu + hv * hv)
    mix = 0.9 * (reach - 0.8) + 0.5 * (n[..., 2] - 0.5) + 0.4 * (fine - 0.5)
    mix = np.clip(mix, 0, 1)[..., None]
    hair = dark * (1 - mix) + blond * mix

    teal = np.array([0.35, 0.80, 0.92], np.float32)
    folds = np.sin((u * 0.9 - v * 0.45) * 2 * np.pi / 0.05 + 4 * n[..., 3])
    veil = teal * (0.85 + 0.15 * folds[..., None]) + 0.1 * n[..., 1:2]
    veil_opacity = 0.45 + 0.11 * folds + 0.08 * (n[..., 0] - 0.5)

    soft = _smoothstep(0.35, 0.65, n[..., 3])  # where the body edge is blurred
    aux = np.dstack([soft, veil_opacity])
    textures = {name: np.clip(tex, 0, 1).astype(np.float32)
                for name, tex in (("body", body), ("hair", hair), ("veil", veil), ("aux", aux))}
    textures["density"] = np.float32(density)
    return textures


def _hair_strands(height: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random strand parameters, rooted just inside the head's upper-left side."""
    count = int(320 * height / 360)
    angle = np.radians(rng.uniform(150, 285, count))
    root = rng.uniform(0.8, 0.97, count)
    return {
        "root": np.stack([_HEAD_CENTRE[0] + root * _HEAD_RADII[0] * np.cos(angle),
                          _HEAD_CENTRE[1] + root * _HEAD_RADII[1] * np.sin(angle)], axis=1),
        "heading": angle + rng.normal(0, 0.3, count),
        "length": 0.04 + 0.16 * rng.random(count) ** 0.7,
        "bend": rng.normal(0, 0.35, count),
        "curl": rng.normal(0, 0.25, count),
        "wave": rng.normal(0, 0.04, count),
        "cycles": rng.uniform(1.0, 2.5, count),
        "phase": rng.uniform(0, 2 * np.pi, count),
        "level": rng.integers(1, len(_HAIR_OPACITY), count),
        "thickness": np.where(rng.random(count) < 0.15, 2, 1),
    }


def _path(width: int, height: int, rng: np.random.Generator) -> dict[str, float]:
    """Per-shot motion parameters for the subject."""
    return {
        "x0": width / 2 - 0.08 * height + rng.uniform(-0.04, 0.04) * height,
        "travel": rng.choice([-1.0, 1.0]) * rng.uniform(0.22, 0.32) * height,
        "y0": 0.57 * height,
        "bob": rng.uniform(0.015, 0.03) * height,
        "phase": rng.uniform(0, 2 * np.pi),
        "tilt": rng.uniform(0.05, 0.1),
        "grow": rng.uniform(-0.07, 0.07),
    }


def _pose(t: float, height: int, path: dict[str, float]) -> np.ndarray:
    """2x3 affine taking canonical units to pixel coordinates at time t in [0, 1]."""
    cx = path["x0"] + (t - 0.5) * path["travel"]
    cy = path["y0"] + path["bob"] * np.sin(2 * np.pi * t + path["phase"])
    theta = path["tilt"] * np.sin(np.pi * t + path["phase"])
    scale = height * (1 + path["grow"] * (t - 0.5))
    c, s = scale * np.cos(theta), scale * np.sin(theta)
    return np.array([[c, -s, cx], [s, c, cy]])


def _apply(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Fixed-point int32 pixel coordinates of canonical points (..., 2)."""
    pixels = points @ pose[:, :2].T + pose[:, 2]
    return np.round(pixels * _ONE).astype(np.int32)


def _ellipse(centre, radii, n: int = 96, wobble=None) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 if wobble is None else wobble(a)
    return np.stack([centre[0] + radii[0] * r * np.cos(a), centre[1] + radii[1] * r * np.sin(a)], 1)


def _superellipse(centre, radii, power: float, n: int = 128) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(a), np.sin(a)
    return np.stack([centre[0] + radii[0] * np.sign(c) * np.abs(c) ** (2 / power),
                     centre[1] + radii[1] * np.sign(s) * np.abs(s) ** (2 / power)], 1)


def _fill(shape, polygons, pose) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the union of canonical polygons."""
    canvas = np.zeros(shape, np.uint8)
    for polygon in polygons:
        cv2.fillPoly(canvas, [_apply(pose, polygon)], 255, cv2.LINE_AA, _SHIFT)
    return canvas.astype(np.float32) / 255.0


def _render_subject(alpha, colour, t, path, textures, hair) -> None:
    """Draw the subject at time t into alpha (H, W) and colour (H, W, 3).

    ``alpha`` must be zero on entry; only the subject's bounding box is
    rendered, and colour outside it is the body texture.
    """
    height, width = alpha.shape
    pose = _pose(t, height, path)
    tex_pose = pose.copy()
    tex_pose[:, 2] += pose[:, :2] @ np.array(_TEX_ORIGIN)
    tex_pose[:, :2] /= textures["density"]

    def warp(tex, size):
        return cv2.warpAffine(tex, tex_pose, size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)

    colour[:] = warp(textures["body"], (width, height))

    def flutter(a):
        return (1 + 0.08 * np.sin(3 * a + 2 * np.pi * t)
                + 0.05 * np.sin(5 * a - 3 * np.pi * t + 1.0))

    head = _ellipse(_HEAD_CENTRE, _HEAD_RADII)
    neck = np.array([[-0.05, -0.08], [0.05, -0.08], [0.055, 0.05], [-0.055, 0.05]])
    torso = _superellipse(_TORSO_CENTRE, _TORSO_RADII, 2.6)
    veil_shape = _ellipse(_VEIL_CENTRE, _VEIL_RADII, 128, flutter)
    strands = _hair_points(t, hair)

    # Bounding box of everything, padded for blur and line width.
    outline = np.concatenate([head, neck, torso, veil_shape, strands.reshape(-1, 2)])
    pixels = outline @ pose[:, :2].T + pose[:, 2]
    pad = 0.07 * height + 4
    x0, y0 = np.maximum(np.floor(pixels.min(0) - pad).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(pixels.max(0) + pad).astype(int), (width, height))
    if x1 <= x0 or y1 <= y0:
        return
    box = (slice(y0, y1), slice(x0, x1))
    shape, size = (y1 - y0, x1 - x0), (x1 - x0, y1 - y0)
    pose[:, 2] -= (x0, y0)
    tex_pose[:, 2] -= (x0, y0)
    aux = warp(textures["aux"], size)

    # Body: crisp anti-aliased outline, blurred where the soft map says so.
    crisp = _fill(shape, [head, neck, torso], pose)
    soft = cv2.GaussianBlur(crisp, (0, 0), 0.015 * height)
    body = crisp + aux[..., 0] * (soft - crisp)

    # Veil: a fluttering translucent shape behind the torso.
    veil = cv2.GaussianBlur(_fill(shape, [veil_shape], pose), (0, 0), 0.004 * height)
    veil *= aux[..., 1]

    hair_alpha = _draw_hair(shape, _apply(pose, strands), hair)

    # Composite the layers back to front with premultiplied colour.
    body_rgb = colour[box]
    acc_a = veil
    acc_c = veil[..., None] * warp(textures["veil"], size)
    for a, rgb in ((body, body_rgb), (hair_alpha, warp(textures["hair"], size))):
        acc_c = a[..., None] * rgb + (1 - a[..., None]) * acc_c
        acc_a = a + (1 - a) * acc_a
    safe = np.maximum(acc_a, 1e-6)[..., None]
    colour[box] = np.clip(np.where(acc_a[..., None] > 0, acc_c / safe, body_rgb), 0, 1)
    alpha[box] = np.where(acc_a < _SNAP, 0.0, np.where(acc_a > 1 - _SNAP, 1.0, acc_a))


def _hair_points(t, hair) -> np.ndarray:
    """Canonical polyline points (strands, samples, 2) of the hair at time t."""
    samples = 20
    s = np.linspace(0, 1, samples)[None, :, None]
    heading = hair["heading"] + 0.12 * np.sin(2 * np.pi * t + hair["phase"])
    d = np.stack([np.cos(heading), np.sin(heading)], 1)[:, None, :]
    n = np.stack([-np.sin(heading), np.cos(heading)], 1)[:, None, :]
    bend = (hair["bend"] + 0.15 * np.sin(2 * np.pi * t + hair["phase"]))[:, None, None]
    curl = hair["curl"][:, None, None]
    length = hair["length"][:, None, None]
    wave = hair["wave"][:, None, None] * np.sin(
        2 * np.pi * hair["cycles"][:, None, None] * s + hair["phase"][:, None, None])
    side = bend * s ** 2 + curl * s ** 3 + wave * s
    return hair["root"][:, None, :] + length * (s * d + side * n)


def _draw_hair(shape, pixels, hair) -> np.ndarray:
    """Alpha (H, W) float32 of strands given as fixed-point pixels (strands, samples, 2).

    Each strand is split into root, middle and tip thirds drawn into opacity
    groups that fade towards the tip; groups combine as a union of coverage.
    """
    groups = [np.zeros(shape, np.uint8) for _ in _HAIR_OPACITY]
    thirds = np.linspace(0, pixels.shape[1] - 1, 4).round().astype(int)
    for strand, level, thickness in zip(pixels, hair["level"], hair["thickness"]):
        for k in range(3):
            chunk = strand[thirds[k]:thirds[k + 1] + 1]
            cv2.polylines(groups[max(level - k, 0)], [chunk], False, 255, int(thickness),
                          cv2.LINE_AA, _SHIFT)
    clear = np.ones(shape, np.float32)
    for canvas, opacity in zip(groups, _HAIR_OPACITY):
        clear *= 1 - opacity * (canvas.astype(np.float32) / 255.0)
    return 1 - clear
