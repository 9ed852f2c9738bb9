"""Smoke tests of the training scripts: each trains a few steps on a tiny fake data root built here (never
../shared), then we check what a real run leaves behind: the Hub-ready folder (exactly config.json,
model.safetensors, README.md) that loads strictly, a card carrying the numbers of metrics.json, and the run
folder (training_config.json, metrics.json, log.jsonl, checkpoint.pt). One test kills a run and resumes it.

Most scripts run in-process (`main(parse_config(Config, argv))`), the resume test through subprocesses.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnimg_hub import load_model

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "training"))  # the scripts import `common` as a sibling module
import common  # noqa: E402
import train_classifier  # noqa: E402
import train_denoise  # noqa: E402
import train_generator  # noqa: E402
import train_inpaint  # noqa: E402
import train_sr  # noqa: E402

FOLDER_FILES = ["README.md", "config.json", "model.safetensors"]
from conftest import CIFAR_CLASSES, write_cifar10  # noqa: E402  (the fake data root is built in conftest.py)
# what every run shares: one thread (the machine is busy), a few steps, tiny evaluations
FAST = ["--threads", "1", "--batch-size", "2", "--steps", "4", "--eval-every", "2", "--eval-max-images", "2"]


# ----------------------------------------------------------------------------------------------- helpers
def _train(script, *argv) -> None:
    threads = torch.get_num_threads()  # --threads 1 sets it process-wide: give the other tests theirs back
    try:
        script.main(common.parse_config(script.Config, [str(a) for a in argv]))
    finally:
        torch.set_num_threads(threads)


def _read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _check_run(out: Path, run: Path, task: str):
    """The folder and run files every script writes; returns (model, metrics, log, card)."""
    sample = ["sample.jpg"] if task in ("super-resolution", "denoising", "inpainting") else []  # before/after
    assert sorted(p.name for p in out.iterdir()) == sorted(FOLDER_FILES + sample)
    model = load_model(out, task=task)
    training_config = json.loads((run / "training_config.json").read_text())
    assert training_config["out"] == str(out) and "push_to_hub" not in training_config
    assert (run / "checkpoint.pt").is_file()
    card = (out / "README.md").read_text()
    assert '"out": ' + json.dumps(out.name) in card  # the training config is in the card too, without machine paths
    assert str(out.parent) not in card
    return model, json.loads((run / "metrics.json").read_text()), _read_log(run), card


def _assert_in_card(card: str, *values: float) -> None:
    for v in values:
        assert f"| {v} |" in card, f"{v} (from metrics.json) is not in the card's evaluation table"


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _final_step(run: Path) -> int:
    return common.load_checkpoint(run / "checkpoint.pt")["step"]


# ----------------------------------------------------------------------------------------------- image tasks
def test_train_sr(data_root, tmp_path):
    out, run = tmp_path / "sr-x3", tmp_path / "run"
    _train(train_sr, *FAST, "--data", data_root, "--train-sets", "T91", "BSD200", "--scale", 3, "--lr-patch", 6,
           "--out", out, "--run-dir", run)
    model, metrics, log, card = _check_run(out, run, "super-resolution")
    assert model.scale == 3 and model.config["model_name"] == "sr-espcn"
    assert [r["step"] for r in log if "set5_psnr" in r] == [2, 4]  # the periodic Set5 check ran
    sets = ["Set5", "Set14", "BSD100", "Set5 (MATLAB LR)", "Set14 (MATLAB LR)"] + [
        f"{s} ({m} LR)" for m in ("cv2-cubic", "cv2-area", "cv2-linear") for s in ("Set14", "BSD100")]
    assert [r["eval"] for r in log if "eval" in r] == sets
    assert all(metrics[s]["images"] == 2 for s in sets)
    # the fake MATLAB LR files are PIL bicubic of the mod-cropped HR, so both LR sources must agree exactly
    assert metrics["Set5 (MATLAB LR)"]["psnr"] == pytest.approx(metrics["Set5"]["psnr"])
    _assert_in_card(card, *(round(metrics[s][m], 4) for s in sets for m in ("psnr", "ssim")))
    assert _final_step(run) == 4


def test_train_denoise(data_root, tmp_path):
    out, run = tmp_path / "denoise", tmp_path / "run"
    _train(train_denoise, *FAST, "--data", data_root, "--train-sets", "BSD200", "T91", "--model",
           "denoise-ffdnet-small", "--patch", 16, "--out", out, "--run-dir", run)
    model, metrics, log, card = _check_run(out, run, "denoising")
    assert [r["step"] for r in log if "cbsd68_8_sigma25_psnr" in r] == [2, 4]
    results = metrics["CBSD68"]
    assert sorted(results) == ["sigma15", "sigma25", "sigma50"]
    assert all(r["images"] == 2 and "nlm_psnr" in r for r in results.values())
    _assert_in_card(card, *(round(r[m], 4) for r in results.values() for m in ("psnr", "ssim")))
    assert _final_step(run) == 4


def test_train_inpaint(data_root, tmp_path):
    out, run = tmp_path / "inpaint", tmp_path / "run"
    _train(train_inpaint, *FAST, "--data", data_root, "--train-sets", "T91", "BSD200", "--channels", 8, 8, 8,
           "--n-blocks", 1, "--patch", 32, "--mask-canvas", 48, "--out", out, "--run-dir", run)
    model, metrics, log, card = _check_run(out, run, "inpainting")
    assert model.config["channels"] == [8, 8, 8] and model.config["model_name"] == "inpaint-unet"
    assert [r["step"] for r in log if "bsd100_10_psnr" in r] == [2, 4]
    r = metrics["BSD100"]
    assert r["images"] == 2 and 0.05 < r["hole_fraction"] < 0.5
    _assert_in_card(card, *(round(r[k], 4) for k in ("psnr", "ssim", "telea_psnr", "ns_psnr")))
    assert _final_step(run) == 4


# ----------------------------------------------------------------------------------------------- classifiers
@pytest.fixture(scope="module")
def judge(data_root, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny Fashion-MNIST classifier: tested below and the held-out judge of the generator tests."""
    tmp = tmp_path_factory.mktemp("classifier")
    out, run = tmp / "classify-fashion-mnist", tmp / "run"
    _train(train_classifier, "--dataset", "fashion-mnist", "--data", data_root / "fashion-mnist", "--epochs", 2,
           "--batch-size", 32, "--widths", 8, 16, "--threads", 1, "--out", out, "--run-dir", run)
    return out, run


