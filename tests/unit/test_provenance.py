"""Provenance of results: versions, MXNet build features, GPUs as nvidia-smi reports them,
settings digest (where the code came from: stages/test_code_origin.py)."""

import os
import sys

from helpers import REPO

from resnet_recipe.workflow_support import devices, provenance

SOURCE = REPO / "src"


def test_settings_digest_ignores_key_order_and_sees_values():
    digest = provenance.settings_digest({"a": 1, "b": {"c": [1, 2], "d": None}})
    assert digest == provenance.settings_digest({"b": {"d": None, "c": [1, 2]}, "a": 1})
    assert digest != provenance.settings_digest({"a": 1, "b": {"c": [2, 1], "d": None}})
    assert len(digest) == 64


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
