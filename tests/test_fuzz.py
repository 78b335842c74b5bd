"""Differential fuzzing against the kernel overlayfs (tests/difffuzz/, see its docstring), the
CI part: a fixed set of seeds (layers and steps generated from each seed, every step's result
compared, the trees every CHECK_EVERY steps, the upper layers and work dir at the end), the
minimal reproductions of the ovlfs bugs the fuzzer found (xfail while they are open: each
reason holds the reproduction), and the modelled differences (where ovlfs differs from the
kernel on purpose, or the kernel is the odd one out: these must pass).

Longer runs: `make fuzz SECONDS=3600` (or `cd tests && python3 -m difffuzz --help`); a
divergence is printed as a shrunk `def test_...(tmp_path): replay(...)` that pastes below."""
import os

import pytest

from difffuzz import ALL_MODES, gen_layers, replay, run_generated
from difffuzz.shrink import format_repro
from difffuzz.runner import Divergence, Pair
from helpers import (FIXED_MTIME, Chr, Dir, Fifo, File, Hardlink, Opaque, Symlink,  # noqa: F401
                     Whiteout, XWhiteout, needs_fuse, needs_kernel_overlay)  # (all: for pasting)

pytestmark = [needs_fuse, needs_kernel_overlay]
T = FIXED_MTIME
RO, WO, RW = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
XCHG, NOREPLACE = 2, 1

SEEDS = range(1, 17)
# The seeds cycle through the option modes (difffuzz.MODES: off, redirect, metacopy, index),
# so the run covers each for the time one took before.
SEED_MODES = ALL_MODES
OPS_PER_SEED = 250
CHECK_EVERY = 25

