"""The HTML report: one self-contained page an auditor can read at a glance and file away.

Everything is inline (CSS in a ``<style>`` element, charts as SVG), so the file opens the
same way offline, in an e-mail attachment or in an evidence archive years later. Facts
come from the dataset, which must match its seal; the verdict is checked when the page is
made (``verdict.py``: the ledger incrementally from the dataset's checkpoint, older data
files by SHA-256), never copied from an earlier run, and the tiles about the ledger come
from that same check. A failed verification recorded after the last successful one still
shows, in red, at the top.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb

from audit_pipeline import __version__
from audit_pipeline.dataset import charts, history
from audit_pipeline.dataset.build import dataset_path
from audit_pipeline.dataset.query import ledger_beside, open_dataset
from audit_pipeline.dataset.verdict import Verdict, verdict_now
from audit_pipeline.dataset.workflow_report import workflow_section
from audit_pipeline.ledger import resolve_data_dir

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;
  margin:0;background:#f4f6f9}
main{max-width:1120px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:0 0 12px}
section{background:#fff;border:1px solid #dde2ea;border-radius:8px;padding:18px 20px;
  margin:16px 0}
.muted{color:#5c6678}.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;
  font-size:12.5px;word-break:break-all}
.verdict{display:flex;gap:18px;align-items:center;padding:16px 20px;border-radius:8px;
  color:#fff;font-size:20px;font-weight:600}
.verdict.ok{background:#1b7837}.verdict.fail{background:#d7263d}
.verdict small{display:block;font-size:13px;font-weight:400;opacity:.92}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;
  margin-top:14px}
.fact{background:#f4f6f9;border-radius:6px;padding:8px 12px}
.fact b{display:block;font-size:20px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:5px 8px;
  border-bottom:1px solid #eceff4;vertical-align:top}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#5c6678}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:90px}
td.barcell{width:45%}.hbar{height:12px;background:#3b6fb6;border-radius:2px}
.bad{color:#d7263d;font-weight:600}.good{color:#1b7837;font-weight:600}
.legend span{display:inline-block;margin-right:16px}
.legend i{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:5px;
  vertical-align:-1px}
svg text.axis{font-size:11px;fill:#5c6678}svg .grid{stroke:#eceff4}
svg .axisline{stroke:#9aa3b2}svg .bar{fill:#3b6fb6}
pre{background:#f4f6f9;padding:10px;border-radius:6px;overflow-x:auto;font-size:12px}
.scroll{overflow-x:auto}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _ts(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    rel = con.sql(sql)
    return [dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall()]


def _flag(count: int) -> str:
    """_flag shows a count that should be zero: green when it is, red otherwise."""
    return f'<span class="{"bad" if count else "good"}">{count:,}</span>'


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[Any, ...]:
    """_one returns the single row of a query (DuckDB 2 relations have no fetchone)."""
    return con.sql(sql).fetchall()[0]


def write_report(
    out: Path, *, data_dir: str | Path | None = None, database: str | Path | None = None
) -> Path:
    """write_report renders the report from the dataset and the verification history."""
    return write_checked_report(out, data_dir=data_dir, database=database)[0]


def write_checked_report(
    out: Path, *, data_dir: str | Path | None = None, database: str | Path | None = None
) -> tuple[Path, bool]:
    """write_checked_report writes the report and says whether its banner is a pass: the
    check made now passed (no check possible without the ledger: the recorded verdict)."""
    path = dataset_path(data_dir, database)
    ledger_dir = resolve_data_dir(data_dir) if data_dir else ledger_beside(path)
    current = None
    if ledger_dir is not None and (ledger_dir / "ledger").is_dir() and path.is_file():
        current = verdict_now(ledger_dir, path)  # the seal is checked once, here
        current.seal.require()
        con = open_dataset(path, sealed=False)
    else:
        con = open_dataset(path)
    try:
        info = dict(con.sql("SELECT key, value FROM dataset_info").fetchall())
        runs_dir = ledger_dir or Path(info.get("data_dir", ""))
        runs = history.load_runs(runs_dir) if runs_dir and runs_dir.is_dir() else []
        page = render_report(con, runs, dataset=path, current=current)
    finally:
        con.close()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    passed = current.ok if current is not None else bool(runs) and runs[-1].ok
    return out, passed


def render_report(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[history.VerificationRun],
    *,
    dataset: Path | None = None,
    current: Verdict | None = None,
) -> str:
    """render_report returns the HTML page. ``runs`` (from the history log) wins over the
    dataset's copy, which ends at the dataset's own build. ``current`` is the verdict
    checked now: the banner, the tiles that depend on it and the checkpoint's state come
    from it; without it the page says it shows a recorded verdict, and when."""
    info = dict(con.sql("SELECT key, value FROM dataset_info").fetchall())
    if not runs:
        runs = [
            history.VerificationRun(
                run_id=r["run_id"],
                verified_at=int(r["verified_at"].timestamp()),
                trigger=r["trigger"],
                ok=r["ok"],
                tree_size=r["tree_size"],
                root_hash=r["root_hash"],
                checkpoint=r["checkpoint"],
                report=json.loads(r["report"] or "{}"),
            )
            for r in _rows(con, "SELECT * FROM verification_runs ORDER BY verified_at")
        ]
    origin = info.get("origin") or "(unnamed log)"
    body = [
        f"<h1>Audit log report: {_e(origin)}</h1>",
        f'<p class="muted">Generated {_ts(dt.datetime.now(dt.UTC))} by audit-pipeline '
        f"{_e(__version__)} from the dataset built {_ts(int(info.get('built_at', 0)))}"
        + (f" (<span class=mono>{_e(dataset)}</span>)" if dataset else "")
        + ".</p>",
        _verification_section(con, runs, info, current),
        _coverage_section(con),
        _volume_section(con),
        _actions_section(con),
        workflow_section(con),
        _checkpoint_section(con, info, current),
        _runs_section(runs),
    ]
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>Audit log report: {_e(origin)}</title><style>{_CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _behind(current: Verdict) -> str:
    """_behind says when the tiles (the dataset's rows) lag the ledger the banner verified."""
    sealed = current.seal
    if not sealed.ledger_note or sealed.ledger_changed or sealed.seal is None:
        return ""
    return (
        f" The tiles show the dataset, built from the first {sealed.seal.tree_size} batches:"
        f" the ledger {_e(sealed.ledger_note)} (rebuild it: 'audit-pipeline dataset build')."
    )


def _banner(
    runs: Sequence[history.VerificationRun], current: Verdict | None
) -> tuple[str, str, str, list[dict[str, Any]]]:
    """_banner returns (css class, headline, detail, findings) for the verdict shown."""
    latest = runs[-1] if runs else None
    if current is not None:
        findings = current.findings()
        when = f"Checked now ({_ts(current.checked_at)})"
        if not current.ok:
            n = len(findings)
            word = "VERIFICATION FAILED" if not current.intact else "GAPS IN COVERAGE"
            detail = f"{when}: {n} finding{'s' if n != 1 else ''}; see below.{_behind(current)}"
            return "fail", word, detail, findings
        if latest is not None and not latest.ok:
            detail = (
                f"{when}: no findings. The latest recorded verification "
                f"({_ts(latest.verified_at)}, {_e(latest.trigger)}) failed; its findings "
                "are below."
            )
            return "fail", "EARLIER VERIFICATION FAILED", detail, list(latest.findings)
        report = current.report
        scope = report.incremental_from if report else None
        if not scope:
            how = "every signature, hash link, data file and checkpoint, the dataset by its seal"
        elif report is not None and scope < report.tree_size:
            how = (
                f"batches {scope}..{report.tree_size - 1} in full, every manifest and "
                "checkpoint, older data files by SHA-256, the dataset by its seal"
            )
        else:
            how = (
                "every manifest and checkpoint, every data file by SHA-256, the dataset by its seal"
            )
        return "ok", "VERIFIED", f"{when}: no findings; checked {how}.{_behind(current)}", []
    if latest is None:
        return "fail", "NOT VERIFIED", "No verification recorded.", []
    n = len(latest.findings)
    detail = (
        f"Recorded verdict of {_ts(latest.verified_at)} ({_e(latest.trigger)}), not checked "
        "again for this page: the data may have changed since. "
        + ("No findings then." if latest.ok else f"{n} finding{'s' if n != 1 else ''}; see below.")
    )
    css, word = ("ok", "VERIFIED") if latest.ok else ("fail", "VERIFICATION FAILED")
    return css, word, detail, list(latest.findings)


def _verification_section(
    con: duckdb.DuckDBPyConnection,
    runs: Sequence[history.VerificationRun],
    info: Mapping[str, str],
    current: Verdict | None = None,
) -> str:
    css, word, detail, found = _banner(runs, current)
    verdict = f'<div class="verdict {css}">{word}<small>{detail}</small></div>'
    facts = _one(
        con,
        """SELECT (SELECT count(*) FROM audit_events), (SELECT count(*) FROM quarantine),
                  (SELECT count(*) FROM batches), (SELECT count(*) FROM batches
                   WHERE kind = 'late'), (SELECT count(*) FROM gaps),
                  (SELECT min(window_start) FROM batches), (SELECT max(window_end) FROM batches)
        """,
    )
    events, quarantined, batches, late, gaps, first, last = facts
    failed = sum(1 for r in runs if not r.ok)
    log_size = _e(info.get("tree_size", "-"))
    missing = _flag(gaps)
    if current is not None:
        # The tiles about the ledger come from the same check as the banner.
        if current.report is not None:
            log_size = f"{current.report.tree_size:,}"
            missing = _flag(current.hours_missing or 0)
        if not current.intact:
            log_size = f'<span class="bad">{log_size} (failed)</span>'
            missing = '<span class="bad">unknown (verification failed)</span>'
    cells = [
        ("Events", f"{events:,}"),
        ("Batches (late)", f"{batches:,} ({late:,})"),
        ("Hours missing", missing),
        ("Quarantined", f"{quarantined:,}"),
        ("Covered from", _ts(first)),
        ("Covered to", _ts(last)),
        ("Verifications (failed)", f"{len(runs):,} ({_flag(failed)})"),
        ("Log size", log_size),
    ]
    facts_html = "".join(f'<div class="fact">{k}<b>{v}</b></div>' for k, v in cells)
    findings = ""
    if found:
        rows = "".join(
            f"<tr><td class=mono>{_e(f.get('code'))}</td><td class=mono>{_e(f.get('location'))}"
            f"</td><td>{_e(f.get('detail'))}</td></tr>"
            for f in found[:200]
        )
        more = len(found) - 200
        findings = (
            "<h2 style='margin-top:16px'>Findings</h2>"
            f"<table><tr><th>Code</th><th>Where</th><th>What</th></tr>{rows}</table>"
        )
        if more > 0:
            findings += f"<p class=muted>and {more} more (audit-pipeline verify --json)</p>"
    return (
        f"<section><h2>Verification</h2>{verdict}<div class=facts>{facts_html}</div>"
        f"{findings}</section>"
    )


def _coverage_section(con: duckdb.DuckDBPyConnection) -> str:
    hours = _rows(
        con,
        "SELECT epoch(hour)::BIGINT AS hour, committed, events, kinds FROM coverage ORDER BY hour",
    )
    legend = (
        '<p class="legend muted">'
        f'<span><i style="background:{charts._GREENS[2]}"></i>committed, with events '
        "(darker = more)</span>"
        f'<span><i style="background:{charts.EMPTY}"></i>committed, no events</span>'
        f'<span><i style="background:{charts.GAP}"></i>gap: no batch for the hour</span>'
        f'<span><i style="background:{charts.LATE};border-radius:50%"></i>late batch</span></p>'
    )
    return (
        "<section><h2>Covered hours (UTC)</h2>"
        f'{legend}<div class="scroll">{charts.coverage_calendar(hours)}</div></section>'
    )


def _volume_section(con: duckdb.DuckDBPyConnection) -> str:
    span = _one(con, "SELECT count(*) FROM coverage")
    hours = span[0]
    if hours > 24 * 45:
        points = con.sql(
            "SELECT epoch(date_trunc('day', hour))::BIGINT, sum(events)::BIGINT FROM coverage "
            "GROUP BY 1 ORDER BY 1"
        ).fetchall()
        chart = charts.bar_chart(points, label="Events per day", unit_seconds=charts.DAY)
        title = "Events per day"
    else:
        points = con.sql(
            "SELECT epoch(hour)::BIGINT, events::BIGINT FROM coverage ORDER BY 1"
        ).fetchall()
        chart = charts.bar_chart(points, label="Events per hour")
        title = "Events per hour"
    return f'<section><h2>{title}</h2><div class="scroll">{chart}</div></section>'


def _actions_section(con: duckdb.DuckDBPyConnection) -> str:
    top = con.sql("SELECT action, events FROM top_actions ORDER BY events DESC, action LIMIT 15")
    items = [(str(a), int(n)) for a, n in top.fetchall()]
    return (
        "<section><h2>Top actions</h2><table><tr><th>Action</th><th>Events</th><th></th></tr>"
        f"{charts.hbar_rows(items)}</table></section>"
    )


def _witnesses_cell(recorded: str) -> str:
    """_witnesses_cell says which witnesses vouched for the checkpoint and when, as the
    dataset's verification found with their keys (nothing is claimed without them)."""
    if not recorded:
        return (
            '<span class="muted">not checked: no witness keys were configured when the '
            "dataset was built (AUDIT_WITNESSES)</span>"
        )
    verdict = json.loads(recorded)
    who = "".join(
        f"<li class=mono>{_e(c['witness'])} (key {_e(c['key_id'])}) at {_e(c['time_iso'])}</li>"
        for c in verdict["cosigned_by"]
    )
    count = len(verdict["cosigned_by"])
    state = "good" if verdict["met"] else "bad"
    return (
        f'<span class="{state}">{count} of {len(verdict["witness_keys"])} trusted witnesses '
        f"cosigned size {verdict['tree_size']} (quorum {verdict['quorum']})</span>"
        f"<ul>{who}</ul>"
    )


def _checkpoint_section(
    con: duckdb.DuckDBPyConnection, info: Mapping[str, str], current: Verdict | None = None
) -> str:
    cp = _rows(con, "SELECT * FROM checkpoints ORDER BY tree_size DESC LIMIT 1")
    keys = _rows(con, "SELECT * FROM keys ORDER BY valid_from NULLS FIRST, name")
    if cp:
        c = cp[0]
        state = (
            '<span class="good">matches the verified manifests</span>'
            if c["matches_ledger"]
            else '<span class="bad">does NOT match the manifests</span>'
        )
        if current is not None and not current.intact:
            state = (
                '<span class="bad">not confirmed: the verification made for this page failed</span>'
            )
        checkpoint = (
            f"<table><tr><th>Origin</th><td class=mono>{_e(c['origin'])}</td></tr>"
            f"<tr><th>Tree size</th><td>{c['tree_size']:,} batches</td></tr>"
            f"<tr><th>Root hash</th><td class=mono>{_e(c['root_hash'])}</td></tr>"
            f"<tr><th>Signed by</th><td class=mono>{_e(', '.join(c['signed_by']))}</td></tr>"
            f"<tr><th>State</th><td>{state}</td></tr>"
            f"<tr><th>Witnesses</th><td>{_witnesses_cell(info.get('witnesses', ''))}</td></tr>"
            "</table>"
            f"<pre>{_e(c['note'])}</pre>"
        )
    else:
        checkpoint = '<p class="muted">No checkpoint.</p>'
    key_rows = "".join(
        f"<tr><td class=mono>{_e(k['name'])}+{_e(k['key_id'])}</td>"
        f"<td class=mono>{_e(k['fingerprint'])}</td><td>{_ts(k['valid_from'])}</td>"
        f"<td>{_ts(k['valid_until'])}</td>"
        f"<td>{'<span class=bad>' + _ts(k['revoked_at']) + '</span>' if k['revoked_at'] else '-'}"
        "</td></tr>"
        for k in keys
    )
    return (
        f"<section><h2>Current checkpoint</h2>{checkpoint}"
        "<h2 style='margin-top:16px'>Signing keys (SHA-256 fingerprint of the public key)</h2>"
        "<table><tr><th>Key</th><th>Fingerprint</th><th>Valid from</th><th>Valid until</th>"
        f"<th>Revoked</th></tr>{key_rows}</table></section>"
    )


def _runs_section(runs: Sequence[history.VerificationRun]) -> str:
    recent = list(reversed(runs))[:20]
    rows = "".join(
        f"<tr><td>{_ts(r.verified_at)}</td><td>{_e(r.trigger)}</td>"
        f"<td>{'<span class=good>ok</span>' if r.ok else '<span class=bad>FAILED</span>'}</td>"
        f"<td class=num>{len(r.findings)}</td><td class=num>{_e(r.tree_size)}</td>"
        f"<td class=mono>{_e((r.root_hash or '-')[:16])}</td></tr>"
        for r in recent
    )
    return (
        f"<section><h2>Verification history ({len(runs)} runs, newest first)</h2>"
        "<table><tr><th>When</th><th>By</th><th>Result</th><th>Findings</th><th>Size</th>"
        f"<th>Root</th></tr>{rows}</table></section>"
    )
