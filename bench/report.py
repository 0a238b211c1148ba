"""`make bench`'s report: the workload table, the detail lines, and the targets table.

`publish` prints, in this order, the workload table (each workload's rate, latency, CPU
and its ratio to its baselines and to etcd), the detail lines of the steps that are not
workloads (propagation, the client view, per-call costs, fan-out, changesets, the schema
cost, the profiles, where the time went), and last the one table of every target with
its verdict (bench/targets.py judges them). It writes results/latest.json (the raw
results, the targets' rows and the tables as printed) and results/latest.png (the
workloads, and each judged ratio against its threshold).
"""

from __future__ import annotations

import json
import math
import textwrap
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import conditions
import targets
from targets import Findings, Row

ETCD = "etcd Range, 1 key"


def ratio(results: dict[str, dict[str, Any]], name: str, other: str) -> str:
    if other not in results or not results[other]["rps"]:
        return ""
    return f"{results[name]['rps'] / results[other]['rps']:.2f}x {short(other)}"


def short(name: str) -> str:
    return (
        name.replace("GetSettings ", "")
        .replace("bare gRPC, ", "bare ")
        .replace(" response", "")
        .replace("retailer", "ret.")
    )


def workload_table(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'workload':<55} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'srv cpu':>7}"
        f" {'cli cpu':>7} {'steal':>5} {'iowait':>6}  vs baseline / vs etcd"
    ]
    for name, r in results.items():
        compared = [ratio(results, name, b) for b in r["baselines"]]
        if r["kind"] == "tierset":
            compared.append(ratio(results, name, ETCD))
        errors = f"  ERRORS {r['errors']}" if r["errors"] else ""
        host = r.get("host", {})
        lines.append(
            f"{name:<55} {r['rps']:>8.0f} {r['p50_ms']:>7.2f} {r['p99_ms']:>7.2f}"
            f" {r.get('server_cpu_cores', 0):>7.2f} {r['client_cpu_cores']:>7.2f}"
            f" {host.get('steal', 0):>5.0%} {host.get('iowait', 0):>6.0%}  "
            + ", ".join(c for c in compared if c)
            + errors
        )
    return lines


def database_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    """Where PostgreSQL's backends were during each workload that kept them busy (a
    sampling profile of the database side, bench/conditions.py)."""
    lines = []
    for name, r in results.items():
        pg = r.get("pg", {})
        if pg.get("active_backends", 0) >= BUSY_BACKENDS:
            lines.append(f"  {name}: {conditions.summary(r)}")
    if lines:
        lines.insert(0, "PostgreSQL during each workload (pg_stat_activity every 100 ms):")
    return lines


# A workload whose database side averaged fewer active backends than this is not
# waiting on PostgreSQL; its profile would be a handful of looks.
BUSY_BACKENDS = 0.5


def fanout_line(found: dict[str, Any]) -> str:
    """One line per size (the verdict is in the targets table)."""
    n = found["watchers"]
    if "error" in found:
        return f"watch fan-out, {n:,} watchers: not measured, {found['error']}"
    if "p99_ms" not in found:
        return f"watch fan-out, {n:,} watchers: no stream received the write ({found})"
    line = (
        f"watch fan-out, {n:,} watchers ({found['opened']:,} opened in"
        f" {found['open_seconds']:.0f}s, {found['received']:,} received):"
        f" commit -> receipt min {found['min_ms']:.1f} ms, p50 {found['p50_ms']:.1f} ms,"
        f" p99 {found['p99_ms']:.1f} ms,"
        f" max {found['max_ms']:.1f} ms; server RSS {found['server_rss_before_mb']:.0f} ->"
        f" {found['server_rss_with_watchers_mb']:.0f} MB,"
        f" {found['rss_per_watcher_kb']:.1f} KiB per watcher"
    )
    if found["open_errors"]:
        line += f"; open errors {found['open_errors']}"
    if found["ended_errors"]:
        line += f"; streams ended before it {found['ended_errors']}"
    line += f"; the write's own answer came {found['write_answered_after_commit_ms']:.0f} ms in"
    if found["received"] < found["opened"]:
        line += f"; {found['opened'] - found['received']:,} never received it"
    if "server_connections_with_watchers" in found:
        line += (
            f"; the server's PostgreSQL connections {found['server_connections_before']}"
            f" before, {found['server_connections_with_watchers']} with the streams open"
        )
    return line


def changeset_line(found: dict[str, Any]) -> str:
    if not found:
        return "changesets: not measured (--only left them out)"
    return (
        f"ApplyChanges, 1,000 puts ({found['runs']} runs): p50 {found['p50_ms_1000']:.0f} ms,"
        f" p99 {found['p99_ms_1000']:.0f} ms; 10 puts at concurrency {found['concurrency']}:"
        f" {found['tierset_per_second_10']:.0f}/s vs raw SQL {found['sql_per_second_10']:.0f}/s"
        f" = {found['ratio_10']:.2f}x"
        + (f"; refused calls {found['errors']}" if found.get("errors") else "")
    )


