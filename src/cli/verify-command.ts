import { Command, Option } from 'commander';
import { openReplicaToRead } from './replica-arg.js';
import { verifyReplica, type VerifyResult } from '../verify/verify-replica.js';
import { formatBytes, formatDuration } from '../util/duration.js';
import { iso, positiveIntArg, reportError, timestampArg, targetFromFlags } from './cli-util.js';
import { ProgressLine } from './progress-line.js';

interface VerifyFlags {
  to?: number;
  txid?: number;
  db?: string;
  stateDir?: string;
  json?: boolean;
  progress?: boolean;
}

export function verifyCommand(): Command {
  return new Command('verify')
    .summary('prove that a replica restores: checksums, a test restore, and optionally the live content')
    .description(
      'Prove that REPLICA restores:\n' +
        '  1. check the checksum and format of every snapshot and segment, and that nothing is missing:\n' +
        '     no hole between segments, no segment that no snapshot reaches, no lost newest objects\n' +
        '     (the heartbeat names the newest durable txid);\n' +
        '  2. restore the target (default: latest) into a temp file, integrity_check it;\n' +
        '  3. with --db: restore the txid the agent last captured for that database (its\n' +
        '     state dir says which) and compare schema and rows with the live database.\n\n' +
        'The temp file goes to the system temp dir and is always deleted. The live database is read in one ' +
        'read transaction that is proven to be exactly at that txid.\n\n' +
        'All problems are reported, each naming the object or the check, and the exit code is 1 if any; ' +
        '0 only when every check holds. If the live database cannot be pinned to a txid the replica holds ' +
        '(the app is writing, the agent is behind or stopped while the app wrote), the content comparison ' +
        'is skipped with a warning, which is not a failure. Nothing is written to the replica or the live ' +
        'database (SQLite may create the -wal and -shm files any reader of a WAL database needs).',
    )
    .argument('<replica>', 'replica URL: a directory path, file:///abs/path or s3://bucket/prefix')
    .addOption(new Option('--to <time>', 'verify the restore to this time, e.g. 2026-11-22T10:15:00.250Z').argParser(timestampArg('--to')).conflicts('txid'))
    .addOption(new Option('--txid <n>', 'verify the restore to right after this transaction').argParser(positiveIntArg))
    .option('--db <path>', 'the live database: compare its content with the replica at the agent\'s position')
    .option('--state-dir <dir>', "the agent's state dir for --db (default: DB-pitr next to the database)")
    .option('--json', 'print one JSON object on stdout')
    .option('--progress', 'show progress on stderr even when it is not a terminal (one line a second)')
    .option('--no-progress', 'no progress line, even on a terminal')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr verify /backups/app\n' +
        '  pitr verify /backups/app --db /data/app.db          # also compare with the live database\n' +
        '  pitr verify /backups/app --txid 4711 --json\n' +
        "  pitr verify 's3://bucket/app?region=eu-west-1' --to 2026-11-22T10:15:00Z\n",
    )
    .action(async (replicaUrl: string, flags: VerifyFlags) => {
      try {
        const target = targetFromFlags(flags);
        const storage = await openReplicaToRead(replicaUrl);
        const progress = ProgressLine.fromFlag(flags.progress);
        let result: VerifyResult;
        try {
          result = await verifyReplica({
            storage,
            target,
            ...(flags.db !== undefined ? { dbPath: flags.db } : {}),
            ...(flags.stateDir !== undefined ? { stateDir: flags.stateDir } : {}),
            ...(progress ? { onProgress: (d: number, t: number) => progress.show(`checking objects ${d}/${t}`, d === t) } : {}),
          });
        } finally {
          progress?.clear();
          await storage.close();
        }
        process.stdout.write(flags.json ? JSON.stringify(toJson(result)) + '\n' : human(result));
        reportProblems(result);
        process.exitCode = result.ok ? 0 : 1;
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}

/** One "pitr: error: ... [CODE]" line per problem (the format every command uses), hints deduplicated. */
function reportProblems(r: VerifyResult): void {
  let lastHint: string | undefined;
  for (const p of r.problems) {
    process.stderr.write(`pitr: error: ${p.message} [${p.code}]\n`);
    if (p.hint && p.hint !== lastHint) process.stderr.write(`  hint: ${p.hint}\n`);
    lastHint = p.hint ?? lastHint;
  }
  if (r.content === 'skipped' && r.contentNote && !r.contentNote.startsWith('no live database')) {
    process.stderr.write(`pitr: warning: ${r.contentNote}\n`);
  }
}

function toJson(r: VerifyResult): Record<string, unknown> {
  return {
    ok: r.ok,
    replica: r.replica,
    generation: r.generation,
    txid: r.txid,
    commitTime: r.commitTime > 0 ? iso(r.commitTime) : null,
    commitTimeMs: r.commitTime > 0 ? r.commitTime : null,
    objectsChecked: r.objectsChecked,
    bytesChecked: r.bytesChecked,
    integrity: r.integrity,
    content: r.content,
    contentNote: r.contentNote ?? null,
    contentTxid: r.contentTxid ?? null,
    newestTxid: r.newestTxid,
    proven: r.proven,
    notes: r.notes,
    problems: r.problems,
    durationMs: Math.round(r.durationMs),
  };
}

function human(r: VerifyResult): string {
  const bad = r.problems.filter((p) => p.check === 'checksum' || p.check === 'read').length;
  const missing = r.problems.filter((p) => p.check === 'completeness').length;
  const lines = [
    `verify ${r.replica}: ${r.ok ? 'OK' : `FAILED (${r.problems.length} problem${r.problems.length === 1 ? '' : 's'})`}`,
    `  objects   ${r.objectsChecked} checked, ${formatBytes(r.bytesChecked)}: ${bad === 0 ? 'all checksums ok' : `${bad} bad`}`,
    `  complete  ${missing === 0 ? 'no holes, orphans or missing snapshots' : `${missing} problem${missing === 1 ? '' : 's'} (holes, orphans, missing snapshots)`}; newest txid ${r.newestTxid}${r.proven ? ', proven by the marker' : ''}`,
    r.integrity === 'ok'
      ? `  restore   generation ${r.generation}, txid ${r.txid} (committed ${iso(r.commitTime)}): integrity_check ok`
      : `  restore   ${r.integrity}`,
    `  content   ${r.content === 'match' ? 'match' : r.content === 'mismatch' ? 'MISMATCH' : 'skipped'}${r.contentNote ? `: ${r.contentNote}` : ''}`,
    `  took      ${formatDuration(r.durationMs)}`,
    ...r.notes.map((n) => `  note      ${n}`),
  ];
  return lines.join('\n') + '\n';
}
