#!/usr/bin/python3
"""Side-by-side benchmark of ovlfs against a native directory, the kernel overlayfs and
fuse-overlayfs. See bench/README.md. Run as root through bench/bench.sh (make bench,
make bench-quick); it mounts only under its own work directory and unmounts everything
it mounted, whatever happens.
"""
import argparse
import atexit
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback

import apps

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MiB = 1 << 20
GiB = 1 << 30

PROFILES = {
    'full': dict(rounds=3, tree=50000, big_lower=20000, big_upper=2000, big_wh=1000,
                 overlap_every=10, file_mib=1024, sparse_mib=4096, sparse_data_mib=256,
                 create=20000, chown=5000, tar_files=9000, cfiles=200, fio_secs=10,
                 rename_files=10000, rename_mib=1024, hardlinks=10000, img_gib=32,
                 timeout=1200),
    'quick': dict(rounds=1, tree=10000, big_lower=4000, big_upper=400, big_wh=200,
                  overlap_every=10, file_mib=256, sparse_mib=1024, sparse_data_mib=64,
                  create=5000, chown=1000, tar_files=2000, cfiles=40, fio_secs=3,
                  rename_files=2000, rename_mib=128, hardlinks=2000, img_gib=12,
                  timeout=300),
    # The real-workload profile (bench/apps.py, issue 18): developer tools on a source tree.
    'apps': dict(suite='apps', rounds=5, app_files=10000, img_gib=4, timeout=1200,
                 count_requests=True),
    'apps-quick': dict(suite='apps', rounds=3, app_files=3000, img_gib=2, timeout=300,
                       count_requests=True),
}

TARGETS = ['native', 'kernel', 'fuse-overlayfs', 'ovlfs']
LABELS = {'native': 'native', 'kernel': 'kernel overlayfs',
          'fuse-overlayfs': 'fuse-overlayfs', 'ovlfs': 'ovlfs',
          'ovlfs-uring': 'ovlfs over io_uring',  # opt-in: --targets ...,ovlfs-uring
          # Opt-in option variants (issue 16), each a target of its own so that `kernel`
          # and `ovlfs` keep meaning the defaults.
          'kernel-redirect': 'kernel redirect_dir=on',
          'kernel-metacopy': 'kernel metacopy=on',
          'ovlfs-redirect-off': 'ovlfs redirect_dir=off',
          'ovlfs-metacopy': 'ovlfs metacopy=on',
          # issue 15: the inode index, on by default in ovlfs, off in the kernel's default
          # here (/sys/module/overlay/parameters/index)
          'kernel-index': 'kernel index=on',
          'ovlfs-index-off': 'ovlfs index=off'}
# Extra mount options of each variant target. The kernel enables redirect_dir by itself
# when given metacopy=on alone (fs/overlayfs/super.c, "metacopy -> redirect_dir
# dependency"); both are spelled out so that the mount says what it measures.
TARGET_OPTS = {'ovlfs-uring': ',uring=1',
               'kernel-redirect': ',redirect_dir=on',
               'kernel-metacopy': ',redirect_dir=on,metacopy=on',
               'ovlfs-redirect-off': ',redirect_dir=off',
               'ovlfs-metacopy': ',metacopy=on',
               'kernel-index': ',index=on',
               'ovlfs-index-off': ',index=off'}
# Same-round ratios reported beside the default ovlfs/kernel and ovlfs/fuse-overlayfs ones,
# when both targets ran: each variant against its kernel counterpart.
# (metric key prefix, a, b): a/b is shown for the metrics whose key starts with the prefix.
VARIANT_PAIRS = [('rename_dir', 'ovlfs', 'kernel-redirect'),
                 ('rename_dir', 'ovlfs-redirect-off', 'kernel-redirect'),
                 ('chown_meta', 'ovlfs-metacopy', 'kernel-metacopy'),
                 ('chown_meta', 'ovlfs-metacopy', 'ovlfs'),
                 ('chown_meta', 'ovlfs-metacopy', 'fuse-overlayfs'),
                 # issue 15: what the index adds (hl_*: lower hard links; chown and
                 # copyup: files of one name, which get an origin record only)
                 ('hl_', 'ovlfs', 'ovlfs-index-off'),
                 ('hl_', 'kernel-index', 'kernel'),
                 ('hl_', 'ovlfs', 'kernel-index'),
                 ('hl_', 'ovlfs-index-off', 'kernel'),
                 ('chown', 'ovlfs', 'ovlfs-index-off'),
                 ('chown', 'kernel-index', 'kernel'),
                 ('copyup', 'ovlfs', 'ovlfs-index-off'),
                 ('copyup', 'kernel-index', 'kernel')]
URING_PARAM = '/sys/module/fuse/parameters/enable_uring'


def set_uring_param(value):
    with open(URING_PARAM, 'w') as f:
        f.write(value)


ENV = dict(os.environ, LC_ALL='C', LANG='C')
ENV.pop('LANGUAGE', None)
# The rootless profile's user (bench/README.md): nobody, through setpriv, as tests/ do.
NOBODY = 65534


def log(msg):
    print(time.strftime('%H:%M:%S'), msg, flush=True)


class Failed(Exception):
    pass


class Stop(BaseException):
    """A signal asked us to stop; raised so that every finally: block runs."""


# --------------------------------------------------------------------------- processes

# user: (uid, gid) of the rootless profile, who mounts the FUSE targets and runs the
# workloads, or None; count: FUSE daemons run with -d and the timed parts' requests are
# counted from their logs.
STATE = {'daemon': None, 'timeout': 600, 'user': None, 'count': False}


def as_user(cmd, user):
    """argv (or a /bin/sh string) run as user (uid, gid) with no supplementary groups."""
    if user is None:
        return cmd
    argv = ['/bin/sh', '-c', cmd] if isinstance(cmd, str) else list(cmd)
    return ['setpriv', f'--reuid={user[0]}', f'--regid={user[1]}', '--clear-groups', *argv]


def abort_daemon():
    """A workload hung: kill the FUSE daemon we started (by pid) so that the hung
    processes get ENOTCONN and can be reaped; the mount is removed afterwards."""
    p = STATE['daemon']
    if p is not None and p.poll() is None:
        p.kill()


def run(cmd, timeout=None, check=True, capture=False, env=None):
    """Run argv (or a /bin/sh string) in its own process group. Returns (seconds, stdout)."""
    argv = ['/bin/sh', '-c', cmd] if isinstance(cmd, str) else list(cmd)
    timeout = timeout or STATE['timeout']
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                         stderr=subprocess.PIPE, env=dict(ENV, **env) if env else ENV,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        abort_daemon()
        _killpg(p)
        raise Failed(f'timed out after {timeout}s: {cmd}')
    except BaseException:
        _killpg(p)
        raise
    dt = time.perf_counter() - t0
    if check and p.returncode != 0:
        msg = err.decode(errors='replace').strip().replace('\n', ' | ')[:400]
        raise Failed(f'exit {p.returncode}: {cmd}: {msg}')
    return dt, (out.decode(errors='replace') if capture else '')


def _killpg(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.communicate(timeout=30)
    except Exception:
        pass


def sh_ok(argv):
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env=ENV).returncode == 0


def drop_caches():
    os.sync()
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def settle():
    os.sync()
    time.sleep(0.2)


# --------------------------------------------------------------------------- mounts

def mountpoints():
    res = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            mp = line.split()[4]
            res.append(mp.encode().decode('unicode_escape'))
    return res


def is_mounted(path):
    return path in mountpoints()


class Mounts:
    """Every mount this run made, unmounted in reverse order by cleanup()."""

    def __init__(self):
        self.stack = []   # (path, kind, proc)

    def add(self, path, kind, proc=None):
        self.stack.append((path, kind, proc))

    def remove(self, path):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == path:
                entry = self.stack.pop(i)
                self._umount(*entry)
                return

    def cleanup(self):
        while self.stack:
            self._umount(*self.stack.pop())

    @staticmethod
    def _umount(path, kind, proc):
        if kind == 'fuse':
            for _ in range(20):
                if not is_mounted(path):
                    break
                if sh_ok(['fusermount3', '-u', path]):
                    break
                time.sleep(0.5)
            if is_mounted(path):
                log(f'  {path} is busy: stopping its daemon (pid {proc.pid}) and detaching it')
                if proc is not None and proc.poll() is None:
                    proc.kill()
                sh_ok(['fusermount3', '-uz', path]) or sh_ok(['umount', '-l', path])
            if proc is not None:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                if STATE['daemon'] is proc:
                    STATE['daemon'] = None
        else:
            for _ in range(20):
                if not is_mounted(path) or sh_ok(['umount', path]):
                    break
                time.sleep(0.5)
            if is_mounted(path):
                log(f'  {path} is busy: detaching it lazily')
                sh_ok(['umount', '-l', path])
            if kind == 'loop' and proc:
                sh_ok(['losetup', '-d', proc])


MOUNTS = Mounts()


