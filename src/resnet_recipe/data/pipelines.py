"""Input pipelines: DALI training and validation pipelines over .rec/.idx, and synthetic data.

The training loop, scoring and the benchmarks all read batches the same way:

    train = train_batches(rec, idx, contexts, batch_per_device=b, settings=input, seed=s)
    for epoch in range(epochs):
        for device_batches in train:          # one `for` is one epoch of train.iterations
            for ctx_batch in device_batches:  # one DeviceBatch per context, in context order
                ctx_batch.data, ctx_batch.label, ctx_batch.valid

`settings` is the config's `input` section (settings.InputPipeline). One DALI pipeline per
context reads its own shard of the records. On a GPU context the backend decides where JPEGs
are decoded (`dali-gpu`: nvJPEG, "mixed"; `dali-cpu`: host threads); the rest of the work and
the outputs are on that GPU. On a CPU context everything runs on the host whatever the
backend, which is what lets a GPU configuration run, and be tested, on a machine without a
GPU. `synthetic` yields fixed random tensors that live on each device, for benchmarks.

Images come in the layout the network runs in (`layout` of the stream): NCHW, or NHWC
padded to 4 channels with zeros, as the original's pipelines made them for float16
(output_layout and pad_output of crop-mirror-normalize; dali.py L112, L119-120).
"""

import os
from dataclasses import dataclass
from typing import NamedTuple

import mxnet as mx
import numpy as np
from nvidia.dali import Pipeline, fn, types
from nvidia.dali.plugin.mxnet import DALIGenericIterator, LastBatchPolicy

from resnet_recipe.data.input_layout import IMAGE_CHANNELS, input_shape
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.settings import LAYOUTS, InputPipeline

BACKENDS = ("dali-gpu", "dali-cpu", "synthetic")
DALI_DTYPES = {"float32": types.FLOAT, "float16": types.FLOAT16}
READER = "Reader"
MIB = 1024 * 1024


class DeviceBatch(NamedTuple):
    """One context's share of an iteration.

    data: images in the stream's layout (float32 or float16); label: float32 class ids,
    shape (batch,); valid: how many leading samples are real images. Always the full batch
    in training; in validation the rest of the last batch of a shard is padding and must
    not be scored.
    """

    data: mx.nd.NDArray
    label: mx.nd.NDArray
    valid: int


class Placement(NamedTuple):
    """Where one context's pipeline decodes (`cpu`|`mixed`) and computes its outputs."""

    decoder: str
    output: str
    device_id: int | None


@dataclass(frozen=True)
class Stream:
    """Everything that decides one stream of batches: what train_batches or val_batches
    was asked for, handed as one thing to the pieces that build it."""

    kind: str  # "train" or "val"
    rec: str
    idx: str
    contexts: tuple
    batch_per_device: int
    settings: InputPipeline
    dtype: str = "float32"
    layout: str = "NCHW"  # NHWC: channels last, padded to 4
    seed: int = 0
    iterations: int | None = None  # None: an epoch of the records
    num_classes: int | None = None  # labels of synthetic batches
    # Global DALI shard of the first context and shards over all workers (None: one per
    # context): a distributed worker reads only its part of the records.
    first_shard: int = 0
    total_shards: int | None = None
    # Shards every pipeline starts further on (modulo shards): a training pipeline built
    # for one epoch starts where one pipeline running from the first epoch would be.
    shard_offset: int = 0

    @property
    def shards(self):
        return self.total_shards or len(self.contexts)


class Batches:
    """Iterable of epochs: each `for` over it yields `iterations` lists of DeviceBatch.

    Epochs follow each other without a reset call: when the underlying DALI epoch ends,
    the next one starts. A consumer that stops early simply continues where it stopped at
    the next `for` (benchmarks rely on this).
    """

    def __init__(self, next_batch, iterations, contexts):
        self._next_batch = next_batch
        self.iterations = iterations
        self.contexts = list(contexts)

    def __len__(self):
        return self.iterations

    def __iter__(self):
        for _ in range(self.iterations):
            yield self._next_batch()


def train_batches(rec, idx, contexts, **stream):
    """Augmented training batches from rec/idx, sharded over the contexts. `stream`: the
    keywords of Stream (batch_per_device and settings, the input pipeline, always; dtype,
    layout, seed, iterations, num_classes when needed).

    An epoch is records // (batch_per_device * len(contexts)) iterations: every iteration is
    a full batch on every device, and the few images left over are different ones each epoch
    because the reader reshuffles. (The original recipe rounds up instead and fills the last
    batch from the next epoch: one iteration more at most.) `iterations` overrides the epoch
    length (benchmarks). `num_classes` is needed only by the synthetic backend, for labels.
    """
    return _batches(Stream("train", rec, idx, tuple(contexts), **stream))


