"""The targets `make bench` judges, each one row of one table: met, MISSED, or reported.

A target is a `Target`: a name, a rule (`at least` or `below` a limit, or `reported`,
which has no limit), the unit its figure is printed in, and a small `measure` function
that reads the run's findings (`Findings`, everything bench/run.py measured) and returns
the judged figure with the text shown beside it (`Measured`). `Target.judge` turns that
into a `Row`; `judge_all` does it for every target in `TARGETS`.

The invariants the tests (tests/test_bench_guards.py) hold:

* a figure the run did not measure (`--only` left its workload out) is ``not measured
  (--only)``, never a miss and never a pass;
* an ``at least`` figure under its limit, or a ``below`` figure at or over it, is MISSED;
* a ``reported`` target never says met or missed, whatever its figures;
* measure functions are pure: they read `Findings` and nothing else.

The limits are issue 16's (and the earlier issues' still in force); "flat" for history
reads and data size is `FLAT`, see docs/performance.md for why 0.8.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MET, MISSED, NOT_MEASURED, REPORTED = "met", "MISSED", "not measured (--only)", "reported"

CACHED = 0.9  # cached GetSettings / the bare server, same requests (issue 16; 0.8 in issue 11)
UNCACHED = 0.5  # uncached GetSettings / the bare server
REST = 0.75  # REST GET / cached gRPC GetSettings
VIEW = 100.0  # the client view's reads / etcd's Range
WRITES = 0.5  # a write with its change log / the same statements from bare asyncpg
FANOUT_MS = 100.0  # p99 commit -> receipt at 1,000 watchers
FLAT = 0.8  # a 1M-row read's rate / the same read's at 10k rows (±15 % noise each side)
SCHEMA = 0.20  # what a JSON Schema check may add to a put
TOTAL_SECONDS = 600.0  # `make bench` from start to its report

# Workload names, as bench/run.py's `workloads()` makes them.
LEVELS = ("account", "retailer")
KEYS = (1, 10)


def keys_label(keys: int) -> str:
    return f"{keys} key{'s' if keys > 1 else ''}"


def cached_name(keys: int, level: str) -> str:
    return f"GetSettings {keys_label(keys)} {level}, cached"


def uncached_name(keys: int, level: str) -> str:
    return f"GetSettings {keys_label(keys)} {level}, uncached"


def bare_name(keys: int, level: str, same_request: bool = False) -> str:
    """The bare server answering `level`'s `keys`-key response; `same_request`: sent
    tierset's request exactly, its credential header included (what the ratios use)."""
    where = "" if level == "retailer" else f" {level}"
    return f"bare gRPC, {keys}-key{where} response" + (", same request" if same_request else "")


def rest_name(keys: int) -> str:
    return f"REST GET {keys_label(keys)} retailer"


def scaled_name(processes: int, cached: bool) -> str:
    return (
        f"GetSettings 1 key retailer, {'cached' if cached else 'uncached'}, {processes} processes"
    )


RAW_PUT = "raw SQL upsert + log + counter"
RAW_DELETE = "raw SQL delete + log + counter + inherited read"
FLAT_PAIRS = (
    # (what, the workload at 1M, the same at 10k)
    (
        "ListChanges (a page of 100)",
        "ListChanges 100 of an account, 1M log rows",
        "ListChanges 100 of an account, 10k log rows",
        "log rows",
    ),
    (
        "GetSettings at_revision (10 keys)",
        "GetSettings 10 keys at_revision, 1M log rows",
        "GetSettings 10 keys at_revision, 10k log rows",
        "log rows",
    ),
    (
        "GetSettings uncached (10 keys)",
        "GetSettings 10 keys retailer, uncached, 1M settings",
        "GetSettings 10 keys retailer, uncached, 10k settings",
        "settings",
    ),
)


def scaling_sizes(cores: int) -> list[int]:
    """The process counts the scaling step runs besides 1: doubling from 2 up to `cores`,
    and `cores` itself (on 2 cores just 2; on 12: 2, 4, 8, 12). Doubling, not every N,
    so the step's time grows with the log of the machine's size."""
    sizes, n = [], 2
    while n < cores:
        sizes.append(n)
        n *= 2
    return [*sizes, cores] if cores >= 2 else []