# --------------------------------------------------------------------------- known ovlfs bugs
# id -> (what is wrong, lowers, upper, steps[, ovlfs -o options]). Each is a minimal
# reproduction found by the fuzzer and shrunk (KNOWN_SEED_FAILURES: seeds they also stop).
KNOWN_BUGS = {
    "B1-unlinked-open-file": (
        "an fd whose name was unlinked acts on a detached node: fstat shows the attributes "
        "frozen at unlink time, reads stop at the frozen size, truncates/writes through the fd "
        "are not seen by fstat; fchmod/fsetxattr on it fail with ENOENT (kernel: the open "
        "file stays live)",
        [{}], {"a": "hello"},
        [("fopen", "f", "a", RW), ("unlink", "a"), ("fwrite", "f", b"0123456789", 0),
         ("fread", "f", 100, 0), ("ftruncate", "f", 0), ("fstat", "f")]),
    "B1b-unlinked-link-keeps-stale-mode": (
        "fd opened on one name of a hard-linked file, that name unlinked, chmod through the "
        "other name: fstat on the fd still shows the old mode",
        [{}], {"a": "hello", "b": Hardlink("a")},
        [("fopen", "f", "a", RW), ("unlink", "a"), ("chmod", "b", 0o600), ("fstat", "f")]),
    "B2-ro-fd-before-copy-up-after-link-unlink": (
        "an O_RDONLY fd opened before copy-up; the file is copied up by link(), the old name "
        "unlinked, the file written through the new name: the fd still reads the lower data "
        "(kernel >= 4.19: it reads the copy-up)",
        [{"c": "lowerdata"}], {},
        [("fopen", "f", "c", RO), ("link", "c", "a"), ("unlink", "c"),
         ("write", "a", b"NEWDATA--more", 0), ("fread", "f", 100, 0)]),
    "B4-hard-link-stale-page-cache": (
        "two names of one file: read through one name, write through the other, chmod (or "
        "utimensat) through the first: reading the first name returns the old data (its page "
        "cache is not invalidated: the names are distinct FUSE inodes)",
        [{}], {"c": "x" * 100},
        [("link", "c", "b"), ("read", "b"), ("write", "c", b"m", 2), ("chmod", "b", 0o600),
         ("read", "b")]),
    "B5-rename-between-hard-links": (
        "renameat2(RENAME_EXCHANGE) (or rename) between two names of one file: ovlfs answers 0 "
        "and does nothing (POSIX) but gives the names distinct node ids, so the kernel's FUSE "
        "dcache swaps them: afterwards unlink of one name makes the other ENOENT (or nlink 0)",
        [{}], {"a": "A", "n": Hardlink("a")},
        [("rename", "n", "a", XCHG), ("unlink", "a"), ("read", "n")]),
    "B7b-no-xattr-cache-survives-link": (
        "getxattr on a file with one name (ENODATA, remembered: it has no xattrs), link() a "
        "second name, setxattr through it: getxattr through the first name still says ENODATA "
        "(b0488a6 only skips files that already have several names)",
        [{}], {"a": "x"},
        [("getx", "a", "user.z"), ("link", "a", "b"), ("setx", "b", "user.z", b"z"),
         ("getx", "a", "user.z")]),
    "B8-unlinked-link-name-stale-attrs": (
        "hard links are distinct FUSE inodes: a name is unlinked while an fd on it stays open, "
        "the remaining name (now nlink 1: its attributes are cached) does not see the size of "
        "a write through the fd",
        [{}], {"a": "x" * 14},
        [("link", "a", "n"), ("fopen", "f", "a", RW), ("unlink", "a"), ("stat", "n"),
         ("fwrite", "f", b"b", 5291), ("stat", "n")]),
    "B8b-unlinked-link-name-fd-stale-size": (
        "the other direction: fd on a name, link() a second name, unlink the first, read past "
        "EOF through the fd, write through the second name: fstat on the fd keeps the old size",
        [{}], {"a": "r"},
        [("fopen", "f", "a", RO), ("link", "a", "n"), ("unlink", "a"), ("fread", "f", 10, 5),
         ("write", "n", b"4", 9), ("fstat", "f")]),
    "W1-writeback-hard-link-incoherent": (
        "with -o writeback=1: data written through one name of a hard-linked file is not "
        "seen through the other name (nor on disk until written back). A limitation of the "
        "opt-in writeback cache, written down in README.md: the kernel then owns each "
        "inode's size and the names are distinct inodes, so no notification of ours can "
        "make the other name's size follow",
        [{}], {"b": File(b"z" * 8281), "c": {"a": Hardlink("b")}},
        [("truncate", "b", 0), ("write", "c/a", b"r", 1), ("pread", "b", 8402, 0)],
        ("writeback=1",)),
    "W2-writeback-close-after-unlink-eio": (
        "with -o writeback=1: close() of an O_RDONLY fd whose name (one of two hard links) was "
        "unlinked fails with EIO (kernel: 0); the step reopens the slot, closing it first",
        [{}], {"a": {"d": "data"}, "d": {"b": {"a": Hardlink("a/d")}}},
        [("fopen", "f1", "d/b/a", RO), ("unlink", "d/b/a"), ("fopen", "f1", "nothere", RO)],
        ("writeback=1",)),
}