def val_batches(rec, idx, contexts, **stream):
    """Validation batches: every record exactly once per epoch over all contexts (`stream`
    as for train_batches, without a seed: validation is never shuffled or augmented).

    Each context reads a fixed shard in file order; the last batch of a shard is padded and
    DeviceBatch.valid says how many of its samples are real (possibly 0).
    """
    if "seed" in stream:
        raise TypeError("val_batches takes no seed: validation is neither shuffled nor augmented")
    return _batches(Stream("val", rec, idx, tuple(contexts), **stream))


def _batches(stream):
    _check_settings(stream.settings, stream.dtype)
    if stream.layout not in LAYOUTS:
        raise ValueError(f"layout is {stream.layout!r}, expected one of {LAYOUTS}")
    records = count_records(stream.rec, stream.idx)
    devices = stream.shards
    if stream.settings.backend == "synthetic":
        if stream.num_classes is None:
            raise UserError("input.backend synthetic needs num_classes to draw labels")
        if stream.iterations is None:
            # Without an explicit length, a synthetic epoch is a training epoch's length.
            _check_enough_records("train", stream.rec, records, stream.batch_per_device, devices)
        next_batch = _synthetic_source(stream)
        epoch = records // (stream.batch_per_device * devices)
    else:
        _check_enough_records(stream.kind, stream.rec, records, stream.batch_per_device, devices)
        iterator = _dali_iterator(stream)
        next_batch = _dali_source(iterator, stream.contexts)
        epoch = len(iterator)
    return Batches(next_batch, stream.iterations or epoch, stream.contexts)


def count_records(rec, idx):
    """Number of records in a .rec/.idx pair (lines of the index); clear error if missing."""
    for path, what in ((rec, "record file (.rec)"), (idx, "record index (.idx)")):
        if not os.path.isfile(path):
            raise UserError(f"{path}: {what} not found")
    with open(idx) as lines:
        return sum(1 for line in lines if line.strip())


def _check_settings(settings, dtype):
    if settings.backend not in BACKENDS:
        raise UserError(f"input.backend is {settings.backend!r}, expected one of {BACKENDS}")
    if dtype not in DALI_DTYPES:
        raise UserError(f"dtype is {dtype!r}, expected one of {tuple(DALI_DTYPES)}")
    if settings.val_resize < settings.image_size:
        raise UserError(
            f"input.val_resize ({settings.val_resize}) is smaller than input.image_size "
            f"({settings.image_size}): the evaluation crop is cut from the resized image"
        )
    for low, high in (
        ("min_random_area", "max_random_area"),
        ("min_aspect_ratio", "max_aspect_ratio"),
    ):
        low_value, high_value = getattr(settings, low), getattr(settings, high)
        if low_value > high_value:
            raise UserError(f"input.{low} ({low_value}) exceeds input.{high} ({high_value})")


def _check_enough_records(kind, rec, records, batch_per_device, devices):
    if kind == "train" and records < batch_per_device * devices:
        raise UserError(
            f"{rec}: {records} records, fewer than one global batch "
            f"({batch_per_device} per device x {devices} devices)"
        )
    if kind == "val" and records < devices:
        raise UserError(f"{rec}: {records} records, fewer than the {devices} devices sharing it")


def placement(backend, context):
    """Decoder device, output device and DALI device_id of one context's pipeline."""
    if context.device_type == "cpu":
        return Placement("cpu", "cpu", None)
    return Placement("mixed" if backend == "dali-gpu" else "cpu", "gpu", context.device_id)


def dali_pipeline(stream, shard_id):
    """The unbuilt DALI pipeline of the context `shard_id` of the stream: it reads shard
    first_shard + shard_id of the stream's shards (over all workers)."""
    settings = stream.settings
    where = placement(settings.backend, stream.contexts[shard_id])
    shard_id = (shard_id + stream.first_shard + stream.shard_offset) % stream.shards
    training = stream.kind == "train"
    pipe = Pipeline(
        batch_size=stream.batch_per_device,
        # The original's 3 threads per training pipeline and 10 per validation pipeline
        # (dali.py L29-32 at a8e1d1cd).
        num_threads=settings.dali_threads if training else settings.dali_val_threads,
        device_id=where.device_id,
        # Different augmentation per shard; the same per shard for the same seed.
        seed=stream.seed + shard_id,
        prefetch_queue_depth=settings.prefetch_queue_depth,
    )
    with pipe:
        jpegs, labels = fn.readers.mxnet(
            path=[stream.rec],
            index_path=[stream.idx],
            shard_id=shard_id,
            num_shards=stream.shards,
            random_shuffle=training,
            # Validation: each pipeline keeps its shard and pads its last batch by repeating
            # the last sample, so every record is read once per epoch and the iterator can
            # tell padding apart. Training moves to the next shard every epoch, as DALI
            # does by default, for more variety per device.
            pad_last_batch=not training,
            stick_to_shard=not training,
            name=READER,
        )
        pipe.set_outputs(
            *image_graph(stream.kind, jpegs, labels, where, settings, stream.dtype, stream.layout)
        )
    return pipe


