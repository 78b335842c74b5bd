"""Metacopy files (issue #16): a kernel overlayfs mounted with metacopy=on copies up only the
metadata of a lower file on chown/chmod: the upper file is a sparse stub carrying
trusted.overlay.metacopy, its data stays below (at the same path, or where the stub's
absolute overlay.redirect points after a rename). ovlfs with -o metacopy=on shows such a
file as the kernel does (the stub's metadata, the data file's content and st_blocks) and
copies the data up before changing it; without the option it refuses the file (EPERM) as
the kernel does, never showing the stub's zeros.
"""
import contextlib
import errno
import hashlib
import os
import subprocess

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


# A composefs-style stack: a metadata layer whose regular files are empty sparse stubs
# (overlay.metacopy, and an absolute overlay.redirect to a content-addressed object) over a
# data-only layer holding the objects, mounted with lowerdir=meta::data.
OBJECTS = {"hello": "hello from the object store\n", "big": "x" * 70000 + "tail\n",
           "same": "shared object\n"}


def _object_path(content):
    h = hashlib.sha256(content.encode()).hexdigest()
    return h[:2], h[2:]


def _build_composefs(base):
    meta, data = base / "meta", base / "data"
    (meta / "etc").mkdir(parents=True)
    (meta / "usr" / "bin").mkdir(parents=True)
    data.mkdir()
    (data / "not-a-name").write_text("data layer names are never looked up\n")
    files = {"etc/hello": "hello", "usr/bin/big": "big", "usr/bin/same1": "same",
             "etc/same2": "same"}
    for rel, obj in files.items():
        content = OBJECTS[obj]
        d, name = _object_path(content)
        (data / d).mkdir(exist_ok=True)
        (data / d / name).write_text(content)
        stub = meta / rel
        with open(stub, "wb") as f:
            f.truncate(len(content.encode()))
        os.chmod(stub, 0o755 if "bin" in rel else 0o644)
        os.setxattr(stub, "trusted.overlay.metacopy", b"")
        os.setxattr(stub, "trusted.overlay.redirect", f"/{d}/{name}".encode())
    (meta / "etc" / "inline").write_text("a small file kept in the metadata layer\n")
    os.symlink("hello", meta / "etc" / "link")
    for p in [meta, *meta.rglob("*")]:
        os.utime(p, (1600000000, 1600000000), follow_symlinks=False)
    return meta, data, files


@contextlib.contextmanager
def _kernel_data_only(meta, data, mnt, upper=None, work=None):
    mnt.mkdir(parents=True, exist_ok=True)
    o = f"lowerdir={meta}::{data}"
    o += f",upperdir={upper},workdir={work}" if upper else ",ro"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", o, str(mnt)], check=True)
    try:
        yield mnt
    finally:
        helpers.unmount(mnt, fuse=False)


def test_data_only_layers_as_kernel(tmp_path):
    meta, data, files = _build_composefs(tmp_path)
    with _kernel_data_only(meta, data, tmp_path / "mk") as k:
        shown = helpers.snapshot(k, dir_nlink=False)
        kblocks = os.lstat(k / "usr/bin/big").st_blocks
        khidden = helpers.errno_result(lambda: os.lstat(k / "not-a-name"))
    assert khidden == "ENOENT"
    with helpers.mount_ovlfs([f"{meta}::{data}"], mnt=tmp_path / "mo") as m:
        ours = helpers.snapshot(m, dir_nlink=False)
        for rel, obj in files.items():
            assert (m / rel).read_text() == OBJECTS[obj]
        assert os.lstat(m / "usr/bin/big").st_blocks == kblocks
        assert helpers.errno_result(lambda: os.lstat(m / "not-a-name")) == "ENOENT"
        assert sorted(os.listdir(m)) == ["etc", "usr"]
    helpers.assert_same_tree(shown, ours)
    # The kernel's 6.8+ form: the data-only layer as an option of its own.
    with helpers.mount_ovlfs([meta], extra_opts=[f"datadir+={data}"], mnt=tmp_path / "mo2") as m:
        helpers.assert_same_tree(shown, helpers.snapshot(m, dir_nlink=False))


