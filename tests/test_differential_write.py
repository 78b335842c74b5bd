"""Differential harness, write side: every scenario is a list of steps (see
write_helpers.run_steps) applied to the kernel overlayfs and to ovlfs, each on its own,
identical copy of the layers. Compared, in this order:
  1. every step's result (return value or errno name);
  2. the visible tree (helpers.snapshot: types, modes, owners, sizes, contents, targets, rdev,
     nlink, xattrs, mtimes; times set during the run are normalised to 'now') and the
     hard-link groups;
  3. after unmount, the upper directory: whiteouts, opaque values, every xattr including the
     escaped trusted.overlay.overlay.* (trusted.overlay.origin/impure/uuid/redirect/nlink
     and the work directory are ignored), file contents, modes, owners and mtimes.
ovlfs's work/work must also be empty after unmount.

The kernel runs with KERNEL_OPTS (index, redirect_dir and metacopy off: the on-disk format
ovlfs shares). Where ovlfs differs on purpose (doc/semantics.md, "ovlfs's choices"), the scenario
says so: `kernel` lists the kernel's documented result for the diverging steps (checked, so
the divergence is real), and `ovlfs` gives ovlfs's full expected results, visible tree and
upper tree (write_helpers.tree notation) explicitly; `moved` maps a source path to where
ovlfs moved it: the kernel's view of the unmoved source must equal ovlfs's view at the
destination (metadata kept by the directory copy-up).
Section D numbers of doc/semantics.md are in the scenario names (dNN_...). Not here: D39
(st_ino cannot be compared between two mounts; test_write.py checks it is stable), D51
(lowerdir escaping, a command-line matter), D56 (inotify)."""
import os
import time

import pytest

from helpers import (Blk, Chr, Dir, FIXED_MTIME, File, Fifo, Hardlink, Opaque, Socket, Symlink,
                     Whiteout, XWhiteout, assert_same_tree, build_layers, diff_snapshots,
                     needs_fuse, needs_kernel_overlay)
from write_helpers import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KERNEL_OPTS, OVLFS_OPTS,
                           RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, link_groups,
                           make_sparse, run_steps, tree, upper_snapshot, visible_snapshot,
                           work_leftovers)

pytestmark = [needs_fuse, needs_kernel_overlay]
T = FIXED_MTIME
NS = 10**9
W = Whiteout
MiB = 1 << 20
RO, WO, RW = os.O_RDONLY, os.O_WRONLY, os.O_RDWR
SCENARIOS = []


def S(name, lowers, steps, upper=None, rw=True, post=None, kernel=None, ovlfs=None,
      moved=None):
    SCENARIOS.append(dict(name=name, lowers=lowers, steps=steps, upper=upper, rw=rw, post=post,
                          kernel=kernel, ovlfs=ovlfs, moved=moved))


# A lower or merged directory renamed: with -o redirect_dir=off ovlfs copies it up whole where
# the kernel says EXDEV (the scenario's stated expectations); by default (redirect_dir=on)
# it writes a redirect as the kernel mounted with redirect_dir=on does: compared with that
# kernel in a second scenario, "<name>_redirect".
KERNEL_REDIRECT = ("index=off", "redirect_dir=on", "metacopy=off")
DIR_RENAMES = []


def SD(name, lowers, steps, **kw):
    S(name, lowers, steps, **kw)
    SCENARIOS[-1]["oopts"] = OVLFS_OPTS
    DIR_RENAMES.append(dict(SCENARIOS[-1], name=name + "_redirect", kernel=None, ovlfs=None,
                            moved=None, oopts=("index=off",), kopts=KERNEL_REDIRECT))


# ------------------------------------------------------------ D1-D4: lookup and whiteouts
S("d01_read_lower", [{"a": "alpha", "d": {"x": "x"}}],
  [("read", "a"), ("stat", "a"), ("ls", ""), ("ls", "d"), ("read", "d/x")])
S("d02_whiteout_hides", [{"a": "A", "b": "B", "d": {"x": "x", "y": "y"}}],
  [("stat", "a"), ("read", "a"), ("ls", ""), ("ls", "d"), ("stat", "d/x"), ("open", "d/x", RO)],
  upper={"a": W(), "d": {"x": W()}})
S("d03_creat_over_whiteout", [{"a": "old"}],
  [("creat", "a"), ("read", "a"), ("stat", "a"), ("ls", "")], upper={"a": W()})
S("d04_mkdir_over_whiteout", [{"d": {"x": "x"}}],
  [("mkdir", "d"), ("ls", "d"), ("stat", "d/x"), ("creat", "d/n"), ("ls", "d")],
  upper={"d": W()})
# ------------------------------------------------------------ D5-D11: unlink and rmdir
S("d05_unlink_lower", [{"a": "A", "b": "B"}],
  [("unlink", "a"), ("stat", "a"), ("ls", ""), ("read", "b")])
S("d06_unlink_pure_upper", [{"a": "A"}],
  [("unlink", "u"), ("stat", "u"), ("ls", "")], upper={"u": "U"})
S("d07_unlink_copied_up", [{"a": "A"}],
  [("chmod", "a", 0o600), ("unlink", "a"), ("stat", "a"), ("ls", "")])
