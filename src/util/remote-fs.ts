import { statfs } from 'node:fs/promises';

/**
 * File systems that live on another machine or behind a user-space daemon, by their Linux
 * statfs(2) f_type. Two of pitr's requirements fail on them: SQLite's WAL mode keeps its index in
 * shared memory, which only works when every connection is on the same host as the file; and the
 * agent writes its spool and position with synchronous calls (see FileStorage's localDisk), so a
 * mount that hangs stops the agent's event loop, health endpoint included.
 */
const REMOTE_FS: ReadonlyMap<number, string> = new Map([
  [0x6969, 'NFS'],
  [0x517b, 'SMB'],
  [0xff534d42, 'CIFS'],
  [0xfe534d42, 'SMB2'],
  [0x65735546, 'FUSE'],
  [0x00c36400, 'Ceph'],
  [0x01021997, '9P'],
  [0x5346414f, 'AFS'],
  [0x0bd00bd0, 'Lustre'],
  [0x47504653, 'GPFS'],
  [0x01161970, 'GFS2'],
  [0x7461636f, 'OCFS2'],
]);

/** The name of the remote file system with this f_type, or undefined for any other. */
export function remoteFsName(type: number): string | undefined {
  // f_type is a signed long: a 32-bit platform may report the high magic numbers as negative.
  return REMOTE_FS.get(type >>> 0);
}

/**
 * The name of the remote file system `path` is on, or undefined when it is local or cannot be
 * told (not Linux, statfs failed): a check that warns, never one that blocks.
 */
export async function remoteFsOf(path: string): Promise<string | undefined> {
  if (process.platform !== 'linux') return undefined;
  try {
    return remoteFsName(Number((await statfs(path)).type));
  } catch {
    return undefined;
  }
}
