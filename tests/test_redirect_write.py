"""Directory rename in O(1) as the kernel's redirect_dir=on does it (issue #16): a merged or
lower directory is copied up alone, given overlay.redirect (its old name within one parent,
"/old/path" into another) and renamed; it stays merged (not opaque), a whiteout is left
where its name exists below, and nothing below it is copied. Compared with the kernel
overlayfs mounted with redirect_dir=on on identical layers: the results, the visible tree,
the upper layer on disk, and each one's layers remounted by the other. -o redirect_dir=off
keeps the copying rename. doc/semantics.md section E.
"""
import ctypes
import errno
import os
import stat

import pytest

import helpers
from helpers import Hardlink

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_REDIRECT = ("index=off", "redirect_dir=on", "metacopy=off")
LOWER = {
    "d": {"f": "in d\n", "sub": {"g": "deep\n", "deeper": {"h": "deeper\n"}},
          "h1": "linked\n", "h2": Hardlink("d/h1")},
    "other": {"o": "in other\n"},
    "empty": {},
    "keep": "kept\n",
}
LOWER2 = {"d": {"w": "second layer\n"}, "other": {"p": "second other\n"}}
REDIRECT = "trusted.overlay.redirect"
OPAQUE = "trusted.overlay.opaque"

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def renameat2(old, new, flags):
    if _libc.renameat2(-100, os.fsencode(old), -100, os.fsencode(new), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(old))


def _exchange(m, a, b):
    return helpers.errno_result(lambda: renameat2(m / a, m / b, RENAME_EXCHANGE))


def _rename(m, old, new):
    return helpers.errno_result(lambda: os.rename(m / old, m / new))


SCENARIOS = {
    "rename": lambda m: [_rename(m, "d", "d2")],
    "move": lambda m: [_rename(m, "d", "other/d")],
    "twice": lambda m: [_rename(m, "d", "d2"), _rename(m, "d2", "other/d3")],
    "back": lambda m: [_rename(m, "d", "d2"), _rename(m, "d2", "d")],
    "away_and_back": lambda m: [_rename(m, "d", "other/x"), _rename(m, "other/x", "d")],
    "over_empty_lower": lambda m: [_rename(m, "d", "empty")],
    "over_empty_upper": lambda m: [os.mkdir(m / "new"), _rename(m, "d", "new")],
    "over_emptied": lambda m: [_rename(m, "d", "other"), os.unlink(m / "other" / "o"),
                               os.unlink(m / "other" / "p"), _rename(m, "d", "other")],
    "rmdir_moved": lambda m: [_rename(m, "empty", "e"), os.rmdir(m / "e"),
                              _rename(m, "other", "o2"), os.unlink(m / "o2" / "o"),
                              os.unlink(m / "o2" / "p"), os.rmdir(m / "o2")],
    "move_into_moved": lambda m: [_rename(m, "other", "o2"), _rename(m, "d", "o2/d"),
                                  _rename(m, "o2/d/sub", "o2/sub"), _rename(m, "o2", "d")],
    "exchange": lambda m: [_exchange(m, "d", "other"), _rename(m, "d", "d2")],
    "exchange_file": lambda m: [_exchange(m, "d", "keep")],
    "exchange_upper_dir": lambda m: [os.mkdir(m / "new"), _exchange(m, "d", "new")],
    "exchange_moved": lambda m: [_rename(m, "d", "d2"), os.mkdir(m / "n"),
                                 _exchange(m, "d2", "n")],
    "noreplace": lambda m: [
        helpers.errno_result(lambda: renameat2(m / "d", m / "other", RENAME_NOREPLACE)),
        helpers.errno_result(lambda: renameat2(m / "d", m / "n", RENAME_NOREPLACE))],
    "inner_then_outer": lambda m: [_rename(m, "d/sub", "d/sub2"), _rename(m, "d", "other/d")],
    "outer_then_inner": lambda m: [_rename(m, "d", "d2"), _rename(m, "d2/sub", "sub_out")],
    "changed_inside": lambda m: [(m / "d" / "f").write_text("changed\n"),
                                 os.unlink(m / "d" / "sub" / "g"),
                                 _rename(m, "d", "other/d")],
    # With redirect_dir=on the kernel marks a directory made in a merged one opaque (in the
    # root, in a copied-up lower one), not one made in a pure-upper or opaque directory.
    "mkdir_in_merged": lambda m: [os.mkdir(m / "n"), os.mkdir(m / "d" / "n"),
                                  os.mkdir(m / "d" / "sub" / "deeper" / "n"),
                                  os.mkdir(m / "n" / "pure"), os.mkdir(m / "n" / "pure" / "p")],
    "mkdir_then_parent_moved": lambda m: [os.mkdir(m / "d" / "n"),
                                          (m / "d" / "n" / "f").write_text("new\n"),
                                          _rename(m, "d", "other/d"), _rename(m, "other", "o2"),
                                          sorted(os.listdir(m / "o2" / "d" / "n"))],
}


