"""Read side of ovlfs: lookup, whiteouts, opaque directories, readdir, metadata, inode numbers,
statfs, access, SEEK_DATA/SEEK_HOLE, xattrs, read-only mounts and layer confinement.
Nothing in this file writes through a read-write mount (see doc/semantics.md)."""
import concurrent.futures
import errno
import mmap
import os
import stat
import subprocess
import time

import pytest

from helpers import (Dir, File, Fifo, Hardlink, Opaque, Symlink, Whiteout, XWhiteout,
                     build_layer, expect_errno, needs_fuse, snapshot, snapshot_upper,
                     LayerSet, FIXED_MTIME)

pytestmark = needs_fuse


def names(path):
    return set(os.listdir(path))


def read(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture
def upper_unchanged():
    """check(layerset) snapshots the upper now; at teardown asserts reads changed nothing."""
    sets = []

    def check(ls):
        sets.append((ls, snapshot_upper(ls.upper, mtime=True)))
        return ls

    yield check
    for ls, before in sets:
        assert snapshot_upper(ls.upper, mtime=True) == before, "a read changed the upper layer"


def test_lookup_top_down(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"a": "upper"},
        lowers=[{"a": "top", "b": "top-b"}, {"a": "mid", "b": "mid-b", "c": "mid-c"},
                {"a": "bottom", "c": "bottom-c", "d": "bottom-d"}]))
    with ls.ovlfs() as m:
        assert read(m / "a") == b"upper"
        assert read(m / "b") == b"top-b"
        assert read(m / "c") == b"mid-c"
        assert read(m / "d") == b"bottom-d"
        assert names(m) == {"a", "b", "c", "d"}
        expect_errno(errno.ENOENT, os.lstat, m / "nope")
        # rule 7: longer than the largest f_namelen of the layers (255 here)
        expect_errno(errno.ENAMETOOLONG, os.lstat, m / ("n" * 256))


def test_whiteout_hides_lower(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"a": Whiteout(), "z": Whiteout(mode=0)},  # any mode is a whiteout
        lowers=[{"d": Whiteout(), "x": {"y": {"w": Whiteout()}}, "again": "top", "lone": Whiteout()},
                {"a": "lower-a", "z": "lower-z", "d": {"inner": "i", "sub": {}},
                 "x": {"y": {"w": "deep", "v": "kept"}}, "again": Whiteout()},
                {"again": "bottom"}]))
    with ls.ovlfs() as m:
        for gone in ("a", "z", "d", "d/inner", "x/y/w", "lone"):
            expect_errno(errno.ENOENT, os.lstat, m / gone)
        expect_errno(errno.ENOENT, open, m / "a", "rb")
        assert names(m) == {"x", "again"}
        assert names(m / "x" / "y") == {"v"}
        assert read(m / "again") == b"top"  # a layer above a whiteout still wins


def test_non_directory_hides_everything_below(layers):
    ls = layers(rw=False, lowers=[
        {"x": "file", "s": Symlink("elsewhere"), "p": Fifo(), "w": {"top": "t"}},
        {"x": {"c": "child"}, "s": {"c": "child"}, "p": {"c": "child"}, "w": "a file"},
        {"w": {"deep": "d"}}])
    with ls.ovlfs() as m:
        assert stat.S_ISREG(os.lstat(m / "x").st_mode)
        assert stat.S_ISLNK(os.lstat(m / "s").st_mode)
        assert stat.S_ISFIFO(os.lstat(m / "p").st_mode)
        expect_errno(errno.ENOTDIR, os.lstat, m / "x" / "c")  # D45
        expect_errno(errno.ENOTDIR, os.lstat, m / "p" / "c")
        assert names(m / "w") == {"top"}  # D46: dir over file over dir: the file stops merging


def test_directories_merge(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"d": {"u": "u"}},
        lowers=[{"d": {"a": "a"}}, {"d": {"b": "b", "sub": {"x": "x"}}},
                {"d": {"c": "c", "sub": {"y": "y"}}, "e": {"only": "o"}}]))
    with ls.ovlfs() as m:
        assert names(m / "d") == {"u", "a", "b", "c", "sub"}
        assert names(m / "d" / "sub") == {"x", "y"}
        assert names(m / "e") == {"only"}
        assert read(m / "d" / "sub" / "y") == b"y"


