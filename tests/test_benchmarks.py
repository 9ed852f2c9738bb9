"""benchmarks/run.py on tiny untrained models and a tiny fake data root: the tables print and the JSON has its keys.

No timing assertions: the numbers of untrained models on a shared CPU mean nothing; what is checked is that every
section runs end to end, skips what is missing with a note, and writes what the report promises.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnimg_hub

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import readme as bench_readme
from benchmarks import training_speed  # noqa: E402
from benchmarks import run  # noqa: E402

# folder name -> (registered model, small arguments); folder names as the shipped weights
TINY_MODELS = {
    "classify-fashion-mnist": ("classifier-fashion-mnist", dict(widths=[8, 16])),
    "generate-fashion-mnist-vae": ("generator-vae", dict(base_channels=8)),
    "sr-x2": ("sr-espcn", dict(scale=2, n_feats=8, n_layers=1)),
    "sr-x4": ("sr-espcn", dict(scale=4, n_feats=8, n_layers=1)),
    "sr-x4-large": ("sr-edsr-small", dict(scale=4, n_feats=8, n_resblocks=1)),
    "inpaint": ("inpaint-unet", dict(channels=[8, 8, 8], n_blocks=1)),
    "denoise": ("denoise-unet", dict(channels=[8, 8, 8], n_blocks=1)),
}  # classify-cifar10 and the GAN are left out on purpose: missing folders must be skipped with a note


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights")
    for name, (model_name, kwargs) in TINY_MODELS.items():
        cnnimg_hub.save_model(cnnimg_hub.create_model(model_name, **kwargs), folder / name)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """val/Set5, Set14, BSD100, CBSD68 with two small photos each, and MATLAB-LR files for Set5 x2."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    sizes = {"Set5": 48, "Set14": 48, "BSD100": 256, "CBSD68": 32}
    for name, side in sizes.items():
        (root / "val" / name).mkdir(parents=True)
        for i in range(2):
            a = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
            Image.fromarray(a).save(root / "val" / name / f"img_{i}.png")
    (root / "sr-lr-matlab" / "Set5" / "x2").mkdir(parents=True)
    for i in range(2):
        Image.open(root / "val" / "Set5" / f"img_{i}.png").resize((24, 24), Image.BICUBIC).save(
            root / "sr-lr-matlab" / "Set5" / "x2" / f"img_{i}_SRF_2_LR.png")
    return root


