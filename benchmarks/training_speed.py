"""Section "training": how fast each step-based training script trains on this machine, fp32 against bf16 autocast,
and the share of step time spent waiting for data (loading, cropping, degrading, masking), from the scripts' own
speed record (`common.StepLoop`), on the real training data."""
from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from ._measure import ROOT, Context

STEPS = {False: 40, True: 12}  # per script and precision, the first 5 not timed
RUNS = {  # script -> its arguments (the shipped recipes' shapes)
    "train_sr": ["--scale", "4"],
    "train_denoise": [],
    "train_inpaint": [],
}


def bench_training(ctx: Context) -> None:
    if not (ctx.data / "train").is_dir():
        ctx.note(f"{ctx.data / 'train'} does not exist (pass --data): the training table is skipped")
        return
    sys.path.insert(0, str(ROOT / "training"))
    import importlib

    import common  # noqa: PLC0415

    rows = []
    for name, extra in RUNS.items():
        script = importlib.import_module(name)
        defaults = script.Config().train_sets
        sets = [s for s in defaults if (ctx.data / "train" / s).is_dir()]
        if not sets:
            ctx.note(f"{name}: none of its training sets {defaults} is in {ctx.data / 'train'}: skipped")
            continue
        for precision in ("no", "bf16"):
            with tempfile.TemporaryDirectory() as tmp, ctx.timed(f"training: {name} {precision}"):
                argv = ["--data", str(ctx.data), "--steps", str(STEPS[ctx.quick]), "--eval-every", str(10 ** 9),
                        "--eval-max-images", "1", "--mixed-precision", precision, "--out", f"{tmp}/out",
                        "--run-dir", f"{tmp}/run", "--train-sets", *sets, *extra]
                script.main(common.parse_config(script.Config, argv))
                log = [json.loads(line) for line in Path(f"{tmp}/run/log.jsonl").read_text().splitlines()]
                speed = next(r for r in log if r.get("event") == "speed")
                start = next(r for r in log if r.get("event") == "start")
            rows.append({"script": name, "model": start["model"], "precision": speed["mixed_precision"], **speed})
    if not rows:
        return
    ctx.results["sections"]["training"] = rows
    base = {r["script"]: r["steps_per_s"] for r in rows if r["precision"] == "no"}
    ctx.table("training", f"Training speed: {STEPS[ctx.quick] - 5} timed steps per row (after 5 warm-up steps), the "
              "scripts' default batch and patch sizes, real data; data share = time waiting for the loader and "
              "preparing the batch (noise, masks, downscaling) over the step time",
              ["script", "model", "precision", "steps/s", "images/s", "data share", "speed-up"],
              [[r["script"], r["model"], "fp32" if r["precision"] == "no" else r["precision"], r["steps_per_s"],
                r["images_per_s"], f"{r['data_share']:.1%}", r["steps_per_s"] / base[r["script"]]] for r in rows])