@dataclass(frozen=True)
class Findings:
    """Everything one run measured, as bench/run.py collected it (empty when not run)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # the workload table
    cached_vs_bare: dict[str, Any] = field(default_factory=dict)  # the interleaved rounds
    fanout: list[dict[str, Any]] = field(default_factory=list)
    changesets: dict[str, Any] = field(default_factory=dict)
    schema_cost: dict[str, Any] = field(default_factory=dict)
    client_view: dict[str, Any] = field(default_factory=dict)
    cores: int = 1
    elapsed_seconds: float = 0.0
    # `--only` was given: the run's total time is not the whole bench's.
    partial: bool = False


@dataclass(frozen=True)
class Measured:
    """A target's figure: `value` is what the rule judges (None: not judged), `text`
    what the table shows, `figures` the numbers behind it (for results/latest.json)."""

    value: float | None
    text: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    """One line of the targets table, as printed and as written to latest.json."""

    target: str
    measured: str
    threshold: str
    verdict: str
    value: float | None = None
    limit: float | None = None
    rule: str = ""
    unit: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def verdict(rule: str, value: float | None, limit: float | None) -> str:
    """`at least`: met when value >= limit; `below`: met when value < limit."""
    if rule == "reported":
        return REPORTED
    if value is None or limit is None:
        return NOT_MEASURED
    met = value >= limit if rule == "at least" else value < limit
    return MET if met else MISSED


@dataclass(frozen=True)
class Target:
    name: str
    rule: str  # "at least", "below" or "reported"
    limit: float | None
    unit: str  # how the limit prints: "x", " ms", " s", " %"
    measure: Callable[[Findings], Measured | None]

    def threshold(self) -> str:
        if self.limit is None:
            return "reported"
        shown = f"{100 * self.limit:.0f}" if self.unit == " %" else f"{self.limit:g}"
        return f"{'>=' if self.rule == 'at least' else '<'} {shown}{self.unit}"

    def judge(self, findings: Findings) -> Row:
        found = self.measure(findings)
        if found is None:
            return Row(
                self.name,
                "",
                self.threshold(),
                NOT_MEASURED,
                None,
                self.limit,
                self.rule,
                self.unit,
            )
        return Row(
            self.name,
            found.text,
            self.threshold(),
            verdict(self.rule, found.value, self.limit),
            found.value,
            self.limit,
            self.rule,
            self.unit,
            found.figures,
        )


def rps(findings: Findings, name: str) -> float | None:
    """A workload's rate, None when it did not run (or answered nothing)."""
    found = findings.results.get(name)
    return found["rps"] if found and found.get("rps") else None


def _x(value: float) -> str:
    return f"{value:.2f}x"


def ratio_of(findings: Findings, name: str, baseline: str) -> Measured | None:
    """`name`'s rate over `baseline`'s, both from the workload table."""
    mine, theirs = rps(findings, name), rps(findings, baseline)
    if mine is None or theirs is None:
        return None
    value = mine / theirs
    return Measured(
        value, f"{_x(value)} ({mine:,.0f}/s vs {theirs:,.0f}/s)", {"rps": mine, "baseline": theirs}
    )


# --- the measure functions, one per kind of target --------------------------------------


def cached_vs_bare(keys: int, level: str) -> Callable[[Findings], Measured | None]:
    def measure(findings: Findings) -> Measured | None:
        found = findings.cached_vs_bare.get(cached_name(keys, level))
        if not found:
            return None
        return Measured(
            found["ratio"],
            f"{_x(found['ratio'])} ({found['rps']:,.0f}/s vs {found['bare_rps']:,.0f}/s, same"
            f" request); bare sent no header {_x(found['ratio_to_bare_no_header'])}",
            {key: found[key] for key in ("rps", "bare_rps", "ratio", "ratio_to_bare_no_header")},
        )

    return measure


def uncached_vs_bare(findings: Findings) -> Measured | None:
    """The worst of the four uncached reads against the bare server sent the same
    requests (the interleaved rounds' figure for it)."""
    ratios = {
        f"{keys}k {level[:3]}.": found.value
        for level in LEVELS
        for keys in KEYS
        if (
            found := ratio_of(
                findings, uncached_name(keys, level), bare_name(keys, level, same_request=True)
            )
        )
    }
    if not ratios:
        return None
    worst = min(ratios.values())
    shown = ", ".join(f"{name} {_x(value)}" for name, value in ratios.items())
    return Measured(worst, f"worst {_x(worst)}: {shown}", {"ratios": ratios})


