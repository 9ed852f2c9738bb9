"""Shared pytest setup for the whole test suite.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, ... ONCE, when it is
first imported. So this file sets the environment and starts a session-wide local
Hub server (tests/hub_server.py) *before* anything imports huggingface_hub (or
gradio/transformers, which import it). Keep this block at the very top and do not
import huggingface_hub above it.
"""

import os
import tempfile

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
os.environ.setdefault("GRADIO_EXAMPLES_CACHE", tempfile.mkdtemp(prefix="cnnimg-examples-"))  # not the repo
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
    os.environ.pop(_var, None)  # a developer's settings must not leak into the tests

import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

if "huggingface_hub" in sys.modules:
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could set HF_ENDPOINT")

sys.path.insert(0, str(Path(__file__).parent))  # makes `import hub_server` work in tests
from hub_server import HubServer  # noqa: E402

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="cnnimg-hub-tests-"))
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf_home")  # default cache + (absent) token live here
HUB = HubServer(_SESSION_DIR / "hub")  # one server for the whole session; repos persist across tests
os.environ["HF_ENDPOINT"] = HUB.start()

import pytest  # noqa: E402


def pytest_unconfigure(config):
    HUB.stop()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture
def hub_server():
    """The running HubServer (HF_ENDPOINT points at it). Failure knobs are reset after each test.

    Repos persist for the whole session: use unique repo ids per test.
    """
    HUB.fail_mode = None
    yield HUB
    HUB.fail_mode = None
    HUB.stall_seconds = 30.0


@pytest.fixture
def hf_cache(tmp_path):
    """A fresh, empty cache_dir for hf_hub_download / snapshot_download."""
    path = tmp_path / "hf_cache"
    path.mkdir()
    return path


# ----------------------------------------------------------------------------------------------- fake data
# A tiny data root shaped like ../shared/datasets, built here for the training and engine tests (never the real one).
import gzip  # noqa: E402
import io  # noqa: E402
import struct  # noqa: E402
import tarfile  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _picture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Gradients, a sine texture, flat rectangles and a disc: edges and smooth parts like a photo's."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([xx / w, yy / h, 0.5 + 0.5 * np.sin(xx / 5 + yy / 9)], -1) * 255
    for _ in range(4):
        y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
        img[y:y + rng.integers(4, h // 2), x:x + rng.integers(4, w // 2)] = rng.integers(0, 256, 3)
    cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(4, min(h, w) // 3)
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = rng.integers(0, 256, 3)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """idx format: big-endian magic (2051 images, 2049 labels) and dimensions, then the uint8 data; gzipped."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _write_fashion_mnist(root: Path, rng: np.random.Generator, n_train: int = 256, n_test: int = 64) -> None:
    """Label y is a bright bar at rows 2y..2y+4 on a dark noisy background: learnable in a few steps."""
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.permutation(np.arange(n) % 10)
        images = rng.integers(0, 40, (n, 28, 28))
        for img, y in zip(images, labels):
            img[2 + 2 * y:6 + 2 * y, 4:24] = 220
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images, 2051)
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels, 2049)


def write_cifar10(path: Path, rng: np.random.Generator, per_class: dict[str, int]) -> None:
    """CIFAR10_jpg/<split>/<class>/<n>.jpg, the layout of the project's JPEG copy of CIFAR-10."""
    with tarfile.open(path, "w:gz") as tar:
        for split, n in per_class.items():
            for cls in CIFAR_CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(_picture(rng, 32, 32)).save(buf, "JPEG", quality=90)
                    info = tarfile.TarInfo(f"CIFAR10_jpg/{split}/{cls}/{i}.jpg")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """train/{T91,BSD200}, val/{Set5,Set14,BSD100,CBSD68}, sr-lr-matlab/, fashion-mnist/, cifar10-jpg.tar.gz."""
    root = tmp_path_factory.mktemp("datasets")
    rng = np.random.default_rng(0)
    sets = {"train/T91": [(96, 96)] * 3, "train/BSD200": [(96, 96)] * 3,
            # sides that are not multiples of 2, 3 or 4, so the evaluation's mod-crop is exercised
            "val/Set5": [(38, 50), (45, 61)], "val/Set14": [(41, 53), (57, 46)],
            "val/BSD100": [(259, 262), (262, 259)],  # the inpainting evaluation takes 256x256 center crops
            "val/CBSD68": [(40, 51), (47, 38)]}
    for folder, sizes in sets.items():
        (root / folder).mkdir(parents=True)
        for i, (h, w) in enumerate(sizes):
            suffix = ".jpg" if "BSD200" in folder else ".png"
            Image.fromarray(_picture(rng, h, w)).save(root / folder / f"im{i}{suffix}", quality=95)
    for name in ("Set5", "Set14"):  # SelfExSR naming, in the HR files' sorted order
        for s in (2, 3, 4):
            lr_dir = root / "sr-lr-matlab" / name / f"x{s}"
            lr_dir.mkdir(parents=True)
            for i, f in enumerate(sorted((root / "val" / name).iterdir()), 1):
                hr = Image.open(f)
                hr = hr.crop((0, 0, hr.width - hr.width % s, hr.height - hr.height % s))
                hr.resize((hr.width // s, hr.height // s), Image.BICUBIC).save(lr_dir / f"img_{i:03d}_SRF_{s}_LR.png")
    _write_fashion_mnist(root / "fashion-mnist", rng)
    write_cifar10(root / "cifar10-jpg.tar.gz", rng, {"train": 4, "test": 2})
    return root




# ----------------------------------------------------------------------------------------------- the app
# The app's weights folder names, with tiny untrained models that run in milliseconds (the app reads its model
# lists from the folder, so these tests do not depend on trained weights).
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # makes `import app` work
TINY_APP_MODELS = {
    "classify-cifar10": ("classifier-cifar10", dict(widths=[8, 16])),
    "classify-fashion-mnist": ("classifier-fashion-mnist", dict(widths=[8, 16])),
    "generate-fashion-mnist-gan": ("generator-dcgan", dict(base_channels=8)),
    "generate-fashion-mnist-vae": ("generator-vae", dict(base_channels=8)),
    "sr-x2": ("sr-espcn", dict(scale=2, n_feats=8, n_layers=1)),
    "sr-x4": ("sr-espcn", dict(scale=4, n_feats=8, n_layers=1)),
    "inpaint": ("inpaint-gated-unet", dict(base_channels=8)),
    "denoise": ("denoise-ffdnet-small", dict(n_feats=8, n_layers=3)),
}


def _make_weights(folder: Path, table: dict = TINY_APP_MODELS) -> Path:
    import cnnimg_hub
    import torch

    torch.manual_seed(0)
    for name, (model_name, kwargs) in table.items():
        cnnimg_hub.save_model(cnnimg_hub.create_model(model_name, **kwargs), folder / name)
    return folder


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def make_weights():
    """make_weights(folder, table=TINY_APP_MODELS): writes tiny model folders, returns the folder."""
    return _make_weights


@pytest.fixture(scope="session")
def free_port():
    """free_port(): a free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    return _make_weights(tmp_path_factory.mktemp("tiny-weights"))


@pytest.fixture(scope="session")
def endpoints():
    """endpoints(demo): {api_name: the handler behind it}, to call the app's handlers in-process."""
    return lambda demo: {f.api_name: f.fn for f in demo.fns.values() if f.api_name}
