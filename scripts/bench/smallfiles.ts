/**
 * Small-file driver, run as a child process on every system alike:
 *   node dist/scripts/bench/smallfiles.js create|stat|read|delete DIR N
 * N files of 4 KiB in 10 x 10 nested directories (DIR/dNN/dNN/fNNNNN), one operation at a time
 * (async fs, concurrency 1). Prints {"seconds": S, "ops": K} (time measured inside, after
 * Node's startup).
 *   create  mkdir the 110 directories, then open(O_CREAT|O_EXCL)+write 4 KiB+close each file
 *   stat    readdir every directory and lstat every entry (a `find -ls`)
 *   read    open+read+close every file (names known: no readdir)
 *   delete  unlink every file, then rmdir the directories and DIR
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';

const [op, dir, nArg] = process.argv.slice(2);
if (!op || !dir || !nArg) {
  process.stderr.write('usage: smallfiles create|stat|read|delete DIR N\n');
  process.exit(2);
}
const n = Number(nArg);
const FANOUT = 10;
const leaves: string[] = [];
for (let a = 0; a < FANOUT; a++) for (let b = 0; b < FANOUT; b++) leaves.push(path.join(dir, `d${String(a).padStart(2, '0')}`, `d${String(b).padStart(2, '0')}`));
const fileOf = (i: number) => path.join(leaves[i % leaves.length]!, `f${String(i).padStart(6, '0')}`);

const buf = Buffer.alloc(4096);
for (let i = 0; i < buf.length; i++) buf[i] = (i * 131 + 7) & 0xff;

let ops = 0;
const t0 = performance.now();
switch (op) {
  case 'create': {
    await fsp.mkdir(dir, { recursive: true });
    for (let a = 0; a < FANOUT; a++) {
      await fsp.mkdir(path.join(dir, `d${String(a).padStart(2, '0')}`));
      ops++;
    }
    for (const l of leaves) {
      await fsp.mkdir(l);
      ops++;
    }
    for (let i = 0; i < n; i++) {
      buf.writeUInt32LE(i, 0); // distinct contents
      const h = await fsp.open(fileOf(i), 'wx');
      await h.write(buf, 0, buf.length, 0);
      await h.close();
      ops++;
    }
    break;
  }
  case 'stat': {
    const stack = [dir];
    while (stack.length) {
      const d = stack.pop()!;
      for (const name of await fsp.readdir(d)) {
        const p = path.join(d, name);
        const st = await fsp.lstat(p);
        ops++;
        if (st.isDirectory()) stack.push(p);
      }
    }
    break;
  }
  case 'read': {
    const rb = Buffer.alloc(8192);
    for (let i = 0; i < n; i++) {
      const h = await fsp.open(fileOf(i), 'r');
      let got = 0;
      for (;;) {
        const { bytesRead } = await h.read(rb, 0, rb.length, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      await h.close();
      if (got !== 4096) throw new Error(`${fileOf(i)}: read ${got} bytes, want 4096`);
      ops++;
    }
    break;
  }
  case 'delete': {
    for (let i = 0; i < n; i++) {
      await fsp.unlink(fileOf(i));
      ops++;
    }
    for (const l of leaves) {
      await fsp.rmdir(l);
      ops++;
    }
    for (let a = 0; a < FANOUT; a++) {
      await fsp.rmdir(path.join(dir, `d${String(a).padStart(2, '0')}`));
      ops++;
    }
    await fsp.rmdir(dir);
    break;
  }
  default:
    process.stderr.write(`unknown op ${op}\n`);
    process.exit(2);
}
process.stdout.write(JSON.stringify({ seconds: (performance.now() - t0) / 1000, ops }) + '\n');
