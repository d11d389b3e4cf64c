// This node's votes in subnet claims (the acceptor's side of the quorum, docs/mesh.md): which
// node each subnet was granted to. A grant never expires with time, only when its holder moves
// to another subnet (a newer version of its own record says so) or gives it back, or when
// `knitctl node rm` removes the holder: so a partitioned or dead node keeps its subnet and nobody
// can be granted it meanwhile. Written to disk before the vote is sent, so a restarted knitd
// never votes twice for one subnet.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Grant {
  holder: string;
  /** The holder's version reserved for the claim: its records newer than this may move it. */
  v: number;
}

export type Vote = { ok: true } | { ok: false; holder: string };

export class Grants {
  readonly map = new Map<string, Grant>();

  constructor(private readonly file: string | null) {
    if (!file) return;
    try {
      const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Grant>;
      for (const [s, g] of Object.entries(raw)) if (g && typeof g.holder === 'string' && typeof g.v === 'number') this.map.set(s, g);
    } catch { /* none yet */ }
  }

  /** Votes for `holder` holding `subnet`; `removed(name, v)`: whether node rm covers that grant. */
  request(subnet: string, holder: string, v: number, removed: (name: string, v: number) => boolean): Vote {
    const g = this.map.get(subnet);
    if (g && g.holder !== holder && !removed(g.holder, g.v)) return { ok: false, holder: g.holder };
    if (!g || g.holder !== holder || g.v < v) { this.map.set(subnet, { holder, v: Math.max(v, g?.holder === holder ? g.v : 0) }); this.save(); }
    return { ok: true };
  }

  /** The holder gives a grant back (its claim failed): only its own. */
  release(subnet: string, holder: string, v: number): void {
    const g = this.map.get(subnet);
    if (g && g.holder === holder && g.v <= v) { this.map.delete(subnet); this.save(); }
  }

  /** A newer record of `holder` says it holds `subnet` (or none): its grants for others go. */
  holderMoved(holder: string, v: number, subnet: string | null): void {
    let changed = false;
    for (const [s, g] of this.map) if (g.holder === holder && g.v < v && s !== subnet) { this.map.delete(s); changed = true; }
    if (changed) this.save();
  }

  /** node rm: every grant of the node up to that version goes. */
  removed(holder: string, upTo: number): void {
    let changed = false;
    for (const [s, g] of this.map) if (g.holder === holder && g.v <= upTo) { this.map.delete(s); changed = true; }
    if (changed) this.save();
  }

  private save(): void {
    if (!this.file) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.map)));
    fs.renameSync(tmp, this.file);
  }
}
