"""The differential runner: the kernel overlayfs (the reference, KERNEL_OPTS as in
test_differential_write.py) and ovlfs, each over its own identical copy of the layers, both
mounted at once; every step is applied to both and compared:
  * after every step: its result (value or errno name; for a step where ovlfs differs on
    purpose, ovlfs's result against the modelled one, see model.py);
  * every `check_every` steps and at the end: the visible trees (helpers.snapshot: types,
    modes, owners, sizes, content hashes, link targets, rdev, nlink, non-overlay xattrs,
    mtimes with times set during the run normalised to 'now'), the hard-link groups, and the
    upper layers (whiteouts, opaque marks, xattrs incl. the escaped trusted.overlay.overlay.*,
    kernel bookkeeping xattrs ignored);
  * at the end, after unmounting: the upper layers again, ovlfs's work/work (empty) and
    ovlfs's exit status (0);
  * then a cross remount: ovlfs mounts the kernel's layers and the kernel mounts ovlfs's
    (each with its own options of the mode); each must show the visible tree and hard-link
    groups its writer showed last, since each reads the other's on-disk records.
Not compared, by design: st_ino/st_dev, directory sizes, atime/ctime.
A watchdog kills the ovlfs daemon (this run's, by pid) when one step takes longer than
STEP_TIMEOUT: the stuck call then fails with ENOTCONN and the run reports a divergence
instead of hanging."""
import contextlib
import os
import pathlib
import threading
import time

import write_helpers as wh
from helpers import MountError, build_layers, diff_snapshots
from . import ops as fops
from .model import KernelModel, ModelError

STEP_TIMEOUT = 30.0
CHECK_EVERY = 25
REDIRECT = "trusted.overlay.redirect"

# Option modes: the kernel's options and ovlfs's for one run, and the kernel bookkeeping
# xattrs compared in the upper layers on top of the rest. "off": the kernel's default format
# (the model copies directory renames as redirect_dir=off does, see model.py). "redirect":
# both write redirects, whose values must match. "metacopy": metadata-only copy-up on both
# (the kernel needs redirect_dir=on with it); the metacopy mark is compared in any mode.
MODES = {
    "off": dict(kernel=wh.KERNEL_OPTS, ovlfs=wh.OVLFS_OPTS, keep=()),
    "redirect": dict(kernel=("index=off", "redirect_dir=on", "metacopy=off"),
                     ovlfs=("index=off", "redirect_dir=on"), keep=(REDIRECT,)),
    "metacopy": dict(kernel=("index=off", "redirect_dir=on", "metacopy=on"),
                     ovlfs=("index=off", "redirect_dir=on", "metacopy=on"), keep=(REDIRECT,)),
}
# "index": ovlfs's defaults (the inode index and redirect_dir on) against the kernel with
# the same options; lower hard links stay one file (the index lives in the work directory,
# whose entry names hold each side's own inode numbers: not compared). Known difference:
# the kernel links up the very name an open or a setattr went through; a FUSE request names
# only the inode, so ovlfs links up the name its node keeps, and a parent copied up for it
# may differ. So the upper layers and directories' link counts are not compared here
# (same_upper), but the cross remount shows one tree all the same: each side finds the
# other's linked-up name through the index (test_fuzz.py,
# test_cross_remount_index_other_name_linked_up). (redirect_dir=on: with it off, ovlfs
# renames a directory by copying it and keeps its hard links, where the kernel's EXDEV makes
# mv copy them apart.)
MODES["index"] = dict(kernel=("index=on", "redirect_dir=on", "metacopy=off"),
                      ovlfs=("redirect_dir=on", "index=on"), keep=(REDIRECT,),
                      same_upper=False)
ALL_MODES = tuple(MODES)
DEFAULT_MODE = "off"