def test_quick_run_prints_tables_and_writes_json(weights, data, data_root, tmp_path, capsys, monkeypatch):
    sys.path.insert(0, str(Path(run.__file__).resolve().parents[1] / "training"))
    import common
    monkeypatch.setattr(common, "FASHION_MNIST", data_root / "fashion-mnist")  # tiny, made here: no Debian package
    out = tmp_path / "results.json"
    run.main(["--quick", "--weights", str(weights), "--data", str(data), "--json", str(out), "--threads", "1",
              "--only", "speed,roofline,scaling,quality", "--sizes-scale", "0.1", "--bm3d-images", "1"])
    printed = capsys.readouterr().out
    for caption in ("Speed and memory", "Roofline:", "Roofline variants", "Scaling:", "Super-resolution:",
                    "Denoising:", "Inpainting:", "Classification:", "Generation:"):
        assert f"**{caption}" in printed, caption
    assert "`python -m benchmarks.run --quick --weights" in printed  # captions name the command
    assert "classify-cifar10 is missing" in printed and "generate-fashion-mnist-gan is missing" in printed
    assert "torch.compile is skipped in --quick" in printed

    results = json.loads(out.read_text())
    assert {"date", "command", "quick", "machine", "sections", "tables", "targets", "notes", "seconds"} <= set(results)
    assert {"cpu", "cores", "torch", "threads", "device"} <= set(results["machine"])
    assert results["machine"]["threads"] == 1 and results["quick"] is True
    assert set(results["sections"]) == {"speed", "roofline", "scaling", "quality"}
    methods = {r["method"] for r in results["sections"]["speed"]["rows"]}
    assert {"sr-x4", "PIL bicubic", "PIL Lanczos", "denoise", "OpenCV NLM", "BM3D", "inpaint", "OpenCV Telea",
            "OpenCV NS", "classify-fashion-mnist", "generate-fashion-mnist-vae"} <= methods
    for r in results["sections"]["speed"]["rows"]:
        assert r["seconds"] > 0 and r["peak_mib"] >= 0 and r["repeats"] >= 1
    for name in TINY_MODELS:  # every CNN in fp32 and bf16, the default (never measured: fp32) marked
        got = {(r["precision"], r["default"]) for r in results["sections"]["speed"]["rows"] if r["method"] == name}
        assert got == {("fp32", True), ("bf16", False)}, name
    assert results["targets"]["restore_2x"]["status"] == "n/a" and "not measured" in results["targets"][
        "restore_2x"]["detail"]
    roofline = results["sections"]["roofline"]
    assert {r["model"] for r in roofline["rows"]} == set(TINY_MODELS)
    assert all(r["flops_per_unit"] > 0 for r in roofline["rows"])
    assert {"eager fp32", "channels_last", "bf16 autocast, channels_last", "jit.trace + freeze"} <= {
        v["variant"] for v in roofline["variants"]}
    assert set(roofline["peaks"]) == {"fp32", "bf16"} and all(v > 0 for p in roofline["peaks"].values()
                                                               for v in p.values())
    assert all(r["precision"] == "fp32" and r["variant"] == "channels_last" and r["peak_fraction"] > 0
               for r in roofline["rows"])
    assert "**Peaks on cpu" in printed
    assert len(results["sections"]["scaling"]["rows"]) == 3
    quality = results["sections"]["quality"]
    assert {(r["set"], r["lr"]) for r in quality["sr"] if r["model"] == "sr-x2"} >= {("Set5", "matlab"),
                                                                                   ("BSD100", "pil")}
    assert [r["sigma"] for r in quality["denoise"]] == [15, 25, 50] and quality["denoise"][1]["bm3d_images"] == 1
    assert quality["denoise"][0]["bm3d_images"] == 0  # --quick: BM3D at sigma 25 only
    assert {"speed", "quality", "quality: BM3D", "quality: sr-x2 pil", "total"} <= set(results["seconds"])
    checks = {r["model"]: r for r in quality["precision"]}
    assert set(checks) == set(TINY_MODELS) and checks["sr-x2"]["recorded"] is None and "change" in checks["denoise"]
    assert "**Precision: each model's quality metric in fp32 and in bf16" in printed
    assert {"psnr", "telea_psnr", "ns_psnr", "hole_psnr", "telea_hole_psnr"} <= set(quality["inpaint"][0])
    assert "**Super-resolution under other downsamplers" in printed
    assert {r["downsampler"] for r in quality["sr_downsamplers"]} == {"pil-bicubic", "cv2-cubic", "cv2-area",
                                                                      "cv2-linear"}
    assert {"sr_any_downsampler", "sr_pil_kept", "inpaint_bsd100", "denoise_bm3d_margin"} <= set(results["targets"])
    # the README block is rendered from the same JSON: every table, between the markers, the rest untouched
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n{bench_readme.START}\nold numbers\n{bench_readme.END}\nafter\n")
    bench_readme.main(["--results", str(out), "--readme", str(readme)])
    text = readme.read_text()
    assert text.startswith("# title\n\nbefore\n") and text.endswith(f"{bench_readme.END}\nafter\n")
    assert "old numbers" not in text and "`--quick` run" in text and "#### Targets" in text
    assert all(t["markdown"] in text for t in results["tables"])
    readme.write_text("no markers")
    with pytest.raises(SystemExit, match="needs exactly one"):
        bench_readme.main(["--results", str(out), "--readme", str(readme)])
    # with --sizes-scale the speed targets are not judged (n/a), the quality ones are
    assert results["targets"]["sr_x4_512"]["status"] == "n/a"
    assert results["targets"]["denoise_vs_bm3d"]["status"] in ("PASS", "MISS")


