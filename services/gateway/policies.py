"""The access policy of every /v1 route, in one table (checked by services/gateway/access.py).

action: the token scope and team role it needs — read (viewer), write (maintainer),
admin (team admin), any (any valid token).

target: where the team comes from —
  caller      nothing to check beyond the scope: the answer is the caller's own or filtered
  platform    platform admins only
  member      platform admins, or the role on at least one team (ingest, audit)
  team        the {team} in the path
  app         the {app} in the path
  build, deployment, instance, target
              the id in the path, resolved to its app by the owner's API
  apply       meta.team (and meta.name) of the opsline.yaml body
  launch      `app` of the launch-file body
  market      `app` of the JSON body (an app not installed yet: platform admins)
  new-target  `app` of the JSON body (no app: platform admins)
  query       an exact `match=app=<app>` the caller may read (platform admins: any query)

shape: what happens to the owner's answer for a non-admin — "" as is; a key (apps,
deployments, …) whose list is filtered to the items of visible apps; "item" the answer's
own app must be visible, else 404.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    action: str
    target: str
    shape: str = ""


R, W, A = "read", "write", "admin"

POLICIES: dict[tuple[str, str], Policy] = {
    # events in, events out
    ("POST", "/v1/events"): Policy(W, "member"),
    ("POST", "/v1/ingest/prometheus/write"): Policy(W, "member"),
    ("GET", "/v1/events/stream"): Policy(R, "caller"),  # filtered event by event
    # catalogue and builds
    ("POST", "/v1/apps:apply"): Policy(W, "apply"),
    ("GET", "/v1/apps"): Policy(R, "caller", "apps"),
    ("GET", "/v1/apps/{app}"): Policy(R, "app"),
    ("GET", "/v1/apps/{app}/components"): Policy(R, "app"),
    ("POST", "/v1/apps/{app}/builds"): Policy(W, "app"),
    ("GET", "/v1/apps/{app}/builds"): Policy(R, "app"),
    ("GET", "/v1/builds/{build_id}"): Policy(R, "build"),
    ("POST", "/v1/builds/{build_id}/cancel"): Policy(W, "build"),
    ("GET", "/v1/apps/{app}/packages"): Policy(R, "app"),
    ("POST", "/v1/market/publish"): Policy(W, "market"),
    ("GET", "/v1/market"): Policy(R, "caller"),  # a market is a shared shelf
    ("POST", "/v1/market/install"): Policy(W, "market"),
    # deployments and instances
    ("POST", "/v1/deployments"): Policy(W, "launch"),
    ("GET", "/v1/deployments"): Policy(R, "caller", "deployments"),
    ("GET", "/v1/deployments/{deployment_id}"): Policy(R, "deployment"),
    ("POST", "/v1/deployments/{deployment_id}/retry"): Policy(W, "deployment"),
    ("POST", "/v1/deployments/{deployment_id}/terminate"): Policy(W, "deployment"),
    ("GET", "/v1/instances"): Policy(R, "caller", "instances"),
    ("GET", "/v1/instances/{instance_id}"): Policy(R, "instance"),
    ("GET", "/v1/instances/{instance_id}/logs"): Policy(R, "instance"),
    ("POST", "/v1/instances/{instance_id}/rollback"): Policy(W, "instance"),
    ("DELETE", "/v1/instances/{instance_id}"): Policy(W, "instance"),
    # clusters: names are needed to deploy; registering one hands out cluster credentials
    ("PUT", "/v1/clusters/{name}"): Policy(W, "platform"),
    ("GET", "/v1/clusters"): Policy(R, "caller"),
    ("GET", "/v1/clusters/{name}"): Policy(R, "caller"),
    ("DELETE", "/v1/clusters/{name}"): Policy(W, "platform"),
    # dataops-ingest
    ("POST", "/v1/scrape/targets"): Policy(W, "new-target"),
    ("GET", "/v1/scrape/targets"): Policy(R, "caller", "targets"),
    ("GET", "/v1/scrape/targets/{target_id}"): Policy(R, "target"),
    ("PATCH", "/v1/scrape/targets/{target_id}"): Policy(W, "target"),
    ("DELETE", "/v1/scrape/targets/{target_id}"): Policy(W, "target"),
    ("GET", "/v1/metrics/query"): Policy(R, "query"),
    ("GET", "/v1/metrics/series"): Policy(R, "query"),
    ("GET", "/v1/logs/search"): Policy(R, "query"),
    ("GET", "/v1/apps/{app}/timeline"): Policy(R, "app"),
    # aiops-detector: alerts and incidents by their app; rules, silences and receivers are
    # platform configuration (their matchers may span apps and teams)
    ("GET", "/v1/alerts"): Policy(R, "caller", "alerts"),
    ("GET", "/v1/alerts/{fingerprint}"): Policy(R, "caller", "item"),
    ("GET", "/v1/incidents"): Policy(R, "caller", "incidents"),
    ("GET", "/v1/incidents/{incident_id}"): Policy(R, "caller", "item"),
    ("GET", "/v1/apps/{app}/health"): Policy(R, "app"),
    ("POST", "/v1/aiops/analyze"): Policy(R, "caller"),  # scores the series it is given
    ("GET", "/v1/alert-rules"): Policy(R, "platform"),
    ("POST", "/v1/alert-rules"): Policy(W, "platform"),
    ("GET", "/v1/alert-rules/{rule_id}"): Policy(R, "platform"),
    ("PUT", "/v1/alert-rules/{rule_id}"): Policy(W, "platform"),
    ("DELETE", "/v1/alert-rules/{rule_id}"): Policy(W, "platform"),
    ("GET", "/v1/silences"): Policy(R, "platform"),
    ("POST", "/v1/silences"): Policy(W, "platform"),
    ("GET", "/v1/silences/{silence_id}"): Policy(R, "platform"),
    ("PUT", "/v1/silences/{silence_id}"): Policy(W, "platform"),
    ("DELETE", "/v1/silences/{silence_id}"): Policy(W, "platform"),
    ("GET", "/v1/notifications/receivers"): Policy(R, "platform"),
    ("POST", "/v1/notifications/receivers"): Policy(W, "platform"),
    ("GET", "/v1/notifications/receivers/{receiver_id}"): Policy(R, "platform"),
    ("PUT", "/v1/notifications/receivers/{receiver_id}"): Policy(W, "platform"),
    ("DELETE", "/v1/notifications/receivers/{receiver_id}"): Policy(W, "platform"),
    # identity
    ("GET", "/v1/whoami"): Policy("any", "caller"),
    ("POST", "/v1/users"): Policy(A, "platform"),
    ("GET", "/v1/users"): Policy(R, "platform"),
    ("GET", "/v1/users/{name}"): Policy("any", "caller"),  # yourself, or a platform admin
    ("PATCH", "/v1/users/{name}"): Policy(A, "platform"),
    ("DELETE", "/v1/users/{name}"): Policy(A, "platform"),
    ("POST", "/v1/users/{name}/tokens"): Policy(A, "platform"),
    ("POST", "/v1/teams"): Policy(A, "platform"),
    ("GET", "/v1/teams"): Policy(R, "caller"),  # your teams; platform admins all
    ("GET", "/v1/teams/{team}"): Policy(R, "team"),
    ("DELETE", "/v1/teams/{team}"): Policy(A, "platform"),
    ("GET", "/v1/teams/{team}/members"): Policy(R, "team"),
    ("PUT", "/v1/teams/{team}/members/{user}"): Policy(A, "team"),
    ("DELETE", "/v1/teams/{team}/members/{user}"): Policy(A, "team"),
    ("POST", "/v1/tokens"): Policy("any", "caller"),  # scopes ⊆ the creating token's
    ("GET", "/v1/tokens"): Policy("any", "caller"),  # your own
    ("DELETE", "/v1/tokens/{token_id}"): Policy("any", "caller"),  # your own
    ("GET", "/v1/audit"): Policy(A, "member"),  # platform admins all; team admins their teams'
}


def _pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts if p))


# Matched against the request's own path, not the route object: routers included inside
# routers do not carry their full path, and a policy must never be skipped for that.
_LITERAL = {key: p for key, p in POLICIES.items() if "{" not in key[1]}
_TEMPLATES = [(m, path, _pattern(path), p) for (m, path), p in POLICIES.items() if "{" in path]


def policy_for(method: str, path: str) -> tuple[str, Policy] | None:
    """(route template, policy) of a request (a literal path wins over a template)."""
    found = _LITERAL.get((method, path))
    if found is not None:
        return path, found
    for m, template, pattern, policy in _TEMPLATES:
        if m == method and pattern.fullmatch(path):
            return template, policy
    return None
