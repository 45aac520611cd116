import { resolve } from 'node:path';
import type { Node } from 'yaml';
import { isPitrError, PitrError } from '../errors.js';
import { parseReplicaUrl } from '../storage/open-storage.js';
import type { DbSpec } from './config-types.js';
import type { YamlReader } from './yaml-reader.js';

/**
 * {name} stands for each database a `dir:` entry finds. There it is required in what must differ
 * per database (replica URLs, state-dir: without it every database would write the same replica),
 * and anywhere else it is refused, as is any other {placeholder}: a typo must not become a literal
 * directory named "{nmae}".
 */
export function checkTemplate(r: YamlReader, node: Node | null, text: string, what: string, mode: 'require' | 'refuse'): void {
  const other = /\{(?!name\})[^}]*\}/.exec(text);
  if (other) throw r.fail(node, `${what} "${text}" holds ${other[0]}`, 'the only placeholder is {name} (each database of a dir: entry)');
  const has = text.includes('{name}');
  if (mode === 'refuse' && has) {
    throw r.fail(node, `${what} "${text}" holds {name}`, what === 'dir' || what === 'path' ? '{name} is filled from the databases a dir: entry finds; write the path itself' : '{name} stands for each database of a dir: entry; a path: entry names one database, so write its replica out');
  }
  if (mode === 'require' && !has) {
    throw r.fail(node, `${what} "${text}" of a dir: entry has no {name}`, `every database in the directory would use the same one: put {name} in it, e.g. ${what === 'state-dir' ? '/var/lib/pitr/{name}' : 's3://bucket/tenants/{name}'}`);
  }
}

/**
 * A replica as written, checked as a URL (the same parser the agent uses, so a typo in a scheme
 * or an S3 option fails here with its line), a bare relative path made absolute against `base`.
 */
export function replicaLocation(r: YamlReader, node: Node | null, text: string, base: string): string {
  let parsed;
  try {
    parsed = parseReplicaUrl(text.replaceAll('{name}', 'name'), base);
  } catch (err) {
    if (isPitrError(err)) throw r.fail(node, err.message, err.hint);
    throw err;
  }
  if (parsed.scheme === 'file' && !/^file:/i.test(text)) return resolve(base, text);
  return text;
}

/** Two entries for one database, or two databases writing one replica, would fight over it. */
export function checkDbEntries(dbs: DbSpec[], file: string): void {
  const seen = new Map<string, number>();
  const claim = (what: string, id: string, line: number): void => {
    const first = seen.get(id);
    if (first !== undefined) {
      throw new PitrError('CONFIG_INVALID', `${file}:${line}: ${what} is also in the dbs: entry at line ${first}`, 'give each database, and each replica, one entry');
    }
    seen.set(id, line);
  };
  for (const db of dbs) {
    if (db.kind === 'path') claim(`database ${db.path}`, `db:${db.path}`, db.line);
    else claim(`directory ${db.dir} (pattern ${db.pattern})`, `dir:${db.dir}:${db.pattern}`, db.line);
    for (const rep of db.replicas) {
      // A template is compared as written: two dir: entries sharing one would collide on a name.
      claim(`replica ${rep.url}`, `replica:${db.kind === 'dir' ? rep.url : parseReplicaUrl(rep.url).url}`, db.line);
    }
  }
}
