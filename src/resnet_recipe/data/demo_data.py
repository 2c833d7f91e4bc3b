"""The embedded demo dataset: scikit-learn's handwritten digits as an ImageNet-style tree.

scikit-learn ships the 1,797 8x8 digits of the UCI optical recognition set, so the demo
needs no download. Each digit is rendered as a small RGB JPEG of its own size, aspect ratio,
colours and contrast (so random resized crops and colour statistics are real), into
root/train/digit<k>/ and root/val/digit<k>/ with a stratified split. A few files are the
oddities real datasets have (a PNG and a CMYK and a grayscale JPEG under .JPEG names), so
the demo runs the image check's re-encoding path. Same seed, same bytes.
"""

import io
import logging
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from resnet_recipe.files.atomic_files import atomic_directory

log = logging.getLogger(__name__)

SIDE_PIXELS = (20, 48)
ASPECT_RATIOS = (3 / 4, 4 / 3)
JPEG_QUALITY = (75, 95)
PROGRESSIVE_FRACTION = 0.2
# Channel values (0-255) of the ink and the paper: every pair differs by at least 80.
INK_RANGE = (0, 90)
PAPER_RANGE = (170, 255)
NOISE_SIGMA = 4.0
# (split, class): how the first image of that class in that split is stored.
ODDITIES = {
    ("train", 1): "png",
    ("train", 2): "cmyk",
    ("train", 3): "grayscale",
    ("val", 4): "png",
}


def class_folder(digit):
    return f"digit{digit}"


def write_demo_tree(root, seed=0, val_fraction=0.2):
    """Write root/train and root/val (each replaced as a whole, atomically); returns
    {split: number of images}."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    splits = split_per_class(digits.target, val_fraction, rng)
    counts = {}
    for split, indices in splits.items():
        with atomic_directory(os.path.join(root, split)) as folder:
            seen_classes = set()
            for index in indices:
                digit = int(digits.target[index])
                kind = "jpeg" if digit in seen_classes else ODDITIES.get((split, digit), "jpeg")
                seen_classes.add(digit)
                image = render_digit(digits.images[index] / 16.0, rng)
                os.makedirs(os.path.join(folder, class_folder(digit)), exist_ok=True)
                name = f"{class_folder(digit)}/{class_folder(digit)}_{index:04d}.JPEG"
                with open(os.path.join(folder, name), "wb") as out:
                    out.write(encode(image, kind, rng))
        counts[split] = len(indices)
    log.info("demo tree in %s: %d train and %d val images", root, counts["train"], counts["val"])
    return counts


def split_per_class(targets, val_fraction, rng):
    """{"train": indices, "val": indices}: val_fraction of every class goes to val."""
    train, val = [], []
    for digit in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == digit))
        n_val = int(round(val_fraction * len(members)))
        val += members[:n_val].tolist()
        train += members[n_val:].tolist()
    return {"train": sorted(train), "val": sorted(val)}


def render_digit(intensity, rng):
    """An RGB image of one digit (8x8 intensities in [0, 1]) at a random size and aspect
    ratio, in a dark ink on a light paper colour, with a little noise."""
    side = rng.uniform(*SIDE_PIXELS)
    aspect = np.exp(rng.uniform(*np.log(ASPECT_RATIOS)))
    width = int(np.clip(round(side * np.sqrt(aspect)), *SIDE_PIXELS))
    height = int(np.clip(round(side / np.sqrt(aspect)), *SIDE_PIXELS))
    gray = Image.fromarray((intensity * 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    ink, paper = contrasting_colours(rng)
    strength = np.asarray(gray, dtype=np.float32)[..., None] / 255.0
    pixels = paper + (ink - paper) * strength
    pixels += rng.normal(0.0, NOISE_SIGMA, pixels.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")


def contrasting_colours(rng):
    """A dark ink and a light paper colour, each tinted at random. The ink is always the
    darker of the two, as in the scanned digits: every image shows its strokes the same way
    round, which keeps ten classes learnable from 1,400 images in the CPU demo's epochs."""
    return rng.uniform(*INK_RANGE, size=3), rng.uniform(*PAPER_RANGE, size=3)


def encode(image, kind, rng):
    """The file bytes of an image stored as `kind`: jpeg, png, cmyk or grayscale."""
    out = io.BytesIO()
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    if kind == "png":
        image.save(out, format="PNG")
    elif kind == "cmyk":
        image.convert("CMYK").save(out, format="JPEG", quality=quality)
    elif kind == "grayscale":
        image.convert("L").save(out, format="JPEG", quality=quality)
    else:
        progressive = bool(rng.random() < PROGRESSIVE_FRACTION)
        image.save(out, format="JPEG", quality=quality, progressive=progressive)
    return out.getvalue()
