"""`ovlfs export` and `ovlfs diff` of upper layers the kernel overlayfs wrote with
redirect_dir=on (a renamed directory holds only what changed and names its lower directory
in overlay.redirect) and metacopy=on (a chmod copies up only the metadata; the data stays
below). The exported layer must hold the full data at the real paths: applied the OCI way
over the lower layers' merged tree it must give what the kernel mount showed. Without the
lower layers export refuses such an upper with one line. diff reports them as README's
"Image layers" section says."""
import errno
import os
import pathlib
import subprocess
import tarfile

import pytest

import helpers
from test_export import OPQ, diff, oci_apply, one_error_line, run, view

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

REDIRECT = ("index=off", "redirect_dir=on", "metacopy=off")
METACOPY = ("index=off", "redirect_dir=on", "metacopy=on")
LOWER0 = {
    "a": {"f": "in a\n", "sub": {"g": "deep\n"}, "gone": "x"},
    "b": {"x": "in b\n"},
    "c": {"y": "in c\n", "d": {"z": "in c/d\n"}},
    "keep": "kept\n",
    "big": helpers.File("0123456789" * 5000, mode=0o644),
    "mv": helpers.File("moved data\n", mode=0o644),
    "dd": {"inner": helpers.File("inner data\n", mode=0o644)},
}
LOWER1 = {"b": {"w": "in b, second layer\n"}, "m": {"n": "in m\n", "o": {"p": "p"}},
          "a": {"low1": "from lower1\n"}, "newdir": {"old": "old in newdir\n"}}


def _renames(m):
    os.rename(m / "a", m / "a2")  # relative redirect "a"
    os.rename(m / "b", m / "newdir" / "b2")  # absolute "/b", into a lower dir
    os.rename(m / "c", m / "c2")
    os.mkdir(m / "fresh")
    os.rename(m / "c2", m / "fresh" / "c3")  # renamed twice: still "/c"
    os.rename(m / "m", m / "m2")  # only in the second lower layer
    os.rename(m / "fresh" / "c3" / "d", m / "d_out")  # below a redirected dir: "/c/d"
    (m / "a2" / "new").write_text("new in a2\n")
    os.unlink(m / "a2" / "gone")
    (m / "a2" / "sub" / "g").write_text("changed\n")
    os.chmod(m / "m2" / "n", 0o600)


def _metacopies(m):
    os.chmod(m / "big", 0o600)  # metacopy in place
    os.chown(m / "dd" / "inner", 7, 8)
    os.chmod(m / "mv", 0o640)
    os.rename(m / "mv", m / "mv2")  # a metacopy with an absolute redirect "/mv"


def _lower_tree(ls, dst):
    """The lower layers' merged tree as a plain directory, the image before this layer."""
    with helpers.mount_kernel(ls.lowers, mnt=ls.base / "mnt-lowers") as m:
        helpers.clone_tree(m, dst)
    return dst


def _make(tmp_path, change, opts):
    ls = helpers.build_layers(tmp_path / "l", [LOWER0, LOWER1])
    with ls.kernel(extra_opts=opts) as m:
        change(m)
    with ls.kernel(mnt=tmp_path / "mk2", extra_opts=opts) as m:
        shown = view(m)
        data = {p: (m / p).read_bytes() for p in shown if (m / p).is_file()}
    return ls, shown, data


def _export_applies(ls, shown, tmp_path):
    out = tmp_path / "layer.tar"
    r = run("export", ls.upper, *ls.lowers, "-o", out)
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    applied = _lower_tree(ls, tmp_path / "applied")
    oci_apply(out, applied)
    got = view(applied)
    diffs = [f"{p}: kernel={shown.get(p)} applied={got.get(p)}"
             for p in sorted(set(shown) | set(got)) if shown.get(p) != got.get(p)]
    assert not diffs, "applied layer differs from the kernel's view:\n" + "\n".join(diffs)
    return out


def test_export_redirected_dirs(tmp_path):
    ls, shown, _ = _make(tmp_path, _renames, REDIRECT)
    assert os.getxattr(ls.upper / "newdir" / "b2", "trusted.overlay.redirect") == b"/b"
    assert sorted(os.listdir(ls.upper / "newdir" / "b2")) == []
    out = _export_applies(ls, shown, tmp_path)
    with tarfile.open(out) as t:
        names = t.getnames()
    for d in ("a2", "newdir/b2", "fresh/c3", "m2", "d_out"):
        assert f"{d}/{OPQ}" in names, d
    assert "a2/low1" in names and "m2/o/p" in names and "a2/gone" not in names
    assert ".wh.a" in names and ".wh.b" in names and "newdir/.wh.old" not in names


def test_export_metacopy(tmp_path):
    ls, shown, data = _make(tmp_path, _metacopies, METACOPY)
    assert os.path.getsize(ls.upper / "big") == 50000
    assert "trusted.overlay.metacopy" in os.listxattr(ls.upper / "big")
    out = _export_applies(ls, shown, tmp_path)
    with tarfile.open(out) as t:
        assert t.extractfile("big").read() == data["big"]
        assert t.extractfile("mv2").read() == b"moved data\n"
        assert t.getmember("big").mode == 0o600
        assert (t.getmember("dd/inner").uid, t.getmember("dd/inner").gid) == (7, 8)


@pytest.mark.parametrize("change,opts,what,path", [
    (_renames, REDIRECT, "redirected directories", "/a2"),
    (_metacopies, METACOPY, "metacopy files", "/big"),
])
def test_export_without_lowers_refuses(tmp_path, change, opts, what, path):
    ls, _, _ = _make(tmp_path, change, opts)
    out = tmp_path / "layer.tar"
    line = one_error_line(run("export", ls.upper, "-o", out))
    assert line == f"ovlfs: {ls.upper} holds {what} ({path}): give the lower layers", line
    assert not out.exists() and os.listdir(tmp_path).count("layer.tar") == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".layer.tar")]


