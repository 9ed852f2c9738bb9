"""Shared pytest setup for the whole test suite.

huggingface_hub reads HF_ENDPOINT, HF_HOME, HF_HUB_OFFLINE, ... ONCE, when it is
first imported. So this file sets the environment and starts a session-wide local
Hub server (tests/hub_server.py) *before* anything imports huggingface_hub (or
gradio/transformers, which import it). Keep this block at the very top and do not
import huggingface_hub above it.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
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
