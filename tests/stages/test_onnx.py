"""ONNX export and onnxruntime parity on a tiny run trained in NHWC: the export matches
MXNet in the layout the run trained in and as its NCHW float32 checkpoint, the metadata
round-trips, the two engines agree, disagreement is measured, bad input names its file, the
onnxruntime inference point is measured as MXNet's, the command line. The workflow's plan:
workflow/test_workflow_plan.py; its ONNX outputs: workflow/test_caching.py's finished run."""

import json
import shutil

import mxnet as mx
import numpy as np
import onnx
import onnxruntime
import pytest
from helpers.dllogger_lines import read_steps
from helpers.tiny import INFER_BENCH, INFER_KEYS, NHWC_NETWORK, TINY_NETWORK, TINY_PIPELINE, score

from resnet_recipe import cli
from resnet_recipe.benchmarking.throughput import BenchSetup
from resnet_recipe.deployment import onnx_export, onnx_inference
from resnet_recipe.files.user_errors import UserError
from resnet_recipe.model import network
from resnet_recipe.workflow_support import results
from resnet_recipe.workflow_support.settings import Onnx, Score

# The scoring tests' tiny run (2 epochs of three noisy colours, ResNet-18 at 16 px), trained
# in NHWC (on the CPU: convolutions by transpose), as the original trained float16.

# Largest absolute logit difference accepted between onnxruntime and MXNet in float32 here
# (logits of the tiny run are of order 1-10; the engines differ by float rounding only, a
# few 1e-6; a weight in the wrong place or layout moves logits by far more than 1e-4).
LOGIT_TOLERANCE = 1e-4
PARITY_KEYS = {
    "run",
    "model",
    "checkpoint",
    "images",
    "batch_size",
    "classes",
    "onnxruntime",
    "mxnet",
    "same_prediction_fraction",
    "max_abs_logit_difference",
    "max_abs_logit",
    "logit_tolerance",
    "provenance",
}
PARITY_IMAGES = 300
# What an onnxruntime point holds beside every field of an MXNet inference point.
ENGINE_KEYS = {"engine", "provider", "threads"}


@pytest.fixture(scope="module")
def tiny_run(nhwc_trained_run):
    """The tiny run trained in NHWC, which the tests below export and check."""
    return nhwc_trained_run


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run's final epoch as model.onnx."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    metadata = onnx_export.export_run(
        str(path),
        run_dir=str(tiny_run.run_dir),
        epoch=None,
        classes_tsv=classes_tsv(tiny_run),
    )
    return path, metadata


def classes_tsv(tiny_run):
    return str(tiny_run.run_dir.parent / "classes.tsv")


@pytest.fixture(scope="module")
def parity_val(make_tiny_rec):
    """Validation images drowned in noise: many predictions are close calls, which a
    difference between the engines would flip."""
    return make_tiny_rec("onnx_parity_val", [i % 3 for i in range(PARITY_IMAGES)], noise=250)


def parity(tiny_run, exported, val, path, **overrides):
    arguments = {
        "model_path": str(exported[0]),
        "run_dir": str(tiny_run.run_dir),
        "val_rec": val.rec,
        "val_idx": val.idx,
        "score_settings": Score(epoch=None, batch_size={"float32": 16}),
        "pipeline_settings": TINY_PIPELINE,
        "onnx_settings": Onnx(logit_tolerance=LOGIT_TOLERANCE),
        "threads": 2,
        "run": "tiny",
        **overrides,
    }
    return onnx_inference.score_onnx(str(path), **arguments)


def random_images(batch, seed):
    """A float32 NCHW batch of normalised-looking images of the tiny pipeline's size."""
    size = TINY_PIPELINE.image_size
    return np.random.default_rng(seed).normal(size=(batch, 3, size, size)).astype("float32")


def as_nhwc(images):
    """An NCHW batch as the NHWC network takes it: channels last, padded with a zero 4th."""
    nhwc = images.transpose(0, 2, 3, 1)
    return np.concatenate([nhwc, np.zeros(nhwc.shape[:3] + (1,), "float32")], axis=3)


