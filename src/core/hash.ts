import { createHash } from 'node:crypto';

/** Object ids are SHA-256 digests: 32 bytes, written as 64 lowercase hex characters. */
export type ObjectId = string;

export const ID_HEX_LENGTH = 64;
const ID_RE = /^[0-9a-f]{64}$/;

export function sha256(...parts: Uint8Array[]): ObjectId {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
}

export function isObjectId(s: unknown): s is ObjectId {
  return typeof s === 'string' && ID_RE.test(s);
}

export function idToBytes(id: ObjectId): Buffer {
  return Buffer.from(id, 'hex');
}

export function idFromBytes(b: Uint8Array): ObjectId {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** First 12 hex characters: how ids are shown to people. */
export function shortId(id: ObjectId): string {
  return id.slice(0, 12);
}