S("d08_rmdir_merged_nonempty", [{"d": {"x": "x"}}],
  [("unlink", "d/u"), ("rmdir", "d"), ("ls", "d")], upper={"d": {"u": "u"}})
S("d09_rmdir_after_unlinking_lower", [{"d": {"x": "x", "y": "y"}}],
  [("rmdir", "d"), ("unlink", "d/x"), ("unlink", "d/y"), ("ls", "d"), ("rmdir", "d"),
   ("stat", "d"), ("ls", "")])
S("d10_rmdir_empty_lower", [{"e": {}, "f": {"g": {}}}],
  [("rmdir", "e"), ("rmdir", "f"), ("rmdir", "f/g"), ("rmdir", "f"), ("ls", "")])
S("d11_rmdir_lower_chr_1_3", [{"d": {"null": Chr(1, 3)}, "e": {"x": "x"}}],
  [("rmdir", "d"), ("ls", "d"), ("unlink", "e/x"), ("mknod", "e/n", "c", 1, 3),
   ("rmdir", "e"), ("unlink", "e/n"), ("rmdir", "e"), ("ls", "")])
# ------------------------------------------------------------ D12-D22: rename
SD("d12_rename_lower_dir", [{"d": {"x": "x", "s": {"y": "y"}}, "other": "o"}],
  [("rename", "d", "e"), ("ls", "e"), ("read", "e/s/y"), ("stat", "d"), ("ls", "")],
  kernel={0: "EXDEV"}, moved={"d": "e"},
  ovlfs=dict(results=[0, ["s", "x"], "y", "ENOENT", ["e", "other"]],
             visible={"e": "D", "e/x": "x", "e/s": "D", "e/s/y": "y", "other": "o"},
             upper={"d": "W", "e": "D:opaque", "e/x": "x", "e/s": "D", "e/s/y": "y"}))
SD("d13_chmod_lower_dir_then_rename", [{"d": {"x": "x"}}],
  [("chmod", "d", 0o700), ("rename", "d", "e"), ("ls", "e"), ("stat", "d")],
  kernel={1: "EXDEV"}, moved={"d": "e"},
  ovlfs=dict(results=[0, 0, ["x"], "ENOENT"], visible={"e": "D", "e/x": "x"},
             upper={"d": "W", "e": "D:opaque", "e/x": "x"}))
S("d14_rename_dir_made_by_mkdir", [{"m": {"x": "x"}}],
  [("mkdir", "n"), ("creat", "n/f", b"F"), ("rename", "n", "n2"), ("ls", "n2"),
   ("read", "n2/f"), ("rename", "n2", "m/n3"), ("ls", "m"), ("ls", "m/n3"), ("stat", "n2")])
S("d16_rename_lower_file", [{"a": "A"}],
  [("rename", "a", "b"), ("read", "b"), ("stat", "a"), ("ls", "")])
S("d17_rename_lower_over_lower", [{"a": "A", "b": "B"}],
  [("rename", "a", "b"), ("read", "b"), ("stat", "a"), ("ls", "")])
S("d18_rename_pure_upper_onto_whiteout", [{"w": "old"}],
  [("rename", "u", "w"), ("read", "w"), ("stat", "u"), ("ls", "")],
  upper={"u": "U", "w": W()})
S("d19_rename_noreplace", [{"a": "A", "b": "B", "w": "old"}],
  [("rename", "a", "b", RENAME_NOREPLACE), ("rename", "a", "w", RENAME_NOREPLACE),
   ("read", "w"), ("ls", ""), ("rename", "w", "c", RENAME_NOREPLACE), ("ls", ""),
   ("read", "b")], upper={"w": W()})
S("d20_rename_exchange_files", [{"a": "A", "b": "B"}],
  [("rename", "a", "b", RENAME_EXCHANGE), ("read", "a"), ("read", "b"), ("ls", "")])
S("d21_rename_bad_flags", [{"a": "A"}],
  [("rename", "a", "b", RENAME_WHITEOUT), ("rename", "a", "b", 8),
   ("rename", "a", "b", RENAME_NOREPLACE | RENAME_EXCHANGE), ("ls", "")])
S("d22_rename_upper_dir_onto_nonempty_merged", [{"m": {"u": "u", "x": "x"}}],
  [("mkdir", "n"), ("rename", "n", "m"), ("unlink", "m/x"), ("rename", "n", "m"), ("ls", "m"),
   ("stat", "n"), ("ls", "")], upper={"m": {"u": W()}})
# ------------------------------------------------------------ D23-D37: copy-up
F = dict(mode=0o640, uid=7, gid=8, mtime=T + 5, xattrs={"user.k": "v"})
S("d23_rdonly_open_no_copy_up", [{"a": File("A", **F)}],
  [("open", "a", RO), ("read", "a"), ("stat", "a"), ("listx", "a")])
S("d24_rdwr_open_close", [{"a": File("A", **F)}],
  [("open", "a", RW), ("stat", "a"), ("read", "a"), ("getx", "a", "user.k")])
S("d25_wronly_trunc", [{"a": File("AAAA", **F)}],
  [("open", "a", WO | os.O_TRUNC), ("read", "a"), ("stat", "a")])
S("d26_rdonly_trunc", [{"a": File("AAAA", **F)}],
  [("open", "a", RO | os.O_TRUNC), ("read", "a"), ("stat", "a")])
