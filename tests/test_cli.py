"""`python -m cnnimg_hub ...` in a subprocess, one call per subcommand, on tiny models saved to tmp_path."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnimg_hub import cli, create_model, save_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with tiny models and an image tree: a.png, sub/b.jpg (gray), bad.png (text), masks/."""
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    models = {"classify": create_model("classifier-cifar10", widths=[8, 8]),
              "generate": create_model("generator-dcgan", base_channels=8),
              "upscale": create_model("sr-espcn", scale=2, n_feats=8, n_layers=1),
              "denoise": create_model("denoise-ffdnet", n_feats=8, n_layers=3),
              "inpaint": create_model("inpaint-gated-unet", base_channels=4, depth=1, dilations=[1])}
    for name, model in models.items():
        save_model(model, root / "models" / name)
    rng = np.random.default_rng(0)
    (root / "imgs" / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / "imgs" / "a.png")
    Image.fromarray(rng.integers(0, 256, (16, 12), dtype=np.uint8)).save(root / "imgs" / "sub" / "b.jpg")
    (root / "imgs" / "bad.png").write_text("not an image")
    (root / "imgs" / "notes.txt").write_text("ignored: not an image extension")
    (root / "masks").mkdir()
    Image.new("L", (24, 20), 255).save(root / "masks" / "a.png")
    # Masks are looked up by the path relative to the input folder (imgs/sub/b.jpg given as imgs/sub -> b.*).
    Image.new("L", (12, 16), 255).save(root / "masks" / "b.png")  # same name, another extension
    return root


def run(work, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-m", "cnnimg_hub", *map(str, args)], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    print(proc.stdout, proc.stderr)
    return proc


def test_classify_json(work):
    proc = run(work, "classify", "imgs", "--model", "models/classify", "-k", "3", "--json", "-o", "out/top.json")
    assert proc.returncode == 1  # bad.png failed; the two images were classified
    results = json.loads(proc.stdout)
    assert json.loads((work / "out" / "top.json").read_text()) == results
    good = [r for r in results if "predictions" in r]
    assert sorted(Path(r["file"]).name for r in good) == ["a.png", "b.jpg"]
    assert all(len(r["predictions"]) == 3 for r in good)
    assert [r for r in results if "error" in r][0]["file"].endswith("bad.png")
    assert "Traceback" not in proc.stderr


def test_generate(work):
    proc = run(work, "generate", "--model", "models/generate", "--class", "trouser", "-n", "3", "--seed", "5",
               "-o", "gen")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (work / "gen").iterdir()) == [
        "grid.png", "trouser_seed5_00.png", "trouser_seed5_01.png", "trouser_seed5_02.png"]
    assert Image.open(work / "gen" / "trouser_seed5_00.png").size == (28, 28)


def test_precision_is_forced_for_classify_and_generate(work):
    proc = run(work, "generate", "--model", "models/generate", "--class", "1", "-n", "2", "--precision", "bf16",
               "-o", "gen-bf16")
    assert proc.returncode == 0 and "bfloat16" in proc.stdout, proc.stderr
    proc = run(work, "classify", "imgs/a.png", "--model", "models/classify", "--precision", "bf16")
    assert proc.returncode == 0 and "a.png" in proc.stdout, proc.stderr
    assert run(work, "classify", "imgs/a.png", "--model", "models/classify", "--precision", "int8").returncode == 2


def test_upscale_folder_with_a_bad_file(work):
    proc = run(work, "upscale", "imgs", "--model", "models/upscale", "--tile", "none")
    assert proc.returncode == 1
    assert "bad.png" in proc.stderr and "not an image" in proc.stderr and "Traceback" not in proc.stderr
    assert Image.open(work / "imgs_x2" / "a_x2.png").size == (48, 40)
    b = Image.open(work / "imgs_x2" / "sub" / "b_x2.png")
    assert b.size == (24, 32) and b.mode == "L"


