"""Where ovlfs differs from the kernel overlayfs on purpose, the fuzzer brings the kernel side
to the state ovlfs is designed to reach, through the kernel mount (plus, for markers the
kernel would not write, its upper layer), and expects ovlfs's documented result. Nothing is
skipped: the modelled step is compared (ovlfs against the modelled result) and the trees
after it are compared like any other.

1. Directory rename of a lower, merged or copied-up directory (rename, RENAME_NOREPLACE and
   RENAME_EXCHANGE). The kernel answers EXDEV (no redirect_dir; doc/semantics.md rule 31);
   ovlfs follows gVisor (rule 32): the directory is copied up with its descendants, renamed on
   upper, made opaque, the whiteouts below it are dropped (nothing is below an opaque
   directory any more) and a whiteout is left at the source when a lower layer has the name.
   ovlfs checks the target first (ENOTEMPTY for a non-empty directory), as the kernel would
   after its EXDEV check; a pure-upper directory moved into a merged parent is made opaque on
   both. Kernel model: a copy-based move through the mount: mkdir the target with the
   source's mode, owner and xattrs, move every child (plain rename for what the kernel can
   move - files, pure-upper directories - so hard links and open fds follow as in ovlfs;
   the same copy-based move for lower/merged subdirectories), rmdir the source (the kernel
   leaves the whiteout), give the target the source's times; then on the kernel's upper:
   opaque="y" on the target, the opaque values the moved directories had before (ovlfs keeps
   them), and no whiteouts below the target, directory times kept. An exchange is three such
   moves through a temporary name in the target's parent.
2. "Emptiness": rmdir of (or rename over, or a directory move leaving) a directory that the
   kernel calls non-empty although it lists nothing it can look up. ovlfs follows rule 24
   (empty = nothing but whiteouts in the merged listing) and removes it. Two kernel causes:
   a. xattr whiteouts (kernel 6.7+, zero-size files with overlay.whiteout in a lower
      directory marked opaque="x"): the emptiness check of kernel 6.18 counts them as
      entries, and the kernel will not put an upper whiteout over a name one hides, so it
      can never remove such a directory. Model: copy the directory up (chown to its owner),
      make its upper copy opaque (it hides nothing the user could see: everything below is
      whited out or about to go), evict the kernel's cached dentries (drop_caches 2, a few
      passes), after which the kernel sees a pure-upper directory and removes it, leaving
      the whiteout ovlfs leaves. Should an open fd of a file that was inside pin the
      directory, the open fds of both sides are closed first (later fd steps then answer
      EBADF on both sides alike); the step's note says so.
   b. Stray whiteouts in a directory that never merged (an upper directory over nothing, a
      lower directory alone in its layer): the kernel iterates such a directory directly,
      so readdir lists the whiteouts (names it cannot look up) and rmdir of an upper one
      fails with ENOTEMPTY in the upper filesystem. ovlfs hides them and removes the
      directory. Model: the kernel's listings drop names it cannot look up (note
      "stray-whiteout-listing", also applied to the tree snapshots), and those upper
      whiteouts are deleted from the kernel's upper directory before the rmdir (they hide
      nothing), dentries evicted.
3. rename (any flags) between two names of one file. POSIX: "If the old argument and the new
   argument resolve to ... different directory entries for the same existing file, rename()
   shall return successfully and perform no other action"; ovlfs does exactly that. The
   kernel without index=on gives the names of a lower hard-link set distinct overlay inodes
   (their link is broken at copy-up) although stat shows them as one file (same st_dev and
   st_ino), so it renames: one name disappears (or, with RENAME_EXCHANGE, both are copied
   up as separate files). Kernel model: the step is not run on the kernel; ovlfs is
   expected to answer 0 and change nothing. (Upper hard links are one overlay inode: the
   kernel's VFS does the same no-op.) RENAME_NOREPLACE still gets the VFS's EEXIST.
4. Side effects of a failed rename on the kernel: it marks a pure-upper source directory
   opaque, or with redirect_dir=on copies up a merged or lower one (and its parents) and
   writes its redirect, before the upper rename fails (ENOTEMPTY), and ext4 updates the parent's times when a
   RENAME_WHITEOUT rename fails with ENOTEMPTY (checked on plain ext4). A failed call must
   change nothing (ovlfs checks first and changes nothing). Model: the copies it made are
   removed, and the opaque value, the redirect and the parents' times are put back in the
   kernel's upper layer, dentries evicted (an
   open fd below the directory would pin its dentry, and with it the stale opaque flag: the
   open fds of both sides are then closed first, see forget()).
5. metacopy=on (the fuzzer's "metacopy" mode): both rename or link a file whose data is
   below as a metadata-only stub with an overlay.redirect to the data. The kernel's data
   copy-up of a metacopy file leaves the upper file with the time of the copy as mtime
   (6.18 sets no timestamps after it), so an open for writing that writes nothing changes
   the mtime there; ovlfs keeps it (POSIX: open changes no time without O_TRUNC). Model:
   the mtime is put back (note "metacopy-copy-up-mtime").
"""
import errno
import os
import shutil
import stat

