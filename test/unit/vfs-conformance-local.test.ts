import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { FsDriver } from '../conformance/driver.js';
import { nodeDriver } from '../conformance/node-driver.js';
import { posixSuite } from '../conformance/posix-suite.js';

// The suite against the local file system: keeps the suite honest (what it expects is what
// Linux does); roamfs-specific differences are declared through the driver's caps.
const roots = new Map<FsDriver, string>();
posixSuite(test, {
  name: 'local',
  async open() {
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-local-'));
    const d = nodeDriver(root, { hardlinks: 'posix' });
    roots.set(d, root);
    return d;
  },
  async close(d) {
    await fsp.rm(roots.get(d)!, { recursive: true, force: true });
  },
});
