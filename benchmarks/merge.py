"""Put a partial benchmark run (`--only`, `--models`) over an earlier full one, so a session that changed two models
re-measures those in minutes and the README still shows every table.

    python -m benchmarks.run --only quality --models sr-x2,inpaint --merge

What the new run measured replaces what the old one said about the same thing; everything else is kept as it was,
and every row says which command measured it:
- sections the new run did not measure are kept whole;
- in a section it measured, a table with the same caption is replaced; with --models, only the rows of those
  models (tables with a `model` column) are replaced and the other rows kept; an old table the new run did not
  print is kept with --models (it is about other models) and dropped without;
- targets the new run judged replace the old ones (a target judged from rows of several models needs all of them
  in --models); the raw numbers of `sections` are merged the same way as the tables;
- `runs` lists each run (command, date, sections, models, load), oldest first.
"""
from __future__ import annotations

import re
from typing import Any

CAPTION = re.compile(r"^\*\*(?P<caption>.*)\*\* \((?P<commands>.*)\)$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split(" | ")]


def parse_table(table: dict) -> dict:
    """A table entry with `header`, `rows` (cell strings) and `row_commands`, read from its markdown when it is older
    than those fields."""
    if "rows" in table:
        return table
    lines = table["markdown"].split("\n")
    m = CAPTION.match(lines[0])
    command = m.group("commands").strip("`") if m and m.group("commands").count("`") == 2 else ""
    rows = [_cells(line) for line in lines[4:] if line.startswith("|")]
    return {**table, "header": _cells(lines[2]), "rows": rows, "row_commands": [command] * len(rows)}


def render_table(caption: str, header: list[str], rows: list[list[str]], row_commands: list[str]) -> str:
    """The Markdown of a table; the caption names the command, or each command and the rows it made."""
    commands = list(dict.fromkeys(row_commands))
    if len(commands) <= 1:
        made = f"`{commands[0]}`" if commands else ""
    else:
        key = header.index("model") if "model" in header else 0
        made = "; ".join(f"`{c}`: " + ", ".join(dict.fromkeys(r[key] for r, rc in zip(rows, row_commands) if rc == c))
                         for c in commands)
    lines = [f"**{caption}** ({made})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _merge_rows(old: list, new: list, key, models: set[str]) -> list:
    """Old rows in their order, those of `models` replaced by the new run's (new models appended)."""
    out, placed = [], set()
    for row in old:
        k = key(row)
        if k in models:
            if k not in placed:
                out += [r for r in new if key(r) == k]
                placed.add(k)
        else:
            out.append(row)
    return out + [r for r in new if key(r) not in placed]


def _merge_table(old: dict, new: dict, models: set[str]) -> dict:
    old, new = parse_table(old), parse_table(new)
    if not models or "model" not in new["header"] or old["header"] != new["header"]:
        return new
    i = new["header"].index("model")
    pairs = _merge_rows(list(zip(old["rows"], old["row_commands"])), list(zip(new["rows"], new["row_commands"])),
                        lambda p: p[0][i], models)
    rows, commands = [list(p[0]) for p in pairs], [p[1] for p in pairs]
    return {**new, "rows": rows, "row_commands": commands,
            "markdown": render_table(new["caption"], new["header"], rows, commands)}


def _merge_section(old: Any, new: Any, models: set[str]) -> Any:
    if not models or not isinstance(old, dict) or not isinstance(new, dict):
        return new
    out = dict(old)
    for k, v in new.items():
        rows_by_model = isinstance(v, list) and all(isinstance(r, dict) and "model" in r for r in v + out.get(k, []))
        out[k] = _merge_rows(out.get(k, []), v, lambda r: r["model"], models) if rows_by_model and k in out else v
    return out


def run_entry(results: dict) -> dict:
    """What `runs` records of one run (an old file without `runs` is one run of every section it holds)."""
    m = results.get("machine", {})
    return {"command": results.get("command", ""), "date": results.get("date", ""),
            "sections": results.get("measured", list(results.get("sections", {}))),
            "models": results.get("models"), "cpu": m.get("cpu"), "cores": m.get("cores"),
            "load_average_start": m.get("load_average_start", [None])[0], "quick": results.get("quick")}


def merge(old: dict, new: dict) -> dict:
    """`new` (a run's results with `measured` sections and optional `models`) over `old` (of the same kind, --quick
    or not: run.py checks that before measuring)."""
    measured, models = set(new["measured"]), set(new.get("models") or [])
    new_tables = [parse_table(t) for t in new["tables"]]
    by_caption = {(t["section"], t["caption"]): t for t in new_tables}
    tables, used = [], set()
    for t in old.get("tables", []):
        k = (t["section"], t["caption"])
        if t["section"] not in measured:
            tables.append(t)
        elif k in by_caption:
            tables.append(_merge_table(t, by_caption[k], models))
            used.add(k)
        elif models:
            tables.append(t)
    tables += [t for t in new_tables if (t["section"], t["caption"]) not in used]
    targets = {k: {"command": old.get("command", ""), **v} for k, v in old.get("targets", {}).items()
               if models or v.get("section") not in measured}
    targets.update({k: {**v, "command": new["command"]} for k, v in new["targets"].items()})
    tables = [t for t in tables if t["section"] != "targets"]  # made afresh from the merged targets
    if targets:
        rows = [[t["target"], t["status"], t["detail"]] for t in targets.values()]
        commands = [t["command"] for t in targets.values()]
        tables.append({"section": "targets", "caption": "Targets", "header": ["target", "status", "measured"],
                       "rows": rows, "row_commands": commands,
                       "markdown": render_table("Targets", ["target", "status", "measured"], rows, commands)})
    sections = dict(old.get("sections", {}))
    for s, v in new["sections"].items():
        sections[s] = _merge_section(sections.get(s), v, models)
    seconds = {**old.get("seconds", {}), **new.get("seconds", {})}
    seconds["total"] = sum(v for k, v in seconds.items() if ":" not in k and k != "total")
    runs = old.get("runs") or [run_entry(old)]
    return {**new, "tables": tables, "targets": targets, "sections": sections, "seconds": seconds,
            "notes": list(dict.fromkeys(old.get("notes", []) + new.get("notes", []))),
            "runs": runs + [run_entry(new)], "measured": sorted(set(old.get("measured", sections)) | measured)}