def mode_of(mode=None):
    """The mode given, else OVLFS_FUZZ_MODE, else "off"."""
    mode = mode or os.environ.get("OVLFS_FUZZ_MODE") or DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"unknown fuzz mode {mode!r} (one of {', '.join(MODES)})")
    return mode


class Divergence(Exception):
    """kind: result | tree | links | upper | work | daemon | model | hang | remount."""

    def __init__(self, kind, index, step, detail):
        super().__init__(f"{kind} divergence at step {index} {step!r}:\n{detail}")
        self.kind, self.index, self.step, self.detail = kind, index, step, detail

    def signature(self):
        return (self.kind, self.step[0] if self.kind in ("result", "model") and self.step
                else None)


class _Watchdog:
    def __init__(self):
        self.deadline = None
        self.proc = None
        self.fired = False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.25):
            d, p = self.deadline, self.proc
            if d is not None and p is not None and time.monotonic() > d and p.poll() is None:
                self.fired = True
                p.kill()  # only the daemon this run started

    def arm(self, proc, seconds):
        self.proc, self.deadline = proc, time.monotonic() + seconds

    def disarm(self):
        self.deadline = None

    def stop(self):
        self._stop.set()
        self._t.join()


class Pair(contextlib.AbstractContextManager):
    """Both mounts of one run. Use as a context manager; finish() does the final checks."""

    def __init__(self, base, lowers, upper, check_every=CHECK_EVERY, step_timeout=STEP_TIMEOUT,
                 ovlfs_opts=None, mode=None, remount=True):
        self.base = pathlib.Path(base)
        self.remount = remount  # finish() ends with the cross remount
        self.lowers, self.upper = lowers, upper
        self.check_every = check_every
        self.step_timeout = step_timeout
        # extra ovlfs mount options (-o), e.g. writeback=1; default: OVLFS_FUZZ_OPTS
        self.ovlfs_opts = tuple(o for o in (ovlfs_opts if ovlfs_opts is not None else
                                            os.environ.get("OVLFS_FUZZ_OPTS", "")).split(",")
                                if o)
        self.mode = mode_of(mode)
        m = MODES[self.mode]
        self.kernel_opts, self.keep_xattrs = m["kernel"], m["keep"]
        # False where the upper layers differ by design (index: which name of a group is
        # linked up, and so which parents are copied up): those are not compared, nor the
        # link counts of directories (a merged one shows 1, a copied-up one its own); each
        # side's reading of the other's layers (the cross remount) still is
        self.same_upper = m.get("same_upper", True)
        # the mode's options first: explicit ones (later) win
        given = {o.split("=")[0] for o in self.ovlfs_opts}
        self.ovlfs_opts = tuple(o for o in m["ovlfs"] if o.split("=")[0] not in given) + \
            self.ovlfs_opts
        self.stack = contextlib.ExitStack()
        self.notes = {}  # step index -> modelled difference applied
        self.index = 0
        self.finished = False
        self.last_views = None  # (kernel, ovlfs): visible tree and link groups, last check

    def __enter__(self):
        self.base.mkdir(parents=True, exist_ok=True)
        self.kset = build_layers(self.base / "k", self.lowers, self.upper)
        self.oset = build_layers(self.base / "o", self.lowers, self.upper)
        self.t0 = time.time_ns() - 10**9
        try:
            self.km = self.stack.enter_context(
                self.kset.kernel(mnt=self.base / "mk", extra_opts=self.kernel_opts))
            self.om = self.stack.enter_context(
                self.oset.ovlfs(mnt=self.base / "mo", extra_opts=self.ovlfs_opts))
        except BaseException:
            self.stack.close()
            raise
        self.kstate, self.ostate = fops.new_state(), fops.new_state()
        self.model = KernelModel(self.km, self.kset.upper, self.kset.lowers, self._close_fds,
                                 lambda: list(self.kstate["fds"].values()),
                                 metacopy=self.mode == "metacopy")
        self.dog = _Watchdog()
        return self

    def __exit__(self, *exc):
        self.dog.stop()
        fops.close_state(self.kstate)
        fops.close_state(self.ostate)
        with contextlib.suppress(MountError):
            self.stack.close()
        return False

    # ------------------------------------------------------------------ steps
    def apply(self, step):
        """Applies one step to both sides; raises Divergence."""
        i = self.index
        self.index += 1
        if step[0] == "check":  # a pseudo-step: the full comparison, here
            self.check(i, step)
            return None
        override = self.model.before(step)
        if override is not None:
            kres = "(not run on the kernel)"
            expected, note = override
        else:
            kres = fops.execute(self.km, self.kstate, step, self.t0)
            try:
                expected, note = self.model.adjust(step, kres)
            except ModelError as e:
                raise Divergence("model", i, step, str(e)) from None
        if self.model.fds_closed:
            self.model.fds_closed = False
            note = (note or "") + " (open fds of both sides closed)"
        if note:
            self.notes[i] = note
        self.dog.arm(self.om.proc, self.step_timeout)
        try:
            ores = fops.execute(self.om, self.ostate, step, self.t0)
        finally:
            self.dog.disarm()
        if self.dog.fired:
            raise Divergence("hang", i, step, f"ovlfs did not answer within "
                             f"{self.step_timeout}s; the daemon was killed")
        if expected != ores:
            what = f" (modelled: {note}; the kernel said {kres!r})" if note else ""
            raise Divergence("result", i, step, f"kernel={_short(expected)} "
                             f"ovlfs={_short(ores)}{what}")
        if self.check_every and self.index % self.check_every == 0:
            self.check(i, step)
        return ores

    def _close_fds(self):
        fops.close_state(self.kstate)
        fops.close_state(self.ostate)

    def view(self):
        return fops.view_of(self.km)

    # ------------------------------------------------------------------ comparisons
    def check(self, i=None, step=None, upper=True):
        i = self.index - 1 if i is None else i
        self.dog.arm(self.om.proc, self.step_timeout * 4)
        try:
            self._check(i, step, upper)
        finally:
            self.dog.disarm()
        if self.dog.fired:
            raise Divergence("hang", i, step, "ovlfs did not answer while the trees were "
                             "compared; the daemon was killed")

    def _view(self, mnt, kernel):
        vis = wh.visible_snapshot(mnt, self.t0, dir_nlink=self.same_upper)
        if not kernel:
            return vis
        # the kernel lists stray whiteouts of directories that never merged, names it cannot
        # look up (model.py, "stray-whiteout-listing"); ovlfs hides them
        return {p: r for p, r in vis.items() if r != {"lstat_error": "ENOENT"}}

    def _check(self, i, step, upper):
        kvis, ovis = self._view(self.km, True), self._view(self.om, False)
        lines = diff_snapshots(kvis, ovis, ("kernel", "ovlfs"))
        if lines:
            raise Divergence("tree", i, step, "\n".join(lines))
        kl, ol = wh.link_groups(self.km), wh.link_groups(self.om)
        self.last_views = ((kvis, kl), (ovis, ol))
        if kl != ol:
            raise Divergence("links", i, step, f"hard-link groups: kernel {kl} ovlfs {ol}")
        if upper:
            self.check_upper(i, step)

    def check_upper(self, i, step, when="while mounted"):
        if not self.same_upper:
            return
        ku = wh.upper_snapshot(self.kset.upper, self.t0, keep=self.keep_xattrs)
        ou = wh.upper_snapshot(self.oset.upper, self.t0, keep=self.keep_xattrs)
        lines = diff_snapshots(ku, ou, ("kernel upper", "ovlfs upper"))
        if lines:
            raise Divergence("upper", i, step, f"upper layers differ ({when}):\n" +
                             "\n".join(lines))

    def finish(self):
        """Final comparison, unmount, then the upper layers, work dir and exit status."""
        i = self.index - 1
        self.check(i, None)
        self.dog.stop()
        fops.close_state(self.kstate)
        fops.close_state(self.ostate)
        try:
            self.stack.close()
        except MountError as e:
            raise Divergence("daemon", i, None, str(e)) from None
        self.check_upper(i, None, "after unmount")
        left = wh.work_leftovers(self.oset.work)
        if left:
            raise Divergence("work", i, None, f"stray entries in ovlfs's work/work: {left}")
        if self.remount:
            self.cross_remount(i)
        self.finished = True

    def cross_remount(self, i):
        """ovlfs over the kernel's layers and the kernel over ovlfs's, each with its own
        options of the mode: each must show what the writer showed before unmount."""
        kview, oview = self.last_views
        self.dog = _Watchdog()  # the first one stopped with the first mounts
        try:
            with contextlib.ExitStack() as stack:
                try:
                    om = stack.enter_context(self.kset.ovlfs(mnt=self.base / "rk",
                                                             extra_opts=self.ovlfs_opts))
                    km = stack.enter_context(self.oset.kernel(mnt=self.base / "ro",
                                                              extra_opts=self.kernel_opts))
                except MountError as e:
                    raise Divergence("remount", i, None, f"cross remount failed: {e}") from None
                self.dog.arm(om.proc, self.step_timeout * 4)
                try:
                    seen = {"ovlfs reading the kernel's layers":
                            (kview, self._links_view(om, False)),
                            "the kernel reading ovlfs's layers":
                            (oview, self._links_view(km, True))}
                finally:
                    self.dog.disarm()
                if self.dog.fired:
                    raise Divergence("hang", i, None, "ovlfs did not answer over the kernel's "
                                     "layers; the daemon was killed")
                for direction, (before, after) in seen.items():
                    lines = diff_snapshots(before[0], after[0], ("writer", "reader"))
                    if before[1] != after[1]:
                        lines.append(f"hard-link groups: writer {before[1]} reader {after[1]}")
                    if lines:
                        raise Divergence("remount", i, None,
                                         f"{direction} (writer before unmount, reader after "
                                         "remount):\n" + "\n".join(lines))
        except MountError as e:  # at unmount: ovlfs's exit status
            raise Divergence("daemon", i, None, f"after the cross remount: {e}") from None
        finally:
            self.dog.stop()

    def _links_view(self, mnt, kernel):
        return self._view(mnt, kernel), wh.link_groups(mnt)


