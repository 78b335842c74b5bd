"""Shrinking a divergence to a minimal reproduction, and printing it.

The steps are cut after the diverging one, then reduced by delta debugging (chunks, then
single steps), then each remaining step's data is shortened; finally the layers are reduced
(whole lower layers, the upper layer, then single entries). A candidate counts when it still
diverges with the same signature (kind, and the op for result divergences). Every candidate
is a full replay on fresh layer copies, compared after every step and at the end."""
import os
import shutil
import tempfile
import time

from . import layers as flayers
from .ops import EXTRA_OPS
from .runner import run_steps


class Shrinker:
    def __init__(self, workdir, lowers, upper, steps, div, budget_s=240.0, max_runs=600,
                 log=None, check_every=25, mode=None):
        self.workdir = workdir
        self.mode = mode
        self.lowers, self.upper = lowers, upper
        self.steps = list(steps[:div.index + 1]) if div.index is not None else list(steps)
        self.div = div
        self.sig = div.signature()
        self.deadline = time.monotonic() + budget_s
        self.max_runs = max_runs
        self.runs = 0
        self.log = log or (lambda msg: None)
        self.notes = {}
        self.orig_check_every = check_every
        self.check_every = 0  # replays compare the trees at the end only, unless that hides it

    def _out_of_budget(self):
        return time.monotonic() > self.deadline or self.runs >= self.max_runs

    def fails(self, steps, lowers=None, upper=None):
        if self._out_of_budget():
            return False
        self.runs += 1
        lowers = self.lowers if lowers is None else lowers
        upper = self.upper if upper is None else upper
        base = tempfile.mkdtemp(prefix="shrink-", dir=self.workdir)
        try:
            d, notes = run_steps(base, lowers, upper, steps, check_every=self.check_every,
                                 mode=self.mode)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        if d is not None and d.signature() == self.sig:
            self.div, self.notes = d, notes
            return True
        return False

    # ------------------------------------------------------------------ steps
    def _ddmin(self, items, test):
        n = 2
        while len(items) >= 2 and not self._out_of_budget():
            chunk = max(1, len(items) // n)
            reduced = False
            for start in range(0, len(items), chunk):
                cand = items[:start] + items[start + chunk:]
                if cand and test(cand):
                    items = cand
                    n = max(n - 1, 2)
                    reduced = True
                    break
            if not reduced:
                if chunk == 1:
                    break
                n = min(len(items), n * 2)
        return items

    def shrink_steps(self):
        steps = self.steps
        # the prefix up to the divergence is where it is; shorter prefixes rarely keep it
        steps = self._ddmin(steps, self.fails)
        # simplify data arguments
        for i, step in enumerate(list(steps)):
            for j, arg in enumerate(step):
                if isinstance(arg, bytes) and len(arg) > 1:
                    for cand_arg in (arg[:1], arg[:8], arg[:len(arg) // 2]):
                        if len(cand_arg) >= len(arg):
                            continue
                        cand = list(steps)
                        cand[i] = step[:j] + (cand_arg,) + step[j + 1:]
                        if self.fails(cand):
                            steps, step = cand, cand[i]
                            break
        self.steps = steps
        return steps

    # ------------------------------------------------------------------ layers
    def shrink_layers(self):
        steps = self.steps
        # whole lower layers (keeping at least one), then the upper
        i = 0
        while len(self.lowers) > 1 and i < len(self.lowers):
            cand = self.lowers[:i] + self.lowers[i + 1:]
            if self.fails(steps, lowers=cand):
                self.lowers = cand
            else:
                i += 1
        if self.upper and self.fails(steps, upper={}):
            self.upper = {}
        # single entries, top-level subtrees first (ddmin over removal sets per layer)
        for layer in range(len(self.lowers) + 1):
            spec = self.upper if layer == len(self.lowers) else self.lowers[layer]
            paths = flayers.entries(spec)

            def with_kept(kept, layer=layer, spec=spec, paths=paths):
                removed = [p for p in paths if p not in kept]
                new = flayers.without(spec, removed)
                if layer == len(self.lowers):
                    return self.lowers, new
                return self.lowers[:layer] + [new] + self.lowers[layer + 1:], self.upper

            def test(kept):
                lo, up = with_kept(set(kept))
                return self.fails(steps, lowers=lo, upper=up)

            if not paths:
                continue
            if test([]):
                kept = []
            else:
                kept = self._ddmin(paths, test)
            lo, up = with_kept(set(kept))
            if layer == len(self.lowers):
                self.upper = up
            else:
                self.lowers = lo

    def run(self):
        t = time.monotonic()
        n0 = len(self.steps)
        # the trees checks read everything (warming ovlfs's and the kernel's caches): some
        # divergences need them. Keep the cheapest mode that still shows the divergence.
        # Checks become explicit ("check",) steps, which the shrinking may drop too.
        self.check_every = 0
        for k in (0, self.orig_check_every, 1):
            cand = with_checks(self.steps, k)
            if k != 0 and cand == self.steps:
                continue
            if self.fails(cand):
                self.steps = cand
                break
        else:
            self.log("  the divergence does not reproduce on replay: not shrunk")
            return False
        if k:
            self.log(f"  it needs the tree comparisons: ('check',) steps every {k} steps")
        self.shrink_steps()
        self.log(f"  shrunk steps {n0} -> {len(self.steps)} ({self.runs} runs)")
        self.shrink_layers()
        self.log(f"  shrunk layers ({self.runs} runs, {time.monotonic() - t:.0f}s)")
        # final confirmation (and the divergence of the final form)
        self.deadline = time.monotonic() + 60
        self.max_runs = self.runs + 1
        ok = self.fails(self.steps)
        return ok


def with_checks(steps, k):
    """steps with a ("check",) pseudo-step after every k-th step (the runner's check_every)."""
    if not k:
        return list(steps)
    out = []
    for i, step in enumerate(steps, 1):
        out.append(step)
        if i % k == 0 and i != len(steps):
            out.append(("check",))
    return out


# --------------------------------------------------------------------------- printing

def _step_src(step):
    out = []
    flags_at = {"open": 2, "fopen": 3}.get(step[0])
    for i, a in enumerate(step):
        if isinstance(a, bytes) and len(a) > 48:
            out.append(flayers._bytes_src(a))
        elif i == flags_at:
            out.append(_flags_src(a))
        elif step[0] == "chmod" and i == 2 or step[0] == "mkdir" and i == 2:
            out.append(f"0o{a:o}")
        else:
            out.append(repr(a))
    return "(" + ", ".join(out) + ("," if len(out) == 1 else "") + ")"


def _flags_src(flags):
    names = [n for n in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_EXCL", "O_TRUNC", "O_APPEND",
                         "O_DIRECTORY") if flags & getattr(os, n)]
    rest = flags & ~sum(getattr(os, n) for n in names)
    return " | ".join([f"os.{n}" for n in names] + ([str(rest)] if rest else [])) or "0"


def format_repro(seed, lowers, upper, steps, div, notes, name=None, check_every=1, mode=None):
    """A ready-to-paste regression test (for tests/test_fuzz.py) and, when the sequence uses
    only write_helpers steps and no modelled difference, the S(...) scenario line for
    test_differential_write.py."""
    name = name or (f"fuzz_{mode}_seed{seed}" if mode and mode != "off" else f"fuzz_seed{seed}")
    lines = [f"# seed {seed}{f' (mode {mode})' if mode else ''}: {div.kind} divergence at step {div.index} "
             f"{div.step!r}" if div.step else f"# seed {seed}: {div.kind} divergence at the end"]
    for ln in str(div.detail).splitlines()[:12]:
        lines.append(f"#   {ln}")
    if notes:
        lines.append(f"# modelled steps (ovlfs differs from the kernel on purpose): {notes}")
    lowers_src = "[" + ",\n          ".join(flayers.spec_src(s, 10) for s in lowers) + "]"
    steps_src = "[" + ",\n         ".join(_step_src(s) for s in steps) + "]"
    lines += [f"def test_{name}(tmp_path):",
              "    replay(tmp_path,",
              f"           lowers={lowers_src},",
              f"           upper={flayers.spec_src(upper, 11)},",
              f"           steps={steps_src},",
              f"           check_every={check_every}" +
              (f", mode={mode!r})" if mode and mode != "off" else ")")]
    plain = (mode or "off") == "off" and not notes and not any(s[0] in EXTRA_OPS or s[0] == "check" for s in steps)
    if plain:
        lines += ["", "# as a test_differential_write.py scenario:",
                  f"S({name!r}, {lowers_src},", f"  {steps_src},",
                  f"  upper={flayers.spec_src(upper, 2)})"]
    return "\n".join(lines)
