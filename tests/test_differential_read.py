"""Differential harness, read side: the same layer set is built twice, one copy is mounted with
the kernel's overlayfs (the reference) and the other with ovlfs, and the two merged trees
must be identical: names, types, modes, owners, sizes, content hashes, symlink targets, rdev,
xattrs (everything either mount lists), mtimes, nlink (directories included: ovlfs follows the
kernel, 1 for a merged directory, the real count for a directory living in one layer), and
which names are hard links of one another.

Left out on purpose, because the two legitimately differ:
- st_ino/st_dev: the kernel passes the real inode and its own device through; a FUSE mount
  has one device and its own inode numbering. (Uniqueness is covered in test_read_merge.py;
  here only the grouping of names into hard-link sets is compared.)
- st_size of directories: filesystem-specific bookkeeping, no overlay semantic.
- atime/ctime: ctime cannot be set when building layers, atime changes with reads.
- statfs f_type (a FUSE mount reports FUSE's magic).
Each scenario runs "rw" (upper + work; the kernel needs them with fewer than 2 lowers) and "ro"
(no upper: the upper spec becomes the top lower layer). Each scenario also names paths that
must be present / absent, checked on the kernel's tree, so a scenario cannot silently stop
testing what it claims to test.
"""
import os

import pytest

from helpers import (Blk, Chr, Dir, File, Fifo, Hardlink, Opaque, Socket, Symlink, Whiteout,
                     XWhiteout, XWHITEOUT, assert_same_tree, build_layers, needs_fuse,
                     needs_kernel_overlay, snapshot, snapshot_upper)

pytestmark = [needs_fuse, needs_kernel_overlay]
T = 1_500_000_000


def sc_whiteouts():
    return dict(
        upper={"a": Whiteout(), "wdir": Whiteout(), "nothing": Whiteout(), "m0": Whiteout(mode=0),
               "d1": {"b": Whiteout(), "d2": {"c": Whiteout(), "d3": {"e": Whiteout()}}}},
        lowers=[{"x": Whiteout(), "back": "top", "tree": {"t": Whiteout()},
                 "d1": {"d2": {"f": Whiteout(), "keep": "k"}}},
                {"a": "a", "x": {"inside": "i"}, "wdir": {"deep": {"file": "f"}}, "m0": "m",
                 "back": Whiteout(), "tree": {"t": {"sub": "x"}, "u": "u"},
                 "d1": {"b": "b", "bb": "bb", "d2": {"c": "c", "f": "f",
                                                     "d3": {"e": "e", "ee": "ee"}}}},
                {"back": "bottom", "lowest": Whiteout()}],
        present=["d1/bb", "d1/d2/keep", "d1/d2/d3/ee", "back", "tree/u"],
        absent=["a", "x", "wdir", "nothing", "m0", "lowest", "tree/t", "d1/b", "d1/d2/c",
                "d1/d2/f", "d1/d2/d3/e"])


def sc_opaque():
    return dict(
        upper={"uo": Opaque({"new": "n"}), "uy": Opaque({"s": {"t": "t"}}, value="yes"),
               "deep": {"er": Opaque({"x": "x"})}},
        lowers=[{"uo": {"old": "o"}, "mo": {"top": "t"}, "deep": {"er": {"y": "y"}},
                 "uy": {"s": {"u": "u"}}, "empty_opaque": Opaque({}),
                 "v_Y": Opaque({"a": "a"}, value="Y"), "v_empty": Opaque({"a": "a"}, value=""),
                 "v_yy": Opaque({"a": "a"}, value="yy"), "v_n": Opaque({"a": "a"}, value="n")},
                {"mo": Opaque({"mid": "m", "sub": {"a": "a"}}), "uo": {"older": "o"},
                 "empty_opaque": {"hidden": "h"},
                 "v_Y": {"b": "b"}, "v_empty": {"b": "b"}, "v_yy": {"b": "b"}, "v_n": {"b": "b"}},
                {"mo": {"bottom": "b", "sub": {"b": "b"}}, "deep": {"er": {"z": "z"}}}],
        present=["uo/new", "mo/top", "mo/mid", "mo/sub/a", "uy/s/t", "uy/s/u", "deep/er/x",
                 "v_Y/b", "v_empty/b", "v_yy/b", "v_n/b"],
        absent=["uo/old", "uo/older", "mo/bottom", "mo/sub/b", "deep/er/y", "deep/er/z",
                "empty_opaque/hidden"])


