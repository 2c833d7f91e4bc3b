"""Where results' code came from: provenance.gather in a fresh interpreter on a copy of the
package, outside git and in a git checkout, clean and edited."""

import json
import os
import shutil
import subprocess
import sys

from helpers import REPO

from resnet_recipe.workflow_support import provenance

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