def upper_state(up):
    """The upper layer as the kernel reads it: each entry's type and overlay markers."""
    out = {}
    for dirpath, dirs, files in os.walk(up):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, up)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = "whiteout"
                continue
            rec = {"type": "dir" if stat.S_ISDIR(st.st_mode) else "file"}
            for x in (REDIRECT, OPAQUE):
                try:
                    rec[x] = os.getxattr(p, x)
                except OSError as e:
                    assert e.errno == errno.ENODATA
            out[rel] = rec
    return out


def _view(m):
    return helpers.snapshot(m, dir_nlink=False, mtime=False)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_rename_as_kernel(tmp_path, scenario):
    res, views, uppers, remounted = {}, {}, {}, {}
    sides = {}
    for side in ("kernel", "ovlfs"):
        ls = sides[side] = helpers.build_layers(tmp_path / side, [LOWER, LOWER2])
        mount = ls.kernel(mnt=tmp_path / f"{side}-m", extra_opts=KERNEL_REDIRECT) \
            if side == "kernel" else ls.ovlfs(mnt=tmp_path / f"{side}-m")
        with mount as m:
            res[side] = SCENARIOS[scenario](m)
            views[side] = _view(m)
        uppers[side] = upper_state(ls.upper)
    # Each one's layers, read by the other.
    with sides["ovlfs"].kernel(mnt=tmp_path / "k-on-o", extra_opts=KERNEL_REDIRECT) as m:
        remounted["kernel on ovlfs's layers"] = _view(m)
    with sides["kernel"].ovlfs(mnt=tmp_path / "o-on-k") as m:
        remounted["ovlfs on kernel's layers"] = _view(m)
    assert res["ovlfs"] == res["kernel"]
    helpers.assert_same_tree(views["kernel"], views["ovlfs"])
    assert uppers["ovlfs"] == uppers["kernel"]
    for name, view in remounted.items():
        helpers.assert_same_tree(views["kernel"], view, ("kernel", name))
    for side in sides.values():  # the lower layers never change
        assert (side.lowers[0] / "d" / "f").read_text() == "in d\n"


def test_redirect_values(tmp_path):
    """What the kernel writes, written: a relative name within one parent, an absolute
    path into another, kept on later renames; not opaque; a whiteout at the old name."""
    ls = helpers.build_layers(tmp_path, [LOWER, LOWER2])
    with ls.ovlfs() as m:
        ino = {n: os.stat(m / n).st_ino for n in ("d", "other")}
        os.rename(m / "d", m / "d2")
        os.rename(m / "other", m / "elsewhere")
        os.mkdir(m / "n")
        os.rename(m / "elsewhere", m / "n" / "o2")
        os.rename(m / "d2", m / "d3")
        assert sorted(os.listdir(m / "d3")) == ["f", "h1", "h2", "sub", "w"]
        assert sorted(os.listdir(m / "n" / "o2")) == ["o", "p"]
        assert os.stat(m / "d3" / "h1").st_nlink == 2
        # the same directories: their numbers kept, and readdir's d_ino is stat's
        assert {n: os.stat(m / p).st_ino for n, p in (("d", "d3"), ("other", "n/o2"))} == ino
        for parent in (m, m / "n"):
            with os.scandir(parent) as it:
                for e in it:
                    assert e.inode() == os.lstat(e.path).st_ino, e.path
    up = ls.upper
    assert os.getxattr(up / "d3", REDIRECT) == b"d"
    assert os.getxattr(up / "n" / "o2", REDIRECT) == b"/other"
    for d in ("d3", "n/o2"):
        assert OPAQUE not in os.listxattr(up / d)
        assert sorted(os.listdir(up / d)) == []  # nothing below was copied
    for name in ("d", "other"):
        st = os.lstat(up / name)
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


MIB = 1 << 20


def _upper_bytes(up):
    return sum(os.lstat(os.path.join(d, n)).st_blocks * 512
               for d, dirs, files in os.walk(up) for n in dirs + files)


