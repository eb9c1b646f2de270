"""The one place that opens a photo and turns it into model input.

``open_photo`` takes a path or bytes and returns an upright RGB PIL image, or
raises ``PhotoError`` with a short reason. ``model_input`` is the single
preprocessing function (shorter side to ``size``, centre crop, float32 CHW in
[0, 1]) shared by training, ONNX inference, serving and the labelling app.
Normalisation is *not* done here: it is baked into every exported model.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from roomclf import storage
from roomclf.errors import RoomclfError

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
# The only PIL decoders a photo may reach, from the crawl or an upload (the corpus holds JPEG and PNG).
# A camera JPEG carrying a second picture still opens, through the JPEG decoder, as PIL's "MPO".
# Anything else (TIFF, EPS, GIF, BMP, PSD, AVIF...) is refused before its decoder runs: a PhotoError
# of kind UNSUPPORTED.
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_PIXELS = 60_000_000          # decompression-bomb limit (a 6000x4500 photo is 27 MP)
MAX_BYTES = 100 * 1024 * 1024    # no listing photo is bigger than this
MIN_SIDE = 8                     # smaller than this is not a photo


class PhotoError(RoomclfError):
    """A file that cannot be used as a photo. ``reason`` is one short phrase; ``kind`` says
    which sort of problem it is, for callers that map it (serving: to an HTTP status)."""

    EMPTY, NOT_IMAGE, TOO_LARGE, UNREADABLE, UNDECODABLE = "empty", "not_image", "too_large", "unreadable", "undecodable"
    UNSUPPORTED = "unsupported"     # an image, but not of PHOTO_FORMATS

    def __init__(self, reason: str, source: str = "", kind: str = "undecodable"):
        super().__init__(f"{source}: {reason}" if source else reason)
        self.reason = reason
        self.source = source
        self.kind = kind


def _read_bytes(src: str | os.PathLike | bytes) -> tuple[bytes, str]:
    """The bytes of a photo given as bytes, a local path or an object-store URI (read through roomclf.storage)."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), "<bytes>"
    if not storage.is_uri(src):
        src = src if isinstance(src, Path) else Path(src)
    name = str(src)
    try:
        return storage.read_bytes(src, MAX_BYTES), name
    except storage.TooLarge as exc:
        raise PhotoError(f"file too large ({exc.size / 1e6:.0f} MB)", name, PhotoError.TOO_LARGE) from None
    except OSError as exc:
        raise PhotoError(f"cannot read file ({exc.strerror or exc})", name, PhotoError.UNREADABLE) from None


def _sniff_non_image(data: bytes) -> str | None:
    if not data:
        return "empty file"
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")) or b"<html" in head:
        return "not an image (HTML page)"
    if head.startswith((b"{", b"[")):
        return "not an image (JSON text)"
    return None


# Signatures of image formats PIL could decode but PHOTO_FORMATS leaves out, to name them in the refusal.
_OTHER_FORMATS = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"%!PS", "EPS"), (b"\xc5\xd0\xd3\xc6", "EPS"),
                  (b"GIF8", "GIF"), (b"BM", "BMP"), (b"8BPS", "PSD"), (b"%PDF", "PDF"), (b"\x00\x00\x01\x00", "ICO"),
                  (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"), (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"P6", "PPM"))


def _other_format(data: bytes) -> str | None:
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIF/AVIF"
    return None


def open_photo(src: str | os.PathLike | bytes, target: int | None = None) -> Image.Image:
    """Open a photo as an upright RGB image.

    ``target``: the smallest side the caller needs; large JPEGs are then decoded
    at reduced size (PIL draft mode), which is much faster and lighter.
    Raises ``PhotoError`` for empty, truncated, non-image, huge or tiny files, and for images
    in a format outside ``PHOTO_FORMATS`` (never handed to their decoder).
    """
    data, name = _read_bytes(src)
    reason = _sniff_non_image(data)
    if reason:
        raise PhotoError(reason, name, PhotoError.EMPTY if not data else PhotoError.NOT_IMAGE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise PhotoError(f"too many pixels ({w}x{h}), refusing a possible decompression bomb", name)
            if min(w, h) < MIN_SIDE:
                raise PhotoError(f"too small to be a photo ({w}x{h})", name)
            if target and img.format == "JPEG":
                # draft keeps at least the requested size, EXIF rotation or not
                img.draft("RGB", (target, target))
            img.load()
    except PhotoError:
        raise
    except UnidentifiedImageError:
        other = _other_format(data)
        if other:
            raise PhotoError(f"unsupported image format {other} (accepted: {', '.join(PHOTO_FORMATS)})", name,
                             PhotoError.UNSUPPORTED) from None
        raise PhotoError("not an image (unknown format)", name, PhotoError.NOT_IMAGE) from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PhotoError("too many pixels, refusing a possible decompression bomb", name) from None
    except OSError as exc:
        text = str(exc).lower()
        if "truncated" in text or "premature" in text or "broken" in text:
            raise PhotoError("truncated image", name) from None
        raise PhotoError(f"cannot decode image ({exc})", name) from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise PhotoError(f"cannot decode image ({exc})", name) from None
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block: keep the image as stored
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited on white."""
    if img.mode == "RGB":
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float32)
        arr = 255.0 * (arr - arr.min()) / max(float(arr.max() - arr.min()), 1.0)
        return Image.fromarray(arr.astype(np.uint8)).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, F


def square_crop(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and crop the centre square."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=2.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def to_array(img: Image.Image | np.ndarray) -> np.ndarray:
    """RGB image (PIL or uint8 HWC, or a uint8 NHWC stack) -> float32 CHW (NCHW) in [0, 1]."""
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return np.ascontiguousarray(np.moveaxis(arr, -1, -3))


def model_pixels(src: str | os.PathLike | bytes | Image.Image, size: int) -> np.ndarray:
    """The model's view of a photo as uint8 size x size x 3 (compact, e.g. to ship between processes)."""
    img = src if isinstance(src, Image.Image) else open_photo(src, target=size)
    return np.asarray(square_crop(to_rgb(img), size), dtype=np.uint8)


def model_input(src: str | os.PathLike | bytes | Image.Image, size: int) -> np.ndarray:
    """The model-input preprocessing: photo -> float32 3 x size x size in [0, 1]."""
    return to_array(model_pixels(src, size))


def model_inputs(sources: list, size: int) -> tuple[list[np.ndarray], list[int], dict[int, PhotoError]]:
    """``model_input`` over a batch of sources, the one batch loader of every bulk path (embeddings,
    ``OnnxModel.run_sources``, infer-all's engines): (the arrays of the readable ones, their indices in
    ``sources``, {index: PhotoError} of the others). No photo stops the batch: whatever one photo raises
    becomes its PhotoError, except ``storage.StorageError`` (storage that cannot be used as configured fails
    every photo alike, so it stops the run with its one-line message)."""
    arrays, readable, unreadable = [], [], {}
    for i, src in enumerate(sources):
        try:
            arrays.append(model_input(src, size))
            readable.append(i)
        except PhotoError as exc:
            unreadable[i] = exc
        except storage.StorageError:
            raise
        except Exception as exc:
            unreadable[i] = PhotoError(f"cannot read photo ({type(exc).__name__}: {exc})"[:300],
                                       "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else str(src),
                                       PhotoError.UNREADABLE)
    return arrays, readable, unreadable


def thumbnail(src: str | os.PathLike | bytes, size: int = 256) -> Image.Image:
    """An upright RGB thumbnail whose longer side is at most ``size``."""
    img = open_photo(src, target=size)
    img.thumbnail((size, size), Image.BILINEAR)
    return img
