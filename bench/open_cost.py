#!/usr/bin/env python3
"""Cost per file of FUSE passthrough against the page cache, per file size and pattern.

Mounts ovlfs over an ext4 upper directory holding N files of each size, once per
configuration (a binary and its -o options), and times per file, in microseconds:
  cold   open + read whole + fstat + close, first pass after the mount (the layer's own page
         cache is warm: this is the FUSE side's cost, not the disk's)
  warm   the same again (the FUSE inode's page cache may now hold the data)
  mmap   open + mmap + touch every page + close (warm)
  write  open O_WRONLY|O_TRUNC + write the same size + close
  reread open + read whole + fstat + close right after the writes
Medians of --rounds mounts. Run as root (passthrough needs CAP_SYS_ADMIN).

  bench/open_cost.py --config pt0=build/ovlfs:passthrough=0 --config pt1=build/ovlfs:
"""
import argparse
import mmap
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

KiB, MiB = 1024, 1024 * 1024
# (size, files): about 128 MiB or 2,000 files per size
SIZES = [tuple(map(int, s.split(":"))) for s in os.environ["OPEN_COST_SIZES"].split()] if os.environ.get("OPEN_COST_SIZES") else [(0, 2000), (2 * KiB, 2000), (64 * KiB, 1000), (1 * MiB, 128), (64 * MiB, 2)]
PATTERNS = ['cold', 'warm', 'mmap', 'write', 'reread']
CHUNK = 1 * MiB


def is_mounted(path):
    with open('/proc/self/mountinfo') as f:
        return any(line.split()[4] == path for line in f)


def mount(binary, opts, lower, upper, work, mnt):
    o = f'lowerdir={lower},upperdir={upper},workdir={work}' + (f',{opts}' if opts else '')
    p = subprocess.Popen([binary, '-f', '-o', o, mnt], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 20
    while not is_mounted(mnt):
        if p.poll() is not None or time.time() > deadline:
            p.kill()
            sys.exit(f'{binary} -o {o} did not mount')
        time.sleep(0.01)
    return p


def unmount(p, mnt):
    subprocess.run(['umount', mnt], check=True)
    p.wait(timeout=20)


def read_all(path, size):
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.read(fd, CHUNK):
            pass
        os.fstat(fd)  # as tar does after reading: a read may have made the atime stale
    finally:
        os.close(fd)


def mmap_all(path, size):
    fd = os.open(path, os.O_RDONLY)
    try:
        if size:
            with mmap.mmap(fd, size, prot=mmap.PROT_READ) as m:
                for off in range(0, size, 4096):
                    m[off]
    finally:
        os.close(fd)


def write_all(path, size, data):
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        left = size
        while left:
            left -= os.write(fd, data[:min(left, CHUNK)])
    finally:
        os.close(fd)


def run_pattern(mnt, size, n, pattern, data):
    paths = [os.path.join(mnt, f's{size}', f'f{i}') for i in range(n)]
    t0 = time.perf_counter()
    for p in paths:
        if pattern == 'mmap':
            mmap_all(p, size)
        elif pattern == 'write':
            write_all(p, size, data)
        else:
            read_all(p, size)
    return (time.perf_counter() - t0) / n * 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--config', action='append', required=True,
                    help='name=binary:opts (opts comma-separated, may be empty)')
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--tmp', default='/tmp')
    args = ap.parse_args()
    configs = []
    for c in args.config:
        name, rest = c.split('=', 1)
        binary, _, opts = rest.partition(':')
        configs.append((name, os.path.abspath(binary), opts))

    root = tempfile.mkdtemp(prefix='open-cost-', dir=args.tmp)
    lower, upper, work, mnt = (os.path.join(root, d) for d in ('lower', 'upper', 'work', 'mnt'))
    for d in (lower, upper, work, mnt):
        os.mkdir(d)
    data = os.urandom(CHUNK)
    for size, n in SIZES:
        os.mkdir(os.path.join(upper, f's{size}'))
        for i in range(n):
            with open(os.path.join(upper, f's{size}', f'f{i}'), 'wb') as f:
                left = size
                while left:
                    left -= f.write(data[:min(left, CHUNK)])
    results = {}  # (config, size, pattern) -> [us]
    try:
        for r in range(args.rounds):
            for name, binary, opts in configs:  # interleaved
                for size, n in SIZES:
                    p = mount(binary, opts, lower, upper, work, mnt)
                    try:
                        for pat in PATTERNS:
                            us = run_pattern(mnt, size, n, pat, data)
                            results.setdefault((name, size, pat), []).append(us)
                    finally:
                        unmount(p, mnt)
    finally:
        if is_mounted(mnt):
            subprocess.run(['umount', '-l', mnt])
        shutil.rmtree(root)

    names = [c[0] for c in configs]
    print(f'us per file, medians of {args.rounds} rounds')
    print('| size | pattern | ' + ' | '.join(names) + ' |')
    print('|---|---|' + '---|' * len(names))
    for size, n in SIZES:
        for pat in PATTERNS:
            cells = [f'{statistics.median(results[(nm, size, pat)]):,.0f}' for nm in names]
            label = f'{size // MiB} MiB' if size >= MiB else f'{size // KiB} KiB'
            print(f'| {label} | {pat} | ' + ' | '.join(cells) + ' |')


if __name__ == '__main__':
    main()
