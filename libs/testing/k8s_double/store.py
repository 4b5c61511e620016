"""The in-memory object store: CRUD, patch, apply, delete with finalizers, watch fan-out.

One lock guards everything; `resourceVersion` is a global counter, like etcd's revision.
Handlers and the simulated controllers both call in here (from any thread).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import datetime as dt
import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from libs.testing.k8s_double import errors
from libs.testing.k8s_double.defaults import INITIAL_STATUS, Allocator, apply_defaults, validate
from libs.testing.k8s_double.errors import ApiError, bad_request
from libs.testing.k8s_double.fields import Manager, record_update, server_side_apply
from libs.testing.k8s_double.patches import json_patch, merge_patch, strategic_merge, strip_nulls
from libs.testing.k8s_double.resources import NAMESPACES, ResourceType
from libs.testing.k8s_double.selectors import (
    FieldRequirement,
    Requirement,
    fields_match,
    labels_match,
)

Key = tuple[str, str, str, str]  # group, plural, namespace ("" if cluster-scoped), name
HISTORY = 20_000
SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
)
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _suffix() -> str:
    return "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))


@dataclass
class Change:
    rv: int
    rt: ResourceType
    namespace: str
    type: str  # ADDED, MODIFIED, DELETED
    old: dict[str, Any] | None
    new: dict[str, Any]


@dataclass(eq=False)
class Watcher:
    rt: ResourceType
    namespace: str | None
    labels: list[Requirement]
    fields: list[FieldRequirement]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        return obj is not None and labels_match(obj, self.labels) and fields_match(obj, self.fields)

    def translate(self, change: Change) -> dict[str, Any] | None:
        if change.rt.key != self.rt.key or self.namespace not in (None, change.namespace):
            return None
        was, now = self._matches(change.old), self._matches(change.new)
        if change.type == "DELETED":
            kind = "DELETED" if was else None
        elif change.type == "ADDED":
            kind = "ADDED" if now else None
        else:
            kind = {(True, True): "MODIFIED", (False, True): "ADDED", (True, False): "DELETED"}.get(
                (was, now)
            )
        return {"type": kind, "object": change.new} if kind else None

    def push(self, event: dict[str, Any] | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass


def _typed(rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    out = {"apiVersion": rt.group_version, "kind": rt.kind}
    out.update({k: v for k, v in obj.items() if k not in ("apiVersion", "kind")})
    return out


def _without_status(obj: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (obj or {}).items() if k not in ("status", "metadata")} | {
        "metadata": {
            k: v
            for k, v in ((obj or {}).get("metadata") or {}).items()
            if k not in ("resourceVersion", "managedFields")
        }
    }


class Store:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.rv = 0
        self.objects: dict[Key, dict[str, Any]] = {}
        self.managers: dict[Key, list[Manager]] = {}
        self.history: deque[Change] = deque(maxlen=HISTORY)
        self.compacted_rv = 0
        self.watchers: set[Watcher] = set()
        self.alloc = Allocator()
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.create(NAMESPACES, "", {"metadata": {"name": name}}, "kube-apiserver")

    # ------------------------------------------------------------------------ plumbing

    @staticmethod
    def key(rt: ResourceType, namespace: str, name: str) -> Key:
        return (rt.group, rt.plural, namespace if rt.namespaced else "", name)

    def _commit(
        self,
        rt: ResourceType,
        key: Key,
        kind: str,
        old: dict[str, Any] | None,
        new: dict[str, Any],
        managers: list[Manager] | None,
    ) -> dict[str, Any]:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.objects.pop(key, None)
            self.managers.pop(key, None)
        else:
            self.objects[key] = new
            self.managers[key] = managers or []
        if len(self.history) == self.history.maxlen:
            self.compacted_rv = self.history[0].rv
        change = Change(self.rv, rt, key[2], kind, copy.deepcopy(old), copy.deepcopy(new))
        self.history.append(change)
        for watcher in list(self.watchers):
            event = watcher.translate(change)
            if event is not None:
                watcher.push(event)
        return copy.deepcopy(new)

    def _require_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        if not rt.namespaced:
            return
        ns = self.objects.get(self.key(NAMESPACES, "", namespace))
        if ns is None:
            raise errors.namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise errors.namespace_terminating(rt, name, namespace)

    def _get_locked(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.objects.get(self.key(rt, namespace, name))
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    @staticmethod
    def _check_body(
        rt: ResourceType, namespace: str, name: str | None, body: Any
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request was not a {rt.kind} object")
        body = copy.deepcopy(body)
        if body.get("kind") not in (None, "", rt.kind):
            raise bad_request(
                f"the kind of the object ({body['kind']}) does not match the kind on the URL "
                f"({rt.kind})"
            )
        if body.get("apiVersion") not in (None, "", rt.group_version):
            raise bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the "
                f"expected API version ({rt.group_version})"
            )
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if meta.get("metadata") is None:
            meta.pop("metadata", None)
        if name is not None and meta.get("name") not in (None, "", name):
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL "
                f"({name})"
            )
        if name is not None:
            meta["name"] = name
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return body

    def _finish(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Defaulting, validation, generation: everything between a request and storage."""
        apply_defaults(rt, obj, old, self.alloc)
        validate(rt, obj, old)
        if rt.has_generation:
            previous = (old or {}).get("metadata", {}).get("generation", 0)
            changed = old is None or obj.get("spec") != old.get("spec")
            obj["metadata"]["generation"] = previous + 1 if changed else previous
        meta = obj["metadata"]
        ordered = {"apiVersion": rt.group_version, "kind": rt.kind, "metadata": meta}
        ordered.update({k: v for k, v in obj.items() if k not in ordered})
        obj.clear()
        obj.update(ordered)

    # ------------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._get_locked(rt, namespace, name))

    def list_items(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        limit: int = 0,
        continue_token: str | None = None,
    ) -> dict[str, Any]:
        with self.lock:
            rv = str(self.rv)
            items = [
                (key, obj)
                for key, obj in sorted(self.objects.items())
                if key[:2] == rt.key
                and namespace in (None, key[2])
                and labels_match(obj, labels)
                and fields_match(obj, fields)
            ]
            items = copy.deepcopy(items)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start = tuple(token["start"])
                rv = meta["resourceVersion"] = str(token["rv"])
            except (ValueError, KeyError, TypeError, binascii.Error) as e:
                raise bad_request(
                    "continue key is not valid: incorrect encoded start "
                    "resourceVersion (version meta.k8s.io/v1)"
                ) from e
            items = [(k, o) for k, o in items if k > start]
        if limit and len(items) > limit:
            last = items[limit - 1][0]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": int(rv), "start": list(last)}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        bare = [
            {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")} for _, obj in items
        ]
        return {
            "kind": f"{rt.kind}List",
            "apiVersion": rt.group_version,
            "metadata": meta,
            "items": bare,
        }

    # ------------------------------------------------------------------------ writes

    def create(
        self,
        rt: ResourceType,
        namespace: str,
        body: Any,
        manager: str,
        dry_run: bool = False,
        managers: list[Manager] | None = None,
    ) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, None, body)
        meta = obj["metadata"]
        if meta.get("resourceVersion"):
            raise ApiError(
                500,
                "InternalError",
                "Internal error occurred: resourceVersion "
                "should not be set on objects to be created",
            )
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = f"{meta['generateName']}{_suffix()}"
        name = meta.get("name") or ""
        with self.lock:
            if name:
                self._require_namespace(rt, namespace, name)
            if self.key(rt, namespace, name) in self.objects:
                raise errors.already_exists(rt, name)
            for system in SYSTEM_METADATA:
                meta.pop(system, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_iso()
            if rt.plural in INITIAL_STATUS:
                obj["status"] = copy.deepcopy(INITIAL_STATUS[rt.plural])
            else:
                obj.pop("status", None)
            self._finish(rt, obj, None)
            if managers is None:
                managers = record_update([], manager, rt.group_version, None, obj, now_iso())
            meta["managedFields"] = [m.render() for m in managers]
            if dry_run:
                return _typed(rt, obj)
            return self._commit(rt, self.key(rt, namespace, name), "ADDED", None, obj, managers)

    def _update(
        self,
        rt: ResourceType,
        old: dict[str, Any],
        obj: dict[str, Any],
        manager: str,
        dry_run: bool,
        managers: list[Manager] | None = None,
    ) -> dict[str, Any]:
        """Store `obj` over `old` (both locked in): system metadata and status come from old."""
        key = self.key(rt, old["metadata"].get("namespace", ""), old["metadata"]["name"])
        meta = obj["metadata"]
        for system in SYSTEM_METADATA:
            meta.pop(system, None)
            if system in old["metadata"] and system != "managedFields":
                meta[system] = old["metadata"][system]
        if "status" in old:
            obj["status"] = copy.deepcopy(old["status"])
        else:
            obj.pop("status", None)
        self._finish(rt, obj, old)
        if managers is None:
            managers = record_update(
                self.managers.get(key, []), manager, rt.group_version, old, obj, now_iso()
            )
        meta["managedFields"] = [m.render() for m in managers]
        if dry_run:
            return _typed(rt, obj)
        owners = [(m.key, m.fields) for m in managers]
        if _without_status(obj) == _without_status(old) and owners == [
            (m.key, m.fields) for m in self.managers.get(key, [])
        ]:
            return copy.deepcopy(old)  # a no-op write keeps its resourceVersion
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and (rt.plural != "namespaces")
        ):
            return self._commit(rt, key, "DELETED", old, obj, managers)
        return self._commit(rt, key, "MODIFIED", old, obj, managers)

    def replace(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        obj = self._check_body(rt, namespace, name, body)
        with self.lock:
            old = self._get_locked(rt, namespace, name)
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise errors.modified_conflict(rt, name)
            return self._update(rt, old, obj, manager, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        patch: Any,
        manager: str,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            old = self._get_locked(rt, namespace, name)
            current = copy.deepcopy(old)
            current.pop("status", None)
            patched = self.patch_document(content_type, current, patch)
            obj = self._check_body(rt, namespace, name, patched)
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise errors.modified_conflict(rt, name)
            return self._update(rt, old, obj, manager, dry_run)

    @staticmethod
    def patch_document(content_type: str, current: dict[str, Any], patch: Any) -> Any:
        if content_type == JSON_PATCH:
            if not isinstance(patch, list):
                raise bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            return json_patch(current, patch)
        if not isinstance(patch, dict):
            raise bad_request(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
            )
        if content_type == MERGE_PATCH:
            return merge_patch(current, patch)
        return strategic_merge(current, patch)

    def apply(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        manager: str,
        force: bool,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Server-side apply; answers (object, created)."""
        if not isinstance(body, dict) or not body.get("apiVersion") or not body.get("kind"):
            raise bad_request(
                "error decoding patch: Object 'Kind' or 'apiVersion' is missing in the apply "
                "configuration"
            )
        applied = self._check_body(rt, namespace, name, strip_nulls(body))
        meta = applied["metadata"]
        if meta.get("managedFields"):
            raise bad_request("metadata.managedFields must be nil")
        wanted = meta.get("resourceVersion")
        for system in SYSTEM_METADATA:
            meta.pop(system, None)
        applied.pop("status", None)
        with self.lock:
            old = self.objects.get(self.key(rt, namespace, name))
            if old is None:
                if wanted:
                    raise errors.not_found(rt, name)
                live = {
                    "apiVersion": rt.group_version,
                    "kind": rt.kind,
                    "metadata": {k: meta[k] for k in ("name", "namespace") if k in meta},
                }
                merged, managers = server_side_apply(
                    [], manager, rt.group_version, live, applied, force, now_iso()
                )
                return self.create(rt, namespace, merged, manager, dry_run, managers), True
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise errors.modified_conflict(rt, name)
            live = copy.deepcopy(old)
            live.pop("status", None)
            merged, managers = server_side_apply(
                self.managers.get(self.key(rt, namespace, name), []),
                manager,
                rt.group_version,
                live,
                applied,
                force,
                now_iso(),
            )
            return self._update(rt, old, merged, manager, dry_run, managers), False

    # ------------------------------------------------------------------------ deletes

    def delete(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        options: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            old = self._get_locked(rt, namespace, name)
            meta = old["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta["uid"]:
                raise errors.precondition_conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                    f"object meta: {meta['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
                raise errors.precondition_conflict(
                    rt,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{pre['resourceVersion']}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            if rt.plural == "namespaces":
                return self._delete_namespace(old, dry_run)
            finalizers = list(meta.get("finalizers") or [])
            policy = options.get("propagationPolicy")
            if policy not in (None, "", "Background", "Foreground", "Orphan"):
                raise errors.invalid(
                    "DeleteOptions",
                    "meta.k8s.io",
                    "",
                    [
                        errors.Cause(
                            "FieldValueNotSupported",
                            "propagationPolicy",
                            'supported values: "Foreground", "Background", "Orphan", "nil"',
                            policy,
                        )
                    ],
                )
            extra = {"Foreground": "foregroundDeletion", "Orphan": "orphan"}.get(policy or "")
            if extra and extra not in finalizers:
                finalizers.append(extra)
            key = self.key(rt, namespace, name)
            new = copy.deepcopy(old)
            if finalizers:
                if meta.get("deletionTimestamp") and finalizers == meta.get("finalizers"):
                    return copy.deepcopy(old)
                new["metadata"]["finalizers"] = finalizers
                new["metadata"].setdefault("deletionTimestamp", now_iso())
                new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                if rt.has_generation:
                    new["metadata"]["generation"] = meta.get("generation", 0) + 1
                if dry_run:
                    return new
                return self._commit(rt, key, "MODIFIED", old, new, self.managers.get(key))
            if not dry_run:
                self._commit(rt, key, "DELETED", old, new, None)
            return errors.success_status(rt, name, meta["uid"])

    def _delete_namespace(self, old: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        name = old["metadata"]["name"]
        if name in PROTECTED_NAMESPACES:
            raise ApiError(
                403,
                "Forbidden",
                f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                {"name": name, "kind": "namespaces"},
            )
        if old["metadata"].get("deletionTimestamp"):
            return copy.deepcopy(old)
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new["status"] = {"phase": "Terminating"}
        if dry_run:
            return new
        key = self.key(NAMESPACES, "", name)
        return self._commit(NAMESPACES, key, "MODIFIED", old, new, self.managers.get(key))

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        options: dict[str, Any],
        dry_run: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            listed = self.list_items(rt, namespace, labels, fields)
            for item in listed["items"]:
                meta = item["metadata"]
                self.delete(rt, meta.get("namespace", ""), meta["name"], options, dry_run)
            return listed

    def remove(self, rt: ResourceType, key: Key) -> None:
        """Finish a deletion (finalizers done): the object goes, watchers see DELETED."""
        with self.lock:
            old = self.objects.get(key)
            if old is not None:
                self._commit(rt, key, "DELETED", old, copy.deepcopy(old), None)

    # ------------------------------------------------------------------------ controllers

    def controller_write(
        self,
        rt: ResourceType,
        key: Key,
        mutate: Callable[[dict[str, Any]], None],
        manager: str = "kube-controller-manager",
        subresource: str = "",
    ) -> dict[str, Any] | None:
        """A write by a simulated controller (status and/or metadata); no validation."""
        with self.lock:
            old = self.objects.get(key)
            if old is None:
                return None
            new = copy.deepcopy(old)
            mutate(new)
            if new == old:
                return None
            managers = self.managers.get(key, [])
            if new.get("status") != old.get("status"):
                managers = record_update(
                    managers, manager, rt.group_version, old, new, now_iso(), "status"
                )
            if _without_status(new) != _without_status(old):
                managers = record_update(
                    managers, manager, rt.group_version, old, new, now_iso(), subresource
                )
            new["metadata"]["managedFields"] = [m.render() for m in managers]
            return self._commit(rt, key, "MODIFIED", old, new, managers)

    def snapshot(self, rt: ResourceType) -> list[tuple[Key, dict[str, Any]]]:
        """The stored objects of a type (live references: read, never mutate)."""
        with self.lock:
            return [(k, o) for k, o in self.objects.items() if k[:2] == rt.key]

    # ------------------------------------------------------------------------ watch

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement],
        fields: list[FieldRequirement],
        resource_version: str | None,
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[list[dict[str, Any]], Watcher]:
        """Register a watcher; answers the events to send first (synthetic ADDEDs, replay)."""
        watcher = Watcher(rt, namespace, labels, fields, loop)
        with self.lock:
            if resource_version in (None, "", "0"):
                initial = [
                    {"type": "ADDED", "object": copy.deepcopy(obj)}
                    for key, obj in sorted(self.objects.items())
                    if key[:2] == rt.key
                    and namespace in (None, key[2])
                    and labels_match(obj, labels)
                    and fields_match(obj, fields)
                ]
            else:
                try:
                    since = int(resource_version)
                except ValueError as e:
                    raise bad_request(f"invalid resource version: {resource_version}") from e
                if since < self.compacted_rv:
                    initial = [
                        {
                            "type": "ERROR",
                            "object": ApiError(
                                410,
                                "Expired",
                                f"too old resource version: {since} ({self.compacted_rv})",
                            ).status(),
                        }
                    ]
                else:
                    replay = (watcher.translate(c) for c in self.history if c.rv > since)
                    initial = [event for event in replay if event is not None]
            self.watchers.add(watcher)
        return copy.deepcopy(initial), watcher

    def unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            self.watchers.discard(watcher)

    def close_watchers(self) -> None:
        with self.lock:
            for watcher in list(self.watchers):
                watcher.push(None)
