"""Layer formats beyond the kernel's: OCI/Docker image layers (`.wh.<name>` whiteouts,
`.wh..wh..opq` opaque directories), fuse-overlayfs's markers (user.fuseoverlayfs.opaque),
the kernel's userxattr (user.overlay.*), file-form whiteouts (-o whiteout=file), the format
record on the upper root, and a rootless mount by an unprivileged user."""
import contextlib
import errno
import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

import helpers
from helpers import (Dir, File, build_layer, expect_errno, is_fuse_mount, needs_fuse,
                     needs_kernel_overlay, ovlfs_binary)
from write_helpers import is_whiteout, opaque_of, tree

pytestmark = needs_fuse

FOO_OPAQUE = "user.fuseoverlayfs.opaque"
U_OPAQUE = "user.overlay.opaque"


def names(path):
    return sorted(os.listdir(path))


def xattr_names(path):
    return sorted(os.listxattr(path, follow_symlinks=False))


# --------------------------------------------------------------------------- reading

def oci_lowers():
    """An image: L1 (base) and L0 (a later layer deleting and replacing things in OCI form)."""
    top = {
        ".wh.gone": "",                      # deletes a file of the base
        ".wh.gonedir": "",                   # deletes a whole directory of the base
        "keep": "top",                       # .wh.keep and keep in one layer: keep shows
        ".wh.keep": "",
        "opq": {".wh..wh..opq": "", "new": "n"},   # opaque: base's opq/* hidden
        "merged": {".wh.m1": "", "m3": "3"},       # merged, one base child deleted
        ".wh..wh.plnk": {},                  # other .wh..wh.* entries: hidden, no effect
    }
    base = {
        "gone": "base", "gonedir": {"x": "x"}, "keep": "base",
        "opq": {"old": "o", "sub": {"deep": "d"}},
        "merged": {"m1": "1", "m2": "2"}, "plain": "p",
    }
    return [top, base]


def check_oci_view(mnt):
    assert names(mnt) == ["keep", "merged", "opq", "plain"]
    assert (mnt / "keep").read_text() == "top"
    assert names(mnt / "opq") == ["new"]
    assert names(mnt / "merged") == ["m2", "m3"]
    for hidden in ("gone", "gonedir", ".wh.gone", ".wh.keep", ".wh..wh.plnk", "opq/old",
                   "opq/.wh..wh..opq", "merged/m1", "merged/.wh.m1", "gonedir/x"):
        expect_errno(errno.ENOENT, os.lstat, mnt / hidden)


def test_oci_lower_layers_read_only(layers):
    ls = layers(oci_lowers(), rw=False)
    with ls.ovlfs() as mnt:
        check_oci_view(mnt)


def test_oci_lower_layers_under_an_upper(layers):
    ls = layers(oci_lowers())
    with ls.ovlfs() as mnt:
        check_oci_view(mnt)
        # Copy-up of an opaque OCI directory keeps it opaque over the base.
        (mnt / "opq" / "new").write_text("changed")
        (mnt / "merged" / "m2").write_text("changed")
        assert names(mnt / "opq") == ["new"]
        assert names(mnt / "merged") == ["m2", "m3"]
    # The copied-up directories' upper copies carry no marker of their own.
    assert opaque_of(ls.upper / "opq") is None
    assert not (ls.upper / "opq" / ".wh..wh..opq").exists()


def test_oci_whiteouts_in_upper_and_fuse_overlayfs_marks(layers):
    """An upper written by fuse-overlayfs rootless: .wh. files, user.fuseoverlayfs.opaque."""
    upper = {".wh.a": "", "d": Dir(xattrs={FOO_OPAQUE: "y", "user.keep": "k"},
                                    children={"n": ""}),
             "e": {".wh..wh..opq": "", "o": ""}}
    ls = layers([{"a": "lower", "b": "b", "d": {"m": ""}, "e": {"p": ""}}], upper)
    with ls.ovlfs() as mnt:
        assert names(mnt) == ["b", "d", "e"]
        assert names(mnt / "d") == ["n"]
        assert names(mnt / "e") == ["o"]
        # fuse-overlayfs's own xattrs are never shown nor reachable.
        assert xattr_names(mnt / "d") == ["user.keep"]
        expect_errno(errno.ENODATA, os.getxattr, mnt / "d", FOO_OPAQUE)
        expect_errno(errno.EOPNOTSUPP, os.setxattr, mnt / "d", "user.fuseoverlayfs.x", b"1")


