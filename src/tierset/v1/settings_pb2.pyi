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
    __slots__ = ("id", "key", "type", "value", "level", "version", "update_time")
    ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    id: int
    key: str
    type: SettingType
    value: SettingValue
    level: SettingLevel
    version: int
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[int] = ..., key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., level: _Optional[_Union[SettingLevel, str]] = ..., version: _Optional[int] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetSettingsRequest(_message.Message):
    __slots__ = ("scope", "keys")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., keys: _Optional[_Iterable[str]] = ...) -> None: ...

class GetSettingsResponse(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    def __init__(self, settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ...) -> None: ...

class PutSettingRequest(_message.Message):
    __slots__ = ("scope", "key", "type", "value", "expected_version")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    scope: Scope
    key: str
    type: SettingType
    value: SettingValue
    expected_version: int
    def __init__(self, scope: _Optional[_Union[Scope, _Mapping]] = ..., key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class PutSettingResponse(_message.Message):
    __slots__ = ("id", "version", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    created: bool
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...

class SetGlobalRequest(_message.Message):
    __slots__ = ("key", "type", "value", "expected_version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    type: SettingType
    value: SettingValue
    expected_version: int
    def __init__(self, key: _Optional[str] = ..., type: _Optional[_Union[SettingType, str]] = ..., value: _Optional[_Union[SettingValue, _Mapping]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class SetGlobalResponse(_message.Message):
    __slots__ = ("id", "version", "created")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    id: int
    version: int
    created: bool
    def __init__(self, id: _Optional[int] = ..., version: _Optional[int] = ..., created: _Optional[bool] = ...) -> None: ...
