"""Input pipelines on tiny real RecordIO data: real DALI CPU pipelines, real MXNet arrays."""

import math
import re

import mxnet as mx
import numpy as np
import pytest
from nvidia.dali import Pipeline, fn

from resnet_recipe.data import pipelines
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.workflow_support.settings import InputPipeline

SETTINGS = InputPipeline(
    backend="dali-cpu",
    image_size=16,
    val_resize=20,
    max_aspect_ratio=4 / 3,
    dali_threads=2,
    dali_val_threads=2,
)
TWO_CPUS = [mx.cpu(0), mx.cpu(1)]


def first_batch(batches):
    return next(iter(batches))


def test_training_batches_per_device_shapes_layout_and_epoch_length(tiny_rec):
    train = pipelines.train_batches(
        tiny_rec.rec, tiny_rec.idx, TWO_CPUS, batch_per_device=4, settings=SETTINGS, seed=1
    )

    assert train.iterations == len(train) == 30 // 8
    for _epoch in range(2):
        epoch = list(train)
        assert len(epoch) == 3
        for device_batches in epoch:
            assert len(device_batches) == 2
            for context, batch in zip(TWO_CPUS, device_batches, strict=True):
                assert batch.data.shape == (4, 3, 16, 16)  # NCHW
                assert batch.data.dtype == np.float32
                assert batch.data.context == context
                assert batch.label.shape == (4,)
                assert batch.label.context == context
                assert batch.valid == 4


@pytest.mark.parametrize("kind", ["train", "val"])
def test_images_normalize_to_their_label_colour(tiny_rec, kind):
    # Solid-colour images stay solid through any crop, flip and resize, so every pixel must
    # be (colour of the image's label - mean) / std: normalization and labels in one check.
    make = pipelines.train_batches if kind == "train" else pipelines.val_batches
    batches = make(tiny_rec.rec, tiny_rec.idx, [mx.cpu()], batch_per_device=5, settings=SETTINGS)
    mean, std = np.array(SETTINGS.mean), np.array(SETTINGS.std)

    checked = 0
    for (batch,) in batches:
        images = batch.data.asnumpy()[: batch.valid]
        for image, label in zip(images, batch.label.asnumpy()[: batch.valid], strict=True):
            expected = (np.array(tiny_rec.colours[int(label)]) - mean) / std
            # JPEG moves a solid colour by a few levels: 0.1 is about 6 of 255.
            np.testing.assert_allclose(
                image, np.broadcast_to(expected[:, None, None], image.shape), atol=0.1
            )
            checked += 1
    assert checked == 30


@pytest.mark.parametrize("make", [pipelines.train_batches, pipelines.val_batches])
def test_float16_pipelines_output_float16_arrays(tiny_rec, make):
    (batch,) = first_batch(
        make(
            tiny_rec.rec,
            tiny_rec.idx,
            [mx.cpu()],
            batch_per_device=4,
            settings=SETTINGS,
            dtype="float16",
        )
    )

    assert batch.data.dtype == np.float16
    assert batch.data.shape == (4, 3, 16, 16)
    assert batch.data.context == mx.cpu()
    assert batch.label.dtype == np.float32


def test_float16_validation_matches_float32(tiny_rec):
    def first_images(dtype):
        batches = pipelines.val_batches(
            tiny_rec.rec,
            tiny_rec.idx,
            [mx.cpu()],
            batch_per_device=4,
            settings=SETTINGS,
            dtype=dtype,
        )
        return first_batch(batches)[0].data.asnumpy().astype(np.float32)

    np.testing.assert_allclose(first_images("float16"), first_images("float32"), atol=5e-3)


@pytest.mark.parametrize("records", [23, 9])
def test_validation_reads_every_record_once_over_two_shards(make_tiny_rec, records):
    # Label = record index, so the labels say which records were seen. 23 images in 2
    # shards of 11 and 12 with batches of 4 pad the last batch; with 9, one shard's last
    # batch is all padding.
    data = make_tiny_rec(f"indexed{records}", list(range(records)))
    val = pipelines.val_batches(data.rec, data.idx, TWO_CPUS, batch_per_device=4, settings=SETTINGS)

    assert val.iterations == math.ceil(math.ceil(records / 2) / 4)
    for _epoch in range(2):
        seen, padding = [], 0
        for device_batches in val:
            for batch in device_batches:
                assert 0 <= batch.valid <= 4
                seen += batch.label.asnumpy()[: batch.valid].astype(int).tolist()
                padding += 4 - batch.valid
        assert sorted(seen) == list(range(records))
        assert padding == val.iterations * 2 * 4 - records > 0


