"""pytest fixtures of the ovlfs suite; the helpers themselves live in helpers.py."""
import os
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import helpers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _no_mount_left_behind(tmp_path_factory):
    """Safety net: whatever a test left mounted (below the pytest base temp dir or registered
    by the helpers) is unmounted at the end of the session, and the run is told about it."""
    base = tmp_path_factory.getbasetemp()
    yield
    leftovers = helpers.cleanup_leftovers(base)
    if leftovers:
        warnings.warn(f"mounts left behind by tests were cleaned up: {leftovers}")


@pytest.fixture
def layers(tmp_path):
    """Factory: layers(lowers=[spec, ...], upper=spec|None, rw=True) -> LayerSet built in a
    fresh directory below tmp_path (call it several times for several sets)."""
    count = [0]

    def make(lowers, upper=None, rw=True):
        count[0] += 1
        return helpers.build_layers(tmp_path / f"set{count[0]}", lowers, upper, rw)

    return make


@pytest.fixture
def tmpfs(tmp_path):
    """Factory: tmpfs(name, options='size=64m') -> Path of a tmpfs mounted below tmp_path,
    unmounted at teardown."""
    stack = []

    def make(name, options="size=64m"):
        cm = helpers.mount_tmpfs(tmp_path / name, options)
        path = cm.__enter__()
        stack.append(cm)
        return path

    yield make
    for cm in reversed(stack):
        cm.__exit__(None, None, None)
