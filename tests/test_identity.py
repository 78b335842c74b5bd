"""Identity that lasts: st_ino and d_ino of every object, before and after copy-up, after a
remount, and across ovlfs and the kernel overlayfs on the same layers (the kernel's
overlay.origin and overlay.impure records; doc/semantics.md, section E).

The layers sit on one filesystem (the usual case, and the kernel's "same fs" xino), so the
kernel shows each object's layer inode number: the lower object's for a lower object, for
an object copied up from a single-link lower object (origin), and for a merged directory;
the upper object's otherwise. Every check compares ovlfs with the kernel on the very same
layer directories, mounted one after the other, so that the inode numbers are comparable.
d_ino is checked against st_ino on ovlfs only: the kernel's readdir shows the upper
directory's number for a merged directory whose upper part has no origin record.
"""
import os
import stat

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

LOWER = {
    "d": {"f": "in d\n", "sub": {"g": "deep\n"}},
    "merged": {"low": "below\n"},
    "file": "a file\n",
    "other": "another file\n",
    "link1": "two names\n",
    "link2": helpers.Hardlink("link1"),
    "sym": helpers.Symlink("file"),
    "keep": {"x": "untouched\n"},
}
UPPER = {"merged": {"up": "above\n"}, "pure": "only upper\n"}


def _ids(mnt):
    """{path: (st_ino, type)} of every object, and {path: d_ino} from readdir."""
    st_ids, d_ids = {}, {}
    for dirpath, dirnames, filenames in os.walk(mnt):
        rel_dir = os.path.relpath(dirpath, mnt)
        with os.scandir(dirpath) as it:
            for e in it:
                rel = os.path.normpath(os.path.join(rel_dir, e.name))
                d_ids[rel] = e.inode()
                st = os.lstat(e.path)
                st_ids[rel] = (st.st_ino, stat.S_IFMT(st.st_mode))
    st_ids["."] = (os.lstat(mnt).st_ino, stat.S_IFDIR)
    return st_ids, d_ids


def _changes(mnt):
    """Copy-ups of every kind: data, metadata only, a parent by a child, a hard link."""
    with open(mnt / "file", "a") as f:
        f.write("more\n")
    os.chmod(mnt / "d" / "sub" / "g", 0o600)  # copies up d and d/sub (directories) too
    os.utime(mnt / "other", ns=(10**9, 10**9))
    os.chmod(mnt / "link1", 0o600)  # one name of a lower hard link
    os.lchown(mnt / "sym", 0, 0)
    (mnt / "merged" / "new").write_text("new\n")
    os.rename(mnt / "other", mnt / "d" / "moved")


def _check_consistent(ids, who):
    st_ids, d_ids = ids
    for rel, d_ino in d_ids.items():
        assert d_ino == st_ids[rel][0], f"{who}: {rel}: d_ino {d_ino} != st_ino {st_ids[rel][0]}"


@pytest.fixture
def layerset(tmp_path):
    return helpers.build_layers(tmp_path / "l", [LOWER], UPPER)


@pytest.mark.parametrize("index", ["on", "off"])
def test_ovlfs_identity_survives_copy_up_and_remount_as_kernel(layerset, tmp_path, index):
    """The kernel mounting the layers with the same index option shows the same numbers
    (ovlfs's default is on; off: the hard link copied up shows its upper number)."""
    opts = (f"index={index}",)
    with layerset.ovlfs(mnt=tmp_path / "m1", extra_opts=opts) as m:
        before = _ids(m)
        _changes(m)
        during = _ids(m)
    _check_consistent(before, "ovlfs before")
    _check_consistent(during, "ovlfs after copy-up")
    with layerset.ovlfs(mnt=tmp_path / "m2", extra_opts=opts) as m:
        remounted = _ids(m)
    _check_consistent(remounted, "ovlfs remounted")
    kopts = tuple(o for o in wh.KERNEL_OPTS if not o.startswith("index=")) + opts
    with layerset.kernel(mnt=tmp_path / "mk", extra_opts=kopts) as m:
        kernel = _ids(m)
    assert remounted[0] == during[0], "st_ino changed with the remount"
    assert kernel[0] == remounted[0], "the kernel shows other inode numbers"
    for path in ("file", "d", "d/sub", "d/sub/g", "merged", "sym", "keep", "keep/x"):
        assert during[0][path] == before[0][path], f"{path}: st_ino changed with copy-up"
    # with the index a hard link copied up keeps its lower number too, and its group
    same = during[0]["link1"] == before[0]["link1"]
    assert same == (index == "on"), f"link1 {before[0]['link1']} -> {during[0]['link1']}"
    assert during[0]["d/moved"] == before[0]["other"], "a renamed copy keeps its number"


