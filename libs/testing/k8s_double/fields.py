"""Field ownership (metadata.managedFields) and server-side apply.

An approximation of structured-merge-diff: each manager owns a set of leaf paths. A path is a
tuple of map keys and, for items of keyed lists, `(merge key, value)` pairs; the path of such
an item marks the item itself (rendered as `k:{"name":"app"}` with a `.` entry). Atomic lists
and empty maps are leaves. Apply conflicts when it changes the value of a path another manager
owns; a manager's previously applied paths it omits now are removed when nobody else owns them.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from libs.testing.k8s_double.errors import ApiError
from libs.testing.k8s_double.patches import apply_merge, list_key

Seg = str | tuple[str, Any]
Path = tuple[Seg, ...]

MISSING: Any = object()
PRESENT: Any = object()  # the value at an item path: the item exists

IGNORED_METADATA = {
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
}


@dataclass
class Manager:
    manager: str
    operation: str  # "Apply" or "Update"
    api_version: str
    subresource: str = ""
    time: str = ""
    fields: set[Path] = field(default_factory=set)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def describe(self) -> str:
        if self.operation == "Update":
            return f'conflict with "{self.manager}" using {self.api_version}'
        return f'conflict with "{self.manager}"'

    def render(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def _walk(value: Any, path: Path, name: str | None, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, (*path, k), k, out)
        return
    key = list_key(name, value) if isinstance(value, list) and value else None
    if key is not None and all(isinstance(i[key], str | int | float | bool) for i in value):
        for item in value:
            item_path = (*path, (key, item[key]))
            out.add(item_path)
            for k, v in item.items():
                _walk(v, (*item_path, k), k, out)
        return
    out.add(path)


def leaf_paths(obj: dict[str, Any], *, status: bool = False) -> set[Path]:
    """The owned-field paths of an object: spec-like fields, or only `status` when asked."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind") or (key == "status") != status:
            continue
        if key == "metadata" and isinstance(value, dict):
            for mk, mv in value.items():
                if mk not in IGNORED_METADATA:
                    _walk(mv, ("metadata", mk), mk, out)
            continue
        _walk(value, (key,), key, out)
    return out


def value_at(obj: Any, path: Path) -> Any:
    current = obj
    for seg in path:
        if isinstance(seg, tuple):
            if not isinstance(current, list):
                return MISSING
            found = [i for i in current if isinstance(i, dict) and i.get(seg[0]) == seg[1]]
            if not found:
                return MISSING
            current = found[0]
        elif isinstance(current, dict) and seg in current:
            current = current[seg]
        else:
            return MISSING
    return PRESENT if path and isinstance(path[-1], tuple) else current


def _remove_at(obj: Any, path: Path) -> None:
    parent = obj
    for seg in path[:-1]:
        if isinstance(seg, tuple):
            items = [i for i in parent if isinstance(i, dict) and i.get(seg[0]) == seg[1]]
            if not items:
                return
            parent = items[0]
        elif isinstance(parent, dict) and seg in parent:
            parent = parent[seg]
        else:
            return
    last = path[-1]
    if isinstance(last, tuple) and isinstance(parent, list):
        parent[:] = [i for i in parent if not (isinstance(i, dict) and i.get(last[0]) == last[1])]
    elif isinstance(last, str) and isinstance(parent, dict):
        parent.pop(last, None)


def _prefixes(paths: set[Path]) -> set[Path]:
    """Every path and all its ancestors."""
    return {p[:i] for p in paths for i in range(1, len(p) + 1)}


def render_path(path: Path) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, tuple):
            out += f"[{seg[0]}={json.dumps(seg[1])}]"
        else:
            out += f".{seg}"
    return out


def fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths, key=repr):
        node = root
        for seg in path:
            name = (
                "k:" + json.dumps({seg[0]: seg[1]}, separators=(",", ":"))
                if isinstance(seg, tuple)
                else f"f:{seg}"
            )
            node = node.setdefault(name, {})
        if path and isinstance(path[-1], tuple):
            node.setdefault(".", {})
    return root


