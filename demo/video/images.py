"""Still images as queries: a photo, or a frame someone saved from a video."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demo.errors import InputError

MAX_PIXELS = 50_000_000  # a larger "image" is refused before it is decoded (a decompression bomb)


def load_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as (H, W, 3) uint8 RGB (transparency dropped, the first frame of an
    animation). An InputError says why a file cannot be used."""
    from PIL import Image, UnidentifiedImageError  # here: only image queries need it

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p.name}: no such image file")
    try:
        with Image.open(p) as image:
            if image.width * image.height > MAX_PIXELS:
                raise InputError(f"{p.name} is {image.width}x{image.height} pixels; the limit is "
                                 f"{MAX_PIXELS // 1_000_000} megapixels")
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"{p.name} is not an image this app can read (a JPEG, PNG, WebP, ...)") from err
    array = np.array(rgb, dtype=np.uint8)  # a writable copy (torch warns on read-only arrays)
    if min(array.shape[:2]) < 1:
        raise InputError(f"{p.name} has no pixels")
    return array
