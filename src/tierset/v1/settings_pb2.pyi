import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SettingType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTING_TYPE_UNSPECIFIED: _ClassVar[SettingType]
    SETTING_TYPE_LOB: _ClassVar[SettingType]
    SETTING_TYPE_STRING: _ClassVar[SettingType]
    SETTING_TYPE_INTEGER: _ClassVar[SettingType]
    SETTING_TYPE_BOOLEAN: _ClassVar[SettingType]
    SETTING_TYPE_JSON: _ClassVar[SettingType]

class SettingLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SETTING_LEVEL_UNSPECIFIED: _ClassVar[SettingLevel]
    SETTING_LEVEL_GLOBAL: _ClassVar[SettingLevel]
    SETTING_LEVEL_ACCOUNT: _ClassVar[SettingLevel]
    SETTING_LEVEL_RETAILER: _ClassVar[SettingLevel]

class ChangeOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_OPERATION_UNSPECIFIED: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_PUT: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_DELETE: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_LOCK: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_UNLOCK: _ClassVar[ChangeOperation]

class ChangeOutcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_OUTCOME_UNSPECIFIED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_CREATED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_UPDATED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_DELETED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_UNCHANGED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_LOCKED: _ClassVar[ChangeOutcome]
    CHANGE_OUTCOME_UNLOCKED: _ClassVar[ChangeOutcome]
SETTING_TYPE_UNSPECIFIED: SettingType
SETTING_TYPE_LOB: SettingType
SETTING_TYPE_STRING: SettingType
SETTING_TYPE_INTEGER: SettingType
SETTING_TYPE_BOOLEAN: SettingType
SETTING_TYPE_JSON: SettingType
SETTING_LEVEL_UNSPECIFIED: SettingLevel
SETTING_LEVEL_GLOBAL: SettingLevel
SETTING_LEVEL_ACCOUNT: SettingLevel
SETTING_LEVEL_RETAILER: SettingLevel
CHANGE_OPERATION_UNSPECIFIED: ChangeOperation
CHANGE_OPERATION_PUT: ChangeOperation
CHANGE_OPERATION_DELETE: ChangeOperation
CHANGE_OPERATION_LOCK: ChangeOperation
CHANGE_OPERATION_UNLOCK: ChangeOperation
CHANGE_OUTCOME_UNSPECIFIED: ChangeOutcome
CHANGE_OUTCOME_CREATED: ChangeOutcome
CHANGE_OUTCOME_UPDATED: ChangeOutcome
CHANGE_OUTCOME_DELETED: ChangeOutcome
CHANGE_OUTCOME_UNCHANGED: ChangeOutcome
CHANGE_OUTCOME_LOCKED: ChangeOutcome
CHANGE_OUTCOME_UNLOCKED: ChangeOutcome

