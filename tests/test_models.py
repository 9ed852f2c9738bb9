"""Every registered model: forward pass at tiny sizes, save -> load round trip (exact files, config, outputs),
and the strict loader's refusals (missing/unexpected keys, shapes, unknown config keys, pickle, corrupt files)."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from cnnimg_hub import create_model, list_models, load_model, save_model
from cnnimg_hub._folder import FILES
from cnnimg_hub._registry import model_class
from cnnimg_hub.errors import ModelLoadError, ModelNotFoundError, WrongTaskError
from cnnimg_hub.models.super_resolution import ChannelGate, SpatialMean

from tiny_models import TINY, run, tiny  # noqa: E402,F401


def test_registry_lists_every_family():
    tasks = {model_class(n).task for n in list_models()}
    assert tasks == {"image-classification", "image-generation", "super-resolution", "inpainting", "denoising"}
    assert set(TINY) == set(list_models())
    assert list_models("super-resolution") == ["sr-edsr-baseline", "sr-edsr-small", "sr-espcn"]
    with pytest.raises(KeyError, match="unknown model"):
        create_model("sr-nope")
    with pytest.raises(TypeError, match="unknown argument"):
        create_model("sr-espcn", scael=2)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_and_round_trip(name, tmp_path):
    model = tiny(name)
    out = run(model)
    assert torch.isfinite(out).all()
    save_model(model, tmp_path / "m", eval_results=[{"dataset_name": "Tiny", "metric_type": "psnr",
                                                      "metric_value": 12.5}], datasets=["tiny"])
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(FILES)
    if os.name == "posix":  # readable by others, whichever writer made the file (safetensors makes it anew)
        assert {oct(p.stat().st_mode & 0o777) for p in (tmp_path / "m").iterdir()} == {"0o644"}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model_name"] == name and config["task"] == model.task
    assert config["library_version"] and config["num_parameters"] == sum(p.numel() for p in model.parameters())
    loaded = load_model(tmp_path / "m", task=model.task)
    assert type(loaded) is type(model) and loaded.config == config
    torch.testing.assert_close(run(loaded), out, rtol=0, atol=0)
    card = (tmp_path / "m" / "README.md").read_text()
    assert "metrics:\n- psnr" in card and "| Tiny |" in card and "12.5" in card and "license: mit" in card
    assert "model-index" not in card  # "Tiny" is no dataset id on the Hub: named in the text only
    assert "More Information Needed" not in card


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_scales(scale):
    for name in ("sr-espcn", "sr-edsr-small"):
        assert tiny(name, scale=scale)(torch.rand(1, 3, 7, 5)).shape == (1, 3, 7 * scale, 5 * scale)
    with pytest.raises(ValueError, match="scale"):
        create_model("sr-espcn", scale=5)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_skip_is_bicubic_upsampling(scale):
    # the skip runs at low resolution (a 5x5 conv per output phase, then pixel shuffle): a fresh ESPCN, whose last
    # conv is zero, must return exactly F.interpolate's bicubic, borders included, in float32 under bf16 autocast
    model = create_model("sr-espcn", scale=scale, n_feats=4, n_layers=1).eval()
    x = torch.rand(2, 3, 9, 6)
    want = torch.nn.functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    with torch.no_grad():
        assert torch.allclose(model(x), want, atol=1e-5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x)
    assert out.dtype == torch.float32 and torch.allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("channels_last", [True, False])
def test_spatial_mean_is_adaptive_avg_pool(channels_last):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 7, 9) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    want = torch.nn.functional.adaptive_avg_pool2d(x, 1)
    got = SpatialMean()(x)
    assert got.shape == (2, 5, 1, 1) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # as the pipelines run it: bf16 in, bf16 out
        half = SpatialMean()(x.bfloat16())
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), want, rtol=1e-2, atol=1e-2)


def test_espcn_channel_gates_start_as_identity_and_see_the_whole_image(tmp_path):
    torch.manual_seed(0)
    plain = create_model("sr-espcn", scale=2, n_feats=8, n_layers=2)
    gated = create_model("sr-espcn", scale=2, n_feats=8, n_layers=2, channel_gates=True)
    for p in plain.parameters():
        torch.nn.init.normal_(p, std=0.3)
    with torch.no_grad():  # the same convs and PReLUs; the gates keep their zero init
        outer = [m for m in gated.body if not isinstance(m, ChannelGate)]
        for a, b in zip(plain.body, outer, strict=True):
            for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
                pb.copy_(pa)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(gated(x), plain(x))
        for gate in (m for m in gated.modules() if isinstance(m, ChannelGate)):
            torch.nn.init.normal_(gate.squeeze[-1].weight, std=1.0)
        far = x.clone()
        far[..., 12:, 12:] = 1 - far[..., 12:, 12:]  # beyond the convs' reach of pixel (0, 0)
        assert torch.equal(plain(x)[..., :2, :2], plain(far)[..., :2, :2])
        assert not torch.allclose(gated(x)[..., :2, :2], gated(far)[..., :2, :2])
    save_model(gated, tmp_path / "g")
    config = json.loads((tmp_path / "g" / "config.json").read_text())
    assert config["channel_gates"] is True and config["tile_size"] == 1024  # whole images up to 1024 px
    assert plain.inference_spec().tile_size == 256
    loaded = load_model(tmp_path / "g")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), gated(x), rtol=0, atol=0)


def test_vae_fitted_prior_maps_noise_to_each_class_posterior(tmp_path):
    vae = create_model("generator-vae", base_channels=8, latent_dim=3, prior="fitted").eval()
    labels = torch.arange(400) % 10
    mu = torch.randn(400, 3) * 0.1 + labels[:, None].float()  # class c's posteriors sit around (c, c, c)
    vae.fit_prior(mu, torch.full((400, 3), -4.0), labels)
    assert torch.allclose(vae.prior_loc[:, 0], torch.arange(10.0), atol=0.1)
    seen = []
    vae.decode_logits = lambda z, y: seen.append(z) or torch.zeros(len(z), 1, 28, 28)
    vae.generate(torch.full((500,), 7), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(seen[0].mean(0), torch.full((3,), 7.0), atol=0.05) and seen[0].std(0).max() < 0.2
    loaded = load_model(save_model(vae, tmp_path / "v"))  # the prior is saved with the weights
    assert loaded.prior == "fitted" and torch.equal(loaded.prior_loc, vae.prior_loc)
    with pytest.raises(ValueError, match="fitted"):
        create_model("generator-vae", base_channels=8).fit_prior(mu, mu, labels)
    with pytest.raises(ValueError, match="prior"):
        create_model("generator-vae", prior="learned")


def test_inpainting_keeps_known_pixels():
    model = tiny("inpaint-gated-unet")
    img, mask = torch.rand(1, 3, 16, 16), torch.zeros(1, 1, 16, 16)
    mask[..., 4:9, 4:9] = 1
    out = model(img, mask)
    assert torch.equal(out * (1 - mask), img * (1 - mask))


def test_mixin_from_pretrained_works_too(tmp_path):
    model = tiny("sr-espcn", scale=2)
    model.save_pretrained(tmp_path / "m")
    again = type(model).from_pretrained(tmp_path / "m")
    assert again.scale == 2
    torch.testing.assert_close(again(torch.ones(1, 3, 4, 4)), model(torch.ones(1, 3, 4, 4)))


@pytest.fixture
def saved(tmp_path):
    model = tiny("denoise-ffdnet")
    return save_model(model, tmp_path / "m")


def test_wrong_task_is_refused(saved):
    with pytest.raises(WrongTaskError, match="'denoising' model"):
        load_model(saved, task="super-resolution")


def test_missing_and_unexpected_keys(saved):
    weights = saved / "model.safetensors"
    state = load_file(weights)
    state.pop(next(iter(state)))
    state["extra.weight"] = torch.zeros(1)
    save_file(state, weights)
    with pytest.raises(ModelLoadError, match=r"model.safetensors does not match its config.json: missing keys"):
        load_model(saved)


def test_shape_mismatch_names_the_file(saved):
    config = json.loads((saved / "config.json").read_text())
    config["n_feats"] = 16
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"model.safetensors: tensor .* has shape .* config.json implies"):
        load_model(saved)


def test_big_models_are_stored_in_float16_and_load_back(tmp_path, monkeypatch):
    from cnnimg_hub import _folder
    model = tiny("denoise-ffdnet")
    out = run(model)
    size = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    save_model(model, tmp_path / "small")  # at or under the limit: float32, bit for bit (as in the round trip)
    assert {t.dtype for t in load_file(tmp_path / "small" / "model.safetensors").values()} == {torch.float32}
    monkeypatch.setattr(_folder, "FLOAT16_ABOVE_BYTES", size - 1)
    save_model(model, tmp_path / "big")
    stored = load_file(tmp_path / "big" / "model.safetensors")
    assert {t.dtype for t in stored.values()} == {torch.float16}
    assert (tmp_path / "big" / "model.safetensors").stat().st_size < 0.6 * size
    loaded = load_model(tmp_path / "big")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    torch.testing.assert_close(run(loaded), out, rtol=0, atol=2e-3)
    with torch.no_grad():  # a value float16 cannot hold keeps the whole file in float32
        next(model.parameters()).view(-1)[0] = 1e5
    save_model(model, tmp_path / "huge-value")
    assert {t.dtype for t in load_file(tmp_path / "huge-value" / "model.safetensors").values()} == {torch.float32}


def test_integer_tensor_for_a_float_weight_is_refused(saved):
    weights = saved / "model.safetensors"
    state = load_file(weights)
    key = next(iter(state))
    state[key] = state[key].to(torch.int32)
    save_file(state, weights)
    with pytest.raises(ModelLoadError, match=rf"tensor '{key}' is torch.int32 but the model holds torch.float32"):
        load_model(saved)


def test_unknown_config_key(saved):
    config = json.loads((saved / "config.json").read_text())
    config["attention_heads"] = 8
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match=r"unknown key\(s\) \['attention_heads'\]"):
        load_model(saved)


def test_bad_config_files(saved):
    path = saved / "config.json"
    path.write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(saved)
    path.write_text(json.dumps({"model_name": "sr-espcn", "pad": "x" * 300_000}))
    with pytest.raises(ModelLoadError, match="byte limit"):
        load_model(saved)
    path.write_text(json.dumps({"hidden_size": 3}))
    with pytest.raises(ModelLoadError, match="not written by cnnimg-hub"):
        load_model(saved)
    path.write_text(json.dumps({"model_name": "gpt-5"}))
    with pytest.raises(ModelLoadError, match="unknown model_name"):
        load_model(saved)


def test_pickle_only_folder_is_never_unpickled(saved, monkeypatch):
    (saved / "model.safetensors").unlink()
    (saved / "pytorch_model.bin").write_bytes(b"not even opened")
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelLoadError, match="pickle files are never loaded"):
        load_model(saved)


def test_corrupt_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelLoadError, match="not a valid safetensors file"):
        load_model(saved)


def test_not_a_folder_nor_repo_id(tmp_path):
    for bad in [str(tmp_path / "missing"), "../../etc/passwd", "a/b/c", "user/../x"]:
        with pytest.raises(ModelNotFoundError, match="neither an existing folder nor a Hub repo id"):
            load_model(bad)


def test_atomic_save_leaves_old_weights_on_crash(saved, monkeypatch):
    import cnnimg_hub._folder as folder

    before = (saved / "model.safetensors").read_bytes()

    def crash(state, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(folder, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        save_model(tiny("denoise-ffdnet", n_feats=4), saved)
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.iterdir()) == sorted(FILES)


def test_inpainting_push_pull_prefill():
    """The optional prefill starts as a smooth fill of the holes (output conv at zero) and keeps known pixels."""
    model = create_model("inpaint-gated-unet", base_channels=8, depth=2, prefill="push-pull").eval()
    img = torch.rand(1, 3, 16, 20)
    mask = torch.zeros(1, 1, 16, 20)
    mask[..., 5:11, 6:14] = 1
    out = model(img, mask)
    assert torch.equal(out * (1 - mask), img * (1 - mask))
    hole = out[..., 5:11, 6:14]
    assert hole.min() >= img.min() - 1e-6 and hole.max() <= img.max() + 1e-6  # an interpolation of known pixels
    with pytest.raises(ValueError, match="prefill"):
        create_model("inpaint-gated-unet", prefill="magic")
