"""Differential fuzzer: ovlfs against the kernel overlayfs, the oracle.

Layout
  layers.py  layers from a seed: 2-4 lower layers and an upper over a small namespace (names
             a-d, three levels), with files, directories, symlinks, hard links, fifos, char
             1:3, whiteouts, opaque directories (also opaque="yes", which is not opaque),
             xattr whiteouts in opaque="x" lower directories, user.* xattrs, varied modes,
             owners and mtimes; printing a spec back as Python (helpers' notation).
  ops.py     the steps (write_helpers.run_steps' notation plus ftruncate, stat-follow and
             readdir-with-d_type) and their random generator: open/creat/write/pwrite/
             append/truncate/ftruncate/fallocate, reads at offsets, chmod/chown/utimensat,
             set/get/list/removexattr, mkdir/rmdir/unlink, rename/renameat2 with NOREPLACE and
             EXCHANGE, link, symlink, mknod (fifo, 1:3, 0:0), readdir, stat/lstat, readlink,
             fds kept open across copy-up (fopen/fread/fwrite/fstat/fsync/fclose).
  model.py   where ovlfs differs from the kernel on purpose, or the kernel is the odd one
             out, the kernel side is brought to ovlfs's designed outcome (see its docstring).
  runner.py  both mounts at once, every step on both, compared after every step; trees,
             hard-link groups and upper layers every K steps; after unmount the upper layers,
             ovlfs's work/work and its exit status; then the cross remount. A watchdog kills
             a stuck ovlfs daemon.
  shrink.py  delta debugging of the steps and the layers; the reproduction printed as a
             `def test_...(tmp_path): replay(...)` for tests/test_fuzz.py (and as an S(...)
             scenario for test_differential_write.py when no modelled step is involved).
  __main__   the command line (`make fuzz SECONDS=3600`, `python3 -m difffuzz --help` in tests/).

Option modes (runner.MODES; --mode, `make fuzz MODE=...`; a list cycles seed by seed):
  off       the kernel with redirect_dir=off (its default format), ovlfs with redirect_dir=off.
  redirect  both with redirect_dir=on (ovlfs's default): renames write overlay.redirect, and
            the redirect values are compared in the upper layers too.
  metacopy  both with metacopy=on and redirect_dir=on (the kernel requires both): chown,
            chmod, utimens and setxattr copy up metadata only.
  index     both with index=on and redirect_dir=on (ovlfs's defaults). The kernel links
            up the name an open or setattr came through (FUSE names only the inode);
            ovlfs links up its node's name, so upper layers and a parent's nlink can
            differ: neither is compared in this mode, but the cross remount must show one
            tree (each finds the other's name through the index).

Compared: each step's result (value or errno name); the visible tree (types, modes, owners,
sizes, content hashes, link targets, rdev, nlink, xattrs incl. escaped trusted.overlay.*,
mtimes, with times set during the run normalised to 'now'); hard-link groups; the upper
layers (whiteouts, opaque values, xattrs; the kernel's origin/impure/uuid/... bookkeeping is
not ovlfs's format and is ignored). At the end, after unmount, a cross remount: ovlfs mounts
the kernel's layers and the kernel mounts ovlfs's, each with its own options of the mode; the
visible tree and hard-link groups each shows must be what the writer showed last (a
"remount" divergence names the direction): each reads the other's on-disk records
(redirects, metacopy marks, the index, origins, whiteouts), bookkeeping included that the
upper comparison ignores. Not compared, by design: st_ino/st_dev, directory sizes,
atime/ctime.

Kernel behaviours modelled (the kernel is the odd one out, or ovlfs differs on purpose;
details and reasons in model.py):
  dir-rename                 lower/merged directory rename (kernel EXDEV; ovlfs copies the
                             tree up, gVisor's way): copy-based move on the kernel side.
  emptiness                  rmdir/rename-over of a directory the kernel calls non-empty
                             while it lists nothing it can look up: xattr whiteouts (kernel
                             6.18's emptiness check counts them) or stray whiteouts in a
                             directory that never merged (the kernel iterates it directly).
  stray-whiteout-listing     readdir of a directory that never merged lists its whiteouts
                             (and xattr whiteouts), names the kernel cannot look up; ovlfs
                             hides them. Kernel listings drop names that fail lookup.
  failed-rename-side-effects a failed rename of a pure-upper directory leaves it opaque on
                             the kernel, and a failed RENAME_WHITEOUT rename touches the
                             parent's times on ext4: undone on the kernel side.
  rename-between-links       rename between two names of one file is a POSIX no-op (ovlfs);
                             the kernel renames (lower hard links are distinct overlay
                             inodes without index=on): not run on the kernel.
Some of these change the kernel's upper layer behind its back and then evict unused dentries
(/proc/sys/vm/drop_caches, mode 2: system-wide but harmless) so that it looks them up again.

ovlfs bugs found: tests/test_fuzz.py lists each with its minimal reproduction, as KNOWN_BUGS
(xfail while open) or FIXED (regression tests); the race found by the stress test is in
tests/test_stress.py (KNOWN_RACES).
"""
import pathlib

from .layers import gen_layers
from .runner import ALL_MODES, MODES, Divergence, run_generated, run_steps
from .shrink import Shrinker, format_repro

__all__ = ["ALL_MODES", "MODES", "Divergence", "Shrinker", "format_repro", "gen_layers", "replay",
           "run_generated", "run_steps"]


def replay(tmp_path, lowers, upper, steps, check_every=1, ovlfs_opts=None, mode=None,
           remount=True):
    """Regression form of a shrunk divergence: replays the steps on both mounts, compared
    after every step (the trees every check_every steps, 0: at the end only); fails on a
    divergence. ovlfs_opts: extra ovlfs -o options (default: OVLFS_FUZZ_OPTS); mode: the
    option mode (runner.MODES; default OVLFS_FUZZ_MODE, else "off"); remount: end with the
    cross remount (runner.Pair.cross_remount)."""
    import pytest
    d, notes = run_steps(pathlib.Path(tmp_path) / "replay", lowers, upper, steps, check_every,
                         ovlfs_opts, mode, remount)
    if d is not None:
        pytest.fail(f"{d}\nmodelled steps: {notes}", pytrace=False)