def onnxruntime_logits(model_path, images):
    session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"data": images})[0]


def test_an_nhwc_trained_run_exports_and_matches_mxnet_in_both_layouts(tiny_run, exported):
    prefix = str(tiny_run.run_dir / "model")
    trained_as = network.load_for_inference(prefix, 2, [mx.cpu()], "float32", NHWC_NETWORK)
    checkpoint = network.load_for_inference(prefix, 2, [mx.cpu()])  # its NCHW float32 graph
    assert trained_as.layout.name == "NHWC"
    for batch in (1, 5):
        images = random_images(batch, batch)
        logits = onnxruntime_logits(exported[0], images)
        in_nhwc = trained_as(mx.nd.array(as_nhwc(images))).asnumpy()
        np.testing.assert_allclose(logits, in_nhwc, rtol=0, atol=LOGIT_TOLERANCE)
        in_nchw = checkpoint(mx.nd.array(images)).asnumpy()
        np.testing.assert_allclose(logits, in_nchw, rtol=0, atol=LOGIT_TOLERANCE)
        assert np.abs(logits).max() > 100 * LOGIT_TOLERANCE  # logits that can differ


def test_a_network_in_memory_exports_from_any_layout(tmp_path):
    """A freshly built NHWC network, its BatchNorm statistics set apart from their
    defaults, exports through its float32 NCHW twin."""
    mx.random.seed(3)
    net = network.build(NHWC_NETWORK, 3, [mx.cpu()])
    for name, param in net.collect_params().items():
        if name.endswith(("running_mean", "running_var", "gamma", "beta")):
            param.set_data(mx.nd.random.uniform(0.5, 1.5, shape=param.shape))
    path = tmp_path / "built.onnx"
    onnx_export.export_network(net, str(path), pipeline_settings=TINY_PIPELINE, metadata={})
    images = random_images(4, 0)
    expected = net(mx.nd.array(as_nhwc(images))).asnumpy()
    logits = onnxruntime_logits(path, images)
    np.testing.assert_allclose(
        logits, expected, rtol=0, atol=LOGIT_TOLERANCE * np.abs(expected).max()
    )
    assert onnx_export.read_metadata(str(path))["layout"] == "NCHW"


def test_the_metadata_round_trips(exported):
    path, metadata = exported
    assert metadata == onnx_export.read_metadata(str(path))
    assert metadata["input_name"] == "data" and metadata["output_name"] == "logits"
    assert metadata["layout"] == "NCHW" and metadata["dtype"] == "float32"
    assert metadata["image_size"] == TINY_PIPELINE.image_size
    assert metadata["resize_shorter"] == TINY_PIPELINE.val_resize
    assert metadata["mean"] == list(TINY_PIPELINE.mean)
    assert metadata["std"] == list(TINY_PIPELINE.std)
    assert metadata["class_labels"] == ["colour0", "colour1", "colour2"]
    assert metadata["epoch"] == 2 and metadata["trained_dtype"] == "float32"
    assert metadata["trained_layout"] == "NHWC"
    assert metadata["network"] == "resnet18_v1.5" and metadata["run"] == "tiny"


def test_the_graph_takes_one_float32_nchw_input_of_any_batch(exported):
    model = onnx.load(str(exported[0]))
    onnx.checker.check_model(model, full_check=True)
    (data,), (logits,) = model.graph.input, model.graph.output
    size = TINY_PIPELINE.image_size

    def dims(value):
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    assert (data.name, dims(data)) == ("data", ["batch", 3, size, size])
    assert (logits.name, dims(logits)) == ("logits", ["batch", 3])
    assert data.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert not {i.name for i in model.graph.initializer} & {v.name for v in model.graph.input}