def _short(v, n=300):
    s = repr(v)
    return s if len(s) <= n else s[:n] + f"...({len(s)} chars)"


def run_steps(base, lowers, upper, steps, check_every=CHECK_EVERY, ovlfs_opts=None, mode=None,
              remount=True):
    """Replays steps; returns (None, notes) or (Divergence, notes)."""
    with Pair(base, lowers, upper, check_every, ovlfs_opts=ovlfs_opts, mode=mode,
              remount=remount) as pair:
        try:
            for step in steps:
                pair.apply(step)
            pair.finish()
        except Divergence as d:
            return d, pair.notes
    return None, pair.notes


def run_generated(base, seed, lowers, upper, nops, check_every=CHECK_EVERY, exclude=(),
                  mode=None):
    """Generates and applies nops steps for seed (without the ops in exclude) in an option
    mode (MODES); returns (steps applied, Divergence|None, notes)."""
    gen = fops.OpGen(seed, exclude)
    steps = []
    view = None
    with Pair(base, lowers, upper, check_every, mode=mode) as pair:
        try:
            for _ in range(nops):
                if view is None:
                    view = pair.view()
                step = gen.next(view)
                steps.append(step)
                pair.apply(step)
                if step[0] in fops.MUTATING or pair.notes.get(pair.index - 1):
                    view = None
            pair.finish()
        except Divergence as d:
            return steps, d, pair.notes
    return steps, None, pair.notes