def mount_overlay(target, lowers, upper, work, mnt, ovlfs_bin, logdir, logname=None):
    """Mount one overlay target; returns the daemon's Popen (None for the kernel). In the
    rootless profile the FUSE daemons are started as STATE['user'] (fusermount3 mounts for
    them, and the kernel refuses them passthrough); when counting, they run with -d and log
    to logname, a file of its own."""
    if target.startswith('kernel'):
        opts = f'lowerdir={":".join(lowers)},upperdir={upper},workdir={work}'
        opts += TARGET_OPTS.get(target, '')
        run(['mount', '-t', 'overlay', 'overlay', '-o', opts, mnt], timeout=60)
        MOUNTS.add(mnt, 'kernel')
        return None
    opts = f'lowerdir={":".join(lowers)},upperdir={upper},workdir={work}'
    if target.startswith('ovlfs'):
        argv = [ovlfs_bin, '-f', '-o', opts + TARGET_OPTS.get(target, ''), mnt]
    else:   # fuse-overlayfs, its defaults; -f only keeps it in the foreground (our child)
        argv = ['fuse-overlayfs', '-f', '-o', opts, mnt]
    if STATE['count']:
        argv.insert(1, '-d')
    argv = as_user(argv, STATE['user'])
    logf = open(logname or os.path.join(logdir, f'{target}.log'), 'wb' if logname else 'ab')
    logf.write(f'--- {time.ctime()} {" ".join(argv)}\n'.encode())
    logf.flush()
    p = subprocess.Popen(argv, stdout=logf, stderr=logf, env=ENV, start_new_session=True)
    logf.close()
    MOUNTS.add(mnt, 'fuse', p)
    STATE['daemon'] = p
    deadline = time.time() + 20
    while not is_mounted(mnt):
        if p.poll() is not None:
            MOUNTS.remove(mnt)
            raise Failed(f'{target} exited with status {p.returncode} before mounting '
                         f'(see {logdir}/{target}.log)')
        if time.time() > deadline:
            MOUNTS.remove(mnt)
            raise Failed(f'{target} did not mount within 20 s')
        time.sleep(0.01)
    return p


# --------------------------------------------------------------------------- /proc helpers

def rss_bytes(pid):
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return None


def cpu_seconds(pid):
    with open(f'/proc/{pid}/stat') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


# --------------------------------------------------------------------------- layer building

def select_usr(n, max_size=4 * MiB):
    """The first n entries (dirs, regular files up to max_size, symlinks) of a sorted
    walk of /usr on its own filesystem, as (kind, path relative to /usr)."""
    out = []
    dev = os.lstat('/usr').st_dev
    for dirpath, dirnames, filenames in os.walk('/usr'):
        rel = os.path.relpath(dirpath, '/usr')
        if rel != '.':
            out.append(('d', rel))
        keep = []
        for d in sorted(dirnames):
            p = os.path.join(dirpath, d)
            s = os.lstat(p)
            if os.path.islink(p):
                filenames.append(d)
            elif s.st_dev == dev:
                keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            if len(out) >= n:
                return out
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            r = os.path.normpath(os.path.join(rel, name))
            if os.path.islink(p):
                out.append(('l', r))
            elif os.path.isfile(p) and s.st_size <= max_size:
                out.append(('f', r))
        if len(out) >= n:
            return out
    return out


def copy_entries(src_root, entries, dst_root):
    os.makedirs(dst_root, exist_ok=True)
    for kind, rel in entries:
        s = os.path.join(src_root, rel)
        d = os.path.join(dst_root, rel)
        st = os.lstat(s)
        if kind == 'd':
            os.mkdir(d, st.st_mode & 0o7777)
            os.chown(d, st.st_uid, st.st_gid)
        elif kind == 'l':
            os.symlink(os.readlink(s), d)
            os.lchown(d, st.st_uid, st.st_gid)
        else:
            shutil.copyfile(s, d)
            os.chown(d, st.st_uid, st.st_gid)
            os.chmod(d, st.st_mode & 0o7777)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))


def generate_entries(root, n, start=0):
    """Synthetic tree: 100 files per directory, sizes 0-16 KiB."""
    made = []
    i = start
    while len(made) < n:
        d = f'gen/d{i // 100:04d}'
        if i % 100 == 0:
            os.makedirs(os.path.join(root, d), exist_ok=True)
            made.append(('d', d))
        p = f'{d}/f{i:06d}.txt'
        with open(os.path.join(root, p), 'wb') as f:
            f.write(b'x' * ((i * 7919) % 16384))
        made.append(('f', p))
        i += 1
    return made