import write_helpers as wh
from helpers import OPAQUE, XWHITEOUT

XCHG_TMP = ".fuzz-xchg"  # never a generated name
REDIRECT = "trusted.overlay.redirect"
METACOPY = "trusted.overlay.metacopy"


def drop_dentry_cache():
    """Evicts unused dentries and inodes (system-wide; harmless, only slower lookups for a
    moment): the only way to make the kernel overlayfs look a directory up again."""
    for _ in range(3):  # a dentry used lately survives one pass; children pin parents
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")


class ModelError(Exception):
    """The kernel side could not be brought to ovlfs's designed state: a fuzzer problem, or
    a kernel behaviour not modelled yet."""


def _errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


class KernelModel:
    def __init__(self, kroot, kupper, lowers, close_fds=None, kernel_fds=None, metacopy=False):
        self.root = os.fspath(kroot)
        self.upper = os.fspath(kupper)
        self.lowers = [os.fspath(p) for p in lowers]
        self.close_fds = close_fds  # closes the open fds of both sides (see forget)
        self.kernel_fds = kernel_fds  # the kernel side's open fds
        self.fds_closed = False
        self.metacopy = metacopy  # both sides run with metacopy=on (5. above)
        self._stubs = {}

    def k(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def forget(self, rel):
        """Makes the kernel drop its cached dentries at and below rel (after a change to its
        upper layer behind its back). An open fd below rel would pin them: then the open fds
        of both sides are closed first (alike: later fd steps answer EBADF on both)."""
        self._close_fds_if_open_below(rel)
        drop_dentry_cache()

    def u(self, rel):
        return os.path.join(self.upper, rel) if rel else self.upper

    def _close_fds_if_open_below(self, rel, dirs_only=False):
        """Closes the open fds of both sides (alike: later fd steps answer EBADF on both)
        if a kernel-side fd is open at or below rel (on a directory, with dirs_only)."""
        if self.close_fds is None or self.kernel_fds is None:
            return
        top = self.k(rel)
        for fd in self.kernel_fds():
            try:
                path = os.readlink(f"/proc/self/fd/{fd}").removesuffix(" (deleted)")
                is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
            except OSError:
                continue
            if (is_dir or not dirs_only) and (path == top or path.startswith(top + "/")):
                self.close_fds()
                self.fds_closed = True
                return

    def _canon(self, rel):
        """rel with the symlinks of its parent directories resolved, as the kernel resolved
        them (the layers' paths have none); None if that leaves the mount."""
        parent, name = os.path.split(rel)
        if not parent:
            return rel
        root = os.path.realpath(self.root)
        real = os.path.realpath(self.k(parent))
        if real == root:
            return name
        if not real.startswith(root + os.sep):
            return None
        return os.path.join(os.path.relpath(real, root), name)

    # ------------------------------------------------------------------ entry point
    def before(self, step):
        """Called before the kernel runs step: remembers what a failed rename may change.
        Returns (result, note) when the kernel must not run the step at all (3. above)."""
        self._saved = None
        self._stubs = {}
        if self.metacopy and step[0] in ("open", "fopen"):
            rel = step[2] if step[0] == "fopen" else step[1]
            flags = step[3] if step[0] == "fopen" else step[2]
            if not flags & os.O_TRUNC and self._is_stub(rel):
                self._stubs[rel] = os.lstat(self.u(rel))
        if (step[0] == "rename" and not (len(step) > 3 and step[3] & wh.RENAME_NOREPLACE)
                and self._same_file(step[1], step[2])):  # (NOREPLACE: EEXIST from the VFS)
            return 0, "rename-between-links"
        if step[0] == "rename":
            rels = step[1:3]
            parents = {os.path.dirname(r) for r in rels}
            self._saved = ({rel: self._dir_xattr_of_upper(rel, OPAQUE) for rel in rels},
                           {p: self._times_of_upper(p) for p in parents},
                           {rel: self._dir_xattr_of_upper(rel, REDIRECT) for rel in rels},
                           {a for a in map(self._first_absent_upper, rels) if a})
        return None

    def _same_file(self, a, b):
        """Two different names of one non-directory (same st_dev/st_ino through the mount)."""
        if os.path.normpath(a) == os.path.normpath(b):
            return False
        try:
            sa, sb = os.lstat(self.k(a)), os.lstat(self.k(b))
        except OSError:
            return False
        return (not stat.S_ISDIR(sa.st_mode) and (sa.st_dev, sa.st_ino) ==
                (sb.st_dev, sb.st_ino))

    def _dir_xattr_of_upper(self, rel, xattr):
        """xattr of the kernel's upper directory rel: None without it, "absent" without
        the directory."""
        u = self.u(rel)
        if not os.path.isdir(u) or os.path.islink(u):
            return "absent"
        try:
            return os.getxattr(u, xattr)
        except OSError:
            return None

    def _first_absent_upper(self, rel):
        """The outermost directory of rel's path (or rel) not in the kernel's upper layer."""
        parts = rel.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if not os.path.lexists(self.u(prefix)):
                return prefix
        return None

    def _times_of_upper(self, rel):
        try:
            st = os.lstat(self.u(rel))
        except OSError:
            return None
        return st.st_atime_ns, st.st_mtime_ns

    def _undo_failed_rename(self):
        """A failed rename changes nothing on ovlfs; the kernel may have made a pure-upper
        source directory opaque (it marks it before the upper rename fails) and ext4 touches
        the parent's times when a RENAME_WHITEOUT rename fails (ENOTEMPTY): put both back."""
        undone = False
        opaque, times, redirects, absent = self._saved or ({}, {}, {}, set())
        # With redirect_dir=on the kernel copies the source (and its parents) up before the
        # rename fails: what was not in its upper layer before goes again.
        for rel in sorted(absent):
            if os.path.lexists(self.u(rel)):
                self._close_fds_if_open_below(rel)
                parent = os.path.dirname(rel)
                ptimes = self._times_of_upper(parent)
                if os.path.isdir(self.u(rel)) and not os.path.islink(self.u(rel)):
                    shutil.rmtree(self.u(rel))
                else:
                    os.unlink(self.u(rel))
                os.utime(self.u(parent), ns=ptimes, follow_symlinks=False)
                self.forget(rel)
                undone = True
        for xattr, saved in ((OPAQUE, opaque), (REDIRECT, redirects)):
            for rel, old in saved.items():
                # a directory the failed rename copied up: copy-up alone writes no redirect
                if old == "absent" and xattr == REDIRECT:
                    old = None
                if old == "absent" or self._dir_xattr_of_upper(rel, xattr) in (old, "absent"):
                    continue
                if old is None:
                    os.removexattr(self.u(rel), xattr)
                else:
                    os.setxattr(self.u(rel), xattr, old)
                self.forget(rel)  # the kernel keeps both with its dentry
                undone = True
        for rel, old in times.items():
            if old is not None and self._times_of_upper(rel) != old:
                os.utime(self.u(rel), ns=old, follow_symlinks=False)
                undone = True
        return undone

    def adjust(self, step, kres):
        """Given a step and the kernel's result for it, returns (expected ovlfs result, note):
        note is None when the kernel's result is ovlfs's too, otherwise it says which modelled
        difference applied (and the kernel tree now holds ovlfs's designed outcome)."""
        res, note = self._adjust(step, kres)
        if not self.metacopy:
            return res, note
        try:
            extra = self._metacopy_adjust()
        except OSError as e:
            raise ModelError(f"modelling {step!r} (metacopy) failed: {e}") from e
        return res, (f"{note}, {extra}" if note and extra else note or extra)

    # ------------------------------------------------------------------ metacopy (5.)
    def _is_stub(self, rel):
        try:
            st = os.lstat(self.u(rel))
            return stat.S_ISREG(st.st_mode) and os.getxattr(self.u(rel), METACOPY,
                                                            follow_symlinks=False) is not None
        except OSError:
            return False

    def _metacopy_adjust(self):
        note = None
        for rel, st in self._stubs.items():  # an open for writing copied the data up
            if not self._is_stub(rel) and os.path.lexists(self.u(rel)):
                now = os.lstat(self.u(rel))
                if now.st_mtime_ns != st.st_mtime_ns:
                    os.utime(self.u(rel), ns=(now.st_atime_ns, st.st_mtime_ns),
                             follow_symlinks=False)
                    note = "metacopy-copy-up-mtime"
        return note

    def _adjust(self, step, kres):
        op = step[0]
        try:
            if op in ("ls", "lsd") and isinstance(kres, list):
                shown = [e for e in kres if self._exists(step[1], e if op == "ls" else e[0])]
                if shown != kres:
                    return shown, "stray-whiteout-listing"
            elif op == "rename":
                flags = step[3] if len(step) > 3 else 0
                note = None
                if kres == "ENOTEMPTY" and self._empty_to_ovlfs(step[2]):
                    # ovlfs replaces the (empty to it) target: remove it as rmdir would
                    self.rmdir(step[2])
                    kres = self._kernel_rename(step[1], step[2], flags)
                    note = "emptiness"
                    if kres != "EXDEV":
                        return kres, note
                if kres == "EXDEV":
                    src, dst = self._canon(step[1]), self._canon(step[2])
                    if src is None or dst is None:
                        return kres, note  # a symlink out of the mount: EXDEV for both
                    return self.rename(src, dst, flags), "dir-rename"
                if kres != 0 and self._undo_failed_rename():
                    return kres, note or "failed-rename-side-effects"
            elif op == "rmdir" and kres == "ENOTEMPTY" and self._empty_to_ovlfs(step[1]):
                self.rmdir(step[1])
                return 0, "emptiness"
        except OSError as e:
            raise ModelError(f"modelling {step!r} failed: {e}") from e
        return kres, None

    def _exists(self, rel, name):
        try:
            os.lstat(os.path.join(self.k(rel), name))
            return True
        except FileNotFoundError:
            return False

    def _kernel_rename(self, src, dst, flags):
        try:
            return wh.renameat2(self.k(src), self.k(dst), flags)
        except OSError as e:
            return _errname(e)

    # ------------------------------------------------------------------ xattr whiteouts
    def _lower_path(self, rel):
        """Where rel's directory is in the lower layers: its path, moved by the redirects
        (redirect_dir=on) the kernel wrote on it or its parents in its upper layer."""
        low = ""
        for i, name in enumerate(rel.split("/") if rel else []):
            up = self.u("/".join(rel.split("/")[:i + 1]))
            try:
                r = os.fsdecode(os.getxattr(up, REDIRECT, follow_symlinks=False))
            except OSError:
                r = None
            if r is not None and r.startswith("/"):
                low = r.lstrip("/")
            else:
                low = os.path.join(low, r or name) if low else r or name
        return low

    def _xwh_names(self, rel):
        names = set()
        rel = self._lower_path(rel)
        for layer in self.lowers:
            d = os.path.join(layer, rel) if rel else layer
            if not os.path.isdir(d) or os.path.islink(d):
                continue
            try:
                if os.getxattr(d, OPAQUE) != b"x":
                    continue
            except OSError:
                continue
            for n in os.listdir(d):
                p = os.path.join(d, n)
                st = os.lstat(p)
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    try:
                        os.getxattr(p, XWHITEOUT, follow_symlinks=False)
                        names.add(n)
                    except OSError:
                        pass
        return names

    def _empty_to_ovlfs(self, rel):
        """A directory the kernel calls non-empty although it shows nothing it can look up:
        xattr whiteouts below, or stray whiteouts in a directory that never merged."""
        p = self.k(rel)
        try:
            if not stat.S_ISDIR(os.lstat(p).st_mode):
                return False
            return not any(self._exists(rel, n) for n in os.listdir(p))
        except OSError:
            return False

    def _stray_whiteouts(self, rel):
        u = self.u(rel)
        if not os.path.isdir(u) or os.path.islink(u):
            return []
        return [os.path.join(u, n) for n in os.listdir(u) if wh.is_whiteout(os.path.join(u, n))]

    def make_kernel_agree_empty(self, rel):
        """Drops the whiteouts of rel's upper directory that the kernel lists (a directory
        that never merged: it does not take them for whiteouts; they hide nothing)."""
        listed = os.listdir(self.k(rel))
        removed = False
        for p in self._stray_whiteouts(rel):
            if os.path.basename(p) in listed:
                os.unlink(p)
                removed = True
        if removed:
            self.forget(rel)  # it may hold dentries of what we removed (else ESTALE)

    def rmdir(self, rel):
        try:
            os.rmdir(self.k(rel))
            return
        except OSError as e:
            if e.errno != errno.ENOTEMPTY or not self._empty_to_ovlfs(rel):
                raise
        self.make_kernel_agree_empty(rel)
        try:
            os.rmdir(self.k(rel))
            return
        except OSError as e:
            if e.errno != errno.ENOTEMPTY or not self._xwh_names(rel):
                raise
        # xattr whiteouts: the kernel counts them as entries and will not put an upper
        # whiteout over a name they hide. Copy the directory up (chown to its own owner),
        # make its upper copy opaque and whiteout-free (it hides nothing any more: the whole
        # directory is going), and have the kernel look it up again (it caches the merged
        # dentry): it is then a pure-upper directory and rmdir leaves the whiteout that ovlfs
        # leaves.
        # An open fd on a file that was inside pins the directory's dentry: then the fds of
        # both sides are closed (the same on both: later fd steps answer EBADF on both).
        p = self.k(rel)
        st = os.lstat(p)
        os.chown(p, st.st_uid, st.st_gid, follow_symlinks=False)
        for w in self._stray_whiteouts(rel):
            os.unlink(w)
        os.setxattr(self.u(rel), OPAQUE, b"y")
        if self._rmdir_after_forgetting(p):
            return
        if self.close_fds is None:
            raise ModelError(f"rmdir {rel}: the kernel keeps its cached directory")
        self.close_fds()
        self.fds_closed = True
        if not self._rmdir_after_forgetting(p):
            raise ModelError(f"rmdir {rel}: the kernel keeps its cached directory even "
                             "with every fd closed")

    @staticmethod
    def _rmdir_after_forgetting(p):
        # Cached child dentries pin their parent and recently used ones survive one pass of
        # the shrinker: a few rounds.
        for _ in range(4):
            drop_dentry_cache()
            try:
                os.rmdir(p)
                return True
            except OSError as e:
                if e.errno != errno.ENOTEMPTY:
                    raise
        return False

    # ------------------------------------------------------------------ directory rename
    def rename(self, src, dst, flags):
        """ovlfs's rename(src, dst, flags) where the kernel said EXDEV: returns ovlfs's
        result and leaves the kernel tree as ovlfs leaves its own."""
        if flags & wh.RENAME_EXCHANGE:
            parent = os.path.dirname(dst)
            tmp = f"{parent}/{XCHG_TMP}" if parent else XCHG_TMP
            self.move(src, tmp)
            self.move(dst, src)
            self.move(tmp, dst)
            return 0
        d = self.k(dst)
        if os.path.lexists(d):
            # the VFS already checked types, loops and NOREPLACE: dst is a directory here
            if any(self._exists(dst, n) for n in os.listdir(d)):
                return "ENOTEMPTY"
            # The model removes the target (rmdir), ovlfs renames over it: a kernel-side fd
            # on it would see an emptied directory (ext4: size 0) where ovlfs's sees one
            # replaced by a rename (size kept).
            self._close_fds_if_open_below(dst, dirs_only=True)
            self.rmdir(dst)
        self.move(src, dst)
        return 0

    def move(self, src, dst):
        """Moves src to the free name dst, ovlfs's way."""
        try:
            os.rename(self.k(src), self.k(dst))
            return
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
        opaque = self._opaque_values(src)
        # The model moves a directory by copying it, ovlfs renames it: a kernel-side fd on
        # a directory there would stay on the removed copy where ovlfs's follows the move.
        self._close_fds_if_open_below(src, dirs_only=True)
        self._copy_move(src, dst)
        self._fix_upper(dst, opaque)

    def _opaque_values(self, rel):
        """{relative path below rel: opaque value} of the upper directories at rel."""
        out = {}
        top = self.u(rel)
        if not os.path.isdir(top) or os.path.islink(top):
            return out
        for dirpath, dirnames, _ in os.walk(top):
            r = os.path.relpath(dirpath, top)
            try:
                out[r] = os.getxattr(dirpath, OPAQUE)
            except OSError:
                pass
        return out

    def _copy_move(self, src, dst):
        s, d = self.k(src), self.k(dst)
        st = os.lstat(s)
        xattrs = [(n, os.getxattr(s, n, follow_symlinks=False))
                  for n in os.listxattr(s, follow_symlinks=False)]
        os.mkdir(d, 0o700)
        os.lchown(d, st.st_uid, st.st_gid)
        os.chmod(d, stat.S_IMODE(st.st_mode))
        for n, v in xattrs:
            os.setxattr(d, n, v, follow_symlinks=False)
        for name in sorted(os.listdir(s)):
            if not self._exists(src, name):
                continue  # a stray whiteout the kernel lists (see adjust)
            try:
                os.rename(os.path.join(s, name), os.path.join(d, name))
            except OSError as e:
                if e.errno != errno.EXDEV:
                    raise
                self._copy_move(f"{src}/{name}", f"{dst}/{name}")
        self.rmdir(src)
        os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def _fix_upper(self, dst, opaque):
        top = self.u(dst)
        for r, v in opaque.items():
            p = os.path.normpath(os.path.join(top, r))
            if os.path.isdir(p) and not os.path.islink(p):
                os.setxattr(p, OPAQUE, v)
        os.setxattr(top, OPAQUE, b"y")
        purged = False
        for dirpath, dirnames, filenames in os.walk(top):
            dst_st = os.lstat(dirpath)
            removed = False
            for n in filenames:
                p = os.path.join(dirpath, n)
                if wh.is_whiteout(p):
                    os.unlink(p)
                    removed = purged = True
            if removed:
                os.utime(dirpath, ns=(dst_st.st_atime_ns, dst_st.st_mtime_ns))
        if purged:
            self.forget(dst)  # it may hold dentries of the whiteouts (else ESTALE)