def test_export_bad_redirects(tmp_path):
    ls = helpers.build_layers(tmp_path / "l", [LOWER0, LOWER1],
                              {"x": {"u": "u"}})
    too_long = b"/" + b"/".join([b"n" * 200] * 21)  # components fine, over PATH_MAX
    for bad in (b"../..", b"/a/../b", b"a/b", b"//a", b"/" + b"n" * 300, b"", too_long):
        try:
            os.setxattr(ls.upper / "x", "trusted.overlay.redirect", bad)
        except OSError as e:  # a value the filesystem cannot hold is not a test
            assert e.errno in (errno.E2BIG, errno.ENOSPC, errno.ERANGE), e
            continue
        line = one_error_line(run("export", ls.upper, *ls.lowers, "-o", tmp_path / "o.tar"))
        assert "invalid redirect" in line and "/x" in line, line
        assert not (tmp_path / "o.tar").exists()
    # a symlink on the way is not followed: the redirect finds nothing there
    os.symlink("/etc", ls.lowers[0] / "esc")
    os.setxattr(ls.upper / "x", "trusted.overlay.redirect", b"/esc/ssl")
    r = run("export", ls.upper, *ls.lowers, "-o", tmp_path / "o.tar")
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "o.tar") as t:
        assert sorted(t.getnames()) == ["x", f"x/{OPQ}", "x/u"]



def test_diff_redirected_dirs(tmp_path):
    """A renamed directory is reported as export writes it: whole at its new path, each entry
    A (C where the new path shows something below), what the lower layers hold at the new
    path and the merged contents do not is D; the old path is one D. The view the kernel
    showed holds exactly the A and C paths below each renamed directory."""
    ls, shown, _ = _make(tmp_path, _renames, REDIRECT)
    got = diff(ls.upper, *ls.lowers)
    assert got == [
        "D /a", "A /a2", "A /a2/f", "A /a2/low1", "A /a2/new", "A /a2/sub", "A /a2/sub/g",
        "D /b", "D /c", "A /d_out", "A /d_out/z", "A /fresh", "A /fresh/c3", "A /fresh/c3/y",
        "D /m", "A /m2", "A /m2/n", "A /m2/o", "A /m2/o/p", "C /newdir", "A /newdir/b2",
        "A /newdir/b2/w", "A /newdir/b2/x"], got
    for d in ("a2", "newdir/b2", "fresh/c3", "m2", "d_out"):
        inside = sorted(p for p in shown if p.startswith(d + "/"))
        listed = sorted(ln[3:] for ln in got if ln[3:].startswith(d + "/"))
        assert inside == listed, (d, inside, listed)


def test_diff_redirect_over_a_lower_dir(tmp_path):
    """A directory renamed over a path the lower layers hold: C, and the lower entries there
    that the moved contents do not hold are D (the layer is opaque there)."""
    ls = helpers.build_layers(tmp_path / "l", [{"src": {"s": "s", "both": "1"},
                                                "dst": {"t": "t", "both": "2"}}, {}])
    with ls.kernel(extra_opts=REDIRECT) as m:
        os.rename(m / "dst", m / "tmp")  # the kernel refuses a rename over a non-empty dir
        os.rename(m / "src", m / "dst")
        os.rename(m / "tmp", m / "dst" / "old")
    got = diff(ls.upper, *ls.lowers)
    assert got == ["C /dst", "C /dst/both", "A /dst/old", "A /dst/old/both", "A /dst/old/t",
                   "A /dst/s", "D /dst/t", "D /src"], got


def test_diff_metacopy(tmp_path):
    """A metacopy file is C at its path; renamed, its new path is A and the old one D."""
    ls, _, _ = _make(tmp_path, _metacopies, METACOPY)
    assert diff(ls.upper, *ls.lowers) == ["C /big", "C /dd", "C /dd/inner", "D /mv", "A /mv2"]
    # the upper alone: the kernel marked every copy-up with overlay.origin
    assert diff(ls.upper) == ["C /big", "C /dd", "C /dd/inner", "D /mv", "C /mv2"]
    # and without that mark a metacopy file is still a change: its data is below
    os.removexattr(ls.upper / "big", "trusted.overlay.origin")
    assert "C /big" in diff(ls.upper)


def test_diff_bad_redirect(tmp_path):
    ls = helpers.build_layers(tmp_path / "l", [LOWER0, LOWER1], {"x": {"u": "u"}})
    os.setxattr(ls.upper / "x", "trusted.overlay.redirect", b"/a/../..")
    line = one_error_line(run("diff", ls.upper, *ls.lowers))
    assert "invalid redirect" in line and "/x" in line, line


def test_export_with_lowers_of_a_plain_upper_is_unchanged(tmp_path):
    """Lower layers change nothing for an upper without redirects or metacopy files."""
    ls = helpers.build_layers(tmp_path / "l", [LOWER0, LOWER1])
    with ls.kernel(extra_opts=REDIRECT) as m:
        (m / "a" / "f").write_text("changed\n")
        os.unlink(m / "b" / "x")
        os.mkdir(m / "n")
        (m / "n" / "f").write_text("n\n")
    r1 = run("export", ls.upper, "-o", tmp_path / "1.tar")
    r2 = run("export", ls.upper, *ls.lowers, "-o", tmp_path / "2.tar")
    assert r1.returncode == r2.returncode == 0, (r1.stderr, r2.stderr)
    assert (tmp_path / "1.tar").read_bytes() == (tmp_path / "2.tar").read_bytes()