def schema_line(found: dict[str, Any]) -> str:
    """The put with a JSON Schema against the same put without."""
    if not found:
        return "schema checking: not measured (--only left it out)"
    sequential, concurrent = found["sequential"], found["concurrent"]
    return (
        f"put of a {found['value_bytes']}-byte JSON value, ms per put (median of"
        f" {found['rounds']} rounds of {found['puts_per_round']}), with a JSON Schema"
        f" definition / undefined key: one at a time {sequential['with_schema_ms']:.3f} /"
        f" {sequential['without_ms']:.3f} ({100 * sequential['overhead']:+.1f} %),"
        f" {found['in_flight']} in flight {concurrent['with_schema_ms']:.3f} /"
        f" {concurrent['without_ms']:.3f} ({100 * concurrent['overhead']:+.1f} %);"
        f" the check alone {found['check_us']:.0f} us in-process"
        + (f"; errors {found['errors']}" if found["errors"] else "")
    )


def detail_lines(measured: dict[str, Any]) -> list[str]:
    """The steps that are not workloads, one line each."""
    results, lines = measured["results"], []
    propagation = measured["propagation"]
    if propagation:
        lines.append(
            f"write -> visible on another process ({propagation['samples']} writes):"
            f" p50 {propagation['p50_ms']:.2f} ms, p99 {propagation['p99_ms']:.2f} ms,"
            f" max {propagation['max_ms']:.2f} ms"
        )
    view = measured["client_view"]
    if view:
        lines.append(
            f"client view read (get_int, one thread): {view['read_ns']:.0f} ns,"
            f" {view['reads_per_second']:,.0f}/s = {view['vs_etcd_range']:,.0f}x etcd Range,"
            f" {view['vs_get_settings']:,.0f}x GetSettings cached;"
            f" write -> view in another process ({view['samples']} writes):"
            f" p50 {view['p50_ms']:.2f} ms, p99 {view['p99_ms']:.2f} ms"
        )
    costs = measured["per_call_costs"]
    cached = results.get(targets.cached_name(1, "retailer"))
    if costs and cached and cached["rps"]:
        # Server CPU per call of a cached read, to put the two steps in proportion.
        per_call = cached["server_cpu_cores"] / cached["rps"] * 1e6
        costs["cached_read_server_cpu_us"] = per_call
        lines.append(
            f"per call: verifying a cached API token {costs['verify_cached_token_us']:.1f} us"
            f" ({100 * costs['verify_cached_token_us'] / per_call:.1f} % of a cached read's"
            f" {per_call:.0f} us of server CPU); one access-log line"
            f" {costs['access_log_line_us']:.1f} us"
            f" ({100 * costs['access_log_line_us'] / per_call:.1f} %)"
        )
    lines.extend(database_lines(results))
    lines.extend(fanout_line(found) for found in measured["watch_fanout"])
    lines.append(changeset_line(measured["changesets"]))
    lines.append(schema_line(measured["schema_cost"]))
    for target, found in measured["profiles"].items():
        if "error" in found:
            lines.append(f"profile {target}: {found['error']}")
            continue
        top = ", ".join(f"{f.split(' (')[0]} {p}%" for f, p in found["own_percent"][:6])
        lines.append(f"profile {target} (own time): {top}")
    steps = measured["step_seconds"]
    if steps:
        lines.append(
            "where the time went: "
            + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps.items())
        )
    return lines