def test_wh_names_hidden_and_refused(layers):
    ls = layers([{"a": "a", "d": {}}], {".wh.z": ""})
    with ls.ovlfs() as mnt:
        assert ".wh.z" not in names(mnt)
        expect_errno(errno.ENOENT, os.lstat, mnt / ".wh.z")
        expect_errno(errno.ENOENT, os.unlink, mnt / ".wh.z")
        bad = mnt / ".wh.x"
        # EINVAL, as fuse-overlayfs answers: such a name would be read back as a whiteout.
        expect_errno(errno.EINVAL, os.open, bad, os.O_CREAT | os.O_WRONLY, 0o644)
        expect_errno(errno.EINVAL, os.mkdir, bad)
        expect_errno(errno.EINVAL, os.mkfifo, bad)
        expect_errno(errno.EINVAL, os.symlink, "a", bad)
        expect_errno(errno.EINVAL, os.link, mnt / "a", bad)
        expect_errno(errno.EINVAL, os.rename, mnt / "a", bad)
        expect_errno(errno.EINVAL, os.rename, mnt / "d", mnt / "d" / ".wh..wh..opq")
        assert names(mnt) == ["a", "d"]
    assert not (ls.upper / ".wh.x").exists()


def test_create_over_wh_file_whiteouts(layers):
    """Names whited out by .wh. files in upper come back as new objects; a directory made
    there is opaque; the .wh. files go."""
    ls = layers([{"a": "old", "d": {"x": "x"}, "l": "l", "n": "n"}],
                {".wh.a": "", ".wh.d": "", ".wh.n": ""})
    with ls.ovlfs() as mnt:
        (mnt / "a").write_text("new")
        os.mkdir(mnt / "d")
        os.link(mnt / "l", mnt / "n")
        assert (mnt / "a").read_text() == "new"
        assert names(mnt / "d") == []
        assert names(mnt) == ["a", "d", "l", "n"]
    assert sorted(p.name for p in ls.upper.iterdir()) == ["a", "d", "l", "n"]
    assert opaque_of(ls.upper / "d") == b"y"


def test_rmdir_and_rename_over_wh_files(layers):
    """Emptiness counts .wh.-hidden lower names as gone; the directory is replaced by a
    whiteout of the mount's form (char 0/0 by default)."""
    ls = layers([{"d": {"x": "x"}, "s": "s", "t": {"y": ""}, "m": {"y": "y", "z": "z"}}],
                {"d": {".wh.x": ""}, "t": {".wh.y": ""}, "m": {".wh.y": ""}})
    with ls.ovlfs() as mnt:
        os.rename(mnt / "m", mnt / "n")  # copied up alone, redirected: its .wh. files stay
        assert names(mnt / "n") == ["z"]
        assert names(mnt / "d") == []
        os.rmdir(mnt / "d")
        expect_errno(errno.EISDIR, os.rename, mnt / "s", mnt / "t")
        os.mkdir(mnt / "s2")
        os.rename(mnt / "s2", mnt / "t")  # onto a directory empty by its whiteouts
        assert names(mnt / "t") == []
    assert is_whiteout(ls.upper / "d")
    assert opaque_of(ls.upper / "t") == b"y"
    assert names(ls.upper / "n") == [".wh.y"] and opaque_of(ls.upper / "n") is None
    assert os.getxattr(ls.upper / "n", "trusted.overlay.redirect") == b"m"
    assert is_whiteout(ls.upper / "m")
    with ls.ovlfs(extra_opts=["redirect_dir=off"]) as mnt:  # the copying rename
        os.rename(mnt / "n", mnt / "n2")
        assert names(mnt / "n2") == ["z"]
    # copied up, opaque: its .wh. files are purged
    assert names(ls.upper / "n2") == ["z"] and opaque_of(ls.upper / "n2") == b"y"


