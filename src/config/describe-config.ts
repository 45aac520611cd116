import type { AgentConfig, DbSpec } from './config-types.js';
import { formatSetting } from './setting-kinds.js';
import { SETTINGS, type Setting } from './settings-table.js';

/**
 * An AgentConfig as `pitr config check` prints it: every database entry with its effective
 * settings, each under the key a config file would use, durations and sizes in the form it accepts.
 */
export function describeConfig(config: AgentConfig): string {
  const out: string[] = [`config: ${config.source ?? '(command line)'} (valid)`];
  for (const s of scoped('agent')) out.push(`${s.key}: ${agentValue(config, s)}`);
  for (const db of config.dbs) {
    out.push('', `${head(db)}${db.line > 0 ? `  (line ${db.line})` : ''}`);
    if (db.kind === 'dir') out.push(`  pattern: ${db.pattern}`, `  recursive: ${db.recursive}`);
    out.push(`  state-dir: ${db.stateDir ?? '(default)'}`);
    for (const s of scoped('db')) if (!s.hidden || value(db.settings, s) !== undefined) out.push(`  ${s.key}: ${show(s, value(db.settings, s))}`);
    const replicas = db.replicas.length > 0 ? db.replicas : [{ url: `${db.kind === 'path' ? db.path : `${db.dir}/{name}`}-replica (default)`, settings: db.settings }];
    for (const r of replicas) {
      out.push(`  replica ${r.url}`);
      for (const s of scoped('replica')) out.push(`    ${s.key}: ${show(s, value(r.settings, s))}`);
    }
  }
  return `${out.join('\n')}\n`;
}

function head(db: DbSpec): string {
  return db.kind === 'path' ? `db ${db.path}` : `dir ${db.dir}`;
}

function scoped(scope: Setting['scope']): Setting[] {
  return SETTINGS.filter((s) => s.scope === scope);
}

function value(settings: object, s: Setting): unknown {
  return (settings as Record<string, unknown>)[s.field];
}

function agentValue(config: AgentConfig, s: Setting): string {
  const v = value(config, s);
  if (v !== undefined) return show(s, v);
  if (s.key === 'log-format') return '(pretty on a terminal, json otherwise)';
  if (s.key === 'socket') return '(default)';
  return '-';
}

/** A default as --help shows it (24h, not 1d); any other value in the exact form the key accepts. */
function show(s: Setting, v: unknown): string {
  return v === s.default && s.defaultText !== undefined ? s.defaultText : formatSetting(s.kind, v);
}
