import test from 'ava';
import { posixSuite } from '../conformance/posix-suite.js';
import { memoryVfsFactory } from '../conformance/vfs-driver.js';

posixSuite(test, memoryVfsFactory());
