"""Property-based fuzzing of every operation in the gateway's /openapi.json (schemathesis).

Against the running stack, with the bootstrap admin token (so no policy or rate limit
hides a route): valid and invalid requests for every operation, bounded in number and in
total time. A 5xx is a failure (the stack is healthy, so "a dependency is away" does not
apply); an answer whose status the document declares must match its schema. Separately,
every operation answers 401 without a token and with a bogus one. The operations that read
their body themselves (CloudEvents, YAML, remote_write: the document declares no body for
them) get random bytes, JSON and CloudEvent-shaped bodies under each content type.

Keeping the shared stack usable for the tests after this file: no mutating request names
anything that existed before fuzzing began (the admin user and token, the "k8s" cluster,
other tests' apps and instances), and what fuzzing created that acts on its own (scrape
targets, alert rules, silences, receivers, clusters) is deleted afterwards. The live
stream (an endless answer) is left to the 401 check and tests/e2e/test_stream.py.

A failure names the operation, the check and a curl line to reproduce; OPSLINE_FUZZ_SEED
replays the same examples.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import response_schema_conformance

from libs.testing.stack import RunningStack
from tests.e2e.helpers import auth

pytestmark = pytest.mark.e2e

BUDGET_S = 90.0  # for all operations together; each gets a share of what is left
MAX_EXAMPLES = 25  # per operation and generation mode
MIN_EXAMPLES = 2  # even past the budget, so that no operation goes untested
ENDLESS = {("GET", "/v1/events/stream")}
CHECKS = [not_a_server_error, response_schema_conformance]
# things that act on their own once created: deleted after fuzzing (list path, list key)
ACTIVE = [
    ("/v1/scrape/targets", "targets"),
    ("/v1/alert-rules", "rules"),
    ("/v1/silences", "silences"),
    ("/v1/notifications/receivers", "receivers"),
    ("/v1/clusters", "clusters"),
]
EXISTING = [
    ("/v1/users", "users"),
    ("/v1/teams", "teams"),
    ("/v1/tokens", "tokens"),
    ("/v1/apps", "apps"),
    ("/v1/instances", "instances"),
    *ACTIVE,
]


@pytest.fixture(scope="module")
def api(stack: RunningStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.stack.gateway_url}/openapi.json", timeout=30)


def operations(api: schemathesis.BaseSchema) -> list[Any]:
    return [result.ok() for result in api.get_all_operations()]


def test_the_document_lists_only_v1_routes_and_each_asks_for_the_token(
    api: schemathesis.BaseSchema,
) -> None:
    ops = operations(api)
    assert len(ops) > 40
    outside = sorted({op.path for op in ops if not op.path.startswith("/v1/")})
    assert not outside, f"routes outside /v1 in the document: {outside}"
    undeclared = [op.label for op in ops if not op.definition.raw.get("security")]
    assert not undeclared, f"operations that do not declare the bearer token: {undeclared}"


def test_every_operation_answers_401_without_a_valid_token(
    stack: RunningStack, api: schemathesis.BaseSchema
) -> None:
    bad: list[str] = []
    attempts = {
        "no token": {},
        "bogus token": {"Authorization": "Bearer opl_" + "x" * 43},
        "not bearer": {"Authorization": f"Basic {stack.admin_token}"},
    }
    with httpx.Client(base_url=stack.stack.gateway_url, timeout=30) as client:
        for op in operations(api):
            path = re.sub(r"\{[^}]+\}", "1", op.path)
            for what, headers in attempts.items():
                answer = client.request(op.method.upper(), path, headers=headers)
                if answer.status_code != 401 or "Bearer" not in answer.headers.get(
                    "www-authenticate", ""
                ):
                    bad.append(f"{op.label} with {what}: {answer.status_code} {answer.text[:120]}")
    assert not bad, "\n".join(bad)


@dataclass
class Findings:
    """The first failure of each (operation, check), and how the budget was spent."""

    failures: dict[tuple[str, str], str] = field(default_factory=dict)
    statuses: dict[str, dict[int, int]] = field(default_factory=dict)
    requests: int = 0
    skipped: int = 0

    def add(self, label: str, group: FailureGroup) -> None:
        for failure in group.exceptions:
            self.failures.setdefault((label, failure.title), str(group)[:3000])

    def report(self, seed_value: int) -> str:
        lines = [f"{len(self.failures)} failures (OPSLINE_FUZZ_SEED={seed_value} replays):"]
        for (label, title), text in sorted(self.failures.items()):
            lines += [f"--- {label}: {title}", text]
        return "\n".join(lines)


def test_fuzz_every_operation(stack: RunningStack, api: schemathesis.BaseSchema) -> None:
    base = stack.stack.gateway_url
    seed_value = int(os.environ.get("OPSLINE_FUZZ_SEED") or random.randrange(2**32))
    with httpx.Client(base_url=base, headers=auth(stack), timeout=30) as client:
        before = _existing(client, EXISTING)
        findings = Findings()
        try:
            _fuzz(api, base, auth(stack), before, findings, seed_value)
        finally:
            _delete_created(client, before)
    print(f"fuzz: {findings.requests} requests, {findings.skipped} skipped; {findings.statuses}")
    assert not findings.failures, findings.report(seed_value)
    untried = [label for label, counts in findings.statuses.items() if not counts]
    assert not untried, f"operations no request reached: {untried}"


def _fuzz(
    api: schemathesis.BaseSchema,
    base: str,
    headers: dict[str, str],
    protected: dict[str, set[str]],
    findings: Findings,
    seed_value: int,
) -> None:
    ops = [op for op in operations(api) if (op.method.upper(), op.path) not in ENDLESS]
    names = set().union(*protected.values())
    deadline = time.monotonic() + BUDGET_S
    per_request_s = 0.05  # a first guess, then measured
    for index, op in enumerate(ops):
        share = (deadline - time.monotonic()) / (len(ops) - index) / 2  # two modes
        examples = max(MIN_EXAMPLES, min(MAX_EXAMPLES, int(share / per_request_s)))
        started, sent = time.monotonic(), findings.requests
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(op, mode, examples, base, headers, names, findings, seed_value)
        if findings.requests > sent:
            took = (time.monotonic() - started) / (findings.requests - sent)
            per_request_s = 0.7 * per_request_s + 0.3 * took


def _fuzz_operation(
    op: Any,
    mode: GenerationMode,
    examples: int,
    base: str,
    headers: dict[str, str],
    protected: set[str],
    findings: Findings,
    seed_value: int,
) -> None:
    label = op.label
    counts = findings.statuses.setdefault(label, {})

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Any) -> None:
        if case.method.upper() != "GET" and _names_existing(case.path_parameters, protected):
            findings.skipped += 1
            return
        response = case.call(base_url=base, headers=headers, timeout=30)
        findings.requests += 1
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        try:
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance]
            )
        except FailureGroup as group:
            findings.add(label, group)

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to make invalid (no parameters): the valid requests covered it


# Operations that read their body themselves (CloudEvents, YAML, remote_write): the
# document declares none, so schemathesis sends them nothing; these bodies instead.
RAW_BODIES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/ingest/prometheus/write"),
    ("POST", "/v1/apps:apply"),
    ("POST", "/v1/deployments"),
    ("POST", "/v1/aiops/analyze"),
]
CONTENT_TYPES = [
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/json",
    "application/yaml",
    "application/x-protobuf",
]
_json = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
_cloudevent = st.fixed_dictionaries(
    {"specversion": st.sampled_from(["1.0", "0.3", ""]), "id": st.text(max_size=12)},
    optional={
        "source": st.text(max_size=12),
        "type": st.sampled_from(["io.opsline.metric.batch", "io.opsline.log.batch", "x", ""]),
        "time": st.text(max_size=25),
        "subject": _json,
        "data": _json,
    },
)
_body = st.one_of(
    st.binary(max_size=300),
    _json.map(lambda v: json.dumps(v).encode()),
    _cloudevent.map(lambda v: json.dumps(v).encode()),
    st.lists(_cloudevent, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(str.encode),  # as YAML, anything goes
)


def test_fuzz_raw_bodies(stack: RunningStack) -> None:
    seed_value = int(os.environ.get("OPSLINE_FUZZ_SEED") or random.randrange(2**32))
    bad: dict[str, str] = {}
    with httpx.Client(base_url=stack.stack.gateway_url, headers=auth(stack), timeout=30) as client:
        for method, path in RAW_BODIES:
            seed(seed_value)(_raw_sender(client, method, path, bad))()
    assert not bad, f"OPSLINE_FUZZ_SEED={seed_value}: {bad}"


def _raw_sender(
    client: httpx.Client, method: str, path: str, bad: dict[str, str]
) -> Callable[[], None]:
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(body=_body, content_type=st.sampled_from(CONTENT_TYPES))
    def send(body: bytes, content_type: str) -> None:
        answer = client.request(method, path, content=body, headers={"Content-Type": content_type})
        if answer.status_code >= 500:
            bad.setdefault(
                f"{method} {path}",
                f"{answer.status_code} {answer.text[:300]} for {content_type} {body[:300]!r}",
            )

    return send


def _names_existing(params: dict[str, Any] | None, protected: set[str]) -> bool:
    return any(str(value) in protected for value in (params or {}).values())


def _items(client: httpx.Client, path: str, key: str) -> Iterator[dict[str, Any]]:
    answer = client.get(path)
    assert answer.status_code == 200, f"GET {path}: {answer.status_code} {answer.text[:200]}"
    yield from answer.json()[key]


def _existing(client: httpx.Client, collections: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Every name and id of what exists now, per list path."""
    return {
        path: {
            str(item[k]) for item in _items(client, path, key) for k in ("id", "name") if k in item
        }
        for path, key in collections
    }


def _delete_created(client: httpx.Client, before: dict[str, set[str]]) -> None:
    for path, key in ACTIVE:
        for item in _items(client, path, key):
            ident = str(item.get("id") or item.get("name"))
            if ident not in before[path]:
                client.delete(f"{path}/{quote(ident, safe='')}")
