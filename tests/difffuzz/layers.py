"""Layer generation for the differential fuzzer: from a seed, 2-4 lower layers and an upper
layer over a small namespace (names a-d, three levels: a, a/b, a/b/c), in the layer-spec
notation of tests/helpers.py (build_layer / build_layers), plus the helpers the shrinker and
the reports need: listing the entries of a spec, removing one, and printing a spec as Python
source that pastes into a test (helpers' File/Dir/Symlink/... constructors).

What a layer may hold: regular files (empty, short, a few KiB, up to ~70 KiB, with varied
modes, owners, mtimes and user.* xattrs), directories (varied modes/owners/xattrs; opaque
"y" in the upper and in lower layers above the bottom; a rare opaque="yes" in upper, which is
not opaque), symlinks (relative targets inside the namespace, or dangling), hard links (to a
file of the same layer), fifos, char 1:3, whiteouts (char 0/0, not in the bottom layer) and
xattr whiteouts (zero-size files with trusted.overlay.whiteout in a lower directory marked
opaque="x", kernel 6.7+)."""
import random

from helpers import FIXED_MTIME, Chr, Dir, Fifo, File, Hardlink, Symlink, XWHITEOUT

NAMES = ("a", "b", "c", "d")
DEPTH = 3  # levels of names: a, a/b, a/b/c
FILE_MODES = (0o644, 0o644, 0o644, 0o600, 0o640, 0o755, 0o444, 0o4755, 0o2755, 0o666)
DIR_MODES = (0o755, 0o755, 0o755, 0o700, 0o750, 0o777, 0o1777, 0o2755)
OWNERS = (0, 0, 0, 0, 1, 1000)
XATTR_NAMES = ("user.x", "user.y", "user.z")
ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def _bytes(rng, n):
    return bytes(rng.choice(ALPHABET) for _ in range(n))