def test_opaque_y_stops_merging(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"u": Opaque({"a": "a"})},
        lowers=[{"u": {"b": "b"}, "m": {"a": "a"}, "t": Opaque({"a": "a"})},
                {"u": {"c": "c"}, "m": Opaque({"b": "b"}), "t": {"b": "b"}},
                {"m": {"c": "c"}, "t": {"c": "c"}}]))
    with ls.ovlfs() as m:
        assert names(m / "u") == {"a"}
        assert names(m / "m") == {"a", "b"}  # opaque in a middle layer: layers below ignored
        assert names(m / "t") == {"a"}
        expect_errno(errno.ENOENT, os.lstat, m / "m" / "c")


@pytest.mark.parametrize("value", [b"yes", b"Y", b"n", b""])
def test_opaque_value_other_than_y_is_not_opaque(layers, value):
    ls = layers(rw=False, lowers=[{"d": Opaque({"a": "a"}, value=value)}, {"d": {"b": "b"}}])
    with ls.ovlfs() as m:
        assert names(m / "d") == {"a", "b"}


def test_xwhiteout_hides_name_and_x_is_not_opaque(layers):
    ls = layers(rw=False, lowers=[
        {"d": Dir({"gone": XWhiteout(), "kept": "k", "ghost": XWhiteout(),
                   "big": File("not empty", xattrs={"trusted.overlay.whiteout": b""})},
                  opaque="x")},
        {"d": {"gone": "g", "other": "o", "big": "lower big"}}])
    with ls.ovlfs() as m:
        assert names(m / "d") == {"kept", "other", "big"}
        expect_errno(errno.ENOENT, os.lstat, m / "d" / "gone")
        expect_errno(errno.ENOENT, os.lstat, m / "d" / "ghost")  # hides nothing, still hidden
        assert read(m / "d" / "big") == b"not empty"  # only zero-size files are whiteouts
        assert read(m / "d" / "other") == b"o"
        assert "trusted.overlay.opaque" not in os.listxattr(m / "d")


def test_xwhiteout_needs_x_marked_parent(layers):
    """A zero-size file with overlay.whiteout in an unmarked directory is an ordinary file
    (doc/semantics.md rule 4: xwhiteouts live in a directory marked opaque="x"). Kernel 6.18 is
    inconsistent here (readdir lists it, lookup says ENOENT); ovlfs must at least agree with
    itself, and per the reference shows the file."""
    ls = layers(rw=False, lowers=[{"nd": {"z": XWhiteout()}}, {"nd": {"z": "below", "q": "q"}}])
    with ls.ovlfs() as m:
        listed = "z" in names(m / "nd")
        try:
            os.lstat(m / "nd" / "z")
            found = True
        except FileNotFoundError:
            found = False
        assert listed == found, f"readdir lists z: {listed}, lookup finds z: {found}"
        assert found and read(m / "nd" / "z") == b""


def test_metadata_from_topmost_layer(layers, upper_unchanged):
    t_top, t_low = FIXED_MTIME + 1000, FIXED_MTIME - 1000
    ls = upper_unchanged(layers(
        upper={"u": File("up", mode=0o600, uid=7, gid=8, mtime=t_top, xattrs={"user.u": "1"})},
        lowers=[{"f": File("top", mode=0o640, uid=1000, gid=2000, mtime=t_top,
                           xattrs={"user.top": "1"}),
                 "d": Dir({"a": "a"}, mode=0o700, uid=1234, gid=4321, mtime=t_top,
                          xattrs={"user.top": "d"})},
                {"f": File("lower content", mode=0o4755, uid=0, gid=0, mtime=t_low,
                           xattrs={"user.low": "1"}),
                 "d": Dir({"b": "b"}, mode=0o755, mtime=t_low, xattrs={"user.low": "d"}),
                 "u": File("lower u", mode=0o777, mtime=t_low)}]))
    with ls.ovlfs() as m:
        for rel, mode, uid, gid, size in (("f", 0o640, 1000, 2000, 3), ("d", 0o700, 1234, 4321, None),
                                          ("u", 0o600, 7, 8, 2)):
            st = os.lstat(m / rel)
            assert (oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid) == (oct(mode), uid, gid), rel
            assert st.st_mtime_ns == t_top * 10**9, rel
            if size is not None:
                assert st.st_size == size, rel
        assert os.listxattr(m / "f") == ["user.top"]
        assert os.listxattr(m / "d") == ["user.top"]
        assert os.getxattr(m / "d", "user.top") == b"d"
        expect_errno(errno.ENODATA, os.getxattr, m / "f", "user.low")
        assert os.listxattr(m / "u") == ["user.u"]


