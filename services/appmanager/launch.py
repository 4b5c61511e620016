"""Launch files (OAM-style ApplicationConfiguration): what to run where, with which values.

apiVersion: opsline.io/v1
kind: Launch
app: hello
version: latest            # or 0.1.0
instance: hello-dev        # default: <app>-<stage>
target: {cluster: local, namespace: demo, stage: dev}
parameters: {port: 8031}
components:
  web: {traits: {replicas: 2, env: {GREETING: hi}}}
rollback: {automatic: true}
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.appmanager.spec import NAME, SEMVER, SpecError

_PARAM = re.compile(r"\{\{\s*parameters\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetSpec(_Strict):
    cluster: str = Field(default="local", pattern=NAME)
    namespace: str = Field(default="default", pattern=NAME)
    stage: str = Field(default="dev", pattern=NAME)


class ComponentOverride(_Strict):
    traits: dict[str, Any] = Field(default_factory=dict)


class RollbackSpec(_Strict):
    automatic: bool = False


class LaunchSpec(_Strict):
    apiVersion: Literal["opsline.io/v1"]
    kind: Literal["Launch"]
    app: str = Field(pattern=NAME)
    version: str = "latest"
    instance: str | None = Field(default=None, pattern=NAME)
    target: TargetSpec = Field(default_factory=TargetSpec)
    parameters: dict[str, Any] = Field(default_factory=dict)
    components: dict[str, ComponentOverride] = Field(default_factory=dict)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)

    def instance_id(self) -> str:
        return self.instance or f"{self.app}-{self.target.stage}"[:63]


def parse(text: str) -> LaunchSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([f"{where}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"invalid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise SpecError(["a launch file is a mapping (apiVersion, kind, app, target, …)"])
    try:
        spec = LaunchSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            [
                f"{'.'.join(str(p) for p in e['loc']) or '(document)'}: "
                f"{e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            ]
        ) from None
    if spec.version != "latest" and not SEMVER.match(spec.version):
        raise SpecError([f"version: {spec.version!r} is not 'latest' or MAJOR.MINOR.PATCH"])
    return spec


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _PARAM.fullmatch(value.strip())
        if whole:  # "{{ parameters.port }}" keeps the parameter's own type
            return params[whole.group(1)]
        return _PARAM.sub(lambda m: str(params[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    return value


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def render(app_spec: dict[str, Any], launch: LaunchSpec) -> tuple[dict[str, Any], list[dict]]:
    """The parameter values and each component with its final traits."""
    declared = {p["name"]: p.get("default") for p in app_spec.get("parameters", [])}
    unknown = sorted(set(launch.parameters) - set(declared))
    errors = [f"parameters.{name}: the app declares no such parameter" for name in unknown]
    names = {c["name"] for c in app_spec["components"]}
    errors += [
        f"components.{name}: the app has no such component"
        for name in sorted(set(launch.components) - names)
    ]
    params = {**declared, **launch.parameters}
    errors += [f"parameters.{k}: no value and no default" for k, v in params.items() if v is None]
    if errors:
        raise SpecError(errors)
    components = []
    for component in app_spec["components"]:
        override = launch.components.get(component["name"])
        traits = _merge(component.get("traits", {}), override.traits if override else {})
        try:
            traits = _substitute(traits, params)
        except KeyError as exc:
            raise SpecError(
                [f"components.{component['name']}.traits: unknown parameter {exc.args[0]!r}"]
            ) from None
        components.append({**component, "traits": traits})
    return params, components
