"""Section 4, quality: every quality table of training (SR, denoising, inpainting, classification, generation),
recomputed from the shipped weights with cnnimg_hub.evaluate."""
from __future__ import annotations

import sys

from cnnimg_hub import evaluate
from cnnimg_hub.spec import spec_of

from . import precision
from ._measure import MODELS, ROOT, Context

# ----------------------------------------------------------------------------------------------- settings
QUALITY_LIMIT = {False: None, True: 4}  # images per validation set (None = all)
CLASSIFY_LIMIT, GENERATE_SAMPLES = {False: None, True: 1000}, {False: 10000, True: 500}
# BM3D takes about 9 s per CBSD68 image and noise level on 2 cores (all 68 at 3 levels: half an hour), so its
# column covers the first few images, and the CNN is scored again on exactly those; --bm3d-images N for more
BM3D_IMAGES, BM3D_SIGMAS = {False: 6, True: 1}, {False: (15, 25, 50), True: (25,)}


def _training_common():
    sys.path.insert(0, str(ROOT / "training"))
    import common  # noqa: PLC0415  (the training scripts' data loaders)

    return common


SR_DOWNSAMPLERS = ("pil-bicubic", "cv2-cubic", "cv2-area", "cv2-linear")  # the rows of the "any downsampler" table
SR_PIL_TODAY = {2: 37.22, 4: 31.00}  # Set5 PIL-bicubic PSNR of the bicubic-only models (2026-11), kept within 0.3 dB


def _sr_downsamplers(ctx: Context, pil_rows: list[dict], limit: int | None, section: dict) -> None:
    """SR under several ways of making the LR image (Set14, BSD100, x2 and x4 default models), the gain over
    bicubic of the same LR, and the SR targets."""
    rows, data = [], ctx.data
    for name in ("sr-x2", "sr-x4", "sr-x2-bicubic", "sr-x4-bicubic"):  # the defaults, then the PIL-only models
        if (model := ctx.model(name)) is None:
            continue
        sets = [n for n in ("Set14", "BSD100") if (data / "val" / n).is_dir()]
        for method in SR_DOWNSAMPLERS:
            with ctx.timed(f"quality: {name} {method}"):
                res = evaluate.eval_sr(model, data, sets=sets, lr_source=method, max_images=limit)
            rows += [{"model": name, "scale": int(model.scale), "set": k, "downsampler": method, **r}
                     for k, r in res.items()]
    if not rows:
        return
    section["sr_downsamplers"] = rows
    ctx.table("quality", "Super-resolution under other downsamplers: LR made by PIL bicubic (antialiased), OpenCV "
              "INTER_CUBIC and INTER_LINEAR (no antialiasing) and INTER_AREA; PSNR on Y; gain = CNN - bicubic "
              "upscaling of the same LR; sr-x2/sr-x4 (the app's defaults) are trained on a mix of downsamplers, "
              "the -bicubic folders on PIL bicubic only", ["model", "scale", "set", "downsampler", "images", "CNN PSNR",
                                           "bicubic PSNR", "gain"],
              [[r["model"], f"x{r['scale']}", r["set"], r["downsampler"], r["images"], r["psnr"], r["bicubic_psnr"],
                r["psnr"] - r["bicubic_psnr"]] for r in rows])
    need, default = {2: 1.0, 4: 0.6}, [r for r in rows if r["model"] in ("sr-x2", "sr-x4")]
    if not default:
        return
    worst = min(default, key=lambda r: r["psnr"] - r["bicubic_psnr"] - need[r["scale"]])
    ok = all(r["psnr"] - r["bicubic_psnr"] >= need[r["scale"]] for r in default)
    ctx.target("sr_any_downsampler", worst["psnr"] - worst["bicubic_psnr"], ok,
               f"smallest margin: {worst['model']} {worst['set']} {worst['downsampler']} "
               f"{worst['psnr'] - worst['bicubic_psnr']:+.2f} dB (need {need[worst['scale']]:+.1f})")
    pil = {(r["model"], r["set"]): r["psnr"] for r in pil_rows if r["lr"] == "pil"}
    kept = {s: pil[(f"sr-x{s}", "Set5")] for s in (2, 4) if (f"sr-x{s}", "Set5") in pil}
    if kept:
        ctx.target("sr_pil_kept", kept, all(v >= SR_PIL_TODAY[s] - 0.3 for s, v in kept.items()),
                   ", ".join(f"x{s} {v:.2f} (was {SR_PIL_TODAY[s]:.2f})" for s, v in kept.items()))
    sets = ("Set5", "Set14", "BSD100")
    if all(("sr-x4-large", n) in pil and ("sr-x4", n) in pil for n in sets):
        gaps = {n: pil[("sr-x4-large", n)] - pil[("sr-x4", n)] for n in sets}
        ctx.target("sr_large_worth_it", gaps, all(g >= 0.5 for g in gaps.values()) and pil[("sr-x4-large", "Set5")]
                   >= 31.6, ", ".join(f"{n} {g:+.2f}" for n, g in gaps.items()))


