"""The README quickstart with the `opsline` CLI: apply, build --wait, package list."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from libs.testing.k8s_double import K8sDouble
from libs.testing.stack import RunningStack

pytestmark = pytest.mark.e2e
HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello" / "opsline.yaml"


def opsline(
    stack: RunningStack, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OPSLINE_URL": stack.stack.gateway_url,
        "OPSLINE_TOKEN": stack.admin_token,
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "opsline", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def test_quickstart_apply_build_and_list(stack: RunningStack) -> None:
    applied = opsline(stack, "app", "apply", "-f", str(HELLO))
    assert applied.returncode == 0, applied.stderr
    assert "hello" in applied.stdout and "created" in applied.stdout
    again = opsline(stack, "app", "apply", "-f", str(HELLO))
    assert again.returncode == 0 and "unchanged" in again.stdout

    built = opsline(stack, "build", "hello", "--wait")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "succeeded: version 0.1.0" in built.stdout
    assert "web" in built.stdout

    packages = opsline(stack, "package", "list", "hello")
    assert packages.returncode == 0, packages.stderr
    assert "0.1.0" in packages.stdout and "sha256:" in packages.stdout

    deployed = opsline(stack, "deploy", "-f", str(HELLO.parent / "launch.yaml"), "--wait")
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "SUCCESS" in deployed.stdout
    answer = httpx.get("http://127.0.0.1:8031/", timeout=5).json()
    assert answer == {"app": "hello", "version": "0.1.0", "greeting": "hello from opsline"}
    listed = opsline(stack, "instance", "list")
    assert "hello-dev" in listed.stdout and "revision 1" in listed.stdout
    removed = opsline(stack, "instance", "uninstall", "hello-dev", "--wait")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://127.0.0.1:8031/", timeout=2)


def test_cli_errors_are_one_clear_line(stack: RunningStack, tmp_path: Path) -> None:
    bad = tmp_path / "opsline.yaml"
    bad.write_text("apiVersion: opsline.io/v1\nkind: App\nmeta:\n  name: [oops\n")
    result = opsline(stack, "app", "apply", "-f", str(bad))
    assert result.returncode == 1
    assert "line" in (result.stdout + result.stderr) and "Traceback" not in result.stderr
    missing = opsline(stack, "build", "no-such-app")
    assert missing.returncode == 1
    assert "no app named 'no-such-app'" in missing.stdout + missing.stderr


def test_cluster_commands(stack: RunningStack, k8s: K8sDouble, tmp_path: Path) -> None:
    kubeconfig = k8s.kubeconfig(tmp_path / "staging.kubeconfig")
    added = opsline(stack, "cluster", "add", "staging", "--kubeconfig", str(kubeconfig))
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"cluster staging: {k8s.url}" in added.stdout and "reachable" in added.stdout
    listed = opsline(stack, "cluster", "list")
    assert "staging" in listed.stdout and k8s.token not in listed.stdout
    missing = opsline(stack, "cluster", "add", "x", "--kubeconfig", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "cannot read" in missing.stderr
    removed = opsline(stack, "cluster", "remove", "staging")
    assert removed.returncode == 0 and "staging" not in opsline(stack, "cluster", "list").stdout
    again = opsline(stack, "cluster", "remove", "staging")
    assert again.returncode != 0 and "not registered" in again.stderr
