"""Pieces the training scripts share: config overrides, data (image folders, CIFAR-10, Fashion-MNIST),
degradations (bicubic downscale, Gaussian noise, free-form masks), checkpoints and the final Hub-ready folder.

The scripts stay flat and readable; anything here is used by at least two of them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import io
import json
import math
import os
import random
import sys
import tarfile
import time
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm


REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as `python training/train_x.py` from anywhere
from cnnimg_hub import degrade  # noqa: E402
from cnnimg_hub._files import atomic_write  # noqa: E402
from cnnimg_hub.degrade import random_mask  # noqa: E402,F401  (re-exported for the scripts)
from cnnimg_hub.imageio import to_image, to_tensor  # noqa: E402
from cnnimg_hub.runtime import cpu_has_bf16, end_rank  # noqa: E402  (the pipelines choose bf16 by it too)

DATA = Path(os.environ.get("CNNIMG_DATA", REPO.parent / "shared" / "datasets"))
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


# ----------------------------------------------------------------------------------------------- config
def parse_config(cfg_cls, argv: list[str] | None = None):
    """Build the dataclass from its defaults and typed `--key value` overrides (bools: --flag / --no-flag)."""
    parser = argparse.ArgumentParser(description=(cfg_cls.__doc__ or "").strip())
    for f in dataclasses.fields(cfg_cls):
        name = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = f.type if isinstance(f.type, type) else eval(f.type, {"Optional": None})  # noqa: S307 (own types)
        if kind is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, list):  # element type from the annotation (list[int]), else from the default
            item = (typing.get_args(kind) or [type(default[0]) if default else str])[0]
            parser.add_argument(name, nargs="+", type=item, default=default)
        else:
            parser.add_argument(name, type=kind if kind in (int, float, str) else str, default=default)
    return cfg_cls(**vars(parser.parse_args(argv)))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunLog:
    """Appends one JSON line per event to <run_dir>/log.jsonl and echoes a short line to stdout."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path, self.enabled, self.t0 = run_dir / "log.jsonl", enabled, time.time()
        if enabled:
            run_dir.mkdir(parents=True, exist_ok=True)

    def __call__(self, **record: Any) -> None:
        if not self.enabled:
            return
        record = {"time": round(time.time() - self.t0, 1), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()), flush=True)


# ----------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, **state: Any) -> None:
    """Resumable state (model, optimizer, scheduler state dicts, counters); written atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only: tensors, dicts and numbers only, never arbitrary pickled objects
    return torch.load(path, map_location="cpu", weights_only=True)


def resolve_mixed_precision(requested: str, *, cuda: bool | None = None, cuda_bf16: bool | None = None,
                            cpu_bf16: bool | None = None) -> str:
    """`auto` -> "bf16" on GPUs that support it and on CPUs with native bf16, "fp16" on older GPUs, "no"
    (fp32) otherwise; explicit "no"/"bf16"/"fp16" are checked against the hardware. The keyword arguments
    override the hardware checks (for tests)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if requested not in ("auto", "no", "bf16", "fp16"):
        raise SystemExit(f"--mixed-precision must be auto, no, bf16 or fp16, not {requested!r}")
    if cuda:
        bf16 = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        return ("bf16" if bf16 else "fp16") if requested == "auto" else requested
    bf16 = cpu_has_bf16() if cpu_bf16 is None else cpu_bf16
    if requested == "fp16":
        raise SystemExit("--mixed-precision fp16 needs a GPU; on a CPU use bf16 or no")
    if requested == "auto":
        return "bf16" if bf16 else "no"
    return requested  # "bf16" on a CPU without native bf16 runs, emulated and slow, because it was asked for