def test_directory_nlink(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"merged_up": {"x": {}}},
        lowers=[{"merged": {"s1": {}}, "single": {"s1": {}, "s2": {}, "f": "f"}},
                {"merged": {"s2": {}}, "merged_up": {"y": {}}}]))
    with ls.ovlfs() as m:
        assert os.lstat(m / "merged").st_nlink == 1
        assert os.lstat(m / "merged_up").st_nlink == 1
        assert os.lstat(m).st_nlink == 1
        real = os.lstat(ls.lowers[0] / "single").st_nlink
        assert real == 4
        assert os.lstat(m / "single").st_nlink == real


def test_readdir_union_types_and_dots(layers, upper_unchanged):
    ls = upper_unchanged(layers(
        upper={"d": {"s": Symlink("t"), "w": Whiteout()}},
        lowers=[{"d": {"s": {"in": "x"}, "f": {"sub": {}}, "p": Fifo()}},
                {"d": {"s": "file", "f": "file", "w": "gone", "n": {}, "p": {}}}]))
    with ls.ovlfs() as m:
        with os.scandir(m / "d") as it:
            kinds = {e.name: ("dir" if e.is_dir(follow_symlinks=False) else
                              "symlink" if e.is_symlink() else
                              "file" if e.is_file(follow_symlinks=False) else "other")
                     for e in it}
        assert kinds == {"s": "symlink", "f": "dir", "n": "dir", "p": "other"}
        for d in (m, m / "d", m / "d" / "f"):
            out = subprocess.run(["ls", "-a1", "--quoting-style=literal", str(d)],
                                 capture_output=True, text=True, check=True).stdout.split("\n")
            assert "." in out and ".." in out, f"readdir of {d} lacks . or ..: {out}"
            assert sorted(n for n in out if n not in (".", "..", "")) == sorted(names(d))


def _layers_on_tmpfs(tmpfs, specs, upper_spec):
    """Each layer on its own tmpfs: real inode numbers collide across layers."""
    lowers = [build_layer(tmpfs(f"fs{i}") / "l", s) for i, s in enumerate(specs)]
    top = tmpfs("fsu")
    upper = build_layer(top / "upper", upper_spec)
    (top / "work").mkdir()
    return LayerSet(top.parent, lowers, upper, top / "work")


def _walk_inodes(root):
    seen = {}
    for dirpath, dirnames, filenames in os.walk(root):
        with os.scandir(dirpath) as it:
            for e in it:
                st = os.lstat(e.path)
                assert e.inode() == st.st_ino, f"d_ino {e.inode()} != st_ino {st.st_ino}: {e.path}"
                seen[e.path] = st.st_ino
    seen[str(root)] = os.lstat(root).st_ino
    return seen


def test_inode_numbers_unique_stable_and_match_d_ino(tmpfs):
    same_tree = {"a": "1", "b": {"c": "2", "d": {"e": "3"}}, "f": Symlink("a"), "g": "4",
                 "h": {"i": "5"}}
    ls = _layers_on_tmpfs(tmpfs, [dict(same_tree, top="t"), dict(same_tree, mid="m"),
                                  dict(same_tree, bottom="b", h={"j": "6"})],
                          {"b": {"up": "u"}, "k": "7"})
    with ls.ovlfs() as m:
        first = _walk_inodes(m)
        dup = {}
        for path, ino in first.items():
            dup.setdefault(ino, []).append(path)
        assert not {i: p for i, p in dup.items() if len(p) > 1}, "st_ino shared by distinct objects"
        time.sleep(1.2)  # past the usual 1 s entry/attr timeouts: lookups are repeated
        assert _walk_inodes(m) == first
        assert {p: os.stat(p, follow_symlinks=False).st_ino for p in first} == first


