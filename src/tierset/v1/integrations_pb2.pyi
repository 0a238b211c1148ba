from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IntegrationDataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INTEGRATION_DATA_TYPE_UNSPECIFIED: _ClassVar[IntegrationDataType]
    INTEGRATION_DATA_TYPE_STRINGIFY: _ClassVar[IntegrationDataType]
    INTEGRATION_DATA_TYPE_OBJECT: _ClassVar[IntegrationDataType]
INTEGRATION_DATA_TYPE_UNSPECIFIED: IntegrationDataType
INTEGRATION_DATA_TYPE_STRINGIFY: IntegrationDataType
INTEGRATION_DATA_TYPE_OBJECT: IntegrationDataType

class FeedData(_message.Message):
    __slots__ = ("meta_key", "meta_value", "object_type")
    META_KEY_FIELD_NUMBER: _ClassVar[int]
    META_VALUE_FIELD_NUMBER: _ClassVar[int]
    OBJECT_TYPE_FIELD_NUMBER: _ClassVar[int]
    meta_key: str
    meta_value: _struct_pb2.Struct
    object_type: str
    def __init__(self, meta_key: _Optional[str] = ..., meta_value: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., object_type: _Optional[str] = ...) -> None: ...

class SetGlobalSettingsRequest(_message.Message):
    __slots__ = ("integration_name", "integration", "integration_id", "data_type")
    INTEGRATION_NAME_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_TYPE_FIELD_NUMBER: _ClassVar[int]
    integration_name: str
    integration: _struct_pb2.Value
    integration_id: int
    data_type: IntegrationDataType
    def __init__(self, integration_name: _Optional[str] = ..., integration: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., integration_id: _Optional[int] = ..., data_type: _Optional[_Union[IntegrationDataType, str]] = ...) -> None: ...

class SetGlobalSettingsResponse(_message.Message):
    __slots__ = ("message", "integration_id", "integration_name", "created", "feed_data")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FEED_DATA_FIELD_NUMBER: _ClassVar[int]
    message: str
    integration_id: int
    integration_name: str
    created: bool
    feed_data: FeedData
    def __init__(self, message: _Optional[str] = ..., integration_id: _Optional[int] = ..., integration_name: _Optional[str] = ..., created: _Optional[bool] = ..., feed_data: _Optional[_Union[FeedData, _Mapping]] = ...) -> None: ...

class GetGlobalSettingsRequest(_message.Message):
    __slots__ = ("settings_key",)
    SETTINGS_KEY_FIELD_NUMBER: _ClassVar[int]
    settings_key: str
    def __init__(self, settings_key: _Optional[str] = ...) -> None: ...

class GetGlobalSettingsResponse(_message.Message):
    __slots__ = ("integration_id", "integration_name", "settings")
    INTEGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    INTEGRATION_NAME_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    integration_id: int
    integration_name: str
    settings: _struct_pb2.Struct
    def __init__(self, integration_id: _Optional[int] = ..., integration_name: _Optional[str] = ..., settings: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...