# Bugs the fuzzer found that are fixed: their reproductions must pass.
FIXED = {
    "B3-stale-dir-attrs-after-dir-rename": (
        "after a directory is moved (copied up, made opaque), a subdirectory that was merged "
        "now lives in upper only and reports its real link count, but the kernel's FUSE "
        "attribute cache keeps nlink=1 (not invalidated by the rename); fixed by c4c8c0d",
        [{"d": {"b": {}}}], {},
        [("mkdir", "d/b/a"), ("stat", "d/b"), ("rename", "d", "c"), ("stat", "c/b")]),
    "B6-failed-rmdir-copies-up-parent": (
        "rmdir of a non-empty lower directory fails with ENOTEMPTY but has copied its parent "
        "up first: the parent becomes merged (nlink 1 instead of its real count; an extra "
        "upper directory); fixed by c4c8c0d",
        [{"b": {"a": {"x": "x"}}}], {},
        [("rmdir", "b/a"), ("stat", "b")]),
    "B7-hard-link-stale-no-xattr-cache": (
        "getxattr through one name of a hard-linked file (ENODATA: ovlfs remembers that it has "
        "no xattrs), setxattr through the other name: getxattr through the first still says "
        "ENODATA, listxattr lists the name but getxattr fails (from 8f297b7; fixed by b0488a6)",
        [{}], {"a": "x", "b": Hardlink("a")},
        [("getx", "a", "user.y"), ("setx", "b", "user.y", b"1"), ("getx", "a", "user.y")]),
    "B9-removed-open-dir-stale-size": (
        "fstat of an fd on a directory removed while open (copied up first) showed the size it "
        "had before the rmdir (4096) where the kernel shows the emptied upper directory's (0): "
        "open directories kept no object; fixed by counting them as open (long fuzz run)",
        [{"a": Dir({"d": Dir({"c": File(b"x")}, mode=0o2755)}, opaque="y")}], {},
        [("unlink", "a/d/c"), ("fopen", "f1", "a/d", 0), ("rmdir", "a/d"), ("fstat", "f1")]),
    "B10-removed-name-fd-stale-size-after-truncate-elsewhere": (
        "an fd on a hard-link name removed while open: after the name's removal its attributes "
        "were cached for an hour (one link left), so a truncate through the other name did not "
        "show in fstat of the fd (4097 against 0; long fuzz run, seed 500886304); attributes of "
        "removed names are no longer cached",
        [{}], {"a": "x" * 4097},
        [("link", "a", "b"), ("fopen", "f0", "a", RO), ("unlink", "a"), ("fstat", "f0"),
         ("open", "b", os.O_WRONLY | os.O_TRUNC), ("fstat", "f0")]),
    "B11-fsync-removed-open-dir": (
        "fsync of an fd on a directory removed while open answered ENOENT where the kernel "
        "answers 0: the directory was looked up by its name (150 s threaded fuzz run, seed "
        "80435; the build from before this session does the same)",
        [{}], {},
        [("mkdir", "n", 0o700), ("fopen", "f0", "n", 0), ("rmdir", "n"), ("fsync", "f0")]),
    "B12-truncate-through-removed-link-fd": (
        "a hard-linked file's other name first looked up after one name was removed while "
        "open (one link left) was not indexed as an alias: a truncate through the removed "
        "name's fd left its cached size stale (8197 against 0; 60 s fuzz run, seed 95156; "
        "the build from before this session does the same)",
        [{}], {"a": "x" * 8197, "d": {"b": Hardlink("a")}},
        [("fopen", "f2", "d/b", os.O_RDWR | os.O_APPEND), ("unlink", "d/b"), ("lsd", ""),
         ("ftruncate", "f2", 0)]),
    "B13-passthrough-write-after-link-and-unlink": (
        "a file open in passthrough (one link at open) got a second name, then lost the first: "
        "the new name, looked up with one link, had its attributes cached for an hour, and a "
        "write through the fd, which goes to the layer file without a request, left its size "
        "and mtime stale (10 min fuzz run, seeds 516326871 and 516328199; since passthrough "
        "came); names indexed with other names are no longer cached",
        [{"d": {}}, {"b": "x" * 4097}], {},
        [("fopen", "f1", "b", os.O_RDWR), ("link", "b", "d/e"), ("unlink", "b"), ("check",),
         ("fwrite", "f1", b"tail", 4097)]),
}


@pytest.mark.parametrize("bug", sorted(FIXED))
def test_fixed_bug(tmp_path, bug):
    _, lowers, upper, steps = FIXED[bug]
    replay(tmp_path, lowers, upper, steps, check_every=0)
    replay(tmp_path / "checked", lowers, upper, steps, check_every=1)


# seeds of SEEDS stopped by a known bug (the fuzzer stops at the first divergence)
KNOWN_SEED_FAILURES = {}  # (seeds 12, 1 and 10 pass since B1, B8b and B8 were fixed)