def setup(cfg):
    """Seed, CPU threads, an Accelerator (mixed precision resolved by `resolve_mixed_precision`), the run folder and
    its log: returns (accelerator, run_dir, log). Model init uses `cfg.seed` on every rank (DDP broadcasts rank 0's
    weights anyway); afterwards each rank's torch/numpy/random streams are seeded with seed + rank."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # a second run in one process (tests, notebooks) may use another precision; the process group is kept
    AcceleratorState._reset_state(reset_partial_state=False)
    acc = Accelerator(mixed_precision=resolve_mixed_precision(cfg.mixed_precision))
    run_dir = Path(cfg.run_dir or Path("runs") / Path(cfg.out).name)
    log = RunLog(run_dir, enabled=acc.is_main_process)
    log(event="setup", mixed_precision=acc.mixed_precision, processes=acc.num_processes, device=str(acc.device))
    return acc, run_dir, log


def sync_buffers(acc, model: torch.nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the processes, so every rank ends with the
    same complete model (DDP keeps parameters in step, but each rank updates its buffers on its own batches)."""
    if acc.num_processes > 1:
        for buf in acc.unwrap_model(model).buffers():
            if buf.is_floating_point():
                buf.copy_(acc.reduce(buf.detach().clone(), reduction="mean"))


def leave(acc) -> None:
    """Every rank leaves the process group together, after rank 0's evaluation and saving (an early leaver was
    aborted by gloo), and a run of several processes then ends each process here (`runtime.end_rank`, why there).
    One process (tests, notebooks) just returns."""
    acc.wait_for_everyone()
    acc.end_training()
    if acc.num_processes > 1:
        end_rank(0)


def rank_seed(acc, seed: int) -> None:
    """Different noise/mask streams on each rank (call after the model is built)."""
    seed_everything(seed + 1000 * acc.process_index)