S("d27_truncate", [{"a": File("0123456789", **F)}],
  [("truncate", "a", 4), ("read", "a"), ("truncate", "a", 10), ("read", "a")])
S("d28_chmod_lower_file", [{"a": File("A", **F)}],
  [("chmod", "a", 0o4711), ("stat", "a")])
S("d29_chmod_lower_child_keeps_parent_times", [{"d": Dir({"f": "F"}, mtime=T + 3)}],
  [("chmod", "d/f", 0o600), ("stat", "d"), ("stat", "d/f")])
S("d30_utimens_lower", [{"a": File("A", **F), "b": "B", "c": "C"}],
  [("utime", "a", (T + 100) * NS + 5, (T + 200) * NS + 7), ("stat", "a"),
   ("utime", "b", "omit", (T + 300) * NS), ("stat", "b"), ("utime", "c", "now", "omit"),
   ("stat", "c")])
S("d31_setxattr_lower", [{"a": File("A", **F)}],
  [("setx", "a", "user.new", b"value"), ("getx", "a", "user.new"), ("listx", "a")])
S("d32_removexattr_absent", [{"a": File("A", xattrs={"user.x": "1", "user.y": "2"})}],
  [("rmx", "a", "user.nope"), ("listx", "a"), ("rmx", "a", "user.x"), ("listx", "a")])
S("d33_private_xattr_reads", [{"o": {"h": "h"}, "d": {"x": "x"}}],
  [("getx", "o", "trusted.overlay.opaque"), ("listx", "o"), ("ls", "o"),
   ("getx", "d", "trusted.overlay.opaque")], upper={"o": Opaque({"n": "n"})})
S("d34_setxattr_private_name_escaped", [{"a": "A"}],
  [("setx", "a", "trusted.overlay.foo", b"bar"), ("getx", "a", "trusted.overlay.foo"),
   ("listx", "a"), ("setx", "a", "trusted.overlay.opaque", b"y"), ("listx", "a"),
   ("rmx", "a", "trusted.overlay.foo"), ("listx", "a")])
S("d35_mknod", [{"d": {}}],
  [("mknod", "null", "c", 1, 3), ("mknod", "wh", "c", 0, 0), ("mknod", "d/wh", "c", 0, 0),
   ("mknod", "fifo", "p"), ("mknod", "loop", "b", 7, 0), ("stat", "null"), ("stat", "loop"),
   ("stat", "wh"), ("ls", ""), ("ls", "d")])
S("d36_parent_chain_copy_up",
  [{"a": Dir({"b": Dir({"f": "F"}, mode=0o750, uid=3, gid=4, mtime=T + 2,
                       xattrs={"user.b": "b"})}, mode=0o711, uid=1, gid=2, mtime=T + 1,
             xattrs={"user.a": "a"})}],
  [("creat", "a/b/g", b"G"), ("stat", "a"), ("stat", "a/b"), ("ls", "a/b"),
   ("listx", "a/b")])
S("d37_chown_lower_symlink", [{"l": Symlink("target/x", uid=1, gid=1, mtime=T + 9)}],
  [("chown", "l", 5, 6), ("readlink", "l"), ("stat", "l")])
S("d38_dir_nlink", [{"m": {"s1": {}}, "single": {"s": {}, "t": {}}}],
  [("stat", "m"), ("stat", "single"), ("stat", "m/u"), ("stat", "m/s1"),
   ("mkdir", "single/n"), ("stat", "single")], upper={"m": {"u": {}}})
# ------------------------------------------------------------ D40-D44: links, fds, mmap
S("d40_lower_hard_links_write", [{"a": "data", "b": Hardlink("a")}],
  [("write", "a", b"NEW"), ("read", "a"), ("read", "b"), ("stat", "a"), ("stat", "b")])
S("d41_link_lower_file", [{"a": "A"}],
  [("link", "a", "n"), ("stat", "a"), ("stat", "n"), ("read", "n"), ("write", "n", b"Z"),
   ("read", "a")])
S("d42_link_directory", [{"d": {}}],
  [("link", "d", "n"), ("mkdir", "e"), ("link", "e", "f"), ("ls", "")])
S("d43_fd_before_copy_up", [{"a": "old data"}],
  [("fopen", "r", "a", RO), ("fread", "r", 3, 0), ("write", "a", b"NEW"),
   ("fread", "r", 8, 0), ("fstat", "r"), ("fclose", "r")])
S("d44_mmap_before_copy_up", [{"a": "old data"}],
  [("mmap", "m", "a", 8), ("mread", "m", 8), ("write", "a", b"NEW"), ("mread", "m", 8),
   ("munmap", "m")],
  kernel={3: "old data"},
  ovlfs=dict(results=[0, "old data", 3, "NEW data", 0], visible={"a": "NEW data"},
             upper={"a": "NEW data"}))
# ------------------------------------------------------------ D45-D55: layer shapes, misc
S("d45_upper_file_over_lower_dir", [{"x": {"c": "c"}}],
  [("stat", "x/c"), ("creat", "x/c"), ("mkdir", "x/d"), ("unlink", "x"), ("mkdir", "x"),
   ("ls", "x")], upper={"x": "file"})
