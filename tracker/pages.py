"""GET /: a small server-rendered page of recent failures and stuck orders (no JavaScript)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import asyncpg

STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
    "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}th{background:#eee}"
)
COLUMNS = ("id", "instrument", "side", "type", "quantity", "created_at", "attempts", "last_error")


def _cell(value: object) -> str:
    return "" if value is None else escape(str(value))


def _table(rows: Sequence[asyncpg.Record], columns: Sequence[str], empty: str) -> str:
    if not rows:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row[c])}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_index(
    failures: Sequence[asyncpg.Record], stuck: Sequence[asyncpg.Record], stuck_after_s: float
) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Order tracker</title>
<style>{STYLE}</style></head><body>
<h1>Order tracker</h1>
<p><a href="/failures">/failures</a> (JSON) · <a href="/failures?format=csv">CSV</a> ·
<a href="/metrics">/metrics</a></p>
<h2>Recent failures ({len(failures)})</h2>
{_table(failures, ("failed_at", *COLUMNS), "No failed orders.")}
<h2>Stuck in progress for over {stuck_after_s:g} s ({len(stuck)})</h2>
{_table(stuck, COLUMNS, "No stuck orders.")}
</body></html>
"""