def test_same_seed_gives_the_same_first_batch(make_tiny_rec):
    textured = make_tiny_rec("textured", [index % 3 for index in range(30)], noise=40)

    def first(seed):
        batches = pipelines.train_batches(
            textured.rec, textured.idx, [mx.cpu()], batch_per_device=6, settings=SETTINGS, seed=seed
        )
        (batch,) = first_batch(batches)
        return batch.data.asnumpy(), batch.label.asnumpy()

    (data, labels), (again, again_labels), (other, _) = first(3), first(3), first(4)
    np.testing.assert_array_equal(data, again)
    np.testing.assert_array_equal(labels, again_labels)
    assert not np.array_equal(data, other)


@pytest.mark.parametrize("make", [pipelines.train_batches, pipelines.val_batches])
def test_speed_settings_change_no_batch(make_tiny_rec, make):
    # Why the speed-only input settings rerun no training or scoring and resume a run: the
    # same seed gives the same batches, image for image, over two epochs, whatever the
    # thread counts and prefetch depth. (The decoder padding reaches only the GPU decoder.)
    textured = make_tiny_rec("textured_speed", [index % 3 for index in range(30)], noise=40)

    def two_epochs(**speed):
        seed = {"seed": 5} if make is pipelines.train_batches else {}
        batches = make(
            *(textured.rec, textured.idx, TWO_CPUS),
            batch_per_device=4,
            settings=SETTINGS.replace(**speed),
            **seed,
        )
        return [
            (batch.data.asnumpy(), batch.label.asnumpy())
            for _epoch in range(2)
            for device_batches in batches
            for batch in device_batches
        ]

    slow = two_epochs(dali_threads=1, dali_val_threads=1, prefetch_queue_depth=1)
    fast = two_epochs(dali_threads=3, dali_val_threads=3, prefetch_queue_depth=3)
    assert len(slow) == len(fast) > 0
    for (data, labels), (other, other_labels) in zip(slow, fast, strict=True):
        np.testing.assert_array_equal(data, other)
        np.testing.assert_array_equal(labels, other_labels)


def test_training_flips_some_images_horizontally(make_tiny_rec):
    # Square images and a crop fixed to the whole image: each training image must be the
    # validation image of the same record (label = index) or its mirror, and both occur.
    squares = make_tiny_rec("squares", list(range(24)), noise=40, side=24)
    whole = SETTINGS.replace(
        val_resize=16, min_random_area=1.0, min_aspect_ratio=1.0, max_aspect_ratio=1.0
    )
    val = pipelines.val_batches(
        squares.rec, squares.idx, [mx.cpu()], batch_per_device=8, settings=whole
    )
    train = pipelines.train_batches(
        squares.rec, squares.idx, [mx.cpu()], batch_per_device=8, settings=whole, seed=2
    )

    def by_record(batches):
        return {
            int(label): image
            for (batch,) in batches
            for image, label in zip(batch.data.asnumpy(), batch.label.asnumpy(), strict=True)
        }

    plain, augmented = by_record(val), by_record(train)
    flipped = 0
    for record, image in augmented.items():
        mirrored = np.allclose(image, plain[record][:, :, ::-1], atol=0.05)
        assert mirrored or np.allclose(image, plain[record], atol=0.05)
        flipped += mirrored
    assert len(augmented) == 24
    assert 0 < flipped < 24


