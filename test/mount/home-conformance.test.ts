/**
 * The shared POSIX conformance suite (test/conformance/posix-suite.ts: the same cases that run
 * against the in-memory OverlayVfs and a local directory) against a real roamfs home: mounted
 * by the CLI, served by the detached daemon, driven through node:fs (node-driver.ts) and,
 * for extended attributes, through python3's os.*xattr (node:fs has none).
 *
 * Every case gets its own home (repository, cache, mountpoint, run dir) with an empty profile,
 * and ends with a logout that must succeed.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FsDriver } from '../conformance/driver.js';
import { nodeDriver } from '../conformance/node-driver.js';
import { posixSuite } from '../conformance/posix-suite.js';
import { homeAt, mountsAt, run, type MountedHome } from '../helpers/mounted-home.js';

// The real interpreter behind a pyenv shim: each xattr call is one short-lived process.
const python = await run('python3', ['-c', 'import os, sys; os.setxattr; print(sys.executable)']).then(
  (r) => (r.code === 0 ? r.stdout.trim() : null),
  () => null,
);

const XATTR_PY = `
import errno, json, os, sys
op, p = sys.argv[1], sys.argv[2]
try:
    if op == 'set':
        os.setxattr(p, sys.argv[3], bytes.fromhex(sys.argv[4]), int(sys.argv[5]), follow_symlinks=False)
        print(json.dumps({'ok': True}))
    elif op == 'get':
        print(json.dumps({'ok': True, 'hex': os.getxattr(p, sys.argv[3], follow_symlinks=False).hex()}))
    elif op == 'list':
        print(json.dumps({'ok': True, 'names': os.listxattr(p, follow_symlinks=False)}))
    elif op == 'remove':
        os.removexattr(p, sys.argv[3], follow_symlinks=False)
        print(json.dumps({'ok': True}))
except OSError as e:
    print(json.dumps({'ok': False, 'code': errno.errorcode.get(e.errno, 'EIO'), 'message': str(e)}))
`;

async function xattr(op: string, ...args: string[]): Promise<{ hex?: string; names?: string[] }> {
  const r = await run(python!, ['-c', XATTR_PY, op, ...args]);
  if (r.code !== 0) throw new Error(`python3 xattr helper failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { ok: boolean; code?: string; message?: string; hex?: string; names?: string[] };
  if (!out.ok) throw Object.assign(new Error(out.message), { code: out.code });
  return out;
}

/** nodeDriver plus xattrs through python3. */
function mountDriver(root: string): FsDriver {
  const d = nodeDriver(root, { hardlinks: 'eperm' });
  if (!python) return d;
  const abs = (p: string) => path.join(root, p);
  return {
    ...d,
    caps: { ...d.caps, xattr: true },
    setxattr: async (p, name, value, flags) => void (await xattr('set', abs(p), name, value.toString('hex'), String(flags))),
    getxattr: async (p, name) => Buffer.from((await xattr('get', abs(p), name)).hex!, 'hex'),
    listxattr: async (p) => (await xattr('list', abs(p))).names!,
    removexattr: async (p, name) => void (await xattr('remove', abs(p), name)),
  };
}

/** Homes of cases still running; after.always tears down any a timed-out case left behind. */
const live = new Map<FsDriver, MountedHome>();
const summaries: string[] = [];

/** One fresh home per case: its own repository, cache, run dir and mountpoint. */
async function freshHome(): Promise<MountedHome> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-home-conf-'));
  // Frequent snapshots and commits: the background loops run while the case works.
  const h = homeAt(base, 'alice', ['--snapshot-interval', '1s', '--idle', '1s']);
  try {
    await fsp.mkdir(h.mountpoint);
    await fsp.mkdir(h.src);
    await h.cliOk('init', h.repo);
    await h.cliOk('import', h.repo, h.user, h.src);
    await h.mount();
    return h;
  } catch (err) {
    const note = await h.teardown();
    throw new Error(`${(err as Error).message}${note ? `\n${note}` : ''}`);
  }
}

posixSuite(test, {
  name: 'mount',
  async open() {
    const h = await freshHome();
    const d = mountDriver(h.mountpoint);
    live.set(d, h);
    return d;
  },
  async close(d) {
    const h = live.get(d)!;
    live.delete(d);
    // Each case ends with a logout: the daemon must still be healthy and commit what the case
    // left behind (errors here fail the case).
    try {
      const st = await h.status();
      if (st.state !== 'mounted' || st.lastError) throw new Error(`daemon unhealthy after the case: ${JSON.stringify({ state: st.state, lastError: st.lastError })}`);
      const lo = await h.logout();
      if (lo.code !== 0) throw new Error(`logout failed (${lo.code}): ${lo.stderr}`);
      if ((await mountsAt(h.mountpoint)).length > 0) throw new Error('still mounted after logout');
      summaries.push(`${st.snapshots} snapshots, ${st.commits} commits`);
    } finally {
      await h.teardown();
    }
  },
});

test.after.always(async (t) => {
  for (const [d, h] of [...live]) {
    live.delete(d);
    const note = await h.teardown();
    if (note) t.log(note);
  }
  if (!python) t.log('python3 not found: the xattr case ran without xattr support');
});