def test_user_overlay_marks_need_userxattr(layers):
    """Without userxattr user.overlay.* is the user's (nested rootless overlays keep their
    marks); with it, those are ovlfs's markers: honoured, hidden, and escaped."""
    spec = {"d": Dir(xattrs={U_OPAQUE: "y"}, children={"u": ""}),
            "x": Dir(xattrs={U_OPAQUE: "x"},
                     children={"w": File(xattrs={"user.overlay.whiteout": ""})})}
    ls = layers([spec, {"d": {"l": ""}, "x": {"w": "w", "v": "v"}}])
    with ls.ovlfs() as mnt:
        assert names(mnt / "d") == ["l", "u"]
        assert U_OPAQUE in xattr_names(mnt / "d")
        assert names(mnt / "x") == ["v", "w"]
        assert (mnt / "x" / "w").read_text() == ""
    with ls.ovlfs(extra_opts=["userxattr"]) as mnt:
        assert names(mnt / "x") == ["v"]  # the kernel 6.7+ xattr whiteout, user.* form
        expect_errno(errno.ENOENT, os.lstat, mnt / "x" / "w")
        assert names(mnt / "d") == ["u"]
        assert xattr_names(mnt / "d") == []
        os.setxattr(mnt / "d", "user.overlay.mine", b"v")  # copies d up
        assert xattr_names(mnt / "d") == ["user.overlay.mine"]
        assert os.getxattr(mnt / "d", "user.overlay.mine") == b"v"
    assert os.getxattr(ls.upper / "d", "user.overlay.overlay.mine") == b"v"
    # The copy-up did not carry the lower's marker: upper d is not opaque by it.
    expect_errno(errno.ENODATA, os.getxattr, ls.upper / "d", U_OPAQUE)


# --------------------------------------------------------------------------- writing

def churn(mnt):
    """Operations that leave whiteouts and opaque directories behind."""
    os.unlink(mnt / "f")
    os.rename(mnt / "g", mnt / "g2")
    subprocess.run(["rm", "-r", str(mnt / "d")], check=True)
    os.mkdir(mnt / "d")                  # over a whiteout: opaque
    (mnt / "d" / "new").write_text("n")
    os.rename(mnt / "e", mnt / "e2")     # a lower directory moves: opaque + whiteout
    os.unlink(mnt / "k" / "k1")
    os.rmdir(mnt / "empty")


WRITE_LOWER = {"f": "f", "g": "g", "d": {"x": "x", "sub": {"y": "y"}}, "e": {"z": "z"},
               "k": {"k1": "1", "k2": "2"}, "empty": {}}
EXPECTED_VIEW = {"g2": "g", "d": "D", "d/new": "n", "e2": "D", "e2/z": "z", "k": "D",
                 "k/k2": "2"}


def test_file_whiteouts_written_and_read_back(layers):
    ls = layers([WRITE_LOWER])
    with ls.ovlfs(extra_opts=["whiteout=file"]) as mnt:
        churn(mnt)
        assert tree(mnt) == EXPECTED_VIEW
    up = ls.upper
    chars = [p for p in up.rglob("*") if stat.S_ISCHR(p.lstat().st_mode)]
    assert chars == []
    for wh in (".wh.f", ".wh.g", ".wh.e", ".wh.empty", "k/.wh.k1"):
        st = (up / wh).lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0, wh
    for d in ("d", "e2"):
        assert (up / d / ".wh..wh..opq").is_file(), d
        assert opaque_of(up / d) == b"y", d
    assert not (up / ".wh.d").exists()   # the new d replaced its whiteout
    assert os.getxattr(up, "trusted.overlay.ovlfs") == b"whiteout=file"
    # Remounted without options: the same view, and whiteouts still written as files.
    with ls.ovlfs() as mnt:
        assert tree(mnt) == EXPECTED_VIEW
        os.unlink(mnt / "k" / "k2")
    assert (up / "k" / ".wh.k2").is_file()


