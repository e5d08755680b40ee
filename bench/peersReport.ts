// The peers benchmark's visual report: one self-contained HTML page (inline SVG, no script, no
// server) with the throughput of each forwarder as bars (median, whisker min..max over the
// runs) and every break of each upgrade scenario on one log-scale axis (a dot per switch, ticks
// at p50 and p99). Pure: returns the page.

export interface PeersData {
  when: string;
  machine: string;
  quick: boolean;
  mpps: Record<string, { runs: number[]; p50: number }>;
  gaps: Record<string, { label: string; gaps_ms: number[]; p50: number; p99: number; max: number; lost: number; n: number }>;
  background_p99_ms: number;
  goals: { text: string; met: boolean }[];
}

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function bars(mpps: PeersData['mpps']): string {
  const names = Object.keys(mpps);
  const top = Math.max(0.001, ...names.flatMap((n) => mpps[n]!.runs));
  const W = 520;
  const rowH = 34;
  const x = (v: number) => 130 + (v / top) * (W - 160);
  const rows = names
    .map((n, i) => {
      const m = mpps[n]!;
      const y = 10 + i * rowH;
      const lo = Math.min(...m.runs);
      const hi = Math.max(...m.runs);
      return `<text x="0" y="${y + 16}" font-size="13">${esc(n)}</text>
<rect x="130" y="${y}" width="${(x(m.p50) - 130).toFixed(1)}" height="22" fill="${n === 'hitless' ? '#2e86c1' : '#95a5a6'}"/>
<line x1="${x(lo).toFixed(1)}" x2="${x(hi).toFixed(1)}" y1="${y + 11}" y2="${y + 11}" stroke="#222"/>
<text x="${(x(hi) + 6).toFixed(1)}" y="${y + 16}" font-size="12">${m.p50.toFixed(2)} Mpps</text>`;
    })
    .join('');
  return `<svg width="${W + 80}" height="${names.length * rowH + 20}" role="img" aria-label="throughput">${rows}</svg>`;
}

function strips(gaps: PeersData['gaps']): string {
  const keys = Object.keys(gaps);
  const all = keys.flatMap((k) => gaps[k]!.gaps_ms).filter((g) => g > 0);
  const lo = Math.pow(10, Math.floor(Math.log10(Math.max(0.01, Math.min(...all, 0.1)))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...all, 10))));
  const L = 170;
  const W = 560;
  const rowH = 40;
  const x = (v: number) => L + ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * W;
  const decades: string[] = [];
  for (let d = lo; d <= hi * 1.0001; d *= 10)
    decades.push(`<line x1="${x(d).toFixed(1)}" x2="${x(d).toFixed(1)}" y1="0" y2="${keys.length * rowH}" stroke="#ddd"/><text x="${x(d).toFixed(1)}" y="${keys.length * rowH + 14}" font-size="11" text-anchor="middle">${d >= 1 ? d.toFixed(0) : d} ms</text>`);
  const rows = keys
    .map((k, i) => {
      const g = gaps[k]!;
      const y = i * rowH + 20;
      const dots = g.gaps_ms.map((v, j) => `<circle cx="${x(v).toFixed(1)}" cy="${(y + ((j % 5) - 2) * 2.5).toFixed(1)}" r="2.5" fill="#2e86c1" fill-opacity="0.55"/>`).join('');
      const tick = (v: number, c: string) => `<line x1="${x(v).toFixed(1)}" x2="${x(v).toFixed(1)}" y1="${y - 12}" y2="${y + 12}" stroke="${c}" stroke-width="2"/>`;
      return `<text x="0" y="${y + 4}" font-size="13">${esc(g.label)}</text>${dots}${tick(g.p50, '#222')}${tick(g.p99, '#c0392b')}`;
    })
    .join('');
  return `<svg width="${L + W + 40}" height="${keys.length * rowH + 24}" role="img" aria-label="break per switch, log scale">${decades.join('')}${rows}</svg>`;
}

export function renderPeers(d: PeersData): string {
  const tr = (cells: (string | number)[]) => `<tr>${cells.map((c) => `<td>${esc(String(c))}</td>`).join('')}</tr>`;
  return `<!doctype html><html><head><meta charset="utf-8"><title>Hitless vs peers — ${esc(d.when)}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#111;max-width:960px}table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}th{background:#eee}td:first-child{text-align:left}.ok{color:#1e8449}.no{color:#c0392b}</style></head><body>
<h1>Hitless vs its peers, one run</h1>
<p>${esc(d.when)}; ${esc(d.machine)}${d.quick ? '; --quick' : ''}. Same topology for every forwarder: probe VMs (DPDK virtio_user) ↔ switch ↔ probe VMs over vhost-user, one forwarding core, 64-byte frames.</p>
<h2>Goals</h2><ul>${d.goals.map((g) => `<li class="${g.met ? 'ok' : 'no'}">${g.met ? 'met' : 'NOT met'}: ${esc(g.text)}</li>`).join('')}</ul>
<h2>Throughput (Mpps received by the VMs; bar = median, line = min..max over the runs)</h2>${bars(d.mpps)}
<h2>Break per switched VM (ms, log scale; black = p50, red = p99)</h2>${strips(d.gaps)}
<table><tr><th>scenario</th><th>switches</th><th>p50 ms</th><th>p99 ms</th><th>max ms</th><th>lost frames</th></tr>${Object.values(d.gaps).map((g) => tr([g.label, g.n, g.p50, g.p99, g.max, g.lost])).join('')}</table>
<p>Background receive gaps of the same machine in the handoff run (no switch near): p99 ${d.background_p99_ms} ms — breaks below that are indistinguishable from scheduler noise on these 2 shared cores.</p>
</body></html>
`;
}
