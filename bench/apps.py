"""The real-workload profile of bench/run.py (`make bench-apps`, issue 18): developer tools
on a generated source tree that is the lower layer. run.py mounts, measures and reports;
this module builds the layer and holds the workloads. See bench/README.md.
"""
import os
import random
import re
import shutil
import subprocess
import time

H = None   # run.py's toolbox (run, drop_caches, settle, log), given by use()


def use(toolbox):
    global H
    H = toolbox


# Git must neither read the machine's or the user's configuration nor start a background
# `gc --auto` (10k loose objects pass its threshold of 6,700) that would outlive the mount.
GIT = ('git -c user.name=bench -c user.email=bench@example.org -c gc.auto=0 '
       '-c maintenance.auto=0 -c core.fsmonitor=false')
GIT_ENV = {'GIT_CONFIG_NOSYSTEM': '1', 'GIT_CONFIG_GLOBAL': '/dev/null', 'HOME': '/nonexistent'}

# The apt workload (opt-in, --apt): a debootstrap'd Debian in the lower layer, with the
# packages' .debs already in its apt cache, so that the timed part is dpkg's work.
DEBIAN_SUITE = 'bookworm'
DEBIAN_MIRROR = 'http://deb.debian.org/debian'
APT_PACKAGES = ['build-essential', 'git']

WORDS = ('static int struct return if else for while unsigned long const char void size_t '
         'err goto out unlock lock node inode dentry file page buf len offset flags mode '
         'count ret ptr list entry next prev head init exit free alloc map read write open '
         'close sync dirty state cache hash key value index table ops data info ctx dev').split()


def _text_pool(rng, size):
    """size bytes of C-like text: source-shaped (short lines, indentation, comments), so
    that git's zlib and tar do the work they do on real code."""
    out, n = [], 0
    while n < size:
        k = rng.random()
        if k < 0.08:
            line = '/* ' + ' '.join(rng.choices(WORDS, k=rng.randint(4, 12))) + ' */'
        elif k < 0.15:
            line = ''
        else:
            w = rng.choices(WORDS, k=rng.randint(2, 9))
            line = '\t' * rng.randint(0, 3) + ' '.join(w) + rng.choice(
                (';', ' {', '}', ' = %d;' % rng.randint(0, 4096), '(%s);' % rng.choice(WORDS)))
        out.append(line)
        n += len(line) + 1
    return ('\n'.join(out) + '\n').encode()


def generate_tree(root, nfiles, seed=18):
    """A deterministic source tree of nfiles files: 4 top directories (the subtrees that
    cp -a and rm -rf take one of), 10 below each, leaves of about 25 files; sizes
    log-normal around 4 KiB (capped at 256 KiB), one file in 40 executable. Returns
    the relative paths of the files, in creation order."""
    rng = random.Random(seed)
    pool = _text_pool(rng, 4 << 20)
    files = []
    for i in range(nfiles):
        top = i * 4 // nfiles
        d = f'sub{top}/mod{(i // 250) % 10}/dir{(i // 25) % 10:02d}'
        name = f'{rng.choice(WORDS)}_{i:05d}.{"h" if i % 5 == 0 else "c"}'
        rel = f'{d}/{name}'
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        size = min(int(rng.lognormvariate(8.3, 1.0)), 256 << 10)
        off = rng.randrange(0, len(pool) - size)
        with open(p, 'wb') as f:
            f.write(f'/* {rel} */\n'.encode() + pool[off:off + size])
        if i % 40 == 0:
            os.chmod(p, 0o755)
        files.append(rel)
    for i, name in enumerate(('Makefile', 'README', 'COPYING')):
        with open(os.path.join(root, name), 'wb') as f:
            f.write(pool[i * 1000:i * 1000 + 3000])
        files.append(name)
    return files


def count_entries(root):
    n = 0
    for _, dirs, files in os.walk(root):
        n += len(dirs) + len(files)
    return n


