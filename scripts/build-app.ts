// Builds the console's browser-side code with esbuild: the renderer (React) into
// app/dist/renderer (index.html, app.js, app.css), and for the desktop app the Electron main
// process and preload into app/dist/electron (CommonJS; the preload bundled whole, since a
// sandboxed preload may require nothing but electron).
import { copyFileSync, mkdirSync } from 'node:fs';
import { build } from 'esbuild';

const out = 'app/dist';
mkdirSync(`${out}/renderer`, { recursive: true });
await build({
  entryPoints: { app: 'app/src/renderer/main.tsx' },
  bundle: true,
  format: 'esm',
  target: 'chrome120',
  outdir: `${out}/renderer`,
  loader: { '.css': 'css' },
  minify: true,
  sourcemap: false,
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'warning',
});
copyFileSync('app/src/renderer/index.html', `${out}/renderer/index.html`);
await build({
  entryPoints: { main: 'app/src/electron/main.ts', preload: 'app/src/electron/preload.ts' },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  outdir: `${out}/electron`,
  outExtension: { '.js': '.cjs' },
  external: ['electron'],
  packages: 'external',
  logLevel: 'warning',
});
console.error(`built ${out}/renderer and ${out}/electron`);
