"""Command line: ``python -m cnnimg_hub {classify,generate,upscale,inpaint,denoise,list,info} ...``, and for
publishing: ``push``, ``refresh-card``, ``export-onnx``, ``deploy-space``.

Inputs are files or folders (searched recursively for images). Each bad file is reported with its error and
skipped; the exit code is 0 when everything worked, 1 when anything failed, 2 for usage errors. Errors the
package raises on purpose (CnnImgError) are printed as one line, without a traceback.

Models: ``--model`` takes a local folder or a Hub repo id (``user/name`` or ``user/name@revision``); without it,
the folder DEFAULT_WEIGHTS names under ``weights/`` at the repository root is used.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from . import pipelines
from ._hub import read_config, resolve_folder
from ._registry import list_models, model_class
from .errors import CnnImgError
from .imageio import IMAGE_SUFFIXES, open_image, save_png
from .tasks import BY_KEY

# ----------------------------------------------------------------------------------------------- defaults
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"  # the repo's weights/, next to the package
DEFAULT_WEIGHTS = {  # subcommand -> folder under WEIGHTS_DIR used when --model is not given
    "classify": "classify-cifar10",
    "generate": "generate-fashion-mnist-gan",
    "upscale": "sr-x{scale}",  # filled with --scale (default 4)
    "inpaint": "inpaint",
    "denoise": "denoise",
}
DEFAULT_SCALE = 4


# ----------------------------------------------------------------------------------------------- helpers
def _tile(text: str) -> int | str | None:
    """--tile: "auto", "none" or a size in pixels."""
    if text.lower() in ("auto", "none"):
        return None if text.lower() == "none" else "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a number of pixels, got {text!r}") from None


def _load(args: argparse.Namespace, command: str):
    from ._hub import load_model

    source = args.model
    if source is None:
        name = DEFAULT_WEIGHTS[command].format(scale=getattr(args, "scale", None) or DEFAULT_SCALE)
        source = WEIGHTS_DIR / name
        if not source.is_dir():
            raise CnnImgError(f"no --model given and the default {source} does not exist; pass --model with a model "
                              f"folder or a Hub repo id (user/name[@revision]); `python -m cnnimg_hub list` shows "
                              f"what is available")
    device = getattr(args, "device", None)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and device in (None, "auto") and torch.cuda.is_available():
        args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"  # a GPU each
    model = load_model(source, task=BY_KEY[command].name)
    if getattr(args, "compile", False):
        model = torch.compile(model)  # compiled on the first image of each size; the pipelines take it as is
    return model


def collect_inputs(paths: list[str]) -> list[tuple[Path, Path | None]]:
    """(file, the folder it was found in or None) for each input; folders are searched recursively.

    Paths that do not exist are kept, so they are reported as failures like any other bad file.
    """
    found: list[tuple[Path, Path | None]] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            found += [(p, path) for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        else:
            found.append((path, None))
    return found


def output_path(file: Path, root: Path | None, output: str | None, suffix: str) -> Path:
    """Where the result for `file` goes: ``<stem><suffix>.png``, under -o (keeping the layout below an input
    folder), else next to the input file, or in a sibling folder ``<folder><suffix>`` for folder inputs (so a
    second run does not pick up the first run's outputs as inputs)."""
    name = f"{file.stem}{suffix}.png"
    rel = file.parent.relative_to(root) if root is not None else Path()
    if output is not None:
        return Path(output) / rel / name
    if root is not None:
        return root.parent / f"{root.name}{suffix}" / rel / name
    return file.parent / name


def distributed() -> tuple[int, int]:
    """(rank, world size) when launched by torchrun / `accelerate launch` (RANK and WORLD_SIZE set), else (0, 1).
    With several processes a gloo process group is joined, for the merged summary."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("gloo")
    return int(os.environ.get("RANK", "0")), world


def _gather(items: list) -> list:
    """Every rank's `items`, concatenated in rank order (the items themselves, on one process)."""
    if not torch.distributed.is_initialized():
        return items
    parts: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, items)
    return [x for part in parts for x in part]


def _each(files: list[tuple[Path, Path | None]], work: Callable[[Path, Path | None], None], desc: str) -> int:
    """Run `work` on each file with a progress bar; report and count the failures. Under torchrun / `accelerate
    launch` with N processes, process r takes files r, r + N, ...; rank 0 shows the bar and the merged summary."""
    if not files:
        print("error: no input images found (folders are searched for "
              f"{', '.join(sorted(IMAGE_SUFFIXES))})", file=sys.stderr)
        return 1
    rank, world = distributed()
    mine = files[rank::world]
    failed = 0
    bar = tqdm(mine, desc=desc if world == 1 else f"{desc} (rank 0 of {world})", unit="image",
               disable=None if rank == 0 else True)  # disable=None: no bar when not a tty
    for path, root in bar:
        try:
            work(path, root)
        except (CnnImgError, OSError) as e:
            failed += 1
            tqdm.write(f"error: {path}: {e}", file=sys.stderr)
    failed = sum(_gather([failed]))
    if rank == 0 and world > 1:
        print(f"{len(files) - failed} of {len(files)} file(s) done by {world} processes", file=sys.stderr)
    if failed and rank == 0:
        print(f"{failed} of {len(files)} file(s) failed", file=sys.stderr)
    return 1 if failed else 0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "class"


