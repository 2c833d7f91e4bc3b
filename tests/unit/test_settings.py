"""Settings built once at the boundary: defaults, type checks that name the option, numbers
written in exponent form, in config files and on the command line."""

import copy

import jsonschema
import pytest
import yaml
from helpers import REPO
from helpers.workflow_runs import demo_config

from resnet_recipe import cli
from resnet_recipe.workflow_support.settings import (
    BenchTrain,
    InputPipeline,
    Network,
    Score,
    TrainingRun,
    read_config_numbers,
)

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


def test_a_section_takes_the_defaults_for_what_the_config_leaves_out():
    run = TrainingRun.from_config({"gpus": 0, "lr_steps": [2, 5]}, "training.runs.x")
    assert (run.gpus, run.lr_steps, run.batch_per_device) == (0, (2, 5), 208)
    assert run.to_config()["lr_steps"] == [2, 5]
    assert Score.from_config({}, "score") == Score(
        epoch=None, batch_size={"float16": 128, "float32": 64}
    )


@pytest.mark.parametrize(
    "section, mapping, message",
    [
        (TrainingRun, {"lr_per_256": "fast"}, "training.runs.x.lr_per_256: expected a number"),
        (TrainingRun, {"epochs": 2.5}, "training.runs.x.epochs: expected an integer"),
        (TrainingRun, {"epochs": True}, "training.runs.x.epochs: expected an integer"),
        (TrainingRun, {"lr_steps": [1, "b"]}, r"training.runs.x.lr_steps\[1\]: expected"),
        (TrainingRun, {"momentun": 0.9}, r"training.runs.x: unknown setting\(s\) \['momentun'\]"),
        (Network, {"zero_init_last_gamma": "yes"}, "x.zero_init_last_gamma: expected true"),
        (Score, {"epoch": "last"}, "x.epoch: expected an integer or null"),
        (BenchTrain, {"num_examples": {"float16": "many"}}, r"x.num_examples.float16: expected"),
    ],
)
def test_a_wrong_value_stops_with_the_option_named(section, mapping, message):
    option = "training.runs.x" if section is TrainingRun else "x"
    with pytest.raises(ValueError, match=message):
        section.from_config(mapping, option)


def test_numbers_written_as_text_are_the_numbers_they_say():
    run = TrainingRun.from_config(
        {"lr_per_256": "1e-3", "weight_decay": "5E-5", "loss_scale": "128"}, "training.defaults"
    )
    assert (run.lr_per_256, run.weight_decay, run.loss_scale) == (0.001, 5e-5, 128)
    assert TrainingRun.from_config({"loss_scale": "dynamic"}, "t").loss_scale == "dynamic"
    # An int stays an int where a number is asked for: 5 warmup epochs are 5, not 5.0.
    assert repr(TrainingRun.from_config({"warmup_epochs": 5}, "t").warmup_epochs) == "5"


def test_config_numbers_in_exponent_form_pass_the_schema():
    config = demo_config()
    config["training"]["defaults"]["lr_per_256"] = "2e-1"  # what YAML 1.1 makes of 2e-1
    config["training"]["runs"]["cpu_fp32"] = {"weight_decay": "1E-4"}
    config["input"]["mean"] = ["1.2368e2", 116.28, 103.53]
    with pytest.raises(jsonschema.ValidationError, match="'2e-1' is not of type 'number'"):
        jsonschema.validate(copy.deepcopy(config), SCHEMA)
    read_config_numbers(config)
    jsonschema.validate(config, SCHEMA)
    assert config["training"]["defaults"]["lr_per_256"] == 0.2
    assert config["training"]["runs"]["cpu_fp32"]["weight_decay"] == 1e-4
    assert config["input"]["mean"][0] == 123.68
    # Text that is not a number in exponent form stays text.
    assert config["network"]["version"] == "1.5" and config["data"]["raw_dir"] == "resources/demo"


def test_yaml_1_1_reads_exponent_numbers_as_text():
    # The reason for read_config_numbers: PyYAML (like Snakemake's config loader) follows
    # YAML 1.1, where a float needs a dot and a signed exponent.
    assert yaml.safe_load("a: 1e-3\nb: 1.0e-3\nc: 1.0e+3") == {"a": "1e-3", "b": 0.001, "c": 1000.0}


def train_args(*options):
    required = ["--train-rec", "t.rec", "--val-rec", "v.rec", "--classes", "c.tsv", "--out", "o"]
    return cli.build_parser().parse_args(["train", *required, *options])


