// How the agent runs the host's processes: systemd units only where systemd is PID 1, the agent
// serves the package's root and the package's units are installed; detached processes elsewhere,
// with the reason (host/info reports both).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PACKAGE_ROOT, supervision } from './supervisor.js';

const dir = mkdtempSync(join(tmpdir(), 'hl-supervision-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('supervision: systemd units where systemd runs them, detached processes elsewhere, each with its reason', () => {
  const runDir = join(dir, 'run-systemd-system');
  const unitDir = join(dir, 'units');
  const where = { runDir, unitDirs: [unitDir] };
  assert.deepEqual(supervision(PACKAGE_ROOT, where), { mode: 'detached', why: 'systemd is not PID 1 on this host' });
  mkdirSync(runDir);
  assert.deepEqual(supervision('/srv/lab/h1/root', where), { mode: 'detached', why: "the agent's root is /srv/lab/h1/root; the host package's units serve /var/lib/hitless" });
  assert.equal(supervision(PACKAGE_ROOT, where).mode, 'detached');
  assert.match(supervision(PACKAGE_ROOT, where).why, /hitless-keeper\.service and hitless-gen@\.service are not installed/);
  mkdirSync(unitDir);
  writeFileSync(join(unitDir, 'hitless-keeper.service'), '');
  assert.equal(supervision(PACKAGE_ROOT, where).mode, 'detached', 'the template unit missing');
  writeFileSync(join(unitDir, 'hitless-gen@.service'), '');
  assert.equal(supervision(PACKAGE_ROOT, where).mode, 'systemd');
  assert.equal(supervision(`${PACKAGE_ROOT}/`, where).mode, 'systemd', 'the same root, spelled with a trailing slash');
});
