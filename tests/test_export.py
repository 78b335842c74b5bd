"""`ovlfs export` (an upper layer as an OCI layer tarball) and `ovlfs diff` (its changes as
`A|C|D /path` lines). The upper layers are made through real ovlfs mounts; the tarball is
checked with Python's tarfile, listed by GNU tar, and applied the OCI way (whiteouts first,
then the entries) over a copy of the lower layer: the result must equal the merged view the
mount showed. diff's lines are compared with what the merged views before and after the
changes imply."""
import errno
import os
import pathlib
import posixpath
import shutil
import stat
import subprocess
import tarfile

import pytest

from helpers import (Chr, Dir, Fifo, File, Hardlink, Opaque, Symlink, Whiteout, XWhiteout,
                     build_layer, clone_tree, needs_fuse, needs_kernel_overlay, ovlfs_binary,
                     snapshot)

pytestmark = needs_fuse
RUN_TIMEOUT = 60
OPQ = ".wh..wh..opq"
LONG_NAME = "n" * 200
LONG_TARGET = "/" + "t" * 150


def run(*args, stdout=None, **kw):
    binary = ovlfs_binary()
    assert os.access(binary, os.X_OK), f"ovlfs binary not found at {binary}"
    return subprocess.run([str(binary), *map(str, args)], stdout=stdout or subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=RUN_TIMEOUT, **kw)


def work_of(upper):
    """The work directory beside a test's upper layer (build_layers makes them siblings):
    where a mount with the index (ovlfs's default) records lower hard links."""
    work = pathlib.Path(upper).parent / "work"
    return ("-w", work) if work.is_dir() else ()


def export(upper, out, lowers=()):
    r = run("export", upper, *lowers, *work_of(upper), "-o", out)
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    return out


def one_error_line(r):
    """A non-zero status and exactly one 'ovlfs: ' line on stderr: returns that line."""
    lines = [ln for ln in r.stderr.decode(errors="replace").splitlines() if ln.strip()]
    assert r.returncode != 0, f"status 0; stderr {lines}"
    assert len(lines) == 1 and lines[0].startswith("ovlfs: "), lines
    return lines[0]


# --------------------------------------------------------------------------- OCI apply

def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _pax_xattrs(m):
    return {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
            for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}


def oci_apply(tar_path, root):
    """Applies a layer tarball over root as the OCI image spec says: the whiteouts (which
    delete from the layers below only) first, then every other entry, replacing what is
    there; directory times last, deepest first."""
    root = pathlib.Path(root)
    with tarfile.open(tar_path) as t:
        members = t.getmembers()
        for m in members:
            parent, base = posixpath.split(m.name)
            if base == OPQ:
                d = root / parent
                if d.is_dir() and not d.is_symlink():
                    for child in list(d.iterdir()):
                        _remove(child)
            elif base.startswith(".wh."):
                _remove(root / parent / base[4:])
        dirs = []
        for m in members:
            if posixpath.basename(m.name).startswith(".wh."):
                continue
            p = root / m.name
            if m.isdir():
                if not (p.is_dir() and not p.is_symlink()):
                    _remove(p)
                    os.mkdir(p)
                for name in os.listxattr(p):  # the entry's xattrs replace the old ones
                    os.removexattr(p, name)
                dirs.append((p, m))
            else:
                _remove(p)
                if m.isreg():
                    p.write_bytes(t.extractfile(m).read())
                elif m.issym():
                    os.symlink(m.linkname, p)
                elif m.islnk():
                    os.link(root / m.linkname, p)
                    continue
                elif m.isfifo():
                    os.mkfifo(p)
                elif m.ischr() or m.isblk():
                    kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
                    os.mknod(p, kind | 0o600, os.makedev(m.devmajor, m.devminor))
                else:
                    raise AssertionError(f"unexpected member type {m.type!r} of {m.name}")
            os.lchown(p, m.uid, m.gid)  # before chmod: chown clears set-id bits
            if not m.issym():
                os.chmod(p, m.mode)
            for name, value in _pax_xattrs(m).items():
                os.setxattr(p, name, value, follow_symlinks=False)
            if not m.isdir():
                os.utime(p, ns=(m.mtime * 10**9,) * 2, follow_symlinks=False)
        for p, m in sorted(dirs, key=lambda d: -str(d[0]).count("/")):
            os.utime(p, ns=(m.mtime * 10**9,) * 2)


