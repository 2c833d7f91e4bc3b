"""ONNX export and onnxruntime parity on a tiny trained run: the metadata round-trips, the
two engines agree, bad input names its file, the inference point, the command line, and the
workflow's rules."""

import json
import shutil

import mxnet as mx
import numpy as np
import onnx
import onnxruntime
import pytest
import test_evaluation
from conftest import copy_workflow, planned_jobs, run_snakemake, write_config
from test_training import TINY_NETWORK, TINY_PIPELINE

from resnet_recipe import cli, network, onnx_export, onnx_inference, results
from resnet_recipe.settings import BenchInfer, Onnx, Score
from resnet_recipe.throughput import BenchSetup

# The scoring tests' tiny trained run (2 epochs of three noisy colours, ResNet-18 at 16 px).
tiny_run = test_evaluation.trained_run

# Largest absolute logit difference accepted between onnxruntime and MXNet in float32 here
# (logits of the tiny run are of order 1-10; the engines differ by float rounding only).
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
        "score_settings": Score(epoch=None, batch_size=16),
        "pipeline_settings": TINY_PIPELINE,
        "onnx_settings": Onnx(logit_tolerance=LOGIT_TOLERANCE),
        "threads": 2,
        "run": "tiny",
        **overrides,
    }
    return onnx_inference.score_onnx(str(path), **arguments)


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


def test_onnxruntime_gives_mxnets_logits_for_any_batch_size(tiny_run, exported):
    net = network.load_for_inference(str(tiny_run.run_dir / "model"), 2, [mx.cpu()])
    session = onnxruntime.InferenceSession(str(exported[0]), providers=["CPUExecutionProvider"])
    size = TINY_PIPELINE.image_size
    for batch in (1, 5):
        data = np.random.default_rng(batch).normal(size=(batch, 3, size, size)).astype("float32")
        (logits,) = session.run(None, {"data": data})
        np.testing.assert_allclose(logits, net(mx.nd.array(data)).asnumpy(), atol=LOGIT_TOLERANCE)


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
    scored = test_evaluation.score(
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


def test_a_missing_checkpoint_names_the_file(tiny_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run_dir)
    arguments = {"run_dir": str(run_dir), "classes_tsv": classes_tsv(tiny_run)}
    (run_dir / "model-0002.params").unlink()
    with pytest.raises(FileNotFoundError, match=rf"{run_dir}: no model-NNNN.params"):
        onnx_export.export_run(str(tmp_path / "m.onnx"), epoch=None, **arguments)
    with pytest.raises(FileNotFoundError, match=r"checkpoint .*run/model-0002\.params not found"):
        onnx_export.float32_network(TINY_NETWORK, 3, str(run_dir / "model"), 2)
    shutil.copy(tiny_run.run_dir / "model-0002.params", run_dir / "model-0001.params")
    with pytest.raises(FileNotFoundError, match=r"score\.epoch is 2, but .* epochs \[1\]"):
        onnx_export.export_run(str(tmp_path / "m.onnx"), epoch=2, **arguments)
    assert not (tmp_path / "m.onnx").exists()


def test_weights_of_another_network_name_the_checkpoint(tiny_run):
    prefix = str(tiny_run.run_dir / "model")
    with pytest.raises(ValueError, match=r"model-0002\.params.*stage1_block0_conv2_weight"):
        onnx_export.float32_network(TINY_NETWORK.replace(depth=50), 3, prefix, 2)
    with pytest.raises(ValueError, match=r"model-0002\.params: fc_weight has shape"):
        onnx_export.float32_network(TINY_NETWORK, 4, prefix, 2)


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
    with pytest.raises(FileNotFoundError, match="absent.onnx: ONNX model not found"):
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


def test_onnxruntime_inference_point(tiny_rec, tmp_path):
    classes = tmp_path / "classes.tsv"
    classes.write_text("".join(f"{label}\tc{label}\n" for label in range(3)))
    path = tmp_path / "b4.json"
    setup = BenchSetup(
        rec=tiny_rec.rec,
        idx=tiny_rec.idx,
        classes_tsv=str(classes),
        network=TINY_NETWORK,
        pipeline=TINY_PIPELINE,
        lock_dir=str(tmp_path / "locks"),
    )
    bench = BenchInfer(data="dali", iterations=3, warmup_iterations=1, gpus=0)
    point = onnx_inference.bench_infer_onnxruntime(
        str(path), setup, batch_size=4, bench_settings=bench, threads=1
    )
    assert results.read(str(path), results.BENCH_INFER_ENGINE) == point
    assert "settings_digest" in point["provenance"]
    assert point["engine"] == "onnxruntime" and point["kind"] == "infer"
    assert (point["dtype"], point["batch_size"], point["iterations"]) == ("float32", 4, 3)
    assert point["images_per_s"] == pytest.approx(3 * 4 / point["timed_seconds"])
    assert set(point["latency_ms"]) == {"mean", "p50", "p90", "p95", "p99", "max"}
    assert point["versions"]["onnxruntime"] == onnxruntime.__version__


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


def test_the_workflow_plans_export_parity_and_onnxruntime_points(workflow_dir):
    jobs = planned_jobs(workflow_dir)
    assert (jobs["export_onnx"], jobs["score_onnx"]) == (1, 1)
    assert jobs["bench_infer_onnx"] == 3  # the demo's float32 batch sizes 1, 8, 32


@pytest.mark.slow
def test_the_tiny_demo_writes_model_and_parity(tmp_path):
    from test_caching import tiny_config

    from resnet_recipe.demo_data import write_demo_tree

    workdir = copy_workflow(tmp_path / "workflow")
    write_demo_tree(workdir / "raw")
    write_config(workdir / "tiny.yaml", tiny_config())
    targets = ["results/onnx/cpu_fp32/parity.json", "results/bench_infer_onnx/b4.json"]
    run_snakemake(workdir, "--configfile", "tiny.yaml", "--cores", "2", *targets)
    metadata = onnx_export.read_metadata(str(workdir / "results/onnx/cpu_fp32/model.onnx"))
    assert metadata["class_labels"] == [f"digit{d}" for d in range(10)]
    result = json.loads((workdir / targets[0]).read_text())
    assert result["same_prediction_fraction"] >= 0.999
    assert result["max_abs_logit_difference"] <= tiny_config()["onnx"]["logit_tolerance"]
    assert json.loads((workdir / targets[1]).read_text())["engine"] == "onnxruntime"
    again = run_snakemake(workdir, "-n", "--cores", "2", *targets, "--configfile", "tiny.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr
