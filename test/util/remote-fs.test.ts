import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { remoteFsName, remoteFsOf } from '../../src/util/remote-fs.js';

describe('remote file systems', () => {
  it('names network and FUSE file systems by their statfs magic, also when the platform reports it signed', () => {
    assert.equal(remoteFsName(0x6969), 'NFS');
    assert.equal(remoteFsName(0xff534d42), 'CIFS');
    assert.equal(remoteFsName(0xff534d42 | 0), 'CIFS');
    assert.equal(remoteFsName(0xfe534d42 | 0), 'SMB2');
    assert.equal(remoteFsName(0x65735546), 'FUSE');
  });

  it('does not flag local file systems (ext4, xfs, btrfs, tmpfs, overlayfs)', () => {
    for (const magic of [0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630]) assert.equal(remoteFsName(magic), undefined);
  });

  it('finds this machine\'s temp directory local, and a path it cannot stat is not reported', async () => {
    assert.equal(await remoteFsOf(tmpdir()), undefined);
    assert.equal(await remoteFsOf(join(tmpdir(), 'pitr-no-such-dir', 'x')), undefined);
  });
});
