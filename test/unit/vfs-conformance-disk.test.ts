import test from 'ava';
import { posixSuite } from '../conformance/posix-suite.js';
import { memoryVfsFactory } from '../conformance/vfs-driver.js';

// The suite again with every written file on disk (no memory budget): once with synchronous I/O
// on the upper files (the default for files on disk), once through the thread pool (what the
// Vfs falls back to after a slow synchronous call); see src/overlay/upper.ts.
posixSuite(test, memoryVfsFactory({ name: 'vfs-disk', upperFiles: { memBudget: 0 } }));
posixSuite(test, memoryVfsFactory({ name: 'vfs-disk-async', upperFiles: { memBudget: 0, syncIo: false } }));