def test_merge_replaces_the_rows_of_the_models_measured_again(weights, data, tmp_path, capsys):
    """A full run, then `--only quality --models sr-x2 --merge`: the sr-x2 rows and the targets it judges come from
    the second command, every other row, table and section stays from the first; the README says so."""
    out = tmp_path / "results.json"
    first = ["--quick", "--weights", str(weights), "--data", str(data), "--json", str(out), "--threads", "1",
             "--only", "scaling,quality", "--sizes-scale", "0.1", "--bm3d-images", "0",
             "--models", "sr-x2,sr-x4,inpaint"]
    run.main(first)
    before = json.loads(out.read_text())
    second = first[:first.index("--only")] + ["--only", "quality", "--models", "sr-x2", "--merge"]
    run.main(second)
    printed = capsys.readouterr().out
    assert f"merged into {out}" in printed
    merged = json.loads(out.read_text())
    cmd1, cmd2 = before["command"], merged["command"]
    assert cmd1 != cmd2 and [r["command"] for r in merged["runs"]] == [cmd1, cmd2]
    assert merged["runs"][1]["sections"] == ["quality"] and merged["runs"][1]["models"] == ["sr-x2"]
    tables = {(t["section"], t["caption"]): t for t in merged["tables"]}
    assert len(tables) == len(merged["tables"])  # no table twice
    assert [t for t in merged["tables"] if t["section"] == "scaling"] == [
        t for t in before["tables"] if t["section"] == "scaling"]  # a section not measured again: kept whole
    sr = next(t for k, t in tables.items() if k[1].startswith("Super-resolution: PSNR"))
    by_model = {r[0]: c for r, c in zip(sr["rows"], sr["row_commands"])}
    assert by_model == {"sr-x2": cmd2, "sr-x4": cmd1}  # sr-x4 kept, sr-x2 measured again
    assert f"`{cmd1}`: sr-x4" in sr["markdown"] and f"`{cmd2}`: sr-x2" in sr["markdown"]
    assert [r["model"] for r in merged["sections"]["quality"]["sr"]][0] == "sr-x2"
    assert {r["model"] for r in merged["sections"]["quality"]["sr"]} == {"sr-x2", "sr-x4"}
    # the inpainting table has no model column and the second run did not print it: kept from the first
    assert tables[next(k for k in tables if k[1].startswith("Inpainting:"))]["row_commands"][0] == cmd1
    assert merged["sections"]["quality"]["inpaint"] == before["sections"]["quality"]["inpaint"]
    assert merged["targets"]["sr_any_downsampler"]["command"] == cmd2  # judged again by the second run
    assert merged["targets"]["inpaint_bsd100"]["command"] == cmd1
    assert len([t for t in merged["tables"] if t["section"] == "targets"]) == 1
    readme = tmp_path / "README.md"
    readme.write_text(f"{bench_readme.START}\n{bench_readme.END}\n")
    bench_readme.main(["--results", str(out), "--readme", str(readme)])
    text = readme.read_text()
    assert "Made by several runs, merged" in text and "models sr-x2;" in text
    assert all(t["markdown"] in text for t in merged["tables"])
    with pytest.raises(SystemExit):  # a quick run is not merged over a full one, nor into a missing file
        run.main([a for a in second if a != "--quick"])
    with pytest.raises(SystemExit):
        run.main(second[:second.index("--json") + 1] + [str(tmp_path / "none.json")] + second[second.index("--json") + 2:])
    with pytest.raises(SystemExit):
        run.main(["--models", "sr-x9"])


def test_empty_weights_and_bad_section(tmp_path, capsys):
    out = tmp_path / "r.json"
    run.main(["--quick", "--weights", str(tmp_path / "none"), "--data", str(tmp_path), "--json", str(out),
              "--only", "speed,scaling,app", "--sizes-scale", "0.1"])
    printed = capsys.readouterr().out
    assert "sr-x4 is missing" in printed and "scaling needs an x4 SR model" in printed
    assert "app benchmark needs an SR model" in printed
    assert json.loads(out.read_text())["sections"]["speed"]["rows"] == []
    with pytest.raises(SystemExit):
        run.main(["--only", "speed,nope"])


@pytest.mark.parametrize("folder", ["sr-x4", "denoise", "inpaint", "classify-fashion-mnist"])
def test_onnx_runtime_variant_computes_what_eager_does(folder):
    pytest.importorskip("onnxruntime")
    from benchmarks import roofline

    model_name, kwargs = TINY_MODELS[folder]
    call = roofline._Call(cnnimg_hub.create_model(model_name, **kwargs)).eval()
    inputs, _, _ = roofline.roofline_case(call.model, lambda n: 4, side=32)  # 4 images for the classifier
    session, feeds = roofline.onnx_session(call, inputs, threads=1)
    with torch.inference_mode():
        want = call(*inputs).numpy()
    got = session.run(None, feeds)[0]
    assert got.shape == want.shape and np.abs(got - want).max() < 1e-4


