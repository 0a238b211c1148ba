"""Key definitions, the checks every write of a setting passes, and secret masking.

**One type per key.** A key has one type at every level. The database enforces it for
every write statement while the write holds the revision counter (store/keytypes.py):
a write of another type than the key's at any other (level, scope) is
FAILED_PRECONDITION, reason TYPE_MISMATCH, naming the type and where it is set.

**Definitions** (``DefineKey`` and friends; PLATFORM writes, every authenticated caller
reads): a key's type, description, optional JSON Schema (Draft 2020-12, checked on
define; local ``$ref`` only, nothing is fetched), whether it is secret, and the levels
allowed to set it. Undefined keys work as before. A definition is written only when
every value stored now satisfies it (read under the counter's lock, so none can change
in between); else DEFINITION_CONFLICT listing the offending scopes.

**The write check.** :meth:`KeyRules.check_write` is the one check of a put against the
definitions (type: TYPE_MISMATCH; level: LEVEL_NOT_ALLOWED; schema: INVALID_ARGUMENT,
SCHEMA_VIOLATION, naming the JSON path). Every put calls it through :func:`checked`:
single writes, SetGlobal, REST, restores and changesets alike. The rules are the
process's copy of the definitions at some ``version``; the write statement refuses
(DefinitionsChanged) when the definitions moved on before it held the counter, and
:func:`checked` reads them again and checks again. So no value is ever stored that was
not checked against the definitions in force when it committed.

**Secrets.** A secret key's value is shown only to callers holding SECRETS_VIEW (ADMIN,
on its own account's scopes, which are all it can read; PLATFORM); every other caller
(VIEWER) gets the setting with its value removed and ``value_masked`` set, on every
read (GetSettings, ListSettings, ExplainSettings, ListChanges' old and new side,
WatchSettings' snapshot and events, every REST read). Masking happens after the read
cache, per caller: the cache holds what the database said; a reader without the
permission gets a masked copy (built once per cached answer), and an answer holding no
secret key is passed on as it is, cached bytes and all.

**Coherence.** Each process keeps the definitions in memory (:class:`Definitions`),
re-read on NOTIFY ``tierset_key_definitions`` while its listener is connected, and on
every call while it is not (or when there is no listener). Writes never trust that copy
blindly (see above); reads may mask by a copy as stale as one notification's delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar

import jsonschema
import referencing
import referencing.jsonschema
from jsonschema.exceptions import best_match

from tierset.core import errors
from tierset.core.authz import Permission, Principal
from tierset.core.reasons import Reason
from tierset.core.values import Level, SettingType, parse_json_text
from tierset.store.database import Explanation, LevelEntry, Resolution, StoredSetting
from tierset.store.definitions import CHANNEL, DefinitionRow, DefinitionStore
from tierset.store.keytypes import OWNER_METADATA, DefinitionsChanged, type_mismatch
from tierset.store.listener import Listener
from tierset.store.revisions import Change

T = TypeVar("T")

MAX_DESCRIPTION_CHARS = 1000
MAX_SCHEMA_BYTES = 64 * 1024
# Offending scopes named in a refused definition's message (all are counted).
MAX_OFFENDERS_SHOWN = 20
# How often a write re-checks after the definitions changed under it.
_DEFINITION_RETRIES = 5
_ALL_LEVELS = (Level.GLOBAL, Level.ACCOUNT, Level.RETAILER)
# No remote `$ref` is ever fetched: an empty registry resolves nothing outside the schema.
_NO_RETRIEVAL: referencing.Registry[Any] = referencing.Registry()
_SCHEMA_URI = "urn:tierset:value-schema"


def _refs(node: Any) -> Iterable[str]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for keyword in ("$ref", "$dynamicRef"):
                ref = item.get(keyword)
                if isinstance(ref, str):
                    yield ref
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def compile_schema(
    text: str, field_path: str = "definition.value_schema"
) -> jsonschema.Draft202012Validator:
    """A Draft 2020-12 validator for schema `text`, or INVALID_ARGUMENT naming what is wrong."""
    # Strictly, as a JSON value is (size, depth, nothing PostgreSQL's jsonb cannot store).
    parse_json_text(text, "value_schema", field_path, MAX_SCHEMA_BYTES)
    schema = json.loads(text)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise errors.bad_field(
            field_path,
            f"not a valid JSON Schema (Draft 2020-12): at {error.json_path}, "
            f"{errors.clip(error.message, 200)}",
        ) from None
    resolver = _NO_RETRIEVAL.with_resource(
        _SCHEMA_URI, referencing.jsonschema.DRAFT202012.create_resource(schema)
    ).resolver(base_uri=_SCHEMA_URI)
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise errors.bad_field(
                field_path, f"$ref {errors.clip(ref, 80)!r} is not local: only '#...' refs"
            )
        try:
            resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            raise errors.bad_field(
                field_path, f"$ref {errors.clip(ref, 80)!r} points at nothing in the schema"
            ) from None
    validator = jsonschema.Draft202012Validator(schema, registry=_NO_RETRIEVAL)
    samples: tuple[Any, ...] = (None, True, 0, "", [], {})
    try:
        # A schema that refers to itself without end ({"$ref": "#"}) fails every value by
        # recursion: refused here, where a sample of each kind of value finds it.
        for sample in samples:
            next(validator.iter_errors(sample), None)
    except RecursionError:
        raise errors.bad_field(field_path, "the schema refers to itself without end") from None
    except Exception:  # jsonschema's own failures (an unresolvable reference, ...)
        raise errors.bad_field(field_path, "the schema cannot check values") from None
    return validator


@dataclass(frozen=True)
class KeyDefinition:
    """A key's definition, with its schema compiled once."""

    row: DefinitionRow

    @property
    def key(self) -> str:
        return self.row.key

    @cached_property
    def validator(self) -> jsonschema.Draft202012Validator | None:
        return None if self.row.value_schema is None else compile_schema(self.row.value_schema)

    def schema_failure(self, value_json: str) -> str | None:
        """Why `value_json` fails the schema ('$.limits[2]: ...'), or None when it passes.
        A secret key's value is never quoted."""
        validator = self.validator
        if validator is None:
            return None
        try:
            failure = best_match(validator.iter_errors(json.loads(value_json)))
        except Exception:
            # Not the value's fault (a reference the schema cannot follow for this value,
            # recursion): refused all the same, as it cannot be shown to pass.
            return "$: the schema cannot check this value"
        if failure is None:
            return None
        detail = (
            f"fails '{failure.validator}'" if self.row.secret else errors.clip(failure.message, 200)
        )
        return f"{failure.json_path}: {detail}"

    def failure(self, level: Level, setting_type: SettingType, value_json: str) -> str | None:
        """What is wrong with a value of this key at `level`, for a definition's list of
        offenders; None when nothing is."""
        if setting_type is not self.row.type:
            return f"{setting_type.value}, not {self.row.type.value}"
        if level not in self.row.allowed_levels:
            return f"{level.value} is not an allowed level"
        return self.schema_failure(value_json)


