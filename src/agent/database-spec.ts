import { join } from 'node:path';
import type { DbSettings, DbSpec } from '../config/config-types.js';
import { DEFAULT_LEASE_PERIOD_MS } from '../config/defaults.js';
import type { DatabaseSpec } from '../replicate/open-database.js';
import { fillTemplate, nameOf } from './dir-discovery.js';

/**
 * Requests per minute that idle replicas may cost the agent in heartbeats and in lease renewals,
 * each: with many databases, their intervals stretch so that the total stays about this (1,000
 * idle replicas at the 1 min default would otherwise be 1,000 PUTs a minute, plus 6,000 renewals).
 */
export const IDLE_REQUESTS_PER_MIN = 100;
/** The longest lease period the stretching gives: another host's takeover waits up to this. */
const MAX_STRETCHED_LEASE_MS = 30 * 60_000;

/**
 * What one database of a config entry runs with: its templates filled ({name} of a `dir` entry),
 * its state directory, and its idle costs scaled to `replicas`, the number of replicas the agent
 * holds. Pure.
 */
export function databaseSpec(dbPath: string, spec: DbSpec, replicas: number): DatabaseSpec {
  const name = spec.kind === 'dir' ? nameOf(spec.dir, dbPath) : '';
  const fill = (s: string): string => (spec.kind === 'dir' ? fillTemplate(s, name) : s);
  const stateDir = spec.stateDir !== undefined ? fill(spec.stateDir) : spec.kind === 'dir' ? join(spec.dir, '.pitr', name) : `${dbPath}-pitr`;
  // A handful of databases keep the configured intervals; past IDLE_REQUESTS_PER_MIN replicas
  // they stretch.
  const minIntervalMs = (replicas * 60_000) / IDLE_REQUESTS_PER_MIN;
  const scale = <T extends { heartbeatIntervalMs: number }>(s: T): T =>
    s.heartbeatIntervalMs > 0 && s.heartbeatIntervalMs < minIntervalMs ? { ...s, heartbeatIntervalMs: minIntervalMs } : s;
  const settings: DbSettings = scale(spec.settings);
  // A lease is renewed three times a period.
  const stretched = 3 * minIntervalMs > DEFAULT_LEASE_PERIOD_MS ? Math.min(3 * minIntervalMs, MAX_STRETCHED_LEASE_MS) : undefined;
  return {
    dbPath,
    stateDir,
    replicas: spec.replicas.map((r) => ({ url: fill(r.url), settings: scale(r.settings) })),
    settings,
    leasePeriodMs: spec.settings.leasePeriodMs ?? stretched,
  };
}

/**
 * The WAL safety-net stat's interval for an agent of `databases` (with a working watcher): 5 s up
 * to 100 databases, then 50 ms per database, at most 60 s. Events drive capture; the stat only
 * bounds how late a lost event makes a pass, and a thousand stats every 5 s were a fifth of an
 * idle agent's CPU.
 */
export function safetyPollMs(databases: number): number {
  return Math.min(60_000, Math.max(5000, databases * 50));
}
