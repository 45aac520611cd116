import { Command, Option } from 'commander';
import { resolve } from 'node:path';
import { findAgent, request } from '../agent/control-client.js';
import type { AgentStatus, ControlRequest } from '../agent/control-protocol.js';
import { formatDuration } from '../util/duration.js';
import { reportError } from './cli-util.js';

/** What the client waits beyond the agent's own timeout, so that the agent's answer (with what
 * did not make it) arrives before the client gives up. */
const ANSWER_GRACE_MS = 10_000;
/** status and has answer from memory. */
const QUICK_TIMEOUT_MS = 10_000;

export function socketOption(): Option {
  return new Option('--socket <path>', "the agent's control socket (default: the one agent found in $XDG_RUNTIME_DIR/pitr or $TMPDIR/pitr-<uid>)");
}

/**
 * Find the agent (replicating `db`, when given, resolved to an absolute path as the agent knows
 * it) and ask it `req`; `waitMs` is how long the agent itself was told to wait.
 */
export async function askAgent<T>(socket: string | undefined, db: string | undefined, req: ControlRequest, waitMs?: number): Promise<{ socket: string; result: T }> {
  const path = await findAgent({ ...(socket === undefined ? {} : { socket }), ...(db === undefined ? {} : { db }) });
  const result = await request<T>(path, req, waitMs === undefined ? QUICK_TIMEOUT_MS : waitMs + ANSWER_GRACE_MS);
  return { socket: path, result };
}

/** A DB argument as the agent names its databases. */
export function absoluteDb(db: string | undefined): string | undefined {
  return db === undefined ? undefined : resolve(db);
}

export function agentCommand(): Command {
  const status = new Command('status')
    .summary('show what the running agent replicates, and how current each replica is')
    .description(
      'Ask the running agent (`pitr replicate`) over its control socket what it replicates: per database its ' +
        'generation and newest captured txid; per replica the newest txid it holds, its lag (age of the oldest ' +
        'commit not yet in it, 0 when caught up) and whether it is healthy.\n\n' +
        'With several agents on this host, name a database (the agent replicating it answers) or pass --socket. ' +
        'To check a replica without the agent, use `pitr status REPLICA`.',
    )
    .argument('[db]', 'a database the agent replicates: picks the agent when several run')
    .addOption(socketOption())
    .option('--json', 'print one JSON object on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr agent status\n' +
        '  pitr agent status /srv/app/app.db --json\n' +
        '  pitr agent status --socket /run/pitr/app.sock\n',
    )
    .action(async (db: string | undefined, flags: { socket?: string; json?: boolean }) => {
      try {
        const abs = absoluteDb(db);
        const { socket, result } = await askAgent<AgentStatus>(flags.socket, abs, { op: 'status' });
        process.stdout.write(flags.json ? JSON.stringify({ socket, ...result }) + '\n' : human(socket, result));
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
  // Subcommands do not inherit main's settings (addCommand copies none): the same error form here.
  status
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`pitr: ${str.trim()} [USAGE]\n`) })
    .showHelpAfterError('  hint: run with --help for usage');

  return new Command('agent')
    .summary('talk to the running agent (status)')
    .description('Commands that ask the running agent (`pitr replicate`) over its control socket. See also `pitr sync` and `pitr snapshot`.')
    .addCommand(status);
}

function human(socket: string, s: AgentStatus): string {
  const out: string[] = [];
  const unhealthy = s.dbs.flatMap((d) => d.replicas.filter((r) => !r.healthy).map((r) => `${d.db} -> ${r.url}`));
  out.push(`agent pid ${s.pid}, pitr ${s.version}, started ${s.startedAt}${s.config ? `, config ${s.config}` : ''}`);
  out.push(`socket ${socket}`);
  out.push(`health: ${unhealthy.length === 0 ? 'ok' : `${unhealthy.length} replica(s) unhealthy`}`);
  if (s.dbs.length === 0) out.push('no databases');
  for (const d of s.dbs) {
    out.push('');
    out.push(`${d.db}`);
    out.push(`  generation ${d.generation}  txid ${d.txid}`);
    for (const r of d.replicas) {
      const lag = r.lagSeconds > 0 ? `lag ${formatDuration(r.lagSeconds * 1000)}` : 'caught up';
      out.push(`  ${r.url}  txid ${r.txid}  ${lag}  ${r.healthy ? 'healthy' : 'UNHEALTHY'}`);
    }
  }
  return out.join('\n') + '\n';
}
