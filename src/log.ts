/**
 * A small structured logger: JSON lines on stderr (one object per event, for log shippers), or a
 * readable line when stderr is a terminal. Fields are flat; errors become {error, code, hint}.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  child(fields: LogFields): Logger;
}

const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LoggerOptions {
  level?: LogLevel;
  format?: 'json' | 'pretty';
  write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions = {}, base: LogFields = {}): Logger {
  const min = ORDER[opts.level ?? 'info'];
  const format = opts.format ?? (process.stderr.isTTY ? 'pretty' : 'json');
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const emit = (level: LogLevel, msg: string, fields?: LogFields): void => {
    if (ORDER[level] < min) return;
    const all: LogFields = { ...base, ...normalize(fields) };
    if (format === 'json') {
      write(JSON.stringify({ time: new Date().toISOString(), level, msg, ...all }));
    } else {
      const extras = Object.entries(all)
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      write(`${new Date().toISOString().slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extras ? '  ' + extras : ''}`);
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (fields) => createLogger(opts, { ...base, ...fields }),
  };
}

function normalize(fields?: LogFields): LogFields {
  if (!fields) return {};
  const out: LogFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out[k] = v.message;
      const code = (v as { code?: unknown }).code;
      if (code !== undefined) out[`${k}Code`] = code;
      const hint = (v as { hint?: unknown }).hint;
      if (hint !== undefined) out[`${k}Hint`] = hint;
    } else if (v !== undefined) {
      out[k] = v;
    }
  }
  return out;
}

/** A logger that drops everything, for library callers that pass none. */
export const silentLogger: Logger = createLogger({ write: () => {} });
