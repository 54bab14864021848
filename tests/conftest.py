"""Checkpoints built once per test session, and the models loaded from them."""
import os

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach for the network
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from model.loading.mapping import load_gpt  # noqa: E402
from model.loading.reference import load_reference  # noqa: E402
from model.serving import products  # noqa: E402
from tests.checkpoints import (  # noqa: E402
    GPT2_SMALL,
    TINY,
    ZOO,
    ZOO_INIT,
    build_checkpoint,
    build_trained_checkpoint,
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: serves the app, drives a browser, starts a command, or runs gpt2's full "
                                       "size (leave out: -m 'not slow')")
    # Gradio 6.31's queue calls pandas options that pandas 3 deprecates: noise about a dependency, hundreds of times.
    config.addinivalue_line("filterwarnings", "ignore:.*(copy keyword|no_silent_downcasting).*:Warning:gradio.queueing")



FULL_SIZE = {"gpt2_dir", "gpt2_reference", "gpt2_ours"}


def pytest_collection_modifyitems(items):
    """A test on gpt2's full size (124M parameters) is slow: the fast subset (-m "not slow") leaves it out."""
    for item in items:
        if FULL_SIZE & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models spend their time handing work between threads: on a busy 2-core machine one
    thread ran the model tests about ten times faster. Opt in per module (`pytestmark`)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def cpu_writes_bfloat16():
    """For a test of the bfloat16 writer on the CPU: skipped, saying why, on a CPU where neither our kernel (no
    compiler) nor oneDNN (AVX2 only) multiplies bfloat16. There the writer refuses bfloat16, which test_products
    checks on every CPU."""
    if not products.bfloat16_available():
        pytest.skip(f"this CPU ({torch.backends.cpu.get_cpu_capability()}) cannot write in bfloat16")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A 2-layer GPT-2 with large random weights, so its tokens vary (a folder)."""
    return build_checkpoint(tmp_path_factory.mktemp("tiny"), seed=0, initializer_range=0.5, **TINY)


@pytest.fixture(scope="session")
def gpt2_dir(tmp_path_factory):
    """A randomly initialised GPT-2 with gpt2's exact shape: 124,439,808 parameters (a folder)."""
    return build_checkpoint(tmp_path_factory.mktemp("gpt2"), seed=0, **GPT2_SMALL)


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """A tiny GPT-2 trained to recite tests.checkpoints.MEMORISED (a folder)."""
    return build_trained_checkpoint(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    """The student zoo's checkpoint (tests/students/): what the check and the class board judge against."""
    return build_checkpoint(tmp_path_factory.mktemp("zoo"), seed=3, initializer_range=ZOO_INIT, **ZOO)


@pytest.fixture(scope="session")
def zoo_reference(zoo_dir):
    return load_reference(str(zoo_dir), device="cpu")


@pytest.fixture(scope="session")
def tiny_reference(tiny_dir):
    return load_reference(str(tiny_dir), device="cpu")


@pytest.fixture(scope="session")
def gpt2_reference(gpt2_dir):
    return load_reference(str(gpt2_dir), device="cpu")


@pytest.fixture(scope="session")
def trained_reference(trained_dir):
    return load_reference(str(trained_dir), device="cpu")


# Our GPT loaded from each reference, through the mapping table (read-only: tests share them).

@pytest.fixture(scope="session")
def tiny_ours(tiny_reference):
    return load_gpt(tiny_reference)


@pytest.fixture(scope="session")
def gpt2_ours(gpt2_reference):
    return load_gpt(gpt2_reference)


@pytest.fixture(scope="session")
def trained_ours(trained_reference):
    return load_gpt(trained_reference)


# The app's shared state on a checkpoint, and the app served on loopback for the whole session.

@pytest.fixture(scope="session")
def tiny_state(tiny_dir):
    """On the tiny checkpoint: its tokens vary, so a seed visibly decides the text."""
    from tests.app_server import app_state
    return app_state(tiny_dir)


@pytest.fixture(scope="session")
def tiny_app_url(tiny_state):
    from tests.app_server import served
    with served(tiny_state) as url:
        yield url


@pytest.fixture(scope="session")
def trained_state(trained_dir):
    """On the checkpoint that recites tests.checkpoints.MEMORISED: real sentences for the screenshots."""
    from tests.app_server import app_state
    return app_state(trained_dir)


@pytest.fixture(scope="session")
def trained_app_url(trained_state):
    from tests.app_server import served
    with served(trained_state) as url:
        yield url
