import { resolve } from 'node:path';
import { PitrError } from '../errors.js';
import { parseReplicaUrl } from '../storage/open-storage.js';
import type { AgentConfig, DbSettings, ReplicaSettings } from './config-types.js';
import { defaultPathStateDir } from './defaults.js';
import { loadConfig } from './load-config.js';
import { flagAttr, SETTINGS, type Setting } from './settings-table.js';

/** commander's parsed options of `pitr replicate` (src/cli/replicate-options.ts), by attribute. */
export type ReplicateFlags = Record<string, unknown>;

/**
 * `pitr replicate DB [REPLICA...]`: the config a file with one `path:` entry would give. Relative
 * paths resolve against `cwd`; values not in `flags` take the table's defaults.
 */
export function configFromFlags(db: string, replicas: string[], flags: ReplicateFlags, cwd: string = process.cwd()): AgentConfig {
  const value = (s: Setting): unknown => flags[flagAttr(s)] ?? s.default ?? (s.kind === 'bool' ? false : undefined);
  const settings: Record<string, unknown> = {};
  for (const s of SETTINGS) if (s.scope === 'db' || s.scope === 'replica') settings[s.field] = value(s);
  const replicaSettings: Record<string, unknown> = {};
  for (const s of SETTINGS) if (s.scope === 'replica') replicaSettings[s.field] = settings[s.field];
  const agent: Record<string, unknown> = {};
  for (const s of SETTINGS) if (s.scope === 'agent') agent[s.field] = value(s);

  const path = resolve(cwd, db);
  const stateDir = flags['stateDir'];
  return {
    source: undefined,
    listen: agent['listen'] as string | undefined,
    socket: agent['socket'] === undefined ? undefined : resolve(cwd, agent['socket'] as string),
    exec: agent['exec'] as string | undefined,
    restoreIfMissing: agent['restoreIfMissing'] as boolean,
    logFormat: agent['logFormat'] as AgentConfig['logFormat'],
    logLevel: agent['logLevel'] as AgentConfig['logLevel'],
    nice: agent['nice'] as number,
    dbs: [
      {
        kind: 'path',
        path,
        stateDir: typeof stateDir === 'string' ? resolve(cwd, stateDir) : defaultPathStateDir(path),
        replicas: replicas.map((url) => ({ url: replicaArg(url, cwd), settings: { ...replicaSettings } as unknown as ReplicaSettings })),
        settings: settings as unknown as DbSettings,
        line: 0,
      },
    ],
  };
}

function replicaArg(url: string, cwd: string): string {
  if (url.includes('{name}')) {
    throw new PitrError('USAGE', `replica ${url} holds {name}`, '{name} stands for each database of a config file\'s dir: entry; on the command line, write the replica out');
  }
  const parsed = parseReplicaUrl(url, cwd);
  return parsed.scheme === 'file' && !/^file:/i.test(url) ? parsed.path : url;
}

/**
 * The config file `pitr replicate` reads: --config, else $PITR_CONFIG when no DB is given;
 * undefined when DB is given (the command line is the config). USAGE when there is neither, or both.
 */
export function configPathFrom(flags: { config?: unknown }, env: NodeJS.ProcessEnv, db: string | undefined): string | undefined {
  const config = typeof flags.config === 'string' ? flags.config : undefined;
  if (config !== undefined && db !== undefined) {
    throw new PitrError('USAGE', `both a database (${db}) and --config ${config} given`, 'give either DB [REPLICA...] or --config FILE (the file lists the databases)');
  }
  if (config !== undefined) return config;
  if (db !== undefined) return undefined;
  const fromEnv = env['PITR_CONFIG'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  throw new PitrError('USAGE', 'no database and no config file given', 'run `pitr replicate DB [REPLICA...]`, or `pitr replicate --config FILE` (or set PITR_CONFIG=FILE)');
}

/**
 * What `pitr replicate` runs: the file configPathFrom names, or the command line. With a file,
 * agent flags given on the command line (`given`: attribute names, see givenFlags in
 * src/cli/replicate-options.ts) override the file's; database and replica flags are refused,
 * since which of the file's entries they should change would be a guess.
 */
export function agentConfigFrom(opts: { db: string | undefined; replicas: string[]; flags: ReplicateFlags; env: NodeJS.ProcessEnv; given: ReadonlySet<string> }): AgentConfig {
  const file = configPathFrom(opts.flags, opts.env, opts.db);
  if (file === undefined) return configFromFlags(opts.db as string, opts.replicas, opts.flags);
  if (opts.replicas.length > 0) throw new PitrError('USAGE', `replica ${opts.replicas[0]} given with a config file`, `list replicas in ${file} under the database's replicas:`);
  for (const s of SETTINGS) {
    if ((s.scope === 'db' || s.scope === 'replica' || s.scope === 'entry') && opts.given.has(flagAttr(s))) {
      throw new PitrError('USAGE', `${s.flag.replace(/ .*/, '')} cannot be combined with a config file`, `set ${s.key}: in ${file}, at the top level for every database or in one dbs: entry`);
    }
  }
  const config = loadConfig(file, { expandEnv: opts.flags['expandEnv'] !== false, env: opts.env });
  const overrides: Record<string, unknown> = {};
  for (const s of SETTINGS) if (s.scope === 'agent' && opts.given.has(flagAttr(s))) overrides[s.field] = opts.flags[flagAttr(s)];
  if (typeof overrides['socket'] === 'string') overrides['socket'] = resolve(overrides['socket']);
  return { ...config, ...overrides } as AgentConfig;
}