@needs_kernel_overlay
def test_same_view_as_kernel_in_both_forms(layers):
    """The same operations through ovlfs with file whiteouts, ovlfs with char whiteouts and
    the kernel give one merged view; the char-form upper reads back under the kernel."""
    views = {}
    for name, opts in (("file", ["whiteout=file"]), ("chardev", ["whiteout=chardev"])):
        ls = layers([WRITE_LOWER])
        with ls.ovlfs(extra_opts=opts) as mnt:
            churn(mnt)
            views[name] = tree(mnt)
        if name == "chardev":
            with ls.kernel(extra_opts=["index=off", "redirect_dir=off", "metacopy=off"]) as k:
                views["kernel-remount"] = tree(k)
            assert "trusted.overlay.ovlfs" not in os.listxattr(ls.upper)
    assert views["file"] == views["chardev"] == views["kernel-remount"] == EXPECTED_VIEW


def test_userxattr_mode_as_root(layers):
    ls = layers([WRITE_LOWER])
    with ls.ovlfs(extra_opts=["userxattr"]) as mnt:
        churn(mnt)
        assert tree(mnt) == EXPECTED_VIEW
        assert xattr_names(mnt / "d") == []
    assert os.getxattr(ls.upper / "d", U_OPAQUE) == b"y"
    assert opaque_of(ls.upper / "d") is None
    assert os.getxattr(ls.upper, "user.overlay.ovlfs") == b"whiteout=chardev"
    with ls.ovlfs() as mnt:  # the record brings userxattr back
        assert tree(mnt) == EXPECTED_VIEW
        assert "user.overlay.ovlfs" not in xattr_names(mnt)


def test_whiteout_option_values(layers):
    ls = layers([{}])
    r = subprocess.run([str(ovlfs_binary()), "-o", f"lowerdir={ls.lowers[0]},whiteout=bad",
                        str(ls.base)], capture_output=True, text=True)
    assert r.returncode == 1 and "whiteout" in r.stderr


# --------------------------------------------------------------------------- rootless

NOBODY = 65534


def _as_nobody(*cmd):
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]