class Scope(_message.Message):
    __slots__ = ("account_id", "retailer_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    RETAILER_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: int
    retailer_id: int
    def __init__(self, account_id: _Optional[int] = ..., retailer_id: _Optional[int] = ...) -> None: ...

class SettingValue(_message.Message):
    __slots__ = ("string_value", "integer_value", "boolean_value", "json_value")
    STRING_VALUE_FIELD_NUMBER: _ClassVar[int]
    INTEGER_VALUE_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_VALUE_FIELD_NUMBER: _ClassVar[int]
    JSON_VALUE_FIELD_NUMBER: _ClassVar[int]
    string_value: str
    integer_value: int
    boolean_value: bool
    json_value: str
    def __init__(self, string_value: _Optional[str] = ..., integer_value: _Optional[int] = ..., boolean_value: _Optional[bool] = ..., json_value: _Optional[str] = ...) -> None: ...

class Setting(_message.Message):
    __slots__ = ("id", "key", "type", "value", "level", "version", "update_time", "create_revision", "mod_revision", "lock")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    LOCK_FIELD_NUMBER: _ClassVar[int]
    id: int
    key: str
    type: SettingType
    value: SettingValue
    level: SettingLevel
    version: int
    update_time: _timestamp_pb2.Timestamp
    create_revision: int
    mod_revision: int
    lock: SettingLock
    def __init__(self, id: _Optional[int] = ..., key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., level: _Optional[_Union[SettingLevel, str]] = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., lock: _Optional[_Union[SettingLock, _Mapping]] = ...) -> None: ...

class SettingLock(_message.Message):
    __slots__ = ("actor", "lock_time", "revision")
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    LOCK_TIME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    actor: Actor
    lock_time: _timestamp_pb2.Timestamp
    revision: int
    def __init__(self, actor: _Optional[_Union[Actor, _Mapping]] = ..., lock_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class Actor(_message.Message):
    __slots__ = ("user_id", "username", "credential_kind", "credential_id", "request_id")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_KIND_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    username: str
    credential_kind: str
    credential_id: int
    request_id: str
    def __init__(self, user_id: _Optional[int] = ..., username: _Optional[str] = ..., credential_kind: _Optional[str] = ..., credential_id: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class Change(_message.Message):
    __slots__ = ("revision", "sequence", "change_time", "operation", "level", "scope", "owner_account_id", "key", "old_setting", "new_setting", "actor", "reason")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    OWNER_ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    OLD_SETTING_FIELD_NUMBER: _ClassVar[int]
    NEW_SETTING_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    revision: int
    sequence: int
    change_time: _timestamp_pb2.Timestamp
    operation: ChangeOperation
    level: SettingLevel
    scope: Scope
    owner_account_id: int
    key: str
    old_setting: Setting
    new_setting: Setting
    actor: Actor
    reason: str
    def __init__(self, revision: _Optional[int] = ..., sequence: _Optional[int] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., operation: _Optional[_Union[ChangeOperation, str]] = ..., level: _Optional[_Union[SettingLevel, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., owner_account_id: _Optional[int] = ..., key: _Optional[str] = ..., old_setting: _Optional[_Union[Setting, _Mapping]] = ..., new_setting: _Optional[_Union[Setting, _Mapping]] = ..., actor: _Optional[_Union[Actor, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class GetSettingsRequest(_message.Message):
    __slots__ = ("scope", "keys", "at_revision")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    AT_REVISION_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    keys: _containers.RepeatedScalarFieldContainer[str]
    at_revision: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., at_revision: _Optional[int] = ...) -> None: ...

class GetSettingsResponse(_message.Message):
    __slots__ = ("settings", "revision")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    revision: int
    def __init__(self, settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class PutSettingRequest(_message.Message):
    __slots__ = ("scope", "key", "type", "value", "expected_version", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    type: SettingType
    value: SettingValue
    expected_version: int
    reason: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class PutSettingResponse(_message.Message):
    __slots__ = ("id", "version", "created", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    created: bool
    revision: int
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., created: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class SetGlobalRequest(_message.Message):
    __slots__ = ("key", "type", "value", "expected_version", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    type: SettingType
    value: SettingValue
    expected_version: int
    reason: str
    def __init__(self, key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class SetGlobalResponse(_message.Message):
    __slots__ = ("id", "version", "created", "revision")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    created: bool
    revision: int
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., created: _Optional[bool] = ..., revision: _Optional[int] = ...) -> None: ...

class DeleteSettingRequest(_message.Message):
    __slots__ = ("scope", "key", "expected_version", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    expected_version: int
    reason: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteSettingResponse(_message.Message):
    __slots__ = ("revision", "effective")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    revision: int
    effective: Setting
    def __init__(self, revision: _Optional[int] = ..., effective: _Optional[_Union[Setting, _Mapping]] = ...) -> None: ...

class DeleteGlobalRequest(_message.Message):
    __slots__ = ("key", "expected_version", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: str
    expected_version: int
    reason: str
    def __init__(self, key: _Optional[str] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class DeleteGlobalResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListSettingsRequest(_message.Message):
    __slots__ = ("scope", "key_prefix", "level_only", "page_size", "page_token", "at_revision")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    LEVEL_ONLY_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    AT_REVISION_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key_prefix: str
    level_only: bool
    page_size: int
    page_token: str
    at_revision: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key_prefix: _Optional[str] = ..., level_only: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., at_revision: _Optional[int] = ...) -> None: ...

class ListSettingsResponse(_message.Message):
    __slots__ = ("settings", "next_page_token", "revision")
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    next_page_token: str
    revision: int
    def __init__(self, settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class ExplainSettingsRequest(_message.Message):
    __slots__ = ("scope", "keys")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class LevelValue(_message.Message):
    __slots__ = ("setting", "last_actor", "last_change_time", "last_reason", "shadowed")
    SETTING_FIELD_NUMBER: _ClassVar[int]
    LAST_ACTOR_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_REASON_FIELD_NUMBER: _ClassVar[int]
    SHADOWED_FIELD_NUMBER: _ClassVar[int]
    setting: Setting
    last_actor: Actor
    last_change_time: _timestamp_pb2.Timestamp
    last_reason: str
    shadowed: bool
    def __init__(self, setting: _Optional[_Union[Setting, _Mapping]] = ..., last_actor: _Optional[_Union[Actor, _Mapping]] = ..., last_change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reason: _Optional[str] = ..., shadowed: _Optional[bool] = ...) -> None: ...

class KeyExplanation(_message.Message):
    __slots__ = ("key", "winner", "levels")
    KEY_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    key: str
    winner: SettingLevel
    levels: _containers.RepeatedCompositeFieldContainer[LevelValue]
    def __init__(self, key: _Optional[str] = ..., winner: _Optional[_Union[SettingLevel, str]] = ..., levels: _Optional[_Iterable[_Union[LevelValue, _Mapping]]] = ...) -> None: ...

class ExplainSettingsResponse(_message.Message):
    __slots__ = ("keys", "revision")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[KeyExplanation]
    revision: int
    def __init__(self, keys: _Optional[_Iterable[_Union[KeyExplanation, _Mapping]]] = ..., revision: _Optional[int] = ...) -> None: ...

class ListChangesRequest(_message.Message):
    __slots__ = ("scope", "global_only", "key", "key_prefix", "min_revision", "max_revision", "min_time", "max_time", "actor_user_id", "newest_first", "page_size", "page_token")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    GLOBAL_ONLY_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    MIN_REVISION_FIELD_NUMBER: _ClassVar[int]
    MAX_REVISION_FIELD_NUMBER: _ClassVar[int]
    MIN_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_USER_ID_FIELD_NUMBER: _ClassVar[int]
    NEWEST_FIRST_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    global_only: bool
    key: str
    key_prefix: str
    min_revision: int
    max_revision: int
    min_time: _timestamp_pb2.Timestamp
    max_time: _timestamp_pb2.Timestamp
    actor_user_id: int
    newest_first: bool
    page_size: int
    page_token: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., global_only: _Optional[bool] = ..., key: _Optional[str] = ..., key_prefix: _Optional[str] = ..., min_revision: _Optional[int] = ..., max_revision: _Optional[int] = ..., min_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_user_id: _Optional[int] = ..., newest_first: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListChangesResponse(_message.Message):
    __slots__ = ("changes", "next_page_token", "revision")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    next_page_token: str
    revision: int
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class RestoreSettingsRequest(_message.Message):
    __slots__ = ("level", "scope", "keys", "revision", "reason")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    level: SettingLevel
    scope: Scope
    keys: _containers.RepeatedScalarFieldContainer[str]
    revision: int
    reason: str
    def __init__(self, level: _Optional[_Union[SettingLevel, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., revision: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class RestoreSettingsResponse(_message.Message):
    __slots__ = ("revision", "changed_keys")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_KEYS_FIELD_NUMBER: _ClassVar[int]
    revision: int
    changed_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, revision: _Optional[int] = ..., changed_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class WatchSettingsRequest(_message.Message):
    __slots__ = ("scope", "keys", "key_prefix", "start_revision")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    KEY_PREFIX_FIELD_NUMBER: _ClassVar[int]
    START_REVISION_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    keys: _containers.RepeatedScalarFieldContainer[str]
    key_prefix: str
    start_revision: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ..., key_prefix: _Optional[str] = ..., start_revision: _Optional[int] = ...) -> None: ...

class SettingEvent(_message.Message):
    __slots__ = ("key", "setting", "previous")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    key: str
    setting: Setting
    previous: Setting
    def __init__(self, key: _Optional[str] = ..., setting: _Optional[_Union[Setting, _Mapping]] = ..., previous: _Optional[_Union[Setting, _Mapping]] = ...) -> None: ...

class WatchSettingsResponse(_message.Message):
    __slots__ = ("kind", "revision", "settings", "events")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[WatchSettingsResponse.Kind]
        KIND_SNAPSHOT: _ClassVar[WatchSettingsResponse.Kind]
        KIND_EVENTS: _ClassVar[WatchSettingsResponse.Kind]
        KIND_PROGRESS: _ClassVar[WatchSettingsResponse.Kind]
    KIND_UNSPECIFIED: WatchSettingsResponse.Kind
    KIND_SNAPSHOT: WatchSettingsResponse.Kind
    KIND_EVENTS: WatchSettingsResponse.Kind
    KIND_PROGRESS: WatchSettingsResponse.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    kind: WatchSettingsResponse.Kind
    revision: int
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    events: _containers.RepeatedCompositeFieldContainer[SettingEvent]
    def __init__(self, kind: _Optional[_Union[WatchSettingsResponse.Kind, str]] = ..., revision: _Optional[int] = ..., settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[SettingEvent, _Mapping]]] = ...) -> None: ...

class LockSettingRequest(_message.Message):
    __slots__ = ("scope", "key", "remove_overrides", "expected_version", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    REMOVE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    remove_overrides: bool
    expected_version: int
    reason: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., remove_overrides: _Optional[bool] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class LockSettingResponse(_message.Message):
    __slots__ = ("revision", "setting", "removed_overrides")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    REMOVED_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    setting: Setting
    removed_overrides: _containers.RepeatedCompositeFieldContainer[Scope]
    def __init__(self, revision: _Optional[int] = ..., setting: _Optional[_Union[Setting, _Mapping]] = ..., removed_overrides: _Optional[_Iterable[_Union[Scope, _Mapping]]] = ...) -> None: ...

class UnlockSettingRequest(_message.Message):
    __slots__ = ("scope", "key", "expected_version", "reason")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    expected_version: int
    reason: str
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., expected_version: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class UnlockSettingResponse(_message.Message):
    __slots__ = ("revision", "setting")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SETTING_FIELD_NUMBER: _ClassVar[int]
    revision: int
    setting: Setting
    def __init__(self, revision: _Optional[int] = ..., setting: _Optional[_Union[Setting, _Mapping]] = ...) -> None: ...

class SettingChange(_message.Message):
    __slots__ = ("operation", "scope", "key", "type", "value", "expected_version", "remove_overrides")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOVE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    operation: ChangeOperation
    scope: Scope
    key: str
    type: SettingType
    value: SettingValue
    expected_version: int
    remove_overrides: bool
    def __init__(self, operation: _Optional[_Union[ChangeOperation, str]] = ..., scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., expected_version: _Optional[int] = ..., remove_overrides: _Optional[bool] = ...) -> None: ...

class ApplyChangesRequest(_message.Message):
    __slots__ = ("changes", "reason", "dry_run")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[SettingChange]
    reason: str
    dry_run: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[SettingChange, _Mapping]]] = ..., reason: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class ChangeResult(_message.Message):
    __slots__ = ("outcome", "id", "version", "removed_overrides")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REMOVED_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    outcome: ChangeOutcome
    id: int
    version: int
    removed_overrides: _containers.RepeatedCompositeFieldContainer[Scope]
    def __init__(self, outcome: _Optional[_Union[ChangeOutcome, str]] = ..., id: _Optional[int] = ..., version: _Optional[int] = ..., removed_overrides: _Optional[_Iterable[_Union[Scope, _Mapping]]] = ...) -> None: ...

class EffectChange(_message.Message):
    __slots__ = ("scope", "key", "before", "after")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    before: Setting
    after: Setting
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., before: _Optional[_Union[Setting, _Mapping]] = ..., after: _Optional[_Union[Setting, _Mapping]] = ...) -> None: ...

class ApplyChangesResponse(_message.Message):
    __slots__ = ("revision", "results", "effects", "effects_truncated")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_FIELD_NUMBER: _ClassVar[int]
    EFFECTS_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    revision: int
    results: _containers.RepeatedCompositeFieldContainer[ChangeResult]
    effects: _containers.RepeatedCompositeFieldContainer[EffectChange]
    effects_truncated: bool
    def __init__(self, revision: _Optional[int] = ..., results: _Optional[_Iterable[_Union[ChangeResult, _Mapping]]] = ..., effects: _Optional[_Iterable[_Union[EffectChange, _Mapping]]] = ..., effects_truncated: _Optional[bool] = ...) -> None: ...
