"""The printed table and ``RESULTS.md``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO_ROOT, Section
from benchmarks.config import Sizes
from benchmarks.ledgers import BuiltLedger

COLUMNS = ("benchmark", "case", "value", "target", "status")


def render_table(sections: Sequence[Section]) -> str:
    """A plain-text table for the terminal (details follow each row, indented)."""
    rows = [COLUMNS] + [
        (r.benchmark, r.case, r.value, r.target, r.status) for s in sections for r in s.rows
    ]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    details = [
        f"  {r.benchmark} / {r.case}: {r.detail}" for s in sections for r in s.rows if r.detail
    ]
    return "\n".join([*lines, "", *details])


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_results(
    sections: Sequence[Section],
    facts: dict[str, Any],
    sizes: Sizes,
    year: BuiltLedger | None,
    failures: Sequence[str],
    base: Path = REPO_ROOT / "benchmarks",
) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in facts["packages"].items())
    out = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Targets are "
        "judged on ratios measured side by side in this run: the machine is shared, so "
        "absolute numbers drift.",
        "",
        f"- date: {facts['date']}; size: `{sizes.name}`; whole run: {facts['duration']}",
        f"- machine: {facts['cpu']}, {facts['cores']} cores, {facts['ram']} RAM, {facts['os']}",
        f"- load average at start: {facts['load_average']}",
        f"- Python {facts['python']}; {packages}",
    ]
    if year is not None:
        out.append(
            f"- history for verify/query/proofs: {year.hours:,} hourly batches, "
            f"{year.events:,} events, built in {year.seconds:.0f} s"
        )
    out += ["", "| benchmark | case | value | target | status | detail |"]
    out += ["|---|---|---|---|---|---|"]
    for section in sections:
        for r in section.rows:
            status = f"**{r.status}**" if r.status == "MISSED" else r.status
            out.append(
                f"| {r.benchmark} | {_md(r.case)} | {_md(r.value)} | {_md(r.target)} | "
                f"{status} | {_md(r.detail)} |"
            )
    missed = [r for s in sections for r in s.rows if r.status == "MISSED"]
    if missed:
        out += ["", "## Targets missed", ""]
        out += [f"- {r.benchmark} / {r.case}: {r.value}, target {r.target}" for r in missed]
    for section in sections:
        out += ["", f"## {section.name} ({section.seconds:.0f} s)", ""]
        for note in section.notes:
            out += [note, ""]
        for profile in section.extra.get("profiles", []):
            rel = profile["path"].relative_to(base)
            out += [
                f"Where the time goes (pyinstrument, {profile['title']}, "
                f"{profile['duration']:.1f} s profiled; full tree in `{rel}`):",
                "",
                "| part | seconds | share |",
                "|---|---|---|",
            ]
            for label, seconds, share in profile["rows"]:
                out.append(f"| {_md(label)} | {seconds:.2f} | {share:.0%} |")
            out.append("")
    if failures:
        out += ["", "## Benchmarks that failed", ""]
        for failure in failures:
            out += ["```", failure.strip(), "```", ""]
    return "\n".join(out).rstrip() + "\n"