def sc_file_dir_crossing():
    return dict(
        upper={"x": "file over dir", "y": {"up": "u"}, "z": Symlink("x"), "q": Fifo()},
        lowers=[{"y": "file in the middle", "w": {"top": "t"}, "v": Symlink("/etc"),
                 "z": {"zz": "z"}, "r": {"r1": "r"}},
                {"x": {"c": "c"}, "y": {"low": "l"}, "w": "file", "v": {"vv": "v"},
                 "q": {"qq": "q"}, "r": Chr(1, 3)},
                {"w": {"bottom": "b"}, "r": {"r2": "r"}}],
        present=["x", "y/up", "w/top", "v", "z", "q", "r/r1"],
        absent=["x/c", "y/low", "w/bottom", "v/vv", "z/zz", "q/qq", "r/r2"])


def sc_big_dir():
    n = 5000
    bottom = {f"f{i:04d}": f"{i}" for i in range(n)}
    bottom.update({f"dir{i}": {"inner": str(i)} for i in range(10)})
    middle = {f"f{i:04d}": f"override {i}" for i in range(0, n, 5)}
    middle.update({f"n{i:04d}": "new" for i in range(100)})
    return dict(
        upper={"big": {f"f{i:04d}": Whiteout() for i in range(0, n, 3)}},
        lowers=[{"big": middle}, {"big": bottom}],
        present=["big/f0001", "big/f0005", "big/n0099", "big/dir9/inner"],
        absent=["big/f0000", "big/f0003", "big/f0015", "big/f4998"])


LONG = "n" * 255
LONG_UTF8 = "é" * 127 + "x"  # 255 bytes
ODD_NAMES = ["with space", " leading", "trailing ", "new\nline", "tab\there", "ünïcödé", "日本語",
             "-dash", "back\\slash", "colon:name", "comma,name", "emoji😀", "..dots", ".hidden",
             "latin1-\udce9"]  # the last one is the raw byte 0xe9: not valid UTF-8


def sc_names():
    return dict(
        upper={LONG: Whiteout(), "with space": "upper", LONG_UTF8: {LONG: "deep long"}},
        lowers=[{n: f"top {i}" for i, n in enumerate(ODD_NAMES)} | {"d" * 200: {LONG_UTF8: "x"}},
                {LONG: "hidden", LONG_UTF8: {"y" * 254: "lower"}, "new\nline": {"x": "x"}}],
        present=["with space", "new\nline", f"{LONG_UTF8}/{LONG}", f"{LONG_UTF8}/{'y' * 254}",
                 "latin1-\udce9"],
        absent=[LONG, "new\nline/x"])


def sc_symlinks_outside():
    return dict(
        upper={"up_etc": Symlink("/etc")},
        lowers=[{"abs": Symlink("/etc/passwd"), "root": Symlink("/"), "dot": Symlink("."),
                 "dotdot": Symlink("../../../../.."), "dangling": Symlink("/nonexistent/x"),
                 "selfloop": Symlink("selfloop"), "chain": Symlink("abs"), "d": {"x": "x"},
                 "owned": Symlink("/", uid=1234, gid=4321, mtime=T + 7)},
                {"d": Symlink("/etc"), "abs": {"a": "a"},
                 "sub": {"l": Symlink("../../../etc/shadow"), "m": Symlink("/proc/self/root")}}],
        present=["abs", "root", "dotdot", "d/x", "sub/l", "sub/m", "up_etc"],
        absent=["abs/a", "d/passwd"])


def sc_specials():
    return dict(
        upper={"ufifo": Fifo(), "ublk": Blk(8, 1)},
        lowers=[{"fifo": Fifo(mode=0o640), "null": Chr(1, 3), "loop": Blk(7, 0), "sock": Socket(),
                 "dev": {"zero": Chr(1, 5), "wh_over_dev": Whiteout()}},
                {"null": "shadowed file", "dev": {"wh_over_dev": Chr(1, 3),
                                                  "tty": Chr(5, 0, uid=5, gid=5, mode=0o620)}}],
        present=["fifo", "null", "loop", "sock", "dev/zero", "dev/tty", "ufifo", "ublk"],
        absent=["dev/wh_over_dev"])


def sc_many_layers():
    return dict(
        upper=None,
        lowers=[{"f": "L0", "d": {"a0": "0"}},
                {"f": Whiteout(), "g": "L1", "d": {"a1": "1", "x": Whiteout()}},
                {"f": "L2", "g": Whiteout(), "d": Opaque({"a2": "2", "x": "x2"}), "h": {"h2": "h"}},
                {"d": {"a3": "3"}, "h": "file", "i": {"i3": "i"}},
                {"f": "L4", "g": "L4", "h": {"h4": "h"}, "i": {"i4": "i"}},
                {"i": {"i5": "i", "i4": Whiteout()}, "j": "bottom"}],
        present=["f", "g", "d/a0", "d/a1", "d/a2", "h/h2", "i/i3", "i/i4", "i/i5", "j"],
        absent=["d/a3", "d/x", "h/h4"])


