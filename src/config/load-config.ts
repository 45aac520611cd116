import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Node } from 'yaml';
import { errnoCode, PitrError } from '../errors.js';
import type { AgentConfig, DbSettings, DbSpec, ReplicaSettings, ReplicaSpec } from './config-types.js';
import { DEFAULT_DIR_PATTERN, defaultDbSettings, defaultDirStateDir, defaultPathStateDir } from './defaults.js';
import { checkDbEntries, checkTemplate, replicaLocation } from './entry-rules.js';
import { ENTRY_KEYS, REPLICA_KEYS, settingsAt, SETTINGS, type Setting } from './settings-table.js';
import { YamlReader, type Entry } from './yaml-reader.js';

export interface LoadOptions {
  /** Expand ${VAR}, $VAR and ${VAR:-default} in values (off: --no-expand-env). */
  expandEnv: boolean;
  env: NodeJS.ProcessEnv;
}

const EXAMPLE = 'e.g.\n    dbs:\n      - path: /data/app.db\n        replicas:\n          - url: s3://bucket/app';

/**
 * Read and check an agent config file (YAML). Throws CONFIG_NOT_FOUND when it is missing and
 * CONFIG_INVALID, naming the file, line and key, for anything wrong in it.
 */
export function loadConfig(file: string, opts: LoadOptions): AgentConfig {
  const abs = resolve(file);
  let text: string;
  try {
    text = readFileSync(abs, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') {
      throw new PitrError('CONFIG_NOT_FOUND', `config file ${file} not found`, 'check the path given by --config or $PITR_CONFIG; `pitr config check FILE` checks a config file', { cause: err });
    }
    if (code === 'EISDIR') throw new PitrError('CONFIG_INVALID', `config file ${file} is a directory`, 'give the YAML file itself', { cause: err });
    throw new PitrError('CONFIG_INVALID', `cannot read config file ${file}: ${(err as Error).message}`, 'check its permissions', { cause: err });
  }
  return parseConfig(text, { ...opts, file, source: abs });
}

/**
 * The pure half of loadConfig: `text` as the file `file` (named in messages) at absolute path
 * `source` (relative paths resolve against its directory).
 */
export function parseConfig(text: string, opts: LoadOptions & { file: string; source: string }): AgentConfig {
  const r = new YamlReader(opts.file, text, opts.expandEnv ? opts.env : undefined);
  const base = dirname(opts.source);
  if (r.doc.contents === null) throw r.fail(null, 'the config file is empty', `it needs at least a dbs: list, ${EXAMPLE}`);
  const top = r.entries(r.map(r.resolve(r.doc.contents), 'the config file', EXAMPLE), [...settingsAt('top').map((s) => s.key), 'dbs'], 'at the top level');
  const globals = readSettings(r, top, settingsAt('top'));

  const dbsEntry = top.get('dbs');
  if (!dbsEntry) throw r.fail(null, 'no dbs: list', `list the databases to replicate, ${EXAMPLE}`);
  const dbsSeq = r.seq(dbsEntry.value, 'dbs', EXAMPLE);
  if (dbsSeq.items.length === 0) throw r.fail(dbsEntry.keyNode, 'dbs: is empty', `list at least one database, ${EXAMPLE}`);
  const inherited = { ...defaultDbSettings(), ...pick(globals, dbFields()) } as DbSettings;
  const dbs = dbsSeq.items.map((item) => readDb(r, r.resolve(item), inherited, base));
  checkDbEntries(dbs, opts.file);

  const agent = pick(globals, agentFields()) as Partial<AgentConfig>;
  return {
    source: opts.source,
    listen: agent.listen,
    socket: agent.socket === undefined ? undefined : resolve(base, agent.socket),
    exec: agent.exec,
    restoreIfMissing: agent.restoreIfMissing ?? false,
    logFormat: agent.logFormat,
    logLevel: agent.logLevel ?? (defaultOf('log-level') as AgentConfig['logLevel']),
    nice: agent.nice ?? (defaultOf('nice') as number),
    dbs,
  };
}

