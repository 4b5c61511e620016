"""opsline.yaml: one file that declares an app (meta, parameters, components, build).

Errors name the field and the line: `line 14, column 11: components[0].type: …`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
COMPONENT_TYPES = ("microservice", "helm", "job", "process")
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
MAX_SPEC_BYTES = 256 * 1024


class SpecError(ValueError):
    """The file is not a valid opsline.yaml; `errors` lists each problem with its place."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GitSpec(_Strict):
    url: str = Field(min_length=1, max_length=2000)
    ref: str = Field(default="main", min_length=1, max_length=200)


class SourceSpec(_Strict):
    dir: str | None = None
    git: GitSpec | None = None
    chart: str | None = None
    image: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        given = [k for k in ("dir", "git", "chart", "image") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of dir, git, chart or image"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self


class ComponentSpec(_Strict):
    name: str = Field(pattern=NAME)
    type: Literal["microservice", "helm", "job", "process"]
    source: SourceSpec
    build: dict[str, str] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _source_fits_type(self) -> ComponentSpec:
        if self.type == "helm" and self.source.chart is None:
            raise ValueError("a helm component needs source.chart")
        if self.type == "process" and (self.source.image or self.source.chart):
            raise ValueError("a process component needs source.dir or source.git")
        if self.type in ("microservice", "job") and self.source.chart:
            raise ValueError(f"a {self.type} component takes source.image, dir or git")
        return self


class ParameterSpec(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]{0,62}$")
    default: Any = None
    description: str = ""


class MetaSpec(_Strict):
    name: str = Field(pattern=NAME)
    team: str = Field(default="default", pattern=NAME)
    description: str = Field(default="", max_length=2000)
    labels: dict[str, str] = Field(default_factory=dict)


class BuildSpec(_Strict):
    version: str | None = None

    @field_validator("version")
    @classmethod
    def _semver(cls, value: str | None) -> str | None:
        if value is not None and not SEMVER.match(value):
            raise ValueError("must be a version MAJOR.MINOR.PATCH, e.g. 1.2.0")
        return value


class AppSpec(_Strict):
    apiVersion: Literal["opsline.io/v1"]
    kind: Literal["App"]
    meta: MetaSpec
    parameters: list[ParameterSpec] = Field(default_factory=list)
    components: list[ComponentSpec] = Field(min_length=1)
    build: BuildSpec = Field(default_factory=BuildSpec)

    @model_validator(mode="after")
    def _unique_names(self) -> AppSpec:
        for what, items in (("components", self.components), ("parameters", self.parameters)):
            seen: set[str] = set()
            for item in items:
                if item.name in seen:
                    raise ValueError(f"{what}: the name {item.name!r} is used twice")
                seen.add(item.name)
        return self


def _marks(node: yaml.Node, path: tuple[Any, ...] = ()) -> dict[tuple[Any, ...], yaml.Mark]:
    """The start of every node in the document, by its path (keys and list indices)."""
    out = {path: node.start_mark}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[(*path, key.value)] = key.start_mark
            out.update({p: m for p, m in _marks(value, (*path, key.value)).items() if p not in out})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.update(_marks(item, (*path, i)))
    return out


def _where(marks: dict[tuple[Any, ...], yaml.Mark], loc: tuple[Any, ...]) -> str:
    for end in range(len(loc), -1, -1):
        mark = marks.get(tuple(loc[:end]))
        if mark is not None:
            return f"line {mark.line + 1}, column {mark.column + 1}"
    return "line 1, column 1"


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def parse(text: str) -> AppSpec:
    """Validate the YAML text of an opsline.yaml; raises SpecError with every problem."""
    if len(text.encode()) > MAX_SPEC_BYTES:
        raise SpecError([f"the file is larger than {MAX_SPEC_BYTES // 1024} KiB"])
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError([f"{where}invalid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError([f"invalid YAML: {exc}"]) from None
    if not isinstance(data, dict) or node is None:
        raise SpecError(
            ["line 1, column 1: an opsline.yaml is a mapping (apiVersion, kind, meta, …)"]
        )
    try:
        return AppSpec.model_validate(data)
    except ValidationError as exc:
        marks = _marks(node)
        errors = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            errors.append(f"{_where(marks, loc)}: {_dotted(loc)}: {message}")
        raise SpecError(errors) from None


def resolve_paths(spec: AppSpec, base_dir: str | None, *, must_exist: bool = True) -> AppSpec:
    """Make source.dir and source.chart absolute (relative to the file's folder) and check them."""
    errors = []
    for i, component in enumerate(spec.components):
        for field in ("dir", "chart"):
            value = getattr(component.source, field)
            if value is None:
                continue
            path = Path(value)
            if not path.is_absolute():
                if not base_dir:
                    errors.append(
                        f"components[{i}].source.{field}: {value!r} is relative, and no base "
                        "directory was given (send X-Opsline-Base-Dir, or use an absolute path)"
                    )
                    continue
                path = Path(base_dir) / path
            path = path.resolve()
            if must_exist and not path.is_dir():
                errors.append(f"components[{i}].source.{field}: directory {path} does not exist")
            setattr(component.source, field, str(path))
    if errors:
        raise SpecError(errors)
    return spec