def _bug_reason(bug):
    what, lowers, upper, steps = KNOWN_BUGS[bug][:4]
    return (f"known ovlfs bug {bug}: {what}; reproduction: lowers={lowers!r} "
            f"upper={upper!r} steps={steps!r}")


def _xfail(bug, value=None):
    return pytest.param(bug if value is None else value, id=str(bug if value is None else value),
                        marks=pytest.mark.xfail(reason=_bug_reason(bug), strict=False))


# Fixed since they were found (still listed above with their stories): regression tests.
# B4, B8 and B8b: a change through one name of a hard-linked file drops what the kernel
# cached for the other names; W1 since all names of a file are one kernel inode
# (src/engine/alias.c). W2: setattr of an unlinked node reaches the
# object it kept (the fix of C1).
FIXED_SINCE = {"B1-unlinked-open-file", "B1b-unlinked-link-keeps-stale-mode",
               "B2-ro-fd-before-copy-up-after-link-unlink", "B5-rename-between-hard-links",
               "B7b-no-xattr-cache-survives-link", "B4-hard-link-stale-page-cache",
               "B8-unlinked-link-name-stale-attrs", "B8b-unlinked-link-name-fd-stale-size",
               "W2-writeback-close-after-unlink-eio", "W1-writeback-hard-link-incoherent"}


@pytest.mark.parametrize("bug", [b if b in FIXED_SINCE else _xfail(b)
                                 for b in sorted(KNOWN_BUGS)])
def test_known_bug(tmp_path, bug):
    _, lowers, upper, steps, *opts = KNOWN_BUGS[bug]
    # (no cross remount: it costs a mount pair per case; the seeds below run it)
    replay(tmp_path, lowers, upper, steps, check_every=0,  # as shrunk: trees at the end
           ovlfs_opts=",".join(opts[0]) if opts else "", remount=False)


# --------------------------------------------------------------------------- seeds

def _seed_params():
    for seed in SEEDS:
        mode = SEED_MODES[seed % len(SEED_MODES)]
        bug = KNOWN_SEED_FAILURES.get(seed)
        if bug is None:
            yield pytest.param(seed, mode, id=f"seed{seed}-{mode}")
        else:
            full = next(b for b in KNOWN_BUGS if b.split("-")[0] == bug)
            yield pytest.param(seed, mode, id=f"seed{seed}-{mode}", marks=pytest.mark.xfail(
                reason=_bug_reason(full), strict=False))


@pytest.mark.parametrize("seed,mode", _seed_params())
def test_fuzz_seed(tmp_path, seed, mode):
    lowers, upper = gen_layers(seed)
    steps, div, notes = run_generated(tmp_path, seed, lowers, upper, OPS_PER_SEED, CHECK_EVERY,
                                      mode=mode)
    if div is not None:
        pytest.fail(f"seed {seed} ({mode}): {div}\nmodelled steps: {notes}\nshrink it with: "
                    f"cd tests && /usr/bin/python3 -m difffuzz --seed {seed} --mode {mode} "
                    f"--ops {OPS_PER_SEED}", pytrace=False)
    assert len(steps) == OPS_PER_SEED