S("d46_upper_dir_over_file_over_dir", [{"x": "file"}, {"x": {"l": "l"}}],
  [("ls", "x"), ("stat", "x/l"), ("creat", "x/n"), ("ls", "x"), ("unlink", "x/u"),
   ("rmdir", "x"), ("unlink", "x/n"), ("rmdir", "x"), ("stat", "x")],
  upper={"x": {"u": "u"}})
S("d47_opaque_yes_is_not_opaque", [{"d": {"l": "l", "m": "m"}}],
  [("ls", "d"), ("unlink", "d/l"), ("ls", "d"), ("mkdir", "d/l"), ("ls", "d/l")],
  upper={"d": Dir({"u": "u"}, opaque="yes")})
S("d48_xwhiteouts", [{"x": Dir({"gone": XWhiteout(), "kept": "k"}, opaque="x")},
                     {"x": {"gone": "g", "other": "o"}}],
  [("ls", "x"), ("creat", "x/gone", b"new"), ("read", "x/gone"), ("unlink", "x/other"),
   ("unlink", "x/kept"), ("ls", "x"), ("unlink", "x/gone"), ("ls", "x"), ("stat", "x/gone")])
# The kernel (6.18) does not count an xwhiteout as a whiteout when it checks emptiness: rmdir
# of a directory whose merged listing is empty answers ENOTEMPTY. ovlfs follows rule 24 (empty
# = nothing but whiteouts in the merged listing), consistent with what readdir shows.
S("d48_xwhiteouts_rmdir", [{"x": Dir({"gone": XWhiteout(), "kept": "k"}, opaque="x")},
                           {"x": {"gone": "g", "other": "o"}}],
  [("unlink", "x/other"), ("unlink", "x/kept"), ("ls", "x"), ("rmdir", "x"), ("ls", "")],
  kernel={3: "ENOTEMPTY"},
  ovlfs=dict(results=[0, 0, [], 0, []], visible={}, upper={"x": "W"}))
# The kernel treats `.wh.*` as plain names; ovlfs reads them as OCI whiteouts, as
# fuse-overlayfs does (test_layer_formats.py): hidden, refused (EINVAL), and applied. Here
# foo stays: a name and its .wh. file in one layer, the name wins.
S("d49_wh_names", [{".wh.foo": "", "foo": "foo", "d": {".wh..wh..opq": ""}}],
  [("ls", ""), ("unlink", ".wh.foo"), ("ls", ""), ("read", "foo"), ("creat", ".wh.bar", b"b"),
   ("creat", "d/x"), ("ls", "d")],
  kernel={0: [".wh.foo", "d", "foo"], 1: 0, 4: 1, 6: [".wh..wh..opq", "x"]},
  ovlfs=dict(results=[["d", "foo"], "ENOENT", ["d", "foo"], "foo", "EINVAL", 0, ["x"]],
             visible={"d": "D", "d/x": "", "foo": "foo"}, upper={"d": "D", "d/x": ""}))
S("d50_no_upper_is_read_only", [{"a": "A", "d": {}}, {"b": "B"}],
  [("creat", "n"), ("open", "a", RW), ("chmod", "a", 0o600), ("unlink", "a"), ("mkdir", "e"),
   ("rename", "a", "c"), ("setx", "a", "user.k", b"v"), ("utime", "a", "now", "now"),
   ("access", "a", os.W_OK), ("read", "a"), ("ls", "")], rw=False)
S("d52_statfs", [{"a": "A"}], [("statfs", ""), ("creat", "n", b"x"), ("statfs", "")])
S("d53_fsync_rdonly_and_access", [{"a": "A"}],
  [("fopen", "r", "a", RO), ("fsync", "r"), ("fclose", "r"), ("access", "a", os.W_OK),
   ("access", "a", os.R_OK | os.W_OK)])
S("d54_lower_fifo", [{"p": Fifo(mode=0o640)}],
  [("open", "p", RW | os.O_NONBLOCK), ("open", "p", WO | os.O_NONBLOCK), ("stat", "p"),
   ("chmod", "p", 0o600), ("stat", "p")])
S("d55_dir_fd_snapshot", [{"d": {f"entry{i:02d}": "x" for i in range(20)}}],
  [("dirstream", "d", "new"), ("ls", "d")], upper={"d": {"u": "u"}})
# ------------------------------------------------------------ larger and mixed scenarios
_deep = {"f": "F"}
for _i in reversed(range(10)):
    _deep = {f"p{_i}": Dir(_deep, mode=0o700 + (_i % 8) * 0o10, uid=_i, gid=100 + _i,
                           mtime=T + _i, xattrs={f"user.level{_i}": str(_i)})}
_deep_path = "/".join(f"p{i}" for i in range(10))
S("deep_parent_chain", [_deep],
  [("creat", f"{_deep_path}/new", b"n")] +
  [("stat", "/".join(f"p{i}" for i in range(k + 1))) for k in range(10)] +
  [("ls", _deep_path), ("chmod", f"{_deep_path}/f", 0o600)])
S("sparse_64m_copy_up", [{"big": ""}],
  [("sparse", "big"), ("write", "big", b"NEW", 40 * MiB), ("sparse", "big"),
   ("pread", "big", 3, 40 * MiB), ("pread", "big", 4096, 20 * MiB),
   ("pread", "big", 16, 64 * MiB - 16), ("pread", "big", 8, 10 * MiB), ("stat", "big")],
  post=lambda lower: make_sparse(lower / "big", 64 * MiB,
                                 {0: b"head" * 1024, 20 * MiB: b"\xa5" * 4096,
                                  64 * MiB - 4096: b"tail" * 1024}))
