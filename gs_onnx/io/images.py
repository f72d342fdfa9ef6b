"""Image loading, the paper's preprocessing, and PNG output.

Images inside gs-onnx are float32 arrays of shape (3, H, W) (C, H, W order, as the generators and the
measurement operators flatten them) with values in [0, 1].
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from ..errors import GSError

Crop = Literal["auto", "aligned", "center", "none"]

#: CelebA ``img_align_celeba`` images are 178 x 218; the paper crops 128 x 128 at top 51, left 26.
ALIGNED_SIZE = (178, 218)
ALIGNED_BOX = (26, 51, 26 + 128, 51 + 128)  # left, top, right, bottom


log = logging.getLogger(__name__)

#: Pillow modes read as 8-bit RGB (Pillow converts them exactly); those with alpha lose it (logged).
_RGB8 = {"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
_ALPHA = {"RGBA", "LA", "PA", "La", "RGBa"}
_GRAY16 = {"I;16", "I;16B", "I;16L", "I;16N"}


#: EXIF orientation (tag 0x0112) -> the numpy steps that make an (H, W, C) array upright, as Pillow's
#: ``ImageOps.exif_transpose`` does for 8-bit images (2: mirrored, 3: upside down, 6: rotated 90 degrees, ...).
_UPRIGHT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}


def orientation(im) -> int:
    """The EXIF orientation of an open PIL image (1, upright, where there is none or it is not 1-8)."""
    try:
        o = im.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block: Pillow raises many types; the pixels are still the image
        return 1
    return o if isinstance(o, int) and 1 <= o <= 8 else 1


def image_orientation(path: str | Path) -> int:
    """The EXIF orientation of the image file at ``path`` (1 where it has none), which :func:`load_image`
    applies: recorded per source by gs-measure."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return orientation(im)
    except Exception:  # unreadable here: load_image has already said why, or will
        return 1


def _open_rgb(path: str | Path):
    """The one image decoder: a PIL RGB image (8-bit modes), or a float32 (H, W, 3) array in [0, 1] for
    16-bit and float images, each converted by its real range; anything else is refused by name, and a
    decompression bomb is refused before it is decoded. The EXIF orientation is applied (a phone's portrait
    photo is stored sideways with a tag saying so), so the image is measured upright."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if isinstance(path, (str, Path)):  # a FIFO or a device would block the decoder forever
        from .paths import regular_file

        regular_file(Path(path), "image", "not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                mode, fmt, size = im.mode, im.format, im.size
                if size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
                    raise GSError(f"image {path} has {size[0]}x{size[1]} pixels: too large to decode safely")
                im.load()
                turn = orientation(im)
                if mode in _RGB8 or mode in _ALPHA:
                    if mode in _ALPHA or (mode == "P" and "transparency" in im.info):
                        log.warning("image %s has an alpha channel: it is ignored", path)
                    rgb = im.convert("RGB")
                    return rgb if turn == 1 else _upright_pil(rgb, turn)
                a = np.asarray(im)
    except GSError:
        raise
    except FileNotFoundError:
        raise GSError(f"image not found: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise GSError(f"image {path} is too large to decode safely (a decompression bomb?)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise GSError(f"unreadable image {path}: {' '.join(str(e).split())}") from None
    if mode in _GRAY16 or (mode == "I" and fmt in ("PNG", "TIFF") and a.size and 0 <= a.min() and a.max() <= 65535):
        x = a.astype(np.float32) / 65535.0
    elif mode == "F":
        x = a.astype(np.float32)
        if not np.isfinite(x).all() or (x.size and (x.min() < 0 or x.max() > 1)):
            raise GSError(f"float image {path} has values outside [0, 1] (min {np.nanmin(x):.3g}, max "
                          f"{np.nanmax(x):.3g}): scale it to [0, 1] first")
    else:
        raise GSError(f"image {path} has Pillow mode {mode!r}, whose value range is not known here: convert it "
                      "to 8-bit or 16-bit RGB or grayscale")
    x = np.repeat(x[:, :, None], 3, axis=2) if x.ndim == 2 else x
    return x if turn == 1 else np.ascontiguousarray(_UPRIGHT[turn](x))


def _upright_pil(img, turn: int):
    """An RGB PIL image turned upright by the numpy steps of :data:`_UPRIGHT` (the same for 8-bit and float
    images; tests check them against Pillow's ``ImageOps.exif_transpose``)."""
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(_UPRIGHT[turn](np.asarray(img))))


def preprocess(img, size: int, crop: Crop = "auto", name: str = "image"):
    """Crop and resize a PIL image to ``size`` x ``size`` RGB.

    ``crop``: ``aligned`` crops the CelebA aligned box (top 51, left 26, 128 x 128); ``center`` takes the
    largest centred square; ``none`` only resizes; ``auto`` picks ``aligned`` for 178 x 218 images, else
    ``center``. Resizing uses Lanczos (a no-op when the size already matches).
    """
    from PIL import Image

    if isinstance(img, np.ndarray):  # a high-bit-depth image decoded to float: the same crop, per-channel resize
        return _preprocess_float(img, size, crop, name)
    if crop == "auto":
        crop = "aligned" if img.size == ALIGNED_SIZE else "center"
    if crop == "aligned":
        if img.size != ALIGNED_SIZE:
            raise GSError(f"aligned crop needs a 178x218 CelebA aligned image, got {img.size[0]}x{img.size[1]}")
        img = img.crop(ALIGNED_BOX)
    elif crop == "center":
        w, h = img.size
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        img = img.crop((left, top, left + s, top + s))
    elif crop != "none":
        raise GSError(f"unknown crop mode {crop!r}")
    if img.size != (size, size):
        if min(img.size) < size:
            log.warning("%s is %dx%d after cropping: upscaled to %dx%d", name, img.size[0], img.size[1], size, size)
        img = img.resize((size, size), Image.LANCZOS)
    return img


