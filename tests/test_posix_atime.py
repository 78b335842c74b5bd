"""Access times, differential against the kernel overlayfs (the atime item of the POSIX
fidelity issue).

The kernel overlayfs never changes a lower object's atime (it reads lower files and
directories with O_NOATIME, copy-up included) and applies the mount's atime mode to upper
objects. ovlfs reads every lower object O_NOATIME too, and upper ones O_NOATIME only under
noatime (directories also under nodiratime), so that the upper filesystem's own relatime
decides otherwise. Each mode gets identical layers on both; every object starts with an
atime a day and more old (relatime updates it on the next read), then is read, listed or
copied up through the mount, and whether its atime moved must be the same on both.
"""
import os
import time

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

OLD = 2 * 86400  # seconds back: older than relatime's 24 hours
LOWER = {"lfile": helpers.File("lower\n"), "lcopy": helpers.File("copied up\n"),
         "ldir": helpers.Dir({"a": helpers.File("")}),
         "mdir": helpers.Dir({"a": helpers.File("")})}
UPPER = {"ufile": helpers.File("upper\n"), "udir": helpers.Dir({"b": helpers.File("")}),
         "mdir": helpers.Dir({"b": helpers.File("")})}
# Layer paths whose atime is aged before mounting.
AGED = ["lower0/lfile", "lower0/lcopy", "lower0/ldir", "lower0/mdir", "upper/ufile",
        "upper/udir", "upper/mdir"]
# "" is the default (relatime on both). Under noatime ovlfs turns passthrough off itself: a
# passthrough read is the upper filesystem's own (see README, Limitations).
MODES = ["", "relatime", "strictatime", "noatime", "nodiratime"]


def _age(layers):
    old = time.time() - OLD
    for rel in AGED:
        p = layers.base / rel
        os.utime(p, (old, os.lstat(p).st_mtime))


def _fresh(t, start):
    # Whole seconds: the kernel's atime granularity is its coarse clock tick.
    return t >= start - 1


def _exercise(layers, mnt):
    """Reads, lists and copies up through mnt; returns what moved, seen through the mount
    and on the layers."""
    start = time.time()
    for name in ("lfile", "ufile"):
        with open(mnt / name, "rb") as f:
            f.read()
    for name in ("ldir", "udir", "mdir"):
        os.listdir(mnt / name)
    with open(mnt / "lcopy", "ab") as f:  # copy-up reads the lower file's data
        f.write(b"more\n")
    seen = {n: _fresh(os.stat(mnt / n).st_atime, start)
            for n in ("lfile", "ufile", "ldir", "udir", "mdir")}
    disk = {rel: _fresh(os.lstat(layers.base / rel).st_atime, start) for rel in AGED}
    return seen, disk


@pytest.fixture(scope="module", params=MODES, ids=lambda m: m or "default")
def results(request):
    mode = request.param
    with wh.public_dir() as pub:
        k = helpers.build_layers(pub / "k", [LOWER], UPPER)
        o = helpers.build_layers(pub / "o", [LOWER], UPPER)
        _age(k)
        _age(o)
        kopts = wh.KERNEL_OPTS + ((mode,) if mode else ())
        oopts = (mode,) if mode else ()
        with k.kernel(mnt=pub / "mk", extra_opts=kopts) as km:
            kernel = _exercise(k, km)
        with o.ovlfs(mnt=pub / "mo", extra_opts=oopts) as om:
            ovlfs = _exercise(o, om)
        yield mode, kernel, ovlfs


def test_lower_atime_never_changes(results):
    mode, kernel, ovlfs = results
    lower = {rel: v for rel, v in ovlfs[1].items() if rel.startswith("lower")}
    assert not any(lower.values()), lower
    assert not any(v for rel, v in kernel[1].items() if rel.startswith("lower"))


def test_layer_atimes_as_kernel(results):
    mode, kernel, ovlfs = results
    assert ovlfs[1] == kernel[1]


def test_atime_seen_through_mount_as_kernel(results):
    mode, kernel, ovlfs = results
    assert ovlfs[0] == kernel[0]