def debian_tarball(ws):
    """A tarball of a minbase Debian whose apt cache holds the .debs of APT_PACKAGES and
    what they need: made once with debootstrap (network: Debian's mirror) and kept in the
    work directory for later runs."""
    tarball = f'{ws}/debian-{DEBIAN_SUITE}-apt.tar'
    if os.path.exists(tarball):
        return tarball
    root = f'{ws}/debian-build'
    if os.path.exists(root):
        H.run(['rm', '-rf', '--one-file-system', root])
    H.log(f'debootstrap of Debian {DEBIAN_SUITE} (minbase) into {root}, once')
    H.run(['debootstrap', '--variant=minbase', DEBIAN_SUITE, root, DEBIAN_MIRROR])
    env = {'DEBIAN_FRONTEND': 'noninteractive'}
    H.run(['chroot', root, 'apt-get', 'update', '-qq'], env=env)
    H.run(['chroot', root, 'apt-get', 'clean'], env=env)   # only the packages to install
    H.run(['chroot', root, 'apt-get', 'install', '-y', '-qq', '--download-only',
           *APT_PACKAGES], env=env)
    H.run(['tar', '--numeric-owner', '-cf', tarball + '.part', '-C', root, '.'])
    os.rename(tarball + '.part', tarball)
    H.run(['rm', '-rf', '--one-file-system', root])
    return tarball


def build_layers(P, fs, ws, owner):
    """The lower layer (the tree; with --apt a Debian too), an empty upper template, the
    native copy and the tarball of the tree; owner (uid, gid) or None: who owns the tree
    (the rootless profile's user)."""
    t0 = time.time()
    l2, nview, tmpl = f'{fs}/l2', f'{fs}/native', f'{fs}/upper-template'
    if P.get('apt'):
        os.makedirs(f'{l2}/debian')
        H.run(['tar', '--numeric-owner', '-xpf', debian_tarball(ws), '-C', f'{l2}/debian'])
    files = generate_tree(f'{l2}/tree', P['app_files'])
    apt_entries = 0
    if P.get('apt'):   # what the install adds: the entries of the cached packages
        arch = f'{l2}/debian/var/cache/apt/archives'
        for deb in sorted(os.listdir(arch)):
            if deb.endswith('.deb'):
                _, out = H.run(['dpkg-deb', '-c', f'{arch}/{deb}'], capture=True)
                apt_entries += out.count('\n')
    os.makedirs(tmpl)
    if owner:
        H.run(['chown', '-R', f'{owner[0]}:{owner[1]}', l2, tmpl])
    os.makedirs(nview)
    H.run(['cp', '-a', f'{l2}/tree', f'{nview}/tree'])
    H.run(['tar', '-cf', f'{fs}/tree.tar', '-C', f'{l2}/tree', '.'])
    _, out = H.run(['du', '-sm', f'{l2}/tree'], capture=True)
    info = {
        'lowers': [f'{fs}/l2'],
        'tree_files': len(files),
        'tree_entries': count_entries(f'{l2}/tree'),
        'sub_entries': count_entries(f'{l2}/tree/sub0') + 1,
        'tree_mib': int(out.split()[0]),
        'tar_mib': round(os.path.getsize(f'{fs}/tree.tar') / (1 << 20)),
        'tree_source': 'generated by bench/apps.py (seeded, the same on every machine)',
        'apt_entries': apt_entries,
    }
    H.settle()
    info['build_seconds'] = round(time.time() - t0, 1)
    return info


def layers_md(P, info):
    """The Layers section of the results."""
    return [
        f'- lower: a generated source tree of {info["tree_files"]} files '
        f'({info["tree_entries"]} entries, {info["tree_mib"]} MiB; {info["tree_source"]}): '
        'sub0..sub3, each 10 module directories of 10 leaf directories of ~25 files; '
        'C-like text, sizes log-normal around 4 KiB',
        '- upper: empty, fresh for every mount; the native target works on a fresh copy '
        'of the tree wherever the workload writes to it',
        *([f'- also in the lower: `debian/`, a minbase Debian {DEBIAN_SUITE} (debootstrap) whose '
            f'apt cache holds the .debs of {" ".join(APT_PACKAGES)} and their dependencies '
            f'({info["apt_entries"]} entries in all)'] if info.get('apt_entries') else []),
        f'- tarball for tar x: the tree, {info["tar_mib"]} MiB, on the same filesystem '
        '(read once before, so it comes from the page cache)',
        '- mounts: `mount -t overlay overlay -o lowerdir=L,upperdir=U,workdir=W`, '
        '`fuse-overlayfs -f -o lowerdir=..,upperdir=..,workdir=..`, '
        '`ovlfs -f -o lowerdir=..,upperdir=..,workdir=..` (defaults otherwise)',
        '- cold: after the mount, `sync; echo 3 > /proc/sys/vm/drop_caches`',
    ]