def sc_xwhiteouts():
    # Only the cases where the kernel (6.18) is self-consistent: xwhiteouts in lower
    # directories marked opaque="x". A zero-size file with overlay.whiteout elsewhere (an
    # unmarked directory, or the upper layer) is listed by the kernel's readdir but hidden by
    # its lookup; test_read_merge.py checks ovlfs's own, consistent, answer for that case.
    return dict(
        upper={"x": {"up": "u"}},
        lowers=[{"x": Dir({"gone": XWhiteout(), "kept": "k", "ghost": XWhiteout(),
                           "big": File("not empty", xattrs={XWHITEOUT: b""}),
                           "sub": Dir({"deep": XWhiteout()}, opaque="x")}, opaque="x")},
                {"x": {"gone": "g", "other": "o", "big": "b", "sub": {"deep": "d", "k2": "k"}}}],
        present=["x/up", "x/kept", "x/other", "x/big", "x/sub/k2"],
        absent=["x/gone", "x/ghost", "x/sub/deep"])


def sc_hardlinks():
    return dict(
        upper={"ua": "u", "ub": Hardlink("ua")},
        lowers=[{"pair2": Whiteout(), "own": "o", "own_link": Hardlink("own")},
                {"a": "data", "b": Hardlink("a"), "dir": {"c": Hardlink("a"), "x": "x"},
                 "pair1": "p", "pair2": Hardlink("pair1"), "own": "shadowed"}],
        present=["a", "b", "dir/c", "pair1", "own_link", "ub"],
        absent=["pair2"])


def sc_metadata_xattrs():
    return dict(
        upper={"uf": File("u", mode=0o6755, uid=3, gid=4, xattrs={"user.k": "v"})},
        lowers=[{"f": File("x", mode=0o4755, uid=1000, gid=100, mtime=T + 1,
                           xattrs={"user.bin": b"\x00\x01\xff", "trusted.t": "v",
                                   "trusted.overlay.overlay.esc": "escaped"}),
                 "none": File("n", mode=0), "sticky": Dir({}, mode=0o1777, mtime=T - 5),
                 "sgid": Dir({"in": "i"}, mode=0o2750, uid=7, gid=9, xattrs={"user.top": "t"}),
                 "closed": Dir({"x": "x"}, mode=0), "l": Symlink("f", uid=5, gid=6)},
                {"sgid": Dir({"low": "l"}, xattrs={"user.low": "l"}, mode=0o755),
                 "f": File("lower f", xattrs={"user.lower": "x"}),
                 "big_xattr": File("b", xattrs={"user.big": b"v" * 3000})}],
        present=["f", "sgid/in", "sgid/low", "closed/x", "big_xattr"],
        absent=[])


# `.wh.*` names (rule 6, D49) are plain to the kernel but OCI whiteouts to ovlfs, as to
# fuse-overlayfs: test_layer_formats.py covers them, against the kernel's view too.


SCENARIOS = {name[3:]: fn for name, fn in globals().items() if name.startswith("sc_")}


def link_groups(root, snap):
    """Sets of paths that share one st_ino (the hard-link structure of the tree)."""
    by_ino = {}
    for rel in snap:
        if "lstat_error" not in snap[rel]:
            by_ino.setdefault(os.lstat(os.path.join(root, rel)).st_ino, []).append(rel)
    return sorted(sorted(paths) for paths in by_ino.values() if len(paths) > 1)


def build(base, sc, mode):
    if mode == "rw":
        return build_layers(base, sc["lowers"], sc["upper"])
    lowers = ([sc["upper"]] if sc["upper"] is not None else []) + sc["lowers"]
    if len(lowers) < 2:
        lowers.append({})
    return build_layers(base, lowers, rw=False)


@pytest.mark.parametrize("mode", ["rw", "ro"])
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_differential(tmp_path, name, mode):
    sc = SCENARIOS[name]()
    kset, oset = build(tmp_path / "k", sc, mode), build(tmp_path / "o", sc, mode)

    with kset.kernel() as km:
        ksnap = snapshot(km, overlay_xattrs=True)
        klinks = link_groups(km, ksnap)
    missing = [p for p in sc["present"] if p not in ksnap or "lstat_error" in ksnap[p]]
    leaked = [p for p in sc["absent"] if p in ksnap]
    assert not missing and not leaked, f"scenario broken on the kernel: {missing=} {leaked=}"

    upper_before = snapshot_upper(oset.upper, mtime=True) if oset.upper else None
    with oset.ovlfs() as om:
        osnap = snapshot(om, overlay_xattrs=True)
        olinks = link_groups(om, osnap)
    assert_same_tree(ksnap, osnap)
    assert klinks == olinks, "hard-link groups differ"
    if upper_before is not None:
        assert snapshot_upper(oset.upper, mtime=True) == upper_before, "reading changed upper"

