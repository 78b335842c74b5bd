"""The kernel's inode index (index=on, issue #15): the names of a lower hard-link group stay
one file across copy-up, now and after a remount, on ovlfs as on the kernel overlayfs, and
each reads the other's layers (<workdir>/index/<hex of the origin>, overlay.nlink, the upper
root's origin and the index directory's upper record).

The same steps run on the kernel and on ovlfs, each on its own copy of the layers; what is
compared does not depend on the layers' inode numbers: whether every name shows the lower
file's number, link counts, data, modes, and the index entries' records.
"""
import fcntl
import os

import pytest

import helpers

pytestmark = [helpers.needs_fuse, helpers.needs_kernel_overlay]

LOWER = {
    "a": "data\n",
    "d": {"b": helpers.Hardlink("a")},
    "c": helpers.Hardlink("a"),
    "solo": "one name\n",
    "e": {"f": "f1\n", "g": helpers.Hardlink("e/f")},
}
NAMES = ["a", "d/b", "c", "c2", "new", "e/f", "e/g", "solo"]


def _view(m, lower):
    out = {}
    for n in NAMES:
        p = m / n
        if not os.path.lexists(p):
            out[n] = None
            continue
        st = os.lstat(p)
        src = {"a": "a", "d/b": "a", "c": "a", "c2": "a", "new": "a", "e/f": "e/f",
               "e/g": "e/f", "solo": "solo"}[n]
        out[n] = (st.st_ino == os.lstat(lower / src).st_ino, st.st_nlink, st.st_mode,
                  p.read_bytes())
    return out


def _flock_excludes(p1, p2):
    f1, f2 = os.open(p1, os.O_RDONLY), os.open(p2, os.O_RDONLY)
    try:
        fcntl.flock(f1, fcntl.LOCK_EX)
        try:
            fcntl.flock(f2, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
    finally:
        os.close(f2)
        os.close(f1)


def _steps(m, lower):
    seen = [_view(m, lower)]
    with open(m / "a", "ab") as f:  # a copy-up of one name: into the index
        f.write(b"more\n")
    seen.append(_view(m, lower))
    os.chmod(m / "c", 0o600)  # a lower name of the group, linked up
    seen.append(_view(m, lower))
    os.unlink(m / "d" / "b")
    seen.append(_view(m, lower))
    os.rename(m / "c", m / "c2")
    os.link(m / "a", m / "new")
    seen.append(_view(m, lower))
    seen.append(_flock_excludes(m / "a", m / "c2"))
    os.unlink(m / "e" / "g")  # a group never copied up: the count still follows
    seen.append(_view(m, lower))
    return seen


def _index_records(ls):
    """Per index entry: its link count and overlay.nlink; the upper root's records."""
    idx = ls.work / "index"
    entries = sorted(
        (os.lstat(idx / n).st_nlink, os.getxattr(idx / n, "trusted.overlay.nlink"))
        for n in os.listdir(idx) if not n.startswith("#"))
    has_origin = [bool(os.getxattr(idx / n, "trusted.overlay.origin"))
                  for n in os.listdir(idx) if not n.startswith("#")]
    return entries, has_origin, len(os.getxattr(ls.upper, "trusted.overlay.origin")) > 0, \
        len(os.getxattr(idx, "trusted.overlay.upper")) > 0


def _run(tmp_path, first, second):
    ls = helpers.build_layers(tmp_path / first, [LOWER])
    lower = ls.lowers[0]
    with getattr(ls, first)(extra_opts=("index=on",)) as m:
        seen = _steps(m, lower)
    with getattr(ls, first)(extra_opts=("index=on",)) as m:
        seen.append(_view(m, lower))  # after a remount
    with getattr(ls, second)(extra_opts=("index=on",)) as m:
        seen.append(_view(m, lower))  # read by the other
        with open(m / "c2", "ab") as f:
            f.write(b"other\n")
        os.unlink(m / "new")
    with getattr(ls, first)(extra_opts=("index=on",)) as m:
        seen.append(_view(m, lower))  # and back
    return seen, _index_records(ls)


@pytest.mark.parametrize("first,second", [("kernel", "ovlfs"), ("ovlfs", "kernel")])
def test_index_keeps_hard_links_as_kernel(tmp_path, first, second):
    got = {who: _run(tmp_path / who, who, other)
           for who, other in ((first, second), (second, first))}
    assert got["ovlfs"][0] == got["kernel"][0]
    assert got["ovlfs"][1] == got["kernel"][1]
    seen = got["kernel"][0]
    # The kernel's view, spelled out: one file for every name of the group.
    assert seen[1]["c"] == seen[1]["a"] and seen[1]["a"][0] and seen[1]["a"][1] == 3
    assert seen[5] is True


def test_index_off_splits_and_index_on_needs_handles(tmp_path):
    ls = helpers.build_layers(tmp_path, [LOWER])
    with ls.ovlfs(extra_opts=("index=off",)) as m:
        with open(m / "a", "ab") as f:
            f.write(b"more\n")
        assert (m / "c").read_bytes() == b"data\n"
        assert os.stat(m / "a").st_nlink == 1
    assert not (ls.work / "index").exists()


def test_index_mismatch_refused_when_asked(tmp_path):
    """Layers that do not match the index: refused with index=on, as the kernel does."""
    ls = helpers.build_layers(tmp_path, [LOWER])
    with ls.ovlfs(extra_opts=("index=on",)) as m:
        os.chmod(m / "a", 0o600)
    other = helpers.build_layers(tmp_path / "other", [{"x": "y"}])
    with pytest.raises(helpers.MountError, match="index"):
        with helpers.mount_ovlfs(other.lowers, ls.upper, ls.work, ("index=on",),
                                 tmp_path / "m2"):
            pass
    with pytest.raises(helpers.MountError):
        with helpers.mount_kernel(other.lowers, ls.upper, ls.work, ("index=on",),
                                  tmp_path / "m3"):
            pass


def test_index_removing_the_name_first_looked_up(tmp_path):
    """The group's node keeps the name first looked up; when that name goes, the node takes
    another, which may still be a lower name (it failed with ENOENT)."""
    got = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [{"x": "data\n", "y": helpers.Hardlink("x"),
                                                     "z": helpers.Hardlink("x")}])
        with getattr(ls, who)(extra_opts=("index=on",)) as m:
            for n in ("y", "x", "z"):
                os.stat(m / n)
            os.unlink(m / "y")
            os.unlink(m / "z")
            got[who] = [(m / "x").read_bytes(), os.stat(m / "x").st_nlink,
                        os.stat(m / "x").st_ino == os.stat(ls.lowers[0] / "x").st_ino]
    assert got["ovlfs"] == got["kernel"] == [b"data\n", 1, True]