def test_training_speed_section(data_root, tmp_path, capsys, monkeypatch):
    """fp32 and bf16 rows for every step-based script, with a data-wait share, on a tiny data root."""
    monkeypatch.setattr(training_speed, "RUNS", {"train_sr": ["--scale", "2", "--lr-patch", "8", "--batch-size", "2"],
                                                 "train_denoise": ["--patch", "16", "--batch-size", "2"],
                                                 "train_inpaint": ["--patch", "32", "--mask-canvas", "48",
                                                                   "--batch-size", "2"]})
    out = tmp_path / "results.json"
    run.main(["--quick", "--weights", str(tmp_path / "none"), "--data", str(data_root), "--json", str(out),
              "--threads", "1", "--only", "training"])
    rows = json.loads(out.read_text())["sections"]["training"]
    assert [(r["script"], r["precision"]) for r in rows] == [(s, p) for s in ("train_sr", "train_denoise",
                                                                             "train_inpaint") for p in ("no", "bf16")]
    assert all(r["steps"] == 7 and r["steps_per_s"] > 0 and 0 <= r["data_share"] < 1 for r in rows)
    assert "**Training speed" in capsys.readouterr().out


def test_precision_check_writes_a_decision_the_pipelines_follow(data_root, tmp_path, capsys, monkeypatch):
    """`python -m benchmarks.precision --write` on tiny models of every task and the tiny data root: each config
    gets its decision and measurement, still loads strictly, and "auto" follows it on a CPU with native bf16."""
    from benchmarks import precision
    from cnnimg_hub import pipelines, runtime
    from cnnimg_hub.spec import spec_of

    monkeypatch.setenv("CNNIMG_CACHE", str(tmp_path / "cache"))  # the CIFAR-10 test split decoded here
    tiny = {**{k: TINY_MODELS[k] for k in ("classify-fashion-mnist", "generate-fashion-mnist-vae", "sr-x2",
                                           "inpaint", "denoise")},
            "classify-cifar10": ("classifier-cifar10", dict(widths=[8, 8]))}
    weights = tmp_path / "weights"
    torch.manual_seed(0)
    for name, (model_name, kwargs) in tiny.items():
        cnnimg_hub.save_model(cnnimg_hub.create_model(model_name, **kwargs), weights / name)
    folders = [str(weights / name) for name in tiny]
    precision.main([*folders, "--write", "--data", str(data_root), "--samples", "20", "--judge",
                    str(weights / "classify-fashion-mnist"), "--json", str(tmp_path / "precision.json")])
    printed = capsys.readouterr().out
    assert "| model | metric | data | fp32 | bf16 | change | tolerance | runs in |" in printed
    rows = {r["model"]: r for r in json.loads((tmp_path / "precision.json").read_text())}
    assert set(rows) == set(tiny) and not any("skipped" in r for r in rows.values())
    for name in tiny:
        config = json.loads((weights / name / "config.json").read_text())
        check = config["precision_check"]
        assert config["precision"] == ("bf16" if check["change"] >= -check["tolerance"] else "fp32"), name
        assert check["tolerance"] == (0.05 if "dB" in check["metric"] else 0.1)
        assert spec_of(cnnimg_hub.load_model(weights / name)).precision == config["precision"]
    assert "sigma 15/25/50" in rows["denoise"]["data"] and "CIFAR-10 test" in rows["classify-cifar10"]["data"]
    # a decision of each kind, and what the pipelines make of it with and without native bf16
    check = {"metric": "PSNR (dB, Y)", "fp32": 30.0, "bf16": 29.9, "change": -0.1, "tolerance": 0.05, "data": "x"}
    sr = weights / "sr-x2"
    for ok, native, want in ((True, True, "bfloat16"), (True, False, "float32"), (False, True, "float32")):
        precision.write_decision(sr, {**check, "ok": ok})
        monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: native)
        image = Image.new("RGB", (16, 16), (90, 120, 30))
        assert pipelines.upscale(cnnimg_hub.load_model(sr), image)[1].dtype == want
