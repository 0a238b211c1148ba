"""Delete, list, explain, reads at a revision, restore and compaction, at the store level.

Matrices over every combination of the three levels, against the session's PostgreSQL
(compaction against a database of its own: it would cut the session's history).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tierset.core.errors import Code, TiersetError
from tierset.core.values import Level, SettingType
from tierset.store.database import ScopeRef, Store
from tierset.store.migrate import migrate
from tierset.store.revisions import Actor

LEVELS = (Level.GLOBAL, Level.ACCOUNT, Level.RETAILER)
# Every non-empty set of levels holding a key.
COMBINATIONS = [frozenset(c) for n in (1, 2, 3) for c in itertools.combinations(LEVELS, n)]


def _name(levels) -> str:
    return "+".join(level for level in LEVELS if level in levels)


@pytest.fixture
def store(db) -> Store:
    return Store(db)


class Tree:
    """An account with one retailer, and where each level writes."""

    def __init__(self, account: int, retailer: int) -> None:
        self.account = ScopeRef(Level.ACCOUNT, account)
        self.retailer = ScopeRef(Level.RETAILER, retailer)

    def at(self, level: Level) -> ScopeRef | None:
        return {Level.GLOBAL: None, Level.ACCOUNT: self.account, Level.RETAILER: self.retailer}[
            level
        ]


@pytest.fixture
async def tree(store, next_id) -> Tree:
    account = await store.create_account(next_id(), "history")
    retailer = await store.create_retailer(next_id(), account.id, "history")
    return Tree(account.id, retailer.id)


def _value(level: Level) -> str:
    return f'"{level.lower()}"'


async def _put_at(store: Store, tree: Tree, key: str, levels) -> None:
    for level in levels:
        await store.write(tree.at(level), key, SettingType.STRING, _value(level))


@pytest.mark.parametrize("levels", COMBINATIONS, ids=_name)
async def test_deleting_a_level_makes_the_key_inherit_from_the_next(
    store, tree, unique_key, levels
):
    for deleted in sorted(levels, key=LEVELS.index):
        key = unique_key("DEL")
        await _put_at(store, tree, key, levels)
        result = await store.delete(tree.at(deleted), key, reason="inherit")
        remaining = [lv for lv in LEVELS if lv in levels and lv != deleted]
        for scope, allowed in ((tree.retailer, LEVELS), (tree.account, LEVELS[:2])):
            visible = [lv for lv in remaining if lv in allowed]
            found = (await store.resolve(scope, [key])).settings
            assert [s.value for s in found] == [_value(lv) for lv in visible[-1:]]
        if deleted is Level.GLOBAL:
            assert result.effective is None
        else:
            scope_levels = LEVELS if deleted is Level.RETAILER else LEVELS[:2]
            below = [lv for lv in remaining if lv in scope_levels]
            expected = _value(below[-1]) if below else None
            assert (result.effective and result.effective.value) == expected
        with pytest.raises(TiersetError) as again:
            await store.delete(tree.at(deleted), key)
        assert again.value.code == Code.NOT_FOUND
        assert again.value.reason == "SETTING_NOT_FOUND"


@pytest.mark.parametrize("levels", COMBINATIONS, ids=_name)
async def test_explain_lists_every_level_the_winner_first(store, tree, unique_key, levels):
    key, unset = unique_key("EXP"), unique_key("EXP")
    actor = Actor(3, "carol", "API_TOKEN", 30, "rq")
    for level in levels:
        await store.write(
            tree.at(level),
            key,
            SettingType.STRING,
            _value(level),
            actor=actor,
            reason=f"set {level}",
        )
    revision, (explained, nothing) = await store.explain(tree.retailer, [key, unset])
    assert revision == (await store.current_revision())[0]
    expected = [lv for lv in reversed(LEVELS) if lv in levels]
    assert [e.setting.level for e in explained.levels] == expected
    assert explained.winner is expected[0]
    assert [e.setting.value for e in explained.levels] == [_value(lv) for lv in expected]
    assert {e.actor for e in explained.levels} == {actor}
    assert [e.reason for e in explained.levels] == [f"set {lv}" for lv in expected]
    assert all(e.setting.mod_revision <= revision for e in explained.levels)
    assert nothing.levels == [] and nothing.winner is None


async def test_list_by_prefix_effective_and_level_only(store, tree, unique_key):
    prefix = unique_key("LST") + "."
    await store.write(None, prefix + "A", SettingType.STRING, '"g"')
    await store.write(None, prefix + "B", SettingType.STRING, '"g"')
    await store.write(tree.account, prefix + "B", SettingType.STRING, '"a"')
    await store.write(tree.retailer, prefix + "C", SettingType.STRING, '"r"')
    await store.write(tree.retailer, prefix[:-1] + "X", SettingType.STRING, '"outside"')

    def listed(page):
        return [(s.key.removeprefix(prefix), s.level, s.value) for s in page.settings]

    page = await store.list_settings(tree.retailer, prefix)
    assert listed(page) == [
        ("A", Level.GLOBAL, '"g"'),
        ("B", Level.ACCOUNT, '"a"'),
        ("C", Level.RETAILER, '"r"'),
    ]
    assert page.last_key is None
    assert listed(await store.list_settings(tree.retailer, prefix, level_only=True)) == [
        ("C", Level.RETAILER, '"r"')
    ]
    assert listed(await store.list_settings(tree.account, prefix, level_only=True)) == [
        ("B", Level.ACCOUNT, '"a"')
    ]
    assert listed(await store.list_settings(None, prefix, level_only=True)) == [
        ("A", Level.GLOBAL, '"g"'),
        ("B", Level.GLOBAL, '"g"'),
    ]
    with pytest.raises(TiersetError) as unknown:
        await store.list_settings(ScopeRef(Level.RETAILER, 987_654_321), prefix)
    assert unknown.value.code == Code.NOT_FOUND


async def test_pages_under_concurrent_writes_skip_and_repeat_nothing(store, tree, unique_key):
    prefix = unique_key("PAGE") + "."
    steady = [f"{prefix}{n:03d}" for n in range(0, 120, 2)]
    for key in steady:
        await store.write(tree.account, key, SettingType.INTEGER, "0")
    stop = asyncio.Event()

    async def churn() -> None:
        rng = random.Random(1)
        while not stop.is_set():
            key = f"{prefix}{rng.randrange(1, 120, 2):03d}"  # odd keys come and go
            if rng.random() < 0.5:
                await store.write(tree.account, key, SettingType.INTEGER, "1")
            else:
                with contextlib.suppress(TiersetError):  # already gone
                    await store.delete(tree.account, key)
            await store.write(tree.account, rng.choice(steady), SettingType.INTEGER, "2")

    churning = asyncio.create_task(churn())
    try:
        seen, after, revisions = [], "", []
        while True:
            page = await store.list_settings(tree.retailer, prefix, page_size=7, after_key=after)
            seen.extend(s.key for s in page.settings)
            revisions.append(page.revision)
            if page.last_key is None:
                break
            after = page.last_key
            await asyncio.sleep(0)
    finally:
        stop.set()
        await churning
    assert len(seen) == len(set(seen)), "a key listed twice"
    assert seen == sorted(seen)
    assert set(steady) <= set(seen), "a key that existed throughout was skipped"
    assert revisions == sorted(revisions)


@pytest.mark.parametrize("token", ["", "not base64!", "eyJ4IjoxfQ"])
async def test_a_bad_page_token_is_invalid_argument(token):
    from tierset.store.revisions import decode_token, encode_token

    assert decode_token("settings", encode_token("settings", ["K"]), (str,)) == ["K"]
    with pytest.raises(TiersetError) as bad:
        decode_token("settings", token, (str,))
    assert bad.value.code == Code.INVALID_ARGUMENT
    assert bad.value.violations[0].field == "page_token"


def _effective(model: dict, key: str, levels) -> tuple[Level, str] | None:
    for level in reversed(LEVELS):
        if level in levels and (level, key) in model:
            return level, model[(level, key)]
    return None


async def test_reads_at_a_revision_equal_a_replay_of_the_log(store, tree, unique_key):
    prefix = unique_key("AT") + "."
    keys = [prefix + k for k in "ABC"]
    rng = random.Random(12)
    model: dict[tuple[Level, str], str] = {}
    snapshots: list[tuple[int, dict]] = [((await store.current_revision())[0], {})]
    for step in range(40):
        level, key = rng.choice(LEVELS), rng.choice(keys)
        if (level, key) in model and rng.random() < 0.4:
            result = await store.delete(tree.at(level), key)
            del model[(level, key)]
        else:
            model[(level, key)] = f'"{step}"'
            result = await store.write(tree.at(level), key, SettingType.STRING, f'"{step}"')
        snapshots.append((result.revision, dict(model)))

    for revision, state in snapshots:
        for scope, levels in ((tree.retailer, LEVELS), (tree.account, LEVELS[:2])):
            want = {k: _effective(state, k, levels) for k in keys}
            want = {k: v for k, v in want.items() if v is not None}
            got = await store.resolve_at(scope, keys, revision)
            assert {s.key: (s.level, s.value) for s in got.settings} == want
            listed = await store.list_settings(scope, prefix, at_revision=revision)
            assert {s.key: (s.level, s.value) for s in listed.settings} == want
            assert listed.revision == revision
            only = await store.list_settings(scope, prefix, level_only=True, at_revision=revision)
            assert {s.key: s.value for s in only.settings} == {
                k: v for (lv, k), v in state.items() if lv is scope.level
            }
    current = snapshots[-1][0]
    with pytest.raises(TiersetError) as future:
        await store.resolve_at(tree.retailer, keys, current + 10**9)
    assert (future.value.code, future.value.reason) == (
        Code.OUT_OF_RANGE,
        "FUTURE_REVISION",
    )


@pytest.mark.parametrize("level", LEVELS, ids=str)
async def test_restore_round_trip_is_one_revision_and_logged(store, tree, unique_key, level):
    scope = tree.at(level)
    kept, changed, deleted, added = (unique_key("RST") for _ in range(4))
    for key in (kept, changed, deleted):
        await store.write(scope, key, SettingType.STRING, '"before"')
    mark = (await store.current_revision())[0]
    await store.write(scope, changed, SettingType.INTEGER, "5")
    await store.delete(scope, deleted)
    await store.write(scope, added, SettingType.STRING, '"new"')
    keys = [kept, changed, deleted, added]
    actor = Actor(9, "dave", "API_TOKEN", 90, "rr")

    result = await store.restore(scope, keys, mark, actor, "oops")
    assert sorted(result.changed) == sorted([changed, deleted, added])
    assert result.revision == (await store.current_revision())[0]
    at_mark = await store.list_settings(scope, "", level_only=True, at_revision=mark)
    now = await store.list_settings(scope, "", level_only=True)
    wanted = {s.key: (s.type, s.value) for s in at_mark.settings if s.key in keys}
    assert {s.key: (s.type, s.value) for s in now.settings if s.key in keys} == wanted
    log = (await store.changes(min_revision=result.revision)).changes
    assert {c.revision for c in log} == {result.revision}
    assert sorted(c.seq for c in log) == [0, 1, 2]
    assert {c.reason for c in log} == {f"restore to revision {mark}: oops"}
    assert {c.actor for c in log} == {actor}
    assert {c.key: c.operation for c in log} == {changed: "PUT", deleted: "PUT", added: "DELETE"}

    again = await store.restore(scope, keys, mark, actor)
    assert (again.revision, again.changed) == (None, [])
    assert (await store.current_revision())[0] == result.revision


async def test_changes_filters_scope_visibility_and_order(store, tree, next_id, unique_key):
    other = ScopeRef(Level.ACCOUNT, (await store.create_account(next_id(), "other")).id)
    key = unique_key("CHG")
    mine = [
        await store.write(tree.account, key, SettingType.STRING, '"a"', actor=Actor(1)),
        await store.write(tree.retailer, key, SettingType.STRING, '"r"', actor=Actor(2)),
        await store.write(None, key, SettingType.STRING, '"g"', actor=Actor(1)),
        await store.write(other, key, SettingType.STRING, '"o"', actor=Actor(1)),
    ]
    revisions = [w.revision for w in mine]

    async def listed(**filters) -> list[int]:
        found, after = [], None
        while True:
            page = await store.changes(key=key, page_size=1, after=after, **filters)
            found.extend(c.revision for c in page.changes)
            if page.last is None:
                return found
            after = page.last

    assert await listed() == revisions
    assert await listed(newest_first=True) == revisions[::-1]
    assert await listed(scope=tree.account) == revisions[:2]
    assert await listed(scope=tree.retailer) == revisions[1:2]
    assert await listed(global_only=True) == revisions[2:3]
    assert await listed(visible_to=tree.account.id) == revisions[:3]
    assert await listed(actor_user_id=2) == revisions[1:2]
    assert await listed(min_revision=revisions[1], max_revision=revisions[2]) == revisions[1:3]
    assert await listed(key_prefix=key[:-2]) == revisions
    late = datetime.now(UTC) + timedelta(days=1)
    assert await listed(min_time=late) == []


async def test_compaction_cuts_the_log_at_a_revision_boundary(create_database):
    dsn = await create_database()
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=3)
    try:
        store = Store(pool)
        scope = ScopeRef(Level.ACCOUNT, (await store.create_account(None, "c")).id)
        for n in range(3):
            await store.write(scope, "CMP.KEY", SettingType.INTEGER, str(n))
        await pool.execute("UPDATE change_log SET change_time = now() - interval '10 days'")
        for n in range(3, 5):
            await store.write(scope, "CMP.KEY", SettingType.INTEGER, str(n))

        assert await store.compact(datetime.now(UTC) - timedelta(days=5)) == 3
        assert await store.compact(datetime.now(UTC) - timedelta(days=5)) == 3  # idempotent

        assert [c.revision for c in (await store.changes()).changes] == [4, 5]
        assert [c.revision for c in (await store.changes(min_revision=4)).changes] == [4, 5]
        for call in (
            store.changes(min_revision=3),
            store.changes(after=(2, 0)),
            store.resolve_at(scope, ["CMP.KEY"], 2),
            store.list_settings(scope, at_revision=2),
            store.restore(scope, ["CMP.KEY"], 2),
        ):
            with pytest.raises(TiersetError) as compacted:
                await call
            assert compacted.value.code == Code.FAILED_PRECONDITION
            assert compacted.value.reason == "REVISION_COMPACTED"
            assert compacted.value.metadata["compacted_revision"] == "3"
        # At the compacted revision itself the state is still known: the log after it.
        assert [s.value for s in (await store.resolve_at(scope, ["CMP.KEY"], 3)).settings] == ["2"]

        # One compaction at a time: while one holds the lock, another skips its turn.
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("SELECT pg_advisory_xact_lock(x'7469657273657403'::bigint)")
            assert await store.compact(datetime.now(UTC)) is None
        assert await store.compact(datetime.now(UTC) + timedelta(days=1)) == 5
        assert (await store.changes()).changes == []
    finally:
        await pool.close()
