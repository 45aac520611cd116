/**
 * `${VAR}`, `$VAR` and `${VAR:-default}` in a config value, from the environment; `$$` is a `$`.
 * A `$` before anything else stays as it is. Unset variables without a default are refused rather
 * than read as "": an empty replica URL or retention would mean something else entirely.
 */

export type ExpandResult = { ok: true; value: string } | { ok: false; missing: string } | { ok: false; malformed: string };

const NAME = /[A-Za-z_][A-Za-z0-9_]*/y;

export function expandEnv(text: string, env: NodeJS.ProcessEnv): ExpandResult {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{') {
      const close = text.indexOf('}', i + 2);
      if (close < 0) return { ok: false, malformed: text.slice(i) };
      const body = text.slice(i + 2, close);
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$/s.exec(body);
      if (!m) return { ok: false, malformed: text.slice(i, close + 1) };
      const [, name = '', fallback] = m;
      const value = env[name];
      // As in the shell, `:-` also covers a variable set to "".
      if (value !== undefined && (value !== '' || fallback === undefined)) out += value;
      else if (fallback !== undefined) out += fallback;
      else return { ok: false, missing: name };
      i = close + 1;
      continue;
    }
    NAME.lastIndex = i + 1;
    const m = NAME.exec(text);
    if (!m) {
      out += '$';
      i++;
      continue;
    }
    const value = env[m[0]];
    if (value === undefined) return { ok: false, missing: m[0] };
    out += value;
    i = NAME.lastIndex;
  }
  return { ok: true, value: out };
}
