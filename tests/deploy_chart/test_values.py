"""Inconsistent values stop `helm install` with the value to set, not with pods that
wait forever for a store that is not there."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import pytest

from tests.deploy_chart.chart import RELEASE, byo_values, find, merged, render


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka": {"enabled": False}}, "set global.kafka.bootstrap"),
        ({"postgresql": {"enabled": False}}, "set global.database.host"),
        (
            {"postgresql": {"enabled": False}, "global": {"database": {"host": "pg"}}},
            "set global.database.existingSecret",
        ),
        ({"elasticsearch": {"enabled": False}}, "set global.elasticsearch.url"),
        ({"global": {"kafka": {"bootstrap": "k:9092"}}}, "kafka.enabled=false"),
        ({"global": {"database": {"host": "pg"}}}, "postgresql.enabled=false"),
        ({"global": {"elasticsearch": {"url": "http://es:9200"}}}, "elasticsearch.enabled=false"),
        ({"build": {"database": {"name": "Build-DB"}}}, "build.database.name"),
    ],
)
def test_inconsistent_values_fail_with_the_fix(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        render(values)


def test_a_service_can_be_left_out() -> None:
    objects = render({"aiops-detector": {"enabled": False}})
    names = {o["metadata"]["name"] for o in objects}
    assert not any("aiops-detector" in n for n in names)
    assert find(objects, "Deployment", f"{RELEASE}-gateway")


def test_external_elasticsearch_without_auth() -> None:
    values = merged(byo_values(), {"global": {"elasticsearch": {"existingSecret": ""}}})
    objects = render(values)
    (ingest,) = find(objects, "Deployment", f"{RELEASE}-dataops-ingest")
    env = {e["name"]: e for e in ingest["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "ELASTICSEARCH_PASSWORD" not in env
    assert env["OPSLINE_ELASTICSEARCH_URL"]["value"] == values["global"]["elasticsearch"]["url"]


def test_generated_secret_lists_every_configured_key() -> None:
    objects = render({"global": {"secrets": {"keys": ["internal-token", "admin-token", "extra"]}}})
    (secret,) = [
        s for s in find(objects, "Secret") if s["metadata"]["name"] == f"{RELEASE}-platform"
    ]
    assert set(secret["data"]) == {"internal-token", "admin-token", "extra"}
    # kept on uninstall: the stores' volumes outlive the release and know these passwords
    for s in find(objects, "Secret"):
        assert s["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"global": {"databse": {"host": "pg"}}}, "additional properties 'databse'"),
        ({"global": {"database": {"port": "5432x"}}}, "/global/database/port"),
        ({"global": {"database": {"driver": "oracle"}}}, "/global/database/driver"),
        ({"global": {"kafka": {"bootstrap": "kafka"}}}, "/global/kafka/bootstrap"),
        ({"global": {"elasticsearch": {"url": "es:9200"}}}, "/global/elasticsearch/url"),
    ],
)
def test_values_schema_names_the_mistake(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        render(values)


def test_bundled_stores_with_your_secrets() -> None:
    """For renderers without lookup (Argo CD): bundled stores, no generated Secret."""
    values = {
        "global": {
            "database": {"existingSecret": "my-db"},
            "elasticsearch": {"existingSecret": "my-es"},
            "secrets": {"existingSecret": "my-secrets"},
        }
    }
    objects = render(values)
    assert not find(objects, "Secret")
    refs = {
        (o["metadata"]["name"], e["name"]): e["valueFrom"]["secretKeyRef"]["name"]
        for o in find(objects, "StatefulSet")
        for c in o["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e
    }
    assert refs[(f"{RELEASE}-postgresql", "POSTGRES_PASSWORD")] == "my-db"
    assert refs[(f"{RELEASE}-postgresql", "PGPASSWORD")] == "my-db"
    assert refs[(f"{RELEASE}-elasticsearch", "ELASTIC_PASSWORD")] == "my-es"
