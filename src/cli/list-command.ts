import { Command } from 'commander';
import { openReplicaToRead } from './replica-arg.js';
import { loadCatalog } from '../restore/restore.js';
import { PitrError } from '../errors.js';
import { iso, reportError } from './cli-util.js';
import { formatBytes } from '../util/duration.js';

export function listCommand(): Command {
  return new Command('list')
    .summary('show generations, snapshots, segments and restorable windows of a replica')
    .description('List what REPLICA holds: per generation its snapshots, segments, bytes, and the restorable window (first and last commit time and txid).')
    .argument('<replica>', 'replica URL: a directory path, file:///abs/path or s3://bucket/prefix')
    .option('--json', 'print one JSON object on stdout')
    .action(async (replicaUrl: string, flags: { json?: boolean }) => {
      try {
        const storage = await openReplicaToRead(replicaUrl);
        try {
          const catalog = await loadCatalog(storage);
          const generations = catalog.generations.map((g) => {
            const first = g.windows[0];
            const last = g.windows[g.windows.length - 1];
            return {
              id: g.id,
              snapshots: g.snapshots.length,
              segments: g.segments.length,
              bytes: g.bytes,
              firstTxid: first?.firstTxid ?? null,
              lastTxid: last?.lastTxid ?? null,
              firstCommitTimeMs: first?.firstTime ?? null,
              lastCommitTimeMs: last?.lastTime ?? null,
              firstCommitTime: first ? iso(first.firstTime) : null,
              lastCommitTime: last ? iso(last.lastTime) : null,
              windows: g.windows.map((w) => ({ firstTxid: w.firstTxid, lastTxid: w.lastTxid, firstCommitTime: iso(w.firstTime), lastCommitTime: iso(w.lastTime) })),
            };
          });
          if (flags.json) {
            process.stdout.write(JSON.stringify({ replica: storage.url, generations }) + '\n');
            return;
          }
          if (generations.length === 0) {
            throw new PitrError('REPLICA_EMPTY', `replica ${storage.url} holds no pitr generations`, 'check the URL; is an agent replicating to it?');
          }
          const out = [`replica ${storage.url}`];
          for (const g of generations) {
            out.push(`generation ${g.id}: ${g.snapshots} snapshots, ${g.segments} segments, ${formatBytes(g.bytes)}`);
            if (g.windows.length === 0) out.push('  not restorable (no snapshot)');
            for (const w of g.windows) out.push(`  restorable txid ${w.firstTxid}..${w.lastTxid}  ${w.firstCommitTime} .. ${w.lastCommitTime}`);
          }
          process.stdout.write(out.join('\n') + '\n');
        } finally {
          await storage.close();
        }
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}
