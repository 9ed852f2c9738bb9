"""The training engine under the scripts: precision choice, --init-from with its lineage, per-index random streams,
and real data-parallel runs (2 CPU processes over gloo, started by torchrun as README says) that split the work."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from cnnimg_hub import create_model, load_model, save_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))
import common  # noqa: E402
import train_sr  # noqa: E402


# ----------------------------------------------------------------------------------------------- precision
@pytest.mark.parametrize("cuda, cuda_bf16, cpu_bf16, want", [
    (False, None, True, "bf16"),  # a CPU with AVX512-BF16 / AMX
    (False, None, False, "no"),  # a CPU without native bf16: fp32
    (True, True, False, "bf16"),
    (True, False, False, "fp16"),  # an older GPU
])
def test_auto_precision(cuda, cuda_bf16, cpu_bf16, want):
    assert common.resolve_mixed_precision("auto", cuda=cuda, cuda_bf16=cuda_bf16, cpu_bf16=cpu_bf16) == want


def test_explicit_precision_is_kept_or_refused():
    assert common.resolve_mixed_precision("no", cuda=False, cpu_bf16=True) == "no"
    assert common.resolve_mixed_precision("bf16", cuda=False, cpu_bf16=False) == "bf16"
    with pytest.raises(SystemExit, match="needs a GPU"):
        common.resolve_mixed_precision("fp16", cuda=False, cpu_bf16=True)
    with pytest.raises(SystemExit, match="auto, no, bf16 or fp16"):
        common.resolve_mixed_precision("fp8", cuda=False)


# ----------------------------------------------------------------------------------------------- data streams
def test_patch_crops_depend_on_seed_and_index_only(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    files = sorted(tmp_path.glob("*.png"))
    a, b = common.PatchDataset(files, 16, 100, seed=3), common.PatchDataset(files, 16, 100, seed=3)
    random.seed(123)  # the global stream plays no part
    assert all(torch.equal(a[i], b[i]) for i in range(10))
    assert len({a[i].sum().item() for i in range(10)}) == 10  # indices (ranks get disjoint ones) differ
    b.seed = 4  # e.g. after a resume
    assert not torch.equal(a[0], b[0])


# ----------------------------------------------------------------------------------------------- init-from
def _tiny_sr(tmp_path: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = create_model("sr-espcn", scale=2, n_feats=8, n_layers=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return save_model(model, tmp_path / f"sr-{seed}")


def test_init_from_copies_the_weights_and_refuses_other_architectures(tmp_path):
    folder = _tiny_sr(tmp_path)
    shipped = load_model(folder)
    log = common.RunLog(tmp_path / "run")
    fresh = create_model("sr-espcn", scale=2, n_feats=8, n_layers=1)
    assert common.init_from(fresh, str(folder), log) == []
    x = torch.rand(2, 3, 12, 12)
    target = torch.rand(2, 3, 24, 24)
    assert F.l1_loss(fresh(x), target).item() == pytest.approx(F.l1_loss(shipped(x), target).item(), abs=1e-6)
    with pytest.raises(SystemExit, match=r"n_feats=8 \(run: 16\)"):
        common.init_from(create_model("sr-espcn", scale=2, n_feats=16, n_layers=1), str(folder), log)
    with pytest.raises(SystemExit, match="it is a ESPCN, this run trains a EDSR"):
        common.init_from(create_model("sr-edsr-small", scale=2), str(folder), log)
    with pytest.raises(SystemExit, match="--init-from"):
        common.init_from(fresh, str(tmp_path / "nowhere"), log)


def test_init_from_continues_and_the_lineage_adds_up(data_root, tmp_path):
    args = ["--data", data_root, "--train-sets", "T91", "--scale", 2, "--lr-patch", 8, "--threads", 1,
            "--batch-size", 2, "--eval-every", 100, "--eval-max-images", 1]
    args = [str(a) for a in args]
    first, second = tmp_path / "a", tmp_path / "b"
    for out, steps, init in ((first, 3, ""), (second, 5, str(first))):
        cfg = common.parse_config(train_sr.Config, args + ["--steps", str(steps), "--out", str(out), "--run-dir",
                                                         str(tmp_path / f"run-{out.name}"), "--init-from", init])
        train_sr.main(cfg)
    lineage = common.read_lineage(second)
    assert [(r["steps"], r["images_seen"]) for r in lineage] == [(3, 6), (5, 10)]
    # the card keeps no machine path: the folder it continued from is named by its last part
    assert lineage[1]["init_from"] == first.name and lineage[0]["init_from"] is None
    config = json.loads((tmp_path / "run-b" / "training_config.json").read_text())
    assert config["lineage_totals"]["steps"] == 8 and config["lineage_totals"]["images_seen"] == 16
    assert config["lineage_totals"]["wall_hours"] == pytest.approx(sum(r["wall_hours"] for r in lineage), abs=1e-3)


# ----------------------------------------------------------------------------------------------- 2 processes
def _torchrun(script: str, args: list, tmp_path: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    # faulthandler: a rank that aborts (SIGABRT) prints where it was, the Python stack of every thread
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONFAULTHANDLER": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(REPO / "training" / script), *map(str, args)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _traces(run: Path, nproc: int = 2) -> list[dict[str, str]]:
    out = []
    for r in range(nproc):
        lines = (run / f"trace-rank{r}.txt").read_text().split("\n")
        out.append({" ".join(line.split()[:-1]): line.split()[-1] for line in lines if line})
    return out


def _check_ranks(run: Path, steps: int) -> None:
    a, b = _traces(run)
    batches = [k for k in a if k.startswith("batch")]
    assert batches and batches == [k for k in b if k.startswith("batch")]
    assert all(a[k] != b[k] for k in batches), "two ranks trained on the same batch"
    assert a["weights"] == b["weights"], "the ranks ended with different weights"


def test_sr_on_two_processes_splits_the_data_and_completes_the_schedule(data_root, tmp_path):
    out, run, steps = tmp_path / "sr", tmp_path / "run", 6
    _torchrun("train_sr.py", ["--data", data_root, "--train-sets", "T91", "BSD200", "--scale", 2, "--lr-patch", 8,
                              "--batch-size", 2, "--steps", steps, "--warmup", 2, "--eval-every", 100,
                              "--eval-max-images", 1, "--trace-batches", steps, "--out", out, "--run-dir", run],
              tmp_path)
    _check_ranks(run, steps)
    state = common.load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == steps and state["sched"]["last_epoch"] == steps
    assert state["sched"]["_last_lr"][0] == pytest.approx(0.0, abs=1e-12)  # the cosine schedule reached its end
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["run", "sr"]  # one output folder
    model = load_model(out)
    config = json.loads((run / "training_config.json").read_text())
    assert config["lineage"][0]["images_seen"] == steps * 2 * 2  # batch 2 on each of 2 processes
    assert model.scale == 2


def test_classifier_on_two_processes(data_root, tmp_path):
    out, run = tmp_path / "clf", tmp_path / "run"
    _torchrun("train_classifier.py", ["--dataset", "fashion-mnist", "--data", data_root / "fashion-mnist",
                                      "--epochs", 2, "--batch-size", 16, "--widths", 8, 16, "--trace-batches", 4,
                                      "--out", out, "--run-dir", run], tmp_path)
    _check_ranks(run, 4)
    state = common.load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 2 * 256 // 16 // 2  # 2 epochs of 256 images, 16 per step on each of 2 processes
    assert load_model(out).config["widths"] == [8, 16]


def test_gan_on_two_processes(data_root, tmp_path):
    """The generator script too waits for rank 0's evaluation and saving before any rank leaves (rank 1 used to
    return at once, the early exit that gloo aborted in the other scripts)."""
    out, run = tmp_path / "gan", tmp_path / "run"
    _torchrun("train_generator.py", ["--kind", "gan", "--data", data_root / "fashion-mnist", "--judge", "",
                                     "--epochs", 1, "--batch-size", 16, "--limit", 64, "--base-channels", 8,
                                     "--eval-samples", 20, "--out", out, "--run-dir", run], tmp_path)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["step"], r["images_seen"]) for r in log if "epoch" in r] == [(1, 2, 64)]  # 64 / (16 x 2)
    assert load_model(out).config["kind"] == "gan"


# ----------------------------------------------------------------------------------------------- GPU burst script
def test_gpu_burst_runs_end_to_end_on_a_cpu(data_root, tmp_path):
    """The prepared GPU script, on this CPU with a tiny budget and tiny models: timings, two budgeted runs (one
    continuing a saved model), the packed archive."""
    import tarfile

    weights = tmp_path / "weights"
    save_model(create_model("denoise-ffdnet-small", max_sigma=50.0), weights / "denoise")  # the run's architecture
    tiny = "--batch-size 2 --threads 1 --train-sets T91"
    runs = (f"0.5 denoise training/train_denoise.py --model denoise-ffdnet-small --patch 16 {tiny}\n"
            f"0.5 sr training/train_sr.py --model sr-espcn --scale 2 --lr-patch 8 {tiny}")
    env = {**os.environ, "DATA": str(data_root), "WEIGHTS": str(weights), "PYTHON": sys.executable,
           "BURST_EVAL_IMAGES": "1", "BURST_SKIP_TESTS": "1", "BURST_RUNS": runs, "OMP_NUM_THREADS": "1"}
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(REPO / "training" / "gpu_burst.sh"), str(out), "0.05"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| denoise | fp32 |" in (out / "timings.md").read_text()
    log = (out / "burst.log").read_text()
    assert "FAILED" not in log, log
    with tarfile.open(out / "weights.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"weights/denoise/model.safetensors", "weights/sr/model.safetensors"} <= names
    denoise_log = [json.loads(line) for line in (out / "runs" / "denoise" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "init_from" for r in denoise_log)  # continued from the saved model
    budget = [r for r in denoise_log if r.get("event") == "time_budget"]
    assert budget and common.load_checkpoint(out / "runs" / "denoise" / "checkpoint.pt")["step"] == budget[0]["steps"]
