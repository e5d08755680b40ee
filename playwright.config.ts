// End-to-end tests of the console (e2e/): the renderer in Debian's Chromium through browser
// mode, against a real lab fleet (network namespaces, sshd, agents, DPDK datapaths, probe VMs)
// that the global setup brings up; and the packaged Electron shell where an Electron binary
// exists. Screenshots go to e2e/results/.
import { defineConfig } from '@playwright/test';

const root = process.getuid?.() === 0;

export default defineConfig({
  testDir: 'e2e',
  outputDir: 'e2e/results/artifacts',
  timeout: 240_000,
  expect: { timeout: 30_000 },
  workers: 1,
  fullyParallel: false,
  forbidOnly: true,
  reporter: [['list']],
  globalSetup: './e2e/globalSetup.ts',
  use: {
    browserName: 'chromium',
    launchOptions: { executablePath: process.env.HITLESS_CHROMIUM ?? '/usr/bin/chromium', args: root ? ['--no-sandbox'] : [] },
    viewport: { width: 1440, height: 900 },
    acceptDownloads: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
  },
});
