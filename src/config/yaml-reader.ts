import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node, type YAMLMap, type YAMLSeq } from 'yaml';
import { isPitrError, PitrError } from '../errors.js';
import { nearest } from './did-you-mean.js';
import { expandEnv } from './env-expand.js';
import { acceptedForm, parseSettingText, type SettingKind } from './setting-kinds.js';
import { SETTINGS, type Setting } from './settings-table.js';

/** A key of a mapping with where it is: messages name the line. */
export interface Entry {
  key: string;
  keyNode: Node;
  value: Node | null;
}

/**
 * A parsed config file and the helpers that read its nodes: every value arrives as text (the
 * failsafe schema), goes through env expansion, then through its setting's own parser, so that
 * `sync-interval: ${SYNC}` and `sync-interval: 1s` are read alike, and `on`/`no` are never guessed.
 */
export class YamlReader {
  readonly doc: Document;
  private readonly lines = new LineCounter();

  constructor(
    readonly file: string,
    text: string,
    private readonly env: NodeJS.ProcessEnv | undefined,
  ) {
    this.doc = parseDocument(text, { lineCounter: this.lines, schema: 'failsafe', uniqueKeys: true, prettyErrors: false });
    const err = this.doc.errors[0];
    if (err) {
      const line = this.lines.linePos(err.pos[0]).line;
      const what =
        err.code === 'DUPLICATE_KEY'
          ? `key "${text.slice(err.pos[0]).split(/[:\n]/)[0]?.trim()}" appears twice in the same mapping`
          : err.message.split('\n')[0]?.replace(/ at line \d+, column \d+:?$/, '');
      const hint = err.code === 'DUPLICATE_KEY' ? 'keep one of them' : 'fix the YAML syntax at that line (indentation, quotes, a missing ":")';
      throw new PitrError('CONFIG_INVALID', `${this.file}:${line}: not valid YAML: ${what}`, hint);
    }
  }

  line(node: Node | null | undefined): number {
    const offset = node?.range?.[0];
    return offset === undefined ? 0 : this.lines.linePos(offset).line;
  }

  fail(node: Node | null | undefined, message: string, hint?: string): PitrError {
    const line = this.line(node);
    return new PitrError('CONFIG_INVALID', `${this.file}${line > 0 ? `:${line}` : ''}: ${message}`, hint);
  }

  resolve(node: unknown): Node | null {
    if (isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return (node as Node | null) ?? null;
  }

  map(node: Node | null, what: string, hint?: string): YAMLMap {
    if (!isMap(node)) throw this.fail(node, `${what} must be a mapping (key: value lines)`, hint);
    return node;
  }

  seq(node: Node | null, what: string, hint?: string): YAMLSeq {
    if (!isSeq(node)) throw this.fail(node, `${what} must be a list (lines starting with "- ")`, hint);
    return node;
  }

  /** A scalar's text, env-expanded; refuses a missing value, a mapping or a list. */
  text(node: Node | null, what: string, accepted: string): string {
    if (!isScalar(node) || (node.type === 'PLAIN' && node.value === '')) {
      throw this.fail(node, `${what} ${isScalar(node) || node === null ? 'has no value' : 'must be a single value'}`, `expected ${accepted}`);
    }
    const raw = String(node.value);
    if (this.env === undefined) return raw;
    const r = expandEnv(raw, this.env);
    if (r.ok) return r.value;
    if ('missing' in r) {
      throw this.fail(node, `${what}: environment variable ${r.missing} is not set`, `set ${r.missing}, give a default with \${${r.missing}:-value}, write $$ for a literal $, or run with --no-expand-env`);
    }
    throw this.fail(node, `${what}: "${r.malformed}" is not a variable reference`, 'write ${NAME}, $NAME or ${NAME:-default}, and $$ for a literal $');
  }

  /**
   * The entries of a mapping, every key checked against `allowed`: an unknown key is refused with
   * its line and the nearest allowed key; a known one in the wrong place says where it belongs.
   */
  entries(map: YAMLMap, allowed: readonly string[], where: string): Map<string, Entry> {
    const out = new Map<string, Entry>();
    for (const pair of map.items) {
      const keyNode = pair.key as Node;
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string') throw this.fail(keyNode, `a key ${where} must be a plain name`);
      const key = keyNode.value;
      if (!allowed.includes(key)) throw this.unknownKey(keyNode, key, allowed, where);
      out.set(key, { key, keyNode, value: this.resolve(pair.value) });
    }
    return out;
  }

  private unknownKey(node: Node, key: string, allowed: readonly string[], where: string): PitrError {
    const known = SETTINGS.find((s) => s.key === key);
    if (known) return this.fail(node, `"${key}" is not allowed ${where}`, placeOf(known));
    if (['path', 'dir', 'pattern', 'recursive', 'replicas'].includes(key)) return this.fail(node, `"${key}" is not allowed ${where}`, `${key} belongs in a dbs: entry`);
    if (key === 'dbs') return this.fail(node, `"dbs" is not allowed ${where}`, 'dbs: is a top-level key');
    if (key === 'url') return this.fail(node, `"url" is not allowed ${where}`, 'url belongs in a replicas: item');
    const guess = nearest(key, allowed);
    return this.fail(node, `unknown key "${key}" ${where}`, guess ? `did you mean "${guess}"?` : `keys allowed here: ${allowed.join(', ')}`);
  }

  /** A setting's value: env-expanded text through the setting's parser, errors naming the key and line. */
  setting(s: Setting, node: Node | null): unknown {
    if (s.kind === 'command' && isSeq(node)) {
      const argv = node.items.map((item) => this.text(this.resolve(item), `${s.key} argument`, 'a string'));
      if (argv.length === 0) throw this.fail(node, `${s.key} is an empty list`, 'give the command and its arguments, or a string for /bin/sh');
      return argv;
    }
    const text = this.text(node, s.key, acceptedForm(s.kind, { ...(s.choices && { choices: s.choices }), ...(s.range && { range: s.range }) }));
    try {
      return parseSettingText(s.kind, text, s.key, { ...(s.choices && { choices: s.choices }), ...(s.range && { range: s.range }) });
    } catch (err) {
      if (isPitrError(err)) throw this.fail(node, err.message, err.hint);
      throw err;
    }
  }

  /** A structural value (path, pattern, recursive, url) by kind. */
  value(kind: SettingKind, node: Node | null, what: string): unknown {
    return this.setting({ key: what, flag: '', kind, scope: 'entry', field: 'stateDir', help: '' }, node);
  }
}

function placeOf(s: Setting): string {
  switch (s.scope) {
    case 'agent':
      return `${s.key} is an agent setting: write it at the top level`;
    case 'db':
      return `${s.key} is a database setting: write it at the top level (for every database) or in a dbs: entry`;
    case 'replica':
      return `${s.key} may be written at the top level, in a dbs: entry or in a replicas: item`;
    case 'entry':
      return `${s.key} is set per database: write it in a dbs: entry`;
    case 'cli':
      return `${s.flag.replace(/ .*/, '')} is a command-line flag, not a config file key`;
  }
}