def _copied_up_group(tmp_path):
    """Layers where a lower group x, y was copied up through x with index=on."""
    ls = helpers.build_layers(tmp_path, [{"x": "data\n", "y": helpers.Hardlink("x")}])
    with ls.ovlfs(extra_opts=("index=on",)) as m:
        with open(m / "x", "ab") as f:
            f.write(b"more\n")
    (entry,) = [n for n in os.listdir(ls.work / "index") if not n.startswith("#")]
    return ls, ls.work / "index" / entry


@pytest.mark.parametrize("damage", ["nlink-garbage", "entry-gone", "entry-other-type",
                                    "entry-stray"])
def test_index_damaged_entries_are_ignored_safely(tmp_path, damage):
    """A damaged index gives a correct view of what is there, never a crash or an object
    from elsewhere: a garbled overlay.nlink leaves the upper count, a missing entry leaves
    the lower names as they are below, an entry of another type is ignored with a log line,
    and a stray entry naming nothing is left alone."""
    ls, entry = _copied_up_group(tmp_path)
    if damage == "nlink-garbage":
        os.setxattr(entry, "trusted.overlay.nlink", b"Zzz")
    elif damage == "entry-gone":
        os.unlink(entry)
    elif damage == "entry-other-type":
        os.unlink(entry)
        os.mkdir(entry)
    else:
        (ls.work / "index" / ("00fb1d" + "0" * 50)).write_bytes(b"stray")
    with ls.ovlfs(extra_opts=("index=on",)) as m:
        assert (m / "x").read_bytes() == b"data\nmore\n"
        y = (m / "y").read_bytes()
        assert y == (b"data\n" if damage in ("entry-gone", "entry-other-type")
                     else b"data\nmore\n")
        assert os.stat(m / "y").st_nlink >= 1
        log = m.log()
    if damage == "entry-other-type":
        assert "not of its origin's type" in log


def test_index_dir_renames_keep_links(tmp_path):
    """A directory renamed, by redirect or by copying (ovlfs's redirect_dir=off; the kernel
    answers EXDEV there, so it renames with a redirect), with names of a group inside it and
    outside: the group stays one file, as on the kernel."""
    lower = {"d": {"in1": "v\n", "in2": helpers.Hardlink("d/in1"), "sub": {"in3": "w\n"}},
             "out": helpers.Hardlink("d/in1"), "out3": helpers.Hardlink("d/sub/in3")}
    for redirect in ("on", "off"):
        got = {}
        for who in ("kernel", "ovlfs"):
            ls = helpers.build_layers(tmp_path / redirect / who, [lower])
            opts = ("index=on", f"redirect_dir={redirect if who == 'ovlfs' else 'on'}")
            with getattr(ls, who)(extra_opts=opts) as m:
                os.stat(m / "out")
                os.rename(m / "d", m / "e")
                with open(m / "e" / "in2", "ab") as f:
                    f.write(b"x")
                os.chmod(m / "out3", 0o600)
                seen = [((m / n).read_bytes(), os.stat(m / n).st_nlink,
                         oct(os.stat(m / n).st_mode))
                        for n in ("e/in1", "e/in2", "out", "e/sub/in3", "out3")]
            with getattr(ls, who)(extra_opts=opts) as m:
                seen.append([os.stat(m / n).st_ino for n in ("e/in1", "e/in2", "out")])
            got[who] = seen
        ino = got["ovlfs"].pop()
        got["kernel"].pop()
        assert ino[0] == ino[1] == ino[2]
        assert got["ovlfs"] == got["kernel"], redirect