# --------------------------------------------------------------------------- workloads

def _writable_tree(c):
    """The tree where a workload may change it: the mount's, or a fresh native copy."""
    if c.target != 'native':
        return c.p('tree')
    d = os.path.join(c.wdir, 'tree')
    H.run(['cp', '-a', f'{c.fs}/native/tree', d])
    H.settle()
    return d


def w_git(c):
    t = _writable_tree(c)
    c.res['git_commit'] = c.timed('git_commit', f"cd '{t}' && {GIT} init -q && "
                                  f"{GIT} add -A && {GIT} commit -q -m tree", env=GIT_ENV)
    c.sh(f"{GIT} -C '{t}' status --porcelain", env=GIT_ENV)   # refreshes the index once
    out = []
    c.res['git_status'] = c.timed('git_status', f"{GIT} -C '{t}' status --porcelain",
                                  env=GIT_ENV, parse=lambda o: out.append(o) or None)
    c.check('git status output', out[0].strip(), '')
    c.res['git_fsck'] = c.timed('git_fsck', f"{GIT} -C '{t}' fsck --no-progress", env=GIT_ENV)
    H.drop_caches()
    c.res['git_status_cold'] = c.timed('git_status_cold', f"{GIT} -C '{t}' status --porcelain",
                                       env=GIT_ENV)


def w_tar_c(c):
    cmd = f"tar -cf - -C '{c.p('tree')}' . | cat >/dev/null"
    c.sh(cmd)
    c.res['tar_c'] = c.timed('tar_c', cmd)


def w_tar_x(c):
    d = os.path.join(c.wdir, 'x')
    tarball = f'{c.fs}/tree.tar'
    H.run(f"cat '{tarball}' >/dev/null")
    c.res['tar_x'] = c.timed('tar_x', f"mkdir '{d}' && tar -xf '{tarball}' -C '{d}'")
    c.check('entries extracted', _count(c, d), c.info['tree_entries'])


def w_cp_a(c):
    d = os.path.join(c.wdir, 'copy')
    c.res['cp_a'] = c.timed('cp_a', ['cp', '-a', c.p('tree/sub0'), d])
    c.check('entries copied', _count(c, d) + 1, c.info['sub_entries'])


def w_rm_rf(c):
    t = c.p('tree')
    if c.target == 'native':
        t = os.path.join(c.wdir, 'tree')
        c.sh(['mkdir', t])   # the workload's user must be able to unlink in it
        H.run(['cp', '-a', f'{c.fs}/native/tree/sub0', t])
        H.settle()
    c.res['rm_rf'] = c.timed('rm_rf', ['rm', '-rf', f'{t}/sub0'])
    if c.target != 'native':
        c.check('entries left', _count(c, t), c.info['tree_entries'] - c.info['sub_entries'])


def w_apt_install(c):
    """apt-get install of APT_PACKAGES in a chroot of the lower Debian, from its cache:
    the time is dpkg's (unpack, fsync, configure). /dev and /proc are bind-mounted in,
    since a FUSE mount is nodev."""
    root = c.p('debian')
    if c.target == 'native':
        root = os.path.join(c.wdir, 'debian')
        H.run(['cp', '-a', f'{c.fs}/l2/debian', root])
        H.settle()
    mounted = []
    try:
        for src, dst, how in (('/dev', 'dev', ['--bind']), ('proc', 'proc', ['-t', 'proc'])):
            H.run(['mount', *how, src, f'{root}/{dst}'])
            mounted.append(f'{root}/{dst}')
        c.res['apt_install'] = c.timed(
            'apt_install', ['chroot', root, 'apt-get', 'install', '-y', '-qq', '--no-download',
                            *APT_PACKAGES], env={'DEBIAN_FRONTEND': 'noninteractive'})
        for prog in ('usr/bin/gcc', 'usr/bin/git', 'usr/bin/make'):
            c.check(f'{prog} installed', os.path.exists(f'{root}/{prog}'), True)
    finally:
        for m in reversed(mounted):
            if subprocess.run(['umount', m], stderr=subprocess.DEVNULL).returncode != 0:
                subprocess.run(['umount', '-l', m])


