"""Provenance of results: code origin inside and outside git, versions, MXNet build
features, GPUs as nvidia-smi reports them, settings digest."""

import json
import os
import shutil
import subprocess
import sys

from helpers import REPO

from resnet_recipe.workflow_support import devices, provenance

SOURCE = REPO / "src"
GIT = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]


def gather_in(package_root, settings, env=None):
    """provenance.gather(settings) in a fresh interpreter importing the package from
    package_root."""
    code = (
        "import json, sys\n"
        "from resnet_recipe.workflow_support import provenance\n"
        "print(json.dumps(provenance.gather(json.loads(sys.argv[1]))))\n"
    )
    env = {**os.environ, **(env or {}), "PYTHONPATH": str(package_root)}
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(settings)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(done.stdout)


def copy_package(root):
    shutil.copytree(
        SOURCE / "resnet_recipe",
        root / "src" / "resnet_recipe",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return root / "src"


def test_settings_digest_ignores_key_order_and_sees_values():
    digest = provenance.settings_digest({"a": 1, "b": {"c": [1, 2], "d": None}})
    assert digest == provenance.settings_digest({"b": {"d": None, "c": [1, 2]}, "a": 1})
    assert digest != provenance.settings_digest({"a": 1, "b": {"c": [2, 1], "d": None}})
    assert len(digest) == 64


def test_outside_git_the_commit_is_unknown(tmp_path):
    found = gather_in(copy_package(tmp_path), {"x": 1})
    assert found["code"]["git_commit"] is None
    assert found["code"]["git_uncommitted_changes"] is None
    assert found["settings_digest"] == provenance.settings_digest({"x": 1})


def test_a_checkout_gives_its_commit_and_whether_it_was_edited(tmp_path):
    source = copy_package(tmp_path)
    subprocess.run([*GIT, "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*GIT, "-C", str(tmp_path), "add", "src"], check=True)
    subprocess.run([*GIT, "-C", str(tmp_path), "commit", "-q", "-m", "package"], check=True)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()

    clean = gather_in(source, {})["code"]
    assert clean["git_commit"] == head
    assert clean["git_uncommitted_changes"] is False

    # A new untracked file (a result, a log) is not a change of the code.
    (tmp_path / "results.json").write_text("{}")
    assert gather_in(source, {})["code"]["git_uncommitted_changes"] is False

    module = source / "resnet_recipe" / "data" / "records.py"
    module.write_text(module.read_text() + "# edited\n")
    edited = gather_in(source, {})["code"]
    assert edited["git_commit"] == head
    assert edited["git_uncommitted_changes"] is True


def test_versions_and_mxnet_build_features():
    found = provenance.gather({})
    assert set(found["versions"]) == {"python", "mxnet", "nvidia-dali", "numpy"}
    assert found["versions"]["mxnet"] == "1.9.1"
    assert found["versions"]["python"] == ".".join(map(str, sys.version_info[:3]))
    features = found["mxnet_features"]
    assert {"CUDA", "CUDNN", "NCCL", "DIST_KVSTORE"} <= set(features)
    assert "MKLDNN" in features or "ONEDNN" in features
    assert all(isinstance(value, bool) for value in features.values())
    assert found["machine"]["hostname"]
    assert found["machine"]["logical_cores"] == os.cpu_count()


def test_gpus_as_nvidia_smi_lists_them(tmp_path, monkeypatch):
    """A GPU machine stood in for by an nvidia-smi on PATH that answers the query."""
    fake_smi = tmp_path / "nvidia-smi"
    fake_smi.write_text(
        "#!/bin/sh\n"
        'test "$1" = "--query-gpu=name,driver_version" || exit 1\n'
        "printf 'NVIDIA A100-SXM4-80GB, 535.104.05\\nNVIDIA A100-SXM4-80GB, 535.104.05\\n'\n"
    )
    fake_smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    machine = provenance.gather({})["machine"]
    assert machine["gpus"] == ["NVIDIA A100-SXM4-80GB"] * 2
    assert machine["gpu_count"] == 2
    assert machine["gpu_driver"] == "535.104.05"
    assert devices.gpu_names() == ["NVIDIA A100-SXM4-80GB"] * 2


def test_no_gpus_without_nvidia_smi(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    machine = devices.describe_machine()
    assert (machine["gpus"], machine["gpu_count"], machine["gpu_driver"]) == ([], 0, None)