# --------------------------------------------------------------------------- modelled differences
# Where ovlfs differs on purpose or the kernel is the odd one out (tests/difffuzz/model.py):
# the fuzzer brings the kernel side to ovlfs's designed outcome. These must pass.
MODELLED = {
    "dir-rename-lower": (
        [{"d": Dir({"x": "x", "s": {"y": "y"}}, mode=0o750, uid=3, xattrs={"user.d": "1"})}],
        {}, [("rename", "d", "e"), ("ls", "e"), ("stat", "e"), ("stat", "d"), ("ls", "")]),
    "dir-rename-merged-with-whiteouts-and-opaque-child": (
        [{"d": {"x": "x", "y": "y", "s": {"deep": "D"}}}],
        {"d": {"u": "U", "y": Whiteout(), "o": Opaque({"k": "k"})}},
        [("rename", "d", "e"), ("ls", "e"), ("ls", "e/o"), ("rmdir", "e/s"),
         ("unlink", "e/s/deep"), ("rmdir", "e/s"), ("rename", "e", "d")]),
    "dir-exchange-lower-dirs-and-file": (
        [{"d1": {"x": "x"}, "d2": {"y": "y"}, "f": "F"}], {},
        [("rename", "d1", "d2", XCHG), ("ls", "d1"), ("ls", "d2"), ("rename", "d1", "f", XCHG),
         ("read", "d1"), ("ls", "f"), ("rename", "f", "n", NOREPLACE), ("ls", "n")]),
    "dir-rename-onto-empty-and-nonempty": (
        [{"a": {"f": "F"}, "e": {}, "m": {"x": "x"}}], {},
        [("rename", "a", "m"), ("rename", "a", "e"), ("ls", "e"), ("ls", "")]),
    "dir-rename-keeps-open-fd-and-links": (
        [{"d": {"f": "data"}}], {"d": {"u": "U"}, "h": Hardlink("d/u")},
        [("fopen", "r", "d/f", RO), ("rename", "d", "e"), ("write", "e/f", b"NEW", 0),
         ("fread", "r", 10, 0), ("write", "h", b"H", 0), ("read", "e/u")]),
    "stray-whiteouts-in-never-merged-dirs": (
        [{"y": {"w": Whiteout(), "k": "k"}}], {"x": {"w": Whiteout()}, "z": {"q": Whiteout()}},
        [("ls", "x"), ("lsd", "y"), ("rmdir", "x"), ("rename", "z", "y"), ("unlink", "y/k"),
         ("rename", "z", "y"), ("ls", "")]),
    "xattr-whiteout-dir-rmdir-with-pinned-fd": (
        [{"b": Dir({"c": XWhiteout()}, opaque="x")}], {"a": "A"},
        [("fopen", "f0", "a", RO), ("mknod", "b/e", "p"), ("rename", "a", "b/c"),
         ("rename", "b/e", "b/c"), ("rename", "b", "c"), ("fread", "f0", 10, 0), ("ls", "")]),
    "xattr-whiteout-dir-rmdir": (
        [{"x": Dir({"gone": XWhiteout(), "kept": "k"}, opaque="x")}, {"x": {"gone": "g"}}], {},
        [("ls", "x"), ("unlink", "x/kept"), ("rmdir", "x"), ("ls", "")]),
    "rename-between-lower-hard-links": (
        [{"a": "A", "n": Hardlink("a"), "d": {"m": Hardlink("a")}}], {},
        [("rename", "n", "a"), ("ls", ""), ("rename", "d/m", "n", XCHG), ("read", "n"),
         ("stat", "a")]),
    "dir-rename-through-symlinked-parent": (  # the model resolves c -> d as the kernel does
        [{"a": Dir({"x": "x"}), "c": Symlink("d"), "d": Dir({})}], {},
        [("rename", "a", "c/a"), ("ls", "d"), ("ls", "d/a"), ("ls", "")]),
    # An fd open on a directory that the model moves by copying (240 s run, seed 70617):
    # the kernel side's fd stays on the removed copy, ovlfs's follows the rename; the model
    # closes the fds of both sides, and later fd steps answer EBADF on both.
    "dir-rename-with-open-dir-fd": (
        [{"a": Dir({}), "c": Dir({"d": Dir({})}, uid=1)}], {},
        [("fopen", "f1", "c", 0), ("rename", "c", "a/d"), ("fstat", "f1"), ("ls", "a/d")]),
    # An fd open on the directory a directory rename replaces (15 min threaded run, seed
    # 517048547): the model removes it (ext4 then shows size 0), ovlfs renames over it (ext4
    # keeps the size); the model closes the fds of both sides.
    "dir-rename-over-open-dir": (
        [{"a": Dir({"x": "x"}), "b": Dir({})}], {"c": Dir({})},
        [("fopen", "f0", "c", 0), ("rename", "a", "c"), ("fstat", "f0"), ("ls", "c")]),
    "failed-rename-side-effects": (
        [{"c": "lower c"}],
        {"c": Dir({}, opaque="y"), "d": {"b": {}}, "e": {}, "f": {"g": "g"}},
        [("rename", "c", "d"), ("rename", "e", "f"), ("rename", "e", "n"), ("stat", "")]),
}


