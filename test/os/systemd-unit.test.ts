/**
 * mount/os/roamfs@.service. systemd is not PID 1 on the development and CI machines, so the
 * unit cannot be started for real: `systemd-analyze verify` checks it (with the ExecStart
 * programs pointed at this checkout), a small INI check runs everywhere, and the ExecStart /
 * ExecStop command lines are run by hand, as systemd would (%i = the user), against a real
 * user and repository.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { alive, mountsAt, OS_DIR, OsEnv, oneLine, run, waitFor, which } from '../helpers/os-env.js';

const UNIT = path.join(OS_DIR, 'roamfs@.service');
const analyzer = await which('systemd-analyze');

type Ini = Map<string, Array<[string, string]>>;

/** The unit file's sections and keys (systemd syntax: comments, no continuation lines used). */
function parseUnit(text: string): Ini {
  const out: Ini = new Map();
  let section: string | null = null;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    if (line.endsWith('\\')) throw new Error(`line ${i + 1}: continuation lines are not expected`);
    const sec = /^\[([A-Za-z]+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      if (out.has(section)) throw new Error(`line ${i + 1}: section [${section}] twice`);
      out.set(section, []);
      return;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (!kv || section === null) throw new Error(`line ${i + 1}: not KEY=VALUE in a section: ${raw}`);
    out.get(section)!.push([kv[1]!, kv[2]!]);
  });
  return out;
}

function get(ini: Ini, section: string, key: string): string[] {
  return (ini.get(section) ?? []).filter(([k]) => k === key).map(([, v]) => v);
}

/** The unit as install.sh renders it for a prefix whose lib dir is `lib`. */
async function rendered(lib: string): Promise<string> {
  return (await fsp.readFile(UNIT, 'utf8')).replaceAll('/usr/local/lib/roamfs', lib);
}

test('roamfs@.service parses: sections, known keys, Type=forking with PIDFile, absolute ExecStart/ExecStop, generous stop timeout', async (t) => {
  const ini = parseUnit(await fsp.readFile(UNIT, 'utf8'));
  t.deepEqual([...ini.keys()], ['Unit', 'Service', 'Install']);
  const known: Record<string, string[]> = {
    Unit: ['Description', 'Documentation', 'After', 'Wants', 'Before', 'Requires', 'RequiresMountsFor'],
    Service: ['Type', 'PIDFile', 'ExecStart', 'ExecStop', 'TimeoutStartSec', 'TimeoutStopSec', 'Restart', 'RestartSec'],
    Install: ['WantedBy'],
  };
  for (const [sec, keys] of ini) for (const [k] of keys) t.true(known[sec]!.includes(k), `[${sec}] ${k}`);
  t.deepEqual(get(ini, 'Service', 'Type'), ['forking']);
  const pidfile = get(ini, 'Service', 'PIDFile')[0]!;
  t.regex(pidfile, /^\/run\/.*%i\.pid$/);
  const start = get(ini, 'Service', 'ExecStart')[0]!;
  t.regex(start, /^\/usr\/local\/lib\/roamfs\/roamfs-home mount %i --pidfile /);
  t.true(start.endsWith(` --pidfile ${pidfile}`), 'ExecStart writes the PIDFile');
  t.regex(get(ini, 'Service', 'ExecStop')[0]!, /^\/usr\/local\/lib\/roamfs\/roamfs-home logout %i$/);
  const stopSec = get(ini, 'Service', 'TimeoutStopSec')[0]!;
  t.true(/^(\d+)min$/.test(stopSec) && Number(stopSec.slice(0, -3)) >= 10, `TimeoutStopSec=${stopSec}`);
  t.true(get(ini, 'Unit', 'After')[0]!.split(/\s+/).includes('network-online.target'));
});

const verifyName = 'systemd-analyze verify accepts roamfs@.service with the repository drop-in';
test(verifyName, async (t) => {
  const dir = await fsp.mkdtemp('/tmp/roamfs-unit-');
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  // the drop-in install.sh writes, merged in (verify reads drop-ins only from the system paths)
  const unit = (await rendered(OS_DIR)).replace('[Service]', `RequiresMountsFor=${dir}\n\n[Service]`);
  await fsp.writeFile(path.join(dir, 'roamfs@.service'), unit);
  if (!analyzer) return t.fail('systemd-analyze is not installed (Debian package systemd; scripts/setup.sh installs it)');
  const r = await run(analyzer, ['verify', '--man=no', path.join(dir, 'roamfs@alice.service')]);
  t.is(r.code, 0, oneLine(r));
  // warnings (unknown keys, bad values) do not change the exit code: none may appear
  t.is(r.stderr.trim(), '', r.stderr);
  // and it does catch mistakes
  await fsp.writeFile(path.join(dir, 'roamfs@.service'), unit.replace(/^Type=forking$/m, 'Type=forkin'));
  const bad = await run(analyzer!, ['verify', '--man=no', path.join(dir, 'roamfs@alice.service')]);
  t.regex(bad.stderr, /Failed to parse service type/);
});

const lineName = "the unit's ExecStart mounts the user's home and writes the PID file of the daemon; ExecStop logs out and commits";
test.serial(lineName, async (t) => {
  const env = await OsEnv.create(t, 'unit');
  const user = await env.user();
  await env.profile(user.name);
  await env.writeConfig();
  const ini = parseUnit(await rendered(OS_DIR));
  // systemd's view: %i is the instance; the PID file goes to the sandbox instead of /run/roamfs
  const expand = (s: string) => s.replaceAll('%i', user.name).replaceAll('/run/roamfs/', `${env.run}/`);
  const pidfile = expand(get(ini, 'Service', 'PIDFile')[0]!);
  const argv = (s: string) => expand(s).split(/\s+/);
  const [startCmd, ...startArgs] = argv(get(ini, 'Service', 'ExecStart')[0]!);
  const [stopCmd, ...stopArgs] = argv(get(ini, 'Service', 'ExecStop')[0]!);

  const start = await run(startCmd!, startArgs, { env: env.env() });
  t.is(start.code, 0, oneLine(start));
  // Type=forking: when ExecStart has exited, the home is ready and the PID file names the daemon
  t.is((await mountsAt(user.home))[0]?.fstype, 'fuse.roamfs');
  t.is(await fsp.readFile(path.join(user.home, 'hello.txt'), 'utf8'), 'hello from the repository\n');
  const pid = Number((await fsp.readFile(pidfile, 'utf8')).trim());
  t.is((await env.status(user.home))!.pid, pid);
  t.true((await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).includes('daemon-main'));

  // a second start (systemctl restart after a crash of the CLI, or a PAM login racing a boot
  // start) finds it mounted: still success, same daemon
  const again = await run(startCmd!, startArgs, { env: env.env() });
  t.is(again.code, 0, oneLine(again));
  t.is((await env.status(user.home))!.pid, pid);

  await fsp.writeFile(path.join(user.home, 'unit.txt'), 'written while the unit was active\n');
  const stop = await run(stopCmd!, stopArgs, { env: env.env() });
  t.is(stop.code, 0, oneLine(stop));
  t.is((await mountsAt(user.home)).length, 0);
  await waitFor('the daemon to exit', async () => !alive(pid), 10_000);
  t.is(await fsp.readFile(path.join(await env.export(user.name), 'unit.txt'), 'utf8'), 'written while the unit was active\n');
  // ExecStop of a unit whose home is already gone (systemd runs it after the daemon exited)
  const stop2 = await run(stopCmd!, stopArgs, { env: env.env() });
  t.is(stop2.code, 0, oneLine(stop2));
});
