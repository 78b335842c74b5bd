"""`ovlfs export` and `ovlfs diff` of upper layers mounted with the inode index (ovlfs's
default; the kernel's index=on). A lower file with several names, changed through one, is
copied to <workdir>/index and only the name changed is linked into the upper layer: the
other names still lie below, yet show the change. The upper layer alone is then not the
whole diff, so the tools read the work directory (-w) and write those names too, as one
hard-link group; without -w they refuse such an upper with one line."""
import os

import pytest

import helpers
from test_export import (assert_applied_is_merged, diff, export, oci_apply, one_error_line,
                         run, view)

pytestmark = [helpers.needs_fuse]

LOWER = {
    "a": {"x": "group one\n"},
    "b": {"y": helpers.Hardlink("a/x")},
    "c": {"d": {"z": helpers.Hardlink("a/x")}, "plain": "plain\n"},
    "g1": "group two\n",
    "deep": {"er": {"g2": helpers.Hardlink("g1")}},
    "r": {"h1": "group three\n", "other": "in r\n"},
    "h2": helpers.Hardlink("r/h1"),
    "solo": "alone\n",
    "pair1": "untouched pair\n",
    "pair2": helpers.Hardlink("pair1"),
}


def _changes(m):
    with open(m / "a" / "x", "a") as f:  # group one: changed through one name
        f.write("changed\n")
    with open(m / "g1", "a") as f:  # group two: changed, then that name removed
        f.write("changed too\n")
    os.unlink(m / "g1")
    os.chmod(m / "h2", 0o600)  # group three: metadata through h2, then r renamed
    os.rename(m / "r", m / "r2")
    with open(m / "solo", "a") as f:
        f.write("more\n")


@pytest.mark.parametrize("backend", [
    "ovlfs", pytest.param("kernel", marks=helpers.needs_kernel_overlay)])
def test_export_writes_every_name_of_a_changed_group(layers, tmp_path, backend):
    ls = layers([LOWER])
    opts = ("index=on", "redirect_dir=on", "metacopy=off")
    with (ls.ovlfs(extra_opts=opts) if backend == "ovlfs" else ls.kernel(extra_opts=opts)) as m:
        _changes(m)
        merged = view(m)
        ids = {p: os.stat(m / p).st_ino for p in ("a/x", "b/y", "c/d/z", "r2/h1", "h2")}
    assert ids["a/x"] == ids["b/y"] == ids["c/d/z"] and ids["r2/h1"] == ids["h2"]
    assert not (ls.upper / "b").exists() and not (ls.upper / "deep").exists(), \
        "the group's other names are in the index, not in the upper layer"

    tar = export(ls.upper, tmp_path / "l.tar", ls.lowers)
    assert export(ls.upper, tmp_path / "again.tar", ls.lowers).read_bytes() == tar.read_bytes()
    applied = helpers.clone_tree(ls.lowers[0], tmp_path / "applied")
    oci_apply(tar, applied)
    assert_applied_is_merged(applied, merged)
    st = {p: os.stat(applied / p) for p in ("a/x", "b/y", "c/d/z", "r2/h1", "h2")}
    assert st["a/x"].st_ino == st["b/y"].st_ino == st["c/d/z"].st_ino, "one group in the layer"
    assert st["r2/h1"].st_ino == st["h2"].st_ino
    assert (applied / "deep/er/g2").read_text() == "group two\nchanged too\n"

    changes = diff(ls.upper, *ls.lowers)
    for name in ("/b/y", "/c/d/z", "/deep/er/g2", "/a/x", "/solo"):
        assert "C " + name in changes, (name, changes)
    assert not [c for c in changes if "pair" in c or c.endswith("/plain")], changes


def test_indexed_upper_needs_its_work_directory(layers, tmp_path):
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=("index=on",)) as m:
        _changes(m)
    out = tmp_path / "l.tar"
    for tool in (("export", ls.upper, *ls.lowers, "-o", out), ("diff", ls.upper, *ls.lowers)):
        line = one_error_line(run(*tool))
        assert "mounted with the index" in line and "-w WORKDIR" in line, line
    assert not out.exists()
    # the index holds groups: their lower names need the lower layers
    line = one_error_line(run("export", ls.upper, "-w", ls.work, "-o", out))
    assert "give the lower layers" in line, line
    assert not out.exists()
    line = one_error_line(run("diff", ls.upper, "-w", tmp_path / "missing"))
    assert "cannot open the work directory" in line, line


def test_index_off_upper_needs_no_work_directory(layers, tmp_path):
    """index=off leaves no mark: the upper layer is the whole diff, as before."""
    ls = layers([LOWER])
    with ls.ovlfs(extra_opts=("index=off",)) as m:
        _changes(m)
    r = run("export", ls.upper, *ls.lowers, "-o", tmp_path / "l.tar")
    assert r.returncode == 0, r.stderr.decode()
    assert "C /b/y" not in diff(ls.upper, *ls.lowers)