@dataclass(frozen=True)
class KeyRules:
    """The definitions as of `version`: what :meth:`check_write` checks every put against
    (store.database.WriteRules)."""

    version: int
    definitions: dict[str, KeyDefinition] = field(default_factory=dict)

    @cached_property
    def secret_keys(self) -> frozenset[str]:
        return frozenset(k for k, d in self.definitions.items() if d.row.secret)

    def check_write(
        self, level: Level, key: str, setting_type: SettingType, value_json: str
    ) -> None:
        """Raises the refusal of a put of `key` at `level`, if its definition refuses it."""
        definition = self.definitions.get(key)
        if definition is None:
            return
        row = definition.row
        if setting_type is not row.type:
            raise type_mismatch(key, setting_type, row.type, "its definition")
        if level not in row.allowed_levels:
            allowed = ", ".join(lv.value for lv in row.allowed_levels)
            raise errors.failed_precondition(
                f"{key} may not be set at {level.value} level; its definition allows {allowed}",
                Reason.LEVEL_NOT_ALLOWED,
                key=key,
                level=level.value,
                allowed_levels=allowed,
            )
        failure = definition.schema_failure(value_json)
        if failure is not None:
            raise errors.bad_field(
                "value",
                f"{key}: the value does not match its schema at {failure}",
                Reason.SCHEMA_VIOLATION,
            )


