"""The environment variables each service reads, found in the code rather than listed.

A service reads CommonSettings (libs/config.py) and every pydantic-settings class
defined in its own package. docker-compose.yml and the Helm chart are both checked
against this, so a setting added to the code fails those tests until it is set there.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing
from dataclasses import dataclass
from functools import cache

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from libs.config import CommonSettings, env_names

# deployment name (compose service, Helm subchart) → Python package
SERVICES: dict[str, str] = {
    "gateway": "services.gateway",
    "appmanager": "services.appmanager",
    "build": "services.build",
    "deploy": "services.deploy",
    "dataops-ingest": "services.dataops_ingest",
    "aiops-detector": "services.aiops_detector",
}


@dataclass(frozen=True)
class Setting:
    """One environment variable a service reads."""

    env: str
    settings_class: type[BaseSettings]
    field: str
    secret: bool


@cache
def settings_classes(package: str) -> tuple[type[BaseSettings], ...]:
    """CommonSettings, then the settings classes defined in the package (sorted by name)."""
    found: dict[str, type[BaseSettings]] = {}
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
        if info.name.rsplit(".", 1)[-1] == "__main__":  # runs the service when imported
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseSettings)
                and obj is not BaseSettings
                and obj.__module__ == info.name
            ):
                found[f"{info.name}.{name}"] = obj
    return (CommonSettings, *(found[key] for key in sorted(found)))


def own_settings_class(package: str) -> type[BaseSettings]:
    """The class with the service's host and port (its main settings)."""
    for cls in settings_classes(package)[1:]:
        if {"host", "port"} <= set(cls.model_fields):
            return cls
    raise LookupError(f"{package} has no settings class with host and port")


def _is_secret(cls: type[BaseSettings], field: str) -> bool:
    hints = typing.get_type_hints(cls)
    annotation = hints.get(field)
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def settings(package: str) -> list[Setting]:
    """Every variable the service reads, with whether the code treats it as a secret."""
    out: dict[str, Setting] = {}
    for cls in settings_classes(package):
        for env, field in zip(env_names(cls), cls.model_fields, strict=True):
            out.setdefault(env, Setting(env, cls, field, _is_secret(cls, field)))
    return list(out.values())