@pytest.mark.parametrize("case", sorted(MODELLED))
def test_modelled_difference(tmp_path, case):
    lowers, upper, steps = MODELLED[case]
    replay(tmp_path, lowers, upper, steps, remount=False)  # (as test_known_bug)


def test_reproduction_is_python(tmp_path):
    """What the shrinker prints must paste as Python."""
    lowers, upper = gen_layers(3)
    div = Divergence("result", 1, ("rename", "a", "b", 2), "kernel=0 ovlfs='EXDEV'")
    text = format_repro(3, lowers, upper, [("open", "a", WO | os.O_CREAT), ("rename", "a", "b", 2),
                                           ("write", "a", b"x" * 100, 3)], div, {1: "dir-rename"})
    compile(text, "<repro>", "exec")
    assert "def test_fuzz_seed3(tmp_path):" in text and "replay(tmp_path," in text


class _TamperedAfterUnmount(Pair):
    """Marks d opaque in the upper layers of `sides` once they were compared after unmount,
    so that only the cross remount can see it."""
    sides = ()

    def check_upper(self, i, step, when="while mounted"):
        super().check_upper(i, step, when)
        if when == "after unmount":
            for layers in self.sides:
                os.setxattr(getattr(self, layers).upper / "d", "trusted.overlay.opaque", b"y")


@pytest.mark.parametrize("sides,direction", [
    (("kset",), "ovlfs reading the kernel's layers"),
    (("oset",), "the kernel reading ovlfs's layers")])
def test_cross_remount_reads_the_other_sides_layers(tmp_path, sides, direction):
    """finish() mounts each side's layers with the other: a change to the layers after the
    last comparison shows there as a "remount" divergence naming the direction."""
    pair = _TamperedAfterUnmount(tmp_path, [{"d": Dir({"x": File("x")})}], {"d": Dir({})},
                                 mode="redirect")
    pair.sides = sides
    with pair:
        pair.apply(("ls", "d"))
        with pytest.raises(Divergence) as caught:
            pair.finish()
    assert caught.value.kind == "remount" and direction in caught.value.detail
    assert "'d/x': only in writer" in caught.value.detail


class _UpperNotCompared(Pair):
    def check_upper(self, i, step, when="while mounted"):
        pass


def test_cross_remount_index_other_name_linked_up(tmp_path):
    """index=on: the kernel links up the name a write came through (d/c), ovlfs the name its
    node keeps (d/a, looked up first; runner.MODES), so the upper layers differ; each side
    must still read the other's layers, through the index, as the tree the writer showed."""
    lowers = [{"d": Dir({"a": File("lower data", mtime=T), "c": Hardlink("d/a")})}]
    with _UpperNotCompared(tmp_path, lowers, {}, mode="index") as pair:
        for step in [("stat", "d/a"), ("write", "d/c", b"new", 0), ("stat", "d/c")]:
            pair.apply(step)
        pair.finish()
    linked_up = {side: sorted(os.listdir(getattr(pair, side).upper / "d"))
                 for side in ("kset", "oset")}
    assert linked_up == {"kset": ["c"], "oset": ["a"]}


# --------------------------------------------------------------------------- option modes
# Found in the redirect mode (seed 1006): a directory renamed with an absolute redirect
# ("/a/a") whose parent in the top lower layer is opaque: the kernel walks the redirect
# component by component and searches no layer below that opaque parent; ovlfs merged
# lower2's a/a too and showed its "b".
def test_fuzz_redirect_seed1006(tmp_path):
    replay(tmp_path,
           lowers=[{
              'a': Dir({
                      'a': Dir({}, mode=0o700, gid=1, mtime=T + 752000),
                  }, mode=0o700, gid=1, mtime=T + 760000, opaque='y'),
          },
          {
              'a': Dir({
                      'a': Dir({
                              'b': File(b'', mode=0o600, uid=1000, gid=1, mtime=T + 85000),
                          }, mtime=T + 665000),
                  }, mode=0o700, uid=1000, gid=1000, mtime=T + 569000),
          }],
           upper={},
           steps=[('rename', 'c', 'a/a/e'),
                  ('rename', 'a/a', 'c', 1), ('stat', 'c/b')],
           check_every=0, mode='redirect')  # (a tree walk first would look a/a up plainly)