def test_train_classifier_fashion_mnist(judge):
    out, run = judge
    model, metrics, log, card = _check_run(out, run, "image-classification")
    assert model.config["widths"] == [8, 16] and model.config["input_size"] == [1, 28, 28]
    assert [(r["epoch"], r["step"]) for r in log if "epoch" in r] == [(1, 8), (2, 16)]  # 256 images / 32
    assert metrics["images"] == 64
    _assert_in_card(card, round(metrics["top1"], 4), round(metrics["top5"], 4))
    assert "test (64 images)" in card
    assert _final_step(run) == 16


def test_train_classifier_cifar10(data_root, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CNNIMG_CACHE", str(cache))  # never the shared <repo>/data cache
    out, run = tmp_path / "classify-cifar10", tmp_path / "run"
    _train(train_classifier, "--dataset", "cifar10", "--data", data_root / "cifar10-jpg.tar.gz", "--epochs", 1,
           "--batch-size", 8, "--widths", 8, 16, "--threads", 1, "--out", out, "--run-dir", run)
    assert sorted(p.name for p in cache.iterdir()) == ["cifar10-test.npz", "cifar10-train.npz"]
    model, metrics, log, card = _check_run(out, run, "image-classification")
    assert model.config["label_names"] == CIFAR_CLASSES and model.config["input_size"] == [3, 32, 32]
    assert metrics["images"] == 20 and _final_step(run) == 5  # 40 train images / 8
    _assert_in_card(card, round(metrics["top1"], 4), round(metrics["top1_tta"], 4))
    assert "test (20 images, flip and 1-px shift TTA)" in card and model.config["architecture"] == "AirbenchNet"


def test_cifar10_cache_follows_the_archive(data_root, tmp_path):
    """A cache decoded from one archive is not served for another (it used to be, silently)."""
    other = tmp_path / "other.tar.gz"
    write_cifar10(other, np.random.default_rng(1), {"test": 1})
    assert len(common.cifar10("test", data_root / "cifar10-jpg.tar.gz", cache=tmp_path)[0]) == 20
    assert len(common.cifar10("test", other, cache=tmp_path)[0]) == 10
    assert len(common.cifar10("test", data_root / "cifar10-jpg.tar.gz", cache=tmp_path)[0]) == 20


# ----------------------------------------------------------------------------------------------- generators
@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_train_generator(kind, judge, data_root, tmp_path):
    out, run = tmp_path / f"generate-{kind}", tmp_path / "run"
    _train(train_generator, "--kind", kind, "--data", data_root / "fashion-mnist", "--judge", judge[0],
           "--epochs", 1, "--batch-size", 16, "--limit", 64, "--base-channels", 8, "--eval-samples", 40,
           "--threads", 1, "--out", out, "--run-dir", run)
    model, metrics, log, card = _check_run(out, run, "image-generation")
    assert model.config["kind"] == kind and model.generate(torch.arange(3)).shape == (3, 1, 28, 28)
    assert [(r["epoch"], r["step"]) for r in log if "epoch" in r] == [(1, 4)]
    assert metrics["samples"] == 40 and 0 <= metrics["class_agreement"] <= 1 and math.isfinite(metrics["fid_judge"])
    _assert_in_card(card, round(metrics["class_agreement"], 4), round(metrics["fid_judge"], 3))
    if kind == "vae":
        _assert_in_card(card, round(metrics["test_reconstruction_mse"], 5))
        # the default fitted prior is set from the training posteriors and shipped with the weights
        assert model.config["prior"] == "fitted" and model.prior_loc.abs().sum() > 0
        assert not torch.equal(model.prior_scale_tril[0], torch.eye(model.latent_dim))
    assert _final_step(run) == 4


# ----------------------------------------------------------------------------------------------- resume
def test_sr_resumes_after_kill(data_root, tmp_path):
    """SIGKILL a real `python training/train_sr.py` after its first checkpoints, rerun it with --resume."""
    out, run, steps = tmp_path / "sr-x2", tmp_path / "run", 300
    cmd = [sys.executable, str(REPO / "training" / "train_sr.py"), "--data", str(data_root), "--train-sets", "T91",
           "BSD200", "--scale", "2", "--lr-patch", "6", "--batch-size", "2", "--steps", str(steps), "--ckpt-every",
           "2", "--eval-every", "100000", "--eval-max-images", "1", "--threads", "1", "--out", str(out),
           "--run-dir", str(run)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "first.txt", "w") as console:  # cwd elsewhere: the script must not need the repo as cwd
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=console, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            # the first loss line is at step 100; checkpoints come every 2 steps
            if (run / "checkpoint.pt").exists() and '"loss"' in _text(run / "log.jsonl"):
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"train_sr.py ended before it was killed:\n{_text(tmp_path / 'first.txt')}"
        proc.kill()  # SIGKILL: no handler, no cleanup, like a crash or an out-of-memory kill
        assert proc.wait(timeout=30) == -signal.SIGKILL
    killed_at = _final_step(run)
    assert 0 < killed_at < steps and not out.exists()

    done = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = _read_log(run)
    assert [r["step"] for r in log if r.get("event") == "resume"] == [killed_at]
    assert [r["event"] for r in log if "event" in r] == ["setup", "start", "setup", "resume", "start", "speed"]
    assert [r["step"] for r in log if "loss" in r] == [100, 200, 300]
    assert all(0 < r["loss"] < 1 for r in log if "loss" in r)  # mean L1 of images in [0, 1]
    assert _final_step(run) == steps
    assert sorted(p.name for p in out.iterdir()) == sorted(FOLDER_FILES + ["sample.jpg"])  # SR: before/after
    assert load_model(out, task="super-resolution").scale == 2
