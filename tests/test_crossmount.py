"""On-disk format, both ways: an upper layer written through one implementation, then mounted
by the other with the same lower layers, shows the same tree.

* ovlfs -> kernel: steps run through ovlfs (directory renames included: ovlfs marks the moved
  directory opaque and leaves a whiteout, so the kernel needs no redirects). The kernel's
  view of the result must equal the view a fresh ovlfs mount gives, and the view ovlfs gave
  at the end of the writing session.
* kernel -> ovlfs: the same steps through the kernel overlayfs (its directory renames fail
  with EXDEV, which is fine: only the views are compared), then ovlfs mounts the kernel's
  upper and work directories (work/work, index, origin/impure/uuid xattrs and all) and must
  show the kernel's view; ovlfs then writes more, and the kernel must see that too.
Views compare names, types, modes, owners, sizes, contents, symlink targets, rdev, nlink,
xattrs as listed through the mount, mtimes and hard-link groups."""
import os

import pytest

from helpers import (Chr, Dir, FIXED_MTIME, File, Fifo, Hardlink, Opaque, Symlink, Whiteout,
                     XWhiteout, assert_same_tree, build_layers, needs_fuse, needs_kernel_overlay,
                     snapshot)
from write_helpers import (KERNEL_OPTS, RENAME_EXCHANGE, link_groups, make_sparse, run_steps,
                           work_leftovers)

pytestmark = [needs_fuse, needs_kernel_overlay]
T = FIXED_MTIME
MiB = 1 << 20

BASE_LOWERS = [
    {"d": Dir({"x": File("x", mode=0o600, uid=3, gid=4, mtime=T + 1,
                         xattrs={"user.x": "1"}),
               "s": {"y": "y", "l": Symlink("../x")}}, mode=0o750, uid=5, mtime=T + 2),
     "m": {"top": "t", "gone": "g", "sub": {"deep": "d"}},
     "f": File("F", mode=0o4755, xattrs={"user.f": "f"}), "g": "G", "h": "H",
     "hl": "linked", "hl2": Hardlink("hl"), "null": Chr(1, 3), "p": Fifo(),
     "e": {}, "x1": {"in": "1"}, "x2": {"in": "2"}},
    {"m": {"bottom": "b", "sub": {"low": "l"}}, "w": {"hidden": "h"}, "o": {"old": "o"},
     "xw": Dir({"a": XWhiteout(), "keep": "k"}, opaque="x")},
    {"xw": {"a": "a", "b": "b"}, "bottom_only": "bo"},
]
BASE_UPPER = {"m": {"u": "U", "gone": Whiteout()}, "w": Whiteout(),
              "o": Opaque({"new": "n"})}

SCENARIOS = {
    "copy_up_and_metadata": [
        ("chmod", "f", 0o755), ("chown", "g", 7, 8), ("utime", "h", (T + 9) * 10**9, "omit"),
        ("setx", "d/x", "user.new", b"v"), ("setx", "g", "trusted.overlay.foo", b"esc"),
        ("write", "hl", b"L"), ("truncate", "d/s/y", 0), ("chmod", "null", 0o600),
        ("chmod", "p", 0o600), ("chown", "d/s/l", 1, 1), ("creat", "m/sub/new", b"n")],
    "whiteouts_and_opaque": [
        ("unlink", "g"), ("unlink", "m/top"), ("unlink", "m/bottom"), ("unlink", "xw/keep"),
        ("mkdir", "w"), ("creat", "w/in", b"i"), ("unlink", "h"), ("mkdir", "h"),
        ("unlink", "d/s/y"), ("unlink", "d/s/l"), ("rmdir", "d/s"), ("rmdir", "e"),
        ("creat", "o/old", b"not the lower one"), ("unlink", "bottom_only"),
        ("mknod", "n", "c", 1, 3), ("symlink", "f", "sym")],
    "rmdir_and_recreate": [
        ("unlink", "m/sub/deep"), ("unlink", "m/sub/low"), ("rmdir", "m/sub"),
        ("mkdir", "m/sub"), ("creat", "m/sub/fresh", b"f"), ("unlink", "x1/in"),
        ("rmdir", "x1"), ("creat", "x1", b"now a file"),
        ("unlink", "xw/b"), ("unlink", "xw/keep"), ("rmdir", "xw")],
    "directory_renames": [
        ("rename", "d", "d2"), ("rename", "m", "e/m"), ("rename", "x1", "x2", RENAME_EXCHANGE),
        ("mkdir", "pure"), ("creat", "pure/f", b"p"), ("rename", "pure", "o/pure"),
        ("rename", "o", "w"), ("rename", "xw", "xw2"), ("mkdir", "d"), ("creat", "d/z", b"z")],
    "file_renames_and_links": [
        ("rename", "f", "f2"), ("rename", "g", "h"), ("rename", "d/x", "m/x"),
        ("rename", "m/u", "w"), ("link", "hl2", "hl3"), ("link", "d/s/y", "newlink"),
        ("rename", "bottom_only", "m/sub/bo"), ("rename", "hl", "hl2")],
    "sparse_and_data": [
        ("write", "sparse", b"middle", 20 * MiB), ("fallocate", "h", 0, 0, 65536),
        ("copyrange", "hl", "copy", 6), ("append", "g", b"++")],
}


