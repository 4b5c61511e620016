from libs.schemas.opsline.v1 import catalog_pb2 as _catalog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BuildRequested(_message.Message):
    __slots__ = ("build_id", "app", "version", "components")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    version: str
    components: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.ComponentSpec]
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., version: _Optional[str] = ..., components: _Optional[_Iterable[_Union[_catalog_pb2.ComponentSpec, _Mapping]]] = ...) -> None: ...

class BuildCancelRequested(_message.Message):
    __slots__ = ("build_id", "app")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...

class BuildStarted(_message.Message):
    __slots__ = ("build_id", "app", "worker", "attempt")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    worker: str
    attempt: int
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., worker: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class BuildStep(_message.Message):
    __slots__ = ("build_id", "app", "component", "step", "status", "log")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    component: str
    step: str
    status: str
    log: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., component: _Optional[str] = ..., step: _Optional[str] = ..., status: _Optional[str] = ..., log: _Optional[_Iterable[str]] = ...) -> None: ...

class BuildSucceeded(_message.Message):
    __slots__ = ("build_id", "app", "version", "artifacts")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    version: str
    artifacts: _containers.RepeatedCompositeFieldContainer[_catalog_pb2.Artifact]
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., version: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[_catalog_pb2.Artifact, _Mapping]]] = ...) -> None: ...

class BuildFailed(_message.Message):
    __slots__ = ("build_id", "app", "component", "reason")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    component: str
    reason: str
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ..., component: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class BuildCancelled(_message.Message):
    __slots__ = ("build_id", "app")
    BUILD_ID_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    build_id: str
    app: str
    def __init__(self, build_id: _Optional[str] = ..., app: _Optional[str] = ...) -> None: ...
