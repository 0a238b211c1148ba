"""The integration catalogue and its rules.

Each known integration names its fields, their types and when each is
required. A configuration is a JSON object of those fields; a missing or bad
field is reported by name with the message FluentCart uses ("API Key is
required."), and an unknown integration name is NOT_FOUND.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from google.protobuf import struct_pb2

from tierset.core import errors
from tierset.core.reasons import Reason
from tierset.core.values import unstorable_text
from tierset.v1 import integrations_pb2

VALIDATION_FAILED = "Validation Failed, Please fill up the required fields."
SAVED = "Integration has been successfully saved"
OBJECT_TYPE = "order_integration"
MAX_FIELD_CHARS = 2048
# Three fields of at most 2,048 characters fit many times over; more is not a configuration.
MAX_CONFIG_BYTES = 64 * 1024


class Required(Enum):
    """When a field must be present and non-empty."""

    NEVER = "never"
    ALWAYS = "always"
    WHEN_ENABLED = "when_enabled"


@dataclass(frozen=True)
class Field:
    """One configuration field of an integration."""

    name: str
    label: str
    kind: type
    required: Required = Required.NEVER
    default: Any = None
    # A credential of the business (an API key, a URL with a token in it): shown only in the
    # answer to the call that sets it, masked on every read.
    secret: bool = False


@dataclass(frozen=True)
class Integration:
    """A catalogue entry: an integration's name and fields."""

    name: str
    fields: tuple[Field, ...]

    def defaults(self) -> dict[str, Any]:
        """The configuration a never-saved integration reports."""
        return {f.name: f.default for f in self.fields if f.default is not None}


_ENABLED = Field("enabled", "Enabled", bool, default=False)

CATALOGUE: dict[str, Integration] = {
    entry.name: entry
    for entry in (
        Integration(
            "webhook",
            (
                _ENABLED,
                Field("api_key", "API Key", str, Required.WHEN_ENABLED, secret=True),
                Field("webhook_url", "Webhook URL", str),
            ),
        ),
        Integration(
            "mailchimp",
            (_ENABLED, Field("api_key", "API Key", str, Required.WHEN_ENABLED, secret=True)),
        ),
        Integration(
            "slack",
            (
                _ENABLED,
                # A Slack incoming-webhook URL carries its own token.
                Field("webhook_url", "Webhook URL", str, Required.WHEN_ENABLED, secret=True),
            ),
        ),
    )
}


MASK = "********"


def mask(secret: str) -> str:
    """What a read shows of a secret: enough to recognise a long one, never enough to use."""
    return MASK + secret[-4:] if len(secret) >= 16 else MASK


def masked(integration: Integration, config: dict[str, Any]) -> dict[str, Any]:
    """The configuration as a read shows it: every secret field masked."""
    shown = dict(config)
    for f in integration.fields:
        if f.secret and isinstance(shown.get(f.name), str) and shown[f.name]:
            shown[f.name] = mask(shown[f.name])
    return shown


def sends_back_masks(integration: Integration, config: dict[str, Any]) -> bool:
    """Whether a save carries a masked secret (an edited form sending back what it read)."""
    return any(
        f.secret and isinstance(config.get(f.name), str) and config[f.name].startswith(MASK)
        for f in integration.fields
    )


def keep_masked_secrets(
    integration: Integration, config: dict[str, Any], stored: dict[str, Any]
) -> dict[str, Any]:
    """`config` with each secret that came back exactly as a read masked it replaced by the
    stored secret: sending a form back unchanged keeps the key it does not show."""
    merged = dict(config)
    for f in integration.fields:
        old = stored.get(f.name)
        if f.secret and isinstance(old, str) and old and merged.get(f.name) == mask(old):
            merged[f.name] = old
    return merged


