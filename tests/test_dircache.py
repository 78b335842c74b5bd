"""The directory fd cache (src/engine/dircache.c): requests on names in a directory start
from a cached fd of the directory's object in each layer. Each scenario first makes the
daemon cache a directory, then changes which object that directory's path names (rmdir and
mkdir again, rename away, over or in exchange, copy-up, a redirect, a tree removed and
built again, more directories than the cache holds), then works in it again. Compared with
the kernel overlayfs (redirect_dir=on, ovlfs's default) on identical layers: the results,
the visible tree and the upper layer on disk.
"""
import ctypes
import errno
import os
import stat

import pytest

import helpers

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_OPTS = ("index=off", "redirect_dir=on", "metacopy=off")
LOWER = {
    "d": {"f": "lower f\n", "sub": {"g": "lower g\n"}},
    "other": {"o": "lower o\n"},
    "empty": {},
}

_libc = ctypes.CDLL(None, use_errno=True)
RENAME_EXCHANGE = 2


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _read_all(m):
    """Every file's content, by path: each read opens the file through the daemon."""
    out = {}
    for dirpath, _, files in os.walk(m):
        for name in files:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, m)] = helpers.errno_result(lambda: open(p).read())
    return out


def _do(fn):
    return helpers.errno_result(fn)


def _exchange(a, b):
    if _libc.renameat2(-100, os.fsencode(a), -100, os.fsencode(b), RENAME_EXCHANGE) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(a))


def rmdir_mkdir(m):
    os.mkdir(m / "a")
    _write(m / "a" / "f", "first\n")
    os.unlink(m / "a" / "f")
    os.rmdir(m / "a")
    os.mkdir(m / "a")
    _write(m / "a" / "g", "second\n")
    return [_do(lambda: os.stat(m / "a" / "f")), sorted(os.listdir(m / "a"))]


def rename_away(m):
    os.makedirs(m / "a" / "b")
    _write(m / "a" / "b" / "f", "in b\n")
    os.rename(m / "a", m / "c")
    os.makedirs(m / "a" / "b")
    _write(m / "a" / "b" / "x", "new b\n")
    _write(m / "c" / "b" / "y", "moved b\n")
    return [sorted(os.listdir(m / "a" / "b")), sorted(os.listdir(m / "c" / "b"))]


def rename_over_empty(m):
    os.mkdir(m / "x")
    _write(m / "x" / "f", "x f\n")
    os.mkdir(m / "y")
    _write(m / "y" / "tmp", "y tmp\n")
    os.unlink(m / "y" / "tmp")
    os.rename(m / "x", m / "y")
    _write(m / "y" / "g", "into y\n")
    return [sorted(os.listdir(m / "y")), _do(lambda: os.stat(m / "x"))]


def exchange(m):
    os.mkdir(m / "p")
    os.mkdir(m / "q")
    _write(m / "p" / "pf", "p\n")
    _write(m / "q" / "qf", "q\n")
    _exchange(m / "p", m / "q")
    _write(m / "p" / "after", "p after\n")
    _write(m / "q" / "after", "q after\n")
    return [sorted(os.listdir(m / "p")), sorted(os.listdir(m / "q"))]


def copy_up(m):
    first = open(m / "d" / "sub" / "g").read()  # the lower directories, walked and cached
    _write(m / "d" / "sub" / "new", "new in sub\n")  # copies d and sub up
    os.chmod(m / "d" / "sub" / "g", 0o600)  # copies g up, into the new upper sub
    _write(m / "d" / "sub" / "g", "changed g\n")
    return [first, sorted(os.listdir(m / "d" / "sub"))]


def redirect(m):
    first = open(m / "d" / "f").read()
    os.rename(m / "d", m / "d2")  # a merged directory: a redirect to the lower d
    os.mkdir(m / "d")
    _write(m / "d" / "f", "new d f\n")
    _write(m / "d2" / "sub" / "h", "h in moved sub\n")
    return [first, sorted(os.listdir(m / "d")), sorted(os.listdir(m / "d2"))]


def rmdir_lower(m):
    os.listdir(m / "empty")
    os.rmdir(m / "empty")  # a whiteout over the lower directory
    os.mkdir(m / "empty")  # an opaque one in its place
    _write(m / "empty" / "f", "in opaque\n")
    return [sorted(os.listdir(m / "empty"))]


def tree_again(m):
    for rnd in ("one", "two"):
        for i in range(5):
            d = m / "t" / f"d{i}" / "a" / "b" / "c"
            os.makedirs(d)
            for j in range(4):
                _write(d / f"f{j}", f"{rnd} {i} {j}\n")
        if rnd == "one":
            _read_all(m / "t")
            for dirpath, dirs, files in os.walk(m / "t", topdown=False):
                for name in files:
                    os.unlink(os.path.join(dirpath, name))
                for name in dirs:
                    os.rmdir(os.path.join(dirpath, name))
    return [len(_read_all(m / "t"))]


def many_dirs(m):
    # More directories than the cache holds (256 entries): evicted ones are walked again.
    for i in range(300):
        os.mkdir(m / f"m{i}")
        _write(m / f"m{i}" / "one", f"{i}\n")
    for i in range(300):
        _write(m / f"m{i}" / "two", f"{i} two\n")
    return [sum(1 for i in range(300) if len(os.listdir(m / f"m{i}")) == 2)]


SCENARIOS = {f.__name__: f for f in (rmdir_mkdir, rename_away, rename_over_empty, exchange,
                                      copy_up, redirect, rmdir_lower, tree_again, many_dirs)}


def _upper_state(up):
    out = {}
    for dirpath, dirs, files in os.walk(up):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, up)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out[rel] = "whiteout"
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", _xattr(p, "trusted.overlay.opaque"),
                            _xattr(p, "trusted.overlay.redirect"))
            else:
                out[rel] = open(p).read()
    return out


def _xattr(p, name):
    try:
        return os.getxattr(p, name)
    except OSError as e:
        assert e.errno == errno.ENODATA
        return None


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_cached_directory_changed_as_kernel(tmp_path, scenario):
    res, views, contents, uppers = {}, {}, {}, {}
    for side in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / side, [LOWER])
        mount = ls.kernel(mnt=tmp_path / f"{side}-m", extra_opts=KERNEL_OPTS) \
            if side == "kernel" else ls.ovlfs(mnt=tmp_path / f"{side}-m")
        with mount as m:
            res[side] = SCENARIOS[scenario](m)
            contents[side] = _read_all(m)
            views[side] = helpers.snapshot(m, dir_nlink=False, mtime=False)
        uppers[side] = _upper_state(ls.upper)
    assert res["ovlfs"] == res["kernel"]
    assert contents["ovlfs"] == contents["kernel"]
    helpers.assert_same_tree(views["kernel"], views["ovlfs"])
    assert uppers["ovlfs"] == uppers["kernel"]