def record_update(
    managers: list[Manager],
    manager: str,
    api_version: str,
    old: dict[str, Any] | None,
    new: dict[str, Any],
    now: str,
    subresource: str = "",
) -> list[Manager]:
    """An Update (create, PUT, non-apply PATCH, controller write): its manager takes the
    changed paths from everyone; removed paths leave every manager."""
    is_status = subresource == "status"
    old_paths = leaf_paths(old or {}, status=is_status)
    new_paths = leaf_paths(new, status=is_status)
    changed = {p for p in new_paths if value_at(old or {}, p) != value_at(new, p)}
    removed = old_paths - new_paths
    gone = changed | removed

    def lost(p: Path) -> bool:
        return any(p[:i] in gone for i in range(1, len(p) + 1))

    result: list[Manager] = []
    mine: Manager | None = None
    for entry in managers:
        entry = copy.deepcopy(entry)
        if entry.key == (manager, "Update", subresource):
            mine = entry
            entry.fields = {p for p in entry.fields if p not in removed} | changed
            entry.time = now if changed else entry.time
        else:
            entry.fields = {p for p in entry.fields if not lost(p)}
        result.append(entry)
    if mine is None and changed:
        result.append(Manager(manager, "Update", api_version, subresource, now, set(changed)))
    return [m for m in result if m.fields]


def server_side_apply(
    managers: list[Manager],
    manager: str,
    api_version: str,
    live: dict[str, Any],
    applied: dict[str, Any],
    force: bool,
    now: str,
) -> tuple[dict[str, Any], list[Manager]]:
    """Merge `applied` into `live` for `manager`; raises a 409 Conflict Status on conflicts."""
    applied_paths = leaf_paths(applied)
    merged = apply_merge(live, applied)
    managers = copy.deepcopy(managers)
    my_key = (manager, "Apply", "")
    applied_prefixes = _prefixes(applied_paths)

    conflicts: list[tuple[Path, Manager]] = []
    for entry in managers:
        if entry.key == my_key or entry.subresource:
            continue
        for owned in sorted(entry.fields, key=repr):
            overlaps = owned in applied_prefixes or any(
                owned[:i] in applied_paths for i in range(1, len(owned))
            )
            if overlaps and value_at(live, owned) != value_at(merged, owned):
                conflicts.append((owned, entry))
    if conflicts and not force:
        raise conflict_error(conflicts)
    for owned, entry in conflicts:
        entry.fields.discard(owned)

    mine = next((m for m in managers if m.key == my_key), None)
    previous = mine.fields if mine else set()
    others = _prefixes({p for m in managers if m.key != my_key for p in m.fields})
    keep = others | applied_prefixes
    removable = {p for p in previous - applied_paths if p not in keep}
    for path in sorted(removable, key=len, reverse=True):
        if any(path[:i] in removable for i in range(1, len(path))):
            continue  # an enclosing item or map goes as a whole
        if len(path) >= 2 and isinstance(path[-2], tuple) and path[-1] == path[-2][0]:
            continue  # an item's key field goes only with the item
        _remove_at(merged, path)
        parent = path[:-1]
        while parent not in keep and parent not in ((), ("metadata",)):
            if value_at(merged, parent) not in ({}, []):
                break
            _remove_at(merged, parent)  # emptied by the prune and owned by nobody
            parent = parent[:-1]

    if mine is None:
        mine = Manager(manager, "Apply", api_version)
        managers.append(mine)
    mine.fields = set(applied_paths)
    mine.time = now
    return merged, [m for m in managers if m.fields]


def conflict_error(conflicts: list[tuple[Path, Manager]]) -> ApiError:
    causes = [
        {"reason": "FieldManagerConflict", "message": entry.describe(), "field": render_path(p)}
        for p, entry in conflicts
    ]
    if len(conflicts) == 1:
        message = f"Apply failed with 1 conflict: {causes[0]['message']}: {causes[0]['field']}"
    else:
        by_manager: dict[str, list[str]] = {}
        for cause in causes:
            who = cause["message"].replace("conflict ", "conflicts ", 1)
            by_manager.setdefault(who, []).append(cause["field"])
        parts = [
            f"{who}:" + "".join(f"\n- {f}" for f in fields) for who, fields in by_manager.items()
        ]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(parts)
    return ApiError(409, "Conflict", message, {"causes": causes})