def bench_quality(ctx: Context) -> None:
    """Every quality table of training, recomputed from the shipped weights with cnnimg_hub.evaluate."""
    limit, data, section = QUALITY_LIMIT[ctx.quick], ctx.data, {}
    some = f"the first {limit} images of each set (--quick)" if limit else "all images"
    if not (data / "val").is_dir():
        ctx.note(f"{data / 'val'} does not exist (pass --data): the SR, denoising and inpainting tables are skipped")
    else:
        rows = []
        for name, model in ctx.models("sr").items():
            s = int(model.scale)
            sets = [n for n in ("Set5", "Set14", "BSD100") if (data / "val" / n).is_dir()]
            for lr_source in ("pil", "matlab"):
                use = [n for n in sets if lr_source == "pil" or (data / "sr-lr-matlab" / n / f"x{s}").is_dir()]
                if not use:
                    ctx.note(f"{name}: no {lr_source} LR data for x{s}: skipped")
                    continue
                with ctx.timed(f"quality: {name} {lr_source}"):
                    res = evaluate.eval_sr(model, data, sets=use, lr_source=lr_source, max_images=limit)
                for set_name, r in res.items():
                    rows.append({"model": name, "scale": s, "set": set_name, "lr": lr_source, **r})
        if rows:
            section["sr"] = rows
            ctx.table("quality", f"Super-resolution: PSNR/SSIM on Y, `scale` px border, {some}; LR from PIL bicubic "
                      f"or from MATLAB bicubic (sr-lr-matlab)", ["model", "scale", "set", "LR", "images", "PSNR",
                                                                  "SSIM", "bicubic PSNR", "bicubic SSIM"],
                      [[r["model"], f"x{r['scale']}", r["set"], r["lr"], r["images"], r["psnr"], r["ssim"],
                        r["bicubic_psnr"], r["bicubic_ssim"]] for r in rows])
            _sr_downsamplers(ctx, rows, limit, section)
        if (model := ctx.model("denoise")) is not None and (data / "val" / "CBSD68").is_dir():
            n_bm3d = ctx.args.bm3d_images if ctx.args.bm3d_images is not None else BM3D_IMAGES[ctx.quick]
            with ctx.timed("quality: denoise"):
                res = evaluate.eval_denoise(model, data, baseline_names=("nlm",), max_images=limit)
            with ctx.timed("quality: BM3D"):
                bm3d = evaluate.eval_denoise(model, data, sigmas=BM3D_SIGMAS[ctx.quick], baseline_names=("bm3d",),
                                             max_images=n_bm3d) if n_bm3d else {}
            rows = [{"sigma": int(k[5:]), **v, **{f"bm3d_{x}": bm3d[k][f"bm3d_{x}"] for x in ("psnr", "ssim", "seconds")
                                                   if k in bm3d}, "bm3d_images": bm3d.get(k, {}).get("images", 0),
                     "psnr_on_bm3d_images": bm3d.get(k, {}).get("psnr"),
                     "seconds_on_bm3d_images": bm3d.get(k, {}).get("seconds")} for k, v in res.items()]
            section["denoise"] = rows
            sub = (f"; BM3D on the first {n_bm3d} images (--bm3d-images) at sigma "
                   f"{'/'.join(map(str, BM3D_SIGMAS[ctx.quick]))}, next to the CNN on the same images ('CNN PSNR "
                   f"there')") if n_bm3d else "; no BM3D (--bm3d-images 0)"
            ctx.table("quality", f"Denoising: CBSD68 RGB PSNR/SSIM, {some}, fixed-seed noise{sub}; seconds per "
                      f"image", ["sigma", "images", "CNN PSNR", "CNN SSIM", "NLM PSNR", "NLM SSIM", "BM3D images",
                                 "CNN PSNR there", "BM3D PSNR", "BM3D SSIM", "CNN s", "NLM s", "BM3D s"],
                      [[r["sigma"], r["images"], r["psnr"], r["ssim"], r["nlm_psnr"], r["nlm_ssim"], r["bm3d_images"],
                        r["psnr_on_bm3d_images"] or "", r.get("bm3d_psnr", ""), r.get("bm3d_ssim", ""), r["seconds"],
                        r["nlm_seconds"], r.get("bm3d_seconds", "")] for r in rows])
            if "sigma25" in res and res["sigma25"]["images"] >= 68:
                ctx.target("denoise_cbsd68_31", res["sigma25"]["psnr"], res["sigma25"]["psnr"] >= 31.0,
                           f"{res['sigma25']['psnr']:.2f} dB over {res['sigma25']['images']} images")
            if bm3d:
                gaps = {k: v["psnr"] - v["bm3d_psnr"] for k, v in bm3d.items()}
                ctx.target("denoise_bm3d_margin", gaps, all(g >= 0.3 for g in gaps.values()),
                           ", ".join(f"sigma {k[5:]}: {g:+.2f} dB" for k, g in gaps.items()))
            if n_bm3d and (data / "val" / "McMaster").is_dir():
                with ctx.timed("quality: McMaster + BM3D"):
                    mc = evaluate.eval_denoise(model, data, sigmas=(25,), set_name="McMaster", baseline_names=("bm3d",),
                                               max_images=n_bm3d)["sigma25"]
                section["denoise_mcmaster"] = mc
                ctx.table("quality", f"Denoising: McMaster sigma 25, first {mc['images']} images, CNN and BM3D on the "
                          f"same noisy inputs", ["images", "CNN PSNR", "CNN SSIM", "BM3D PSNR", "BM3D SSIM", "CNN s",
                                                 "BM3D s"],
                          [[mc["images"], mc["psnr"], mc["ssim"], mc["bm3d_psnr"], mc["bm3d_ssim"], mc["seconds"],
                            mc["bm3d_seconds"]]])
                ctx.target("denoise_mcmaster", mc["psnr"] - mc["bm3d_psnr"], mc["psnr"] >= mc["bm3d_psnr"],
                           f"{mc['psnr']:.2f} vs BM3D {mc['bm3d_psnr']:.2f} dB on {mc['images']} images")
            if "sigma25" in bm3d:
                b = bm3d["sigma25"]
                speedup = b["bm3d_seconds"] / b["seconds"]
                ctx.target("denoise_vs_bm3d", {"psnr": b["psnr"], "bm3d_psnr": b["bm3d_psnr"], "speedup": speedup},
                           b["psnr"] > b["bm3d_psnr"] and speedup >= 10,
                           f"{b['psnr']:.2f} vs BM3D {b['bm3d_psnr']:.2f} dB on {b['images']} images, "
                           f"{speedup:.0f}x faster")
        if (model := ctx.model("inpaint")) is not None:
            rows = []
            for set_name, target, margin in (("BSD100", "inpaint_bsd100", 2.0),
                                             ("McMaster", "inpaint_second_set", 1.5)):
                if not (data / "val" / set_name).is_dir():
                    continue
                with ctx.timed(f"quality: inpaint {set_name}"):
                    r = evaluate.eval_inpaint(model, data, set_name=set_name, max_images=limit)[set_name]
                rows.append({"set": set_name, **r})
                gap = r["psnr"] - r["telea_psnr"]
                ctx.target(target, gap, gap >= margin, f"{r['psnr']:.2f} vs Telea {r['telea_psnr']:.2f} dB "
                           f"({gap:+.2f}) on {r['images']} images")
            if rows:
                section["inpaint"] = rows
                ctx.table("quality", f"Inpainting: 256x256 center crops, fixed-seed masks (10-40% holes, strokes and "
                          f"boxes), {some}; whole-image and in-hole PSNR/SSIM",
                          ["set", "images", "hole fraction", "CNN PSNR", "CNN SSIM", "CNN hole PSNR", "CNN hole SSIM",
                           "Telea PSNR", "Telea SSIM", "Telea hole PSNR", "Telea hole SSIM", "NS PSNR", "NS SSIM"],
                          [[r["set"], r["images"], r["hole_fraction"], r["psnr"], r["ssim"], r["hole_psnr"],
                            r["hole_ssim"], r["telea_psnr"], r["telea_ssim"], r["telea_hole_psnr"],
                            r["telea_hole_ssim"], r["ns_psnr"], r["ns_ssim"]] for r in rows])
    common, rows = _training_common(), []
    n_cls = CLASSIFY_LIMIT[ctx.quick]
    loaders = {"classify-cifar10": lambda: common.cifar10("test", archive=data / "cifar10-jpg.tar.gz")[:2],
               "classify-fashion-mnist": lambda: common.fashion_mnist("test")}
    test_sets = {}
    for name, load in loaders.items():
        if (model := ctx.model(name)) is None:
            continue
        try:
            images, labels = load()
        except (SystemExit, OSError) as e:
            ctx.note(f"{name}: test split unavailable ({e}): skipped")
            continue
        test_sets[name] = images, labels
        if n_cls:  # evenly spread over the split (the test archives are sorted by class)
            step = max(1, len(images) // n_cls)
            images, labels = images[::step][:n_cls], labels[::step][:n_cls]
        with ctx.timed(f"quality: {name}"):
            r = evaluate.eval_classifier(model, images, labels)
            r_flip = evaluate.eval_classifier(model, images, labels, tta=1)
            r_tta = evaluate.eval_classifier(model, images, labels, tta=2)
        rows.append({"model": name, **r, "top1_flip_tta": r_flip["top1"], "top1_tta": r_tta["top1"]})
    if rows:
        section["classify"] = rows
        ctx.table("quality", "Classification: test split" + (f", {n_cls} images spread over it (--quick)" if n_cls else ""),
                  ["model", "images", "top-1", "top-5", "top-1, flip TTA", "top-1, flip + shift TTA"],
                  [[r["model"], r["images"], r["top1"], r["top5"], r["top1_flip_tta"], r["top1_tta"]] for r in rows])
    full = {r["model"]: r for r in rows if not n_cls}  # targets only on the whole test split
    if "classify-cifar10" in full:
        ctx.target("cifar10_93", full["classify-cifar10"]["top1_tta"], full["classify-cifar10"]["top1_tta"] >= 0.93,
                   f"top-1 {full['classify-cifar10']['top1']:.4f}, with TTA {full['classify-cifar10']['top1_tta']:.4f}")
    if "classify-fashion-mnist" in full:
        top1 = full["classify-fashion-mnist"]["top1"]
        ctx.target("fashion_mnist_94", top1, top1 >= 0.94, f"top-1 {top1:.4f}")
    judge, rows = ctx.model("classify-fashion-mnist"), []
    for name, model in ctx.models("generate").items():
        if judge is None or "classify-fashion-mnist" not in test_sets:
            ctx.note(f"{name}: needs the Fashion-MNIST classifier and test split as judge: skipped")
            continue
        with ctx.timed(f"quality: {name}"):
            images, labels = test_sets["classify-fashion-mnist"]
            r = evaluate.eval_generator(model, judge, images, n=GENERATE_SAMPLES[ctx.quick], test_labels=labels)
        rows.append({"model": name, **r})
    if rows:
        section["generate"] = rows
        by = {r["model"]: r for r in rows}
        gan, vae = by.get("generate-fashion-mnist-gan"), by.get("generate-fashion-mnist-vae")
        if gan:  # a --quick run (500 samples) prints the targets without a verdict
            ok = gan["class_agreement"] >= 0.9 and gan["diversity_min"] >= 0.8 and (
                vae is None or gan["fid_judge"] < vae["fid_judge"])
            ctx.target("gan_quality", gan["class_agreement"], None if ctx.quick else ok,
                       f"agreement {gan['class_agreement']:.4f}, FID {gan['fid_judge']:.2f}"
                       + (f" (VAE {vae['fid_judge']:.2f})" if vae else "") + f", diversity min {gan['diversity_min']:.3f}")
        if vae:
            ok = vae["class_agreement"] >= 0.9 and vae["diversity_min"] >= 0.8
            ctx.target("vae_quality", vae["class_agreement"], None if ctx.quick else ok,
                       f"agreement {vae['class_agreement']:.4f}, diversity min {vae['diversity_min']:.3f}")
        ctx.table("quality", "Generation: class agreement of the Fashion-MNIST classifier (judge), FID in its "
                  "feature space against the test split, and diversity: within each class, the mean pairwise "
                  "judge-feature distance of the samples over the real test images' (mean and lowest class)",
                  ["model", "samples", "class agreement", "FID (judge)", "diversity", "lowest class",
                   "spread samples", "spread real"],
                  [[r["model"], r["samples"], r["class_agreement"], r["fid_judge"], r["diversity"],
                    r["diversity_min"], r["spread_samples"], r["spread_real"]] for r in rows])
    _precision(ctx, limit, section)
    ctx.results["sections"]["quality"] = section


def _precision(ctx: Context, limit: int | None, section: dict) -> None:
    """fp32 against bf16 on each model's validation set (benchmarks.precision, the command that records the
    decision), next to the decision its config.json holds."""
    rows, judge = [], ctx.model("classify-fashion-mnist")
    for name in MODELS:
        if (model := ctx.model(name)) is None:
            continue
        with ctx.timed(f"quality: {name} fp32 vs bf16"):
            check = precision.compare_model(model, ctx.data, max_images=limit, samples=GENERATE_SAMPLES[ctx.quick],
                                            judge=judge)
        rows.append({"model": name, **check, "recorded": spec_of(model).precision})
    if not rows:
        return
    section["precision"] = rows
    some = f"the first {limit} images of each set" if limit else "all images"
    ctx.table("quality", f"Precision: each model's quality metric in fp32 and in bf16 (autocast, as the pipelines "
              f"run it) on the same inputs, {some}, on the set or noise level where bf16 does worst; a model may run "
              f"in bf16 by default when it loses "
              f"at most {precision.PSNR_TOLERANCE} dB or {precision.ACCURACY_TOLERANCE} point; 'recorded' = the "
              f"decision in its config.json (`python -m benchmarks.precision --write weights/*`, none: fp32)",
              ["model", "metric", "data", "fp32", "bf16", "change", "within tolerance", "recorded"],
              [[r["model"], r.get("metric", f"skipped: {r.get('skipped')}"), r.get("data", ""), r.get("fp32", ""),
                r.get("bf16", ""), f"{r['change']:+.3f}" if "change" in r else "",
                ("yes" if r["ok"] else "no") if "ok" in r else "", r["recorded"] or "none"] for r in rows])