S("sparse_64m_chmod_copy_up", [{"big": ""}],
  [("chmod", "big", 0o600), ("sparse", "big"), ("pread", "big", 4096, 0)],
  post=lambda lower: make_sparse(lower / "big", 64 * MiB, {0: b"x" * 4096}))
S("lower_hard_links_ops", [{"a": "data", "b": Hardlink("a"), "d": {"c": Hardlink("a")}}],
  [("chmod", "b", 0o600), ("stat", "a"), ("stat", "b"), ("stat", "d/c"), ("link", "a", "n"),
   ("stat", "n"), ("unlink", "d/c"), ("stat", "a"), ("rename", "a", "z"), ("read", "z"),
   ("ls", ""), ("ls", "d")])
S("rename_over_whiteout", [{"a": "A", "w": "old", "d": {"x": "x"}}],
  [("rename", "a", "w"), ("read", "w"), ("stat", "a"), ("rename", "d/x", "w"), ("read", "w"),
   ("ls", "d"), ("ls", "")], upper={"w": W()})
S("exchange_mixed", [{"a": "A", "d": {"x": "x"}}],
  [("mkdir", "e"), ("creat", "e/f", b"F"), ("rename", "a", "u", RENAME_EXCHANGE),
   ("read", "a"), ("read", "u"), ("rename", "u", "nothere", RENAME_EXCHANGE),
   ("rename", "e", "a", RENAME_EXCHANGE), ("ls", "a"), ("read", "e"), ("ls", "")],
  upper={"u": "U"})
SD("exchange_lower_dirs", [{"d1": {"x": "x"}, "d2": {"y": "y"}}],
  [("rename", "d1", "d2", RENAME_EXCHANGE), ("ls", "d1"), ("ls", "d2")],
  kernel={0: "EXDEV"},
  ovlfs=dict(results=[0, ["y"], ["x"]], visible={"d1": "D", "d1/y": "y", "d2": "D", "d2/x": "x"},
             upper={"d1": "D:opaque", "d1/y": "y", "d2": "D:opaque", "d2/x": "x"}))
S("rmdir_only_whiteouts", [{"d": {"x": "x", "y": "y"}}],
  [("ls", "d"), ("rmdir", "d"), ("stat", "d"), ("ls", ""), ("mkdir", "d"), ("ls", "d")],
  upper={"d": {"x": W(), "y": W()}})
S("rmdir_merged_with_stray_whiteout", [{"d": {}}],
  [("ls", "d"), ("rmdir", "d"), ("stat", "d"), ("ls", "")], upper={"d": {"x": W()}})
S("mkdir_over_whiteout_then_rmdir", [{"d": {"x": "x"}}],
  [("mkdir", "d"), ("rmdir", "d"), ("stat", "d"), ("ls", "")], upper={"d": W()})
S("file_dir_replacement", [{"f": "F", "d": {"x": "x"}}],
  [("unlink", "f"), ("mkdir", "f"), ("creat", "f/in", b"i"), ("ls", "f"), ("unlink", "d/x"),
   ("rmdir", "d"), ("creat", "d", b"now a file"), ("read", "d"), ("stat", "f"), ("ls", "")])
S("replacement_across_layers", [{"a": {"x": "x"}, "b": "B"}, {"a": "bottom", "b": {"y": "y"}}],
  [("ls", "a"), ("read", "b"), ("rename", "b", "a"), ("unlink", "a/x"), ("rmdir", "a"),
   ("creat", "a", b"A2"), ("rename", "a", "c"), ("read", "c"), ("stat", "a"),
   ("mkdir", "b2"), ("rename", "b2", "b"), ("ls", "")])
S("rename_errors", [{"f": "F", "d": {}, "e": {"x": "x"}}],
  [("rename", "f", "d"), ("mkdir", "n"), ("rename", "n", "f"), ("rename", "n", "e"),
   ("rename", "n", "n/sub"), ("mkdir", "n/sub"), ("rename", "n", "n/sub/deeper"),
   ("rename", "n/sub", "n"), ("rename", "nothere", "x"), ("rename", "f", "f"),
   ("rename", "e", "d", RENAME_NOREPLACE), ("rename", "f", "e/x/y"), ("ls", "")])
S("rename_pure_upper_dir_onto_empty_lower_dir", [{"e": {}, "m": {"x": "x"}}],
  [("mkdir", "n"), ("creat", "n/f", b"f"), ("rename", "n", "e"), ("ls", "e"), ("stat", "n"),
   ("ls", "")])
S("metadata_changes_on_lower",
  [{"f": File("F", mode=0o6755, uid=1000, gid=1000, xattrs={"user.a": "1", "trusted.t": "t"}),
    "g": File("G", mode=0o2755, gid=5), "d": Dir({"x": "x"}, mode=0o750)}],
  [("stat", "f"), ("chown", "f", 1000, 1000), ("stat", "f"), ("chmod", "g", 0o755),
   ("stat", "g"), ("utime", "d", (T + 50) * NS, "omit"), ("stat", "d"), ("ls", "d"),
   ("setx", "d", "user.dx", b"1"), ("listx", "d"), ("chown", "d", 7, 7), ("stat", "d"),
   ("listx", "f")])
