// PDF export in browser mode: the report's self-contained HTML printed by headless Chromium
// (the desktop app uses Electron's printToPDF instead).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function findChromium(): string | null {
  for (const p of [process.env.HITLESS_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (p && existsSync(p)) return p;
  return null;
}

export function chromiumPdf(bin: string): (html: string) => Promise<Buffer> {
  return async (html) => {
    const dir = mkdtempSync(join(tmpdir(), 'hitless-pdf-'));
    try {
      writeFileSync(join(dir, 'report.html'), html);
      const args = ['--headless', '--disable-gpu', '--no-pdf-header-footer', `--user-data-dir=${join(dir, 'profile')}`, `--print-to-pdf=${join(dir, 'report.pdf')}`, `file://${join(dir, 'report.html')}`];
      // Chromium refuses its sandbox as root; the page is our own static report, without script
      if (process.getuid?.() === 0) args.unshift('--no-sandbox');
      await new Promise<void>((res, rej) => execFile(bin, args, { timeout: 60_000 }, (e, _o, err) => (e ? rej(new Error(`chromium --print-to-pdf failed: ${err.trim().split('\n').at(-1) ?? e.message}`)) : res())));
      return readFileSync(join(dir, 'report.pdf'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