def assert_applied_is_merged(applied, merged):
    """The tree a layer was applied to shows what the mount (view `merged`) showed."""
    got = view(applied)
    diffs = [f"{p}: merged={merged.get(p)} applied={got.get(p)}"
             for p in sorted(set(merged) | set(got)) if merged.get(p) != got.get(p)]
    assert not diffs, "applied layer differs from the merged view:\n" + "\n".join(diffs)


def view(root):
    """A tree snapshot for comparing a merged view with an applied layer: link counts are
    left out (a copy-up breaks a lower hard link set in the view), times in whole seconds
    (what tar keeps), the root itself is left out (a layer does not carry it)."""
    snap = snapshot(root, overlay_xattrs=True, dir_nlink=False)
    del snap["."]
    for rec in snap.values():
        rec.pop("nlink", None)
        if "mtime_ns" in rec:
            rec["mtime_s"] = rec.pop("mtime_ns") // 10**9
    return snap


# --------------------------------------------------------------------------- a scenario

LOWER = {
    "keep.txt": "unchanged",
    "edit.txt": File("old content\n", mode=0o640, uid=5, gid=6, xattrs={"user.a": "1"}),
    "chmod.txt": "c",
    "del.txt": "bye",
    "ren_src.txt": "moving",
    "link_src": "linked",
    "etc": Dir({"passwd": "root:x:0:0", "hosts": "127.0.0.1", "sub": {"deep": "d"}},
               xattrs={"user.d": "lower"}),
    "opq": {"old1": "1", "olddir": {"x": "x"}},
    "rdir": {"a": "a", "b": {"c": "c"}},
    "deldir": {"f": "f"},
    "sym": Symlink("keep.txt"),
    "fifo": Fifo(),
    "dev": Chr(major=1, minor=5),
    "lh1": "hard",
    "lh2": Hardlink("lh1"),
}


def change_through_mount(m):
    """Every kind of change a container makes: writes, metadata, deletions of lower files and
    directories, rmdir+mkdir (opaque), renames of files and directories, hard links,
    symlinks, special files, xattrs (a binary one, an escaped trusted.overlay.* one), long
    names and link targets. Returns whether the directory rename happened (the kernel
    refuses it with EXDEV without redirect_dir)."""
    with open(m / "edit.txt", "a") as f:
        f.write("appended\n")
    os.setxattr(m / "edit.txt", "user.b", b"\x00\xff\nbin")
    os.chmod(m / "chmod.txt", 0o4755)
    os.chown(m / "chmod.txt", 1234, 5678)
    os.chmod(m / "chmod.txt", 0o4755)
    os.unlink(m / "del.txt")
    os.rename(m / "ren_src.txt", m / "etc" / "renamed.txt")
    os.link(m / "link_src", m / "etc" / "hardlink")
    (m / "new.bin").write_bytes(os.urandom(70000))
    os.setxattr(m / "new.bin", "user.n", b"v")
    os.setxattr(m / "new.bin", "trusted.overlay.foo", b"escaped")
    deep = m / "newdir" / ("d" * 60) / ("e" * 60)
    os.makedirs(deep)
    (deep / LONG_NAME).write_text("long")
    os.symlink(LONG_TARGET, m / "newdir" / "longlink")
    os.symlink("/etc/passwd", m / "newsym")
    os.mkfifo(m / "newfifo")
    os.mknod(m / "newchr", stat.S_IFCHR | 0o620, os.makedev(1, 7))
    os.setxattr(m / "etc", "user.d", b"upper")
    os.unlink(m / "etc" / "hosts")
    (m / "etc" / "sub" / "added").write_text("in a copied-up dir")
    os.unlink(m / "opq" / "old1")
    shutil.rmtree(m / "opq" / "olddir")
    os.rmdir(m / "opq")
    os.mkdir(m / "opq")
    os.mkdir(m / "opq" / "olddir")
    (m / "opq" / "fresh").write_text("fresh")
    try:
        os.rename(m / "rdir", m / "rdir2")
        renamed = True
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        renamed = False
    shutil.rmtree(m / "deldir")
    with open(m / "lh1", "a") as f:
        f.write(" changed")
    os.utime(m / "keep.txt", (1_600_000_000, 1_600_000_000))
    os.chown(m / "sym", 42, 43, follow_symlinks=False)
    return renamed


