from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AlertSignal(_message.Message):
    __slots__ = ("fingerprint", "state", "rule_id", "rule_name", "severity", "labels", "value", "ts_ms", "summary", "score")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TS_MS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    state: str
    rule_id: str
    rule_name: str
    severity: str
    labels: _containers.ScalarMap[str, str]
    value: float
    ts_ms: int
    summary: str
    score: float
    def __init__(self, fingerprint: _Optional[str] = ..., state: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_name: _Optional[str] = ..., severity: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ..., ts_ms: _Optional[int] = ..., summary: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("fingerprint", "state", "severity", "rule_id", "rule_name", "app", "labels", "summary", "value", "score", "starts_at", "updated_at", "ends_at", "incident_id")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    INCIDENT_ID_FIELD_NUMBER: _ClassVar[int]
    fingerprint: str
    state: str
    severity: str
    rule_id: str
    rule_name: str
    app: str
    labels: _containers.ScalarMap[str, str]
    summary: str
    value: float
    score: float
    starts_at: int
    updated_at: int
    ends_at: int
    incident_id: str
    def __init__(self, fingerprint: _Optional[str] = ..., state: _Optional[str] = ..., severity: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_name: _Optional[str] = ..., app: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., summary: _Optional[str] = ..., value: _Optional[float] = ..., score: _Optional[float] = ..., starts_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., ends_at: _Optional[int] = ..., incident_id: _Optional[str] = ...) -> None: ...

class IncidentDeployment(_message.Message):
    __slots__ = ("deployment_id", "instance", "version", "state", "started_at", "alert_after_ms")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ALERT_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    instance: str
    version: str
    state: str
    started_at: int
    alert_after_ms: int
    def __init__(self, deployment_id: _Optional[str] = ..., instance: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[str] = ..., started_at: _Optional[int] = ..., alert_after_ms: _Optional[int] = ...) -> None: ...

class Incident(_message.Message):
    __slots__ = ("id", "rule_id", "rule_name", "app", "state", "severity", "occurrences", "first_seen", "last_seen", "firing", "recovered_at", "recovery_ms", "closed_at", "change_induced", "deployment")
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_NAME_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    OCCURRENCES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    FIRING_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_AT_FIELD_NUMBER: _ClassVar[int]
    RECOVERY_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_INDUCED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule_id: str
    rule_name: str
    app: str
    state: str
    severity: str
    occurrences: int
    first_seen: int
    last_seen: int
    firing: int
    recovered_at: int
    recovery_ms: int
    closed_at: int
    change_induced: bool
    deployment: IncidentDeployment
    def __init__(self, id: _Optional[str] = ..., rule_id: _Optional[str] = ..., rule_name: _Optional[str] = ..., app: _Optional[str] = ..., state: _Optional[str] = ..., severity: _Optional[str] = ..., occurrences: _Optional[int] = ..., first_seen: _Optional[int] = ..., last_seen: _Optional[int] = ..., firing: _Optional[int] = ..., recovered_at: _Optional[int] = ..., recovery_ms: _Optional[int] = ..., closed_at: _Optional[int] = ..., change_induced: _Optional[bool] = ..., deployment: _Optional[_Union[IncidentDeployment, _Mapping]] = ...) -> None: ...