S("utimens_now_omit", [{"a": "A", "b": "B"}],
  [("utime", "a", "now", "now"), ("stat", "a"), ("utime", "b", "omit", (T + 99) * NS),
   ("stat", "b"), ("utime", "b", "omit", "omit"), ("stat", "b")])
S("fd_before_copy_up_several", [{"a": "0123456789"}],
  [("fopen", "r", "a", RO), ("fopen", "w", "a", WO), ("fwrite", "w", b"AB", 2),
   ("fread", "r", 10, 0), ("fstat", "r"), ("chmod", "a", 0o600), ("fstat", "r"),
   ("truncate", "a", 3), ("fread", "r", 10, 0), ("fclose", "w"), ("fclose", "r")])
S("append_lower", [{"a": "abc"}], [("append", "a", b"def"), ("read", "a"), ("stat", "a")])
S("write_at_offset_lower", [{"a": "abcdef"}], [("write", "a", b"XY", 1), ("read", "a")])
S("write_inside_big_lower", [{"big": b"x" * MiB}],
  [("write", "big", b"Y", 512 * 1024), ("pread", "big", 3, 512 * 1024 - 1), ("stat", "big")])
S("fallocate_lower", [{"a": "0123456789"}],
  [("fallocate", "a", 0, 0, 8192), ("stat", "a"), ("fallocate", "a", FALLOC_FL_KEEP_SIZE,
                                                      8192, 4096),
   ("stat", "a"), ("fallocate", "a", FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096),
   ("pread", "a", 10, 0)])
S("copy_file_range", [{"a": "0123456789"}],
  [("copyrange", "a", "n", 5, 2), ("read", "n"), ("creat", "b", b"bb"),
   ("copyrange", "a", "b", 4), ("read", "b"), ("read", "a")])
S("symlinks", [{"l": Symlink("t"), "d": {}}],
  [("symlink", "x/y", "d/s"), ("readlink", "d/s"), ("link", "l", "l2"), ("stat", "l2"),
   ("readlink", "l2"), ("symlink", "z", "l"), ("ls", ""), ("ls", "d")])
S("mkdir_in_merged_parent", [{"m": {"x": "x"}}],
  [("mkdir", "m/n"), ("ls", "m/n"), ("mkdir", "m/x"), ("mkdir", "a", 0o700), ("stat", "a"),
   ("ls", "m")], upper={"m": {"u": "u"}})
S("rename_files_between_lower_dirs", [{"d": {"x": "X", "y": "Y"}, "e": {"z": "Z"}}],
  [("rename", "d/x", "d/x2"), ("rename", "d/y", "e/y"), ("ls", "d"), ("ls", "e"),
   ("read", "e/y"), ("rename", "e/z", "z"), ("ls", "")])
S("rename_pure_upper_dir_into_merged", [{"m": {"x": "x"}, "q": {}}],
  [("mkdir", "n"), ("creat", "n/f", b"f"), ("rename", "n", "m/n"), ("ls", "m/n"),
   ("rename", "m/n", "q/n"), ("ls", "q/n"), ("ls", "q"), ("ls", "m")],
  upper={"m": {"u": "u"}})
SD("rename_merged_dir", [{"d": {"x": "X", "y": "Y", "s": {"deep": "D"}}}],
  [("rename", "d", "e"), ("ls", "e"), ("read", "e/x"), ("stat", "e/y"), ("ls", "e/s"),
   ("stat", "d"), ("ls", "")],
  upper={"d": {"u": "U", "y": W()}}, kernel={0: "EXDEV"}, moved={"d": "e"},
  ovlfs=dict(results=[0, ["s", "u", "x"], "X", "ENOENT", ["deep"], "ENOENT", ["e"]],
             visible={"e": "D", "e/u": "U", "e/x": "X", "e/s": "D", "e/s/deep": "D"},
             # no whiteout (e/y) inside the opaque e: the kernel would list it (rule 19)
             upper={"d": "W", "e": "D:opaque", "e/u": "U", "e/x": "X", "e/s": "D",
                    "e/s/deep": "D"}))
SD("rename_lower_dir_into_other_dir", [{"a": {"f": "F"}, "b": {"c": {}}}],
  [("rename", "a", "b/c/a"), ("ls", "b/c/a"), ("read", "b/c/a/f"), ("ls", "")],
  kernel={0: "EXDEV"}, moved={"a": "b/c/a"},
  ovlfs=dict(results=[0, ["f"], "F", ["b"]],
             visible={"b": "D", "b/c": "D", "b/c/a": "D", "b/c/a/f": "F"},
             upper={"a": "W", "b": "D", "b/c": "D", "b/c/a": "D:opaque", "b/c/a/f": "F"}))
SD("rename_lower_dir_over_empty_lower_dir", [{"a": {"f": "F"}, "e": {}}],
  [("rename", "a", "e"), ("ls", "e"), ("ls", "")],
  kernel={0: "EXDEV"}, moved={"a": "e"},
  ovlfs=dict(results=[0, ["f"], ["e"]], visible={"e": "D", "e/f": "F"},
             upper={"a": "W", "e": "D:opaque", "e/f": "F"}))