def test_command_line_takes_exponent_numbers_and_builds_each_section_once():
    args = train_args("--lr-per-256", "1e-3", "--lr-steps", "2", "4", "--weight-decay-on", "all")
    run = cli._settings(args, TrainingRun)
    assert (run.lr_per_256, run.lr_steps, run.loss_scale) == (0.001, (2, 4), "none")
    assert run.weight_decay_on == "all"
    run = run.replace(weight_decay_on="weights_and_bn_gamma")
    assert run.replace(lr_per_256=0.1, lr_steps=(30, 60, 80)) == TrainingRun()
    pipeline = cli._settings(train_args("--mean", "1e2", "100", "100"), InputPipeline)
    assert pipeline.mean == (100.0, 100, 100)


def test_command_line_names_the_option_of_a_wrong_value(capsys):
    with pytest.raises(SystemExit):
        train_args("--lr-per-256", "fast")
    assert "argument --lr-per-256: --lr-per-256: expected a number, not 'fast'" in (
        capsys.readouterr().err
    )


# (section, setting, the original's value, where the original has it). "The original" is
# NVIDIA's ResNet50 v1.5 for MXNet at DeepLearningExamples a8e1d1cd.
ORIGINAL_DEFAULTS = [
    (TrainingRun, "gpus", 8, "runner L23"),
    (TrainingRun, "batch_per_device", 208, "runner L25"),
    (TrainingRun, "dtype", "float16", "runner L37"),
    (TrainingRun, "epochs", 90, "runner L27"),
    (TrainingRun, "lr_per_256", 0.1, "runner L29, L48"),
    (TrainingRun, "warmup_epochs", 5, "runner L66"),
    (TrainingRun, "lr_steps", (30, 60, 80), "runner L60"),
    (TrainingRun, "lr_factor", 0.1, "fit.py L121"),
    (TrainingRun, "momentum", 0.9, "fit.py L129"),
    (TrainingRun, "weight_decay", 0.0001, "fit.py L131"),
    # Module's optimizer: names ending in _weight or _gamma (MXNet optimizer.py L388-397).
    (TrainingRun, "weight_decay_on", "weights_and_bn_gamma", "fit.py L437"),
    (TrainingRun, "label_smoothing", 0.0, "resnet.py L298"),
    # multi_precision SGD and nothing else: no static or dynamic loss scale.
    (TrainingRun, "loss_scale", "none", "fit.py L266-270"),
    (TrainingRun, "log_interval", 20, "runner L67"),
    # --save-period 1 with mx.callback.do_checkpoint (fit.py L97-101).
    (TrainingRun, "export_every", 1, "fit.py L139"),
    (InputPipeline, "image_size", 224, "runner L66"),
    (InputPipeline, "val_resize", 256, "train.py L70"),
    # The README's figure; the DALI pipeline that ran passed none (dali.py L53): DALI's 0.08.
    (InputPipeline, "min_random_area", 0.05, "README.md L35"),
    (InputPipeline, "mean", (123.675, 116.28, 103.53), "dali.py L38"),
    (InputPipeline, "std", (58.395, 57.12, 57.375), "dali.py L39"),
    (InputPipeline, "dali_threads", 3, "dali.py L29"),
    (InputPipeline, "dali_val_threads", 10, "dali.py L31"),
    (InputPipeline, "prefetch_queue_depth", 2, "runner L79"),
    (InputPipeline, "nvjpeg_padding_mb", 64, "runner L79"),
    (Score, "batch_size", {"float16": 128, "float32": 64}, "SCORE_FP16.sh/SCORE_FP32.sh L19"),
]


@pytest.mark.parametrize(("section", "name", "value", "where"), ORIGINAL_DEFAULTS)
def test_defaults_are_the_originals(section, name, value, where):
    default = getattr(section(), name)
    if isinstance(value, tuple):
        assert default == pytest.approx(value), where
    else:
        assert default == value, where


def test_the_shipped_full_config_keeps_the_original_defaults():
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    sections = {TrainingRun: config["training"]["defaults"], InputPipeline: config["input"]}
    sections[Score] = config["score"]
    for section, name, value, where in ORIGINAL_DEFAULTS:
        assert section.from_config(sections[section], "x").to_config()[name] == (
            list(value) if isinstance(value, tuple) else value
        ), where
