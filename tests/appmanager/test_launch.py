"""Launch files: validation, parameters substituted with their types, trait overrides."""

from __future__ import annotations

import pytest

from services.appmanager import launch
from services.appmanager.spec import SpecError

APP = {
    "parameters": [{"name": "port", "default": 8000}, {"name": "region", "default": None}],
    "components": [
        {
            "name": "web",
            "type": "process",
            "source": {"dir": "/x"},
            "traits": {
                "replicas": 1,
                "env": {"A": "a", "URL": "http://h:{{ parameters.port }}"},
                "ports": [{"name": "http", "port": "{{ parameters.port }}"}],
            },
        }
    ],
}
TEXT = """\
apiVersion: opsline.io/v1
kind: Launch
app: hello
target: {cluster: local, namespace: demo, stage: prod}
parameters: {port: 9000, region: eu}
components:
  web: {traits: {replicas: 3, env: {B: b}}}
"""


def test_render_substitutes_and_merges() -> None:
    spec = launch.parse(TEXT)
    assert spec.instance_id() == "hello-prod" and spec.version == "latest"
    params, (web,) = launch.render(APP, spec)
    assert params == {"port": 9000, "region": "eu"}
    assert web["traits"]["replicas"] == 3
    assert web["traits"]["env"] == {"A": "a", "B": "b", "URL": "http://h:9000"}
    assert web["traits"]["ports"] == [{"name": "http", "port": 9000}]  # keeps the int type


def test_launch_errors_name_what_is_wrong() -> None:
    with pytest.raises(SpecError, match="region: no value and no default"):
        launch.render(APP, launch.parse(TEXT.replace(", region: eu", "")))
    with pytest.raises(SpecError, match=r"parameters\.colour: the app declares no such"):
        launch.render(APP, launch.parse(TEXT.replace("region: eu", "region: eu, colour: 1")))
    with pytest.raises(SpecError, match=r"components\.api: the app has no such component"):
        launch.render(APP, launch.parse(TEXT.replace("  web:", "  api:")))
    with pytest.raises(SpecError, match=r"version: .1\.x. is not .latest."):
        launch.parse(TEXT + "version: 1.x\n")
    with pytest.raises(SpecError, match="kind"):
        launch.parse(TEXT.replace("kind: Launch", "kind: App"))