# Found in the redirect mode (seed 1105): a directory moved in over an xattr whiteout (in a
# lower directory marked opaque="x") then moved away again: the kernel leaves no whiteout,
# the name being whited out below already; ovlfs took the xattr whiteout for a name.
def test_fuzz_redirect_seed1105(tmp_path):
    replay(tmp_path,
           lowers=[{
              'a': Dir({
                      'c': XWhiteout(),
                  }, uid=1000, mtime=T + 700000, opaque='x'),
              'b': Dir({}, mode=0o1777, mtime=T + 261000, xattrs={'user.x': b'an2g8'}),
              'd': Dir({
                      'a': Dir({}, mode=0o777, mtime=T + 863000),
                      'd': Dir({}, mtime=T + 45000),
                  }, uid=1000, mtime=T + 677000),
          }],
           upper={},
           steps=[('rename', 'd/d', 'd/a/c'),
                  ('rename', 'd/a/c', 'a/c'),
                  ('rename', 'a/c', 'b/n')],
           check_every=0, mode='redirect')


# Found in the index mode (seed 544048091): a directory exchanged (copied up whole, with
# redirect_dir=off) held a name of a lower hard-link group whose node keeps another name:
# the copy-up of the tree copied that node's own name, this one never reached the upper
# layer and vanished from the moved directory.
def test_fuzz_index_seed544048091(tmp_path):
    replay(tmp_path,
           lowers=[{
              'a': Dir({
                      'a': Dir({
                              'd': Hardlink('a/c'),
                          }, mtime=T + 778000),
                      'c': File(b'8fvvde4u', gid=1, mtime=T + 658000),
                      'd': Dir({}, mtime=T + 777000),
                  }, mode=0o750, uid=1, mtime=T + 862000),
          }],
           upper={},
           steps=[('stat', 'a/c'),
                  ('rename', 'a/a', 'a/d', 2),
                  ('lsd', 'a/d')],
           check_every=0, mode='index')


# Found in the index mode (seed 544048062): the same in a directory renamed by copying, and
# the name linked up changed its parent's mtime (the kernel's link-up keeps it).
def test_fuzz_index_seed544048062(tmp_path):
    replay(tmp_path,
           lowers=[{
              'c': Dir({
                      'a': Dir({
                              'b': Hardlink('c/c'),
                          }, mtime=T + 483000),
                      'c': File(b'a30x22bbcco0a2hsi', mode=0o444, mtime=T + 164000),
                  }, uid=1000, mtime=T + 566000),
          }],
           upper={},
           steps=[('mkdir', 'e', 0o777),
                  ('ls', 'c'),
                  ('rename', 'c', 'e/c')],
           check_every=0, mode='index')


# Found in the index mode (seed 551693083, shrunk by hand): a lower hard-link group c/x,
# c/y; unlink c/y, link c/x z, unlink c/x: z showed nlink 2 (the kernel: 1). The group's
# node, moved to its name z when c/x went, was looked up again without its identity and
# lost its "indexed" mark, so the index's count (overlay.nlink) was no longer applied.
def test_fuzz_index_seed551693083(tmp_path):
    replay(tmp_path,
           lowers=[{'c': Dir({'x': File('d'), 'y': Hardlink('c/x')})}],
           upper={},
           steps=[('unlink', 'c/y'), ('link', 'c/x', 'z'), ('unlink', 'c/x'), ('stat', 'z')],
           check_every=0, mode='index')
