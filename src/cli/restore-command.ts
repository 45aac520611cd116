import { Command, Option } from 'commander';
import { openReplicaToRead } from './replica-arg.js';
import { restore, type RestorePhases, type RestoreProgress, type RestoreResult } from '../restore/restore.js';
import { ProgressLine } from './progress-line.js';
import { PitrError } from '../errors.js';
import { iso, positiveIntArg, reportError, timestampArg, targetFromFlags } from './cli-util.js';
import { formatBytes, formatDuration } from '../util/duration.js';
import { describeInsideDowntime, downtimeMs, type CatchUp } from '../catalog/catch-ups.js';
import { downtimeSpan } from './catch-up-output.js';

interface RestoreFlags {
  output: string;
  to?: number;
  txid?: number;
  dryRun?: boolean;
  force?: boolean;
  json?: boolean;
  progress?: boolean;
}

export function restoreCommand(): Command {
  return new Command('restore')
    .summary('rebuild a database as of a point in time')
    .description(
      'Rebuild the database from REPLICA into OUT, as it was right after one committed transaction:\n' +
        '  (no target)   the latest replicated state\n' +
        '  --to TIME     the last transaction committed at or before TIME (RFC 3339)\n' +
        '  --txid N      right after transaction N (see `pitr list` for the txid ranges)\n\n' +
        'Commit times are when pitr read the commit from the WAL: at most the capture latency after the true ' +
        'commit. OUT appears only complete and verified (PRAGMA integrity_check); an existing OUT is never ' +
        'replaced without --force.\n\n' +
        'A --to TIME inside a downtime of the agent (what the app committed then is one catch-up step, see `pitr list`) ' +
        'restores the state before the step and warns; --txid on the step restores the state after it.',
    )
    .argument('<replica>', 'replica URL: a directory path, file:///abs/path or s3://bucket/prefix')
    .requiredOption('-o, --output <path>', 'where to write the restored database')
    .addOption(new Option('--to <time>', 'restore to this time, e.g. 2026-11-22T10:15:00.250Z').argParser(timestampArg('--to')).conflicts('txid'))
    .addOption(new Option('--txid <n>', 'restore to right after this transaction').argParser(positiveIntArg))
    .option('--dry-run', 'print the plan (snapshot, segments, bytes) and write nothing')
    .option('--force', 'replace OUT if it exists (and remove a stale OUT-wal/OUT-shm); never while a process has OUT open (the app, an agent)')
    .option('--json', 'print the result as one JSON object on stdout')
    .option('--progress', 'show progress on stderr even when it is not a terminal (one line a second)')
    .option('--no-progress', 'no progress line, even on a terminal')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr restore /backups/app -o app.db\n' +
        '  pitr restore /backups/app -o app.db --to 2026-11-22T10:15:00Z\n' +
        '  pitr restore /backups/app -o app.db --txid 4711 --dry-run\n',
    )
    .action(async (replicaUrl: string, flags: RestoreFlags) => {
      try {
        const target = targetFromFlags(flags);
        if (!flags.output) throw new PitrError('USAGE', 'missing -o OUT', 'pass the path of the database to write');
        const storage = await openReplicaToRead(replicaUrl);
        const progress = ProgressLine.fromFlag(flags.progress);
        let result: RestoreResult;
        try {
          result = await restore({
            storage,
            output: flags.output,
            target,
            force: flags.force ?? false,
            dryRun: flags.dryRun ?? false,
            ...(progress ? { onProgress: (p: RestoreProgress) => showProgress(progress, p) } : {}),
          });
        } finally {
          progress?.clear();
          await storage.close();
        }
        warnSkipped(result);
        print(result, flags.json ?? false);
        if (result.refused) {
          // The plan is shown, and the exit code says what the real run would do.
          const r = result.refused;
          process.exitCode = reportError(new PitrError(r.code, `the real run would be refused: ${r.message}`, r.hint));
        }
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}

/** Damaged objects the restore planned around, and newer generations it passed over: one warning each. */
function warnSkipped(r: RestoreResult): void {
  for (const d of r.skipped) process.stderr.write(`pitr: warning: skipped ${d.key}: ${d.reason}\n`);
  for (const g of r.plan.skippedGenerations) {
    process.stderr.write(`pitr: warning: generation ${g} holds only damaged objects and is not the replica's latest state; it was passed over\n`);
  }
  for (const n of r.notes) process.stderr.write(`pitr: warning: ${n}\n`);
  // Not an error: the state before the step is what was last known at the target time. But the
  // transactions made in the downtime are not in it, and no time picks them one by one.
  if (r.plan.insideDowntime) {
    process.stderr.write(`pitr: warning: ${describeInsideDowntime(r.plan.insideDowntime, r.txid, r.dryRun ? 'the plan restores' : 'restored')}\n`);
  }
}

/** A catch-up step in restore's --json: the step's txid, where its downtime starts and ends. */
function downtimeJson(c: CatchUp | undefined, txidField: 'txid' | 'catchUpTxid'): Record<string, unknown> | null {
  if (!c) return null;
  return {
    [txidField]: c.txid,
    from: c.from === null ? null : iso(c.from),
    fromMs: c.from,
    to: iso(c.to),
    toMs: c.to,
    downtimeMs: downtimeMs(c),
  };
}

function showProgress(line: ProgressLine, p: RestoreProgress): void {
  if (p.phase === 'check') {
    line.show('checking the restored database (PRAGMA integrity_check)', true);
    return;
  }
  const segments = p.segments > 0 ? `, segments ${p.segmentsDone}/${p.segments}` : '';
  line.show(`restoring: ${formatBytes(p.doneBytes)} of ${formatBytes(p.totalBytes)}${segments}`, p.doneBytes === p.totalBytes);
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)}s`;
}

function roundPhases(p: RestorePhases): RestorePhases {
  return { planMs: Math.round(p.planMs), applyMs: Math.round(p.applyMs), checkMs: Math.round(p.checkMs), syncMs: Math.round(p.syncMs) };
}

function print(r: RestoreResult, json: boolean): void {
  const p = r.plan;
  if (json) {
    const common = {
      generation: p.generation,
      txid: r.txid,
      commitTime: iso(r.commitTime),
      commitTimeMs: r.commitTime,
      skipped: r.skipped.map((d) => ({ key: d.key, reason: d.reason })),
      skippedGenerations: p.skippedGenerations,
      insideDowntime: downtimeJson(p.insideDowntime, 'catchUpTxid'),
      catchUpTarget: downtimeJson(p.catchUpTarget, 'txid'),
    };
    const out = r.dryRun
      ? {
          dryRun: true,
          output: r.output,
          ...common,
          snapshot: { key: p.snapshot.key, txid: p.snapshot.txid, size: p.snapshot.size },
          segments: p.segments.map((s) => ({ key: s.key, firstTxid: s.firstTxid, lastTxid: s.lastTxid, size: s.size, catchUp: s.catchUp === true })),
          bytes: p.bytes,
          ...(r.refused ? { refused: { code: r.refused.code, message: r.refused.message, hint: r.refused.hint ?? null } } : {}),
        }
      : {
          output: r.output,
          ...common,
          snapshotTxid: p.snapshot.txid,
          segments: p.segments.length,
          bytes: p.bytes,
          pageSize: r.pageSize,
          pages: r.dbSizePages,
          durationMs: Math.round(r.durationMs),
          ...(r.phases ? { phases: roundPhases(r.phases) } : {}),
        };
    process.stdout.write(JSON.stringify(out) + '\n');
    return;
  }
  const lines = r.dryRun
    ? [
        `plan: restore generation ${p.generation} to txid ${r.txid} (committed ${iso(r.commitTime)})`,
        `  snapshot  ${p.snapshot.key}  txid ${p.snapshot.txid}  ${formatBytes(p.snapshot.size)}`,
        ...p.segments.map((s) =>
          s.catchUp ? `  catch-up  ${s.key}  txid ${s.firstTxid}  ${formatBytes(s.size)}` : `  segment   ${s.key}  txid ${s.firstTxid}..${s.lastTxid}  ${formatBytes(s.size)}`,
        ),
        `  total     ${p.segments.length + 1} objects, ${formatBytes(p.bytes)} to download; nothing written (dry run)`,
      ]
    : [
        `restored ${r.output}: generation ${p.generation}, txid ${r.txid} (committed ${iso(r.commitTime)})`,
        `  from snapshot txid ${p.snapshot.txid} + ${p.segments.length} segments, ${formatBytes(p.bytes)}, ${r.dbSizePages} pages; integrity_check ok`,
        ...(r.phases ? [`  took ${seconds(r.durationMs)}: plan ${seconds(r.phases.planMs)}, fetch+apply ${seconds(r.phases.applyMs)}, integrity_check ${seconds(r.phases.checkMs)}, fsync+rename ${seconds(r.phases.syncMs)}`] : []),
      ];
  if (p.catchUpTarget && r.dryRun) {
    const c = p.catchUpTarget;
    const ms = downtimeMs(c);
    lines.push(`  note: txid ${c.txid} is a catch-up step: the changes made while the agent was down (${ms === null ? '' : `${formatDuration(ms)}, `}${downtimeSpan(c)}), as one step`);
  }
  if (p.target.kind === 'time' && p.stopTime !== undefined && p.stopTime > p.window.lastTime) {
    lines.push(`  note: the newest replicated commit is ${iso(p.window.lastTime)}, before the requested time; this is the latest state the replica holds`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}