@pytest.mark.parametrize("opts", [("index=on",), ("index=on", "ro")], ids=["no-upper", "ro"])
def test_index_without_a_writable_upper_is_ignored_with_a_line(tmp_path, opts):
    """Bad input: index=on where nothing can be copied up (no upper layer, or a read-only
    mount). As the kernel ("useless in a non-upper mount, ignore"): one line, and the
    mount serves the layers (it failed with 'Invalid argument')."""
    ls = helpers.build_layers(tmp_path, [{"x": "data\n"}, {"y": "below\n"}],
                              rw="ro" in opts)
    with ls.ovlfs(extra_opts=opts) as m:
        assert (m / "x").read_bytes() == b"data\n"
        log = m.log()
    assert "index=on has no use without a writable upper layer: ignored" in log
    assert not (tmp_path / "work" / "index").exists()


def test_index_mkdir_in_merged_dir_is_opaque_as_kernel(tmp_path):
    """With index=on the kernel marks a directory made in a merged one opaque (the layers
    allow no offline change), as with redirect_dir=on; so does ovlfs."""
    got = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [{"d": {"f": "x"}}], {"d": {}})
        with getattr(ls, who)(extra_opts=("index=on", "redirect_dir=off")) as m:
            os.mkdir(m / "d" / "new")
        try:
            got[who] = os.getxattr(ls.upper / "d" / "new", "trusted.overlay.opaque")
        except OSError:
            got[who] = None
    assert got["ovlfs"] == got["kernel"] == b"y"


def test_index_is_the_default_and_steps_aside_for_other_layers(tmp_path):
    """Without index=, ovlfs keeps lower hard links one file through the index; layers
    that no longer match it (the lower replaced) still mount, without the index, with one
    line naming the cause (index=on keeps the kernel's refusal: the test above)."""
    ls = helpers.build_layers(tmp_path, [LOWER])
    with ls.ovlfs() as m:
        with open(m / "a", "ab") as f:
            f.write(b"more\n")
        assert (m / "c").read_bytes() == b"data\nmore\n"
        assert os.stat(m / "a").st_ino == os.stat(m / "c").st_ino
    assert os.listdir(ls.work / "index")
    other = helpers.build_layers(tmp_path / "other", [{"x": "y", "p": "q",
                                                      "r": helpers.Hardlink("p")}])
    with helpers.mount_ovlfs(other.lowers, ls.upper, ls.work, (), tmp_path / "m2") as m:
        assert (m / "x").read_bytes() == b"y"
        with open(m / "p", "ab") as f:  # no index: the names split, as index=off
            f.write(b"!")
        assert (m / "r").read_bytes() == b"q"
        log = m.log()
    lines = [ln for ln in log.splitlines() if "index" in ln]
    assert len(lines) == 1 and "turned off for this mount" in lines[0] and \
        "names another lower root" in lines[0], log


def test_index_default_is_silent_without_an_upper(tmp_path):
    ls = helpers.build_layers(tmp_path, [{"x": "data\n"}], rw=False)
    with ls.ovlfs() as m:
        assert (m / "x").read_bytes() == b"data\n"
        log = m.log()
    assert "index" not in log, log


def _meta_group(m):
    os.chmod(m / "a", 0o600)  # metadata only: a stub, unless the group must stay one
    seen = [(os.stat(m / n).st_mode & 0o777, os.stat(m / n).st_nlink) for n in ("a", "c")]
    same = os.stat(m / "a").st_ino == os.stat(m / "c").st_ino
    with open(m / "c", "ab") as f:
        f.write(b"through c\n")
    return seen, same, (m / "a").read_bytes()


def test_index_with_metacopy_keeps_groups_as_kernel(tmp_path):
    """metacopy=on with the index: a chmod of one name of a lower hard link changes every
    name, as on the kernel (it split the group: the stub was not indexed)."""
    opts = ("index=on", "metacopy=on", "redirect_dir=on")
    got = {}
    for who in ("kernel", "ovlfs"):
        ls = helpers.build_layers(tmp_path / who, [LOWER])
        with getattr(ls, who)(extra_opts=opts) as m:
            got[who] = _meta_group(m)
    assert got["ovlfs"] == got["kernel"]
    assert got["kernel"][0][1][0] == 0o600 and got["kernel"][1]
