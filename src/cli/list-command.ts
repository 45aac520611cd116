import { Command } from 'commander';
import { openReplicaToRead } from './replica-arg.js';
import { loadReplica } from '../restore/replica-view.js';
import { latestState } from '../catalog/catalog.js';
import { describeDamaged, describeHole, describeLost, describeMissingBase, txids } from '../catalog/describe.js';
import { PitrError } from '../errors.js';
import { iso, reportError } from './cli-util.js';
import { formatBytes } from '../util/duration.js';
import { catchUpsOf } from '../catalog/catch-ups.js';
import { catchUpJson, describeCatchUp, describeTotalDowntime } from './catch-up-output.js';

/** A generation with more catch-up steps than this lists the newest this many in text (--json lists all). */
const CATCH_UPS_SHOWN = 10;

export function listCommand(): Command {
  return new Command('list')
    .summary('show generations, snapshots, segments and restorable windows of a replica')
    .description(
      'List what REPLICA holds: per generation its snapshots, segments, bytes, and the restorable window(s) ' +
        '(first and last commit time and txid); and what it lacks: holes (missing txids), segments no snapshot ' +
        'reaches (orphans), a missing base snapshot, damaged objects, and the newest txid the replica is known to ' +
        'have reached (from object names and the heartbeat, which the agent writes after uploads). Each catch-up ' +
        'step (what the app changed while the agent was down, one txid) is shown with the downtime it covers.',
    )
    .argument('<replica>', 'replica URL: a directory path, file:///abs/path or s3://bucket/prefix')
    .option('--json', 'print one JSON object on stdout')
    .action(async (replicaUrl: string, flags: { json?: boolean }) => {
      try {
        const storage = await openReplicaToRead(replicaUrl);
        try {
          const { catalog, notes } = await loadReplica(storage);
          const latest = latestState(catalog);
          const generations = catalog.generations.map((g) => {
            const catchUps = catchUpsOf(g);
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
              newestTxid: g.newestTxid,
              newestCommitTime: g.newestTime > 0 ? iso(g.newestTime) : null,
              provenTxid: g.provenTxid ?? null,
              complete: g.complete,
              holes: g.holes.map((h) => ({
                kind: h.kind,
                firstTxid: h.firstTxid,
                lastTxid: h.lastTxid,
                after: h.after ?? null,
                before: h.before ?? null,
                onlyDamaged: h.onlyDamaged,
                damaged: h.damaged.map((d) => d.key),
              })),
              missingBase: g.missingBase ? { firstTxid: g.missingBase.firstTxid, lastTxid: g.missingBase.lastTxid, damaged: g.missingBase.damaged.map((d) => d.key) } : null,
              orphans: g.orphans.map((s) => ({ key: s.key, firstTxid: s.firstTxid, lastTxid: s.lastTxid })),
              damaged: g.damaged.map((d) => ({ key: d.key, size: d.size, reason: d.reason })),
              catchUps: catchUps.map(catchUpJson),
            };
          });
          const lost = latest.lost ? describeLost(latest.lost) : null;
          if (flags.json) {
            process.stdout.write(
              JSON.stringify({
                replica: storage.url,
                latest: latest.generation
                  ? { generation: latest.lost ? ('id' in latest.lost ? latest.lost.id : latest.lost.generation) : latest.generation.id, txid: latest.txid, restorable: latest.restorable }
                  : null,
                lost,
                generations,
                missingGenerations: catalog.missingGenerations.map((m) => ({ generation: m.generation, txid: m.txid, superseded: m.superseded })),
                notes,
              }) + '\n',
            );
            return;
          }
          if (generations.length === 0) {
            if (lost) throw new PitrError('REPLICA_INCOMPLETE', `replica ${storage.url}: ${lost}`, 'restore from another replica that holds these transactions');
            throw new PitrError('REPLICA_EMPTY', `replica ${storage.url} holds no pitr generations`, 'check the URL; is an agent replicating to it?');
          }
          const out = [`replica ${storage.url}`];
          for (const g of catalog.generations) {
            const damaged = g.damaged.length > 0 ? `, ${g.damaged.length} damaged` : '';
            const catchUps = catchUpsOf(g);
            const steps = catchUps.length > 0 ? ` (${catchUps.length} catch-up step${catchUps.length === 1 ? '' : 's'})` : '';
            out.push(`generation ${g.id}: ${g.snapshots.length} snapshots, ${g.segments.length} segments${steps}${damaged}, ${formatBytes(g.bytes)}`);
            for (const w of g.windows) out.push(`  restorable ${txids(w.firstTxid, w.lastTxid)}  ${iso(w.firstTime)} .. ${iso(w.lastTime)}`);
            if (catchUps.length > 1) {
              const hidden = catchUps.length - CATCH_UPS_SHOWN;
              const more = hidden > 0 ? `; the ${hidden} older are not shown (--json lists each)` : '';
              out.push(`  ${catchUps.length} catch-up steps, ${describeTotalDowntime(catchUps)}${more}`);
            }
            for (const c of catchUps.slice(-CATCH_UPS_SHOWN)) out.push(`  ${describeCatchUp(c)}`);
            if (g.windows.length === 0) out.push('  not restorable');
            if (g.newestTxid > 0 && !g.complete) out.push(`  INCOMPLETE  its newest txid ${g.newestTxid} is not restorable`);
            if (g.missingBase) out.push(`  MISSING BASE  ${describeMissingBase(g.missingBase)}`);
            for (const h of g.holes) out.push(`  HOLE  ${describeHole(h)}`);
            for (const s of g.orphans) out.push(`  ORPHAN  ${s.key}  ${txids(s.firstTxid, s.lastTxid)} (no snapshot reaches it)`);
            for (const d of g.damaged) out.push(`  DAMAGED  ${describeDamaged(d)}`);
          }
          if (lost) out.push(`LOST  ${lost}`);
          for (const n of notes) out.push(`note  ${n}`);
          process.stdout.write(out.join('\n') + '\n');
        } finally {
          await storage.close();
        }
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}