def _preprocess_float(a: np.ndarray, size: int, crop: Crop, name: str):
    from PIL import Image

    h, w = a.shape[:2]
    if crop == "auto":
        crop = "aligned" if (w, h) == ALIGNED_SIZE else "center"
    if crop == "aligned":
        if (w, h) != ALIGNED_SIZE:
            raise GSError(f"aligned crop needs a 178x218 CelebA aligned image, got {w}x{h}")
        l, t, r, b = ALIGNED_BOX
        a = a[t:b, l:r]
    elif crop == "center":
        s = min(w, h)
        a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    elif crop != "none":
        raise GSError(f"unknown crop mode {crop!r}")
    if a.shape[:2] != (size, size):
        if min(a.shape[:2]) < size:
            log.warning("%s is %dx%d after cropping: upscaled to %dx%d", name, a.shape[1], a.shape[0], size, size)
        a = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(a[:, :, k]), mode="F")
                                 .resize((size, size), Image.LANCZOS)) for k in range(3)], axis=2)
    return np.clip(a, 0.0, 1.0)


def load_image(path: str | Path, size: int, crop: Crop = "auto") -> np.ndarray:
    """Load one image as float32 (3, size, size) in [0, 1] after :func:`preprocess`."""
    img = preprocess(_open_rgb(path), size, crop, str(path))
    if isinstance(img, np.ndarray):
        return np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32)
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0


def load_uint8(path: str | Path, size: int, crop: Crop = "auto") -> np.ndarray:
    """Load one image as uint8 (size, size, 3) after :func:`preprocess` (for training sets)."""
    img = preprocess(_open_rgb(path), size, crop, str(path))
    if isinstance(img, np.ndarray):
        return (img * 255.0 + 0.5).astype(np.uint8)
    return np.asarray(img, dtype=np.uint8)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise GSError(f"not a folder: {folder}")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GSError(f"no images in {folder}")
    return files


def to_uint8(x: np.ndarray) -> np.ndarray:
    """(3, H, W) float in [0, 1] (values outside are clamped) -> (H, W, 3) uint8."""
    x = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float32)), 0.0, 1.0)
    return (x.transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)


def save_png(x: np.ndarray, path: str | Path) -> None:
    """Write a (3, H, W) image in [0, 1] as an RGB PNG."""
    from PIL import Image

    Image.fromarray(to_uint8(x)).save(path, format="PNG")


def grid(images: Iterable[np.ndarray], ncol: int, pad: int = 2) -> np.ndarray:
    """Tile (3, H, W) images into one (3, H', W') image, ``ncol`` per row, white padding."""
    ims = [np.asarray(i, dtype=np.float32) for i in images]
    if not ims:
        raise GSError("no images to tile")
    c, h, w = ims[0].shape
    nrow = (len(ims) + ncol - 1) // ncol
    out = np.ones((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), dtype=np.float32)
    for i, im in enumerate(ims):
        r, q = divmod(i, ncol)
        out[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = im
    return out


def labelled(panels: list[tuple[np.ndarray, str]], caption: str = "", scale: int | None = None) -> np.ndarray:
    """Images side by side, each with its label above, and a caption line below: an (3, H', W') float32
    image in [0, 1] for :func:`save_png`. Small images are enlarged (nearest) to at least 128 px."""
    from PIL import Image, ImageDraw, ImageFont

    tiles = [to_uint8(x) for x, _ in panels]
    h, w = tiles[0].shape[:2]
    k = scale or max(1, 128 // max(h, 1))
    tiles = [t.repeat(k, axis=0).repeat(k, axis=1) for t in tiles]
    h, w = h * k, w * k
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the bitmap font has one size
        font = ImageFont.load_default()
    pad, top, bottom = 6, 20, 22 if caption else 6
    W = len(tiles) * w + (len(tiles) + 1) * pad
    canvas = Image.new("RGB", (W, top + h + bottom), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for j, (t, (_, label)) in enumerate(zip(tiles, panels)):
        x0 = pad + j * (w + pad)
        canvas.paste(Image.fromarray(t), (x0, top))
        draw.text((x0, 3), label, fill=(0, 0, 0), font=font)
    if caption:
        draw.text((pad, top + h + 4), caption, fill=(0, 0, 0), font=font)
    return np.asarray(canvas, dtype=np.float32).transpose(2, 0, 1) / 255.0


def heatmap(values: np.ndarray, top: float) -> np.ndarray:
    """(H, W) values from 0 to ``top`` (clamped) as a (3, H, W) image in [0, 1]: black, red, yellow, white (a
    black-body scale: dark is small), for maps such as where restarts disagree."""
    t = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float32)) / float(top), 0.0, 1.0)
    return np.stack([np.clip(3 * t, 0, 1), np.clip(3 * t - 1, 0, 1), np.clip(3 * t - 2, 0, 1)]).astype(np.float32)