def _grid(images: list, columns: int, pad: int = 2):
    """Images of one size in rows of `columns`, `pad` pixels apart on black."""
    from PIL import Image

    w, h = images[0].size
    rows = -(-len(images) // columns)
    grid = Image.new(images[0].mode, (columns * (w + pad) + pad, rows * (h + pad) + pad))
    for i, im in enumerate(images):
        grid.paste(im, (pad + (i % columns) * (w + pad), pad + (i // columns) * (h + pad)))
    return grid


def _class_index(model, text: str) -> int:
    """--class: an index or a label name (case-insensitive)."""
    names = list(model.label_names)
    if text.lstrip("-").isdigit():
        return int(text)  # the range is checked by the pipeline, with the list of labels in its message
    matches = [i for i, n in enumerate(names) if n.lower() == text.lower()]
    if not matches:
        raise CnnImgError(f"unknown class {text!r}; this model's classes are: {', '.join(names)} (or 0-"
                          f"{len(names) - 1})")
    return matches[0]


# ----------------------------------------------------------------------------------------------- commands
def cmd_classify(args: argparse.Namespace) -> int:
    model = _load(args, "classify")
    results: list[dict[str, Any]] = []

    def work(path: Path, root: Path | None) -> None:
        try:
            top, _ = pipelines.classify(model, open_image(path), top_k=args.top_k, device=args.device,
                                        precision=args.precision)
        except (CnnImgError, OSError) as e:
            results.append({"file": str(path), "error": str(e)})
            raise
        results.append({"file": str(path), "predictions": [{"label": l, "probability": p} for l, p in top]})
        if not args.json:
            tqdm.write(f"{path}: " + ", ".join(f"{l} {p:.1%}" for l, p in top))

    files = collect_inputs(args.inputs)
    code = _each(files, work, "classify")
    order = {str(path): i for i, (path, _) in enumerate(files)}
    results = sorted(_gather(results), key=lambda r: order[r["file"]])  # one list, in input order, on every rank
    if distributed()[0] != 0:
        return code
    text = json.dumps(results, indent=2) + "\n" if args.json else "".join(
        f"{r['file']}\t" + ("ERROR " + r["error"] if "error" in r else
                            "\t".join(f"{p['label']}:{p['probability']:.4f}" for p in r["predictions"])) + "\n"
        for r in results)
    if args.json:
        sys.stdout.write(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text)
    return code


def cmd_generate(args: argparse.Namespace) -> int:
    model = _load(args, "generate")
    out = Path(args.output or "generated")
    classes = [_class_index(model, args.class_)] if args.class_ is not None else list(range(model.num_classes))
    rows = []
    for c in classes:
        label = _slug(model.label_names[c]) if 0 <= c < model.num_classes else str(c)
        if args.interpolate is None:
            images, info = pipelines.generate(model, c, args.num_images, args.seed, device=args.device,
                                              precision=args.precision)
            stem = f"{label}_seed{args.seed}"
        else:
            images, info = pipelines.interpolate(model, c, args.seed, args.interpolate, args.num_images,
                                                 device=args.device, precision=args.precision)
            stem = f"{label}_seed{args.seed}-{args.interpolate}"
        for i, im in enumerate(images):
            save_png(im, out / f"{stem}_{i:02d}.png")
        rows += images
        print(f"{model.label_names[c]}: {len(images)} image(s) in {out} ({info.summary()})")
    grid = save_png(_grid(rows, args.num_images), out / "grid.png")
    print(f"grid: {grid}")
    return 0


def _restoration(args: argparse.Namespace, command: str, run: Callable, suffix: str) -> int:
    def work(path: Path, root: Path | None) -> None:
        result, info = run(open_image(path), path, root)
        dest = save_png(result, output_path(path, root, args.output, suffix))
        tqdm.write(f"{path} -> {dest} ({info.summary()})")

    return _each(collect_inputs(args.inputs), work, command)


def cmd_upscale(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    model = _load(args, "upscale")
    if args.scale is not None and args.model is not None and args.scale != model.scale:
        parser.error(f"--scale {args.scale} disagrees with the model, which upscales x{model.scale}; "
                     f"--scale only picks the default model, leave it out with --model")
    return _restoration(args, "upscale", lambda im, path, root: pipelines.upscale(
        model, im, device=args.device, tile=args.tile, precision=args.precision), f"_x{model.scale}")


def cmd_denoise(args: argparse.Namespace) -> int:
    model = _load(args, "denoise")
    return _restoration(args, "denoise", lambda im, path, root: pipelines.denoise(
        model, im, args.sigma, device=args.device, tile=args.tile, precision=args.precision), "_denoised")


def _mask_for(mask: Path, path: Path, root: Path | None) -> Path:
    """--mask is one file for every input, or a folder with a mask of the same relative name (any extension)."""
    if not mask.is_dir():
        return mask
    rel = path.relative_to(root) if root is not None else Path(path.name)
    for candidate in [mask / rel] + [mask / rel.with_suffix(s) for s in sorted(IMAGE_SUFFIXES)]:
        if candidate.is_file():
            return candidate
    raise CnnImgError(f"no mask for {path} in {mask} (expected {mask / rel.with_suffix('.png')} or the same name "
                      f"with another image extension)")


def cmd_inpaint(args: argparse.Namespace) -> int:
    model = _load(args, "inpaint")
    mask = Path(args.mask)
    if not mask.exists():
        raise CnnImgError(f"--mask {mask} does not exist; pass a mask image or a folder of masks")
    return _restoration(args, "inpaint", lambda im, path, root: pipelines.inpaint(
        model, im, open_image(_mask_for(mask, path, root)), dilate=args.dilate, device=args.device, tile=args.tile,
        precision=args.precision), "_inpainted")


def cmd_list(args: argparse.Namespace) -> int:
    print("registered models:")
    for name in list_models():
        print(f"  {name:28s} {model_class(name).task}")
    print(f"model folders in {WEIGHTS_DIR}:")
    folders = sorted(p for p in WEIGHTS_DIR.iterdir() if p.is_dir()) if WEIGHTS_DIR.is_dir() else []
    for folder in folders:
        try:
            config = read_config(folder)
            print(f"  {folder.name:28s} {config.get('task')} ({config['model_name']})")
        except CnnImgError as e:
            print(f"  {folder.name:28s} unreadable: {e}")
    if not folders:
        print("  (none)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    config = read_config(resolve_folder(args.model))
    print(json.dumps(config, indent=2, sort_keys=True))
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from ._hub import push_to_hub

    info = push_to_hub(args.folder, args.repo_id, revision=args.revision, token=args.token, private=args.private,
                       commit_message=args.message, create_pr=args.create_pr, overwrite_card=args.overwrite_card)
    print(f"pull request: {info.pr_url}" if info.pr_url else f"pushed {args.folder} to {args.repo_id}: "
                                                             f"{info.commit_url}")
    return 0


def cmd_refresh_card(args: argparse.Namespace) -> int:
    from ._hub import refresh_card

    if args.repo_id and len(args.folders) > 1:
        raise CnnImgError("--repo-id names the repo of one folder: pass one folder with it")
    for folder in args.folders:
        refresh_card(folder, repo_id=args.repo_id)
        print(f"{folder}: README.md" + (", sample.jpg" if (Path(folder) / "sample.jpg").is_file() else "")
              + " and the safetensors metadata written (tensors unchanged)")
    return 0


def cmd_export_onnx(args: argparse.Namespace) -> int:
    from ._hub import load_model
    from .export import export_onnx

    model = load_model(args.model)
    for r in export_onnx(model, args.output):
        print(f"ONNX Runtime vs PyTorch at input {'x'.join(map(str, r['shape']))}: max difference "
              f"{r['max_abs_diff']:.3g}")
    print(f"wrote {args.output} (float32; dynamic batch, height and width)")
    return 0


def cmd_deploy_space(args: argparse.Namespace) -> int:
    from .space import deploy_space

    weights = None if args.no_weights else Path(args.weights)
    url = deploy_space(args.repo_id, models=args.models, weights=weights, hardware=args.hardware,
                       private=args.private, token=args.token)
    print(f"Space: {url}")
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnnimg_hub", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser, command: str) -> None:
        p.add_argument("--model", help="model folder or Hub repo id (user/name[@revision]); default: weights/"
                                       + DEFAULT_WEIGHTS[command])
        p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
        p.add_argument("--precision", default="auto", choices=["auto", *pipelines.PRECISIONS],
                       help="auto: bf16 on a CPU with native bf16 when the model's config.json says its quality "
                            "holds in bf16 (measured), fp16 on CUDA for image-to-image models, fp32 otherwise")
        if command != "generate":
            p.add_argument("--compile", action="store_true",
                           help="torch.compile the model: seconds of compiling per image size, then up to 2x faster "
                                "(inpainting on a CPU); for many images of one size")

    def restoration(p: argparse.ArgumentParser) -> None:
        p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
        p.add_argument("-o", "--output", help="output folder (default: next to each input, with a suffix)")
        p.add_argument("--tile", type=_tile, default="auto", help="auto (the model's advice), none, or tile "
                                                                  "size in pixels")

    p = sub.add_parser("classify", help="top-k labels of images")
    common(p, "classify")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("-k", "--top-k", type=int, default=5, help="labels per image (default 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("-o", "--output", help="also write the results to this file (JSON with --json, else TSV)")

    p = sub.add_parser("generate", help="class-conditional samples and a grid")
    common(p, "generate")
    p.add_argument("--class", dest="class_", help="class index or name (default: every class, one grid row each)")
    p.add_argument("-n", "--num-images", type=int, default=8, help=f"images per class, 1-{pipelines.MAX_GENERATE} "
                                                                   f"(default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same images")
    p.add_argument("--interpolate", type=int, metavar="SEED_B", help="walk from --seed's latent to SEED_B's in "
                                                                     "--num-images steps instead")
    p.add_argument("-o", "--output", help="output folder (default: ./generated)")

    p = sub.add_parser("upscale", help="super-resolution")
    common(p, "upscale")
    restoration(p)
    p.add_argument("--scale", type=int, choices=[2, 3, 4], help=f"picks the default model weights/sr-x<scale> "
                                                                f"(default {DEFAULT_SCALE})")

    p = sub.add_parser("denoise", help="remove Gaussian noise")
    common(p, "denoise")
    restoration(p)
    p.add_argument("--sigma", type=float, help="noise std on the 0-255 scale (default: estimated per image)")

    p = sub.add_parser("inpaint", help="fill masked holes")
    common(p, "inpaint")
    restoration(p)
    p.add_argument("--mask", required=True, help="mask image (white = hole), or a folder of masks with the "
                                                 "inputs' names")
    p.add_argument("--dilate", type=int, default=0, help="grow the holes by this many pixels (default 0)")

    sub.add_parser("list", help="registered models and the folders in weights/")
    p = sub.add_parser("info", help="print a model's config.json")
    p.add_argument("model", help="model folder or Hub repo id (user/name[@revision])")

    def hub_access(p: argparse.ArgumentParser) -> None:
        p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                                                               "visibility)")
        p.add_argument("--token", help="Hub token (default: HF_TOKEN or `hf auth login`); never printed or written")

    p = sub.add_parser("push", help="upload a model folder to the Hub in one commit")
    p.add_argument("folder", help="model folder (config.json, model.safetensors, README.md)")
    p.add_argument("repo_id", help="user/name")
    hub_access(p)
    p.add_argument("--revision", help="branch to commit to (created from main if new)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.add_argument("--overwrite-card", action="store_true", help="replace a README.md that was edited on the Hub "
                                                                 "(by default it is kept)")
    p.add_argument("-m", "--message", help="commit message")

    p = sub.add_parser("refresh-card", help="write a model folder's card, sample image and safetensors metadata "
                                            "again from what the folder holds")
    p.add_argument("folders", nargs="+", help="model folders, e.g. weights/*")
    p.add_argument("--repo-id", help="the Hub repo the (one) folder is pushed to: its usage snippet loads that")

    p = sub.add_parser("export-onnx", help="ONNX graph of an image-to-image or classification model, checked "
                                           "against PyTorch")
    p.add_argument("model", help="model folder or Hub repo id (user/name[@revision])")
    p.add_argument("output", help="the .onnx file to write")

    p = sub.add_parser("deploy-space", help="publish the app as a Gradio Space in one commit")
    p.add_argument("repo_id", help="user/name of the Space")
    hub_access(p)
    p.add_argument("--models", nargs="*", default=[], metavar="REPO_ID",
                   help="model repos the Space shows (its card's models:)")
    p.add_argument("--weights", default=str(WEIGHTS_DIR), help="model folders to bundle (default: weights/)")
    p.add_argument("--no-weights", action="store_true", help="bundle no model folders (the tabs load Hub repos)")
    p.add_argument("--hardware", default="cpu-basic", help="suggested_hardware of the Space (default cpu-basic)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    commands = {"classify": cmd_classify, "generate": cmd_generate, "denoise": cmd_denoise, "inpaint": cmd_inpaint,
                "list": cmd_list, "info": cmd_info, "push": cmd_push, "refresh-card": cmd_refresh_card,
                "export-onnx": cmd_export_onnx, "deploy-space": cmd_deploy_space}
    try:
        if args.command == "upscale":
            return cmd_upscale(args, parser)
        return commands[args.command](args)
    except CnnImgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if torch.distributed.is_initialized():  # leave a torchrun group cleanly: together, then destroyed
            torch.distributed.barrier()  # rank 0 may still write the merged results; an early leaver got aborted
            torch.distributed.destroy_process_group()