def rest_vs_grpc(keys: int) -> Callable[[Findings], Measured | None]:
    def measure(findings: Findings) -> Measured | None:
        found = ratio_of(findings, rest_name(keys), cached_name(keys, "retailer"))
        if found is None:
            return None
        wrk = findings.results[rest_name(keys)]["client_cpu_cores"]
        grpc_client = findings.results[cached_name(keys, "retailer")]["client_cpu_cores"]
        return Measured(
            found.value,
            f"{found.text}; load client CPU: wrk {wrk:.2f}, gRPC {grpc_client:.2f} cores",
            found.figures | {"wrk_cpu_cores": wrk, "grpc_client_cpu_cores": grpc_client},
        )

    return measure


def view_vs_etcd(findings: Findings) -> Measured | None:
    view = findings.client_view
    if not view or not view.get("vs_etcd_range"):
        return None
    return Measured(
        view["vs_etcd_range"],
        f"{view['vs_etcd_range']:,.0f}x ({view['read_ns']:.0f} ns per read,"
        f" {view['reads_per_second']:,.0f}/s)",
        {key: view[key] for key in ("read_ns", "reads_per_second", "vs_etcd_range")},
    )


def write_vs_raw(name: str, raw: str) -> Callable[[Findings], Measured | None]:
    return lambda findings: ratio_of(findings, name, raw)


def changeset_vs_raw(findings: Findings) -> Measured | None:
    found = findings.changesets
    if not found:
        return None
    return Measured(
        found["ratio_10"],
        f"{_x(found['ratio_10'])} ({found['tierset_per_second_10']:,.0f}/s vs"
        f" {found['sql_per_second_10']:,.0f}/s); 1,000 puts p50 {found['p50_ms_1000']:.0f} ms",
        {key: found[key] for key in ("ratio_10", "tierset_per_second_10", "sql_per_second_10")},
    )


def fanout(watchers: int) -> Callable[[Findings], Measured | None]:
    """p99 commit -> receipt; a stream that never received the write, or a size that ran
    out of time, makes the figure infinite (so it is a miss where it is judged)."""

    def measure(findings: Findings) -> Measured | None:
        found = next((f for f in findings.fanout if f["watchers"] == watchers), None)
        if found is None:
            return None
        if "error" in found:
            return Measured(math.inf, found["error"], found)
        if "p99_ms" not in found:
            return Measured(math.inf, "no stream received the write", found)
        text = (
            f"p99 {found['p99_ms']:.0f} ms, p50 {found['p50_ms']:.0f} ms;"
            f" {found['rss_per_watcher_kb']:.1f} KiB per watcher;"
            f" {found['received']:,}/{found['opened']:,} received"
        )
        if found["opened"] < watchers:
            text += f" ({watchers - found['opened']:,} not opened: {found['open_errors']})"
        missing = found["received"] < watchers
        return Measured(math.inf if missing else found["p99_ms"], text, found)

    return measure


def flat(large: str, small: str, rows: str) -> Callable[[Findings], Measured | None]:
    """A read's rate at 1M rows over the same read's at 10k. bench/run.py's `measure_flat`
    drives the two in paired rounds (back to back, the order alternating), and the figure
    is the median of the rounds' ratios: flatness is a property of the data's size, and a
    stall of the host or the database that lands on one round of one side (one run saw
    0.10x from a single sequential 5 s window, the runs around it 0.95x and 0.97x) says
    nothing about it. A size that slows every read slows every round. The rounds' ratios
    are shown beside the figure; without rounds, the ratio of the two rates."""

    def measure(findings: Findings) -> Measured | None:
        big, little = rps(findings, large), rps(findings, small)
        if big is None or little is None:
            return None
        mine = findings.results[large].get("rounds", [])
        theirs = findings.results[small].get("rounds", [])
        paired: list[float] = []
        if len(mine) == len(theirs):
            paired = [a / b for a, b in zip(mine, theirs, strict=True) if b]
        rates = f"{big:,.0f}/s at 1M {rows}, {little:,.0f}/s at 10k"
        figures = {"rps_1m": big, "rps_10k": little, "round_ratios": paired}
        if not paired:
            return Measured(big / little, f"{_x(big / little)} ({rates})", figures)
        value = statistics.median(paired)
        shown = ", ".join(f"{r:.2f}" for r in paired)
        return Measured(
            value, f"{_x(value)}, median of {len(paired)} rounds ({shown}); {rates}", figures
        )

    return measure


