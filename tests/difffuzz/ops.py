"""Operations of the differential fuzzer: a random generator of steps, and their executor.

A step is a tuple (op, *args) with paths relative to the mount, in the notation of
write_helpers.run_steps (so that a reproduction pastes into test_differential_write.py as an
S(...) scenario), plus a few ops of our own (EXTRA_OPS): ftruncate on an open fd, stat that
follows symlinks, readdir with d_type. Results are plain values (data, names, small stat
dicts, 0) or the errno name, as write_helpers' runner gives them, times set during the run
normalised to 'now'.

Opening a FIFO would block: every op that opens a path checks the type first (both mounts
get the same check) and answers 'fifo' without opening it."""
import errno
import os
import random
import stat

import write_helpers as wh
from helpers import FIXED_MTIME
from .layers import ALPHABET, NAMES

NS = 10**9
NEW_NAMES = NAMES + ("e", "n")
XATTRS = ("user.x", "user.y", "user.z", "user.n")
RARE_XATTRS = ("trusted.overlay.foo", "trusted.t", "user.overlay.q")
SLOTS = ("f0", "f1", "f2")
O = os
OPEN_FLAGS = (O.O_RDONLY, O.O_RDONLY, O.O_RDWR, O.O_WRONLY | O.O_TRUNC, O.O_RDONLY | O.O_TRUNC,
              O.O_WRONLY | O.O_CREAT, O.O_RDWR | O.O_CREAT | O.O_EXCL, O.O_WRONLY | O.O_APPEND,
              O.O_RDONLY | O.O_DIRECTORY, O.O_WRONLY | O.O_CREAT | O.O_TRUNC)
FOPEN_FLAGS = (O.O_RDONLY, O.O_RDONLY, O.O_RDONLY, O.O_RDWR, O.O_WRONLY, O.O_RDWR | O.O_APPEND,
               O.O_RDWR | O.O_CREAT)
FALLOC_MODES = (0, wh.FALLOC_FL_KEEP_SIZE, wh.FALLOC_FL_PUNCH_HOLE | wh.FALLOC_FL_KEEP_SIZE,
                wh.FALLOC_FL_ZERO_RANGE, wh.FALLOC_FL_ZERO_RANGE | wh.FALLOC_FL_KEEP_SIZE)
OPENS_PATH = {"read", "write", "append", "creat", "open", "pread", "fallocate", "fopen"}
EXTRA_OPS = {"ftruncate", "statf", "lsd"}
MUTATING = {"write", "append", "creat", "excl", "open", "truncate", "unlink", "rmdir", "mkdir",
            "mknod", "symlink", "link", "rename", "chmod", "chown", "utime", "setx", "rmx",
            "fallocate", "fopen", "fwrite", "ftruncate", "fclose"}


# --------------------------------------------------------------------------- executor

def _dtype(entry):
    if entry.is_symlink():
        return "l"
    if entry.is_dir(follow_symlinks=False):
        return "d"
    if entry.is_file(follow_symlinks=False):
        return "f"
    return "o"