def w_find_cold(c):
    H.drop_caches()
    c.res['app_find'] = c.timed('app_find', ['find', c.p('tree'), '-ls'])


def _count(c, d):
    """Entries below d, counted as the workload's user (a FUSE mount made by an
    unprivileged user refuses even root)."""
    _, out = c.sh(['find', d, '-mindepth', '1'], capture=True)
    return out.count('\n')


# (name, function, runs on native)
WORKLOADS = [
    ('git', w_git, True),
    ('tar_c', w_tar_c, True),
    ('tar_x', w_tar_x, True),
    ('cp_a', w_cp_a, True),
    ('rm_rf', w_rm_rf, True),
    ('find', w_find_cold, True),
    ('apt_install', w_apt_install, True),   # opt-in: --apt
]


def metrics(P, info):
    """(key, label, unit, higher_is_better) in table order."""
    n = info.get('tree_files', P['app_files'])
    s = info.get('sub_entries', '')
    return [
        ('git_commit', f'git init + add -A + commit of the {n}-file tree', 's', False),
        ('git_status', 'git status, warm (the second after the commit)', 's', False),
        ('git_fsck', 'git fsck of that repository', 's', False),
        ('git_status_cold', 'git status, cold', 's', False),
        ('tar_c', 'tar c of the tree, piped through cat, warm', 's', False),
        ('tar_x', 'tar x of the tree into a new directory', 's', False),
        ('cp_a', f'cp -a of a lower subtree ({s} entries) into a new directory', 's', False),
        ('rm_rf', f'rm -rf of that lower subtree ({s} entries)', 's', False),
        ('app_find', 'find -ls of the tree, cold', 's', False),
        ('apt_install', f'apt-get install {" ".join(APT_PACKAGES)} in a chroot of the lower '
                        f'Debian {DEBIAN_SUITE}, .debs cached (dpkg part)', 's', False),
    ]


def per_file(info, key):
    """What a metric's requests are divided by: entries of the tree or of the subtree, or
    for apt the entries the install adds to the Debian."""
    if key == 'apt_install':
        return info.get('apt_entries') or 1
    return info['sub_entries'] if key in ('cp_a', 'rm_rf') else info['tree_entries']


OPCODE = re.compile(rb'^unique: \d+, opcode: (\w+)', re.M)


def count_opcodes(log_bytes):
    counts = {}
    for m in OPCODE.finditer(log_bytes):
        op = m.group(1).decode()
        counts[op] = counts.get(op, 0) + 1
    return counts


def skipped_optional(apt, rootless):
    """The optional workloads left out, with the reason (printed and put in the results).
    Returns (reasons, whether apt_install runs)."""
    out = []
    what = f'apt_install (apt-get install {" ".join(APT_PACKAGES)} into a debootstrap\'d lower)'
    if not apt:
        out.append(f'{what}: opt-in, `--apt` or `make bench-apps APT=1` (debootstrap '
                   'downloads about 200 MB from Debian\'s mirror once)')
    elif rootless:
        out.append(f'{what}: not in the rootless profile (dpkg needs root in the chroot)')
    elif not shutil.which('debootstrap'):
        out.append(f'{what}: debootstrap is not installed')
    apt_runs = not out
    out.append('podman (a build-and-run loop): not implemented; podman mounts the overlay '
               'itself (its overlay driver or mount_program), which this harness\'s '
               'targets do not model (tests/podman/ drives podman with ovlfs)')
    return out, apt_runs