def test_hard_links_in_a_lower_layer_share_inode(layers):
    ls = layers(rw=False, lowers=[{"top": "t"}, {"a": "data", "sub": {"b": Hardlink("a")}}])
    with ls.ovlfs() as m:
        sa, sb = os.lstat(m / "a"), os.lstat(m / "sub" / "b")
        assert sa.st_ino == sb.st_ino
        assert sa.st_nlink == sb.st_nlink == 2
        assert read(m / "sub" / "b") == b"data"


def test_read_contents_and_readlink(layers):
    big = os.urandom((1 << 20) + 3)
    long_target = "/".join(["seg%03d" % i for i in range(150)])  # 1049 bytes
    ls = layers(rw=False, lowers=[
        {"empty": "", "one": "x", "page": b"p" * 4096, "big": big,
         "l_abs": Symlink("/etc"), "l_rel": Symlink("../x/y"), "l_long": Symlink(long_target)},
        {"one": "lower"}])
    with ls.ovlfs() as m:
        assert read(m / "empty") == b""
        assert read(m / "one") == b"x"
        assert read(m / "page") == b"p" * 4096
        assert read(m / "big") == big
        fd = os.open(m / "big", os.O_RDONLY)
        try:
            for off in (0, 1, 4095, 4096, 65537, len(big) - 1, len(big), len(big) + 10):
                assert os.pread(fd, 5000, off) == big[off:off + 5000], off
        finally:
            os.close(fd)
        assert os.readlink(m / "l_abs") == "/etc"
        assert os.readlink(m / "l_rel") == "../x/y"
        assert os.readlink(m / "l_long") == long_target
        assert os.lstat(m / "l_long").st_size == len(long_target)