def _is_fifo(path):
    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _exec(root, state, step):
    op, args = step[0], step[1:]
    fds = state["fds"]
    if op in OPENS_PATH:
        path = root / (args[1] if op == "fopen" else args[0])
        if _is_fifo(path):
            return "fifo"
    if op == "fopen":  # a slot already open is closed first
        if args[0] in fds:
            os.close(fds.pop(args[0]))
        fds[args[0]] = os.open(root / args[1], args[2], 0o644)
        return 0
    if op in ("fread", "fwrite", "fstat", "fsync", "fclose", "ftruncate") and args[0] not in fds:
        return "EBADF"
    if op == "ftruncate":
        return os.ftruncate(fds[args[0]], args[1]) or 0
    if op == "statf":  # stat following symlinks
        st = os.stat(root / args[0])
        rec = {"mode": oct(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
               "nlink": st.st_nlink, "mtime_ns": st.st_mtime_ns}
        if not stat.S_ISDIR(st.st_mode):
            rec["size"] = st.st_size
        return rec
    if op == "read":  # as write_helpers.read, without leaking the fd of a directory
        try:
            fd = os.open(root / args[0], os.O_RDONLY | os.O_NOATIME)
        except OSError:
            fd = os.open(root / args[0], os.O_RDONLY)
        try:
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return wh._data(b"".join(chunks))
        finally:
            os.close(fd)
    if op == "lsd":
        with os.scandir(root / args[0]) as it:
            return sorted((e.name, _dtype(e)) for e in it)
    return wh._op(root, state, op, args)


def execute(root, state, step, since_ns):
    """Runs one step on the tree at root; returns its result (errno name on failure)."""
    try:
        return wh.norm_result(_exec(root, state, step), since_ns)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def new_state():
    return {"fds": {}, "maps": {}}


def close_state(state):
    for fd in state["fds"].values():
        try:
            os.close(fd)
        except OSError:
            pass
    state["fds"].clear()


# --------------------------------------------------------------------------- view

def view_of(root):
    """{relpath: (type, size)} of the visible tree (type d, f, l, p, c, s, b)."""
    out = {}
    root = os.fspath(root)

    def walk(d, rel):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            return
        for n in names:
            r = f"{rel}/{n}" if rel else n
            try:
                st = os.lstat(os.path.join(d, n))
            except OSError:
                continue
            m = st.st_mode
            t = ("d" if stat.S_ISDIR(m) else "f" if stat.S_ISREG(m) else "l" if stat.S_ISLNK(m)
                 else "p" if stat.S_ISFIFO(m) else "c" if stat.S_ISCHR(m) else "s")
            out[r] = (t, st.st_size)
            if t == "d" and r.count("/") < 3:
                walk(os.path.join(d, n), r)

    walk(root, "")
    return out


# --------------------------------------------------------------------------- generator

class OpGen:
    """Random steps over the namespace, biased towards names that exist (the view of the
    reference mount when the step is generated): the steps themselves are concrete, so a
    sequence replays without the generator."""

    WEIGHTS = dict(read=6, pread=4, write=8, append=2, creat=6, excl=2, open=4, truncate=4,
                   fallocate=3, chmod=4, chown=3, utime=3, setx=4, getx=3, listx=3, rmx=3,
                   mkdir=5, rmdir=5, unlink=6, rename=12, link=3, symlink=3, mknod=2, ls=5,
                   lsd=2, stat=7, statf=2, readlink=2, fopen=3, fread=4, fwrite=2,
                   ftruncate=2, fstat=2, fclose=2, fsync=1, macro_fd=2, macro_dirmove=2)

    def __init__(self, seed, exclude=()):
        self.rng = random.Random(f"ops-{seed}")
        self.ops, self.weights = zip(*((op, 0 if op in exclude else w)
                                       for op, w in self.WEIGHTS.items()))
        self.open_slots = set()
        self.pending = []

    # ---- path pickers
    def _existing(self, view, types=None):
        cands = [p for p, (t, _) in view.items() if types is None or t in types]
        return self.rng.choice(cands) if cands else None

    def _random_path(self):
        depth = self.rng.choice((1, 1, 2, 2, 3))
        return "/".join(self.rng.choice(NEW_NAMES) for _ in range(depth))

    def _fresh(self, view):
        dirs = [""] + [p for p, (t, _) in view.items() if t == "d" and p.count("/") < 2]
        parent = self.rng.choice(dirs)
        name = self.rng.choice(NEW_NAMES)
        return f"{parent}/{name}" if parent else name

    def path(self, view, types=None, p_exist=0.8):
        r = self.rng.random()
        if r < p_exist:
            p = self._existing(view, types)
            if p is not None:
                return p
        if r < p_exist + (1 - p_exist) / 2:
            return self._fresh(view)
        return self._random_path()

    def _size(self, view, p):
        t = view.get(p)
        return t[1] if t and t[0] == "f" else 0

    def _data(self):
        r = self.rng.random()
        n = (self.rng.randint(1, 16) if r < 0.6 else self.rng.randint(100, 5000) if r < 0.95
             else self.rng.randint(10000, 40000))
        unit = bytes(self.rng.choice(ALPHABET) for _ in range(min(n, 13)))
        return (unit * (n // len(unit) + 1))[:n]

    def _offset(self, size):
        r = self.rng.random()
        if r < 0.3:
            return 0
        if r < 0.8:
            return self.rng.randint(0, max(size, 1))
        if r < 0.95:
            return size + self.rng.randint(0, 9000)
        return self.rng.choice((4095, 4096, 65536, 131072 + 17))

    def _time(self):
        r = self.rng.random()
        if r < 0.2:
            return "now"
        if r < 0.35:
            return "omit"
        return (FIXED_MTIME + self.rng.randint(0, 5000)) * NS + self.rng.randint(0, NS - 1)

    def _slot(self, opened=True):
        pool = sorted(self.open_slots) if opened and self.open_slots else SLOTS
        return self.rng.choice(pool)

    # ---- steps
    def next(self, view):
        if self.pending:
            return self.pending.pop(0)
        op = self.rng.choices(self.ops, self.weights)[0]
        step = getattr(self, "_gen_" + op, None)
        step = step(view) if step else self._gen_simple(op, view)
        if step[0] == "fopen":
            self.open_slots.add(step[1])
        elif step[0] == "fclose":
            self.open_slots.discard(step[1])
        return step

    def _gen_simple(self, op, view):
        rng = self.rng
        f = lambda: self.path(view, "f")  # noqa: E731
        if op == "read":
            return ("read", self.path(view, "fl"))
        if op == "pread":
            p = self.path(view, "f")
            return ("pread", p, rng.randint(1, 9000), self._offset(self._size(view, p)))
        if op == "write":
            p = self.path(view, "f", 0.9)
            return ("write", p, self._data(), self._offset(self._size(view, p)))
        if op == "append":
            return ("append", f(), self._data())
        if op == "creat":
            return ("creat", self.path(view, "f", 0.4), self._data() if rng.random() < 0.7
                    else b"")
        if op == "excl":
            return ("excl", self.path(view, None, 0.5))
        if op == "open":
            return ("open", self.path(view, "fd"), rng.choice(OPEN_FLAGS))
        if op == "truncate":
            p = f()
            return ("truncate", p, rng.choice((0, 1, self._offset(self._size(view, p)))))
        if op == "fallocate":
            p = f()
            return ("fallocate", p, rng.choice(FALLOC_MODES),
                    self._offset(self._size(view, p)), rng.randint(1, 20000))
        if op == "chmod":
            return ("chmod", self.path(view),
                    rng.choice((0o600, 0o644, 0o755, 0o700, 0o4755, 0o2755, 0o1777, 0o444)))
        if op == "chown":
            return ("chown", self.path(view), rng.choice((0, 1, 1000, -1)),
                    rng.choice((0, 1, 1000, -1)))
        if op == "utime":
            return ("utime", self.path(view), self._time(), self._time())
        if op == "setx":
            name = rng.choice(XATTRS) if rng.random() < 0.9 else rng.choice(RARE_XATTRS)
            step = ("setx", self.path(view, "fdp"), name,
                    bytes(rng.choice(ALPHABET) for _ in range(rng.randint(0, 8))))
            return step + (rng.choice((1, 2)),) if rng.random() < 0.2 else step
        if op == "getx":
            return ("getx", self.path(view), rng.choice(XATTRS + RARE_XATTRS[:1]))
        if op == "listx":
            return ("listx", self.path(view))
        if op == "rmx":
            return ("rmx", self.path(view, "fdp"), rng.choice(XATTRS + RARE_XATTRS[:1]))
        if op == "mkdir":
            return ("mkdir", self.path(view, "d", 0.3), rng.choice((0o755, 0o700, 0o777)))
        if op == "rmdir":
            return ("rmdir", self.path(view, "d", 0.9))
        if op == "unlink":
            return ("unlink", self.path(view, "flpc", 0.9))
        if op == "link":
            return ("link", self.path(view, "flp", 0.9), self.path(view, None, 0.2))
        if op == "symlink":
            depth = rng.randint(0, 2)
            target = "/".join([".."] * depth + [rng.choice(NEW_NAMES)
                                                 for _ in range(rng.randint(1, 2))])
            return ("symlink", target, self.path(view, None, 0.2))
        if op == "mknod":
            r = rng.random()
            p = self.path(view, None, 0.2)
            if r < 0.8:
                return ("mknod", p, "p")
            if r < 0.95:
                return ("mknod", p, "c", 1, 3)
            return ("mknod", p, "c", 0, 0)
        if op in ("ls", "lsd"):
            return (op, self.path(view, "d", 0.9) if rng.random() < 0.85 else "")
        if op in ("stat", "statf"):
            return (op, self.path(view))
        if op == "readlink":
            return ("readlink", self.path(view, "l"))
        if op == "fopen":
            return ("fopen", self._slot(False), self.path(view, "f", 0.9),
                    rng.choice(FOPEN_FLAGS))
        if op == "fread":
            return ("fread", self._slot(), rng.randint(1, 9000), self._offset(3000))
        if op == "fwrite":
            return ("fwrite", self._slot(), self._data(), self._offset(3000))
        if op == "ftruncate":
            return ("ftruncate", self._slot(), rng.choice((0, 5, 4096, 12345)))
        if op in ("fstat", "fsync", "fclose"):
            return (op, self._slot())
        raise ValueError(op)

    def _gen_rename(self, view):
        rng = self.rng
        r = rng.random()
        flags = 0 if r < 0.7 else wh.RENAME_NOREPLACE if r < 0.82 else wh.RENAME_EXCHANGE
        src = self.path(view, "d" if rng.random() < 0.4 else None, 0.95)
        dst = self.path(view, None, 0.4 if flags != wh.RENAME_EXCHANGE else 0.85)
        return ("rename", src, dst, flags) if flags else ("rename", src, dst)

    def _gen_macro_fd(self, view):
        """An fd opened read-only on a (likely lower) file, kept across its copy-up."""
        rng = self.rng
        p = self.path(view, "f", 1.0)
        slot = self._slot(False)
        change = rng.choice([("write", p, self._data(), rng.randint(0, 100)),
                             ("truncate", p, rng.randint(0, 50)), ("chmod", p, 0o600),
                             ("setx", p, "user.x", b"v"), ("append", p, b"tail"),
                             ("utime", p, "now", "now"), ("rename", p, self._fresh(view))])
        n = rng.randint(1, 5000)
        self.pending = [("fread", slot, n, 0), change, ("fread", slot, n, 0), ("fstat", slot)]
        if rng.random() < 0.5:
            self.pending.append(("fclose", slot))
        self.open_slots.add(slot)
        return ("fopen", slot, p, os.O_RDONLY)

    def _gen_macro_dirmove(self, view):
        """A directory rename: lower or merged directories take ovlfs's copy-up path."""
        src = self.path(view, "d", 1.0)
        dst = self._fresh(view) if self.rng.random() < 0.7 else self.path(view, "d", 1.0)
        flags = self.rng.choice((0, 0, 0, wh.RENAME_EXCHANGE, wh.RENAME_NOREPLACE))
        self.pending = [("lsd", dst)]
        return ("rename", src, dst, flags) if flags else ("rename", src, dst)


def generate(seed, view_fn, count):
    """count steps for a seed, view_fn() giving the reference view before each step (the
    runner applies every step before asking for the next)."""
    gen = OpGen(seed)
    for _ in range(count):
        yield gen.next(view_fn())
