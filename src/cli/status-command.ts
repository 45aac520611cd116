import { Command, Option } from 'commander';
import { openReplicaToRead } from './replica-arg.js';
import { replicaStatus, type ReplicaStatus } from '../monitor/status.js';
import { formatBytes, formatDuration, parseDuration } from '../util/duration.js';
import { iso, reportError } from './cli-util.js';
import { downtimeMs } from '../catalog/catch-ups.js';
import { catchUpJson, downtimeSpan } from './catch-up-output.js';

interface MaxAge {
  ms: number;
  /** As the user wrote it, so the alert says "max 25h" rather than "max 1d1h". */
  text: string;
}

interface StatusFlags {
  maxAge?: MaxAge;
  json?: boolean;
}

/** Exit code of a failed --max-age check, as monitoring plugins (Nagios, Icinga, Sensu) expect. */
const EXIT_CRITICAL = 2;
const SIZE_NOTE = 'objects written in the last 24 h; deletions are not counted';

/** BAD_DURATION (a PitrError, passed through by commander) for a value that is not a duration. */
function maxAgeArg(v: string): MaxAge {
  return { ms: parseDuration(v, '--max-age'), text: v.trim() };
}

export function statusCommand(): Command {
  return new Command('status')
    .summary('show how current a replica is, from the replica alone')
    .description(
      'Report what REPLICA holds and how current it is: the newest txid and its commit time, the last ' +
        'heartbeat of the agent, the restorable window(s) of the newest generation, snapshots, and bytes ' +
        'stored. Reads only the replica (one LIST and the heartbeat), so it works from any machine and ' +
        'when the agent is not running.\n\n' +
        'Age is how long ago the replica was last known to be current: the heartbeat time when the ' +
        'heartbeat vouches for the newest txid (the agent writes it while the replica is caught up), ' +
        'otherwise the newest commit time.\n\n' +
        'It also reports what the replica lacks: missing base snapshots, holes, orphaned segments, damaged objects ' +
        '(checked from the listing and the heartbeat, which names the newest durable txid); and the catch-up steps ' +
        '(what the app changed while the agent was down, one step each): how many, the downtime they cover, the newest.\n\n' +
        `With --max-age, one line "OK: ..." or "CRITICAL: ..." goes to stderr and the exit code is 0, or ${EXIT_CRITICAL} ` +
        'when the age is over the limit or the newest state is not restorable. Errors (bad URL, unreachable replica) exit 1.',
    )
    .argument('<replica>', 'replica URL: a directory path, file:///abs/path or s3://bucket/prefix')
    .addOption(new Option('--max-age <duration>', `exit ${EXIT_CRITICAL} when the replica was last confirmed current longer ago than this`).argParser(maxAgeArg))
    .option('--json', 'print one JSON object on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr status /backups/app\n' +
        "  pitr status 's3://bucket/app?region=eu-west-1' --json\n" +
        '  pitr status /backups/app --max-age 25h      # for cron or a monitoring check: exit 2 if stale\n',
    )
    .action(async (replicaUrl: string, flags: StatusFlags) => {
      try {
        const storage = await openReplicaToRead(replicaUrl);
        let status: ReplicaStatus;
        try {
          status = await replicaStatus(storage);
        } finally {
          await storage.close();
        }
        const check = flags.maxAge ? evaluate(status, flags.maxAge) : undefined;
        process.stdout.write(flags.json ? JSON.stringify(toJson(status, check)) + '\n' : human(status));
        if (check) {
          process.stderr.write(`${check.status}: ${check.message}\n`);
          process.exitCode = check.status === 'OK' ? 0 : EXIT_CRITICAL;
        }
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}

interface Check {
  status: 'OK' | 'CRITICAL';
  message: string;
  maxAge: MaxAge;
}

function evaluate(s: ReplicaStatus, maxAge: MaxAge): Check {
  if (s.latest === null || s.ageMs === null) {
    const why = s.problems.length > 0 ? `: ${s.problems[0]}` : '';
    return { status: 'CRITICAL', message: `replica ${s.replica} holds no restorable state (max ${maxAge.text})${why}`, maxAge };
  }
  if (!s.restorable) {
    // Whatever its age: the newest data the replica should hold cannot be restored.
    const why = s.problems.find((p) => !p.startsWith('the newest state')) ?? s.problems[0] ?? 'objects are missing';
    return {
      status: 'CRITICAL',
      message: `replica ${s.replica}: the newest state (txid ${s.latest.txid} of generation ${s.latest.generation}) is not restorable: ${why}`,
      maxAge,
    };
  }
  const newest = `newest txid ${s.latest.txid} committed ${iso(s.latest.commitTime)}`;
  const message = `replica ${s.replica} last confirmed current ${formatDuration(s.ageMs)} ago (max ${maxAge.text}); ${newest}`;
  return { status: s.ageMs > maxAge.ms ? 'CRITICAL' : 'OK', message, maxAge };
}

function toJson(s: ReplicaStatus, check: Check | undefined): Record<string, unknown> {
  const t = (ms: number | null | undefined): string | null => (ms === null || ms === undefined ? null : iso(ms));
  return {
    replica: s.replica,
    now: iso(s.now),
    nowMs: s.now,
    empty: s.empty,
    restorable: s.restorable,
    proven: s.proven,
    generation: s.latest?.generation ?? null,
    txid: s.latest?.txid ?? null,
    commitTime: t(s.latest?.commitTime),
    commitTimeMs: s.latest?.commitTime ?? null,
    confirmedBy: s.confirmedBy,
    confirmedAt: t(s.confirmedAt),
    confirmedAtMs: s.confirmedAt,
    ageMs: s.ageMs,
    age: s.ageMs === null ? null : formatDuration(s.ageMs),
    heartbeat: s.heartbeat
      ? {
          time: iso(s.heartbeat.time),
          timeMs: s.heartbeat.time,
          ageMs: Math.max(0, s.now - s.heartbeat.time),
          generation: s.heartbeat.generation,
          txid: s.heartbeat.txid,
          commitTime: iso(s.heartbeat.commitTime),
          commitTimeMs: s.heartbeat.commitTime,
          agent: s.heartbeat.agent,
        }
      : null,
    windows: s.windows.map((w) => ({
      firstTxid: w.firstTxid,
      lastTxid: w.lastTxid,
      firstCommitTime: iso(w.firstTime),
      firstCommitTimeMs: w.firstTime,
      lastCommitTime: iso(w.lastTime),
      lastCommitTimeMs: w.lastTime,
    })),
    generations: s.generations,
    snapshots: s.snapshots,
    newestSnapshot: s.newestSnapshot
      ? { key: s.newestSnapshot.key, txid: s.newestSnapshot.txid, commitTime: iso(s.newestSnapshot.commitTime), commitTimeMs: s.newestSnapshot.commitTime, ageMs: s.newestSnapshot.ageMs }
      : null,
    segments: s.segments,
    catchUps: s.catchUps,
    catchUpDowntimeMs: s.catchUpDowntimeMs,
    newestCatchUp: s.newestCatchUp ? { generation: s.newestCatchUp.generation, ...catchUpJson(s.newestCatchUp), ageMs: Math.max(0, s.now - s.newestCatchUp.to) } : null,
    catchUpsByGeneration: s.catchUpsByGeneration,
    objects: s.objects,
    bytes: s.bytes,
    bytesDayAgo: s.bytesDayAgo,
    bytesChange24h: s.bytesChange24h,
    bytesChangeNote: SIZE_NOTE,
    notes: s.notes,
    problems: s.problems,
    holes: s.holes.map((h) => ({ generation: h.generation, kind: h.kind, firstTxid: h.firstTxid, lastTxid: h.lastTxid, onlyDamaged: h.onlyDamaged })),
    missingBases: s.missingBases.map((m) => ({ generation: m.generation, firstTxid: m.firstTxid, lastTxid: m.lastTxid })),
    orphans: s.orphans.map((o) => ({ key: o.key, generation: o.generation, firstTxid: o.firstTxid, lastTxid: o.lastTxid })),
    damaged: s.damaged.map((d) => ({ key: d.key, reason: d.reason })),
    ...(check ? { check: { status: check.status, message: check.message, maxAge: check.maxAge.text, maxAgeMs: check.maxAge.ms } } : {}),
  };
}

function human(s: ReplicaStatus): string {
  const ago = (ms: number): string => `${formatDuration(Math.max(0, s.now - ms))} ago`;
  const out = [`replica     ${s.replica}`];
  if (s.latest === null) {
    out.push('latest      nothing restorable');
  } else {
    const state = s.restorable ? '' : ', NOT RESTORABLE';
    out.push(`latest      txid ${s.latest.txid}, committed ${iso(s.latest.commitTime)} (${ago(s.latest.commitTime)}), generation ${s.latest.generation}${state}`);
  }
  if (s.heartbeat) {
    const a = s.heartbeat.agent;
    out.push(`heartbeat   ${iso(s.heartbeat.time)} (${ago(s.heartbeat.time)}), txid ${s.heartbeat.txid}, agent ${a.host} pid ${a.pid} pitr ${a.version}`);
  } else {
    out.push('heartbeat   none');
  }
  if (s.ageMs !== null && s.confirmedAt !== null) {
    const by = s.confirmedBy === 'heartbeat' ? 'heartbeat' : 'newest commit';
    out.push(`age         ${formatDuration(s.ageMs)} (last confirmed current ${iso(s.confirmedAt)}, by the ${by})`);
  }
  for (const w of s.windows) {
    out.push(`restorable  txid ${w.firstTxid}..${w.lastTxid}  ${iso(w.firstTime)} .. ${iso(w.lastTime)}`);
  }
  const snap = s.newestSnapshot ? `, newest txid ${s.newestSnapshot.txid} at ${iso(s.newestSnapshot.commitTime)} (${formatDuration(s.newestSnapshot.ageMs)} old)` : '';
  out.push(`snapshots   ${s.snapshots}${snap}`);
  if (s.newestCatchUp) {
    const perGen = s.catchUpsByGeneration.length > 1 ? `: ${s.catchUpsByGeneration.map((g) => `generation ${g.generation} ${g.catchUps} (${formatDuration(g.downtimeMs)})`).join(', ')}` : '';
    out.push(`catch-ups   ${s.catchUps} (changes made while the agent was down, one step each), ${formatDuration(s.catchUpDowntimeMs)} of downtime in all${perGen}`);
    const c = s.newestCatchUp;
    const ms = downtimeMs(c);
    out.push(`            newest txid ${c.txid} of generation ${c.generation}: ${ms === null ? 'downtime' : `${formatDuration(ms)} of downtime`} ${downtimeSpan(c)} (${ago(c.to)})`);
  }
  out.push(`stored      ${formatBytes(s.bytes)} in ${s.objects} objects (${s.generations} generations, ${s.segments} segments)`);
  out.push(`last 24h    +${formatBytes(s.bytesChange24h)} (${SIZE_NOTE})`);
  for (const p of s.problems) out.push(`PROBLEM     ${p}`);
  for (const n of s.notes) out.push(`note        ${n}`);
  return out.join('\n') + '\n';
}