class BatchTrace:
    """With `n` > 0, each rank writes a hash of its first `n` batches and, at the end, of its weights to
    <run_dir>/trace-rank<r>.txt: how the tests (and a user) check that ranks see different data and end identical."""

    def __init__(self, acc, run_dir: Path, n: int):
        self.n, self.path = n, Path(run_dir) / f"trace-rank{acc.process_index}.txt"
        if n:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text("")

    def batch(self, step: int, *tensors: torch.Tensor) -> None:
        if step < self.n:
            self._write(f"batch {step} " + _digest(*tensors))

    def weights(self, model: torch.nn.Module) -> None:
        if self.n:
            self._write("weights " + _digest(*model.state_dict().values()))

    def _write(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")


def _digest(*tensors: torch.Tensor) -> str:
    import hashlib

    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def read_lineage(folder: Path) -> list[dict]:
    """The runs that made the model in `folder`: the "lineage" list of the training config in its card."""
    card = Path(folder) / "README.md"
    if not card.exists():
        return []
    text = card.read_text()
    start = text.find("## Training\n")
    start = text.find("```json", start) if start >= 0 else -1
    if start < 0:
        return []
    end = text.find("```", start + 7)
    try:
        config = json.loads(text[start + 7:end])
    except json.JSONDecodeError:
        return []
    return list(config.get("lineage") or [])


def init_from(model: torch.nn.Module, source: str, log: RunLog) -> list[dict]:
    """Copy the weights of a saved model (local folder or Hub repo id) into `model`, strictly: same registered
    architecture and the same config, else SystemExit with what differs. Returns the source's lineage."""
    from cnnimg_hub import load_model
    from cnnimg_hub._hub import resolve_folder
    from cnnimg_hub._registry import init_parameters

    try:
        folder = resolve_folder(source)
        src = load_model(folder)
    except Exception as e:  # noqa: BLE001  (any load failure is a user error here)
        raise SystemExit(f"--init-from {source}: {e}") from None
    ours, theirs = type(model).__name__, type(src).__name__
    if ours != theirs:
        raise SystemExit(f"--init-from {source}: it is a {theirs}, this run trains a {ours}; pick the matching "
                         f"--model or leave --init-from out")
    diff = {k: (getattr(src, "_hub_mixin_config", {}).get(k), getattr(model, "_hub_mixin_config", {}).get(k))
            for k in init_parameters(type(model))}
    diff = {k: v for k, v in diff.items() if json.dumps(v[0]) != json.dumps(v[1])}
    if diff:
        raise SystemExit(f"--init-from {source}: its architecture differs from this run's "
                         + ", ".join(f"{k}={a} (run: {b})" for k, (a, b) in diff.items())
                         + "; pass the same model arguments")
    model.load_state_dict(src.state_dict(), strict=True)
    lineage = read_lineage(folder)
    log(event="init_from", source=str(source), previous_runs=len(lineage))
    return lineage


def read_curve(run_dir: Path, metric: str, batch: int) -> tuple[float, list[dict]]:
    """From <run_dir>/log.jsonl: the run's wall seconds over all its processes (a resumed run's log holds several,
    each starting with a "setup" record) and the curve of `metric` against images seen and wall-hours."""
    path = Path(run_dir) / "log.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    offset = last = 0.0
    processes, curve = 1, []
    for r in records:
        if r.get("event") == "setup":
            offset, last = offset + last, 0.0
            processes = r.get("processes", 1)
        last = max(last, r.get("time", 0.0))
        if metric in r and "step" in r:
            curve.append({"images_seen": r["step"] * batch * processes, "hours": round((offset + r["time"]) / 3600, 3),
                          "metric": metric, "value": round(r[metric], 4)})
    return offset + last, curve


def lineage_entry(name: str, init: str, steps: int, batch: int, processes: int, seconds: float, **extra) -> dict:
    return {"run": name, "init_from": init or None, "steps": steps, "images_seen": steps * batch * processes,
            "wall_hours": round(seconds / 3600, 3), **extra}


def run_lineage(lineage: list[dict], run_dir: Path, cfg, processes: int, steps: int, metric: str,
                **final) -> list[dict]:
    """`lineage` (the runs before this one) + this run's entry: `steps`, images seen and wall-hours from its log
    (resumes included), its learning curve of `metric`, and the final numbers in `final`."""
    seconds, curve = read_curve(run_dir, metric, cfg.batch_size)
    return [*lineage, lineage_entry(Path(run_dir).name, getattr(cfg, "init_from", ""), steps, cfg.batch_size,
                                    processes, seconds, curve=curve, **final)]


def lineage_totals(lineage: list[dict]) -> dict:
    return {"runs": len(lineage), "steps": sum(r.get("steps", 0) for r in lineage),
            "images_seen": sum(r.get("images_seen", 0) for r in lineage),
            "wall_hours": round(sum(r.get("wall_hours", 0.0) for r in lineage), 3)}


class StepLoop:
    """Bookkeeping of a step-based loop: backward + optimizer + schedule step, tqdm bar, the mean loss logged every
    `log_every` steps, a resumable checkpoint every `ckpt_every` steps and at the end. With `clip_grad`, the
    gradients' total norm is clipped to it (deep un-normalised residual nets spike without it)."""

    def __init__(self, acc, model, opt, sched, *, steps: int, start: int, log: RunLog, ckpt: Path,
                 ckpt_every: int, desc: str, log_every: int = 100, clip_grad: float = 0.0, minutes: float = 0.0):
        self.acc, self.model, self.opt, self.sched, self.log, self.ckpt = acc, model, opt, sched, log, ckpt
        self.clip_grad, self.budget_s, self.t0 = clip_grad, minutes * 60, time.time()
        self.wait = 0.0  # seconds spent waiting for the data loader (see `batches`)
        self.timed_from: tuple[float, float, int] | None = None  # (time, wait, step) after the warm-up steps
        self.steps, self.step, self.start, self.ckpt_every, self.log_every = steps, start, start, ckpt_every, log_every
        self.bar = tqdm(total=steps, initial=start, desc=desc, disable=not acc.is_main_process)
        self.running, self.since = 0.0, 0  # loss sum and steps since the last log line (a resume may start between)

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    def update(self, loss: torch.Tensor) -> int:
        self.acc.backward(loss)
        if self.clip_grad:
            self.acc.clip_grad_norm_(self.model.parameters(), self.clip_grad)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        if self.budget_s and self.step == self.start + 20:
            self._fit_budget()
        if self.step == self.start + 5:  # the speed summary leaves out the first steps (allocator, caches)
            self.timed_from = (time.perf_counter(), self.wait, self.step)
        self.running += loss.item()
        self.since += 1
        self.bar.update(1)
        # checkpoint before logging: a run killed right after a log line resumes from that step, not before it
        if self.acc.is_main_process and (self.step % self.ckpt_every == 0 or self.step == self.steps):
            save_checkpoint(self.ckpt, model=self.acc.unwrap_model(self.model).state_dict(),
                            opt=self.opt.state_dict(), sched=self.sched.state_dict(), step=self.step)
        if self.step % self.log_every == 0:
            self.bar.set_postfix(loss=f"{self.running / self.since:.4f}")
            self.log(step=self.step, loss=self.running / self.since, lr=self.sched.get_last_lr()[0])
            self.running, self.since = 0.0, 0
        return self.step

    def _fit_budget(self) -> None:
        """A wall-clock budget (`minutes`): after 20 steps, end the run (and its cosine decay) where the budget ends.
        The same on every rank (the rate is averaged), so all processes stop at the same step."""
        rate = float(self.acc.reduce(torch.tensor((time.time() - self.t0) / 20), reduction="mean"))
        steps = min(self.steps, self.step + max(1, int((self.budget_s - (time.time() - self.t0)) / rate)))
        if steps < self.steps:
            self.steps = self.bar.total = steps
            if hasattr(self.sched, "total"):
                self.sched.total["steps"] = steps
            self.log(event="time_budget", minutes=self.budget_s / 60, seconds_per_step=rate, steps=steps)

    def batches(self, loader):
        """Iterate `loader`, adding the time spent waiting for each batch to `self.wait`."""
        it = iter(loader)
        while True:
            t = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.wait += time.perf_counter() - t
            yield batch

    @contextlib.contextmanager
    def preparing(self):
        """Count the time of work done on a batch before the model sees it (degrading, masking) as data time."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.wait += time.perf_counter() - t

    def close(self, batch_size: int = 0) -> None:
        """Close the bar and log the run's speed: steps/s, images/s (with `batch_size` per process) and the share of
        the time spent waiting for data, over the steps after the first five."""
        self.bar.close()
        if self.timed_from and self.step > self.timed_from[2]:
            t, wait, step = self.timed_from
            seconds, n = time.perf_counter() - t, self.step - step
            self.log(event="speed", steps=n, steps_per_s=n / seconds,
                     images_per_s=n * batch_size * self.acc.num_processes / seconds,
                     data_share=(self.wait - wait) / seconds, mixed_precision=self.acc.mixed_precision)


def cosine_schedule(opt: torch.optim.Optimizer, steps: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay to zero at `steps`; `sched.total["steps"]` may be lowered later (a time
    budget) and the decay then ends there."""
    total = {"steps": steps}
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, warmup)) * 0.5 * (
        1 + math.cos(math.pi * min(s, total["steps"]) / total["steps"])))
    sched.total = total
    return sched