SD("rename_dir_copied_up_by_create", [{"d": {"x": "x"}}],
  [("creat", "d/n", b"n"), ("rename", "d", "e"), ("ls", "e"), ("rmdir", "e")],
  kernel={1: "EXDEV"}, moved=None,
  ovlfs=dict(results=[1, 0, ["n", "x"], "ENOTEMPTY"], visible={"e": "D", "e/n": "n", "e/x": "x"},
             upper={"d": "W", "e": "D:opaque", "e/n": "n", "e/x": "x"}))
S("unlink_recreate_cycle", [{"a": "A"}],
  [("unlink", "a"), ("creat", "a", b"B"), ("read", "a"), ("unlink", "a"), ("stat", "a"),
   ("creat", "a", b"C"), ("chmod", "a", 0o600), ("read", "a"), ("ls", "")])
S("create_excl", [{"a": "A", "w": "old"}],
  [("excl", "a"), ("excl", "w"), ("excl", "n"), ("excl", "n"), ("ls", ""), ("read", "w")],
  upper={"w": W()})
S("xattrs_dir_and_escaped",
  [{"d": Dir({"x": "x"}, xattrs={"user.d": "1"}),
    "f": File("F", xattrs={"trusted.overlay.overlay.esc": "e", "user.u": "u"})}],
  [("listx", "f"), ("getx", "f", "trusted.overlay.esc"), ("setx", "d", "user.e", b"2"),
   ("listx", "d"), ("ls", "d"), ("chmod", "f", 0o600), ("listx", "f"),
   ("getx", "f", "trusted.overlay.esc"), ("rmx", "d", "user.d"), ("listx", "d")])
S("lower_whiteout_in_middle_layer", [{"a": W(), "d": {"x": W()}}, {"a": "bottom", "b": "B",
                                                                   "d": {"x": "x", "y": "y"}}],
  [("stat", "a"), ("creat", "a", b"new"), ("read", "a"), ("unlink", "a"), ("stat", "a"),
   ("unlink", "b"), ("creat", "d/x", b"X"), ("unlink", "d/y"), ("ls", "d"), ("ls", "")])
S("mixed_script", [{"src": {"a": "1", "b": "2", "sub": {"c": "3"}}, "doc": "readme"}],
  [("mkdir", "new"), ("rename", "src/a", "new/a"), ("link", "src/b", "new/b"),
   ("symlink", "../doc", "new/doc"), ("chmod", "src/sub/c", 0o600), ("unlink", "src/b"),
   ("rmdir", "src/sub"), ("unlink", "src/sub/c"), ("rmdir", "src/sub"), ("ls", "src"),
   ("ls", "new"), ("read", "new/doc"), ("rmdir", "src"), ("ls", "")])
S("setuid_file_truncate_write_chown", [{"s": File("S", mode=0o4755), "g": File("G", mode=0o2775)}],
  [("truncate", "s", 1), ("stat", "s"), ("write", "s", b"x"), ("stat", "s"),
   ("chown", "s", 0, 0), ("stat", "s"), ("chown", "g", 0, 1), ("stat", "g")])
S("chmod_lower_special_files", [{"null": Chr(1, 3), "blk": Blk(7, 0), "sock": Socket(),
                                 "fifo": Fifo(), "lnk": Symlink("null")}],
  [("chmod", "null", 0o600), ("chmod", "blk", 0o600), ("chmod", "sock", 0o700),
   ("chmod", "fifo", 0o600), ("chown", "lnk", 3, 3), ("stat", "null"), ("stat", "blk"),
   ("stat", "sock"), ("stat", "fifo")])
S("link_into_lower_dir_chain", [{"a": "A", "d": {"e": {}}}],
  [("link", "a", "d/e/l"), ("stat", "a"), ("stat", "d/e/l"), ("ls", "d/e"), ("ls", "d")])
S("rmdir_and_unlink_errors", [{"f": "F", "d": {"x": "x"}}],
  [("rmdir", "f"), ("unlink", "d"), ("rmdir", "nothere"), ("unlink", "nothere"), ("mkdir", "n"),
   ("creat", "n/x"), ("rmdir", "n"), ("unlink", "n/x"), ("rmdir", "n"), ("stat", "n"),
   ("mkdir", "f"), ("mkdir", "d"), ("ls", "")])
S("opaque_dir_create_delete", [{"o": {"h": "h"}}],
  [("ls", "o"), ("creat", "o/h", b"new"), ("read", "o/h"), ("unlink", "o/h"), ("unlink", "o/u"),
   ("rmdir", "o"), ("ls", ""), ("stat", "o")], upper={"o": Opaque({"u": "u"})})
S("chown_lower_dir_stays_merged", [{"d": Dir({"x": "x"}, uid=5, gid=5)}],
  [("chown", "d", 6, 6), ("ls", "d"), ("stat", "d"), ("creat", "d/y"), ("ls", "d")],
  upper=None)
S("whiteout_then_mknod_over_it", [{"a": "A"}],
  [("unlink", "a"), ("mknod", "a", "c", 1, 3), ("stat", "a"), ("unlink", "a"),
   ("mknod", "a", "p"), ("stat", "a"), ("ls", "")])
