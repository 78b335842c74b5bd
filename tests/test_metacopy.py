"""Metacopy files (issue #16): a kernel overlayfs mounted with metacopy=on copies up only the
metadata of a lower file on chown/chmod: the upper file is a sparse stub carrying
trusted.overlay.metacopy, its data stays below (at the same path, or where the stub's
absolute overlay.redirect points after a rename). ovlfs with -o metacopy=on shows such a
file as the kernel does (the stub's metadata, the data file's content and st_blocks) and
copies the data up before changing it; without the option it refuses the file (EPERM) as
the kernel does, never showing the stub's zeros.
"""
import errno
import os

import pytest

import helpers

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_MC = ("index=off", "redirect_dir=on", "metacopy=on")
BIG = "0123456789abcdef" * 8192 + "end\n"  # 128 KiB: blocks the stub does not have
LOWER = {
    "big": BIG,
    "small": "small\n",
    "d": {"f": "in d\n", "g": "g, renamed\n"},
    "keep": "kept\n",
}
CHANGED = ("big", "small", "d/f", "g2")


def _kernel_changes(m):
    os.chmod(m / "big", 0o600)
    os.chown(m / "small", 1000, 1000)
    os.utime(m / "d" / "f", (1000000, 2000000))
    os.chmod(m / "d" / "g", 0o640)
    os.rename(m / "d" / "g", m / "g2")  # a metacopy stub moved: an absolute redirect


@pytest.fixture
def metacopied(tmp_path):
    """Layers after the kernel's metadata-only copy-ups, what it showed, and st_blocks."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER])
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC) as m:
        _kernel_changes(m)
        shown = helpers.snapshot(m, dir_nlink=False)
        blocks = {p: os.lstat(m / p).st_blocks for p in CHANGED}
    return ls, shown, blocks


def _assert_stubs(ls):
    """What the kernel wrote: stubs whose data stayed below."""
    for p in ("big", "small", "d/f"):
        assert os.getxattr(ls.upper / p, "trusted.overlay.metacopy") == b""
    assert os.lstat(ls.upper / "big").st_blocks < 64  # the data stayed below (xattr block only)
    assert os.getxattr(ls.upper / "g2", "trusted.overlay.redirect") == b"/d/g"


def test_ovlfs_metacopy_on_shows_what_the_kernel_showed(metacopied, tmp_path):
    ls, shown, blocks = metacopied
    _assert_stubs(ls)
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on"]) as m:
        ours = helpers.snapshot(m, dir_nlink=False)
        assert (m / "big").read_text() == BIG
        assert (m / "g2").read_text() == "g, renamed\n"
        assert {p: os.lstat(m / p).st_blocks for p in CHANGED} == blocks
    helpers.assert_same_tree(shown, ours)


def test_append_copies_the_data_up(metacopied, tmp_path):
    ls, _, _ = metacopied
    lower_before = (ls.lowers[0] / "big").read_text()
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on"]) as m:
        with open(m / "big") as reader:  # opened on the data below, before the copy
            with open(m / "big", "a") as f:
                f.write("more\n")
            assert reader.read() == BIG + "more\n"  # switched to the full copy
        assert (m / "big").read_text() == BIG + "more\n"
        os.truncate(m / "small", 3)
        assert (m / "small").read_text() == "sma"
        with open(m / "g2", "r+") as f:
            f.write("G")
        assert (m / "g2").read_text() == "G, renamed\n"
        assert os.stat(m / "big").st_mode & 0o777 == 0o600
        assert os.stat(m / "small").st_uid == 1000
    assert (ls.lowers[0] / "big").read_text() == lower_before  # the lower data intact
    for p in ("big", "small", "g2"):
        with pytest.raises(OSError) as e:
            os.getxattr(ls.upper / p, "trusted.overlay.metacopy")
        assert e.value.errno == errno.ENODATA
    # The kernel, even without metacopy, reads the copies.
    with ls.kernel(mnt=tmp_path / "mk2", extra_opts=("index=off", "metacopy=off")) as k:
        assert (k / "big").read_text() == BIG + "more\n"
        assert (k / "small").read_text() == "sma"
        assert (k / "g2").read_text() == "G, renamed\n"


def _access(m):
    out = {}
    for p in CHANGED + ("keep", "d"):
        out["stat " + p] = helpers.errno_result(lambda: os.lstat(m / p).st_size)
        out["read " + p] = helpers.errno_result(
            lambda: len((m / p).read_bytes()) if not os.path.isdir(m / p) else "dir")
    return out


def test_without_metacopy_refused_as_kernel(metacopied, tmp_path):
    ls, _, _ = metacopied
    with ls.kernel(mnt=tmp_path / "mk2", extra_opts=("index=off", "metacopy=off")) as k:
        kernel = _access(k)
    assert kernel["stat big"] == "EPERM"  # the kernel refuses, never shows the stub
    with ls.ovlfs(mnt=tmp_path / "mo") as m:
        ours = _access(m)
        log = m.log()
    assert ours == kernel
    assert "metacopy" in log
