/**
 * Ownership across machines. A profile roams between desktops where the user has different
 * numeric ids, so ids equal to the profile root's stored uid/gid mean "the profile's owner"
 * and are shown as the mount's uid/gid; any other id (root, a shared group) is shown as stored.
 * The snapshotter maps back with toStored*: the mount's ids become the root's stored ids.
 * (Corner case: a stored id that happens to equal the mount's id but not the root's is shown
 * unchanged and is written back as the root's id: it meant this user on this machine anyway.)
 */
export class IdMap {
  constructor(
    readonly storedUid: number,
    readonly storedGid: number,
    readonly mountUid: number,
    readonly mountGid: number,
  ) {}

  uidToLocal(stored: number): number {
    return stored === this.storedUid ? this.mountUid : stored;
  }
  gidToLocal(stored: number): number {
    return stored === this.storedGid ? this.mountGid : stored;
  }
  uidToStored(local: number): number {
    return local === this.mountUid ? this.storedUid : local;
  }
  gidToStored(local: number): number {
    return local === this.mountGid ? this.storedGid : local;
  }
}