S("symlink_over_whiteout_and_link_over_whiteout", [{"a": "A", "b": "B"}],
  [("unlink", "a"), ("symlink", "b", "a"), ("readlink", "a"), ("unlink", "b"),
   ("link", "a", "b"), ("readlink", "b"), ("ls", "")])
S("three_layers_unlink_rmdir", [{"d": {"t": "t"}}, {"d": {"m": "m"}}, {"d": {"b": "b"}}],
  [("unlink", "d/m"), ("unlink", "d/t"), ("rmdir", "d"), ("unlink", "d/b"), ("ls", "d"),
   ("rmdir", "d"), ("stat", "d")])
S("truncate_extend_and_ftruncate", [{"a": "abc"}],
  [("truncate", "a", 8192), ("stat", "a"), ("pread", "a", 5, 0), ("fopen", "w", "a", RW),
   ("fwrite", "w", b"Z", 8191), ("fsync", "w"), ("fclose", "w"), ("pread", "a", 2, 8190)])


def _by_name():
    if DIR_RENAMES:
        SCENARIOS.extend(DIR_RENAMES)
        DIR_RENAMES.clear()
    names = [s["name"] for s in SCENARIOS]
    assert len(names) == len(set(names)), "duplicate scenario names"
    return SCENARIOS


def build(base, sc):
    ls = build_layers(base, sc["lowers"], sc["upper"], rw=sc["rw"])
    if sc["post"]:
        sc["post"](ls.lowers[0])
    return ls


def _sub(snap, old, new):
    """The part of a snapshot at or below old, re-rooted at new."""
    out = {}
    for path, rec in snap.items():
        if path == old or path.startswith(old + "/"):
            out[new + path[len(old):]] = rec
    return out


def _compare_results(steps, kres, ores):
    bad = [f"step {i} {steps[i]!r}: kernel={k!r} ovlfs={o!r}"
           for i, (k, o) in enumerate(zip(kres, ores)) if k != o]
    assert not bad, "step results differ:\n" + "\n".join(bad)


def _check_upper_tree(actual, expected):
    diff = [f"{p}: expected {expected.get(p, '<absent>')!r}, got {actual.get(p, '<absent>')!r}"
            for p in sorted(set(expected) | set(actual)) if expected.get(p) != actual.get(p)]
    assert not diff, "ovlfs upper layer differs from the stated expectation:\n" + "\n".join(diff)


@pytest.mark.parametrize("sc", _by_name(), ids=[s["name"] for s in SCENARIOS])
def test_scenario(tmp_path, sc):
    t0 = time.time_ns() - 10**9  # file timestamps come from a coarse clock
    kset, oset = build(tmp_path / "k", sc), build(tmp_path / "o", sc)
    steps = sc["steps"]

    with kset.kernel(extra_opts=sc.get("kopts", KERNEL_OPTS)) as km:
        kres = run_steps(km, steps, t0)
        kvis, klinks = visible_snapshot(km, t0), link_groups(km)
    # Against KERNEL_OPTS, ovlfs with redirect_dir=off too: with it on (the default) a new
    # directory in a merged one is opaque, as the kernel's with redirect_dir=on (the SD
    # scenarios' "_redirect" twins and test_redirect_write.py compare that pairing).
    with oset.ovlfs(extra_opts=sc.get("oopts", OVLFS_OPTS)) as om:
        ores = run_steps(om, steps, t0)
        ovis, olinks, otree = visible_snapshot(om, t0), link_groups(om), tree(om)
    assert not work_leftovers(oset.work), f"stray entries in work/work: {work_leftovers(oset.work)}"

    if sc["ovlfs"] is not None:  # an intended difference: explicit expectations
        for i, expected in sc["kernel"].items():
            assert kres[i] == expected, (f"the kernel no longer answers {expected!r} to step {i}"
                                         f" {steps[i]!r} (got {kres[i]!r}): revisit the scenario")
        exp = sc["ovlfs"]
        bad = [f"step {i} {steps[i]!r}: expected {e!r}, got {o!r}"
               for i, (e, o) in enumerate(zip(exp["results"], ores)) if e != o]
        assert not bad, "ovlfs step results:\n" + "\n".join(bad)
        assert otree == exp["visible"], f"visible tree: {otree} != {exp['visible']}"
        _check_upper_tree(tree(oset.upper, upper=True), exp["upper"])
        for old, new in (sc["moved"] or {}).items():
            k = _sub(kvis, old, new)
            o = _sub(ovis, new, new)
            for rec in list(k.values()) + list(o.values()):
                if rec.get("type") == "dir":
                    rec.pop("nlink", None)
            lines = diff_snapshots(k, o, ("kernel (not moved)", "ovlfs (moved)"))
            assert not lines, "metadata lost by the directory move:\n" + "\n".join(lines)
        return

    assert len(kres) == len(ores) == len(steps)
    _compare_results(steps, kres, ores)
    assert_same_tree(kvis, ovis)
    assert klinks == olinks, f"hard-link groups differ: kernel {klinks} ovlfs {olinks}"
    if sc["rw"]:
        kup, oup = upper_snapshot(kset.upper, t0), upper_snapshot(oset.upper, t0)
        lines = diff_snapshots(kup, oup, ("kernel upper", "ovlfs upper"))
        assert not lines, "upper layers differ:\n" + "\n".join(lines)


def test_enough_scenarios():
    assert len(SCENARIOS) >= 60
