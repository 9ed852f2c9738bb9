"""Benchmarks of the shipped models: speed and memory next to the classical methods, a roofline check, tiled
scaling, every quality table of training, and the app's cold start and API overhead.

    python -m benchmarks.run [--quick] [--weights weights] [--data ../shared/datasets]
                             [--json benchmarks/results.json] [--only speed,roofline,scaling,quality,app,training]
                             [--models sr-x2,inpaint] [--merge]

Prints Markdown tables (each caption names the command that made it) and writes them, the raw numbers and the
machine (CPU model, cores, torch version and threads, device, load average) as JSON. Timings are medians over
repeats after one warm-up call, on the same inputs for every method of a run. Peak memory is the peak resident
set size (RSS) of this process during the measured calls minus the RSS just before them: the kernel's high-water
mark (VmHWM) is reset through /proc/self/clear_refs before and read after, exact and in-process; glibc's free
heap pages are trimmed before, so an earlier config's freed memory does not hide a later peak. On CUDA the
model rows report torch.cuda.max_memory_allocated instead. Missing model folders and data sets are skipped with
a printed note.

This file is the command line; each section is its own module (speed.py, roofline.py, scaling.py, quality.py,
app_bench.py) and what they share (`measure`, `PeakMemory`, `Context`, `machine`) is in _measure.py.
"""
from __future__ import annotations

import argparse
import atexit
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ._measure import MODELS, ROOT, Context, machine
from .app_bench import bench_app
from .merge import merge
from .quality import BM3D_IMAGES, bench_quality
from .roofline import COMPILE_BUDGET_S, bench_roofline, compile_worker
from .scaling import bench_scaling
from .speed import bench_speed
from .training_speed import bench_training

# ----------------------------------------------------------------------------------------------- settings
SECTIONS = ("speed", "roofline", "scaling", "quality", "app", "training")  # in the order they run
BENCHES = {"speed": bench_speed, "roofline": bench_roofline, "scaling": bench_scaling, "quality": bench_quality,
           "app": bench_app, "training": bench_training}


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer sizes, repeats and images (about 2 minutes idle)")
    p.add_argument("--weights", default="weights", help="folder of model folders (missing ones are skipped)")
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"), help="datasets root (val/, ...)")
    p.add_argument("--json", default="benchmarks/results.json", help="where to write tables and raw numbers")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    p.add_argument("--models", default="",
                   help="comma-separated weights/ folders to measure (default: all); with --merge their rows replace "
                        "those of the earlier run and the other rows stay")
    p.add_argument("--merge", action="store_true",
                   help="put this run's sections (and --models rows) over the results already in --json instead of "
                        "replacing the file (benchmarks/merge.py)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, auto, ...")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--sizes-scale", type=float, default=1.0,
                   help="multiply every image side, batch and matmul size (e.g. 0.1 for smoke tests); targets then "
                        "read n/a")
    p.add_argument("--bm3d-images", type=int, default=None,
                   help=f"first CBSD68 images for the BM3D quality column (default {BM3D_IMAGES[False]}, "
                        f"{BM3D_IMAGES[True]} with --quick; about 9 s per image and noise level); 0 = no BM3D")
    p.add_argument("--compile", action="store_true", help="run the torch.compile variants even with --quick")
    p.add_argument("--compile-budget", type=float, default=COMPILE_BUDGET_S, help="seconds for torch.compile")
    p.add_argument("--compile-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        p.error(f"--only: unknown section(s) {unknown}; choose from {','.join(SECTIONS)}")
    args.only = [s for s in SECTIONS if s in only]
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        p.error(f"--models: unknown folder(s) {unknown}; choose from {','.join(MODELS)}")
    if args.merge and not (args.json and Path(args.json).is_file()):
        p.error(f"--merge needs the earlier results in --json ({args.json}): nothing to merge into")
    if args.merge and bool(json.loads(Path(args.json).read_text()).get("quick")) != args.quick:
        p.error(f"--merge: {args.json} holds a {'full' if args.quick else '--quick'} run; merge runs of one kind")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.compile_worker:
        compile_worker(json.loads(args.compile_worker))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    # torch.compile rows time a cold compile (what a first run pays), not one served from an earlier run's cache
    inductor_cache = tempfile.mkdtemp(prefix="cnnimg-inductor-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache
    atexit.register(shutil.rmtree, inductor_cache, ignore_errors=True)
    ctx = Context(args, argv)
    start = time.perf_counter()
    ctx.results.update(date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       command=ctx.command, quick=args.quick, machine=machine(ctx.device), seconds={},
                       measured=list(args.only), models=args.models or None)
    m = ctx.results["machine"]
    busy = m["load_average_start"][0] > m["cores"]
    print(f"# cnnimg-hub benchmarks ({'quick' if args.quick else 'full'})\n\n{ctx.results['date']} · {m['cpu']} · "
          f"{m['cores']} cores · torch {m['torch']} · {m['threads']} threads · {m['device']} · load average "
          f"{m['load_average_start'][0]:.1f}" + (" (busy: other processes share the CPU, times are pessimistic)"
                                                  if busy else ""), flush=True)
    for section in args.only:
        t0 = time.perf_counter()
        print(f"\n## {section}\n", flush=True)
        ctx.section = section
        BENCHES[section](ctx)
        ctx.results["seconds"][section] = time.perf_counter() - t0
    ctx.results["seconds"]["total"] = time.perf_counter() - start
    m["load_average_end"] = list(os.getloadavg())
    if ctx.results["targets"]:
        ctx.table("targets", "Targets", ["target", "status", "measured"],
                  [[t["target"], t["status"], t["detail"]] for t in ctx.results["targets"].values()])
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in ctx.results["seconds"].items()))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        out = ctx.results
        if args.merge:
            out = merge(json.loads(path.read_text()), json.loads(json.dumps(out, default=float)))
        path.write_text(json.dumps(out, indent=2, default=float) + "\n")
        print(f"{'merged into' if args.merge else 'wrote'} {path}")
    return ctx.results


if __name__ == "__main__":
    main()
