"""The one photo loader, on every planted file of batch_19 and on bytes."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from roomclf.photos import MAX_PIXELS, PhotoError, model_input, open_photo, square_crop

BROKEN = {"corrupt_empty": "empty file", "corrupt_truncated": "truncated image",
          "corrupt_html": "not an image (HTML page)"}
ODD = ("odd_tiny_16x12", "odd_png_rgba", "odd_huge_6000x4500", "odd_grayscale", "odd_exif_rotated", "odd_cmyk")


def planted(ground_truth, subtype):
    found = [p for p, r in ground_truth.items() if r["subtype"] == subtype]
    assert len(found) == 1, subtype
    return found[0]


@pytest.mark.parametrize("subtype", sorted(BROKEN))
def test_broken_files_raise_typed_error_with_reason(ground_truth, corpus_root, subtype):
    path = corpus_root / planted(ground_truth, subtype)
    with pytest.raises(PhotoError) as err:
        open_photo(path)
    assert err.value.reason == BROKEN[subtype]
    with pytest.raises(PhotoError):
        open_photo(path.read_bytes())
    with pytest.raises(PhotoError):
        model_input(path, 224)


@pytest.mark.parametrize("subtype", ODD)
def test_odd_but_valid_files_give_rgb(ground_truth, corpus_root, subtype):
    path = corpus_root / planted(ground_truth, subtype)
    img = open_photo(path)
    assert img.mode == "RGB"
    x = model_input(path, 224)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.std() > 0.01


def test_exif_rotation_is_applied(ground_truth, corpus_root):
    path = corpus_root / planted(ground_truth, "odd_exif_rotated")
    raw = Image.open(path)
    orientation = raw.getexif().get(0x0112)
    assert orientation in (5, 6, 7, 8)  # a quarter turn: upright means width and height swap
    assert open_photo(path).size == (raw.size[1], raw.size[0])


def test_alpha_is_composited_on_white(ground_truth, corpus_root, tmp_path):
    assert Image.open(corpus_root / planted(ground_truth, "odd_png_rgba")).mode == "RGBA"
    rgba = Image.new("RGBA", (40, 40), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 20, 40))            # left half fully transparent
    rgba.save(tmp_path / "a.png")
    img = np.asarray(open_photo(tmp_path / "a.png"))
    assert (img[:, :20] == 255).all() and (img[:, 20:] == [0, 0, 255]).all()


def test_cmyk_and_grayscale_become_rgb_with_sane_colours(ground_truth, corpus_root):
    cmyk = corpus_root / planted(ground_truth, "odd_cmyk")
    assert Image.open(cmyk).mode == "CMYK"
    arr = np.asarray(open_photo(cmyk), dtype=np.float32)
    assert 20 < arr.mean() < 235   # not inverted to black or white
    gray = np.asarray(open_photo(corpus_root / planted(ground_truth, "odd_grayscale")))
    assert np.array_equal(gray[..., 0], gray[..., 1])


def test_huge_jpeg_is_drafted_down(ground_truth, corpus_root):
    path = corpus_root / planted(ground_truth, "odd_huge_6000x4500")
    full = open_photo(path)
    small = open_photo(path, target=224)
    assert max(full.size) == 6000
    assert min(small.size) >= 224 and max(small.size) < 1600


def test_decompression_bomb_is_refused(tmp_path):
    side = int(MAX_PIXELS ** 0.5) + 100
    bomb = tmp_path / "bomb.png"
    Image.new("1", (side, side)).save(bomb)  # tiny file, huge image
    with pytest.raises(PhotoError) as err:
        open_photo(bomb)
    assert "pixels" in err.value.reason


def test_square_crop_and_range(tmp_path):
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    out = square_crop(img, 100)
    assert out.size == (100, 100)
    x = model_input(img, 64)
    assert x.shape == (3, 64, 64) and np.allclose(x[0], 1.0) and np.allclose(x[1], 0.0)


def test_bytes_and_path_give_same_input(corpus_root):
    path = next((corpus_root / "batch_01").rglob("*.jpg"))
    assert np.array_equal(model_input(path, 224), model_input(Path(path).read_bytes(), 224))


def test_missing_file_is_a_photo_error(tmp_path):
    with pytest.raises(PhotoError) as err:
        open_photo(tmp_path / "nope.jpg")
    assert "cannot read" in err.value.reason


def reencoded(path: Path, fmt: str, **save) -> bytes:
    """A corpus photo saved in another format, as a crawl or an upload may bring it."""
    import io

    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format=fmt, **save)
    return buf.getvalue()


@pytest.mark.parametrize("fmt, name", [("TIFF", "TIFF"), ("EPS", "EPS"), ("GIF", "GIF"), ("BMP", "BMP"),
                                       ("PPM", "PPM")])
def test_formats_outside_the_allow_list_are_never_decoded(corpus_root, tmp_path, fmt, name):
    data = reencoded(corpus_root / "batch_01/listing_0003/photo_01.jpg", fmt)
    (tmp_path / "photo_01.jpg").write_bytes(data)            # a crawled file: its name says nothing
    for src in (data, tmp_path / "photo_01.jpg"):
        with pytest.raises(PhotoError) as err:
            open_photo(src)
        assert err.value.reason == f"unsupported image format {name} (accepted: JPEG, PNG, WEBP)"
        assert err.value.kind == PhotoError.UNSUPPORTED
    with pytest.raises(PhotoError):
        model_input(data, 224)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_allowed_formats_still_open(corpus_root, fmt):
    data = reencoded(corpus_root / "batch_01/listing_0003/photo_01.jpg", fmt, quality=90)
    assert open_photo(data).mode == "RGB" and model_input(data, 224).shape == (3, 224, 224)


def test_every_format_the_corpus_holds_is_allowed(corpus_root, ground_truth):
    """Each photo of the corpus opens with the allow-list, except the planted broken files."""
    from roomclf.photos import PHOTO_FORMATS

    seen = set()
    for rel, row in sorted(ground_truth.items()):
        if row["subtype"] in BROKEN:
            continue
        with Image.open(corpus_root / rel, formats=PHOTO_FORMATS) as img:   # the header only: quick
            seen.add(img.format)
    assert seen == {"JPEG", "PNG"}