def write_file(path, size):
    """size bytes of incompressible data, fsynced."""
    with open(path, 'wb') as f:
        left = size
        while left:
            n = min(left, MiB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def write_sparse(path, size, data):
    chunks = 16
    with open(path, 'wb') as f:
        f.truncate(size)
        for i in range(chunks):
            f.seek(i * (size // chunks))
            left = data // chunks
            while left:
                n = min(left, MiB)
                f.write(os.urandom(n))
                left -= n
        f.flush()
        os.fsync(f.fileno())


def make_cproj(root, n):
    os.makedirs(root)
    with open(f'{root}/common.h', 'w') as f:
        f.write('#include <stdio.h>\n#include <string.h>\n#include <stdlib.h>\n')
        for i in range(n):
            f.write(f'int func_{i}(int x);\n')
    for i in range(n):
        with open(f'{root}/m{i:04d}.c', 'w') as f:
            f.write(f'#include "common.h"\n\nstruct rec_{i} {{ int k; char name[32]; double v; }};\n\n')
            f.write(f'static int cmp_{i}(const void *a, const void *b)\n{{\n'
                    f'\tconst struct rec_{i} *x = a, *y = b;\n'
                    f'\treturn x->k - y->k ? x->k - y->k : strcmp(x->name, y->name);\n}}\n\n')
            f.write(f'int func_{i}(int x)\n{{\n\tstruct rec_{i} r[16];\n\tint s = 0;\n'
                    f'\tfor (int j = 0; j < 16; j++) {{\n\t\tr[j].k = (x * {i + 3} + j * 7) % 11;\n'
                    f'\t\tsnprintf(r[j].name, sizeof(r[j].name), "n%d-%d", j, x);\n'
                    f'\t\tr[j].v = j * 0.5 + x;\n\t}}\n'
                    f'\tqsort(r, 16, sizeof(r[0]), cmp_{i});\n'
                    f'\tfor (int j = 0; j < 16; j++)\n\t\ts += r[j].k * (int)r[j].v;\n'
                    f'\treturn s;\n}}\n')
    with open(f'{root}/main.c', 'w') as f:
        f.write('#include "common.h"\n\nint main(void)\n{\n\tlong s = 0;\n')
        for i in range(n):
            f.write(f'\ts += func_{i}({i});\n')
        f.write('\tprintf("%ld\\n", s);\n\treturn 0;\n}\n')
    with open(f'{root}/Makefile', 'w') as f:
        f.write('CFLAGS = -O2\nSRCS = $(wildcard *.c)\nOBJS = $(SRCS:.c=.o)\n\n'
                'prog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n\n'
                '%.o: %.c common.h\n\t$(CC) $(CFLAGS) -c $< -o $@\n')


def build_layers(P, fs, ws):
    """Lower layers, the upper template and the native copies, all on the bench fs."""
    l1, l2 = f'{fs}/l1', f'{fs}/l2'
    nview, tmpl = f'{fs}/native', f'{fs}/upper-template'
    info = {}
    t0 = time.time()

    # 1. The tree: a copy of the first entries of /usr (generated if /usr is too small).
    entries = select_usr(P['tree'])
    info['tree_source'] = f'first {len(entries)} entries of a sorted walk of /usr'
    copy_entries('/usr', entries, f'{l2}/tree')
    if len(entries) < P['tree']:
        extra = generate_entries(f'{l2}/tree', P['tree'] - len(entries))
        info['tree_source'] += f' + {len(extra)} generated'
        entries += extra
    shutil.copytree(f'{l2}/tree', f'{nview}/tree', symlinks=True)   # native: merged view

    # 2. The second lower overlaps every k-th directory: 2 new files, 1 file shadowing the
    #    bottom layer's, 1 whiteout hiding a bottom file.
    dirs = sorted(rel for kind, rel in entries if kind == 'd')
    files_in = {}
    for kind, rel in entries:
        if kind == 'f':
            files_in.setdefault(os.path.dirname(rel), []).append(os.path.basename(rel))
    n_overlap = n_wh = 0
    for d in dirs[::P['overlap_every']]:
        os.makedirs(f'{l1}/tree/{d}', exist_ok=True)
        n_overlap += 1
        for name in ('zz-l1-new-a.txt', 'zz-l1-new-b.txt'):
            for root in (l1, nview):
                with open(f'{root}/tree/{d}/{name}', 'w') as f:
                    f.write(f'added by the second lower layer in {d}\n')
        fl = sorted(files_in.get(d, []))
        if fl:
            for root in (l1, nview):
                os.makedirs(f'{root}/tree/{d}', exist_ok=True)
                with open(f'{root}/tree/{d}/{fl[0]}', 'w') as f:
                    f.write('this file shadows the bottom layer\n' * 10)
        if len(fl) > 1:
            os.mknod(f'{l1}/tree/{d}/{fl[1]}', 0o20000, os.makedev(0, 0))
            os.unlink(f'{nview}/tree/{d}/{fl[1]}')
            n_wh += 1
    info['overlap'] = f'{n_overlap} directories of the tree also in the second lower ({n_wh} whiteouts)'

    # 3. The big merged directory: lower entries, upper entries, whiteouts in upper.
    os.makedirs(f'{l2}/big')
    os.makedirs(f'{tmpl}/big')
    os.makedirs(f'{nview}/big')
    wh = set(range(0, P['big_lower'], P['big_lower'] // P['big_wh']))
    for i in range(P['big_lower']):
        open(f'{l2}/big/entry-{i:05d}', 'w').close()
        if i in wh:
            os.mknod(f'{tmpl}/big/entry-{i:05d}', 0o20000, os.makedev(0, 0))
        else:
            open(f'{nview}/big/entry-{i:05d}', 'w').close()
    for i in range(P['big_upper']):
        for root in (tmpl, nview):
            open(f'{root}/big/upper-{i:05d}', 'w').close()
    info['big'] = (f'{P["big_lower"]} lower + {P["big_upper"]} upper entries, '
                   f'{len(wh)} lower ones whited out in upper')

    # 4. Big files.
    os.makedirs(f'{l2}/files')
    write_file(f'{l2}/files/big', P['file_mib'] * MiB)
    write_sparse(f'{l2}/files/sparse', P['sparse_mib'] * MiB, P['sparse_data_mib'] * MiB)
    os.symlink('../l2/files', f'{nview}/files')

    # 5. chown tree: small lower files, 100 per directory.
    for i in range(P['chown']):
        d = f'{l2}/chown/d{i // 100:03d}'
        if i % 100 == 0:
            os.makedirs(d)
        with open(f'{d}/f{i:05d}', 'wb') as f:
            f.write(b'%05d' % i * 400)

    # 5b. rename tree (issue 16): a lower directory of rename_files files, rename_mib MiB in
    #     all, 100 files per subdirectory, and an empty lower directory to move it into.
    n, size = P['rename_files'], P['rename_mib'] * MiB // P['rename_files']
    if not P.get('rename_tree', True):
        n = 0
    chunk = os.urandom(size)
    os.makedirs(f'{l2}/rename/dst')
    for i in range(n):
        d = f'{l2}/rename/src/d{i // 100:03d}'
        if i % 100 == 0:
            os.makedirs(d)
        with open(f'{d}/f{i:05d}', 'wb') as f:
            f.write(chunk)
    info['rename'] = f'{n} files of {size // 1024} KiB ({n * size / MiB:.0f} MiB)'

    # 5c. hard-link tree (issue 15): hardlinks files of 2,000 bytes, mode 0644, each with
    #     two names, hl/a/fNNNNN and hl/b/fNNNNN; built only when its workload runs.
    n = P['hardlinks'] if P.get('hl_tree', True) else 0
    os.makedirs(f'{l2}/hl/a')
    os.makedirs(f'{l2}/hl/b')
    for i in range(n):
        a = f'{l2}/hl/a/f{i:05d}'
        with open(a, 'wb') as f:
            f.write(b'%05d' % i * 400)
        os.chmod(a, 0o644)
        os.link(a, f'{l2}/hl/b/f{i:05d}')
    info['hardlinks'] = n

    # 6. A C project in the lower layer.
    make_cproj(f'{l2}/cproj', P['cfiles'])

    # 7. A source tarball (outside the layers, read from the page cache).
    picked, nfiles = [], 0
    for dirpath, dirnames, filenames in os.walk('/usr/include'):
        dirnames.sort()
        if nfiles >= P['tar_files']:
            break
        picked.append(os.path.relpath(dirpath, '/usr'))
        for name in sorted(filenames):
            if nfiles >= P['tar_files']:
                break
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) or os.path.islink(p):
                picked.append(os.path.relpath(p, '/usr'))
                nfiles += 1
    if nfiles < P['tar_files'] // 2:
        gen = f'{ws}/gen-src'
        shutil.rmtree(gen, ignore_errors=True)
        os.makedirs(gen)
        picked = [rel for _, rel in generate_entries(gen, P['tar_files'])]
        with open(f'{ws}/tar.list', 'w') as f:
            f.write('\n'.join(picked) + '\n')
        run(['tar', '-cf', f'{fs}/src.tar', '-C', gen, '--no-recursion', '-T', f'{ws}/tar.list'])
        info['tar'] = f'{len(picked)} generated entries'
    else:
        with open(f'{ws}/tar.list', 'w') as f:
            f.write('\n'.join(picked) + '\n')
        run(['tar', '-cf', f'{fs}/src.tar', '-C', '/usr', '--no-recursion', '-T', f'{ws}/tar.list'])
        info['tar'] = f'{nfiles} files of /usr/include ({len(picked)} entries)'
    info['tar'] += f', {os.path.getsize(fs + "/src.tar") / MiB:.0f} MiB'

    _, out = run(['find', f'{nview}/tree'], capture=True)
    info['tree_entries'] = out.count('\n')
    info['big_entries'] = len(os.listdir(f'{nview}/big'))
    _, out = run(['du', '-sm', f'{l2}/tree'], capture=True)
    info['tree_mib'] = int(out.split()[0])
    settle()
    info['build_seconds'] = round(time.time() - t0, 1)
    return info


# --------------------------------------------------------------------------- workloads

class Ctx:
    def __init__(self, target, root, wdir, upper, proc, fs, P, info, bin_dir, log=None):
        self.target, self.root, self.wdir, self.upper = target, root, wdir, upper
        self.proc, self.fs, self.P, self.info, self.bin = proc, fs, P, info, bin_dir
        self.res, self.cpu, self.notes = {}, {}, []
        self.log, self.requests = log, {}   # when counting: the daemon's -d log, counts

    def p(self, rel):
        return os.path.join(self.root, rel)

    def sh(self, cmd, capture=False, env=None):
        """An untimed command, as the workloads' user (root, or the rootless one)."""
        return run(as_user(cmd, STATE['user']), capture=capture, env=env)

    def timed(self, metric, cmd, parse=None, env=None):
        """Time cmd (wall clock; the daemon's CPU time alongside), as the workloads' user.
        parse(out) may return the time measured inside the process instead (or None: the
        wall clock). When counting, the requests the daemon logged meanwhile are counted."""
        c0 = cpu_seconds(self.proc.pid) if self.proc else None
        off0 = os.path.getsize(self.log) if self.log else 0
        dt, out = run(as_user(cmd, STATE['user']), capture=parse is not None, env=env)
        if self.proc:
            self.cpu[metric] = cpu_seconds(self.proc.pid) - c0
        if self.log:
            time.sleep(0.3)   # RELEASE and FORGET come after the last close
            with open(self.log, 'rb') as f:
                f.seek(off0)
                self.requests[metric] = apps.count_opcodes(f.read())
        got = parse(out) if parse else None
        return dt if got is None else got

    def fsops(self, metric, *args):
        return self.timed(metric, [f'{self.bin}/fsops', *map(str, args)],
                          parse=lambda out: float(out.split()[0]))

    def check(self, what, got, want):
        if got != want:
            self.notes.append(f'{what}: got {got}, expected {want}')


def w_find_cold(c):
    rss0 = rss_bytes(c.proc.pid) if c.proc else None
    drop_caches()
    c.res['find_cold'] = c.timed('find_cold', ['find', c.p('tree'), '-ls'])
    if c.proc:
        rss1 = rss_bytes(c.proc.pid)
        c.res['rss'] = rss1 / MiB
        c.res['bytes_node'] = (rss1 - rss0) / c.info['tree_entries']


def w_find_warm(c):
    run(['find', c.p('tree'), '-ls'])
    c.res['find_warm'] = c.timed('find_warm', ['find', c.p('tree'), '-ls'])
    _, out = run(['find', c.p('tree')], capture=True)
    c.check('entries found', out.count('\n'), c.info['tree_entries'])


def w_walk2(c):
    drop_caches()
    cmd = f"find '{c.p('tree')}' -ls >/dev/null & find '{c.p('tree')}' -ls >/dev/null & wait"
    c.res['walk2_cold'] = c.timed('walk2_cold', cmd)


def w_ls_big(c):
    run(['ls', '-l', '--color=never', c.p('big')])
    c.res['ls_big'] = c.timed('ls_big', ['ls', '-l', '--color=never', c.p('big')])
    c.check('ls entries', len(os.listdir(c.p('big'))), c.info['big_entries'])


def w_create_stat_rm(c):
    n = c.P['create']
    d = os.path.join(c.wdir, 'many')
    c.res['create'] = n / c.fsops('create', 'create', d, n) / 1000
    c.res['stat'] = n / c.fsops('stat', 'stat', d, n) / 1000
    c.check('created files', len(os.listdir(d)), n)
    c.res['unlink'] = n / c.timed('unlink', ['rm', '-rf', d]) / 1000


def _dd_read(c, metric):
    size = c.P['file_mib'] * MiB
    dt = c.timed(metric, ['dd', f'if={c.p("files/big")}', 'of=/dev/null', 'bs=1M'])
    c.res[metric] = size / dt / 1e6


def w_seqread_cold(c):
    drop_caches()
    _dd_read(c, 'seqread_cold')


def w_seqread_warm(c):
    run(['dd', f'if={c.p("files/big")}', 'of=/dev/null', 'bs=1M'])
    _dd_read(c, 'seqread_warm')


def w_seqwrite(c):
    n = c.P['file_mib']
    dt = c.timed('seqwrite', ['dd', 'if=/dev/zero', f'of={c.wdir}/written', 'bs=1M',
                              f'count={n}', 'conv=fsync'])
    c.res['seqwrite'] = n * MiB / dt / 1e6


def w_randread(c):
    f = c.p('files/big')
    run(['dd', f'if={f}', 'of=/dev/null', 'bs=1M'])
    secs = c.P['fio_secs']
    cmd = ['fio', '--name=randread', f'--filename={f}', '--readonly', '--rw=randread',
           '--bs=4k', '--ioengine=psync', '--invalidate=0', f'--size={c.P["file_mib"]}m',
           '--time_based', f'--runtime={secs}', '--output-format=json']
    out = []
    c.timed('randread', cmd, parse=lambda o: out.append(o) or 0)
    job = json.loads(out[0][out[0].index('{'):])['jobs'][0]
    c.res['randread'] = job['read']['iops']
    if c.proc:
        c.cpu['randread'] /= max(job['read']['total_ios'], 1) / 1e6   # us per read


def w_copyup(c):
    c.res['copyup'] = c.fsops('copyup', 'append', c.p('files/big'))
    c.check('size after append', os.stat(c.p('files/big')).st_size, c.P['file_mib'] * MiB + 1)


def w_copyup_sparse(c):
    c.res['copyup_sparse'] = c.fsops('copyup_sparse', 'append', c.p('files/sparse'))
    c.check('size after append', os.stat(c.p('files/sparse')).st_size,
            c.P['sparse_mib'] * MiB + 1)
    up = os.path.join(c.upper, 'files/sparse')
    if os.path.exists(up):
        c.res['sparse_alloc'] = os.stat(up).st_blocks * 512 / MiB
    else:
        c.notes.append('no upper copy of the sparse file')


def w_rm_lower(c):
    c.res['rm_lower'] = c.fsops('rm_lower', 'unlink', c.p('files/big'))
    c.check('file still visible', os.path.exists(c.p('files/big')), False)
    up = os.path.join(c.upper, 'files/big')
    if os.path.exists(up) and os.stat(up).st_blocks:
        c.notes.append(f'rm left {os.stat(up).st_blocks * 512 / MiB:.0f} MiB in upper')


def w_chown(c):
    d = c.p('chown')
    if c.target == 'native':
        d = os.path.join(c.wdir, 'chown')
        run(['cp', '-a', f'{c.fs}/l2/chown', d])
        settle()
    c.res['chown'] = c.timed('chown', ['chown', '-R', '4242:4242', d])


def upper_bytes(c):
    """Bytes allocated in the upper layer (du counts blocks, sparse holes excluded)."""
    _, out = run(['du', '-s', '--block-size=1', c.upper], capture=True)
    return int(out.split()[0])


def upper_data_copied(c, rel):
    """MiB of file data copied into the upper layer under rel: the sizes of the regular
    files there that carry no overlay.metacopy (whose data stayed in the lower layer).
    du alone cannot tell them apart on ext4: a metacopy file's two xattrs (metacopy,
    origin) do not fit in a 256-byte inode and take a 4 KiB xattr block, as much as the
    data block of a small file (checked with debugfs: "File ACL" set)."""
    total = 0
    for dirpath, _, names in os.walk(os.path.join(c.upper, rel)):
        for n in names:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            try:
                os.getxattr(p, 'trusted.overlay.metacopy', follow_symlinks=False)
            except OSError:
                total += st.st_size
    return total / MiB


def w_rename_dir(c):
    """mv of a lower directory into another one. Where rename(2) answers EXDEV (kernel
    without redirect_dir, fuse-overlayfs), mv copies the tree and removes the source: that
    is what is timed then. The syncfs after it is timed apart (the copies' write-out)."""
    os.sync()
    before = upper_bytes(c)
    src, dst = c.p('rename/src'), c.p('rename/dst/src')
    c.res['rename_dir'] = c.timed('rename_dir', ['mv', src, dst])
    c.res['rename_dir_sync'] = c.timed('rename_dir_sync', ['sync', '-f', c.upper])
    c.res['rename_dir_upper'] = (upper_bytes(c) - before) / MiB
    c.check('source still visible', os.path.exists(src), False)
    _, out = run(['find', dst, '-type', 'f'], capture=True)
    c.check('files moved', out.count('\n'), c.P['rename_files'])


def w_chown_metacopy(c):
    """chown -R of the chown/ tree, with the bytes it adds to the upper layer."""
    os.sync()
    before = upper_bytes(c)
    c.res['chown_meta'] = c.timed('chown_meta', ['chown', '-R', '4242:4242', c.p('chown')])
    c.res['chown_meta_sync'] = c.timed('chown_meta_sync', ['sync', '-f', c.upper])
    c.res['chown_meta_upper'] = (upper_bytes(c) - before) / MiB
    c.res['chown_meta_data'] = upper_data_copied(c, 'chown')
    f = c.p('chown/d000/f00000')
    c.check('owner after chown', (os.stat(f).st_uid, os.stat(f).st_gid), (4242, 4242))
    with open(f, 'rb') as fh:
        c.check('data after chown', fh.read(5), b'00000')


def index_on(target):
    """Whether target mounts with the inode index: ovlfs by default (where the layers
    allow it: the check in w_hardlinks proves it did), the kernel by its module's
    default, each variant as its options say; fuse-overlayfs has none."""
    opts = TARGET_OPTS.get(target, '')
    if ',index=on' in opts:
        return True
    if ',index=off' in opts:
        return False
    if target.startswith('kernel'):
        with open('/sys/module/overlay/parameters/index') as f:
            return f.read().strip() == 'Y'
    return target.startswith('ovlfs')


def du_bytes(*paths):
    """Bytes allocated under paths, each inode counted once (du sees hard links)."""
    _, out = run(['du', '-s', '-c', '--block-size=1', *paths], capture=True)
    return int(out.splitlines()[-1].split()[0])


def w_hardlinks(c):
    """Lower hard links (issue 15): a cold walk of their names, a copy-up of one name of
    each pair, a read of the other names (with the index they show the copy) and what the
    copy-ups add to the upper layer and to the work directory (where the index lives)."""
    n = c.P['hardlinks']
    hl, work = c.p('hl'), os.path.join(os.path.dirname(c.upper), 'work')
    drop_caches()
    c.res['hl_find_cold'] = c.timed('hl_find_cold', ['find', hl, '-ls'])
    os.sync()
    upper0, work0, both0 = du_bytes(c.upper), du_bytes(work), du_bytes(c.upper, work)
    c.res['hl_chmod'] = c.timed('hl_chmod', ['chmod', '-R', '600', f'{hl}/a'])
    got = []
    c.res['hl_cat'] = c.timed('hl_cat', f"cd '{hl}/b' && cat -- * | wc -c",
                              parse=got.append)   # None: the wall clock
    os.sync()
    c.res['hl_upper'] = (du_bytes(c.upper) - upper0) / MiB
    c.res['hl_work'] = (du_bytes(work) - work0) / MiB
    c.res['hl_both'] = (du_bytes(c.upper, work) - both0) / MiB
    on = index_on(c.target)
    c.check('bytes read from hl/b', int(got[0].split()[0]) if got else None, n * 2000)
    c.check(f'mode of hl/b/f00000 after the chmod (index {"on" if on else "off"})',
            oct(os.stat(f'{hl}/b/f00000').st_mode & 0o7777), oct(0o600 if on else 0o644))
    idx = os.path.join(work, 'index')
    c.check('entries in the index after the chmod',
            len(os.listdir(idx)) if os.path.isdir(idx) else 0, n if on else 0)


def w_untar(c):
    d = os.path.join(c.wdir, 'untar')
    tarball = f'{c.fs}/src.tar'
    run(f"cat '{tarball}' >/dev/null")
    c.res['untar'] = c.timed('untar', f"mkdir '{d}' && tar -xf '{tarball}' -C '{d}'")
    c.res['tar_c'] = c.timed('tar_c', f"tar -cf - -C '{d}' . | cat >/dev/null")
    c.res['rm_untar'] = c.timed('rm_untar', ['rm', '-rf', d])


def w_make(c):
    d = c.p('cproj')
    if c.target == 'native':
        d = os.path.join(c.wdir, 'cproj')
        run(['cp', '-a', f'{c.fs}/l2/cproj', d])
        settle()
    # Warm the compiler (cold workloads before dropped it from the page cache).
    run(['cc', '-O2', '-c', f'{c.fs}/l2/cproj/m0000.c', '-o', '/dev/null'])
    run("echo 'int main(void) { return 0; }' | cc -x c -o /dev/null -")
    c.res['make'] = c.timed('make', ['make', '-s', '-j2', '-C', d])
    c.check('program built', os.path.exists(f'{d}/prog'), True)


# (name, function, runs on native)
WORKLOADS = [
    ('find_cold', w_find_cold, True),
    ('find_warm', w_find_warm, True),
    ('walk2', w_walk2, True),
    ('ls_big', w_ls_big, True),
    ('create', w_create_stat_rm, True),
    ('seqread_cold', w_seqread_cold, True),
    ('seqread_warm', w_seqread_warm, True),
    ('seqwrite', w_seqwrite, True),
    ('randread', w_randread, True),
    ('copyup', w_copyup, False),
    ('copyup_sparse', w_copyup_sparse, False),
    ('rm_lower', w_rm_lower, False),
    ('chown', w_chown, True),
    ('untar', w_untar, True),
    ('make', w_make, True),
    # issue 16, opt-in (not in the default run: --only rename_dir,chown_metacopy)
    ('rename_dir', w_rename_dir, False),
    ('chown_metacopy', w_chown_metacopy, False),
    # issue 15, opt-in: lower hard links with and without the index (--only hardlinks)
    ('hardlinks', w_hardlinks, False),
]
OPT_IN = {'rename_dir', 'chown_metacopy', 'hardlinks'}


def metrics(P, info):
    """(key, label, unit, higher_is_better) in table order."""
    t = info.get('tree_entries', P['tree'])
    fm = f'{P["file_mib"] // 1024} GiB' if P['file_mib'] >= 1024 else f'{P["file_mib"]} MiB'
    sm = f'{P["sparse_mib"] // 1024} GiB' if P['sparse_mib'] >= 1024 else f'{P["sparse_mib"]} MiB'
    return [
        ('find_cold', f'find -ls over the {t}-entry tree, cold', 's', False),
        ('find_warm', f'find -ls over the {t}-entry tree, warm', 's', False),
        ('walk2_cold', 'two find -ls of the tree at once, cold', 's', False),
        ('ls_big', f'ls -l of the {info.get("big_entries", "")}-entry merged dir, warm', 's', False),
        ('create', f'create {P["create"]} empty files', 'k files/s', True),
        ('stat', f'stat {P["create"]} files, warm', 'k files/s', True),
        ('unlink', f'rm -rf the {P["create"]} files', 'k files/s', True),
        ('seqread_cold', f'sequential read of a {fm} lower file, cold', 'MB/s', True),
        ('seqread_warm', f'sequential read of a {fm} lower file, warm', 'MB/s', True),
        ('seqwrite', f'sequential write of {fm} + fsync', 'MB/s', True),
        ('randread', f'random 4k reads of the {fm} file, warm (fio, psync)', 'IOPS', True),
        ('copyup', f'copy-up: append 1 byte to the {fm} lower file + sync', 's', False),
        ('copyup_sparse', f'copy-up: append 1 byte to a sparse {sm} file '
                          f'({P["sparse_data_mib"]} MiB data) + sync', 's', False),
        ('sparse_alloc', 'disk allocated for the sparse copy-up', 'MiB', False),
        ('rm_lower', f'rm of the {fm} lower file', 's', False),
        ('chown', f'chown -R over {P["chown"]} lower files', 's', False),
        ('untar', f'untar {info.get("tar", "a source tree")}', 's', False),
        ('tar_c', 'tar c of it back, piped through cat', 's', False),
        ('rm_untar', 'rm -rf of it', 's', False),
        ('make', f'make -j2 of {P["cfiles"]} C files in the mount', 's', False),
        ('rename_dir', f'mv of a lower dir of {info.get("rename", "")} into another dir '
                       '(EXDEV: copy + remove, as mv does)', 's', False),
        ('rename_dir_sync', 'syncfs right after that mv', 's', False),
        ('rename_dir_upper', 'upper layer growth from that mv (du)', 'MiB', False),
        ('chown_meta', f'chown -R over {P["chown"]} lower files (metacopy workload)', 's', False),
        ('chown_meta_sync', 'syncfs right after that chown', 's', False),
        ('chown_meta_upper', 'upper layer growth from that chown (du)', 'MiB', False),
        ('chown_meta_data', 'file data copied up by that chown (upper files without '
                            'overlay.metacopy)', 'MiB', False),
        ('hl_find_cold', f'find -ls of hl/, {info.get("hardlinks", "")} lower files of '
                         'two names each, cold', 's', False),
        ('hl_chmod', 'chmod -R 600 of hl/a (copy-up of one name of each file)', 's', False),
        ('hl_cat', 'cat of the other names, hl/b/*, warm', 's', False),
        ('hl_upper', 'upper layer growth from that chmod (du)', 'MiB', False),
        ('hl_work', 'work directory growth from that chmod (du; the index)', 'MiB', False),
        ('hl_both', 'upper + work growth, each inode counted once (du)', 'MiB', False),
        ('rss', f'daemon RSS after the cold walk of {t} entries', 'MiB', False),
        ('bytes_node', 'daemon memory per cached node (RSS growth / entries)', 'B', False),
    ]


# --------------------------------------------------------------------------- one measurement

def measure(target, wl, fs, P, info, ovlfs_bin, ws):
    name, fn, _ = wl
    run_dir = f'{fs}/run'
    if os.path.exists(run_dir):
        run(['rm', '-rf', run_dir])
    os.makedirs(run_dir)
    upper, work, mnt = f'{run_dir}/upper', f'{run_dir}/work', f'{run_dir}/mnt'
    proc = None
    mounted = False
    user = STATE['user']
    count_log = f'{ws}/logs/{target}-requests.log' if STATE['count'] else None
    try:
        if target == 'native':
            os.makedirs(f'{run_dir}/native')
            root, wdir = f'{fs}/native', f'{run_dir}/native'
            if user:
                os.chown(wdir, *user)
        else:
            os.makedirs(work)
            os.makedirs(mnt)
            run(['cp', '-a', f'{fs}/upper-template', upper])
            if user:   # the rootless user's own directories, as a user's would be
                for d in (work, mnt):
                    os.chown(d, *user)
            settle()
            proc = mount_overlay(target, info.get('lowers', [f'{fs}/l1', f'{fs}/l2']), upper,
                                 work, mnt, ovlfs_bin, f'{ws}/logs', count_log)
            mounted = True
            root = wdir = mnt
        settle()
        c = Ctx(target, root, wdir, upper, proc, fs, P, info, f'{ws}/bin',
                count_log if proc else None)
        err = None
        try:
            fn(c)
        except Failed as e:
            err = str(e)
        if proc is not None and proc.poll() is not None:
            rc = proc.returncode
            how = f'signal {-rc}' if rc < 0 else f'status {rc}'
            err = (err + '; ' if err else '') + \
                f'the {target} daemon died ({how}): {log_tail(f"{ws}/logs/{target}.log")}'
        return c.res, c.cpu, c.notes, err, c.requests
    finally:
        if mounted:
            MOUNTS.remove(mnt)


def log_tail(path, n=3):
    try:
        with open(path, errors='replace') as f:
            text = f.read().rsplit('\n---', 1)[-1]     # this mount's part of the log
        lines = [l.strip() for l in text.splitlines()[1:] if l.strip()]
        return ' | '.join(lines[-n:])
    except OSError:
        return ''


# --------------------------------------------------------------------------- machine

def machine_info(fs_dev, img):
    def cmd(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, env=ENV).stdout.strip()
        except OSError:
            return ''
    cpu = ''
    with open('/proc/cpuinfo') as f:
        for line in f:
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    with open('/proc/meminfo') as f:
        mem = int(f.readline().split()[1]) // 1024 // 1024
    osname = ''
    if os.path.exists('/etc/os-release'):
        for line in open('/etc/os-release'):
            if line.startswith('PRETTY_NAME='):
                osname = line.split('=', 1)[1].strip().strip('"')
    back = ' '.join(cmd(['findmnt', '-n', '-o', 'FSTYPE,SOURCE', '--target',
                         os.path.dirname(img)]).split())
    head = cmd(['git', '-C', REPO, 'rev-parse', 'HEAD'])
    dirty = cmd(['git', '-C', REPO, 'status', '--porcelain', '--', 'src', 'Makefile'])
    commit = head or 'unknown'
    if dirty:
        paths = [l.split(None, 1)[1] for l in dirty.splitlines()]
        diff = subprocess.run(['git', '-C', REPO, 'diff', 'HEAD', '--', 'src'],
                              capture_output=True).stdout
        h = hashlib.sha256(diff)
        for u in sorted(paths):
            p = os.path.join(REPO, u)
            if u.startswith('src/') and os.path.isfile(p) and not u.endswith('/'):
                h.update(open(p, 'rb').read())
        commit += f' plus uncommitted changes in {", ".join(paths)}'
        if any(u.startswith('src') for u in paths):
            commit += f' (src content hash {h.hexdigest()[:12]})'
    fo = [l for l in cmd(['fuse-overlayfs', '--version']).splitlines() if 'overlayfs' in l]
    return {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'cpu': f'{os.cpu_count()} cores ({cpu})', 'memory': f'{mem} GiB',
        'kernel': os.uname().release, 'os': osname,
        'filesystem': (f'ext4 with a journal (fresh mkfs for this run) on {fs_dev} '
                       f'(direct I/O) backed by a file on {back}'),
        'ovlfs': commit,
        'fuse-overlayfs': fo[0] if fo else 'not installed',
        'libfuse': cmd(['pkg-config', '--modversion', 'fuse3']),
        'fio': cmd(['fio', '--version']),
    }


# --------------------------------------------------------------------------- report

def fmt(v):
    if v is None:
        return '—'
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 1000:
        return f'{v:,.0f}'
    if a >= 100:
        return f'{v:.0f}'
    if a >= 10:
        return f'{v:.1f}'
    if a >= 1:
        return f'{v:.2f}'
    if a >= 0.01:
        return f'{v:.3f}'
    return f'{v:.2g}'


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(samples, mets, targets):
    """Per metric: the median of each target, and the median of same-round ratios."""
    rows = []
    for key, label, unit, hib in mets:
        s = samples.get(key, {})
        if not any(s.get(t) for t in targets):
            continue
        m = {t: med(s.get(t, [])) for t in targets}
        ratios = {}
        for ref in ('kernel', 'fuse-overlayfs'):
            a, b = s.get('ovlfs', []), s.get(ref, [])
            rr = [x / y for x, y in zip(a, b) if x is not None and y]
            ratios[ref] = med(rr)
        pairs = {}
        for prefix, a_t, b_t in VARIANT_PAIRS:
            if key.startswith(prefix) and a_t in targets and b_t in targets:
                rr = [x / y for x, y in zip(s.get(a_t, []), s.get(b_t, []))
                      if x is not None and y]
                if rr:
                    pairs[f'{a_t} / {b_t}'] = med(rr)
        rows.append(dict(key=key, label=label, unit=unit, hib=hib, med=m, ratio=ratios,
                         pairs=pairs))
    return rows


def make_command(profile, rootless, apt=False):
    if profile.startswith('apps'):
        return ('make bench-apps' + (' QUICK=1' if profile == 'apps-quick' else '') +
                (' ROOTLESS=1' if rootless else '') + (' APT=1' if apt else ''))
    return 'make bench' if profile == 'full' else 'make bench-quick'


def write_report(path_md, path_png, rows, cpu_rows, machine, info, P, profile, notes,
                 errors, targets, elapsed, samples, mets, data=None):
    data = data or {}
    apps_suite = data.get('suite') == 'apps'
    L = []
    L.append('# ovlfs benchmark results' + (': developer workloads' if apps_suite else '') +
             (', rootless' if data.get('rootless') else '') + '\n')
    if data.get('rootless'):
        L.append('Rootless profile: fuse-overlayfs and ovlfs were mounted by an unprivileged '
                 'user (uid 65534, through fusermount3), so the kernel gave neither '
                 'passthrough; the workloads ran as that user on every target (the kernel '
                 'overlayfs, mounted by root, and the native directory are the reference).\n')
    if profile.endswith('quick'):
        L.append(f'**A quick run** ({P["rounds"]} round(s), the reduced layers): it checks '
                 'that the harness works end to end; its figures are indicative only.\n')
    L.append(f'Produced by `{make_command(profile, data.get("rootless"), P.get("apt"))}` '
             f'(bench/run.py, profile `{profile}`): every figure is the median of {P["rounds"]} '
             f'round(s); in each round every workload ran on the {len(targets)} targets one '
             'after the other (the order rotated each round), each on a fresh mount with a '
             'fresh copy of the upper layer. Ratios are the medians of the same-round ratios '
             'ovlfs/kernel and ovlfs/fuse-overlayfs. ↑ marks figures where higher is better '
             '(there a ratio above 1 means ovlfs is faster); everywhere else lower is better '
             '(a ratio below 1 means ovlfs is faster).\n')
    L.append('## Machine\n')
    for k in ('date', 'cpu', 'memory', 'kernel', 'os', 'filesystem', 'ovlfs', 'ovlfs binary',
              'fuse-overlayfs', 'libfuse', 'fio', 'load_start', 'load_end', 'note'):
        if k in machine:
            L.append(f'- {k.replace("_", " ")}: {machine[k]}')
    if elapsed:
        L.append(f'- run time: {elapsed / 60:.0f} min (building the layers: '
                 f'{info["build_seconds"]:.0f} s)')
    L.append('')
    L.append('## Layers\n')
    if apps_suite:
        L += apps.layers_md(P, info)
        L.append('')
    else:
        write_layers(L, info, P, targets)
    write_results(L, rows, targets, path_png, cpu_rows, samples, mets)
    if data.get('requests'):
        write_requests(L, data['requests'], mets, info, targets)
    if data.get('skipped'):
        L.append('## Skipped\n')
        L += [f'- {s}' for s in data['skipped']]
        L.append('')
    write_checks(L, notes, errors)
    with open(path_md, 'w') as f:
        f.write('\n'.join(L))


def write_layers(L, info, P, targets):
    L.append(f'- bottom lower: a tree of {info["tree_entries"]} entries, {info["tree_mib"]} MiB '
             f'({info["tree_source"]}); the big directory; a {P["file_mib"]} MiB file; '
             f'a sparse {P["sparse_mib"]} MiB file with {P["sparse_data_mib"]} MiB of data in '
             f'16 extents; {P["chown"]} small files for chown; a C project of {P["cfiles"]} files'
             + (f'; for rename_dir a directory of {info["rename"]}'
                if not info.get('rename', '0').startswith('0') else '')
             + (f'; for hardlinks {info["hardlinks"]} files of 2,000 bytes, each with two '
                'names, hl/a/fNNNNN and hl/b/fNNNNN' if info.get('hardlinks') else ''))
    L.append(f'- top lower: {info["overlap"]}')
    L.append(f'- upper (copied fresh for every mount): {info["big"]}')
    L.append('- native: a plain directory holding the merged view (for writes: a fresh '
             'directory on the same filesystem; chown and make work on a fresh copy)')
    L.append('- mounts: `mount -t overlay overlay -o lowerdir=L1:L2,upperdir=U,workdir=W`, '
             '`fuse-overlayfs -f -o lowerdir=..,upperdir=..,workdir=..`, '
             '`ovlfs -f -o lowerdir=..,upperdir=..,workdir=..` (defaults otherwise)')
    variants = [t for t in targets if t in TARGET_OPTS]
    if variants:
        L.append('- option variants, the same mounts plus: ' + ', '.join(
            f'{t} `{TARGET_OPTS[t].lstrip(",")}`' for t in variants))
    L.append('- cold: after the mount, `sync; echo 3 > /proc/sys/vm/drop_caches`\n')


def write_results(L, rows, targets, path_png, cpu_rows, samples, mets):
    L.append('## Results\n')
    hdr = '| workload | unit | ' + ' | '.join(LABELS[t] for t in targets)
    hdr += ' | ovlfs / kernel | ovlfs / fuse-overlayfs |'
    L.append(hdr)
    L.append('|' + '---|' * (len(targets) + 4))
    for r in rows:
        lab = r['label'] + (' ↑' if r['hib'] else '')
        cells = [fmt(r['med'][t]) for t in targets]
        rk = r['ratio']['kernel']
        rf = r['ratio']['fuse-overlayfs']
        L.append(f'| {lab} | {r["unit"]} | ' + ' | '.join(cells) +
                 f' | {fmt(rk) if rk is not None else "—"} | {fmt(rf) if rf is not None else "—"} |')
    L.append('')
    pair_names = []
    for r in rows:
        pair_names += [k for k in r.get('pairs', {}) if k not in pair_names]
    if pair_names:
        L.append('Option variants against each other (medians of same-round ratios):\n')
        L.append('| workload | ' + ' | '.join(pair_names) + ' |')
        L.append('|' + '---|' * (len(pair_names) + 1))
        for r in rows:
            if r.get('pairs'):
                L.append(f'| {r["label"]} | ' + ' | '.join(
                    fmt(r['pairs'].get(k)) for k in pair_names) + ' |')
        L.append('')
    L.append(f'Chart: [{os.path.basename(path_png)}]({os.path.basename(path_png)}) — ovlfs\'s '
             'relative cost against each reference, as a time ratio on a log scale (below 1: '
             'ovlfs faster; for ↑ figures the table ratio is inverted).\n')
    if cpu_rows:
        L.append('## Daemon CPU time (user + system, from /proc/PID/stat)\n')
        L.append('Medians; seconds of daemon CPU during the timed part, except random reads '
                 '(microseconds of daemon CPU per 4k read).\n')
        extra = [t for t in targets if t.startswith('ovlfs-')]
        L.append('| workload | fuse-overlayfs | ovlfs |' +
                 ''.join(f' {LABELS[t]} |' for t in extra))
        L.append('|---|---|---|' + '---|' * len(extra))
        for label, *vals in cpu_rows:
            L.append(f'| {label} | ' + ' | '.join(fmt(v) for v in vals) + ' |')
        L.append('')
    L.append('## All samples\n')
    L.append('Each target\'s value in every round (round 1 / round 2 / ...).\n')
    L.append('| workload | unit | ' + ' | '.join(LABELS[t] for t in targets) + ' |')
    L.append('|' + '---|' * (len(targets) + 2))
    for key, label, unit, hib in mets:
        if key not in samples:
            continue
        cells = [' / '.join(fmt(v) for v in samples[key].get(t, [])) or '—' for t in targets]
        L.append(f'| {label}{" ↑" if hib else ""} | {unit} | ' + ' | '.join(cells) + ' |')
    L.append('')


def write_requests(L, requests, mets, info, targets):
    """Requests per entry of each timed part, and the opcodes that make them up."""
    fuse = [t for t in targets if t != 'native' and not t.startswith('kernel')]
    L.append('## FUSE requests per entry\n')
    L.append('Counted in a separate pass, one per workload and FUSE target, with the daemon '
             'under `-d` (its times are not in the tables above): the requests logged '
             'during the timed part (and 0.3 s after, for the last RELEASEs and FORGETs), '
             'divided by the entries the workload goes through (the tree; the subtree '
             'for cp -a and rm -rf; for apt-get, the entries of the packages it installs). Then the opcodes, most frequent first, as requests '
             'per entry.\n')
    L.append('| workload | ' + ' | '.join(f'{LABELS[t]} total' for t in fuse) + ' | ' +
             ' | '.join(f'{LABELS[t]} by opcode' for t in fuse) + ' |')
    L.append('|' + '---|' * (1 + 2 * len(fuse)))
    for key, label, _, _ in mets:
        if key not in requests:
            continue
        n = apps.per_file(info, key)
        tot, ops = [], []
        for t in fuse:
            c = requests[key].get(t)
            if c is None:
                tot.append('—')
                ops.append('—')
                continue
            tot.append(f'{sum(c.values()) / n:.2f}')
            ops.append(', '.join(f'{op} {v / n:.2f}' for op, v in
                                 sorted(c.items(), key=lambda kv: -kv[1]) if v / n >= 0.01))
        L.append(f'| {label} | ' + ' | '.join(tot) + ' | ' + ' | '.join(ops) + ' |')
    L.append('')


def write_checks(L, notes, errors):
    if notes or errors:
        L.append('## Checks and errors\n')
        for n in notes:
            L.append(f'- {n}')
        for e in errors:
            L.append(f'- error: {e}')
        L.append('')


def chart_series(rows):
    """(label, cost vs kernel, cost vs fuse-overlayfs) as time ratios (<1: ovlfs faster)."""
    out = []
    for r in rows:
        vals = []
        for ref in ('kernel', 'fuse-overlayfs'):
            x = r['ratio'][ref]
            if x is not None and x > 0 and r['hib']:
                x = 1 / x
            vals.append(x if x and x > 0 else None)
        if any(vals):
            out.append((r['label'], vals[0], vals[1]))
    return out


def write_chart(path, rows, title):
    series = chart_series(rows)
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        plt = None
    if plt is not None:
        n = len(series)
        fig, ax = plt.subplots(figsize=(11, 0.42 * n + 1.6))
        ys = list(range(n))[::-1]
        h = 0.38
        for k, (name, color) in enumerate((('vs kernel overlayfs', '#4C72B0'),
                                           ('vs fuse-overlayfs', '#DD8452'))):
            xs = [s[1 + k] for s in series]
            pos = [y + (h / 2 if k == 0 else -h / 2) for y in ys]
            ax.barh([p for p, x in zip(pos, xs) if x], [x for x in xs if x], height=h,
                    color=color, label=name)
            for p, x in zip(pos, xs):
                if x:
                    ax.text(x * 1.03, p, f'{x:.2f}', va='center', fontsize=7)
        ax.set_xscale('log')
        ax.axvline(1.0, color='black', linewidth=1)
        ax.set_yticks(ys)
        ax.set_yticklabels([s[0] for s in series], fontsize=8)
        ax.set_xlabel('ovlfs time ratio (below 1: ovlfs faster), log scale')
        ax.set_title(title, fontsize=10)
        ax.legend(loc='lower right', fontsize=8)
        lo = min([x for s in series for x in s[1:] if x] + [0.5])
        hi = max([x for s in series for x in s[1:] if x] + [2])
        ax.set_xlim(lo / 1.5, hi * 2)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return 'matplotlib'
    if shutil.which('gnuplot'):
        dat = path + '.dat'
        with open(dat, 'w') as f:
            for name, a, b in series:
                f.write(f'"{name}" {a or "NaN"} {b or "NaN"}\n')
        script = (f'set terminal png size 1100,{40 * len(series) + 150}\nset output "{path}"\n'
                  'set style data histograms\nset style fill solid\nset logscale y\n'
                  f'set title "{title}"\nset xtics rotate by -40\n'
                  f'plot "{dat}" using 2:xtic(1) title "vs kernel", "" using 3 title "vs fuse-overlayfs"\n')
        subprocess.run(['gnuplot'], input=script, text=True)
        os.unlink(dat)
        return 'gnuplot'
    write_png_bars(path, series)
    return 'built-in PNG writer'


def write_png_bars(path, series):
    """Bars without text: one row per workload (table order), blue = vs kernel, orange =
    vs fuse-overlayfs, log scale from 1/8 to 8, black line at 1."""
    import math
    import struct
    import zlib
    W, rowh = 800, 24
    H = rowh * len(series) + 20
    px = [[(255, 255, 255)] * W for _ in range(H)]

    def xpos(v):
        v = min(max(v, 1 / 8), 8)
        return int(40 + (math.log(v, 8) + 1) / 2 * (W - 80))
    for i, (_, a, b) in enumerate(series):
        for k, (v, col) in enumerate(((a, (76, 114, 176)), (b, (221, 132, 82)))):
            if not v:
                continue
            y0 = 10 + i * rowh + k * 10
            x0, x1 = sorted((xpos(1), xpos(v)))
            for y in range(y0, y0 + 9):
                for x in range(x0, x1 + 1):
                    px[y][x] = col
    for y in range(H):
        px[y][xpos(1)] = (0, 0, 0)
    raw = b''.join(b'\0' + bytes(c for p in row for c in p) for row in px)

    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    with open(path, 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', W, H, 8, 2, 0, 0, 0))
                + chunk(b'IDAT', zlib.compress(raw, 9)) + chunk(b'IEND', b''))


# --------------------------------------------------------------------------- main

apps.use(argparse.Namespace(run=run, drop_caches=drop_caches, settle=settle, log=log))


def stale_cleanup(ws, img):
    """Remove what an earlier, killed run of this harness left under its own work dir."""
    for mp in sorted((m for m in mountpoints() if m.startswith(ws + '/')),
                     key=lambda m: -m.count('/')):
        log(f'removing a stale mount of an earlier run: {mp}')
        sh_ok(['fusermount3', '-u', mp]) or sh_ok(['umount', mp]) or sh_ok(['umount', '-l', mp])
    if os.path.exists(img):
        out = subprocess.run(['losetup', '-j', img], capture_output=True, text=True).stdout
        for line in out.splitlines():
            dev = line.split(':', 1)[0]
            log(f'detaching a stale loop device of an earlier run: {dev}')
            sh_ok(['losetup', '-d', dev])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--profile', choices=PROFILES, default='quick')
    ap.add_argument('--rounds', type=int, help='override the number of rounds (N)')
    ap.add_argument('--ovlfs', default=os.path.join(REPO, 'build/ovlfs'))
    ap.add_argument('--workdir', default=os.environ.get('BENCH_WORKDIR', '/var/tmp/ovlfs-bench'))
    ap.add_argument('--out', help='results file (.md); the chart goes beside it as .png')
    ap.add_argument('--only', help='comma-separated workloads to run (default: all)')
    ap.add_argument('--targets', default=','.join(TARGETS))
    ap.add_argument('--keep', action='store_true', help='keep the image file afterwards')
    ap.add_argument('--note', help='a remark for the results\' Machine section (e.g. that '
                    'other jobs shared the machine)')
    ap.add_argument('--rootless', action='store_true',
                    help='apps profiles: the FUSE daemons mounted by an unprivileged user '
                    '(nobody) through fusermount3, who also runs the workloads')
    ap.add_argument('--apt', action='store_true',
                    help='apps profiles: add apt_install, apt-get install into a '
                    'debootstrap\'d lower (downloads from Debian\'s mirror once)')
    ap.add_argument('--count-requests', action=argparse.BooleanOptionalAction,
                    help='apps profiles: one more pass on the FUSE targets with -d, counting '
                    'the timed parts\' requests per opcode (default: on)')
    ap.add_argument('--report-from', metavar='JSON',
                    help='only rewrite the results (.md, .png) from a earlier run\'s .json')
    a = ap.parse_args()
    if a.report_from:
        with open(a.report_from) as f:
            data = json.load(f)
        report(data, a.out or os.path.splitext(a.report_from)[0] + '.md')
        return
    if os.geteuid() != 0:
        sys.exit('bench: must run as root (mounts, drop_caches, loop devices)')
    P = dict(PROFILES[a.profile])
    if a.rounds:
        P['rounds'] = a.rounds
    suite = P.get('suite', 'synthetic')
    if a.count_requests is not None:
        if a.count_requests and suite != 'apps':
            sys.exit('bench: --count-requests is for the apps profiles (apps, apps-quick)')
        P['count_requests'] = a.count_requests
    STATE['timeout'] = P['timeout']
    if a.rootless:
        if suite != 'apps':
            sys.exit('bench: --rootless is for the apps profiles (apps, apps-quick)')
        fm = shutil.which('fusermount3')
        if not shutil.which('setpriv') or not fm or not os.stat(fm).st_mode & 0o4000:
            sys.exit('bench: --rootless needs setpriv and a setuid-root fusermount3')
        STATE['user'] = (NOBODY, NOBODY)
    targets = [t for t in a.targets.split(',') if t]
    if 'fuse-overlayfs' in targets and not shutil.which('fuse-overlayfs'):
        log('fuse-overlayfs is not installed: that target is skipped')
        targets.remove('fuse-overlayfs')
    if 'kernel' in targets and 'overlay' not in open('/proc/filesystems').read():
        sh_ok(['modprobe', 'overlay'])
        if 'overlay' not in open('/proc/filesystems').read():
            log('the kernel has no overlayfs: that target is skipped')
            targets.remove('kernel')
    if 'ovlfs-uring' in targets:
        if not os.access(URING_PARAM, os.W_OK):
            log('the kernel has no FUSE over io_uring: ovlfs-uring is skipped')
            targets.remove('ovlfs-uring')
        else:  # the kernel's switch, on for this run and put back after
            with open(URING_PARAM) as f:
                before = f.read().strip()
            atexit.register(set_uring_param, before)
            set_uring_param('Y')
    skipped = []
    if suite == 'apps':
        skipped, P['apt'] = apps.skipped_optional(a.apt, a.rootless)
        wls = [w for w in apps.WORKLOADS if w[0] != 'apt_install' or P['apt']]
        if P['apt']:   # the Debian, its native copy and what dpkg installs
            P['img_gib'] += 4
        for reason in skipped:
            log(reason)
    else:
        wls = WORKLOADS
    if a.only:
        want = a.only.split(',')
        wls = [w for w in wls if w[0] in want]
    elif suite != 'apps':   # the issue-16 workloads stay out of the default run
        wls = [w for w in WORKLOADS if w[0] not in OPT_IN]
    # The 1 GiB rename tree is built only when its workload runs.
    P['rename_tree'] = any(w[0] == 'rename_dir' for w in wls)
    P['hl_tree'] = any(w[0] == 'hardlinks' for w in wls)
    if not shutil.which('fio') and suite != 'apps':
        log('fio is not installed: random reads are skipped')
        wls = [w for w in wls if w[0] != 'randread']
    default_out = {'full': 'results.md', 'quick': 'results-quick.md', 'apps': 'results-apps.md',
                   'apps-quick': 'results-apps-quick.md'}[a.profile]
    if a.rootless:
        default_out = default_out.replace('apps', 'apps-rootless')
    out_md = a.out or os.path.join(HERE, default_out)
    out_json = os.path.splitext(out_md)[0] + '.json'
    os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)

    ws = os.path.abspath(a.workdir)
    os.makedirs(f'{ws}/bin', exist_ok=True)
    os.makedirs(f'{ws}/logs', exist_ok=True)
    if STATE['user']:   # nobody must reach the layers and the binary below it
        os.chmod(ws, 0o755)
        os.chmod(f'{ws}/bin', 0o755)
    lockf = open(f'{ws}/lock', 'w')
    try:
        fcntl.flock(lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        sys.exit(f'bench: another run holds {ws}/lock')
    img, fs = f'{ws}/fs.img', f'{ws}/fs'

    def on_signal(signum, frame):
        raise Stop(f'signal {signum}')
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)

    t_start = time.time()
    stale_cleanup(ws, img)
    if STATE['user']:
        # /dev/fuse open to everyone for the run (its stock mode, 0666, as the rootless
        # tests do); the mode found is put back at exit, whatever happens.
        fuse_mode = os.stat('/dev/fuse').st_mode & 0o7777
        atexit.register(os.chmod, '/dev/fuse', fuse_mode)
        os.chmod('/dev/fuse', fuse_mode | 0o666)
    # Our own copies of the binaries: the source tree may change while we run.
    shutil.copy2(a.ovlfs, f'{ws}/bin/ovlfs')
    ovlfs_bin = f'{ws}/bin/ovlfs'
    with open(ovlfs_bin, 'rb') as f:
        ovlfs_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    run(['cc', '-O2', '-Wall', '-o', f'{ws}/bin/fsops', os.path.join(HERE, 'fsops.c')])

    samples, cpu, notes, errors, requests = {}, {}, [], [], {}
    info = {}
    loopdev = None
    try:
        # A fresh ext4 with a journal for this run (see bench/README.md: ext4 without a journal
        # does not reuse freed inodes for minutes, which slows creates after a big delete).
        if os.path.exists(img):
            os.unlink(img)
        with open(img, 'wb') as f:
            f.truncate(P['img_gib'] * GiB)
        run(['mkfs.ext4', '-q', '-F', '-E', 'lazy_itable_init=0,lazy_journal_init=0', img])
        _, loopdev = run(['losetup', '-f', '--show', '--direct-io=on', img], capture=True)
        loopdev = loopdev.strip()
        os.makedirs(fs, exist_ok=True)
        try:
            run(['mount', '-o', 'noatime', loopdev, fs])
        except BaseException:
            sh_ok(['losetup', '-d', loopdev])
            raise
        MOUNTS.add(fs, 'loop', loopdev)
        machine = machine_info(loopdev, img)
        if a.note:
            machine['note'] = a.note
        machine['ovlfs binary'] = f'sha256 {ovlfs_sha}… (built by `make build/ovlfs`, CFLAGS -O2 -g)'
        machine['load_start'] = ' '.join(open('/proc/loadavg').read().split()[:3]) + \
            ' (1, 5, 15 min, at the start)'
        log(f'building the layers on {loopdev} ({a.profile} profile)')
        if suite == 'apps':
            info = apps.build_layers(P, fs, ws, STATE['user'])
            log(f'layers built in {info["build_seconds"]} s: tree of {info["tree_files"]} files, '
                f'{info["tree_entries"]} entries ({info["tree_mib"]} MiB)')
        else:
            info = build_layers(P, fs, ws)
            log(f'layers built in {info["build_seconds"]} s: tree of {info["tree_entries"]} '
                f'entries ({info["tree_mib"]} MiB), big dir of {info["big_entries"]}; {info["tar"]}')

        for rnd in range(P['rounds']):
            order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
            log(f'round {rnd + 1}/{P["rounds"]}: targets in the order {", ".join(order)}')
            for wl in wls:
                for t in order:
                    if t == 'native' and not wl[2]:
                        continue
                    t0 = time.time()
                    try:
                        res, c, nts, err, _ = measure(t, wl, fs, P, info, ovlfs_bin, ws)
                    except Failed as e:
                        res, c, nts, err = {}, {}, [], str(e)
                    if err:
                        errors.append(f'round {rnd + 1}, {wl[0]} on {t}: {err}')
                        log(f'  {wl[0]:14} {t:15} FAILED: {err}')
                    for k, v in res.items():
                        samples.setdefault(k, {}).setdefault(t, [None] * P['rounds'])[rnd] = v
                    for k, v in c.items():
                        cpu.setdefault(k, {}).setdefault(t, []).append(v)
                    for n in nts:
                        notes.append(f'round {rnd + 1}, {wl[0]} on {t}: {n}')
                    shown = ' '.join(f'{k}={fmt(v)}' for k, v in res.items())
                    log(f'  {wl[0]:14} {t:15} {shown}  ({time.time() - t0:.1f} s'
                        f'{"; " + "; ".join(nts) if nts else ""})')
        if P.get('count_requests'):
            count_requests(wls, targets, fs, P, info, ovlfs_bin, ws, requests, errors)
    except Stop as e:
        log(f'stopped by {e}')
        errors.append(f'run interrupted ({e})')
    except Exception:
        traceback.print_exc()
        errors.append('harness error: ' + traceback.format_exc().strip().splitlines()[-1])
    finally:
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)
        MOUNTS.cleanup()
        left = [m for m in mountpoints() if m.startswith(ws + '/')]
        if left:
            log(f'WARNING: mounts left behind: {left}')
        if not a.keep and os.path.exists(img):
            os.unlink(img)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)

    if not info:
        sys.exit('bench: the layers could not be built; nothing to report')
    machine['load_end'] = open('/proc/loadavg').read().split(' ', 3)[:3]
    machine['load_end'] = ' '.join(machine['load_end']) + ' (1, 5, 15 min, at the end)'
    data = dict(profile=a.profile, params=P, machine=machine, layers=info, targets=targets,
                elapsed_s=round(time.time() - t_start), samples=samples, daemon_cpu=cpu,
                notes=notes, errors=errors, suite=suite, rootless=bool(STATE['user']),
                requests=requests, skipped=skipped)
    with open(out_json, 'w') as f:
        json.dump(data, f, indent=1)
    report(data, out_md)


def count_requests(wls, targets, fs, P, info, ovlfs_bin, ws, requests, errors):
    """One more pass on the FUSE targets, daemons under -d: the requests of each timed
    part, per opcode, into requests[metric][target]. Its times are not kept (the trace
    slows the daemons)."""
    STATE['count'] = True
    try:
        for wl in wls:
            for t in targets:
                if t in ('native',) or t.startswith('kernel'):
                    continue
                try:
                    _, _, _, err, req = measure(t, wl, fs, P, info, ovlfs_bin, ws)
                except Failed as e:
                    err, req = str(e), {}
                if err:
                    errors.append(f'request count, {wl[0]} on {t}: {err}')
                for k, v in req.items():
                    requests.setdefault(k, {})[t] = v
                log(f'  requests {wl[0]:10} {t:15} ' + ' '.join(
                    f'{k}={sum(v.values())}' for k, v in req.items()))
    finally:
        STATE['count'] = False


def report(data, out_md):
    """Write the results (.md) and the chart (.png beside it) from a run's data."""
    out_png = os.path.splitext(out_md)[0] + '.png'
    P, info, machine = data['params'], data['layers'], data['machine']
    targets = data.get('targets') or [t for t in TARGETS
                                      if any(t in v for v in data['samples'].values())]
    apps_suite = data.get('suite') == 'apps'
    mets = apps.metrics(P, info) if apps_suite else metrics(P, info)
    rows = summarize(data['samples'], mets, targets)
    cpu_rows = []
    cpu_extra = [t for t in targets if t.startswith('ovlfs-')]   # the variants' daemons
    for key, label, unit, hib in mets:
        if key in data['daemon_cpu']:
            a_ = med(data['daemon_cpu'][key].get('fuse-overlayfs', []))
            b_ = med(data['daemon_cpu'][key].get('ovlfs', []))
            extra = tuple(med(data['daemon_cpu'][key].get(t, [])) for t in cpu_extra)
            if a_ is not None or b_ is not None or any(x is not None for x in extra):
                cpu_rows.append((label, a_, b_) + extra)
    how = write_chart(out_png, rows, f'ovlfs relative cost, {data["profile"]} profile'
                      f'{" (rootless)" if data.get("rootless") else ""}, '
                      f'median of {P["rounds"]} round(s), {machine["date"]}')
    write_report(out_md, out_png, rows, cpu_rows, machine, info, P, data['profile'],
                 data['notes'], data['errors'], targets, data.get('elapsed_s'),
                 data['samples'], mets, data)
    log(f'wrote {out_md} and {out_png} ({how})')
    print(open(out_md).read().split('## Results', 1)[1].split('## Daemon', 1)[0])


if __name__ == '__main__':
    main()