def test_iterations_override_continues_across_epochs(tiny_rec):
    # A benchmark epoch longer than the data: the stream rolls into the next epoch.
    train = pipelines.train_batches(
        tiny_rec.rec, tiny_rec.idx, [mx.cpu()], batch_per_device=4, settings=SETTINGS, iterations=10
    )

    assert [len(list(train)) for _epoch in range(2)] == [10, 10]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_synthetic_batches_live_on_each_device(tiny_rec, dtype):
    settings = SETTINGS.replace(backend="synthetic")
    train = pipelines.train_batches(
        tiny_rec.rec,
        tiny_rec.idx,
        TWO_CPUS,
        batch_per_device=4,
        settings=settings,
        dtype=dtype,
        num_classes=3,
    )

    assert train.iterations == 30 // 8
    epoch = list(train)
    assert len(epoch) == 3
    for device_batches in epoch:
        for context, batch in zip(TWO_CPUS, device_batches, strict=True):
            assert batch.data.shape == (4, 3, 16, 16)
            assert batch.data.dtype == np.dtype(dtype)
            assert batch.data.context == context
            assert batch.label.context == context
            assert set(batch.label.asnumpy().tolist()) <= {0.0, 1.0, 2.0}
            assert batch.valid == 4
    bench = pipelines.val_batches(
        tiny_rec.rec,
        tiny_rec.idx,
        TWO_CPUS,
        batch_per_device=4,
        settings=settings,
        dtype=dtype,
        iterations=5,
        num_classes=3,
    )
    assert len(list(bench)) == 5


def test_synthetic_backend_needs_the_number_of_classes(tiny_rec):
    settings = SETTINGS.replace(backend="synthetic")
    with pytest.raises(ValueError, match="num_classes"):
        pipelines.train_batches(
            tiny_rec.rec, tiny_rec.idx, [mx.cpu()], batch_per_device=4, settings=settings
        )


@pytest.mark.parametrize("missing", ["rec", "idx"])
def test_missing_record_file_is_named(tiny_rec, tmp_path, missing):
    paths = {"rec": tiny_rec.rec, "idx": tiny_rec.idx, missing: str(tmp_path / f"gone.{missing}")}
    for make in (pipelines.train_batches, pipelines.val_batches):
        with pytest.raises(UserError, match=re.escape(paths[missing])):
            make(paths["rec"], paths["idx"], [mx.cpu()], batch_per_device=4, settings=SETTINGS)


def test_bad_settings_name_the_config_key(tiny_rec):
    too_small = SETTINGS.replace(val_resize=12)
    with pytest.raises(ValueError, match="input.val_resize"):
        pipelines.val_batches(
            tiny_rec.rec, tiny_rec.idx, [mx.cpu()], batch_per_device=4, settings=too_small
        )
    with pytest.raises(ValueError, match="input.backend"):
        pipelines.train_batches(
            tiny_rec.rec,
            tiny_rec.idx,
            [mx.cpu()],
            batch_per_device=4,
            settings=SETTINGS.replace(backend="gpu"),
        )


def test_fewer_records_than_a_global_batch_is_an_error(tiny_rec):
    with pytest.raises(ValueError, match=re.escape(tiny_rec.rec) + ".*30 records"):
        pipelines.train_batches(
            tiny_rec.rec, tiny_rec.idx, TWO_CPUS, batch_per_device=16, settings=SETTINGS
        )
    # Synthetic data of an explicit length needs no records; of a real epoch's length, it does.
    synthetic = SETTINGS.replace(backend="synthetic")
    with pytest.raises(ValueError, match="30 records"):
        pipelines.train_batches(
            tiny_rec.rec,
            tiny_rec.idx,
            TWO_CPUS,
            batch_per_device=16,
            settings=synthetic,
            num_classes=3,
        )
    bench = pipelines.train_batches(
        tiny_rec.rec,
        tiny_rec.idx,
        TWO_CPUS,
        batch_per_device=16,
        settings=synthetic,
        iterations=2,
        num_classes=3,
    )
    assert len(list(bench)) == 2


def test_placement_follows_backend_on_gpus_and_stays_on_the_host_for_cpus():
    assert pipelines.placement("dali-gpu", mx.gpu(1)) == ("mixed", "gpu", 1)
    assert pipelines.placement("dali-cpu", mx.gpu(1)) == ("cpu", "gpu", 1)
    assert pipelines.placement("dali-gpu", mx.cpu()) == ("cpu", "cpu", None)


