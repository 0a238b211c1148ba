"""The soak's report: one table, a column per run, a row per check (each must be 0) and
the figures that show the run did something; then the notes (what each fault did, who fell
behind) and the unexpected answers by status. The verdict is the last line."""

from __future__ import annotations

from collections.abc import Sequence

from tierset.cli.soak.run import Result


def table(results: Sequence[Result]) -> str:
    """The whole printed report."""
    if not results:
        return "soak: no run\nresult: FAILED"
    checks = list(dict.fromkeys(n for r in results for n in r.failures))
    figures = list(dict.fromkeys(n for r in results for n in r.figures))
    width = max(len(n) for n in checks + figures) + 2
    columns = [r.spec.label for r in results]
    col = max(12, *(len(c) + 2 for c in columns))
    lines = [" " * width + "".join(c.rjust(col) for c in columns)]
    lines.append("-" * (width + col * len(columns)))
    for name in checks:
        cells = "".join(str(r.failures.get(name, 0)).rjust(col) for r in results)
        mark = "  <- FAILED" if any(r.failures.get(name, 0) for r in results) else ""
        lines.append(f"{name:<{width}}{cells}{mark}")
    lines.append("-" * (width + col * len(columns)))
    for name in figures:
        cells = "".join(str(r.figures.get(name, 0)).rjust(col) for r in results)
        lines.append(f"{name:<{width}}{cells}")
    for r in results:
        lines.append(f"\n[{r.spec.label}] {r.spec.seconds:g} s, {r.spec.workers} workers")
        lines += [f"  {note}" for note in r.notes]
        lines += [
            f"  unexpected answer: {status} x{n}" for status, n in sorted(r.unexpected.items())
        ]
    ok = all(r.ok for r in results)
    lines.append("\nresult: " + ("OK (nothing lost)" if ok else "FAILED"))
    return "\n".join(lines)