def test_export_of_a_redirected_directory_needs_the_lowers(layers, tmp_path):
    """redirect_dir=on (the default) leaves a renamed directory's contents at its old path
    below: without the lower layers the export fails rather than lose them, with them it
    writes the directory whole (tests/test_export_redirect.py has the details)."""
    ls = layers([{"d": {"f": "F"}}])
    with ls.ovlfs() as m:
        os.rename(m / "d", m / "e")
    line = one_error_line(run("export", ls.upper, *work_of(ls.upper), "-o", tmp_path / "l.tar"))
    assert "holds redirected directories" in line and "give the lower layers" in line, line
    assert not (tmp_path / "l.tar").exists()
    r = run("export", ls.upper, *ls.lowers, *work_of(ls.upper), "-o", tmp_path / "l.tar")
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "l.tar") as t:
        names = t.getnames()
    assert "e/f" in names and ".wh.d" in names, names


@pytest.mark.parametrize("backend", ["ovlfs", pytest.param("kernel", marks=needs_kernel_overlay)])
def test_export_applies_to_the_merged_view(layers, tmp_path, backend):
    """An upper written by ovlfs, and one written by the kernel overlayfs (origin and impure
    marks, whiteouts hard-linked to one inode), each applied over the lower it was made on.
    ovlfs's index (its default) keeps the lower hard link lh1/lh2 one file: the change
    written through lh1 shows through lh2, which only the work directory's index records,
    so the export reads it (-w, with the lowers) and writes lh2 as a link to lh1."""
    ls = layers([LOWER])
    # Directories renamed by copying (an OCI layer cannot express a redirect).
    with (ls.ovlfs(extra_opts=("redirect_dir=off",)) if backend == "ovlfs" else ls.kernel()) as m:
        renamed = change_through_mount(m)
        merged = view(m)
        merged_links = os.stat(m / "link_src").st_ino == os.stat(m / "etc/hardlink").st_ino
    assert merged_links
    # The upper holds the kernel's forms the export must turn into OCI ones.
    up = ls.upper
    assert stat.S_ISCHR(os.lstat(up / "del.txt").st_mode)
    assert os.getxattr(up / "opq", "trusted.overlay.opaque") == b"y"

    tar_path = export(up, tmp_path / "layer.tar", ls.lowers)
    assert export(up, tmp_path / "again.tar", ls.lowers).read_bytes() == \
        tar_path.read_bytes(), "two exports of one upper differ"

    with tarfile.open(tar_path) as t:
        members = {m.name: m for m in t.getmembers()}
        names = [m.name for m in t.getmembers()]
        assert len(names) == len(members), "a path appears twice"
        for wh in (".wh.del.txt", ".wh.ren_src.txt", ".wh.deldir", "etc/.wh.hosts") + \
                  ((".wh.rdir",) if renamed else ()):
            assert members[wh].isreg() and members[wh].size == 0, wh
        assert members["opq/" + OPQ].isreg()
        if backend == "ovlfs":
            assert members["rdir2/" + OPQ].isreg(), "a renamed directory is opaque"
        assert "opq" in members and members["opq"].isdir()
        assert not [n for n in names if "overlay.opaque" in n]
        assert members["etc/hardlink"].islnk() and members["etc/hardlink"].linkname == "link_src" \
            or members["link_src"].islnk() and members["link_src"].linkname == "etc/hardlink"
        assert members["newdir/longlink"].linkname == LONG_TARGET
        long_path = f"newdir/{'d' * 60}/{'e' * 60}/{LONG_NAME}"
        assert t.extractfile(members[long_path]).read() == b"long"
        assert members["newsym"].linkname == "/etc/passwd"
        assert members["newchr"].ischr() and (members["newchr"].devmajor,
                                              members["newchr"].devminor) == (1, 7)
        assert members["chmod.txt"].mode == 0o4755 and members["chmod.txt"].uid == 1234
        xa = _pax_xattrs(members["new.bin"])
        assert xa == {"user.n": b"v", "trusted.overlay.foo": b"escaped"}, xa
        assert _pax_xattrs(members["edit.txt"]) == {"user.a": b"1", "user.b": b"\x00\xff\nbin"}
        for m in t.getmembers():  # overlay-private marks never leak into the layer
            assert not any(k.startswith(("trusted.overlay.opaque", "trusted.overlay.origin",
                                         "trusted.overlay.impure")) for k in _pax_xattrs(m)), m.name
        # Sorted: in each directory the names come in byte order, the opaque marker first.
        children = {}
        for n in names:
            children.setdefault(posixpath.dirname(n), []).append(posixpath.basename(n))
        for d, kids in children.items():
            rest = [k for k in kids if k != OPQ]
            assert rest == sorted(rest, key=os.fsencode), f"{d}: {kids}"
            assert OPQ not in kids or kids[0] == OPQ, f"{d}: {kids}"
        assert "fifo" not in members, "an unchanged lower file"
        if backend == "ovlfs":  # changed through the other name of its group
            assert members["lh2"].islnk() and members["lh2"].linkname == "lh1"
        else:
            assert "lh2" not in members, "an unchanged lower file"

    r = subprocess.run(["tar", "tvf", str(tar_path)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    assert "newdir/longlink -> " + LONG_TARGET in r.stdout

    applied = clone_tree(ls.lowers[0], tmp_path / "applied")
    oci_apply(tar_path, applied)
    assert_applied_is_merged(applied, merged)
    assert os.stat(applied / "link_src").st_ino == os.stat(applied / "etc/hardlink").st_ino


def test_export_whiteout_and_opaque_forms(tmp_path):
    """Every whiteout and opaque form found in upper layers, written as OCI entries."""
    up = build_layer(tmp_path / "upper", {
        "chr": Whiteout(),
        ".wh.dotwh": File(""),
        "both": Whiteout(), ".wh.both": File(""),  # two forms of one whiteout: one entry
        "xdir": Dir({"gone": XWhiteout(), "kept": "k"}, opaque="x"),
        "kopq": Opaque({"a": "a"}),
        "uopq": Dir({"a": "a"}, xattrs={"user.overlay.opaque": "y"}),
        "fopq": Dir({"a": "a"}, xattrs={"user.fuseoverlayfs.opaque": "y"}),
        "wopq": {OPQ: "", "a": "a"},
        "dup": Dir({OPQ: ""}, opaque="y"),
        "notopq": Dir({"a": "a"}, opaque="yes"),  # the kernel reads 1 byte: not opaque
        "plain.txt": File("p", xattrs={"user.overlay.origin": "x", "user.keep": "k"}),
    })
    out = export(up, tmp_path / "l.tar")
    with tarfile.open(out) as t:
        got = [(m.name, m.type.decode()) for m in t.getmembers()]
        xa = {m.name: _pax_xattrs(m) for m in t.getmembers()}
    assert got == [
        (".wh.both", "0"), (".wh.chr", "0"), (".wh.dotwh", "0"),
        ("dup", "5"), ("dup/" + OPQ, "0"),
        ("fopq", "5"), ("fopq/" + OPQ, "0"), ("fopq/a", "0"),
        ("kopq", "5"), ("kopq/" + OPQ, "0"), ("kopq/a", "0"),
        ("notopq", "5"), ("notopq/a", "0"),
        ("plain.txt", "0"),
        ("uopq", "5"), ("uopq/" + OPQ, "0"), ("uopq/a", "0"),
        ("wopq", "5"), ("wopq/" + OPQ, "0"), ("wopq/a", "0"),
        ("xdir", "5"), ("xdir/.wh.gone", "0"), ("xdir/kept", "0"),
    ], got
    assert xa["plain.txt"] == {"user.keep": b"k"}
    assert all(not v for k, v in xa.items() if k != "plain.txt"), xa


def test_export_pax_for_large_values(tmp_path):
    """uid/gid beyond ustar's 7 octal digits and negative times go to PAX records; a file of
    8 GiB and more gets a PAX size (only the head of that archive is read)."""
    up = build_layer(tmp_path / "upper", {"big_ids": File("x", uid=3_000_000, gid=4_000_000),
                                          "old": File("o")})
    os.utime(up / "old", (-100, -100))
    raw = os.fsencode(up) + b"/" + b"d" * 90 + b"/\xff\xfe" + b"x" * 30  # long, not UTF-8
    os.mkdir(os.path.dirname(raw))
    open(raw, "wb").close()
    out = export(up, tmp_path / "l.tar")
    with tarfile.open(out) as t:
        m = t.getmember("big_ids")
        assert (m.uid, m.gid) == (3_000_000, 4_000_000)
        assert t.getmember("old").mtime == -100
        names = [os.fsencode(n) for n in t.getnames()]
        assert raw[len(os.fsencode(up)) + 1:] in names, names
    r = subprocess.run(["tar", "tvf", str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr

    big = tmp_path / "upper2"
    big.mkdir()
    with open(big / "huge", "wb") as f:
        f.truncate(8 * 1024**3 + 1)
    proc = subprocess.Popen([str(ovlfs_binary()), "export", str(big)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        head = proc.stdout.read(1536)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert head[156:157] == b"x" and b"size=8589934593\n" in head[512:1024], head[:1024]


def test_export_does_not_follow_symlinks(tmp_path):
    outside = build_layer(tmp_path / "outside", {"secret": "s"})
    up = build_layer(tmp_path / "upper", {"d": {"f": "f"}})
    os.symlink(outside, up / "escape")
    os.symlink(outside, up / "d" / "escape2")
    out = export(up, tmp_path / "l.tar")
    with tarfile.open(out) as t:
        names = t.getnames()
    assert sorted(names) == ["d", "d/escape2", "d/f", "escape"], names
    assert not any("secret" in n for n in names)


def test_export_gzip(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a" * 10000, "d": {"b": Whiteout()}})
    plain = export(up, tmp_path / "l.tar").read_bytes()
    r = run("export", "-z", up, "-o", tmp_path / "l.tar.gz")
    assert r.returncode == 0, r.stderr
    import gzip
    assert gzip.decompress((tmp_path / "l.tar.gz").read_bytes()) == plain
    r = run("export", up, "-z")
    assert r.returncode == 0 and r.stdout == (tmp_path / "l.tar.gz").read_bytes()


def test_export_to_stdout_equals_file(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a", "s": Symlink("a")})
    r = run("export", up)
    assert r.returncode == 0 and r.stdout == export(up, tmp_path / "l.tar").read_bytes()


# --------------------------------------------------------------------------- export errors

def test_export_bad_input(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a"})
    out = tmp_path / "out.tar"
    line = one_error_line(run("export", tmp_path / "missing", "-o", out))
    assert "missing" in line and "No such file or directory" in line
    (tmp_path / "file").write_text("x")
    line = one_error_line(run("export", tmp_path / "file", "-o", out))
    assert "not a directory" in line
    assert not out.exists(), "an output file was made for bad input"
    assert "unknown option" in one_error_line(run("export", up, "--bogus"))
    assert "needs a file name" in one_error_line(run("export", up, "-o"))
    line = one_error_line(run("export", up, tmp_path / "other", "-o", out))
    assert "other" in line and "lower layer" in line and not out.exists()
    assert "no upper" in one_error_line(run("export"))
    line = one_error_line(run("export", up, "-o", tmp_path))
    assert "Is a directory" in line and str(tmp_path) in line
    line = one_error_line(run("export", up, "-o", tmp_path / "nodir" / "x.tar"))
    assert "nodir" in line and "No such file or directory" in line
    master, slave = os.openpty()
    try:
        line = one_error_line(run("export", up, stdout=slave))
    finally:
        os.close(master)
        os.close(slave)
    assert "terminal" in line
    r = run("export", "--help")
    assert r.returncode == 0 and b"usage: ovlfs export" in r.stdout


def test_export_unreadable_upper(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a"})
    os.chmod(up, 0o700)
    os.chmod(tmp_path, 0o755)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                        str(ovlfs_binary()), "export", str(up)], capture_output=True,
                       timeout=RUN_TIMEOUT)
    line = one_error_line(r)
    assert str(up) in line and "Permission denied" in line


def test_export_write_errors(tmp_path, tmpfs):
    up = build_layer(tmp_path / "upper", {"big": "x" * 200_000, "small": "s"})
    line = one_error_line(run("export", up, "-o", "/dev/full"))
    assert "No space left on device" in line and "/dev/full" in line
    with open("/dev/full", "wb") as full:
        line = one_error_line(run("export", up, stdout=full))
    assert "No space left on device" in line and "standard output" in line
    # A full filesystem: the failed archive leaves nothing behind, an old FILE stays intact.
    small = tmpfs("small", "size=64k")
    (small / "old.tar").write_text("previous")
    line = one_error_line(run("export", up, "-o", small / "old.tar"))
    assert "No space left on device" in line and "old.tar" in line
    assert sorted(os.listdir(small)) == ["old.tar"]
    assert (small / "old.tar").read_text() == "previous"
    line = one_error_line(run("export", up, "-o", small / "new.tar"))
    assert sorted(os.listdir(small)) == ["old.tar"]


def test_export_output_inside_upper_is_left_out(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a"})
    export(up, up / "self.tar")
    with tarfile.open(up / "self.tar") as t:
        assert t.getnames() == ["a"]


# --------------------------------------------------------------------------- diff

def diff(upper, *lowers):
    r = run("diff", upper, *lowers, *work_of(upper))
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    return r.stdout.decode().splitlines()


def merged_kinds(root):
    """'/path' -> is-directory, for every entry of a tree."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out["/" + os.path.relpath(p, root)] = os.path.isdir(p) and not os.path.islink(p)
    return out


def upper_objects(upper):
    """'/path' of every object of an upper layer (whiteouts left out), not below a
    whiteout-named entry."""
    out = []
    for dirpath, dirnames, filenames in os.walk(upper):
        dirnames[:] = [d for d in dirnames if not d.startswith(".wh.")]
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if n.startswith(".wh.") or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                continue
            out.append("/" + os.path.relpath(p, upper))
    return out


DIFF_LOWER1 = {
    "base": {"x": "x", "y": "y"},
    "shadow": {"gone": "g"},
    "op": {"below": "b"},
    "xd": {"gone": "g", "stay": "s"},
    "l1only": "1",
}
DIFF_LOWER0 = {
    "shadow": {"gone": Whiteout()},  # hidden by the upper lower layer
    "op": Opaque({"a": "a"}),  # hides op/below
    "xd": Dir({"gone": XWhiteout()}, opaque="x"),  # a kernel 6.7+ xattr whiteout
    "top": "t",
    "tdir": {"sub": {"deep": "d"}, "keep": "k"},
}


def test_diff_against_the_merged_views(layers):
    ls = layers([DIFF_LOWER0, DIFF_LOWER1])
    with ls.ovlfs() as m:
        before = merged_kinds(m)
        (m / "shadow" / "gone").write_text("new again")  # hidden below: A
        (m / "op" / "below").write_text("new")  # hidden by a lower opaque dir: A
        (m / "xd" / "gone").write_text("new")  # xattr-whited-out below: A
        os.unlink(m / "xd" / "stay")
        (m / "base" / "x").write_text("changed")
        os.unlink(m / "base" / "y")
        os.unlink(m / "l1only")
        shutil.rmtree(m / "tdir")
        os.mkdir(m / "tdir")
        os.mkdir(m / "tdir" / "sub")  # re-made in an opaque dir: tdir/sub/deep is gone
        (m / "newdir").mkdir()
        (m / "newdir" / "f").write_text("f")
        os.chmod(m / "top", 0o600)
        after = merged_kinds(m)
    expected = set()
    for p in upper_objects(ls.upper):
        expected.add(("C" if p in before else "A") + " " + p)
    for p in before:
        parent = posixpath.dirname(p)
        if p not in after and (parent == "/" or after.get(parent)):
            expected.add("D " + p)
    got = diff(ls.upper, *ls.lowers)
    assert got == sorted(got, key=lambda ln: os.fsencode(ln[2:])), "not sorted by path"
    assert set(got) == expected, (sorted(set(got) - expected), sorted(expected - set(got)))
    assert len(got) == len(expected)
    # Spot checks of the rule itself.
    for line in ("A /shadow/gone", "A /op/below", "A /xd/gone", "D /xd/stay", "C /base/x",
                 "D /base/y", "D /l1only", "C /tdir", "C /tdir/sub", "D /tdir/sub/deep",
                 "D /tdir/keep", "A /newdir", "A /newdir/f", "C /top"):
        assert line in got, (line, got)


def test_diff_without_lowers(tmp_path):
    """The upper alone: whiteouts are D; a copied-up mark (overlay.origin), an opaque dir or a
    dir holding a whiteout or a C entry is C; everything else is A."""
    up = build_layer(tmp_path / "upper", {
        "new.txt": "n",
        "copied.txt": File("c", xattrs={"trusted.overlay.origin": ""}),
        "gone": Whiteout(),
        ".wh.gone2": "",
        "etc": {"dead": Whiteout(), "fresh": "f"},
        "usr": {"lib": {"copied": File("c", xattrs={"trusted.overlay.origin": ""})}},
        "opq": Opaque({"x": "x"}),
        "newdir": {"a": "a"},
    })
    assert diff(up) == ["C /copied.txt", "C /etc", "D /etc/dead", "A /etc/fresh", "D /gone",
                        "D /gone2", "A /new.txt", "A /newdir", "A /newdir/a", "C /opq",
                        "A /opq/x", "C /usr", "C /usr/lib", "C /usr/lib/copied"]


def test_diff_bad_input(tmp_path):
    up = build_layer(tmp_path / "upper", {"a": "a"})
    low = build_layer(tmp_path / "lower", {"a": "b"})
    line = one_error_line(run("diff", tmp_path / "missing", low))
    assert "missing" in line and "No such file or directory" in line
    (tmp_path / "file").write_text("x")
    assert "not a directory" in one_error_line(run("diff", tmp_path / "file"))
    line = one_error_line(run("diff", up, tmp_path / "nolower"))
    assert "nolower" in line and "lower layer" in line
    assert "not a directory" in one_error_line(run("diff", up, tmp_path / "file"))
    assert "unknown option" in one_error_line(run("diff", up, "-x"))
    assert "no upper" in one_error_line(run("diff"))
    with open("/dev/full", "wb") as full:
        line = one_error_line(run("diff", up, low, stdout=full))
    assert "No space left on device" in line
    r = run("diff", "--help")
    assert r.returncode == 0 and b"usage: ovlfs diff" in r.stdout
    assert diff(up, low) == ["C /a"]


@needs_kernel_overlay
def test_diff_of_a_kernel_upper_needs_no_lowers(layers):
    """The kernel overlayfs marks what it copies up (overlay.origin): on its upper layers the
    upper alone gives the same lines as the comparison with the lower layers."""
    ls = layers([{"f": "f", "g": "g", "d": {"old": "o"}, "keep": "k"}])
    with ls.kernel() as m:
        os.chmod(m / "f", 0o600)
        os.unlink(m / "g")
        (m / "d" / "new").write_text("n")
        (m / "n").write_text("n")
        os.mkdir(m / "nd")
        (m / "nd" / "x").write_text("x")
    expected = ["C /d", "A /d/new", "C /f", "D /g", "A /n", "A /nd", "A /nd/x"]
    assert diff(ls.upper, *ls.lowers) == expected
    assert diff(ls.upper) == expected