def test_both_engines_agree_on_the_validation_images(tiny_run, exported, parity_val, tmp_path):
    path = tmp_path / "parity.json"
    result = parity(tiny_run, exported, parity_val, path)
    assert results.read(str(path), results.ONNX_PARITY) == result
    assert set(result) == PARITY_KEYS
    assert result["images"] == PARITY_IMAGES
    assert result["same_prediction_fraction"] >= 0.999
    assert result["max_abs_logit_difference"] <= LOGIT_TOLERANCE
    assert result["max_abs_logit"] > 0
    for engine in ("onnxruntime", "mxnet"):
        assert 0 < result[engine]["top1"] <= result[engine]["top5"] <= 1
    # Noise makes this a hard set (a constant guess gets a third right): not all correct.
    assert result["mxnet"]["top1"] < 1
    # The MXNet side is MXNet scoring: the same top-1 and top-5 as the score stage.
    scored = score(
        tiny_run, tmp_path / "score.json", val_rec=parity_val.rec, val_idx=parity_val.idx
    )
    assert result["mxnet"]["top1"] == pytest.approx(scored["top1"])
    assert result["mxnet"]["top5"] == pytest.approx(scored["top5"])
    assert result["onnxruntime"]["loss"] == pytest.approx(scored["loss"], rel=1e-4)


def test_a_logit_difference_above_the_tolerance_fails(
    tiny_run,
    exported,
    parity_val,
    tmp_path,
):
    path = tmp_path / "parity.json"
    with pytest.raises(ValueError, match=r"model\.onnx.*onnx\.logit_tolerance"):
        parity(tiny_run, exported, parity_val, path, onnx_settings=Onnx(logit_tolerance=1e-12))
    assert not path.exists()


def test_a_model_of_other_weights_is_caught_disagreeing(tiny_run, exported, parity_val, tmp_path):
    """The same network with fresh weights in the run's model.onnx place: the parity
    measures how little the engines then agree (the >= 99.9% above is no foregone result)."""
    mx.random.seed(7)
    other = network.build(TINY_NETWORK, 3, [mx.cpu()])
    model = tmp_path / "other.onnx"
    metadata = {key: exported[1][key] for key in ("epoch", "class_labels")}
    onnx_export.export_network(
        other, str(model), pipeline_settings=TINY_PIPELINE, metadata=metadata
    )
    result = parity(
        tiny_run,
        exported,
        parity_val,
        tmp_path / "parity.json",
        model_path=str(model),
        onnx_settings=Onnx(logit_tolerance=1e6),
    )
    assert result["same_prediction_fraction"] < 0.999
    assert result["max_abs_logit_difference"] > 100 * LOGIT_TOLERANCE


def test_a_missing_checkpoint_names_the_file(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    arguments = {"run_dir": str(run_dir), "classes_tsv": classes_tsv(tiny_run)}
    (run_dir / "model-0002.params").unlink()
    (run_dir / "model-0001.params").unlink()
    with pytest.raises(UserError, match=rf"{run_dir}: no model-NNNN.params"):
        onnx_export.export_run(str(tmp_path / "m.onnx"), epoch=None, **arguments)
    shutil.copy(tiny_run.run_dir / "model-0002.params", run_dir / "model-0001.params")
    with pytest.raises(UserError, match=r"score\.epoch is 2, but .* epochs \[1\]"):
        onnx_export.export_run(str(tmp_path / "m.onnx"), epoch=2, **arguments)
    assert not (tmp_path / "m.onnx").exists()


def test_weights_of_another_network_name_the_checkpoint(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    report["network"]["depth"] = 50
    (run_dir / "report.json").write_text(json.dumps(report))
    with pytest.raises(ValueError, match=r"model-0002\.params: parameters not those of"):
        onnx_export.export_run(
            str(tmp_path / "m.onnx"),
            run_dir=str(run_dir),
            epoch=None,
            classes_tsv=classes_tsv(tiny_run),
        )
    assert not (tmp_path / "m.onnx").exists()


def test_a_classes_file_of_other_classes_is_named(tiny_run, tmp_path):
    classes = tmp_path / "classes.tsv"
    classes.write_text("0\ta\n1\tb\n")
    with pytest.raises(ValueError, match="classes.tsv lists 2 classes, the trained network has 3"):
        onnx_export.export_run(
            str(tmp_path / "m.onnx"),
            run_dir=str(tiny_run.run_dir),
            epoch=None,
            classes_tsv=str(classes),
        )


def test_a_missing_or_foreign_model_is_named(tiny_run, exported, parity_val, tmp_path):
    with pytest.raises(UserError, match="absent.onnx: ONNX model not found"):
        parity(
            tiny_run,
            exported,
            parity_val,
            tmp_path / "p.json",
            model_path=str(tmp_path / "absent.onnx"),
        )
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported[0]))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(ValueError, match=r"foreign\.onnx: the ONNX metadata lacks"):
        onnx_export.read_metadata(str(foreign))