function readDb(r: YamlReader, node: Node | null, inherited: DbSettings, base: string): DbSpec {
  const map = r.map(node, 'a dbs: entry', `each entry names one database (path:) or a directory of them (dir:), ${EXAMPLE}`);
  const where = `in the dbs: entry at line ${r.line(map)}`;
  const keys = r.entries(map, [...settingsAt('db').map((s) => s.key), ...ENTRY_KEYS], where);
  const path = keys.get('path');
  const dir = keys.get('dir');
  if (path && dir) throw r.fail(dir.keyNode, 'a dbs: entry has both path and dir', 'give path: for one database, or dir: for every database in a directory, in separate entries');
  if (!path && !dir) throw r.fail(map, 'a dbs: entry has neither path nor dir', 'give path: /data/app.db for one database, or dir: /data/tenants for every database in a directory');
  if (path) {
    for (const k of ['pattern', 'recursive'] as const) {
      const e = keys.get(k);
      if (e) throw r.fail(e.keyNode, `"${k}" applies to dir: entries only`, `remove it, or use dir: instead of path: to replicate every matching database in a directory`);
    }
  }
  const settings = { ...inherited, ...pick(readSettings(r, keys, settingsAt('db')), dbFields()) } as DbSettings;
  const line = r.line(map);
  const stateDirEntry = keys.get('state-dir');
  const stateDirText = stateDirEntry ? (r.value('string', stateDirEntry.value, 'state-dir') as string) : undefined;
  const kind = path ? 'path' : 'dir';
  if (stateDirEntry && stateDirText !== undefined) checkTemplate(r, stateDirEntry.value, stateDirText, 'state-dir', kind === 'dir' ? 'require' : 'refuse');
  const replicas = readReplicas(r, keys.get('replicas'), settings, base, kind);

  if (path) {
    const text = r.value('string', path.value, 'path') as string;
    checkTemplate(r, path.value, text, 'path', 'refuse');
    const abs = resolve(base, text);
    return { kind: 'path', path: abs, stateDir: stateDirText === undefined ? defaultPathStateDir(abs) : resolve(base, stateDirText), replicas, settings, line };
  }
  const dirEntry = dir as Entry;
  const text = r.value('string', dirEntry.value, 'dir') as string;
  checkTemplate(r, dirEntry.value, text, 'dir', 'refuse');
  const abs = resolve(base, text);
  const patternEntry = keys.get('pattern');
  const pattern = patternEntry ? (r.value('string', patternEntry.value, 'pattern') as string) : DEFAULT_DIR_PATTERN;
  if (pattern.includes('/')) throw r.fail(patternEntry?.value, `pattern "${pattern}" holds a "/"`, 'the pattern matches file names; set recursive: true to look in subdirectories');
  const recursiveEntry = keys.get('recursive');
  const recursive = recursiveEntry ? (r.value('bool', recursiveEntry.value, 'recursive') as boolean) : false;
  return { kind: 'dir', dir: abs, pattern, recursive, stateDir: stateDirText === undefined ? defaultDirStateDir(abs) : resolve(base, stateDirText), replicas, settings, line };
}

function readReplicas(r: YamlReader, entry: Entry | undefined, db: DbSettings, base: string, kind: 'path' | 'dir'): ReplicaSpec[] {
  if (!entry) return [];
  const seq = r.seq(entry.value, 'replicas', 'e.g.\n    replicas:\n      - url: s3://bucket/app\n      - /backups/app');
  const inherited = pick(db as unknown as Record<string, unknown>, replicaFields()) as unknown as ReplicaSettings;
  return seq.items.map((raw) => {
    const item = r.resolve(raw);
    let urlNode: Node | null = item;
    let own: Record<string, unknown> = {};
    if (item !== null && 'items' in item) {
      const keys = r.entries(r.map(item, 'a replicas: item'), [...settingsAt('replica').map((s) => s.key), ...REPLICA_KEYS], `in the replicas: item at line ${r.line(item)}`);
      const url = keys.get('url');
      if (!url) throw r.fail(item, 'a replicas: item has no url', 'give url: s3://bucket/prefix, file:///path or a directory path');
      urlNode = url.value;
      own = readSettings(r, keys, settingsAt('replica'));
    }
    const text = r.value('string', urlNode, 'url') as string;
    checkTemplate(r, urlNode, text, 'replica url', kind === 'dir' ? 'require' : 'refuse');
    return { url: replicaLocation(r, urlNode, text, base), settings: { ...inherited, ...pick(own, replicaFields()) } as ReplicaSettings };
  });
}

/** The settings among `keys`, by field. */
function readSettings(r: YamlReader, keys: Map<string, Entry>, allowed: Setting[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const s of allowed) {
    const e = keys.get(s.key);
    if (e && s.scope !== 'entry') out[s.field] = r.setting(s, e.value);
  }
  return out;
}

function pick(from: Record<string, unknown>, fields: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of fields) if (f in from) out[f] = from[f];
  return out;
}

const fieldsOf = (scopes: string[]): string[] => SETTINGS.filter((s) => scopes.includes(s.scope)).map((s) => s.field);
const dbFields = (): string[] => fieldsOf(['db', 'replica']);
const replicaFields = (): string[] => fieldsOf(['replica']);
const agentFields = (): string[] => fieldsOf(['agent']);
const defaultOf = (key: string): unknown => SETTINGS.find((s) => s.key === key)?.default;