def test_rename_writes_no_data(tmp_path):
    """A directory of 64 MiB renamed: the upper layer stays tiny (was 64 MiB and more)."""
    ls = helpers.build_layers(tmp_path, [{"big": {"data": b"x" * (64 * MIB),
                                                  "sub": {f"f{i}": f"{i}\n" for i in range(50)}}}])
    with ls.ovlfs() as m:
        os.mkdir(m / "to")
        os.rename(m / "big", m / "to" / "big")
        assert os.stat(m / "to" / "big" / "data").st_size == 64 * MIB
        assert len(os.listdir(m / "to" / "big" / "sub")) == 50
        assert (m / "to" / "big" / "sub" / "f7").read_text() == "7\n"
    assert _upper_bytes(ls.upper) < MIB
    assert os.getxattr(ls.upper / "to" / "big", REDIRECT) == b"/big"


def test_redirect_dir_off_copies(tmp_path):
    """-o redirect_dir=off (and follow, nofollow): today's copying rename, opaque; on
    (the default) writes a redirect."""
    ls = helpers.build_layers(tmp_path / "on", [LOWER, LOWER2])
    with ls.ovlfs(extra_opts=("redirect_dir=on",)) as m:
        os.rename(m / "d", m / "d2")
    assert os.getxattr(ls.upper / "d2", REDIRECT) == b"d"
    for opt in ("redirect_dir=off", "redirect_dir=follow", "redirect_dir=nofollow"):
        ls = helpers.build_layers(tmp_path / opt, [LOWER, LOWER2])
        with ls.ovlfs(extra_opts=(opt,)) as m:
            os.rename(m / "d", m / "d2")
            assert sorted(os.listdir(m / "d2")) == ["f", "h1", "h2", "sub", "w"]
        assert REDIRECT not in os.listxattr(ls.upper / "d2")
        assert os.getxattr(ls.upper / "d2", OPAQUE) == b"y"
        assert (ls.upper / "d2" / "sub" / "deeper" / "h").read_text() == "deeper\n"


def test_too_long_redirect_copies(tmp_path):
    """An absolute redirect over 256 bytes (the kernel's redirect_max): the kernel answers
    EXDEV (mv then copies); ovlfs copies the directory up whole itself."""
    long = "/".join(c * 100 for c in "abc")  # 302 bytes
    spec = {"top": {"a" * 100: {"b" * 100: {"c" * 100: {"f": "far\n"}}}}, "to": {}}
    ls = helpers.build_layers(tmp_path / "k", [spec])
    with ls.kernel(mnt=tmp_path / "km", extra_opts=KERNEL_REDIRECT) as m:
        helpers.expect_errno(errno.EXDEV, os.rename, m / "top" / long, m / "to" / "x")
    ls = helpers.build_layers(tmp_path / "o", [spec])
    with ls.ovlfs() as m:
        os.rename(m / "top" / long, m / "to" / "x")
        assert (m / "to" / "x" / "f").read_text() == "far\n"
        os.rename(m / "top" / ("a" * 100), m / "to" / "y")  # short: a redirect
    assert REDIRECT not in os.listxattr(ls.upper / "to" / "x")
    assert os.getxattr(ls.upper / "to" / "x", OPAQUE) == b"y"
    assert os.getxattr(ls.upper / "to" / "y", REDIRECT) == b"/top/" + b"a" * 100
    with ls.ovlfs() as m:
        assert (m / "to" / "x" / "f").read_text() == "far\n"
        assert sorted(os.listdir(m / "to" / "y")) == ["b" * 100]


def test_userxattr_renames_by_copying_as_the_kernel_refuses_redirects(tmp_path):
    """The rootless format (userxattr): the kernel refuses redirects there (its userxattr
    mounts answer EPERM for a redirected directory), so ovlfs renames by copying and the
    kernel, mounting the layers with userxattr, shows the same tree."""
    ls = helpers.build_layers(tmp_path, [LOWER, LOWER2])
    with ls.ovlfs(extra_opts=("userxattr",)) as m:
        os.rename(m / "d", m / "other" / "d")
        want = _view(m)
    names = os.listxattr(ls.upper / "other" / "d")
    assert "user.overlay.redirect" not in names and REDIRECT not in names
    with ls.ovlfs(extra_opts=("userxattr",)) as m:
        helpers.assert_same_tree(want, _view(m), ("before", "remounted"))
        assert (m / "other" / "d" / "sub" / "deeper" / "h").read_text() == "deeper\n"
    # the index ovlfs keeps by default (d/h1 and d/h2 copied as one file) read as written
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=("userxattr", "index=on")) as m:
        helpers.assert_same_tree(want, _view(m), ("ovlfs", "kernel"))