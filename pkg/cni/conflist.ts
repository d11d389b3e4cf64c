// Network configuration lists as a runtime reads them (libcni's LoadConfList): the files of a CNI
// config directory, a .conflist by its `name`, or a single-plugin .conf/.json turned into a list
// of one. What a runtime needs to run a chain; plugins never read these.
import { CniError, Code, show } from './errors';

/** One entry of `plugins`: its `type` and whatever else the plugin reads. */
export type PluginConf = Record<string, unknown> & { type: string };

export interface ConfList {
  name: string;
  cniVersion: string;
  disableCheck: boolean;
  plugins: PluginConf[];
  /** What libcni caches as the attachment's config: the file's bytes (a .conf: the list made of it). */
  bytes: Buffer;
  /** The file it came from, when it came from one. */
  file?: string;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function bad(source: string, key: string, value: unknown, valid: string): CniError {
  return new CniError(Code.InvalidConfig, `${source}: invalid ${key} ${show(value)}: ${valid}`);
}

function pluginOf(p: unknown, source: string, key: string): PluginConf {
  if (!isObj(p)) throw bad(source, key, p, 'a plugin object with a "type"');
  if (typeof p.type !== 'string' || !p.type) throw bad(source, `${key}.type`, p.type, 'the plugin executable name');
  return p as PluginConf;
}

function common(j: Record<string, unknown>, source: string): { name: string; cniVersion: string } {
  if (typeof j.name !== 'string' || !j.name) throw bad(source, 'name', j.name, 'the network name (a non-empty string)');
  if (typeof j.cniVersion !== 'string' || !j.cniVersion) throw bad(source, 'cniVersion', j.cniVersion, 'a version string such as "1.0.0"');
  return { name: j.name, cniVersion: j.cniVersion };
}

function json(bytes: Buffer, source: string): Record<string, unknown> {
  let j: unknown;
  try {
    j = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new CniError(Code.DecodeFailure, `${source}: not JSON: ${(e as Error).message}`);
  }
  if (!isObj(j)) throw bad(source, 'document', j, 'a JSON object');
  return j;
}

/** A conflist document ({name, cniVersion, plugins: [...]}); `source` names it in errors. */
export function parseConfList(bytes: Buffer, source = 'conflist'): ConfList {
  const j = json(bytes, source);
  const c = common(j, source);
  if (!Array.isArray(j.plugins) || !j.plugins.length) throw bad(source, 'plugins', j.plugins, 'a non-empty list of plugin objects');
  const plugins = j.plugins.map((p, i) => pluginOf(p, source, `plugins[${i}]`));
  return { ...c, disableCheck: j.disableCheck === true, plugins, bytes };
}

/** A single-plugin config (.conf) as a list of one, as libcni's ConfListFromConf makes it. */
export function parseConf(bytes: Buffer, source = 'conf'): ConfList {
  const j = json(bytes, source);
  const c = common(j, source);
  const plugin = pluginOf(j, source, 'config');
  const list = { cniVersion: c.cniVersion, name: c.name, plugins: [plugin] };
  return { ...c, disableCheck: false, plugins: [plugin], bytes: Buffer.from(JSON.stringify(list)) };
}

export interface ConfDir {
  /** Every readable list, in libcni's order: .conflist files by name, then .conf/.json files. */
  lists: ConfList[];
  /** Files that are not a usable config, with why (shown when a name is not found). */
  skipped: Array<{ file: string; why: string }>;
}

/** Reads a CNI config directory; a missing directory is an empty one. */
export function readConfDir(dir: string): ConfDir {
  const fs = require('node:fs') as typeof import('node:fs');
  const path = require('node:path') as typeof import('node:path');
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { lists: [], skipped: [] };
    throw e;
  }
  const out: ConfDir = { lists: [], skipped: [] };
  const kinds: Array<[RegExp, typeof parseConfList]> = [[/\.conflist$/, parseConfList], [/\.(conf|json)$/, parseConf]];
  for (const [re, parse] of kinds) {
    for (const n of names.filter((x) => re.test(x))) {
      const file = path.join(dir, n);
      try {
        if (!fs.statSync(file).isFile()) continue;
        out.lists.push({ ...parse(fs.readFileSync(file), file), file });
      } catch (e) {
        out.skipped.push({ file, why: (e as Error).message.replace(`${file}: `, '') });
      }
    }
  }
  return out;
}

/** The first list named `name`, as libcni's LoadConfList picks it; null when none is. */
export function findConfList(d: ConfDir, name: string): ConfList | null {
  return d.lists.find((l) => l.name === name) ?? null;
}