def targets_table(rows: list[Row], width: int = 64) -> list[str]:
    """One line per target (its figures wrapped under each other when long)."""
    name_width = max(len(row.target) for row in rows)
    threshold_width = max(len(row.threshold) for row in rows)
    header = (
        f"{'target':<{name_width}}  {'measured':<{width}}  {'threshold':<{threshold_width}}"
        "  verdict"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        wrapped = textwrap.wrap(row.measured, width) or ["-"]
        lines.append(
            f"{row.target:<{name_width}}  {wrapped[0]:<{width}}  "
            f"{row.threshold:<{threshold_width}}  {row.verdict}"
        )
        lines += [f"{'':<{name_width}}  {more}" for more in wrapped[1:]]
    counted = {v: sum(row.verdict == v for row in rows) for v in (targets.MET, targets.MISSED)}
    lines.append(
        f"{counted[targets.MET]} met, {counted[targets.MISSED]} MISSED,"
        f" {sum(row.verdict == targets.REPORTED for row in rows)} reported,"
        f" {sum(row.verdict == targets.NOT_MEASURED for row in rows)} not measured"
    )
    return lines


def publish(
    measured: dict[str, Any], machine: dict[str, Any], results_dir: Path, partial: bool
) -> list[Row]:
    """Prints the report, writes latest.json and latest.png; returns the targets' rows."""
    findings = Findings(
        results=measured["results"],
        cached_vs_bare=measured["cached_vs_bare"],
        fanout=measured["watch_fanout"],
        changesets=measured["changesets"],
        schema_cost=measured["schema_cost"],
        client_view=measured["client_view"],
        cores=machine["cores"],
        elapsed_seconds=measured["elapsed_seconds"],
        partial=partial,
    )
    rows = targets.judge_all(findings)
    workloads = workload_table(measured["results"])
    details = [
        *detail_lines(measured),
        f"machine: {machine['nproc']} cores ({machine['cores']} usable), {machine['cpu']};"
        f" PostgreSQL {machine['postgresql']}; concurrency {machine['concurrency']};"
        f" {machine['client_processes']} client processes;"
        f" {machine['seconds_per_workload']:.0f}s per workload;"
        f" load average at the end {machine['load_average']}",
    ]
    judged = targets_table(rows)
    print("\n" + "\n".join(workloads + details))
    print("\ntargets (issue 16 and those before it still in force):\n" + "\n".join(judged))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {
        "machine": machine,
        **measured,
        "targets": [jsonable(row) for row in rows],
        "table": "\n".join(workloads + details),
        "targets_table": "\n".join(judged),
    }
    text = json.dumps(document, indent=2, allow_nan=False)
    for name in (f"bench-{stamp}.json", "latest.json"):
        (results_dir / name).write_text(text)
    chart(measured["results"], rows, results_dir / "latest.png", machine["concurrency"])
    print(f"\nwritten: results/bench-{stamp}.json, results/latest.json, results/latest.png")
    return rows


def jsonable(row: Row) -> dict[str, Any]:
    """A row for latest.json: an infinite figure (a stream that never received the write)
    is written as null, which strict JSON can hold."""
    found = asdict(row)
    if row.value is not None and math.isinf(row.value):
        found["value"] = None
    return found


def chart_position(row: Row) -> float | None:
    """Where a judged row sits against its threshold, 1.0 being the threshold itself and
    more being better: value / limit for `at least`, limit / value for `below` (for a
    share added, the costs: (1 + limit) / (1 + value)); None for a row not judged."""
    if row.verdict not in (targets.MET, targets.MISSED) or row.value is None or not row.limit:
        return None
    if row.rule == "at least":
        return row.value / row.limit
    if math.isinf(row.value):
        return 0.0
    if row.unit == " %":
        return (1 + row.limit) / max(1 + row.value, 1e-9)
    return row.limit / max(row.value, 1e-9)


def chart(
    results: dict[str, dict[str, Any]], rows: list[Row], path: Path, concurrency: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    judged = [(row, position) for row in rows if (position := chart_position(row)) is not None]
    height = max(0.35 * len(names), 0.35 * len(judged)) + 1.5
    figure, (left, right) = plt.subplots(1, 2, figsize=(18, height), width_ratios=[3, 2])
    colours = {"limit": "#999999", "peer": "#d98c3a", "tierset": "#3a78d9"}
    left.barh(
        names,
        [results[n]["rps"] for n in names],
        color=[colours[results[n]["kind"]] for n in names],
    )
    left.invert_yaxis()
    left.set_xlabel(f"requests per second at concurrency {concurrency}")
    left.set_title("tierset vs gRPC's limit (grey) and etcd (orange)")
    left.tick_params(axis="y", labelsize=7)
    label_bars(left, [f" {results[name]['p99_ms']:.1f} ms p99" for name in names])
    if judged:
        labels = [row.target for row, _ in judged]
        positions = [max(position, 0.01) for _, position in judged]
        right.barh(
            labels,
            positions,
            color=["#3aa655" if row.verdict == targets.MET else "#d9534f" for row, _ in judged],
        )
        right.axvline(1.0, color="black", linewidth=1)
        right.set_xscale("log")
        right.invert_yaxis()
        right.tick_params(axis="y", labelsize=7)
        right.set_xlabel("figure against its threshold (1 = the threshold; right is better)")
        right.set_title("targets: met (green), MISSED (red)")
        label_bars(right, [f" {_shown(row)} ({row.threshold})" for row, _ in judged])
    else:
        right.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def label_bars(axis: Any, texts: list[str]) -> None:
    """Writes each text at the end of its bar."""
    for bar, text in zip(axis.patches, texts, strict=True):
        axis.text(
            bar.get_width(), bar.get_y() + bar.get_height() / 2, text, va="center", fontsize=7
        )


def _shown(row: Row) -> str:
    assert row.value is not None
    if math.isinf(row.value):
        return "none received"
    if row.unit == " %":
        return f"{100 * row.value:+.1f} %"
    if row.unit == "x":
        return f"{row.value:,.2f}x"
    return f"{row.value:,.0f}{row.unit}"