def resume(ckpt: Path, log: RunLog, seed: int, **objects: Any) -> int:
    """Load `objects` (model=..., opt=..., sched=...) from `ckpt` if it exists; returns the step to go on from."""
    if not ckpt.exists():
        log(event="resume", note=f"no checkpoint at {ckpt}, starting fresh")
        return 0
    state = load_checkpoint(ckpt)
    for name, obj in objects.items():
        obj.load_state_dict(state[name])
    seed_everything(seed + state["step"])  # fresh random draws after a resume
    log(event="resume", step=state["step"])
    return state["step"]


def finish(model, out_dir: Path, run_dir: Path, cfg, *, eval_results: list[dict], datasets: list[str],
           metrics: dict, push_to_hub: str = "", description: str | None = None,
           lineage: list[dict] | None = None) -> None:
    """Write the Hub-ready folder (config.json, model.safetensors, README.md card with the results), the run's
    training_config.json and metrics.json beside the checkpoint, and optionally push the folder. `lineage` (every
    run in the chain, see `lineage_entry`) goes into the training config with its totals. The card writes absolute
    paths as their last component (it never shows a machine's folders) and embeds a before/after sample picture
    for restoration models; `python -m cnnimg_hub refresh-card FOLDER` writes card and sample again later."""
    from cnnimg_hub import push_to_hub as push
    from cnnimg_hub import save_model

    training_config = dataclasses.asdict(cfg)
    training_config.pop("push_to_hub", None)
    if lineage:
        training_config["lineage"] = lineage
        training_config["lineage_totals"] = lineage_totals(lineage)
    save_model(model, out_dir, sample_image=True, eval_results=eval_results, datasets=datasets,
               training_config=training_config, repo_id=push_to_hub or None, description=description)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "training_config.json").write_text(json.dumps(training_config, indent=2) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"wrote {out_dir}: {json.dumps(metrics)}")
    if push_to_hub:
        info = push(out_dir, push_to_hub)
        print(f"pushed {out_dir} to {push_to_hub} @ {info.oid}: {info.commit_url}")