def test_kernel_written_upper_read_by_ovlfs(layerset, tmp_path):
    with layerset.kernel(mnt=tmp_path / "mk", extra_opts=wh.KERNEL_OPTS) as m:
        _changes(m)
        kernel = _ids(m)
    with layerset.ovlfs(mnt=tmp_path / "m1") as m:
        ours = _ids(m)
    _check_consistent(ours, "ovlfs on the kernel's upper")
    assert ours[0] == kernel[0]


def test_same_as_kernel_before_any_change(layerset, tmp_path):
    with layerset.kernel(mnt=tmp_path / "mk", extra_opts=wh.KERNEL_OPTS) as m:
        kernel = _ids(m)
    with layerset.ovlfs(mnt=tmp_path / "m1") as m:
        ours = _ids(m)
    assert ours[0] == kernel[0]
    _check_consistent(ours, "ovlfs")


@pytest.mark.parametrize("index", ["on", "off"])
def test_origin_records_as_kernel(layerset, tmp_path, index):
    """The upper layer ovlfs writes holds the kernel's records: an origin on each object
    copied up from a single-link lower object (on a hard link's copy only with the index,
    with its nlink record), impure on upper directories that received one."""
    with layerset.ovlfs(mnt=tmp_path / "m1", extra_opts=(f"index={index}",)) as m:
        _changes(m)
    up = layerset.upper
    origin = "trusted.overlay.origin"
    for rel in ("file", "d", "d/sub", "d/sub/g", "d/moved"):
        value = os.getxattr(up / rel, origin, follow_symlinks=False)
        assert len(value) > 21 and value[1] == 0xFB, f"{rel}: {value!r}"
    link1 = os.listxattr(up / "link1", follow_symlinks=False)
    if index == "on":
        assert os.getxattr(up / "link1", origin, follow_symlinks=False)[1] == 0xFB
        assert os.getxattr(up / "link1", "trusted.overlay.nlink",
                           follow_symlinks=False).startswith(b"U")
    else:
        assert origin not in link1
    assert os.getxattr(up, "trusted.overlay.impure") == b"y"
    assert os.getxattr(up / "d", "trusted.overlay.impure") == b"y"


def test_bad_origin_records_are_ignored(layerset, tmp_path):
    """Corrupt, truncated, foreign and stale origins: the object shows its upper number,
    readdir agrees, nothing fails."""
    up = layerset.upper
    with layerset.ovlfs(mnt=tmp_path / "m1") as m:
        _changes(m)
    good = os.getxattr(up / "file", "trusted.overlay.origin")
    bad = {
        "file": good[:10],  # truncated
        "d/sub/g": bytes([0, 0xFB, len(good), 0, good[4]]) + b"\x55" * 16 + good[21:],  # uuid
        "d/moved": b"\x00\xfa" + good[2:],  # wrong magic
        "pure": good,  # names another object (a lower file of the same type, "file")
    }
    for rel, value in bad.items():
        os.setxattr(up / rel, "trusted.overlay.origin", value, follow_symlinks=False)
    with layerset.ovlfs(mnt=tmp_path / "m2") as m:
        ids = _ids(m)
        _check_consistent(ids, "ovlfs with bad origins")
        for rel in ("file", "d/sub/g", "d/moved"):
            assert ids[0][rel][0] == os.lstat(up / rel).st_ino, rel
        assert (m / "file").read_text() == "a file\nmore\n"


def test_layers_on_two_filesystems_as_kernel_xino(tmpfs, tmp_path):
    """A lower layer on tmpfs under an upper on the root filesystem: inode numbers collide
    between the two; the filesystem's index in the top bits (the kernel's xino=on) keeps
    every (st_dev, st_ino) unique, the same as the kernel's, and across copy-up and remount
    (the origin names the tmpfs object with tmpfs's UUID)."""
    low = helpers.build_layer(tmpfs("lower") / "l", LOWER)
    up = helpers.build_layer(tmp_path / "upper", UPPER)
    work = tmp_path / "work"
    work.mkdir()
    ls = helpers.LayerSet(tmp_path, [low], up, work)
    with ls.kernel(mnt=tmp_path / "mk", extra_opts=wh.KERNEL_OPTS + ("xino=on",)) as m:
        kernel = _ids(m)
    with ls.ovlfs(mnt=tmp_path / "m1") as m:
        before = _ids(m)
        _changes(m)
        during = _ids(m)
    with ls.ovlfs(mnt=tmp_path / "m2") as m:
        remounted = _ids(m)
    assert before[0] == kernel[0]
    for ids, who in ((before, "before"), (during, "after copy-up"), (remounted, "remounted")):
        _check_consistent(ids, who)
        # (link1 and link2 are one object until one name is copied up)
        numbers = [ino for path, (ino, _) in ids[0].items() if path != "link2"]
        assert len(numbers) == len(set(numbers)), f"{who}: two objects share a number"
    assert remounted[0] == during[0]
    assert during[0]["file"] == before[0]["file"]
