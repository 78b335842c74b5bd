"""Whiteouts share one inode, as the kernel overlayfs's do (fs/overlayfs/dir.c
ovl_whiteout: one whiteout in the work directory, hard-linked for each new one). A new
inode per whiteout cost ext4 an inode allocation, most of the daemon's time in `rm -rf` of
lower files (bench/README.md, "Where the time goes, per workload"). Checked against the
kernel on the same operations: the whiteouts that unlink, rmdir and the removal of a
copied-up file leave are one inode (a rename's may be another: the kernel's comes from the
upper filesystem's RENAME_WHITEOUT), and the merged view stays right when a name is made
again over one of them."""
import os
import stat

from helpers import needs_fuse, needs_kernel_overlay, snapshot

pytestmark = [needs_fuse, needs_kernel_overlay]

LOWER = {"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "dir": {"x": "6"}}


def change(m):
    os.unlink(m / "a")
    os.unlink(m / "b")
    with open(m / "c", "a") as f:  # copied up, then removed: its whiteout replaces it
        f.write("more")
    os.unlink(m / "c")
    os.rename(m / "d", m / "d2")  # a rename leaves a whiteout at the old name
    os.unlink(m / "dir" / "x")
    os.rmdir(m / "dir")


def whiteout_inodes(upper):
    """(st_ino, st_nlink) of every whiteout (char 0/0) in the upper layer, by name."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(upper):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                found[os.path.relpath(os.path.join(dirpath, name), upper)] = (st.st_ino,
                                                                              st.st_nlink)
    return found


def test_whiteouts_share_one_inode_as_the_kernels(layers):
    names = {}
    for target in ("kernel", "ovlfs"):
        ls = layers(lowers=[LOWER])
        with getattr(ls, target)() as m:
            change(m)
        found = whiteout_inodes(ls.upper)
        assert sorted(found) == ["a", "b", "c", "d", "dir"], (target, found)
        shared = [found[n] for n in ("a", "b", "c", "dir")]
        inodes = {ino for ino, _ in shared}
        assert len(inodes) == 1, f"{target}: {len(inodes)} inodes for 4 whiteouts: {found}"
        # every name (and, on the kernel, the one it leaves in the work directory)
        assert min(n for _, n in shared) >= len(shared), (target, found)
        names[target] = sorted(found)
    assert names["kernel"] == names["ovlfs"]


def test_name_made_again_over_a_shared_whiteout(layers):
    """A name created, linked or renamed over one shared whiteout leaves the others
    whiteouts; the merged view is the kernel's."""
    trees = {}
    for target in ("kernel", "ovlfs"):
        ls = layers(lowers=[LOWER])
        with getattr(ls, target)() as m:
            change(m)
            (m / "a").write_text("new a")
            os.mkdir(m / "dir")
            os.link(m / "e", m / "b")
            os.rename(m / "d2", m / "d")
            trees[target] = snapshot(m, mtime=False)
        assert sorted(whiteout_inodes(ls.upper)) == ["c"], target
    assert trees["kernel"] == trees["ovlfs"]
