"""The runs a config asks for: replicas over seeds and sweeps, named and merged."""

import pytest

from resnet_recipe.workflow_support.run_matrix import planned_runs
from resnet_recipe.workflow_support.settings import run_settings


def config_with(runs=None, sweeps=None, defaults=None):
    training = {"defaults": {"seed": 1, "epochs": 3, **(defaults or {})}}
    training["runs"] = runs if runs is not None else {"cpu": {}}
    if sweeps is not None:
        training["sweeps"] = sweeps
    return {"training": training}


def test_a_run_of_one_seed_keeps_its_name_and_its_seed():
    config = config_with(runs={"cpu": {}, "other": {"seeds": [7]}})
    assert list(planned_runs(config)) == ["cpu", "other"]
    assert run_settings(config, "cpu").seed == 1
    assert run_settings(config, "other").seed == 7


def test_seeds_make_one_named_replica_per_seed_and_only_the_first_is_exported():
    config = config_with(runs={"cpu": {"seeds": [3, 1, 2]}})
    runs = planned_runs(config)
    assert list(runs) == ["cpu.seed3", "cpu.seed1", "cpu.seed2"]
    assert {run.family for run in runs.values()} == {"cpu"}
    assert [run.first_replica for run in runs.values()] == [True, False, False]
    assert [run_settings(config, name).seed for name in runs] == [3, 1, 2]
    assert run_settings(config, "cpu.seed2").seeds == ()


def test_seeds_in_the_defaults_replicate_every_run_unless_a_run_sets_its_seed():
    config = config_with(runs={"a": {}, "b": {"seed": 9}}, defaults={"seeds": [1, 2]})
    assert list(planned_runs(config)) == ["a.seed1", "a.seed2", "b"]
    assert run_settings(config, "b").seed == 9


def test_seed_and_seeds_in_one_run_is_an_error_naming_the_run():
    with pytest.raises(ValueError, match=r"training\.runs\.cpu: give seed .* or seeds"):
        planned_runs(config_with(runs={"cpu": {"seed": 2, "seeds": [1, 2]}}))


@pytest.mark.parametrize(
    "seeds, message",
    [([1, 1], "listed twice"), (["x"], "list of integers"), ([-1], "list of integers")],
)
def test_bad_seeds_are_errors_naming_the_key(seeds, message):
    with pytest.raises(ValueError, match=rf"training\.runs\.cpu\.seeds: .*{message}"):
        planned_runs(config_with(runs={"cpu": {"seeds": seeds}}))


def test_a_sweep_is_one_run_per_combination_named_by_its_values():
    sweep = {
        "base": "cpu",
        "settings": {"epochs": 2},
        "grid": {"lr_per_256": [0.05, 0.1], "batch_per_device": [16, 32]},
    }
    config = config_with(runs={"cpu": {"dtype": "float32"}}, sweeps={"lr": sweep})
    names = [name for name in planned_runs(config) if name.startswith("lr.")]
    assert names == [
        "lr.batch_per_device-16.lr_per_256-0.05",
        "lr.batch_per_device-16.lr_per_256-0.1",
        "lr.batch_per_device-32.lr_per_256-0.05",
        "lr.batch_per_device-32.lr_per_256-0.1",
    ]
    point = run_settings(config, "lr.batch_per_device-32.lr_per_256-0.05")
    assert (point.batch_per_device, point.lr_per_256, point.epochs) == (32, 0.05, 2)
    assert point.dtype == "float32"


def test_a_sweep_over_a_replicated_base_replicates_every_point():
    sweep = {"base": "cpu", "grid": {"lr_per_256": [0.1, 0.2]}}
    config = config_with(runs={"cpu": {"seeds": [1, 2]}}, sweeps={"s": sweep})
    assert [name for name in planned_runs(config) if name.startswith("s.")] == [
        "s.lr_per_256-0.1.seed1",
        "s.lr_per_256-0.1.seed2",
        "s.lr_per_256-0.2.seed1",
        "s.lr_per_256-0.2.seed2",
    ]
    sweep["settings"] = {"seed": 4}  # seed at the sweep drops the base's seeds
    assert [name for name in planned_runs(config) if name.startswith("s.")] == [
        "s.lr_per_256-0.1",
        "s.lr_per_256-0.2",
    ]


@pytest.mark.parametrize(
    "sweep, message",
    [
        ({"base": "nope", "grid": {"epochs": [1]}}, r"training\.sweeps\.s\.base: no run 'nope'"),
        ({"grid": {}}, r"training\.sweeps\.s\.grid: expected settings"),
        ({"grid": {"epochs": []}}, r"training\.sweeps\.s\.grid\.epochs: expected a non-empty"),
        ({"grid": {"seeds": [[1, 2]]}}, r"training\.sweeps\.s\.grid\.seeds: replicas come"),
        ({"grid": {"epochs": [1]}, "gird": {}}, r"training\.sweeps\.s: unknown key\(s\)"),
    ],
)
def test_sweep_layout_errors_name_the_key(sweep, message):
    with pytest.raises(ValueError, match=message):
        planned_runs(config_with(sweeps={"s": sweep}))


def test_a_swept_value_of_the_wrong_type_is_an_error_naming_the_sweep():
    config = config_with(sweeps={"s": {"grid": {"epochs": ["many"]}}})
    with pytest.raises(ValueError, match=r"training\.sweeps\.s\.epochs: expected an integer"):
        run_settings(config, "s.epochs-many")


def test_a_name_made_twice_is_an_error_naming_both():
    config = config_with(runs={"cpu": {"seeds": [1, 2]}, "cpu.seed2": {}})
    with pytest.raises(ValueError, match=r"training\.runs\.cpu\.seed2: run name 'cpu\.seed2'"):
        planned_runs(config)
