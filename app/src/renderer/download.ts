// Save an export (report/export, audit/export) as a file: a Blob and an <a download> click.
import type { z } from 'zod';
import type { Export } from '../../../protocol/console.js';

export function downloadExport(x: z.infer<typeof Export>): void {
  const body = x.base64 ? Uint8Array.from(atob(x.content), (c) => c.charCodeAt(0)) : x.content;
  const url = URL.createObjectURL(new Blob([body], { type: x.mime }));
  const a = document.createElement('a');
  a.href = url;
  a.download = x.filename.replace(/[/\\]/g, '_');
  a.rel = 'noopener';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