def _content(rng):
    r = rng.random()
    if r < 0.15:
        return b""
    if r < 0.65:
        return _bytes(rng, rng.randint(1, 24))
    if r < 0.85:
        return _bytes(rng, rng.randint(100, 600))
    # larger: a short pattern repeated (compact to print), sizes around page boundaries
    unit = _bytes(rng, rng.randint(1, 7))
    n = rng.choice((4095, 4096, 4097, 8192 + rng.randint(0, 99), rng.randint(10000, 70000)))
    return (unit * (n // len(unit) + 1))[:n]


def _meta(rng, modes, xattrs=True):
    meta = dict(mode=rng.choice(modes), uid=rng.choice(OWNERS), gid=rng.choice(OWNERS),
                mtime=FIXED_MTIME + rng.randint(0, 999) * 1000)
    if xattrs and rng.random() < 0.3:  # user.* xattrs: regular files and directories only
        meta["xattrs"] = {n: _bytes(rng, rng.randint(0, 6))
                          for n in rng.sample(XATTR_NAMES, rng.randint(1, 2))}
    return meta


def _symlink_target(rng, rel):
    depth = rel.count("/")
    r = rng.random()
    if r < 0.15:
        return "nowhere"
    names = [rng.choice(NAMES) for _ in range(rng.randint(1, 2))]
    up = rng.randint(0, depth)
    return "/".join([".."] * up + names)


def _gen_dir(rng, kind, depth, prefix, out_files, xwh_dir=False):
    """kind: 'bottom', 'lower' (a lower layer above the bottom) or 'upper'."""
    spec = {}
    presence = (0.75, 0.55, 0.45)[depth]
    for name in NAMES:
        if rng.random() > presence:
            continue
        rel = f"{prefix}/{name}" if prefix else name
        r = rng.random()
        can_dir = depth < DEPTH - 1
        if xwh_dir and r < 0.3:
            spec[name] = File(content=b"", xattrs={XWHITEOUT: b""})
            continue
        if can_dir and r < (0.5 if depth == 0 else 0.4):
            meta = _meta(rng, DIR_MODES)
            opaque, child_xwh = None, False
            q = rng.random()
            if kind != "bottom" and q < 0.12:
                opaque = "y"
            elif kind == "lower" and q < 0.22:
                opaque, child_xwh = "x", True
            elif kind == "upper" and q < 0.15:
                opaque = "yes"  # not exactly "y": not opaque (doc/semantics.md rule 3)
            children = _gen_dir(rng, kind, depth + 1, rel, out_files, child_xwh)
            spec[name] = Dir(children=children, opaque=opaque, **meta)
            continue
        r = rng.random()
        if r < 0.6:
            spec[name] = File(content=_content(rng), **_meta(rng, FILE_MODES))
            out_files.append(rel)
        elif r < 0.7:
            meta = _meta(rng, (0o777,), False)
            meta.pop("mode")
            spec[name] = Symlink(target=_symlink_target(rng, rel), **meta)
        elif r < 0.8 and kind != "bottom":
            spec[name] = Chr(major=0, minor=0, mode=0o600)  # whiteout
        elif r < 0.86:
            spec[name] = Hardlink(target="")  # resolved once the layer's files are known
        elif r < 0.93:
            spec[name] = Fifo(**_meta(rng, (0o644, 0o600, 0o666), False))
        elif r < 0.96:
            spec[name] = Chr(major=1, minor=3, **_meta(rng, (0o666, 0o600), False))
        else:
            spec[name] = File(content=_content(rng), **_meta(rng, FILE_MODES))
            out_files.append(rel)
    return spec


def _resolve_links(rng, spec, files, prefix=""):
    for name, e in list(spec.items()):
        rel = f"{prefix}/{name}" if prefix else name
        if isinstance(e, Hardlink):
            if files:
                spec[name] = Hardlink(target=rng.choice(files))
            else:
                spec[name] = File(content=b"lonely")
        elif isinstance(e, Dir):
            _resolve_links(rng, e.children, files, rel)


def gen_layer(rng, kind):
    files = []
    spec = _gen_dir(rng, kind, 0, "", files)
    _resolve_links(rng, spec, files)
    return spec


def gen_layers(seed):
    """(lowers top first, upper) for a seed."""
    rng = random.Random(f"layers-{seed}")
    n = rng.randint(2, 4)
    lowers = [gen_layer(rng, "bottom" if i == n - 1 else "lower") for i in range(n)]
    upper = gen_layer(rng, "upper") if rng.random() < 0.85 else {}
    return lowers, upper


# --------------------------------------------------------------------------- spec editing

def entries(spec, prefix=""):
    """Every relative path of a spec (directories before their children)."""
    out = []
    for name, e in spec.items():
        rel = f"{prefix}/{name}" if prefix else name
        out.append(rel)
        children = e.children if isinstance(e, Dir) else e if isinstance(e, dict) else None
        if children is not None:
            out.extend(entries(children, rel))
    return out


def _links_into(spec, removed):
    """Paths of hard links whose target is at or below one of the removed paths."""
    out = []
    for rel in entries(spec):
        e = get(spec, rel)
        if isinstance(e, Hardlink) and any(e.target == r or e.target.startswith(r + "/")
                                           for r in removed):
            out.append(rel)
    return out


def get(spec, rel):
    node = spec
    parts = rel.split("/")
    for p in parts[:-1]:
        node = node[p]
        node = node.children if isinstance(node, Dir) else node
    return node[parts[-1]]


def without(spec, removed):
    """A copy of spec without the given paths (and without hard links to them)."""
    removed = set(removed)
    removed |= set(_links_into(spec, removed))

    def copy(node, prefix):
        out = {}
        for name, e in node.items():
            rel = f"{prefix}/{name}" if prefix else name
            if rel in removed:
                continue
            if isinstance(e, Dir):
                e = Dir(children=copy(e.children, rel), mode=e.mode, uid=e.uid, gid=e.gid,
                        xattrs=dict(e.xattrs), mtime=e.mtime, opaque=e.opaque)
            elif isinstance(e, dict):
                e = copy(e, rel)
            out[name] = e
        return out

    return copy(spec, "")


# --------------------------------------------------------------------------- printing

def _b(v):
    return v if isinstance(v, bytes) else v.encode()


def _bytes_src(b):
    if len(b) > 48:
        for p in range(1, 17):
            unit = b[:p]
            if (unit * (len(b) // p + 1))[:len(b)] == b:
                return f"({unit!r} * {len(b) // p + 1})[:{len(b)}]"
    return repr(b)


def _meta_src(e, default_mode):
    out = []
    if e.mode != default_mode:
        out.append(f"mode=0o{e.mode:o}")
    if e.uid:
        out.append(f"uid={e.uid}")
    if e.gid:
        out.append(f"gid={e.gid}")
    if e.mtime != FIXED_MTIME:
        out.append(f"mtime=T + {e.mtime - FIXED_MTIME}")
    if e.xattrs:
        out.append("xattrs={" + ", ".join(f"{k!r}: {_bytes_src(_b(v))}"
                                          for k, v in e.xattrs.items()) + "}")
    return out


def entry_src(e, indent):
    if isinstance(e, dict):
        return spec_src(e, indent)
    if isinstance(e, Dir):
        args = [spec_src(e.children, indent + 4)] + _meta_src(e, 0o755)
        if e.opaque is not None:
            args.append(f"opaque={e.opaque!r}")
        return "Dir(" + ", ".join(args) + ")"
    if isinstance(e, File):
        if e.xattrs == {XWHITEOUT: b""} and e.content == b"" and e.mode == 0o644:
            return "XWhiteout()"
        content = e.content if isinstance(e.content, bytes) else e.content.encode()
        return "File(" + ", ".join([_bytes_src(content)] + _meta_src(e, 0o644)) + ")"
    if isinstance(e, Symlink):
        return "Symlink(" + ", ".join([repr(e.target)] + _meta_src(e, 0o777)) + ")"
    if isinstance(e, Hardlink):
        return f"Hardlink({e.target!r})"
    if isinstance(e, Fifo):
        return "Fifo(" + ", ".join(_meta_src(e, 0o644)) + ")"
    if isinstance(e, Chr):
        if (e.major, e.minor) == (0, 0):
            return "Whiteout()"
        return "Chr(" + ", ".join([str(e.major), str(e.minor)] + _meta_src(e, 0o666)) + ")"
    raise TypeError(e)


def spec_src(spec, indent=0):
    if not spec:
        return "{}"
    pad = " " * (indent + 4)
    items = [f"{pad}{name!r}: {entry_src(e, indent + 4)}," for name, e in spec.items()]
    return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