def test_exec_and_mmap_of_lower_files(layers):
    """execve opens the file with __FMODE_EXEC in the open flags; the daemon must accept it."""
    with open("/bin/true", "rb") as f:
        true_bin = f.read()
    ls = layers(rw=False, lowers=[{"bin": {"true": File(true_bin, mode=0o755),
                                           "script": File("#!/bin/sh\necho from-lower\n", mode=0o755)}},
                                  {"data": "mapped content"}])
    with ls.ovlfs() as m:
        assert subprocess.run([m / "bin" / "true"]).returncode == 0
        out = subprocess.run([m / "bin" / "script"], capture_output=True, text=True)
        assert out.stdout == "from-lower\n", out
        with open(m / "data", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as mm:
            assert mm[:] == b"mapped content"


def test_parallel_reads_and_closes(layers):
    """Many threads open, read and close small lower files: a READ still being answered while
    the kernel sends RELEASE for the same handle must not hurt the daemon."""
    files = {f"f{i:03d}": f"content {i}" * (i % 7 + 1) for i in range(300)}
    ls = layers(rw=False, lowers=[{"d": files}, {"d": {"other": "o"}}])
    with ls.ovlfs() as m:
        def worker(seed):
            for rnd in range(5):
                for name in sorted(files)[seed::4]:
                    assert read(m / "d" / name) == files[name].encode()
            return True
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert all(pool.map(worker, range(8)))


def _statvfs_figures(path):
    v = os.statvfs(path)
    return (v.f_blocks * v.f_frsize, v.f_bfree * v.f_frsize, v.f_bavail * v.f_frsize,
            v.f_files, v.f_ffree)


def test_statfs_rw_figures_from_upper(layers, tmpfs, tmp_path):
    top = tmpfs("up", "size=8m,nr_inodes=777")
    lowers = layers(rw=False, lowers=[{"a": "a"}, {"b": "b"}]).lowers
    up, work = build_layer(top / "upper", {"c": "c"}), top / "work"
    work.mkdir()
    with LayerSet(tmp_path, lowers, up, work).ovlfs() as m:
        assert _statvfs_figures(m) == _statvfs_figures(up)
        # f_namemax is the largest over the layers (ext4 and tmpfs both have 255).
        assert os.statvfs(m).f_namemax == max(os.statvfs(p).f_namemax for p in [up, *lowers])


def test_statfs_ro_figures_from_top_lower(layers, tmpfs, tmp_path):
    top = build_layer(tmpfs("low", "size=4m,nr_inodes=555") / "l", {"a": "a"})
    bottom = layers(rw=False, lowers=[{"b": "b"}]).lowers[0]
    with LayerSet(tmp_path, [top, bottom]).ovlfs() as m:
        assert _statvfs_figures(m) == _statvfs_figures(top)


def test_access(layers, upper_unchanged):
    ls = upper_unchanged(layers(upper={"w": Whiteout()}, lowers=[
        {"rw": File("x", mode=0o644), "exe": File("#!/bin/sh\n", mode=0o755), "w": "gone",
         "none": File("x", mode=0o000), "d": Dir({}, mode=0o700)}]))
    with ls.ovlfs() as m:
        assert os.access(m / "rw", os.R_OK)
        assert os.access(m / "rw", os.W_OK)  # rule 13: no copy-up (upper_unchanged checks)
        assert not os.access(m / "rw", os.X_OK)  # root needs one x bit
        assert os.access(m / "exe", os.X_OK)
        assert os.access(m / "none", os.R_OK | os.W_OK)  # root
        assert os.access(m / "d", os.R_OK | os.W_OK | os.X_OK)
        assert not os.access(m / "w", os.F_OK)
    assert not (ls.upper / "rw").exists()


def _seek_results(path, offsets):
    fd = os.open(path, os.O_RDONLY)
    try:
        out = []
        for whence in (os.SEEK_DATA, os.SEEK_HOLE):
            for off in offsets:
                try:
                    out.append(os.lseek(fd, off, whence))
                except OSError as e:
                    out.append(errno.errorcode[e.errno])
        return out
    finally:
        os.close(fd)


def test_seek_data_and_hole_on_sparse_lower_file(layers):
    ls = layers(rw=False, lowers=[{"other": "o"}, {}])
    sparse = ls.lowers[1] / "sparse"
    mib = 1 << 20
    with open(sparse, "wb") as f:
        f.write(b"a" * 4096)
        f.seek(mib)
        f.write(b"b" * 4096)
        f.truncate(2 * mib)
    offsets = [0, 1, 4096, 5000, mib - 1, mib, mib + 4096, 2 * mib - 1, 2 * mib]
    expected = _seek_results(sparse, offsets)
    assert expected[offsets.index(5000)] == mib, "the test file is not sparse on this fs"
    with ls.ovlfs() as m:
        assert _seek_results(m / "sparse", offsets) == expected
        assert read(m / "sparse") == read(sparse)


def test_xattrs_hide_markers_and_unescape(layers):
    ls = layers(rw=False, lowers=[
        {"d": Opaque({"f": File("f", xattrs={"trusted.overlay.overlay.foo": "bar",
                                             "trusted.overlay.origin": "junk",
                                             "trusted.overlay.impure": "y",
                                             "user.x": "1", "trusted.plain": "t"})},
                     xattrs={"user.a": "1"}),
         "x": Dir({"z": XWhiteout()}, opaque="x")},
        {"d": {"g": "g"}, "x": {"z": "z"}}])
    with ls.ovlfs() as m:
        assert sorted(os.listxattr(m / "d")) == ["user.a"]
        assert sorted(os.listxattr(m / "x")) == []
        assert sorted(os.listxattr(m / "d" / "f")) == ["trusted.overlay.foo", "trusted.plain",
                                                      "user.x"]
        assert os.getxattr(m / "d" / "f", "trusted.overlay.foo") == b"bar"
        assert os.getxattr(m / "d" / "f", "trusted.plain") == b"t"
        # D33: private names read through the mount are escaped, so they do not exist.
        expect_errno(errno.ENODATA, os.getxattr, m / "d", "trusted.overlay.opaque")
        expect_errno(errno.ENODATA, os.getxattr, m / "d" / "f", "trusted.overlay.origin")
        expect_errno(errno.ENODATA, os.getxattr, m / "d" / "f", "trusted.overlay.overlay.foo")


@pytest.mark.parametrize("nlayers", [1, 2])
def test_read_only_mount_rejects_writes(layers, nlayers):
    specs = [{"f": "data", "d": {"x": "x"}, "e": {}, "l": Symlink("f")}, {"g": "g"}][:nlayers]
    ls = layers(rw=False, lowers=specs)
    before = [snapshot(p) for p in ls.lowers]
    with ls.ovlfs() as m:
        assert read(m / "f") == b"data"
        f, new = m / "f", m / "new"
        attempts = [
            ("open O_WRONLY", lambda: os.open(f, os.O_WRONLY)),
            ("open O_RDWR", lambda: os.open(f, os.O_RDWR)),
            ("open O_TRUNC", lambda: os.open(f, os.O_RDONLY | os.O_TRUNC)),
            ("create", lambda: os.open(new, os.O_CREAT | os.O_WRONLY, 0o644)),
            ("mkdir", lambda: os.mkdir(new)),
            ("mknod fifo", lambda: os.mkfifo(new)),
            ("symlink", lambda: os.symlink("f", new)),
            ("link", lambda: os.link(f, new)),
            ("unlink", lambda: os.unlink(f)),
            ("rmdir", lambda: os.rmdir(m / "e")),
            ("rename", lambda: os.rename(f, new)),
            ("chmod", lambda: os.chmod(f, 0o600)),
            ("chown", lambda: os.chown(f, 1, 1)),
            ("utime", lambda: os.utime(f, (1, 1))),
            ("truncate", lambda: os.truncate(f, 1)),
            ("setxattr", lambda: os.setxattr(f, "user.k", b"v")),
            ("removexattr", lambda: os.removexattr(f, "user.k")),
        ]
        wrong = []
        for what, fn in attempts:
            try:
                fd = fn()
                if isinstance(fd, int):
                    os.close(fd)
                wrong.append(f"{what}: succeeded")
            except OSError as e:
                if e.errno != errno.EROFS:
                    wrong.append(f"{what}: {errno.errorcode.get(e.errno)} instead of EROFS")
        assert not wrong, wrong
        assert read(m / "f") == b"data"
    assert [snapshot(p) for p in ls.lowers] == before


def test_layer_confinement_symlinks_are_never_followed(layers, upper_unchanged):
    """Tricks that make a path-walking daemon escape its layers: a real directory in an upper
    layer above a symlink to /etc (or /, or ../..) of the same name below. Merging must stop
    at the symlink (a non-directory), and symlinks are returned as links."""
    ls = upper_unchanged(layers(
        upper={"u": {"mine": "m"}},
        lowers=[{"d": {"x": "x"}, "a": {"b": {}}, "p": {"q": {"own": "o"}}, "k": {"sub": {}},
                 "root_link": Symlink("/"), "up_link": Symlink("../../../../../../..")},
                {"d": Symlink("/etc"), "a": Symlink("/"), "p": {"q": Symlink("/etc")},
                 "u": Symlink("/etc"), "k": {"sub": {"s": "s"}}},
                {"k": Symlink("/etc"), "d": {"hostname": "bottom"}}]))
    with ls.ovlfs() as m:
        assert names(m / "d") == {"x"}
        assert names(m / "a") == {"b"}
        assert names(m / "p" / "q") == {"own"}
        assert names(m / "u") == {"mine"}
        assert names(m / "k") == {"sub"} and names(m / "k" / "sub") == {"s"}
        for probe in ("d/passwd", "d/hostname", "a/etc", "a/etc/passwd", "p/q/passwd",
                      "u/passwd", "k/passwd"):
            expect_errno(errno.ENOENT, os.lstat, m / probe)
        assert os.readlink(m / "root_link") == "/"
        assert os.readlink(m / "up_link") == "../../../../../../.."
        assert stat.S_ISLNK(os.lstat(m / "root_link").st_mode)
        assert set(snapshot(m)) == {
            ".", "d", "d/x", "a", "a/b", "p", "p/q", "p/q/own", "k", "k/sub", "k/sub/s",
            "u", "u/mine", "root_link", "up_link"}  # snapshot never follows symlinks
