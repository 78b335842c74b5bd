"""Layers a kernel overlayfs wrote with redirect_dir=on, read by ovlfs (issue #16): a
directory renamed or moved by the kernel keeps its lower directories where they were and
names them in overlay.redirect ("/a/b" from the layers' root, or a name in the same
parent); ovlfs follows it as the kernel does, so the moved directory shows its lower
contents, rmdir of it is refused while they show, and changes inside copy up from where
the data is. Invalid redirects are refused as the kernel refuses them. doc/semantics.md
section E.
"""
import errno
import os

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_REDIRECT = ("index=off", "redirect_dir=on", "metacopy=off")
LOWER = {
    "a": {"f": "in a\n", "sub": {"g": "deep\n"}},
    "b": {"x": "in b\n"},
    "c": {"y": "in c\n", "d": {"z": "in c/d\n"}},
    "keep": "kept\n",
}
LOWER2 = {"b": {"w": "in b, second layer\n"}, "m": {"n": "in m\n"}}


def _kernel_renames(m):
    os.rename(m / "a", m / "a2")  # a relative redirect: "a"
    os.mkdir(m / "newdir")
    os.rename(m / "b", m / "newdir" / "b2")  # an absolute one: "/b"
    os.rename(m / "c", m / "c2")
    os.rename(m / "c2", m / "newdir" / "c3")  # renamed twice: still "/c"
    os.rename(m / "m", m / "newdir" / "m2")  # only in the second lower layer
    os.rename(m / "newdir" / "c3" / "d", m / "d_out")  # below a redirected one: "/c/d"


@pytest.fixture
def redirected(tmp_path):
    """Layers after the kernel's renames, and what the kernel showed then."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER, LOWER2])
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_REDIRECT) as m:
        _kernel_renames(m)
        shown = helpers.snapshot(m, dir_nlink=False)
    return ls, shown


def test_kernel_wrote_redirects(redirected):
    ls, _ = redirected
    up = ls.upper
    assert os.getxattr(up / "a2", "trusted.overlay.redirect") == b"a"
    assert os.getxattr(up / "newdir" / "b2", "trusted.overlay.redirect") == b"/b"
    assert os.getxattr(up / "newdir" / "c3", "trusted.overlay.redirect") == b"/c"


def test_ovlfs_shows_what_the_kernel_showed(redirected, tmp_path):
    ls, shown = redirected
    with ls.ovlfs(mnt=tmp_path / "mo") as m:
        ours = helpers.snapshot(m, dir_nlink=False)
        assert (m / "newdir" / "b2" / "w").read_text() == "in b, second layer\n"
    helpers.assert_same_tree(shown, ours)


def _changes(m):
    out = {}
    for d in ("newdir/b2", "a2", "newdir/c3", "d_out", "newdir/m2"):
        out["rmdir " + d] = helpers.errno_result(lambda: os.rmdir(m / d))
    with open(m / "a2" / "f", "a") as f:  # a copy-up from the redirected lower file
        f.write("more\n")
    os.chmod(m / "newdir" / "b2" / "x", 0o600)
    os.unlink(m / "newdir" / "c3" / "y")
    os.rename(m / "newdir" / "m2" / "n", m / "n_out")
    out["listing"] = sorted(os.listdir(m / "newdir" / "b2"))
    return out


def test_changes_in_redirected_dirs_as_kernel(tmp_path):
    results = {}
    trees = {}
    for side in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / side, [LOWER, LOWER2])
        with ls.kernel(mnt=tmp_path / f"{side}-k", extra_opts=KERNEL_REDIRECT) as m:
            _kernel_renames(m)
        mount = ls.kernel(mnt=tmp_path / f"{side}-m", extra_opts=KERNEL_REDIRECT) \
            if side == "kernel" else ls.ovlfs(mnt=tmp_path / f"{side}-m")
        with mount as m:
            results[side] = _changes(m)
            trees[side] = helpers.snapshot(m, dir_nlink=False, mtime=False)
        # and what the kernel makes of the layers afterwards
        with ls.kernel(mnt=tmp_path / f"{side}-k2", extra_opts=KERNEL_REDIRECT) as m:
            trees[side + " remounted"] = helpers.snapshot(m, dir_nlink=False, mtime=False)
        assert (ls.lowers[0] / "a" / "f").read_text() == "in a\n"
    assert results["ovlfs"] == results["kernel"]
    assert results["kernel"]["rmdir newdir/b2"] == "ENOTEMPTY"
    helpers.assert_same_tree(trees["kernel"], trees["ovlfs"])
    helpers.assert_same_tree(trees["kernel remounted"], trees["ovlfs remounted"])


BAD = {
    "dotdot": b"../..",
    "slash_in_relative": b"x/y",
    "empty_component": b"//b",
    "dot_component": b"/b/./x",
    "long": b"/" + b"n" * 10000,
    "missing": b"/nowhere",
}


def test_bad_redirects_as_kernel(tmp_path):
    """Each upper directory carries a broken redirect; every name's lookup result must be
    the kernel's (an invalid one: EINVAL), and ovlfs serves on."""
    res = {}
    for side in ("kernel", "ovlfs"):
        upper = {name: {"u": "upper\n"} for name in BAD}
        ls = helpers.build_layers(tmp_path / side, [LOWER], upper)
        for name, value in BAD.items():
            try:
                os.setxattr(ls.upper / name, "trusted.overlay.redirect", value)
            except OSError as e:  # the 10000 bytes may be too long for the filesystem
                assert e.errno in (errno.E2BIG, errno.ENOSPC, errno.ERANGE), e
        mount = ls.kernel(mnt=tmp_path / f"{side}-m", extra_opts=KERNEL_REDIRECT) \
            if side == "kernel" else ls.ovlfs(mnt=tmp_path / f"{side}-m")
        with mount as m:
            out = {}
            for name in BAD:
                out[name] = helpers.errno_result(lambda: sorted(os.listdir(m / name)))
            out["keep"] = (m / "keep").read_text()
            res[side] = out
    assert res["ovlfs"] == res["kernel"], res


