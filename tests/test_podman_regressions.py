"""What podman (containers/storage with overlay.mount_program=ovlfs) needs of ovlfs, found by
tests/podman/run.sh and kept here without podman: its image layers carry OCI whiteouts
(`.wh.NAME` files, `.wh..wh..opq`) instead of the kernel's, and it mounts with
`-o lowerdir=...,upperdir=...,workdir=...,,volatile` (an empty option)."""
import errno
import os

from helpers import expect_errno, needs_fuse

pytestmark = needs_fuse


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_oci_whiteout_hides_lower_names(layers):
    # A committed layer whose container deleted `del`, `gone/` and `d/x` (as podman stores it).
    ls = layers([{".wh.del": "", ".wh.gone": "", "keep": "new", "d": {".wh.x": "", "z": "z"}},
                 {"del": "old", "keep": "old", "gone": {"in": "i"}, "d": {"x": "x", "y": "y"}}])
    with ls.ovlfs() as mnt:
        assert sorted(os.listdir(mnt)) == ["d", "keep"]
        assert sorted(os.listdir(mnt / "d")) == ["y", "z"]
        for name in ("del", "gone", "gone/in", "d/x", ".wh.del", "d/.wh.x"):
            expect_errno(errno.ENOENT, os.lstat, mnt / name)
        assert read(mnt / "keep") == b"new"


def test_oci_opaque_directory(layers):
    ls = layers([{"d": {".wh..wh..opq": "", "new": "n"}, "e": {"sub": {".wh..wh..opq": ""}}},
                 {"d": {"old": "o", "sub": {"deep": "d"}}, "e": {"sub": {"x": "x"}, "f": "f"}}])
    with ls.ovlfs() as mnt:
        assert os.listdir(mnt / "d") == ["new"]
        expect_errno(errno.ENOENT, os.lstat, mnt / "d/old")
        expect_errno(errno.ENOENT, os.lstat, mnt / "d/.wh..wh..opq")
        assert sorted(os.listdir(mnt / "e")) == ["f", "sub"]
        assert os.listdir(mnt / "e/sub") == []


def test_oci_whiteout_spares_its_own_layer(layers):
    # A whiteout deletes from the layers below only (OCI image spec).
    ls = layers([{".wh.a": "", "a": "mine"}, {"a": "below"}])
    with ls.ovlfs() as mnt:
        assert os.listdir(mnt) == ["a"]
        assert read(mnt / "a") == b"mine"


def test_oci_whiteouts_under_changes(layers):
    # A container changing a committed image: names whited out below stay gone through
    # create/unlink, a directory rename and rmdir; `.wh.` names cannot be made through it.
    ls = layers([{".wh.f": "", "d": {".wh.x": "", "y": "y"}}, {"f": "old", "d": {"x": "x"}}],
                upper={})
    with ls.ovlfs() as mnt:
        with open(mnt / "f", "xb") as f:
            f.write(b"new")
        assert read(mnt / "f") == b"new"
        os.unlink(mnt / "f")
        expect_errno(errno.ENOENT, os.lstat, mnt / "f")
        os.rename(mnt / "d", mnt / "e")
        assert os.listdir(mnt / "e") == ["y"]
        expect_errno(errno.ENOENT, os.lstat, mnt / "e/x")
        os.unlink(mnt / "e/y")
        os.rmdir(mnt / "e")
        expect_errno(errno.EINVAL, open, mnt / ".wh.mine", "wb")
        assert os.listdir(mnt) == []
    # What ovlfs wrote is the kernel's format (as root): no `.wh.` whiteout files of its own.
    assert sorted(os.listdir(ls.upper)) == ["d"]


def test_podman_mount_options(layers):
    # containers/storage joins its options with a comma even when one is empty.
    ls = layers([{"a": "A"}], upper={})
    with ls.ovlfs(extra_opts=["", "volatile"]) as mnt:
        (mnt / "b").write_bytes(b"B")
        assert sorted(os.listdir(mnt)) == ["a", "b"]
