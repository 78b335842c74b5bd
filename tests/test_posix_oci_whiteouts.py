"""-o oci_whiteouts=0: names starting with `.wh.` are plain names, as on the kernel overlayfs
(the POSIX fidelity issue). By default ovlfs reads OCI whiteouts (`.wh.NAME` hides NAME,
`.wh..wh..opq` makes its directory opaque) and refuses to create such names, so extracting
an OCI layer tarball inside a mount fails; with the option the same steps on a kernel
overlayfs and on ovlfs over identical layers must give the same results and trees, also
after a fresh mount of the resulting upper layer. The default is covered by
tests/test_layer_formats.py."""
import errno
import os
import subprocess

import pytest

import helpers
import write_helpers as wh

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

OPTS = ("oci_whiteouts=0",)
TOP = {
    ".wh.gone": "",                             # under OCI: hides base's gone
    "keep": "top", ".wh.keep": "",
    "opq": {".wh..wh..opq": "", "new": "n"},    # under OCI: base's opq/* hidden
    "merged": {".wh.m1": "", "m3": "3"},
    ".wh..wh.plnk": {},
}
BASE = {
    "gone": "base", "keep": "base", "opq": {"old": "o", "sub": {"deep": "d"}},
    "merged": {"m1": "1", "m2": "2"}, "plain": "p",
}


def _steps(m):
    """Creates, renames and removes `.wh.` names; returns what each step gave."""
    def new_file(p, data="x"):
        with open(p, "x") as f:
            f.write(data)

    steps = [
        ("create .wh.new", lambda: new_file(m / ".wh.new")),
        ("mkdir .wh.dir", lambda: os.mkdir(m / ".wh.dir")),
        ("create .wh.dir/.wh..wh..opq", lambda: new_file(m / ".wh.dir" / ".wh..wh..opq")),
        ("symlink .wh.sym", lambda: os.symlink("plain", m / ".wh.sym")),
        ("mknod .wh.fifo", lambda: os.mkfifo(m / ".wh.fifo")),
        ("link plain .wh.plainlink", lambda: os.link(m / "plain", m / ".wh.plainlink")),
        ("rename .wh.new .wh.renamed", lambda: os.rename(m / ".wh.new", m / ".wh.renamed")),
        ("rename merged/m2 merged/.wh.m2",
         lambda: os.rename(m / "merged" / "m2", m / "merged" / ".wh.m2")),
        ("rename .wh.dir .wh.dir2", lambda: os.rename(m / ".wh.dir", m / ".wh.dir2")),
        ("unlink lower .wh.gone", lambda: os.unlink(m / ".wh.gone")),
        ("unlink lower opq/.wh..wh..opq", lambda: os.unlink(m / "opq" / ".wh..wh..opq")),
        ("create merged/.wh..wh..opq", lambda: new_file(m / "merged" / ".wh..wh..opq")),
        ("write lower .wh.keep", lambda: (m / ".wh.keep").write_text("written")),
        ("rmdir lower .wh..wh.plnk", lambda: os.rmdir(m / ".wh..wh.plnk")),
        ("stat .wh.gone after unlink", lambda: os.lstat(m / ".wh.gone")),
    ]
    out = {}
    for name, fn in steps:
        try:
            fn()
            out[name] = "ok"
        except OSError as e:
            out[name] = errno.errorcode.get(e.errno, str(e.errno))
    return out


def _run(ls, mount):
    with mount(ls) as m:
        before = helpers.snapshot(m, overlay_xattrs=True)
        results = _steps(m)
        after = helpers.snapshot(m, overlay_xattrs=True, mtime=False)
    with mount(ls) as m:
        again = helpers.snapshot(m, overlay_xattrs=True, mtime=False)
    return before, results, after, again


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    base = tmp_path_factory.mktemp("oci-off")
    k = helpers.build_layers(base / "k", [TOP, BASE])
    o = helpers.build_layers(base / "o", [TOP, BASE])
    kernel = _run(k, lambda ls: ls.kernel(extra_opts=wh.KERNEL_OPTS))
    ovlfs = _run(o, lambda ls: ls.ovlfs(extra_opts=OPTS))
    return kernel, ovlfs


def test_lower_wh_names_as_kernel(results):
    (kbefore, *_), (obefore, *_) = results
    assert ".wh.gone" in kbefore and "opq/old" in kbefore, "reference"
    helpers.assert_same_tree(kbefore, obefore)


def test_steps_as_kernel(results):
    (_, kres, _, _), (_, ores, _, _) = results
    assert all(v == "ok" for k, v in kres.items() if not k.startswith("stat")), kres
    assert ores == kres


def test_tree_after_steps_as_kernel(results):
    (_, _, kafter, _), (_, _, oafter, _) = results
    helpers.assert_same_tree(kafter, oafter)


def test_tree_after_remount_as_kernel(results):
    (_, _, _, kagain), (_, _, _, oagain) = results
    assert "merged/m1" in kagain, "reference: .wh..wh..opq made nothing opaque"
    helpers.assert_same_tree(kagain, oagain)


def test_whiteout_file_refused(tmp_path):
    ls = helpers.build_layers(tmp_path, [{"a": "1"}])
    cmd = helpers.ovlfs_command(ls.lowers, ls.upper, ls.work,
                                ("oci_whiteouts=0", "whiteout=file"), tmp_path / "mnt")
    (tmp_path / "mnt").mkdir()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert "whiteout=file" in r.stderr and "oci_whiteouts=0" in r.stderr, r.stderr
    assert not helpers.is_fuse_mount(tmp_path / "mnt")