def test_a_pipeline_unlike_the_models_input_is_refused(tiny_run, exported, parity_val, tmp_path):
    pipeline = TINY_PIPELINE.replace(image_size=12, val_resize=12)
    with pytest.raises(
        ValueError, match=r"model\.onnx: its metadata image_size is 16.*input\.image_size"
    ):
        parity(tiny_run, exported, parity_val, tmp_path / "p.json", pipeline_settings=pipeline)


def test_onnxruntime_inference_point_is_measured_as_mxnets(tiny_rec, tmp_path):
    """The fields of an MXNet inference point and its engine, timed by the same clock
    readings as test_throughput's MXNet point: unwaited epochs, then the waited pass."""
    classes = tmp_path / "classes.tsv"
    classes.write_text("".join(f"{label}\tc{label}\n" for label in range(3)))
    path = tmp_path / "b8.json"
    setup = BenchSetup(
        rec=tiny_rec.rec,
        idx=tiny_rec.idx,
        classes_tsv=str(classes),
        network=NHWC_NETWORK,  # the exported graph is NCHW whatever the config's layout
        pipeline=TINY_PIPELINE,
        lock_dir=str(tmp_path / "locks"),
    )
    readings = []

    def clock():
        readings.append(len(readings))
        return 0.5 * len(readings)

    point = onnx_inference.bench_infer_onnxruntime(
        str(path), setup, batch_size=8, bench_settings=INFER_BENCH, threads=1, clock=clock
    )
    assert results.read(str(path), results.BENCH_INFER_ENGINE) == point
    assert set(point) == INFER_KEYS | ENGINE_KEYS
    assert (point["engine"], point["threads"]) == ("onnxruntime", 1)
    assert (point["kind"], point["dtype"], point["layout"], point["gpus"]) == (
        "infer",
        "float32",
        "NCHW",
        0,
    )
    epochs, waited = INFER_BENCH.epochs, INFER_BENCH.latency_iterations
    assert len(readings) == 3 * epochs + 3 + 2 * waited
    # Each epoch: one tick (0.5 s) over the 3 batches after the first; 8 images each.
    assert point["epoch_batch_seconds"] == [pytest.approx(0.5 / 3)] * epochs
    assert point["images_per_s"] == pytest.approx(48.0)
    assert point["latency_ms"]["mean"] == pytest.approx(500.0)
    assert point["latency_images_per_s"] == pytest.approx(16.0)
    steps = read_steps(path.with_name(path.stem + ".dllogger.json"))
    assert list(steps) == [(0,), ()] and steps[(0,)][0]["val.ips"] == pytest.approx(16.0)
    assert point["versions"]["onnxruntime"] == onnxruntime.__version__
    assert "settings_digest" in point["provenance"]


def test_command_line_exports_and_scores(tiny_run, parity_val, tmp_path):
    model = tmp_path / "model.onnx"
    run_dir = str(tiny_run.run_dir)
    assert cli.main(["export-onnx", run_dir, str(model), "--classes", classes_tsv(tiny_run)]) == 0
    assert onnx_export.read_metadata(str(model))["epoch"] == 2
    out = tmp_path / "parity.json"
    arguments = ["score-onnx", str(model), run_dir, "--val-rec", parity_val.rec, "--out", str(out)]
    assert cli.main([*arguments, "--batch-size", "32", "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    assert result["images"] == PARITY_IMAGES and result["same_prediction_fraction"] >= 0.999