def lookup(name: str) -> Integration:
    """The catalogue entry for `name`, or NOT_FOUND."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise errors.not_found(
            "Integration not found", Reason.INTEGRATION_NOT_FOUND, integration_name=name[:100]
        ) from None


def _violation(field: str, description: str) -> errors.FieldViolation:
    return errors.FieldViolation(f"integration.{field}", description)


def validate_config(integration: Integration, config: dict[str, Any]) -> dict[str, Any]:
    """Checks a configuration against the catalogue; raises naming every bad field."""
    known = {f.name: f for f in integration.fields}
    violations = [
        _violation(name, f"{name} is not a field of the {integration.name} integration.")
        for name in config
        if name not in known
    ]
    enabled = config.get("enabled") is True
    for f in integration.fields:
        value = config.get(f.name)
        if value is None or value == "":
            if f.required is Required.ALWAYS or (f.required is Required.WHEN_ENABLED and enabled):
                violations.append(_violation(f.name, f"{f.label} is required."))
            continue
        if f.kind is bool and not isinstance(value, bool):
            violations.append(_violation(f.name, f"{f.label} must be true or false."))
        elif f.kind is str and not isinstance(value, str):
            violations.append(_violation(f.name, f"{f.label} must be a string."))
        elif isinstance(value, str) and (
            len(value) > MAX_FIELD_CHARS or unstorable_text(value) is not None
        ):
            violations.append(
                _violation(
                    f.name,
                    f"{f.label} must be at most {MAX_FIELD_CHARS} characters "
                    "with no NUL character or unpaired surrogate.",
                )
            )
    if violations:
        raise errors.invalid_argument(
            VALIDATION_FAILED, violations, Reason.INTEGRATION_VALIDATION_FAILED
        )
    return config


def _bad_integration(description: str) -> errors.TiersetError:
    return errors.invalid_argument(
        VALIDATION_FAILED,
        [errors.FieldViolation("integration", description)],
        Reason.INTEGRATION_VALIDATION_FAILED,
    )


def decode_config(integration: struct_pb2.Value, data_type: int) -> dict[str, Any]:
    """The configuration object from a request, by its data type.

    STRINGIFY wants a string holding a JSON object; OBJECT wants the object.
    Unspecified follows what arrived, as FluentCart does.
    """
    kind = integration.WhichOneof("kind")
    if data_type == integrations_pb2.INTEGRATION_DATA_TYPE_UNSPECIFIED:
        data_type = (
            integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY
            if kind == "string_value"
            else integrations_pb2.INTEGRATION_DATA_TYPE_OBJECT
        )
    if data_type == integrations_pb2.INTEGRATION_DATA_TYPE_STRINGIFY:
        if kind != "string_value":
            raise _bad_integration("Integration must be a JSON string when data_type is stringify.")
        text = integration.string_value
        if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
            raise _bad_integration(f"Integration must be at most {MAX_CONFIG_BYTES} bytes.")
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            decoded = None
        if not isinstance(decoded, dict):
            raise _bad_integration("Integration must be a JSON object.")
        return decoded
    if data_type == integrations_pb2.INTEGRATION_DATA_TYPE_OBJECT:
        if kind != "struct_value":
            raise _bad_integration("Integration must be an object when data_type is object.")
        return _object_config(integration.struct_value)
    raise errors.bad_field("data_type", "data_type must be stringify or object.")


class _NotFinite(ValueError):
    """A number JSON cannot write (NaN or infinity), found inside a field."""


def _plain(value: struct_pb2.Value) -> Any:
    """A protobuf Value as plain Python, refusing numbers JSON has no text for."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(value.number_value):
            raise _NotFinite
        return value.number_value
    if kind == "struct_value":
        return {name: _plain(item) for name, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind in ("string_value", "bool_value"):
        return getattr(value, kind)
    return None  # null_value, or no kind at all: both mean "not set"


def _object_config(struct: struct_pb2.Struct) -> dict[str, Any]:
    """An OBJECT configuration as a dict. A double arriving over gRPC may be NaN or
    infinite, which no JSON (nor the stored jsonb) can hold: refused by field."""
    config: dict[str, Any] = {}
    violations = []
    for name, value in struct.fields.items():
        try:
            config[name] = _plain(value)
        except _NotFinite:
            violations.append(
                _violation(name, f"{name} holds a number that is not finite (NaN or infinity).")
            )
    if violations:
        raise errors.invalid_argument(
            VALIDATION_FAILED, violations, Reason.INTEGRATION_VALIDATION_FAILED
        )
    return config


def to_struct(config: dict[str, Any]) -> struct_pb2.Struct:
    """A configuration as a protobuf Struct."""
    message = struct_pb2.Struct()
    message.update(config)
    return message