def build(base):
    ls = build_layers(base, BASE_LOWERS, BASE_UPPER)
    make_sparse(ls.lowers[0] / "sparse", 48 * MiB, {0: b"s" * 4096, 40 * MiB: b"e" * 4096})
    return ls


def view(mnt):
    return snapshot(mnt, overlay_xattrs=True), link_groups(mnt)


def assert_same_view(a, b, names):
    assert_same_tree(a[0], b[0], names)
    assert a[1] == b[1], f"hard-link groups differ: {names[0]} {a[1]} {names[1]} {b[1]}"


def kernel_mount(ls, index):
    return ls.kernel(extra_opts=tuple(o for o in KERNEL_OPTS if not o.startswith("index="))
                     + (f"index={index}",))


def ovlfs_mount(ls, index):
    return ls.ovlfs(extra_opts=(f"index={index}",))


# Both sides with the index off (the kernel's default), and both with it on (ovlfs's).
INDEX = pytest.mark.parametrize("index", ["off", "on"])


@INDEX
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_written_by_ovlfs_read_by_kernel(tmp_path, name, index):
    ls = build(tmp_path / "layers")
    with ovlfs_mount(ls, index) as m:
        results = run_steps(m, SCENARIOS[name])
        session = view(m)
    assert not work_leftovers(ls.work)
    with ovlfs_mount(ls, index) as m:
        fresh = view(m)
    with kernel_mount(ls, index) as k:
        kernel = view(k)
    assert_same_view(kernel, fresh, ("kernel", "ovlfs (fresh mount)"))
    assert_same_view(kernel, session, ("kernel", "ovlfs (writing session)"))
    failed = [(s, r) for s, r in zip(SCENARIOS[name], results) if isinstance(r, str)
              and r.startswith("E")]
    assert not failed, f"ovlfs refused steps of the scenario: {failed}"


@INDEX
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_written_by_kernel_read_by_ovlfs(tmp_path, name, index):
    ls = build(tmp_path / "layers")
    with kernel_mount(ls, index) as k:
        run_steps(k, SCENARIOS[name])
        kernel = view(k)
    with ovlfs_mount(ls, index) as m:
        assert_same_view(kernel, view(m), ("kernel (writer)", "ovlfs"))
        # ovlfs writes on top of the kernel's upper: whiteouts and copy-ups of its own
        more = run_steps(m, [("creat", "added", b"a"), ("unlink", "p"), ("chmod", "hl2", 0o600),
                             ("mkdir", "newdir"), ("setx", "null", "trusted.k", b"v")])
        session = view(m)
    assert all(r in (0, 1) for r in more), more
    with kernel_mount(ls, index) as k:
        assert_same_view(session, view(k), ("ovlfs (second writer)", "kernel"))