class Definitions:
    """The process's copy of the key definitions (see the module docstring)."""

    def __init__(self, store: DefinitionStore) -> None:
        self.store = store
        self._rules: KeyRules | None = None
        # Trusted only while the listener is connected: notifications then say when to reload.
        self._trusted = False
        self._loading: asyncio.Future[KeyRules] | None = None
        # Bumped by every forget: a read begun before it may predate the change it announces.
        self._generation = 0

    async def follow(self, listener: Listener) -> None:
        """Reloads on every definition change another process (or this one) makes."""

        def connected() -> None:
            self.forget()  # what changed while no one listened is read again
            self._trusted = True

        def disconnected() -> None:
            self.forget()
            self._trusted = False

        await listener.subscribe(
            CHANNEL, lambda _: self.forget(), on_connected=connected, on_disconnected=disconnected
        )

    def forget(self) -> None:
        """The next call reads the definitions again."""
        self._rules = None
        self._generation += 1

    async def current(self) -> KeyRules:
        """The definitions as this process knows them (read again when not known)."""
        rules = self._rules
        if rules is not None and self._trusted:
            return rules
        # One read at a time: concurrent callers share it.
        if self._loading is None:
            generation = self._generation
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(lambda done: self._loaded(done, generation))
        return await asyncio.shield(self._loading)

    def _loaded(self, future: asyncio.Future[KeyRules], generation: int) -> None:
        self._loading = None
        # Kept only if nothing was forgotten while it was read (else the next call reads).
        if not future.cancelled() and future.exception() is None and generation == self._generation:
            self._rules = future.result()

    async def _load(self) -> KeyRules:
        version, rows = await self.store.all()
        return KeyRules(version, {row.key: KeyDefinition(row) for row in rows})

    async def checked(self, write: Callable[[KeyRules], Awaitable[T]]) -> T:
        """Runs `write` with the current rules: it checks each put with
        ``rules.check_write`` and passes ``rules.version`` to the store. When the store
        says the definitions changed meanwhile (DefinitionsChanged), reads them again
        and runs `write` again."""
        for _ in range(_DEFINITION_RETRIES):
            rules = await self.current()
            try:
                return await write(rules)
            except DefinitionsChanged:
                self.forget()
        raise errors.aborted(
            "the key definitions kept changing while the write was checked; retry",
            Reason.WRITE_CONTENDED,
        )


@contextlib.contextmanager
def type_errors_for(principal: Principal) -> Iterator[None]:
    """Lets a TYPE_MISMATCH through as `principal` may see it: a caller confined to its
    account is not told which other account holds the key ("in another account")."""
    try:
        yield
    except errors.TiersetError as error:
        if error.reason is Reason.TYPE_MISMATCH:
            owner = error.metadata.pop(OWNER_METADATA, None)
            if (
                owner is not None
                and not principal.acts_on_any_account
                and owner != str(principal.account_id)
            ):
                key, existing = error.metadata["key"], error.metadata["existing_type"]
                error.metadata["where"] = "another account"
                # A changeset's failing change keeps its place (errors.at_index).
                index = error.metadata.get("index")
                error.message = (f"changes[{index}]: " if index is not None else "") + (
                    f"{key} is {existing} in another account; a key has one type at every"
                    " level, so it cannot be written as another type"
                )
        raise


# -- masking ---------------------------------------------------------------------------


def may_see_secrets(principal: Principal) -> bool:
    """Whether `principal` sees secret values (ADMIN, PLATFORM; never VIEWER)."""
    return Permission.SECRETS_VIEW in principal.permissions


def mask_setting(setting: StoredSetting) -> StoredSetting:
    """The setting without its value."""
    return dataclasses.replace(setting, value="null", masked=True)


@dataclass(frozen=True)
class Masking:
    """The secret keys a caller may not see (empty: the caller sees everything), by the
    definitions of `version`."""

    hidden: frozenset[str]
    version: int = 0

    def __bool__(self) -> bool:
        return bool(self.hidden)

    def setting(self, setting: StoredSetting) -> StoredSetting:
        return mask_setting(setting) if setting.key in self.hidden else setting

    def settings(self, settings: Iterable[StoredSetting]) -> list[StoredSetting]:
        return [self.setting(s) for s in settings]

    def resolution(self, resolution: Resolution) -> Resolution:
        """`resolution` itself when it holds no hidden key, else a masked copy, built once
        per resolution (a cached one is answered many times)."""
        if not self.hidden or not any(s.key in self.hidden for s in resolution.settings):
            return resolution
        memo = f"masked@{self.version}"
        masked: Resolution | None = resolution.renderings.get(memo)
        if masked is None:
            masked = dataclasses.replace(
                resolution, settings=self.settings(resolution.settings), renderings={}
            )
            resolution.renderings[memo] = masked
        return masked

    def explanation(self, explanation: Explanation) -> Explanation:
        if explanation.key not in self.hidden:
            return explanation
        return dataclasses.replace(
            explanation,
            levels=[
                LevelEntry(mask_setting(e.setting), e.last_change_time, e.actor, e.reason)
                for e in explanation.levels
            ],
        )

    def change(self, change: Change) -> Change:
        if change.key not in self.hidden:
            return change
        return dataclasses.replace(
            change,
            old_value=None if change.old_value is None else "null",
            new_value=None if change.new_value is None else "null",
            masked=True,
        )


NO_MASKING = Masking(frozenset())


async def masking_for(principal: Principal, definitions: Definitions) -> Masking:
    """What `principal` may not see, by the current definitions."""
    if may_see_secrets(principal):
        return NO_MASKING
    rules = await definitions.current()
    return Masking(rules.secret_keys, rules.version)
