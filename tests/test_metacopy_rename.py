"""Rename and link of a lower file with metacopy=on (issue #16): the kernel mounted with
metacopy=on,redirect_dir=on copies up only the metadata and records where the data stays
with an overlay.redirect on the upper stub: the old name for a move within the directory
of a file with one link, else the absolute path of the data below. ovlfs writes the same
records (no data copied), each reads what the other wrote, and the first write to a moved
or linked stub copies the data from where its redirect points, into every name.
"""
import os
import stat

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

KERNEL_MC = ("index=off", "redirect_dir=on", "metacopy=on")
OVLFS_MC = ("index=off", "metacopy=on")
DATA = {n: (n * 4096 + "\n") * 64 for n in ("a", "b", "c", "e", "h", "x", "y", "z")}  # 256 KiB
LOWER = {
    "d": {"a": DATA["a"], "b": DATA["b"], "c": DATA["c"], "e": DATA["e"],
          "h1": DATA["h"], "h2": helpers.Hardlink("d/h1"), "x": DATA["x"], "y": DATA["y"]},
    "top": DATA["z"],
    "o": {"f": helpers.Fifo()},
}


def _moves(m):
    os.rename(m / "d/a", m / "d/a2")  # within the directory: the old name
    os.rename(m / "d/a2", m / "d/a3")  # the redirect it has stays
    os.rename(m / "d/b", m / "o/b2")  # to another directory: the absolute path
    os.link(m / "d/c", m / "o/c2")  # a link: the absolute path, on both names
    os.rename(m / "d/h1", m / "d/h1x")  # a lower hard link: absolute even in its directory
    os.chmod(m / "d/e", 0o600)  # a stub first, then moved twice
    os.rename(m / "d/e", m / "d/e2")
    os.rename(m / "d/e2", m / "o/e3")  # a relative redirect becomes absolute
    wh.renameat2(m / "d/x", m / "d/y", wh.RENAME_EXCHANGE)  # both get one
    os.rename(m / "top", m / "o/top")


def _records(upper):
    """Every upper entry: type, size, links, blocks, and the metacopy/redirect records."""
    out = {}
    for dirpath, dirs, files in os.walk(upper):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            # (a whiteout's links: the kernel may share one inode among whiteouts)
            rec = {"mode": st.st_mode, "size": st.st_size, "blocks": st.st_blocks,
                   "nlink": st.st_nlink if stat.S_ISREG(st.st_mode) else None}
            for x in ("metacopy", "redirect"):
                try:
                    rec[x] = os.getxattr(p, "trusted.overlay." + x, follow_symlinks=False)
                except OSError:
                    rec[x] = None
            out[os.path.relpath(p, upper)] = rec
    return out


def _mount(ls, who, mnt):
    return (ls.kernel(mnt=mnt, extra_opts=KERNEL_MC) if who == "kernel"
            else ls.ovlfs(mnt=mnt, extra_opts=OVLFS_MC))


def _moved(tmp_path, who):
    ls = helpers.build_layers(tmp_path / who, [LOWER])
    with _mount(ls, who, tmp_path / f"m-{who}") as m:
        _moves(m)
        shown = helpers.snapshot(m, dir_nlink=False, mtime=False)
    return ls, shown


def test_moves_write_the_kernels_records(tmp_path):
    """The upper layer after the moves and links: the kernel's stubs and redirects, no data."""
    (lk, shown_k), (lo, shown_o) = _moved(tmp_path, "kernel"), _moved(tmp_path, "ovlfs")
    helpers.assert_same_tree(shown_k, shown_o)
    rk, ro = _records(lk.upper), _records(lo.upper)
    assert ro == rk
    assert ro["d/a3"]["redirect"] == b"a"
    assert ro["o/b2"]["redirect"] == b"/d/b"
    assert ro["o/c2"]["redirect"] == ro["d/c"]["redirect"] == b"/d/c"
    assert ro["d/h1x"]["redirect"] == b"/d/h1"
    assert ro["o/e3"]["redirect"] == b"/d/e"
    assert ro["d/x"]["redirect"] == b"y" and ro["d/y"]["redirect"] == b"x"
    assert ro["o/top"]["redirect"] == b"/top"
    for p in ("d/a3", "o/b2", "o/c2", "d/h1x", "o/e3", "d/x", "d/y", "o/top"):
        assert ro[p]["metacopy"] == b"", p
        assert ro[p]["blocks"] * 512 < len(DATA["a"]) // 4, p  # the data stayed below


