"""JSON merge patch, strategic merge patch, JSON patch and the structural merge under apply.

Lists keyed by a merge key (containers by name, ports by containerPort/port, ...) merge item
by item; every other list is atomic (replaced whole), as in the built-in types' schemas.
"""

from __future__ import annotations

import copy
from typing import Any

from libs.testing.k8s_double.errors import ApiError

# field name -> candidate merge keys (the first one every item carries wins)
KEYED_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",),
    "ports": ("containerPort", "port"),
    "ownerReferences": ("uid",),
    "conditions": ("type",),
    "hostAliases": ("ip",),
    "resourceClaims": ("name",),
}


def list_key(field: str | None, *lists: Any) -> str | None:
    """The merge key for a list under `field`, or None when the list is atomic."""
    if field not in KEYED_LISTS:
        return None
    items = [i for lst in lists if isinstance(lst, list) for i in lst]
    items = [i for i in items if not (isinstance(i, dict) and "$patch" in i)]
    if not all(isinstance(i, dict) for i in items):
        return None
    for candidate in KEYED_LISTS[field]:
        if all(candidate in i for i in items):
            return candidate
    return None


def _find(items: list[Any], key: str, value: Any) -> int:
    for index, item in enumerate(items):
        if isinstance(item, dict) and item.get(key) == value:
            return index
    return -1


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge, null deletes, everything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$") and v is not None
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def strategic_merge(target: Any, patch: Any) -> Any:
    """Strategic merge patch: like merge patch, but keyed lists merge by their merge key.

    Directives understood: `$patch: replace|delete` (maps and list items), `$retainKeys`,
    `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is accepted and ignored.
    """
    if not isinstance(patch, dict) or not isinstance(target, dict):
        return _strip_directives(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives(patch)
    result = copy.deepcopy(target)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            if isinstance(result.get(name), list):
                result[name] = [v for v in result[name] if v not in (value or [])]
            continue
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = strategic_merge(result[key], value)
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = _strip_directives(value)
    if isinstance(patch.get("$retainKeys"), list):
        keep = set(patch["$retainKeys"])
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _merge_list(field: str, current: Any, patch: list[Any]) -> list[Any]:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" and len(i) == 1 for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    key = list_key(field, current, patch)
    if key is None or not isinstance(current, list):
        return [
            _strip_directives(i)
            for i in patch
            if not (isinstance(i, dict) and i.get("$patch") == "delete")
        ]
    result = copy.deepcopy(current)
    for item in patch:
        index = _find(result, key, item.get(key))
        if item.get("$patch") == "delete":
            if index >= 0:
                result.pop(index)
        elif index >= 0:
            result[index] = strategic_merge(result[index], item)
        else:
            result.append(_strip_directives(item))
    return result


def strip_nulls(value: Any) -> Any:
    """An apply configuration without its explicit nulls (they set nothing and own nothing)."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def apply_merge(live: Any, applied: Any, field: str | None = None) -> Any:
    """Merge an apply configuration into the live object (structure-aware, no directives)."""
    if isinstance(live, dict) and isinstance(applied, dict):
        merged = copy.deepcopy(live)
        for key, value in applied.items():
            merged[key] = apply_merge(merged.get(key), value, key)
        return merged
    if isinstance(live, list) and isinstance(applied, list):
        merge_key = list_key(field, live, applied)
        if merge_key is None:
            return copy.deepcopy(applied)
        items = copy.deepcopy(live)
        for item in applied:
            index = _find(items, merge_key, item[merge_key])
            if index >= 0:
                items[index] = apply_merge(items[index], item)
            else:
                items.append(copy.deepcopy(item))
        return items
    return copy.deepcopy(applied)


# RFC 6902 JSON patch ------------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_error(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _patch_error(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _parent(doc: Any, parts: list[str]) -> tuple[Any, str]:
    current = doc
    for part in parts[:-1]:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise _patch_error(f"doc is missing path: /{'/'.join(parts)}")
    return current, parts[-1]


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise _patch_error(f"doc is missing path: {path}")


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, _pointer(path))
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise _patch_error(f"unable to remove nonexistent key: {path}")


def _add(doc: Any, path: str, value: Any, replace: bool = False) -> Any:
    parts = _pointer(path)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _parent(doc, parts)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _patch_error(f"replace operation does not apply: doc is missing key: {path}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
        elif last.isdigit() and int(last) <= len(parent) - (1 if replace else 0):
            if replace:
                parent[int(last)] = copy.deepcopy(value)
            else:
                parent.insert(int(last), copy.deepcopy(value))
        else:
            raise _patch_error(f"index out of range: {path}")
    else:
        raise _patch_error(f"doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: list[Any]) -> Any:
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise _patch_error(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            doc = _add(doc, path, op.get("value"), replace=True)
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, _get(doc, op["from"]))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _patch_error(f"testing value {path} failed: test failed")
        else:
            raise _patch_error(f"Unexpected kind: {kind}")
    return doc
