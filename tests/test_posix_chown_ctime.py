"""chown(f, -1, -1) changes no owner but moves ctime, as on the kernel overlayfs (the POSIX
fidelity issue): chown always asks the filesystem for ATTR_CTIME, and the kernel overlayfs
copies a lower file up for it (ovl_setattr copies up before any attribute change). Compared
on a kernel overlayfs and an ovlfs mount over identical layers, for a lower and an upper
file, a directory and a symlink."""
import os
import time

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

LOWER = {"l_file": "lower\n", "l_dir": {"x": "1"}, "l_link": helpers.Symlink("l_file")}
UPPER = {"u_file": "upper\n", "u_dir": {"y": "2"}, "u_link": helpers.Symlink("u_file")}
NAMES = ["l_file", "l_dir", "l_link", "u_file", "u_dir", "u_link"]


def _run(mnt, upper):
    out = {}
    for name in NAMES:
        p = mnt / name
        before = os.lstat(p)
        time.sleep(0.02)  # past the filesystem's clock tick
        os.chown(p, -1, -1, follow_symlinks=False)
        after = os.lstat(p)
        out[name] = {
            "ctime_moved": after.st_ctime_ns > before.st_ctime_ns,
            "owner": (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid),
            "in_upper": os.path.lexists(upper / name),
        }
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("chown-ctime")
    k = helpers.build_layers(base / "k", [LOWER], UPPER)
    o = helpers.build_layers(base / "o", [LOWER], UPPER)
    with k.kernel(extra_opts=wh.KERNEL_OPTS) as km:
        kernel = _run(km, k.upper)
    with o.ovlfs() as om:
        ovlfs = _run(om, o.upper)
    return kernel, ovlfs


@pytest.mark.parametrize("name", NAMES)
def test_chown_minus_one_as_kernel(results, name):
    kernel, ovlfs = results
    assert kernel[name]["ctime_moved"], f"reference: {kernel[name]}"
    assert ovlfs[name] == kernel[name], f"kernel {kernel[name]} ovlfs {ovlfs[name]}"