def test_nofollow_refuses_as_kernel(tmp_path):
    """redirect_dir=nofollow: a directory carrying a redirect is refused (EPERM)."""
    res = {}
    for side in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / side, [LOWER, LOWER2])
        with ls.kernel(mnt=tmp_path / f"{side}-k", extra_opts=KERNEL_REDIRECT) as m:
            _kernel_renames(m)
        opts = ("index=off", "redirect_dir=nofollow", "metacopy=off")
        mount = ls.kernel(mnt=tmp_path / f"{side}-m", extra_opts=opts) if side == "kernel" \
            else ls.ovlfs(mnt=tmp_path / f"{side}-m", extra_opts=("redirect_dir=nofollow",))
        with mount as m:
            res[side] = {d: helpers.errno_result(lambda: sorted(os.listdir(m / d)))
                         for d in ("a2", "newdir/b2", "newdir", "keep")}
    assert res["ovlfs"] == res["kernel"], res
    assert res["kernel"]["a2"] == "EPERM"


def test_uuid_off_writes_null_uuids(tmp_path):
    """uuid=off, as the kernel's: origin records carry a null UUID, and numbers still last."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER])
    with ls.ovlfs(mnt=tmp_path / "m1", extra_opts=("uuid=off",)) as m:
        before = os.lstat(m / "keep").st_ino
        os.chmod(m / "keep", 0o600)
    value = os.getxattr(ls.upper / "keep", "trusted.overlay.origin")
    assert value[1] == 0xFB and value[5:21] == bytes(16)
    with ls.ovlfs(mnt=tmp_path / "m2", extra_opts=("uuid=off",)) as m:
        assert os.lstat(m / "keep").st_ino == before
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=("uuid=off",) + wh.KERNEL_OPTS) as m:
        assert os.lstat(m / "keep").st_ino == before
