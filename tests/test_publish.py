"""Publishing from the command line: `push` (pull requests, a card edited on the Hub), `refresh-card`,
`export-onnx` for every image-to-image and classification model, and `deploy-space` end to end against the local
Hub server (tests/hub_server.py) with repo_type="space"."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import tiny

from cnnimg_hub import list_models, load_model, save_model
from cnnimg_hub.cli import main
from cnnimg_hub.export import EXPORTABLE, example_inputs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [n for task in EXPORTABLE for n in list_models(task)])
def test_export_onnx_every_family(name, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    model = tiny(name)
    folder = save_model(model, tmp_path / name)
    out = tmp_path / "model.onnx"
    assert main(["export-onnx", str(folder), str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("max difference") == 2 and f"wrote {out}" in printed
    # a third size and batch, run by ONNX Runtime from the file: dynamic batch, height and width, float32
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert all(i.type == "tensor(float)" for i in session.get_inputs())
    m = int(load_model(folder).config.get("multiple_of", 1))
    side = 24 if model.task == "image-classification" else m * 5
    inputs = example_inputs(model, 4, side, side + m * (model.task != "image-classification"), seed=9)
    got = session.run(None, {k: v.numpy() for k, v in inputs.items()})[0]
    with torch.inference_mode():
        want = (model(*inputs.values()) if model.task in ("denoising", "inpainting") else model(inputs["image"]))
    assert got.shape == tuple(want.shape) and np.abs(got - want.numpy()).max() < 1e-3


def test_export_onnx_refuses_generators(tmp_path, capsys):
    folder = save_model(tiny("generator-vae"), tmp_path / "g")
    assert main(["export-onnx", str(folder), str(tmp_path / "g.onnx")]) == 1
    assert "export-onnx takes" in capsys.readouterr().err and not (tmp_path / "g.onnx").exists()


def test_push_command_pull_request_and_kept_card(tmp_path, hub_server, capsys, caplog):
    from huggingface_hub import HfApi

    repo = "tester/cli-push"
    folder = save_model(tiny("denoise-ffdnet"), tmp_path / "d", sample_image=True)
    assert main(["push", str(folder), repo, "--token", "hf_secretTOKEN123456"]) == 0
    out = capsys.readouterr()
    assert f"pushed {folder} to {repo}: " in out.out and "hf_secretTOKEN123456" not in out.out + out.err
    files = hub_server.files(repo)
    assert {"config.json", "model.safetensors", "README.md", "sample.jpg"} <= set(files)
    card = files["README.md"].decode()
    HfApi().upload_file(path_or_fileobj=(card + "\nA note from the Hub.\n").encode(), path_in_repo="README.md",
                        repo_id=repo)
    retrained = tiny("denoise-ffdnet")
    with torch.no_grad():
        next(retrained.parameters()).add_(0.01)
    save_model(retrained, folder, sample_image=True)
    with caplog.at_level("WARNING"):
        assert main(["push", str(folder), repo, "--create-pr"]) == 0
    assert "pull request: " in capsys.readouterr().out and "edited on the Hub" in caplog.text
    assert hub_server.files(repo, revision="refs/pr/1")["README.md"].decode().endswith("A note from the Hub.\n")
    assert main(["push", str(folder), repo, "--overwrite-card"]) == 0
    assert hub_server.files(repo)["README.md"].decode() == card


def test_refresh_card_command(tmp_path, capsys):
    folder = save_model(tiny("sr-espcn", scale=2), tmp_path / "sr")
    (folder / "README.md").write_text((folder / "README.md").read_text().replace("x2 (RGB", "x2 (edited, RGB"))
    assert main(["refresh-card", str(folder), "--repo-id", "someone/sr-x2"]) == 0
    text = (folder / "README.md").read_text()
    assert 'load_model("someone/sr-x2")' in text and "x2 (edited" not in text and (folder / "sample.jpg").is_file()
    assert "tensors unchanged" in capsys.readouterr().out
    assert main(["refresh-card", str(folder), str(folder), "--repo-id", "a/b"]) == 1


def test_deploy_space_end_to_end(tmp_path, hub_server, capsys):
    """One commit with the app, the package, requirements, examples, the model folders and a Space README; the
    Space's files alone build the app."""
    from huggingface_hub import HfApi, SpaceCard, snapshot_download

    weights = tmp_path / "weights"
    save_model(tiny("sr-espcn", scale=2), weights / "sr-x2", sample_image=True)
    main(["refresh-card", str(weights / "sr-x2"), "--repo-id", "tester/sr-x2"])
    repo = "tester/cnnimg-space"
    before = len(hub_server.requests)
    assert main(["deploy-space", repo, "--weights", str(weights), "--models", "tester/denoise", "--private",
                 "--token", "hf_secretTOKEN123456"]) == 0
    out = capsys.readouterr()
    assert f"Space: {hub_server.endpoint}/spaces/{repo}" in out.out and "hf_secretTOKEN123456" not in out.out
    assert all(agent.startswith("cnnimg-hub/") or "cnnimg-hub/" in agent for agent in hub_server.user_agents[before:])
    assert len(hub_server.commits(repo, repo_type="space")) == 2  # the initial commit + everything in one
    info = HfApi().space_info(repo)
    assert info.sdk == "gradio" and info.private
    files = hub_server.files(repo, repo_type="space")
    for name in ("app.py", "requirements.txt", "cnnimg_hub/__init__.py", "cnnimg_hub/_hub.py",
                 "weights/sr-x2/model.safetensors", "weights/sr-x2/sample.jpg", "examples/chelsea.jpg"):
        assert name in files, name
    assert not any("__pycache__" in name for name in files)
    card = SpaceCard(files["README.md"].decode())
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py" and card.data.sdk_version
    assert card.data.models == ["tester/denoise", "tester/sr-x2"] and card.data.suggested_hardware == "cpu-basic"
    # the Space, downloaded like the Hub's builder does, imports and builds the demo from its own files
    space = Path(snapshot_download(repo, repo_type="space", cache_dir=tmp_path / "cache"))
    env = {**os.environ, "PYTHONPATH": "", "GRADIO_ANALYTICS_ENABLED": "False"}
    code = "import app; print('demo', type(app.demo).__name__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=space, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "demo Blocks" in done.stdout, done.stderr[-2000:]
    # a second deploy is another single commit
    assert main(["deploy-space", repo, "--no-weights"]) == 0
    assert len(hub_server.commits(repo, repo_type="space")) == 3