def image_graph(kind, jpegs, labels, where, settings, dtype, layout="NCHW"):
    """DALI graph from JPEG bytes and labels to normalized images in `layout` and labels.

    Training: random-area, random-aspect crop fused into decoding, resize to image_size,
    random horizontal flip. Validation: decode, resize the shorter side to val_resize,
    center crop image_size. Both normalize with mean/std (0-255 units) into `dtype`; NHWC
    adds a 4th channel of zeros (pad_output pads the channels to a power of 2 with
    fill_values, 0 by default).
    """
    size = settings.image_size
    decoding = decoder_options(where, settings)
    if kind == "train":
        images = fn.decoders.image_random_crop(
            jpegs,
            **decoding,
            random_area=[settings.min_random_area, settings.max_random_area],
            random_aspect_ratio=[settings.min_aspect_ratio, settings.max_aspect_ratio],
        )
        images = fn.resize(images, resize_x=size, resize_y=size)
        mirror = fn.random.coin_flip(probability=0.5)
    else:
        images = fn.decoders.image(jpegs, **decoding)
        images = fn.resize(images, resize_shorter=settings.val_resize)
        mirror = 0
    if where.output == "gpu" and images.device == "cpu":
        # Host-decoded images cross to the GPU as uint8, a quarter of the float32 bytes.
        images = images.gpu()
    if where.output == "gpu":
        labels = labels.gpu()
    images = fn.crop_mirror_normalize(
        images,
        dtype=DALI_DTYPES[dtype],
        output_layout="HWC" if layout == "NHWC" else "CHW",
        pad_output=layout == "NHWC",
        crop=(size, size),
        mean=list(settings.mean),
        std=list(settings.std),
        mirror=mirror,
    )
    return images, labels


def decoder_options(where, settings):
    """Keywords of the JPEG decoder of a pipeline placed at `where`. The GPU ("mixed")
    decoder gets nvJPEG's memory padding on the device and the host, as the original's
    (dali.py L50-52 at a8e1d1cd); the host decoder has no such memory."""
    options = {"device": where.decoder, "output_type": types.RGB}
    if where.decoder == "mixed":
        padding = settings.nvjpeg_padding_mb * MIB
        options.update(device_memory_padding=padding, host_memory_padding=padding)
    return options


def _dali_iterator(stream):
    pipes = [dali_pipeline(stream, shard) for shard in range(len(stream.contexts))]
    # DROP: training iterations are always full batches; PARTIAL: validation batches carry
    # `pad`, the number of padding samples at their end.
    policy = LastBatchPolicy.DROP if stream.kind == "train" else LastBatchPolicy.PARTIAL
    return DALIGenericIterator(
        pipes,
        [("data", DALIGenericIterator.DATA_TAG), ("label", DALIGenericIterator.LABEL_TAG)],
        reader_name=READER,
        last_batch_policy=policy,
    )


def _dali_source(iterator, contexts):
    """Next-batch function over a DALI iterator that runs epoch after epoch."""

    def next_batch():
        try:
            device_batches = iterator.next()
        except StopIteration:
            iterator.reset()
            device_batches = iterator.next()
        # The MXNet plugin puts host outputs on cpu(0) and GPU outputs on gpu(device_id);
        # as_in_context is a no-op then, and an engine-queued copy for the other CPU
        # contexts that tests use to exercise the multi-device path.
        return [
            DeviceBatch(
                batch.data[0].as_in_context(context),
                batch.label[0].as_in_context(context),
                batch.data[0].shape[0] - int(batch.pad),
            )
            for batch, context in zip(device_batches, contexts, strict=True)
        ]

    return next_batch


def _synthetic_source(stream):
    """Next-batch function returning the same random batches, made once on each device.

    Drawn with numpy from the stream's seed and copied to each device once, so the data is
    reproducible without touching MXNet's global random state.
    """
    rng = np.random.default_rng(stream.seed)
    batch, size = stream.batch_per_device, stream.settings.image_size
    shape = input_shape(stream.layout, batch, size)
    batches = []
    for context in stream.contexts:
        images = rng.standard_normal(shape, dtype=np.float32)
        if stream.layout == "NHWC":
            images[..., IMAGE_CHANNELS:] = 0  # the padding channel, zero as DALI pads it
        labels = rng.integers(0, stream.num_classes, batch)
        batches.append(
            DeviceBatch(
                mx.nd.array(images, ctx=context, dtype=stream.dtype),
                mx.nd.array(labels, ctx=context, dtype="float32"),
                batch,
            )
        )
    return lambda: list(batches)
