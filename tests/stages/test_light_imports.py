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


@pytest.mark.parametrize("command", [["--help"], ["make-list", "--help"], ["train", "--help"]])
def test_help_imports_neither_mxnet_nor_dali(command):
    code = (
        "import sys\n"
        "from resnet_recipe.cli import main\n"
        "try:\n"
        f"    main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('mxnet', 'nvidia.dali', 'pandas', 'matplotlib')\n"
        "print('LOADED', sorted(name for name in heavy if name in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    assert "usage: resnet-recipe" in out
    assert out.splitlines()[-1] == "LOADED []"


def test_the_digest_imports_neither_mxnet_nor_dali():
    code = (
        "import sys\n"
        "from resnet_recipe.workflow_support.code_digest import code_digests\n"
        f"code_digests([{str(SCRIPTS / 'train.py')!r}], {str(SOURCE)!r})\n"
        "print(sorted(m for m in ('mxnet', 'nvidia.dali', 'numpy') if m in sys.modules))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SOURCE)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.strip() == "[]"


def test_results_module_imports_neither_mxnet_nor_pandas():
    code = (
        "import sys, resnet_recipe.workflow_support.results; "
        "print(sorted(m for m in ('mxnet', 'pandas', 'nvidia.dali') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    assert out.strip() == "[]"


def test_describe_machine_without_snakemake():
    script = (
        "import json, sys\n"
        "from resnet_recipe.workflow_support.devices import describe_machine\n"
        "print(json.dumps(describe_machine()))\n"
        "assert 'snakemake' not in sys.modules and 'mxnet' not in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    machine = json.loads(done.stdout)
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
    code = (
        "import sys\n"
        "from resnet_recipe.cli import main\n"
        f"main(['compare', {str(a)!r}, {str(b)!r}])\n"
        "heavy = ('mxnet', 'nvidia.dali', 'pandas', 'matplotlib')\n"
        "print('LOADED', sorted(name for name in heavy if name in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    assert "provenance that differs:" in out
    assert out.splitlines()[-1] == "LOADED []"