def test_deploy_space_errors(hub_server, capsys):
    assert main(["deploy-space", "no-namespace"]) == 1
    assert "not a Space id" in capsys.readouterr().err
    assert main(["deploy-space", "tester/x", "--models", "bad id"]) == 1
    assert "--models takes model repo ids" in capsys.readouterr().err


def test_push_pull_fill_is_the_size_driven_loop_it_replaced():
    """The inpainters' fill has a fixed pyramid depth (so an exported graph fills alike at every size) and gives
    bit for bit what the loop down to 1 pixel gave."""
    import torch.nn.functional as F

    from cnnimg_hub.models.inpainting import push_pull_fill

    def loop(image, mask):
        x, w = image * (1 - mask), 1 - mask
        pyramid = []
        while min(x.shape[-2:]) > 1:
            pyramid.append((x, w))
            x, w = F.avg_pool2d(x, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
        fill = x / w.clamp(min=1e-6)
        for x, w in reversed(pyramid):
            up = F.interpolate(fill, size=x.shape[-2:], mode="bilinear", align_corners=False)
            fill = x / w.clamp(min=1e-6) * w + up * (1 - w)
        return fill

    g = torch.Generator().manual_seed(0)
    for h, w in [(1, 1), (1, 7), (5, 3), (72, 40), (257, 130), (16, 1024)]:
        image, mask = torch.rand(2, 3, h, w, generator=g), (torch.rand(2, 1, h, w, generator=g) > 0.6).float()
        assert torch.equal(push_pull_fill(image, mask), loop(image, mask)), (h, w)