def _run_as_nobody(code, *args):
    """Runs a python snippet as nobody; returns what it printed as JSON."""
    r = subprocess.run(_as_nobody(sys.executable, "-c", code, *args), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else None


@pytest.fixture
def open_dev_fuse():
    """/dev/fuse usable by everyone for the test (stock mode 0666); the mode is put back."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv is missing")
    fm = shutil.which("fusermount3")
    if not fm or not os.stat(fm).st_mode & stat.S_ISUID:
        pytest.skip("fusermount3 is not setuid root")
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", mode | 0o666)
    try:
        yield
    finally:
        os.chmod("/dev/fuse", mode)


@pytest.fixture
def rootless_base():
    """A world-traversable directory (pytest's tmp_path sits below a 0700 one) with the
    binary copied in, so that nobody can reach everything; removed afterwards."""
    base = pathlib.Path(tempfile.mkdtemp(prefix="ovlfs-rootless-"))
    os.chmod(base, 0o755)
    shutil.copy(ovlfs_binary(), base / "ovlfs")
    os.chmod(base / "ovlfs", 0o755)
    try:
        yield base
    finally:
        mnt = base / "mnt"
        if is_fuse_mount(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if is_fuse_mount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def nobody_mount(base, extra=()):
    opts = f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work"
    for o in extra:
        opts += "," + o
    mnt = base / "mnt"
    proc = subprocess.Popen(_as_nobody(str(base / "ovlfs"), "-f", "-o", opts, str(mnt)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        helpers.wait_fuse_mount(mnt, proc, lambda: proc.stdout.read().decode())
        yield mnt
        r = subprocess.run(_as_nobody("fusermount3", "-u", str(mnt)), capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        assert proc.wait(10) == 0
    finally:
        if is_fuse_mount(mnt):
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        nobody_mount.log = proc.stdout.read().decode()
        proc.stdout.close()


CHURN_AS_NOBODY = """
import json, os, sys, subprocess
m = sys.argv[1]
os.unlink(m + '/f')
os.rename(m + '/g', m + '/g2')
subprocess.run(['rm', '-r', m + '/d'], check=True)
os.mkdir(m + '/d')
open(m + '/d/new', 'w').write('n')
os.rename(m + '/e', m + '/e2')
os.unlink(m + '/k/k1')
os.rmdir(m + '/empty')
"""

VIEW_AS_NOBODY = """
import json, os, sys
m = sys.argv[1]
out = {}
for dp, dn, fn in os.walk(m):
    for n in dn + fn:
        p = os.path.join(dp, n)
        out[os.path.relpath(p, m)] = 'D' if os.path.isdir(p) else open(p).read()
out['?xattrs d'] = sorted(os.listxattr(m + '/d'))
print(json.dumps(out))
"""


def _build_rootless_layers(base):
    build_layer(base / "lower", WRITE_LOWER)
    for d in ("upper", "work", "mnt"):
        (base / d).mkdir()
    for p in [base / "lower", *(base / "lower").rglob("*"), base / "upper", base / "work",
              base / "mnt"]:
        os.lchown(p, NOBODY, NOBODY)


def _can_mknod_whiteout_as_nobody(base):
    code = ("import os, sys\n"
            "try:\n os.mknod(sys.argv[1], 0o20600, 0)\nexcept PermissionError:\n print(0)\n"
            "else:\n os.unlink(sys.argv[1]); print(1)\n")
    return _run_as_nobody(code, str(base / "work" / "probe")) == 1


@pytest.mark.parametrize("whiteout", ["auto", "file"])
def test_rootless_mount(open_dev_fuse, rootless_base, whiteout):
    base = rootless_base
    _build_rootless_layers(base)
    # Linux lets anyone make a 0/0 char device (a whiteout) since 5.8: auto uses it there.
    chardev = whiteout == "auto" and _can_mknod_whiteout_as_nobody(base)
    with nobody_mount(base, [f"whiteout={whiteout}"]) as mnt:
        _run_as_nobody(CHURN_AS_NOBODY, str(mnt))
        view = _run_as_nobody(VIEW_AS_NOBODY, str(mnt))
    assert "user.overlay.*" in nobody_mount.log
    expected = dict(EXPECTED_VIEW, **{"?xattrs d": []})
    assert view == expected
    up = base / "upper"
    if chardev:
        assert is_whiteout(up / "f") and is_whiteout(up / "k" / "k1")
        assert not (up / "d" / ".wh..wh..opq").exists()
    else:
        assert not any(stat.S_ISCHR(p.lstat().st_mode) for p in up.rglob("*"))
        for wh in (".wh.f", ".wh.g", ".wh.e", ".wh.empty", "k/.wh.k1"):
            assert (up / wh).is_file(), wh
        assert (up / "d" / ".wh..wh..opq").is_file()
    assert os.getxattr(up / "d", U_OPAQUE) == b"y"
    expect_errno(errno.ENODATA, os.getxattr, up / "d", "trusted.overlay.opaque")
    form = b"whiteout=chardev" if chardev else b"whiteout=file"
    assert os.getxattr(up, "user.overlay.ovlfs") == form
    # Remounted (default options): it reads back the same, and writes the same form.
    with nobody_mount(base) as mnt:
        assert _run_as_nobody(VIEW_AS_NOBODY, str(mnt)) == expected
        _run_as_nobody("import os, sys; os.unlink(sys.argv[1] + '/k/k2')", str(mnt))
    assert is_whiteout(up / "k" / "k2") if chardev else (up / "k" / ".wh.k2").is_file()
    # Owned by the user who mounted: no root-owned leftovers in the layer.
    assert all(p.lstat().st_uid == NOBODY for p in up.rglob("*"))


def test_many_layers_between_name_and_whiteout(layers):
    """A name found only far below, with .wh. files in layers above it (past the 16 layers
    whose check ovlfs defers until the name is found)."""
    lowers = [{} for _ in range(20)]
    lowers[17] = {".wh.x": ""}
    lowers[19] = {"x": "x", "y": "y", "z": "z"}
    lowers[3] = {".wh.z": ""}
    ls = layers(lowers, {".wh.y": ""})
    with ls.ovlfs() as mnt:
        for n in ("x", "y", "z"):
            expect_errno(errno.ENOENT, os.lstat, mnt / n)
        assert names(mnt) == []
        (mnt / "y").write_text("new")  # over upper's .wh.y: the file goes
        assert names(mnt) == ["y"]
    assert sorted(p.name for p in ls.upper.iterdir()) == ["y"]


def _tar_layer(dest, entries):
    """Extracts an image layer tar built in memory: entries maps a path to bytes (a file) or
    None (a directory), in tar order."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.mtime = 1_500_000_000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    dest.mkdir()
    with tarfile.open(fileobj=buf) as tar:
        # Our own tar: the extraction filter (Python 3.12+) only silences a warning.
        tar.extractall(dest, **({"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}))
    os.utime(dest, (1_500_000_000, 1_500_000_000))
    return dest


def _convert_to_kernel_format(layer):
    """What containers/storage does on unpacking for the kernel: .wh.<n> becomes a 0/0
    device n, .wh..wh..opq becomes trusted.overlay.opaque=y on its directory."""
    for dirpath, dirnames, filenames in os.walk(layer):
        for n in dirnames + filenames:
            if not n.startswith(".wh."):
                continue
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            os.unlink(p)
            if n == ".wh..wh..opq":
                os.setxattr(dirpath, "trusted.overlay.opaque", b"y")
            else:
                os.mknod(os.path.join(dirpath, n[4:]), stat.S_IFCHR | 0o600, 0)
            os.utime(dirpath, ns=(st.st_mtime_ns, st.st_mtime_ns))


@needs_kernel_overlay
def test_image_layers_from_tar_match_the_converted_kernel_view(tmp_path):
    from helpers import assert_same_tree, mount_kernel, mount_ovlfs, snapshot
    base = {"etc/": None, "etc/passwd": b"root", "etc/hosts": b"h", "usr/": None,
            "usr/lib/": None, "usr/lib/old.so": b"o", "usr/bin/": None, "usr/bin/sh": b"s",
            "var/": None, "var/cache/": None, "var/cache/x": b"x"}
    top = {"etc/": None, "etc/.wh.passwd": b"", "etc/shadow": b"s", "usr/": None,
           "usr/.wh..wh..opq": b"", "usr/bin/": None, "usr/bin/sh": b"new",
           ".wh.var": b""}
    views = {}
    for kind in ("ovlfs", "kernel"):
        d = tmp_path / kind
        d.mkdir()
        low = [_tar_layer(d / "top", top), _tar_layer(d / "base", base)]
        if kind == "kernel":
            _convert_to_kernel_format(low[0])
            with mount_kernel(low, mnt=d / "mnt") as mnt:
                views[kind] = snapshot(mnt, overlay_xattrs=True)
        else:
            with mount_ovlfs(low, mnt=d / "mnt") as mnt:
                views[kind] = snapshot(mnt, overlay_xattrs=True)
    assert sorted(views["ovlfs"]) == [".", "etc", "etc/hosts", "etc/shadow", "usr", "usr/bin",
                                       "usr/bin/sh"]
    assert_same_tree(views["kernel"], views["ovlfs"])
