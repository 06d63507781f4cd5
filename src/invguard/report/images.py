"""Turn image arrays into PNG bytes and data URIs (Pillow only, no plotting stack)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from invguard.errors import InvalidParameterError


def to_pil(img: np.ndarray, *, scale: int = 1) -> Image.Image:
    """``(c, h, w)`` or ``(h, w)`` float image in [0, 1] to a Pillow image, upscaled by ``scale``."""
    a = np.asarray(img, dtype=np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0))
    if a.ndim not in (2, 3):
        raise InvalidParameterError(
            f"expected an image of shape (c, h, w) or (h, w), got {a.shape}"
        )
    pil = Image.fromarray((np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    if scale > 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    return pil


def png_bytes(img: np.ndarray | Image.Image, *, scale: int = 1) -> bytes:
    pil = img if isinstance(img, Image.Image) else to_pil(img, scale=scale)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def gallery_grid(
    top: np.ndarray, bottom: np.ndarray, *, columns: int = 10, scale: int = 2, gap: int = 2
) -> Image.Image:
    """A grid of pairs: ``top[i]`` (e.g. a reconstruction) above ``bottom[i]`` (its private match)."""
    if top.shape != bottom.shape or top.ndim != 4:
        raise InvalidParameterError(
            f"gallery rows must be two (n, c, h, w) arrays of one shape, got {top.shape}, {bottom.shape}"
        )
    n, _, h, w = top.shape
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    cell_h, cell_w = 2 * h * scale + gap, w * scale + gap
    canvas = Image.new("L", (cols * cell_w + gap, rows * (cell_h + gap) + gap), color=255)
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = gap + c * cell_w, gap + r * (cell_h + gap)
        canvas.paste(to_pil(top[i], scale=scale), (x0, y0))
        canvas.paste(to_pil(bottom[i], scale=scale), (x0, y0 + h * scale))
    return canvas
