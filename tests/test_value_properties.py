"""Properties of the value codec: what is accepted comes back exactly; the rest is refused.

The codec (decode_value/encode_value) is checked on its own over many generated values,
then a bounded number of them make the full trip through PutSetting and GetSettings.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tierset.core import values
from tierset.core.errors import Code, TiersetError
from tierset.core.values import (
    INT64_MAX,
    INT64_MIN,
    MAX_JSON_BYTES,
    MAX_NUMBER_DIGITS,
    SettingType,
    decode_value,
    encode_value,
)
from tierset.v1 import accounts_pb2, settings_pb2

V = settings_pb2.SettingValue

# Text PostgreSQL can store: no NUL, no unpaired surrogate.
storable_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))
json_documents = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | storable_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(storable_text, children, max_size=4)
    ),
    max_leaves=12,
)

# (type, the value as a client sends it in its own field) for every type.
native_values = st.one_of(
    st.tuples(st.just(SettingType.STRING), storable_text.map(lambda s: V(string_value=s))),
    st.tuples(st.just(SettingType.LOB), storable_text.map(lambda s: V(string_value=s))),
    st.tuples(
        st.just(SettingType.INTEGER),
        st.integers(INT64_MIN, INT64_MAX).map(lambda i: V(integer_value=i)),
    ),
    st.tuples(st.just(SettingType.BOOLEAN), st.booleans().map(lambda b: V(boolean_value=b))),
)
json_values = json_documents.flatmap(
    lambda doc: st.sampled_from(
        [json.dumps(doc), json.dumps(doc, ensure_ascii=False), json.dumps(doc, indent=1)]
    )
).map(lambda text: V(json_value=text))


# JSON number tokens in every notation: signs, fractions, exponents small and absurd.
number_tokens = st.builds(
    lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.integers(1, 10**30).map(str)),
    st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=30).map(".".__add__)),
    st.one_of(
        st.just(""),
        st.builds(
            lambda e, sign, n: f"{e}{sign}{n}",
            st.sampled_from(["e", "E"]),
            st.sampled_from(["", "+", "-"]),
            st.integers(0, 1200),
        ),
    ),
)
number_documents = st.lists(number_tokens, min_size=1, max_size=6).map(
    lambda tokens: "[" + ", ".join(tokens) + "]"
)


def as_json_text(value: settings_pb2.SettingValue) -> settings_pb2.SettingValue:
    """The same scalar sent the other way a client may send it: as JSON text."""
    return V(json_value=json.dumps(getattr(value, value.WhichOneof("kind"))))


def exact_json(text: str) -> Any:
    """A JSON document with every number exact, to compare documents digit for digit."""
    return json.loads(text, parse_float=Decimal)


@given(native_values)
def test_every_accepted_scalar_round_trips_exactly(typed):
    setting_type, value = typed
    assert encode_value(setting_type, decode_value("K", setting_type, value)) == value


@given(native_values)
def test_a_scalar_sent_as_json_text_decodes_to_the_same_value(typed):
    setting_type, value = typed
    via_json = decode_value("K", setting_type, as_json_text(value))
    assert encode_value(setting_type, via_json) == value


@given(json_values)
def test_every_accepted_json_document_round_trips_exactly(value):
    assert encode_value(SettingType.JSON, decode_value("K", SettingType.JSON, value)) == value


@given(
    st.sampled_from(list(SettingType)),
    st.one_of(
        st.text(),
        st.text(alphabet='[]{}":,0123456789.eE-+ \\u', max_size=80),
        json_documents.map(json.dumps),
    ),
)
def test_any_json_text_is_accepted_or_refused_as_invalid_argument(setting_type, text):
    try:
        stored = decode_value("K", setting_type, V(json_value=text))
    except TiersetError as error:
        assert error.code == Code.INVALID_ARGUMENT
        assert [v.field for v in error.violations] == ["value"]
        return
    json.loads(stored)  # what is accepted is JSON the database will take


@given(json_documents)
def test_compacting_jsonb_text_drops_only_the_spaces_it_adds(doc):
    # PostgreSQL writes ", " and ": " between tokens, as json.dumps does by default.
    spaced = json.dumps(doc, ensure_ascii=False)
    assert values.compact_json(spaced) == json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


@given(number_documents)
def test_a_number_is_accepted_only_if_its_stored_form_is_within_the_limits(text):
    try:
        decode_value("K", SettingType.JSON, V(json_value=text))
    except TiersetError as error:
        assert error.code == Code.INVALID_ARGUMENT
        return
    stored = values.stored_json(text)
    assert len(stored.encode()) <= MAX_JSON_BYTES
    for written in json.loads(stored, parse_float=str, parse_int=str):
        assert sum(c.isdigit() for c in written) <= MAX_NUMBER_DIGITS
        assert "e" not in written.lower()
    assert exact_json(stored) == exact_json(text)  # the same numbers, every digit


@pytest.fixture(scope="module")
async def scope(accounts_stub) -> settings_pb2.Scope:
    created = await accounts_stub.CreateAccount(
        accounts_pb2.CreateAccountRequest(display_name="property tests")
    )
    return settings_pb2.Scope(account_id=created.account.id)


async def _put_then_get(settings_stub, scope, setting_type, value) -> settings_pb2.SettingValue:
    key = f"PROP.{uuid.uuid4().hex}"
    await settings_stub.PutSetting(
        settings_pb2.PutSettingRequest(
            scope=scope, key=key, type=int(TYPE_NUMBERS[setting_type]), value=value
        )
    )
    read = await settings_stub.GetSettings(settings_pb2.GetSettingsRequest(scope=scope, keys=[key]))
    return read.settings[0].value


TYPE_NUMBERS = {
    SettingType.LOB: settings_pb2.SETTING_TYPE_LOB,
    SettingType.STRING: settings_pb2.SETTING_TYPE_STRING,
    SettingType.INTEGER: settings_pb2.SETTING_TYPE_INTEGER,
    SettingType.BOOLEAN: settings_pb2.SETTING_TYPE_BOOLEAN,
    SettingType.JSON: settings_pb2.SETTING_TYPE_JSON,
}


@given(native_values)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_every_accepted_scalar_round_trips_through_the_server(settings_stub, scope, typed):
    setting_type, value = typed
    assert await _put_then_get(settings_stub, scope, setting_type, value) == value


@given(json_values)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_every_accepted_json_document_round_trips_through_the_server(
    settings_stub, scope, value
):
    # PostgreSQL's jsonb re-spaces a document and may re-write a number's notation
    # (1e-05 as 0.00001); the document and every digit of every number stay the same.
    got = await _put_then_get(settings_stub, scope, SettingType.JSON, value)
    assert exact_json(got.json_value) == exact_json(value.json_value)


@given(number_documents)
@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_numbers_read_back_as_documented(settings_stub, scope, text):
    # README, "Values, keys and limits": plain decimal notation, every digit and the scale
    # as sent, no negative zero; values.stored_json is that rule, PostgreSQL applies it.
    try:
        decode_value("K", SettingType.JSON, V(json_value=text))
    except TiersetError:
        return
    got = await _put_then_get(settings_stub, scope, SettingType.JSON, V(json_value=text))
    assert got.json_value == values.stored_json(text)
