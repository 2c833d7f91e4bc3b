"""Modules that must stay light: each is imported in a fresh interpreter, which must not
load MXNet, DALI or the other heavy libraries (the command line's help, the code digest
every Snakemake run computes, the result files, compare, the machine description)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO
from helpers.result_files import results_folder

from resnet_recipe.workflow_support import devices

SCRIPTS = REPO / "workflow" / "scripts"
SOURCE = REPO / "src"


HEAVY = ("mxnet", "nvidia.dali", "pandas", "matplotlib")


def loaded_after(code, heavy=HEAVY, env=None):
    """Run `code` in a fresh interpreter; return what it printed and which of the `heavy`
    modules it loaded."""
    script = (
        f"{code}\nimport sys\nprint('LOADED', sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    ).stdout
    *printed, loaded = out.splitlines()
    assert loaded.startswith("LOADED "), out
    return "\n".join(printed), loaded.removeprefix("LOADED ")


@pytest.mark.parametrize("command", [["--help"], ["make-list", "--help"], ["train", "--help"]])
def test_help_imports_neither_mxnet_nor_dali(command):
    code = (
        "from resnet_recipe.cli import main\n"
        f"try:\n    main({command!r})\nexcept SystemExit:\n    pass"
    )
    out, loaded = loaded_after(code)
    assert "usage: resnet-recipe" in out
    assert loaded == "[]"


def test_the_digest_imports_neither_mxnet_nor_dali():
    code = (
        "from resnet_recipe.workflow_support.code_digest import code_digests\n"
        f"code_digests([{str(SCRIPTS / 'train.py')!r}], {str(SOURCE)!r})"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    assert loaded_after(code, ("mxnet", "nvidia.dali", "numpy"), env)[1] == "[]"


def test_results_module_imports_neither_mxnet_nor_pandas():
    assert loaded_after("import resnet_recipe.workflow_support.results")[1] == "[]"


def test_describe_machine_without_snakemake():
    code = (
        "import json\n"
        "from resnet_recipe.workflow_support.devices import describe_machine\n"
        "print(json.dumps(describe_machine()))"
    )
    out, loaded = loaded_after(code, ("snakemake", "mxnet"))
    assert loaded == "[]"
    machine = json.loads(out)
    assert machine["logical_cores"] == os.cpu_count()
    assert machine["hostname"] and machine["cpu_model"]
    assert set(machine["cpu_flags"]) <= set(devices.KERNEL_CPU_FLAGS)
    with open("/proc/cpuinfo") as cpuinfo:
        assert ("avx2" in cpuinfo.read()) == ("avx2" in machine["cpu_flags"])
    assert machine["onednn_isa"]  # e.g. "Intel AVX2", as oneDNN names it
    assert isinstance(machine["gpus"], list)
    assert machine["versions"]["mxnet"] == "1.9.1"
    assert machine["versions"]["nvidia-dali"] == "1.34.0"
    assert machine["versions"]["numpy"] == "1.23.5"
    assert machine["versions"]["python"].startswith("3.11")


def test_compare_imports_neither_mxnet_nor_dali(tmp_path):
    a = results_folder(tmp_path / "a", 32)
    b = results_folder(tmp_path / "b", 64, commit="feedface" * 5)
    code = f"from resnet_recipe.cli import main\nmain(['compare', {str(a)!r}, {str(b)!r}])"
    out, loaded = loaded_after(code)
    assert "provenance that differs:" in out
    assert loaded == "[]"


def test_the_stages_load_tensorboard_only_to_write_a_runs_events():
    code = (
        "import resnet_recipe.training.loop, resnet_recipe.scoring.evaluation\n"
        "import resnet_recipe.benchmarking.throughput"
    )
    assert loaded_after(code, ("tensorboardX", "tensorboard"))[1] == "[]"