# ----------------------------------------------------------------------------------------------- image folders
def list_images(folders: list[str | Path]) -> list[Path]:
    files = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise SystemExit(f"data folder {folder} does not exist (set --data or CNNIMG_DATA)")
        if "val" in folder.parts:
            raise SystemExit(f"{folder} is a validation set: never train on val/")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return files


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


class PatchDataset(torch.utils.data.Dataset):
    """Random `size` x `size` RGB crops with flips and 90-degree rotations, from images held in memory.

    `epoch_size` crops make one epoch. Images smaller than the crop are skipped. `scales` optionally
    rescales each source image (data augmentation for SR/denoise), done once up front. Crop `i` is drawn from its own
    random stream, seeded by (`seed`, i): the ranks of a distributed run (which get disjoint indices) and the workers
    see different crops, and a run is reproducible. Set `seed` anew after a resume (e.g. seed + step).
    """

    def __init__(self, files: list[Path], size: int, epoch_size: int, scales: tuple[float, ...] = (1.0,),
                 seed: int = 0):
        self.images = []
        for f in files:
            img = Image.open(f).convert("RGB")
            for s in scales:
                im = img if s == 1.0 else img.resize((round(img.width * s), round(img.height * s)), Image.BICUBIC)
                if min(im.size) >= size:
                    self.images.append(np.asarray(im))
        if not self.images:
            raise SystemExit(f"no training image is at least {size} px")
        self.size, self.epoch_size, self.seed = size, epoch_size, seed

    def __len__(self) -> int:
        return self.epoch_size

    def __getitem__(self, i: int) -> torch.Tensor:
        rng = random.Random(self.seed * 1_000_003 + i)
        img = self.images[rng.randrange(len(self.images))]
        y, x = rng.randrange(img.shape[0] - self.size + 1), rng.randrange(img.shape[1] - self.size + 1)
        p = img[y:y + self.size, x:x + self.size]
        if rng.random() < 0.5:
            p = p[:, ::-1]
        p = np.rot90(p, rng.randrange(4))
        return torch.from_numpy(np.ascontiguousarray(p)).permute(2, 0, 1).float() / 255.0


# ----------------------------------------------------------------------------------------------- degradations
# ----------------------------------------------------------------------------------------------- labelled sets
def fashion_mnist(split: str, root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, 28, 28) uint8 images and (N,) labels; split 'train' (60k) or 'test' (10k); root default FASHION_MNIST."""
    root = Path(root or FASHION_MNIST)
    prefix = "train" if split == "train" else "t10k"
    img_path, lab_path = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    if not img_path.exists():
        raise SystemExit(f"{img_path} missing: apt-get install -y dataset-fashion-mnist (or pass --data)")
    with gzip.open(img_path) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(lab_path) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def cifar10(split: str, archive: Path | None = None, cache: Path | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                     list[str]]:
    """(N, 3, 32, 32) uint8, (N,) labels and class names from the JPEG tarball (decoded once, cached as .npz in
    `cache`, default $CNNIMG_CACHE or <repo>/data)."""
    archive = archive or DATA / "cifar10-jpg.tar.gz"
    cache = cache or Path(os.environ.get("CNNIMG_CACHE", REPO / "data"))
    cached = cache / f"cifar10-{split}.npz"
    if cached.exists():  # decoded from another archive: stale (caches from before sources were recorded are kept)
        with np.load(cached) as d:
            if "source" in d.files and str(d["source"]) != str(archive.resolve()):
                cached.unlink()
    if not cached.exists():
        if not archive.exists():
            raise SystemExit(f"{archive} missing (pass --data)")
        images, labels, names = [], [], {}
        with tarfile.open(archive) as tar:
            for m in tar:
                parts = Path(m.name).parts
                if not m.isfile() or split not in parts or not m.name.lower().endswith((".jpg", ".jpeg", ".png")):
                    continue
                cls = parts[-2]
                names.setdefault(cls, None)
                images.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")))
                labels.append(cls)
        classes = sorted(names)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(cached, images=np.stack(images), labels=np.array([classes.index(c) for c in labels]),
                 classes=np.array(classes), source=str(archive.resolve()))
    d = np.load(cached)
    return (torch.from_numpy(d["images"]).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(d["labels"]).long(),
            [str(c) for c in d["classes"]])