@pytest.mark.parametrize("backend", ["dali-gpu", "dali-cpu"])
@pytest.mark.parametrize("kind", ["train", "val"])
def test_gpu_graph_delivers_images_and_labels_on_the_gpu(tiny_rec, backend, kind):
    # DALI defines a graph for a GPU without touching CUDA; only building needs a GPU.
    settings = SETTINGS.replace(backend=backend)
    where = pipelines.placement(backend, mx.gpu(0))
    with Pipeline(batch_size=4, num_threads=1, device_id=0):
        jpegs, labels = fn.readers.mxnet(path=[tiny_rec.rec], index_path=[tiny_rec.idx])
        images, labels = pipelines.image_graph(kind, jpegs, labels, where, settings, "float16")
    assert (images.device, labels.device) == ("gpu", "gpu")

    stream = pipelines.Stream(
        kind=kind,
        rec=tiny_rec.rec,
        idx=tiny_rec.idx,
        contexts=(mx.gpu(0),),
        batch_per_device=4,
        settings=settings,
        dtype="float16",
        seed=0,
        iterations=None,
        num_classes=None,
    )
    pipe = pipelines.dali_pipeline(stream, shard_id=0)
    assert pipe.device_id == 0


@pytest.mark.parametrize(("kind", "threads"), [("train", 3), ("val", 10)])
def test_dali_defaults_are_the_originals(tiny_rec, kind, threads):
    # original (a8e1d1cd): dali.py L29-32 (3 threads per GPU for training, 10 for
    # validation), runner L79 (--dali-prefetch-queue 2 --dali-nvjpeg-memory-padding 64),
    # dali.py L51-52 (the padding on device and host).
    defaults = InputPipeline()
    assert (defaults.dali_threads, defaults.dali_val_threads) == (3, 10)
    assert (defaults.prefetch_queue_depth, defaults.nvjpeg_padding_mb) == (2, 64)
    stream = pipelines.Stream(
        kind=kind,
        rec=tiny_rec.rec,
        idx=tiny_rec.idx,
        contexts=(mx.gpu(0),),
        batch_per_device=4,
        settings=defaults,
    )
    pipe = pipelines.dali_pipeline(stream, shard_id=0)
    assert (pipe.num_threads, pipe.prefetch_queue_depth) == (threads, 2)


def test_only_the_gpu_decoder_gets_nvjpeg_memory_padding():
    mixed = pipelines.decoder_options(pipelines.placement("dali-gpu", mx.gpu(0)), SETTINGS)
    padding = 64 * 1024 * 1024
    assert mixed["device"] == "mixed"
    assert (mixed["device_memory_padding"], mixed["host_memory_padding"]) == (padding, padding)
    for backend, context in (("dali-cpu", mx.gpu(0)), ("dali-gpu", mx.cpu())):
        host = pipelines.decoder_options(pipelines.placement(backend, context), SETTINGS)
        assert host["device"] == "cpu"
        assert not {"device_memory_padding", "host_memory_padding"} & set(host)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_nhwc_batches_are_the_nchw_images_channels_last_with_a_zero_fourth_channel(tiny_rec, dtype):
    # As the original's float16 pipelines: HWC output padded to 4 channels (pad_output).
    common = dict(batch_per_device=4, settings=SETTINGS, dtype=dtype)
    nchw = first_batch(pipelines.val_batches(tiny_rec.rec, tiny_rec.idx, [mx.cpu()], **common))
    nhwc = first_batch(
        pipelines.val_batches(tiny_rec.rec, tiny_rec.idx, [mx.cpu()], layout="NHWC", **common)
    )
    images = nhwc[0].data.asnumpy()
    assert images.shape == (4, 16, 16, 4) and images.dtype == np.dtype(dtype)
    assert not images[..., 3].any()
    np.testing.assert_array_equal(images[..., :3].transpose(0, 3, 1, 2), nchw[0].data.asnumpy())
    np.testing.assert_array_equal(nhwc[0].label.asnumpy(), nchw[0].label.asnumpy())
    synthetic = first_batch(
        pipelines.train_batches(
            tiny_rec.rec,
            tiny_rec.idx,
            [mx.cpu()],
            layout="NHWC",
            num_classes=3,
            seed=0,
            **{**common, "settings": SETTINGS.replace(backend="synthetic")},
        )
    )
    assert synthetic[0].data.shape == (4, 16, 16, 4)
    assert not synthetic[0].data.asnumpy()[..., 3].any()


def test_an_unknown_layout_is_refused(tiny_rec):
    with pytest.raises(ValueError, match="layout is 'NCWH'"):
        pipelines.val_batches(
            tiny_rec.rec,
            tiny_rec.idx,
            [mx.cpu()],
            batch_per_device=4,
            settings=SETTINGS,
            layout="NCWH",
        )