def test_data_only_layers_with_upper(tmp_path):
    meta, data, files = _build_composefs(tmp_path)
    upper, work = tmp_path / "upper", tmp_path / "work"
    upper.mkdir()
    work.mkdir()
    before = helpers.snapshot(data)
    with helpers.mount_ovlfs([f"{meta}::{data}"], upper, work, mnt=tmp_path / "mo") as m:
        with open(m / "etc/hello", "a") as f:
            f.write("appended\n")
        os.chmod(m / "usr/bin/big", 0o700)  # a copy-up of a stub: the object's data with it
        assert (m / "etc/hello").read_text() == OBJECTS["hello"] + "appended\n"
        assert (m / "usr/bin/big").read_text() == OBJECTS["big"]
        assert (m / "etc/same2").read_text() == OBJECTS["same"]
    assert helpers.snapshot(data) == before  # the objects are never written
    with _kernel_data_only(meta, data, tmp_path / "mk", upper, work) as k:
        assert (k / "etc/hello").read_text() == OBJECTS["hello"] + "appended\n"
        assert (k / "usr/bin/big").read_text() == OBJECTS["big"]
        assert os.stat(k / "usr/bin/big").st_mode & 0o777 == 0o700


def _meta_changes(m):
    os.chmod(m / "big", 0o600)
    os.chown(m / "small", 1000, 1000)
    os.utime(m / "d" / "f", (1000000, 2000000))
    os.setxattr(m / "keep", "user.note", b"kept")


def _stub_record(upper):
    out = {}
    for p in ("big", "small", "d/f", "keep"):
        try:
            mark = os.getxattr(upper / p, "trusted.overlay.metacopy")
        except OSError as e:
            mark = errno.errorcode[e.errno]
        out[p] = (mark, os.lstat(upper / p).st_size, os.lstat(upper / p).st_blocks < 64)
    return out


def test_ovlfs_copies_metadata_only_as_kernel(tmp_path):
    """With metacopy=on a metadata change leaves the same stubs as the kernel's, and the
    kernel reads ovlfs's stubs back."""
    seen = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [LOWER])
        mnt = tmp_path / f"m-{who}"
        mount = (ls.kernel(mnt=mnt, extra_opts=KERNEL_MC) if who == "kernel"
                 else ls.ovlfs(mnt=mnt, extra_opts=["metacopy=on"]))
        with mount as m:
            _meta_changes(m)
            shown = helpers.snapshot(m, dir_nlink=False)
            assert (m / "big").read_text() == BIG
        seen[who] = (shown, _stub_record(ls.upper), helpers.snapshot_upper(ls.upper))
        if who == "ovlfs":
            with ls.kernel(mnt=tmp_path / "mk-back", extra_opts=KERNEL_MC) as k:
                assert (k / "big").read_text() == BIG
                helpers.assert_same_tree(shown, helpers.snapshot(k, dir_nlink=False),
                                         names=("ovlfs", "kernel on ovlfs's layers"))
    assert seen["ovlfs"][1] == seen["kernel"][1]
    assert seen["ovlfs"][1]["big"][0] == b""  # a stub, not a copy
    helpers.assert_same_tree(seen["kernel"][0], seen["ovlfs"][0])
    helpers.assert_same_tree(seen["kernel"][2], seen["ovlfs"][2])


def test_rename_and_link_of_a_stub_keep_it_a_stub(tmp_path):
    """A stub ovlfs moves or links stays a stub, as the kernel's: its overlay.redirect names
    the data below (absolute: another directory, a link), which the kernel reads back."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER])
    with ls.ovlfs(mnt=tmp_path / "mo", extra_opts=["metacopy=on"]) as m:
        os.chmod(m / "big", 0o600)
        os.chown(m / "small", 1000, 1000)
        assert os.getxattr(ls.upper / "big", "trusted.overlay.metacopy") == b""
        os.rename(m / "big", m / "d" / "big2")
        os.link(m / "small", m / "small2")
        assert (m / "d" / "big2").read_text() == BIG
        assert (m / "small2").read_text() == "small\n"
        shown = helpers.snapshot(m, dir_nlink=False)
    for p, redirect in (("d/big2", b"/big"), ("small", b"/small"), ("small2", b"/small")):
        assert os.getxattr(ls.upper / p, "trusted.overlay.metacopy") == b""
        assert os.getxattr(ls.upper / p, "trusted.overlay.redirect") == redirect
    assert os.lstat(ls.upper / "d/big2").st_blocks < 64  # the data stayed below
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=KERNEL_MC) as k:
        helpers.assert_same_tree(shown, helpers.snapshot(k, dir_nlink=False),
                                 names=("ovlfs", "kernel"))
