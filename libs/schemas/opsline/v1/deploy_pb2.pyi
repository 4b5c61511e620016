from google.protobuf import struct_pb2 as _struct_pb2
from libs.schemas.opsline.v1 import catalog_pb2 as _catalog_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Target(_message.Message):
    __slots__ = ("cluster", "namespace", "stage")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    stage: str
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class ComponentRelease(_message.Message):
    __slots__ = ("spec", "artifact")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    spec: _catalog_pb2.ComponentSpec
    artifact: _catalog_pb2.Artifact
    def __init__(self, spec: _Optional[_Union[_catalog_pb2.ComponentSpec, _Mapping]] = ..., artifact: _Optional[_Union[_catalog_pb2.Artifact, _Mapping]] = ...) -> None: ...

class DeployRequested(_message.Message):
    __slots__ = ("deployment_id", "instance", "app", "version", "target", "parameters", "components", "auto_rollback")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    AUTO_ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    app: str
    version: str
    target: Target
    parameters: _struct_pb2.Struct
    components: _containers.RepeatedCompositeFieldContainer[ComponentRelease]
    auto_rollback: bool
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ..., app: _Optional[str] = ..., version: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., parameters: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., components: _Optional[_Iterable[_Union[ComponentRelease, _Mapping]]] = ..., auto_rollback: _Optional[bool] = ...) -> None: ...

class RollbackRequested(_message.Message):
    __slots__ = ("deployment_id", "instance", "revision")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    revision: int
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class UninstallRequested(_message.Message):
    __slots__ = ("deployment_id", "instance")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

class RetryRequested(_message.Message):
    __slots__ = ("deployment_id", "instance")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

class TerminateRequested(_message.Message):
    __slots__ = ("deployment_id", "instance")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

class ComponentState(_message.Message):
    __slots__ = ("name", "state", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class DeploymentStateChanged(_message.Message):
    __slots__ = ("deployment_id", "instance", "app", "version", "revision", "state", "reason", "components", "kind")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    app: str
    version: str
    revision: int
    state: str
    reason: str
    components: _containers.RepeatedCompositeFieldContainer[ComponentState]
    kind: str
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ..., app: _Optional[str] = ..., version: _Optional[str] = ..., revision: _Optional[int] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., components: _Optional[_Iterable[_Union[ComponentState, _Mapping]]] = ..., kind: _Optional[str] = ...) -> None: ...
