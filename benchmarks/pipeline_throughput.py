"""Images/s of the DALI CPU input pipelines on ImageNet-sized JPEGs.

Builds a .rec of 500x375 JPEGs cut from scikit-learn's two sample photos, then times
resnet_recipe.data.pipelines (ImageNet settings, dali-cpu, one CPU context, float32, the
batches handed over as MXNet arrays) against a one-thread Pillow loader doing the same
decode, random-resized crop, flip and normalize in the same run (best of interleaved rounds).
Prints images/s and the ratio.

    .venv/bin/python benchmarks/pipeline_throughput.py [--threads 2] [--batch 64] [--rounds 3]
"""

import argparse
import io
import tempfile
import time

import mxnet as mx
import numpy as np
from PIL import Image
from sklearn.datasets import load_sample_images

from resnet_recipe.data import pipelines
from resnet_recipe.workflow_support.settings import InputPipeline

IMAGENET_INPUT = InputPipeline(backend="dali-cpu")


def imagenet_sized_jpegs(count, seed=0):
    """`count` JPEG byte strings of 500x375, random crops of the sample photos (quality 90)."""
    rng = np.random.default_rng(seed)
    photos = [Image.fromarray(image) for image in load_sample_images().images]
    jpegs = []
    for index in range(count):
        photo = photos[index % len(photos)]
        left, top = rng.integers(0, 140), rng.integers(0, 100)
        crop = photo.crop((left, top, left + 500, top + 327)).resize((500, 375))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    return jpegs


def write_rec(jpegs, prefix):
    writer = mx.recordio.MXIndexedRecordIO(f"{prefix}.idx", f"{prefix}.rec", "w")
    for index, jpeg in enumerate(jpegs):
        header = mx.recordio.IRHeader(0, float(index % 10), index, 0)
        writer.write_idx(index, mx.recordio.pack(header, jpeg))
    writer.close()
    return f"{prefix}.rec", f"{prefix}.idx"


def dali_images_per_s(make, rec, idx, settings, batch, iterations, warmup=3):
    """Images/s of a pipelines.train_batches/val_batches stream on one CPU context."""
    batches = make(
        rec,
        idx,
        [mx.cpu()],
        batch_per_device=batch,
        settings=settings,
        iterations=warmup + iterations,
    )
    stream = iter(batches)
    for _ in range(warmup):
        next(stream)
    start = time.perf_counter()
    for device_batches in stream:
        device_batches[0].data.wait_to_read()
    return iterations * batch / (time.perf_counter() - start)


def pillow_images_per_s(jpegs, settings, seconds=3.0, seed=0):
    """Images/s of a one-thread Pillow loader: decode, random-resized crop, flip, normalize."""
    rng = np.random.default_rng(seed)
    size = settings.image_size
    mean, std = np.array(settings.mean), np.array(settings.std)
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        image = Image.open(io.BytesIO(jpegs[done % len(jpegs)])).convert("RGB")
        area = image.width * image.height * rng.uniform(settings.min_random_area, 1.0)
        ratio = rng.uniform(settings.min_aspect_ratio, settings.max_aspect_ratio)
        width = min(image.width, int(round((area * ratio) ** 0.5)))
        height = min(image.height, int(round((area / ratio) ** 0.5)))
        left = rng.integers(0, image.width - width + 1)
        top = rng.integers(0, image.height - height + 1)
        crop = image.resize(
            (size, size), Image.BILINEAR, box=(left, top, left + width, top + height)
        )
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        ((np.asarray(crop, dtype=np.float32) - mean) / std).transpose(2, 0, 1)
        done += 1
    return done / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="DALI threads")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=20, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--images", type=int, default=512, help="JPEGs in the .rec")
    args = parser.parse_args()
    settings = IMAGENET_INPUT.replace(dali_threads=args.threads)
    jpegs = imagenet_sized_jpegs(args.images)
    best = {"train": 0.0, "val": 0.0, "pillow": 0.0}
    with tempfile.TemporaryDirectory() as folder:
        rec, idx = write_rec(jpegs, f"{folder}/imagenet_sized")
        # Interleaved rounds, best of each: other load on the machine hits all three alike.
        for _ in range(args.rounds):
            for name, make in (("train", pipelines.train_batches), ("val", pipelines.val_batches)):
                rate = dali_images_per_s(make, rec, idx, settings, args.batch, args.iterations)
                best[name] = max(best[name], rate)
            best["pillow"] = max(best["pillow"], pillow_images_per_s(jpegs, settings))
    kilobytes = sum(map(len, jpegs)) / len(jpegs) / 1024
    print(f"JPEGs: 500x375, {kilobytes:.0f} KiB on average; batch {args.batch}, float32, 224 px")
    print(f"DALI CPU training pipeline, {args.threads} threads: {best['train']:.1f} images/s")
    print(f"DALI CPU validation pipeline, {args.threads} threads: {best['val']:.1f} images/s")
    print(f"Pillow loader, 1 thread (baseline): {best['pillow']:.1f} images/s")
    print(f"training pipeline / Pillow: {best['train'] / best['pillow']:.2f}")


if __name__ == "__main__":
    main()