def _more(m):
    """Moves of stubs that already carry a redirect, and a removal."""
    os.rename(m / "d/a3", m / "d/a4")  # no whiteout: "a3" is not below
    os.rename(m / "o/e3", m / "d/e4")
    os.unlink(m / "o/b2")
    os.link(m / "d/h1x", m / "o/h3")
    os.rename(m / "d/a4", m / "o/f")  # over a lower name, which is then removed: a whiteout
    os.unlink(m / "o/f")


def test_each_reads_and_moves_the_others_stubs(tmp_path):
    """The kernel reads and moves on ovlfs's stubs as on its own, and ovlfs on the
    kernel's: the upper layers and what they show end up the same."""
    seen = {}
    for first, second in (("kernel", "kernel"), ("ovlfs", "kernel"), ("kernel", "ovlfs")):
        ls, shown = _moved(tmp_path / f"{first}-{second}", first)
        assert _records(ls.upper)["o/b2"]["metacopy"] == b""  # a stub, read by the second
        with _mount(ls, second, tmp_path / f"back-{first}-{second}") as m:
            assert (m / "o/b2").read_text() == DATA["b"]
            assert (m / "d/y").read_text() == DATA["x"]
            assert os.stat(m / "o/c2").st_ino == os.stat(m / "d/c").st_ino
            helpers.assert_same_tree(shown, helpers.snapshot(m, dir_nlink=False, mtime=False),
                                     names=(first, f"{second} on {first}'s layers"))
            _more(m)
            assert not (m / "o/f").exists()
            assert (m / "o/h3").read_text() == DATA["h"]
            seen[first, second] = (_records(ls.upper),
                                   helpers.snapshot(m, dir_nlink=False, mtime=False))
    ref = seen["kernel", "kernel"]
    for key in (("ovlfs", "kernel"), ("kernel", "ovlfs")):
        assert seen[key][0] == ref[0], key
        helpers.assert_same_tree(ref[1], seen[key][1], names=("kernel only", "/".join(key)))


def _writes(m):
    with open(m / "d/a3", "a") as f:
        f.write("appended\n")
    os.truncate(m / "o/b2", 5)
    with open(m / "o/c2", "r+") as f:  # a linked stub: both names see the data
        f.write("CC")
    with open(m / "d/x", "a") as f:
        f.write("x\n")


def test_writes_after_moves_copy_the_data(tmp_path):
    """A write or truncate of a moved or linked stub copies its data from where the redirect
    points, into the one object of all its names; both filesystems then show the same."""
    want = {"d/a3": DATA["a"] + "appended\n", "o/b2": DATA["b"][:5],
            "o/c2": "CC" + DATA["c"][2:], "d/c": "CC" + DATA["c"][2:], "d/x": DATA["y"] + "x\n",
            "d/y": DATA["x"], "o/e3": DATA["e"]}
    shown = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [LOWER])
        with _mount(ls, who, tmp_path / f"m-{who}") as m:
            _moves(m)
            assert os.getxattr(ls.upper / "d/a3", "trusted.overlay.metacopy") == b""
            _writes(m)
            assert {p: (m / p).read_text() for p in want} == want
            assert os.stat(m / "o/c2").st_ino == os.stat(m / "d/c").st_ino
            assert os.stat(m / "d/c").st_nlink == 2
            shown[who] = helpers.snapshot(m, dir_nlink=False, mtime=False)
        rec = _records(ls.upper)
        for p in ("d/a3", "o/b2", "o/c2", "d/c", "d/x"):
            assert rec[p]["metacopy"] is None, (who, p)  # the data is up: no stub
        assert rec["o/c2"]["nlink"] == 2
        if who == "ovlfs":
            with ls.kernel(mnt=tmp_path / "mk-back", extra_opts=KERNEL_MC) as k:
                assert {p: (k / p).read_text() for p in want} == want
    helpers.assert_same_tree(shown["kernel"], shown["ovlfs"])
