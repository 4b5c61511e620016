from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GitSource(_message.Message):
    __slots__ = ("url", "ref")
    URL_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    url: str
    ref: str
    def __init__(self, url: _Optional[str] = ..., ref: _Optional[str] = ...) -> None: ...

class Source(_message.Message):
    __slots__ = ("dir", "git", "chart", "image")
    DIR_FIELD_NUMBER: _ClassVar[int]
    GIT_FIELD_NUMBER: _ClassVar[int]
    CHART_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    dir: str
    git: GitSource
    chart: str
    image: str
    def __init__(self, dir: _Optional[str] = ..., git: _Optional[_Union[GitSource, _Mapping]] = ..., chart: _Optional[str] = ..., image: _Optional[str] = ...) -> None: ...

class ComponentSpec(_message.Message):
    __slots__ = ("name", "type", "source", "build", "traits")
    class BuildEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    BUILD_FIELD_NUMBER: _ClassVar[int]
    TRAITS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    source: Source
    build: _containers.ScalarMap[str, str]
    traits: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., source: _Optional[_Union[Source, _Mapping]] = ..., build: _Optional[_Mapping[str, str]] = ..., traits: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class AppChanged(_message.Message):
    __slots__ = ("app", "team", "action", "changed")
    APP_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    app: str
    team: str
    action: str
    changed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, app: _Optional[str] = ..., team: _Optional[str] = ..., action: _Optional[str] = ..., changed: _Optional[_Iterable[str]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("component", "kind", "uri", "digest", "size")
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    component: str
    kind: str
    uri: str
    digest: str
    size: int
    def __init__(self, component: _Optional[str] = ..., kind: _Optional[str] = ..., uri: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class PackageVersionCreated(_message.Message):
    __slots__ = ("app", "version", "build_id", "artifacts")
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    app: str
    version: str
    build_id: str
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    def __init__(self, app: _Optional[str] = ..., version: _Optional[str] = ..., build_id: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ...) -> None: ...
