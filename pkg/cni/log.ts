// Plugin logging. stdout belongs to the CNI protocol, so logs go to stderr (level from
// KNIT_LOG_LEVEL, default warn) and, optionally, JSON lines to a file (KNIT_LOG_FILE or the
// config's `logFile`). A disabled level costs one comparison; nothing is formatted.
import { appendFileSync } from 'node:fs';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 99 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  /** True when a message at `level` would be written anywhere (guard for costly fields). */
  enabled(level: Level): boolean;
  /** A logger that adds `fields` to every record. */
  child(fields: Fields): Logger;
}

export interface LoggerOptions {
  /** stderr level; default from KNIT_LOG_LEVEL, else warn. */
  level?: Level;
  /** JSON-lines file; default KNIT_LOG_FILE. */
  file?: string;
  /** File level; default KNIT_LOG_FILE_LEVEL, else KNIT_LOG_LEVEL, else info. */
  fileLevel?: Level;
  /** Fields on every record (plugin, command, containerId ...). */
  fields?: Fields;
  /** Where stderr text goes (tests). */
  stderr?: (line: string) => void;
  env?: Record<string, string | undefined>;
}

function asLevel(v: string | undefined, dflt: Level): Level {
  const l = v?.toLowerCase();
  return l && l in RANK ? (l as Level) : dflt;
}

const SECRET_KEY = /(password|passwd|secret|token|credential|cert|key)(file|data|pem)?$/i;

/** Deep copy with the values of secret-looking keys (password, token, key, cert ...) blanked. */
export function redact<T>(v: T, depth = 0): T {
  if (depth > 20 || typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map((x) => redact(x, depth + 1)) as T;
  if (Buffer.isBuffer(v)) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    out[k] = SECRET_KEY.test(k) && x !== undefined && x !== null && x !== '' ? '[redacted]' : redact(x, depth + 1);
  }
  return out as T;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const env = opts.env ?? process.env;
  const errRank = RANK[opts.level ?? asLevel(env.KNIT_LOG_LEVEL, 'warn')];
  const file = opts.file ?? (env.KNIT_LOG_FILE || undefined);
  const fileRank = file ? RANK[opts.fileLevel ?? asLevel(env.KNIT_LOG_FILE_LEVEL ?? env.KNIT_LOG_LEVEL, 'info')] : RANK.silent;
  const min = Math.min(errRank, fileRank);
  const write = opts.stderr ?? ((line: string) => { process.stderr.write(line); });
  const make = (base: Fields): Logger => {
    const emit = (level: Level, msg: string, fields?: Fields): void => {
      const r = RANK[level];
      if (r < min) return;
      const all = fields ? redact({ ...base, ...fields }) : base;
      if (r >= errRank) {
        const extra = Object.keys(all).length ? ' ' + safeJson(all) : '';
        write(`knit ${level}: ${msg}${extra}\n`);
      }
      if (r >= fileRank && file) {
        try {
          appendFileSync(file, safeJson({ time: new Date().toISOString(), level, msg, ...all }) + '\n');
        } catch {
          // A broken log file must never fail the CNI operation.
        }
      }
    };
    return {
      debug: (m, f) => emit('debug', m, f),
      info: (m, f) => emit('info', m, f),
      warn: (m, f) => emit('warn', m, f),
      error: (m, f) => emit('error', m, f),
      enabled: (l) => RANK[l] >= min,
      child: (f) => make({ ...base, ...redact(f) }),
    };
  };
  return make(opts.fields ? redact(opts.fields) : {});
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
  } catch {
    return '"[unserialisable]"';
  }
}

/** A logger that drops everything. */
export const nullLogger: Logger = {
  debug() {}, info() {}, warn() {}, error() {},
  enabled: () => false,
  child: () => nullLogger,
};