def test_denoise_into_output_folder(work):
    proc = run(work, "denoise", "imgs/a.png", "imgs/sub", "--model", "models/denoise", "--sigma", "20", "-o", "dn")
    assert proc.returncode == 0, proc.stderr
    assert (work / "dn" / "a_denoised.png").is_file() and (work / "dn" / "b_denoised.png").is_file()


def test_denoise_compiled_matches_eager(work):
    # torch.compile for real (C++ codegen): the same results as eager, to the 8-bit level
    proc = run(work, "denoise", "imgs/a.png", "--model", "models/denoise", "--sigma", "20", "-o", "dn-eager")
    assert proc.returncode == 0, proc.stderr
    proc = run(work, "denoise", "imgs/a.png", "--model", "models/denoise", "--sigma", "20", "-o", "dn-compiled",
               "--compile")
    assert proc.returncode == 0, proc.stderr
    eager, compiled = (np.asarray(Image.open(work / d / "a_denoised.png"), np.int16) for d in ("dn-eager",
                                                                                            "dn-compiled"))
    assert np.abs(eager - compiled).max() <= 1


def test_inpaint_with_mask_folder(work):
    proc = run(work, "inpaint", "imgs/a.png", "imgs/sub", "--model", "models/inpaint", "--mask", "masks",
               "--precision", "fp32", "-o", "inp")
    assert proc.returncode == 0, proc.stderr
    assert (work / "inp" / "a_inpainted.png").is_file() and (work / "inp" / "b_inpainted.png").is_file()


def test_list(work):
    proc = run(work, "list")
    assert proc.returncode == 0 and "sr-espcn" in proc.stdout and "super-resolution" in proc.stdout


def test_info_and_usage_errors(work, capsys):
    proc = run(work, "info", "models/upscale")
    assert proc.returncode == 0
    config = json.loads(proc.stdout)
    assert config["model_name"] == "sr-espcn" and config["scale"] == 2
    # Usage errors and refusals in-process (a subprocess each would be slow).
    with pytest.raises(SystemExit) as e:
        cli.main(["upscale", "x.png", "--tile", "big"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["upscale", "x.png", "--model", str(work / "models" / "upscale"), "--scale", "4"])
    assert e.value.code == 2
    assert cli.main(["info", str(work / "nowhere")]) == 1
    assert "neither an existing folder" in capsys.readouterr().err


def test_output_paths():
    f, root = Path("in/sub/a.jpg"), Path("in")
    assert cli.output_path(f, root, None, "_x4") == Path("in_x4/sub/a_x4.png")
    assert cli.output_path(f, root, "out", "_x4") == Path("out/sub/a_x4.png")
    assert cli.output_path(Path("in/a.jpg"), None, None, "_x4") == Path("in/a_x4.png")


def run_n(work, n: int, *args):
    """The CLI under torchrun with n CPU processes (gloo), as README shows."""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n),
                           "-m", "cnnimg_hub", *map(str, args)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    print(proc.stdout, proc.stderr)
    return proc


def test_two_processes_split_the_files_and_write_what_one_does(work):
    imgs = work / "many"
    imgs.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (18 + i, 22, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    one = run(work, "denoise", "many", "--model", "models/denoise", "--sigma", "15", "-o", "dn-1")
    two = run_n(work, 2, "denoise", "many", "--model", "models/denoise", "--sigma", "15", "-o", "dn-2")
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-2000:]
    names = sorted(p.name for p in (work / "dn-1").iterdir())
    assert len(names) == 5 and names == sorted(p.name for p in (work / "dn-2").iterdir())
    assert all((work / "dn-1" / n).read_bytes() == (work / "dn-2" / n).read_bytes() for n in names)
    assert "5 of 5 file(s) done by 2 processes" in two.stderr
    c1 = run(work, "classify", "many", "--model", "models/classify", "--json")
    c2 = run_n(work, 2, "classify", "many", "--model", "models/classify", "--json")
    assert c2.returncode == 0 and json.loads(c1.stdout) == json.loads(c2.stdout)  # merged, in input order, once