def scaled(processes: int) -> Callable[[Findings], Measured | None]:
    def measure(findings: Findings) -> Measured | None:
        parts = {
            label: found
            for label, cached in (("cached", True), ("uncached", False))
            if (found := ratio_of(findings, scaled_name(processes, cached), single(cached)))
        }
        if not parts:
            return None
        text = "; ".join(f"{label} {found.text}" for label, found in parts.items())
        return Measured(
            None,
            f"{text} (vs 1 process, {findings.cores} cores)",
            {label: found.figures for label, found in parts.items()} | {"cores": findings.cores},
        )

    return measure


def one_core(findings: Findings) -> Measured:
    return Measured(None, f"{findings.cores} core: no second process to run", {})


def single(cached: bool) -> str:
    return cached_name(1, "retailer") if cached else uncached_name(1, "retailer")


def schema_overhead(findings: Findings) -> Measured | None:
    found = findings.schema_cost
    if not found:
        return None
    sequential, concurrent = found["sequential"]["overhead"], found["concurrent"]["overhead"]
    return Measured(
        found["overhead"],
        f"worst {100 * found['overhead']:+.1f} %: one at a time {100 * sequential:+.1f} %,"
        f" {found['in_flight']} in flight {100 * concurrent:+.1f} %; the check alone"
        f" {found['check_us']:.0f} us",
        {"overhead": found["overhead"], "sequential": sequential, "concurrent": concurrent},
    )


def total_time(findings: Findings) -> Measured | None:
    seconds = findings.elapsed_seconds
    if findings.partial:
        return Measured(None, f"{seconds:.0f} s, a partial run", {"seconds": seconds})
    return Measured(seconds, f"{seconds:.0f} s ({seconds / 60:.1f} min)", {"seconds": seconds})


def targets(cores: int) -> list[Target]:
    """Every target, in the table's order; the scaling rows depend on the cores found."""
    made = [
        Target(
            f"cached GetSettings {keys_label(keys)} {level} vs bare gRPC",
            "at least",
            CACHED,
            "x",
            cached_vs_bare(keys, level),
        )
        for level in LEVELS
        for keys in KEYS
    ]
    made.append(
        Target("uncached GetSettings vs bare gRPC", "at least", UNCACHED, "x", uncached_vs_bare)
    )
    made += [
        Target(
            f"REST GET {keys_label(keys)} vs cached gRPC", "at least", REST, "x", rest_vs_grpc(keys)
        )
        for keys in KEYS
    ]
    made.append(Target("client view read vs etcd Range", "at least", VIEW, "x", view_vs_etcd))
    made += [
        Target(
            "PutSetting with log vs raw SQL",
            "at least",
            WRITES,
            "x",
            write_vs_raw("PutSetting with log", RAW_PUT),
        ),
        Target(
            "DeleteSetting vs raw SQL",
            "at least",
            WRITES,
            "x",
            write_vs_raw("DeleteSetting", RAW_DELETE),
        ),
        Target("ApplyChanges, 10 puts, vs raw SQL", "at least", WRITES, "x", changeset_vs_raw),
        Target("watch fan-out, 1,000 watchers, p99", "below", FANOUT_MS, " ms", fanout(1_000)),
        Target("watch fan-out, 10,000 watchers", "reported", None, "", fanout(10_000)),
    ]
    made += [
        Target(f"{what}: 1M vs 10k {rows}", "at least", FLAT, "x", flat(large, small, rows))
        for what, large, small, rows in FLAT_PAIRS
    ]
    made += [
        Target(f"{n} server processes vs 1", "reported", None, "", scaled(n))
        for n in scaling_sizes(cores)
    ] or [Target("server processes vs 1", "reported", None, "", one_core)]
    made += [
        Target("schema checking adds to a put", "below", SCHEMA, " %", schema_overhead),
        Target("make bench's own time", "below", TOTAL_SECONDS, " s", total_time),
    ]
    return made


def judge_all(findings: Findings) -> list[Row]:
    return [target.judge(findings) for target in targets(findings.cores)]
