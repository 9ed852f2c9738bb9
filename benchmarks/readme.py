"""Put the tables of a benchmark run into README.md, so the README's numbers come from one command.

    python -m benchmarks.readme [--results benchmarks/results.json] [--readme README.md]

Replaces everything between the lines `<!-- benchmarks:start -->` and `<!-- benchmarks:end -->` with: the
run's command, date, machine and duration, then each section's tables as the run printed them (every caption
names the command), its notes, and the targets table. `make bench` runs the benchmarks and then this.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
TITLES = {"speed": "Speed and memory", "roofline": "Roofline", "scaling": "Scaling", "quality": "Quality",
          "app": "App", "training": "Training speed", "targets": "Targets"}


def render(results: dict) -> str:
    """The Markdown block for one run's results (the JSON that benchmarks.run writes)."""
    m, seconds = results["machine"], results.get("seconds", {})
    load = m.get("load_average_start", [float("nan")])[0]
    lines = [f"Made by `{results['command']}` on {results['date']}: {m['cpu']}, {m['cores']} cores, "
             f"torch {m['torch']}, {m['threads']} threads, {m['device']}, load average {load:.1f} at the start; "
             f"{seconds.get('total', float('nan')) / 60:.1f} minutes in all."]
    if len(results.get("runs", [])) > 1:  # a partial run merged over earlier ones (benchmarks/merge.py)
        lines = ["Made by several runs, merged (`--merge`; each table names the command of its rows): "
                 + "; ".join(f"`{r['command']}` on {r['date']} ({', '.join(r['sections'])}"
                             + (f"; models {', '.join(r['models'])}" if r.get("models") else "")
                             + f"; load average {r['load_average_start'] or float('nan'):.1f} at the start)" for r in results["runs"])
                 + f". Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['threads']} threads, "
                 f"{m['device']}; {seconds.get('total', float('nan')) / 60:.1f} minutes over the sections shown."]
    if results.get("quick"):
        lines.append("This is a `--quick` run: fewer sizes, repeats and images; numbers are indicative.")
    parts = [" ".join(lines)]
    sections = [s for s in TITLES if any(t["section"] == s for t in results["tables"])]
    for section in sections:
        took = f" ({seconds[section]:.0f} s)" if section in seconds else ""
        parts.append(f"#### {TITLES[section]}{took}")
        parts += [t["markdown"] for t in results["tables"] if t["section"] == section]
    if results.get("notes"):
        parts.append("Notes printed by the run:\n\n" + "\n".join(f"- {n}" for n in results["notes"]))
    return "\n\n".join(parts)


def update(readme: Path, results: dict) -> None:
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{readme} needs exactly one '{START}' line followed by one '{END}' line")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    readme.write_text(f"{head}{START}\n{render(results)}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readme", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", default="benchmarks/results.json", help="the JSON written by benchmarks.run")
    p.add_argument("--readme", default="README.md")
    args = p.parse_args(argv)
    path = Path(args.results)
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: run `python -m benchmarks.run --json {path}` first")
    update(Path(args.readme), json.loads(path.read_text()))
    print(f"wrote the tables of {path} into {args.readme}")


if __name__ == "__main__":
    main()
