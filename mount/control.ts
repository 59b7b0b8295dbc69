import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { RoamfsError, errnoCode, type ErrorCode } from '../src/core/errors.js';

/**
 * The control socket of a mounted profile: a unix socket, root-only (mode 0600 in a 0700
 * directory), speaking newline-delimited JSON. A request is one line `{"cmd": "..."}`; the
 * daemon answers with any number of `{"event": ...}` lines (progress) and one final
 * `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message"}}`.
 * Next to each socket, `<id>.json` records the mount (mountpoint, user, pid) for `status`.
 */
export const RUN_DIR = process.env.ROAMFS_RUN_DIR ?? '/run/roamfs';

export function mountId(mountpoint: string): string {
  return createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 16);
}
export function socketPath(mountpoint: string): string {
  return path.join(RUN_DIR, `${mountId(mountpoint)}.sock`);
}
export function recordPath(mountpoint: string): string {
  return path.join(RUN_DIR, `${mountId(mountpoint)}.json`);
}

export interface MountRecord {
  mountpoint: string;
  user: string;
  repo: string;
  cache: string;
  pid: number;
  started: number;
}

export type Handler = (args: Record<string, unknown>, emit: (event: unknown) => void) => Promise<unknown>;

export async function serveControl(rec: MountRecord, handlers: Record<string, Handler>): Promise<{ close(): Promise<void> }> {
  await fsp.mkdir(RUN_DIR, { recursive: true, mode: 0o700 });
  const sock = socketPath(rec.mountpoint);
  await fsp.rm(sock, { force: true }); // a stale socket of a dead daemon (the mount itself was checked free)
  const conns = new Set<net.Socket>();
  const server = net.createServer((conn) => {
    conns.add(conn);
    conn.on('close', () => conns.delete(conn));
    let buf = '';
    conn.setEncoding('utf8');
    conn.on('error', () => {});
    conn.on('data', async (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      const line = buf.slice(0, nl);
      buf = '';
      const send = (o: unknown) => {
        if (!conn.destroyed) conn.write(JSON.stringify(o) + '\n');
      };
      try {
        const req = JSON.parse(line) as { cmd?: string; args?: Record<string, unknown> };
        const h = req.cmd ? handlers[req.cmd] : undefined;
        if (!h) throw new RoamfsError('INVALID_ARGUMENT', `unknown control command ${JSON.stringify(req.cmd)}`);
        const result = await h(req.args ?? {}, (event) => send({ event }));
        send({ ok: true, result });
      } catch (err) {
        const e = err instanceof RoamfsError ? { code: err.code, message: err.message } : { code: 'IO', message: String((err as Error)?.message ?? err) };
        send({ ok: false, error: e });
      }
      conn.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, () => resolve());
  });
  await fsp.chmod(sock, 0o600);
  await fsp.writeFile(recordPath(rec.mountpoint), JSON.stringify(rec) + '\n', { mode: 0o600 });
  return {
    /** Stop accepting; let answers being written finish (at most 2 s), then remove the socket. */
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      const timer = setTimeout(() => conns.forEach((c) => c.destroy()), 2000);
      await closed;
      clearTimeout(timer);
      await fsp.rm(sock, { force: true });
      await fsp.rm(recordPath(rec.mountpoint), { force: true });
    },
  };
}

/** Send one command to the daemon serving `mountpoint`; events go to onEvent. */
export async function control(mountpoint: string, cmd: string, args: Record<string, unknown> = {}, onEvent?: (e: unknown) => void): Promise<unknown> {
  const sock = socketPath(mountpoint);
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(sock);
    let buf = '';
    let done = false;
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify({ cmd, args }) + '\n'));
    conn.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if ('event' in msg) onEvent?.(msg.event);
        else {
          done = true;
          if (msg.ok) resolve(msg.result);
          else reject(new RoamfsError((msg.error.code as ErrorCode) ?? 'IO', msg.error.message));
        }
      }
    });
    conn.on('error', (err) => {
      const code = errnoCode(err);
      if (code === 'ENOENT' || code === 'ECONNREFUSED') reject(new RoamfsError('NOT_FOUND', `no roamfs daemon serves ${path.resolve(mountpoint)}`));
      else if (code === 'EACCES' || code === 'EPERM') reject(new RoamfsError('INVALID_ARGUMENT', `permission denied: the control socket of ${path.resolve(mountpoint)} is root-only (run this as root)`));
      else reject(err);
    });
    conn.on('close', () => {
      if (!done) reject(new RoamfsError('IO', `the roamfs daemon of ${path.resolve(mountpoint)} closed the connection (did it exit?)`));
    });
  });
}

/** Records of every mount on this machine whose daemon is alive. */
export async function listMounts(): Promise<MountRecord[]> {
  let names: string[];
  try {
    names = await fsp.readdir(RUN_DIR);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EACCES' || code === 'EPERM') {
      throw new RoamfsError('INVALID_ARGUMENT', `permission denied: ${RUN_DIR} (the control sockets of the mounted homes) is root-only (run this as root)`);
    }
    return [];
  }
  const out: MountRecord[] = [];
  for (const n of names.filter((x) => x.endsWith('.json'))) {
    try {
      const r = JSON.parse(await fsp.readFile(path.join(RUN_DIR, n), 'utf8')) as MountRecord;
      process.kill(r.pid, 0);
      out.push(r);
    } catch {
      // a record of a dead daemon, or one being written: skip
    }
  }
  return out;
}
