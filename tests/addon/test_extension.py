"""The extension zip: built for this machine's platform, installed by Blender into an isolated user folder
(BLENDER_USER_RESOURCES, in a fresh process), enabled, and able to import zmq from its own wheels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile

import pytest

from addon_helpers import ROOT

sys.path.insert(0, str(ROOT))
from tools import build_extension as be  # noqa: E402


@pytest.fixture(scope="module")
def extension_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    try:
        (path,) = be.build_extension(out, ["cp311"], [be.host_platform()], ROOT / "build" / "wheels")
    except be.BuildError as exc:
        if "package registry" in str(exc) or "could not run" in str(exc):
            pytest.skip(f"no pyzmq wheel for this platform could be had (offline?): {exc}")
        raise
    return path


def test_the_zip_holds_the_addon_its_protocol_and_a_wheel(extension_zip):
    with zipfile.ZipFile(extension_zip) as archive:
        names = set(archive.namelist())
        manifest = tomllib.loads(archive.read("blender_manifest.toml").decode())
    assert {"__init__.py", "engine/client.py", "ui/panels.py", "operators/job_ops.py", "core/protocol.py",
            "shared_protocol/__init__.py", "shared_protocol/wire.py"} <= names
    assert manifest["blender_version_max"] == "5.1.0" and manifest["platforms"] == [be.host_platform()]
    assert len(manifest["wheels"]) == 1 and manifest["wheels"][0][2:] in names
    assert not any("__pycache__" in n for n in names)


def test_blender_installs_and_enables_the_zip_and_zmq_comes_from_it(extension_zip, tmp_path):
    user = tmp_path / "blender-user"
    user.mkdir()
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "addon" / "install_extension.py"), str(extension_zip)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] == ["FINISHED"] and report["enabled"] and report["loaded"], report
    assert report["zmq"].startswith(report["site"]) and report["site"].startswith(str(user))
    assert report["protocol_source"] == "vendored"
    assert report["addon_file"].startswith(str(user)) and report["panel"] and report["prefs"]


DEV_SCRIPT = """
import json, sys
import bpy
import addon_utils
module = "bl_ext.user_default.atelier"
addon_utils.enable(module, default_set=True, handle_error=None)
loaded, enabled = addon_utils.check(module)
protocol = sys.modules.get(module + ".core.protocol")
print(json.dumps({"enabled": enabled, "source": getattr(protocol, "SOURCE", None),
                  "panel": hasattr(bpy.types, "ATELIER_PT_backend")}))
sys.path.insert(0, TOOLS)
from bpy_exit import exit_blender_module  # bpy < 5.0 crashes or hangs in its own teardown at exit
exit_blender_module(0)
""".replace("TOOLS", repr(str(ROOT / "tools")))


def test_a_developer_can_link_the_checkout_into_blender(tmp_path):
    """blender_addon/ linked into the extensions folder runs from the checkout, protocol included."""
    user = tmp_path / "blender-user"
    repo = user / "extensions" / "user_default"
    repo.mkdir(parents=True)
    try:
        (repo / "atelier").symlink_to(ROOT / "blender_addon", target_is_directory=True)
    except OSError as exc:
        pytest.skip(f"cannot make a symlink here: {exc}")
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(user)}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "-c", DEV_SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"enabled": True, "source": "checkout", "panel": True}
