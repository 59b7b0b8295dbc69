import type { ObjectId } from '../core/hash.js';
import type { Commit, Ref } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';

export interface LogEntry {
  ref: Ref;
  id: ObjectId;
  commit: Commit;
}

/** The user's commits named by refs, newest first (pruned ones are gone from here). */
export async function* logEntries(repo: Repository, user: string, limit = Infinity): AsyncGenerator<LogEntry> {
  let n = 0;
  for (const ref of await repo.refs(user)) {
    if (n++ >= limit) return;
    yield { ref, id: ref.commit, commit: await repo.getCommit(ref.commit) };
  }
}
