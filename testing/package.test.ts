// The packages as an operator gets them (make package writes dist/): the host package unpacked
// into a scratch directory with no repository, no tsx and no node_modules, its agent answering
// over --stdio and checking the release tars with the signers file the package installs.
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { AgentClient } from '../agent/src/client/agentClient.js';
import { agent as rpc } from '../protocol/agent.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(repo, 'dist');
const scratch = mkdtempSync(join(tmpdir(), 'hl-package-'));
const root = join(scratch, 'root');
const agent = join(root, 'usr/bin/hitless-agent');
const signers = join(root, 'etc/hitless/release-signers');
/** what an operator's shell has: /usr/bin, nothing of this repository */
const bare = { env: { PATH: '/usr/bin:/bin' }, cwd: scratch, encoding: 'utf8' as const };

describe('make package: the host package and the signed releases', () => {
  const debs = existsSync(dist) ? execFileSync('ls', [dist], { encoding: 'utf8' }).split('\n').filter((f) => /^hitless-host_.*_amd64\.deb$/.test(f)) : [];
  assert.equal(debs.length, 1, `one host package in ${dist} (make package writes it)`);
  const deb = join(dist, debs[0]!);
  execFileSync('dpkg', ['-x', deb, root]);
  after(() => rmSync(scratch, { recursive: true, force: true }));

  test('the agent runs from the unpacked package alone: --version, and host/info over --stdio', async () => {
    const v = spawnSync(agent, ['--version'], bare);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^hitless-agent \d+\.\d+\.\d+ \(node v24\.\d+\.\d+\)\n$/);
    // a host root laid out as the package lays out /var/lib/hitless, with a minimal config
    const host = join(scratch, 'host');
    mkdirSync(join(host, 'etc'), { recursive: true });
    mkdirSync(join(host, 'releases'), { recursive: true });
    mkdirSync(join(host, 'bin'), { recursive: true });
    symlinkSync(join(root, 'usr/lib/hitless/hitless-keeper'), join(host, 'bin/hitless-keeper'));
    writeFileSync(join(host, 'etc/agent.json'), JSON.stringify({ host: 'scratch', vms: [], release_signers: signers }));
    const inst = spawnSync(agent, ['release', 'install', join(dist, 'hitless-release-1.1.0.tar'), '--root', host, '--signers', signers], bare);
    assert.equal(inst.status, 0, inst.stderr);
    assert.match(inst.stdout, /release 1\.1\.0 \(hitless-dp, 2 files\) signed by \S+: installed in /);
    const p = spawn(agent, ['--stdio', '--root', host], { env: bare.env, cwd: scratch, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    const pids: (number | null)[] = [];
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const c = new AgentClient(p.stdout, p.stdin);
    try {
      const info = await c.request(rpc.hostInfo, {});
      assert.equal(info.host, 'scratch', stderr);
      assert.equal(info.root, host);
      assert.deepEqual(info.releases, ['1.1.0']);
      assert.equal(info.state, 'idle');
      // it says how it runs the keeper and the generations: here (no systemd as PID 1, or a root
      // that is not the units' /var/lib/hitless) detached processes
      assert.equal(info.supervisor?.mode, 'detached');
      assert.match(info.supervisor!.why, /^(systemd is not PID 1 on this host|the agent's root is \S+; the host package's units serve \/var\/lib\/hitless)$/);
      // what runs is verified again before it runs: one byte of the installed hitless-dp changed
      // after install, and no generation starts from it
      const dpBin = join(host, 'releases/1.1.0/bin/hitless-dp');
      const good = readFileSync(dpBin);
      const bad = Buffer.from(good);
      bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0x01;
      writeFileSync(dpBin, bad);
      await assert.rejects(c.request(rpc.hostStart, { release: '1.1.0' }), /release 1\.1\.0 is refused: bin\/hitless-dp: its sha256 differs from the signed manifest's/);
      assert.deepEqual((await c.request(rpc.genList, {})).gens, []);
      // put back as signed, it starts
      writeFileSync(dpBin, good);
      const started = await c.request(rpc.hostStart, { release: '1.1.0' });
      assert.equal(started.active?.release, '1.1.0', stderr);
      const gens = (await c.request(rpc.genList, {})).gens;
      assert.deepEqual(gens.map((g) => [g.release, g.alive]), [['1.1.0', true]]);
      pids.push(...gens.map((g) => g.pid), started.keeper.pid);
    } finally {
      c.dispose();
      p.kill();
      for (const pid of pids) if (pid) process.kill(pid, 'SIGTERM');
    }
  });

  test('the releases verify with the packaged agent; a copy with one byte changed is refused, naming the file', () => {
    for (const r of ['1.0.0', '1.1.0']) {
      const ok = spawnSync(agent, ['release', 'verify', join(dist, `hitless-release-${r}.tar`), '--signers', signers], bare);
      assert.equal(ok.status, 0, ok.stderr);
      assert.match(ok.stdout, new RegExp(`release ${r.replace(/\./g, '\\.')} \\(hitless-dp, 2 files\\) signed by \\S+: verified`));
    }
    // one byte of the archive changed, inside hitless-dp's data
    const copy = join(scratch, 'changed.tar');
    copyFileSync(join(dist, 'hitless-release-1.1.0.tar'), copy);
    const b = readFileSync(copy);
    const at = b.indexOf(Buffer.from('hitless-dp ')) > 0 ? b.indexOf(Buffer.from('hitless-dp ')) : b.length >> 1;
    b[at] = b[at]! ^ 0x20;
    writeFileSync(copy, b);
    const bad = spawnSync(agent, ['release', 'verify', copy, '--signers', signers], bare);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /refused: bin\/hitless-dp: its sha256 differs from the signed manifest/);
  });

  test('its systemd units verify (systemd-analyze, against the package unpacked beside a copy of the stock units and /bin/sh); its maintainer scripts parse; its config lives in /etc/hitless', () => {
    const sa = join(scratch, 'sa');
    execFileSync('dpkg', ['-x', deb, sa]);
    // what the units name beyond the package: the shell, and the targets of a default dependency chain
    mkdirSync(join(sa, 'bin'), { recursive: true });
    copyFileSync('/usr/bin/dash', join(sa, 'bin/sh'));
    execFileSync('sh', ['-c', `cp -rn /lib/systemd/system/. ${join(sa, 'lib/systemd/system')}/`]);
    const units = ['hitless-keeper.service', 'hitless-gen@.service'].map((u) => join(sa, 'lib/systemd/system', u));
    const v = spawnSync('systemd-analyze', ['verify', `--root=${sa}`, ...units], { encoding: 'utf8' });
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stderr.trim(), '', 'no warning either (a setting systemd cannot parse is only warned about)');
    assert.match(readFileSync(units[0]!, 'utf8'), /^ExecStart=\/usr\/lib\/hitless\/hitless-keeper --run-dir \/var\/lib\/hitless\/run\/keeper \$HITLESS_KEEPER_OPTS$/m);
    // the keeper: Type=notify (its upgrade moves the main process), an operator's options file
    assert.match(readFileSync(units[0]!, 'utf8'), /^Type=notify$/m);
    assert.match(readFileSync(units[0]!, 'utf8'), /^EnvironmentFile=-\/etc\/hitless\/keeper\.env$/m);
    assert.match(readFileSync(units[1]!, 'utf8'), /^ExecStart=\/bin\/sh \/var\/lib\/hitless\/run\/gen-%i\/exec$/m);
    const ctl = join(scratch, 'control');
    execFileSync('dpkg-deb', ['-e', deb, ctl]);
    for (const f of ['postinst', 'postrm']) {
      const n = spawnSync('sh', ['-n', join(ctl, f)], { encoding: 'utf8' });
      assert.equal(n.status, 0, `${f}: ${n.stderr}`);
    }
    assert.equal(readlinkSync(join(root, 'var/lib/hitless/etc')), '/etc/hitless', "the agent's root reads its config from /etc/hitless");
  });

  test('the package passes lintian with no error, its sudoers rule parses, it depends on what its binaries load', () => {
    const l = spawnSync('lintian', ['--fail-on', 'error', '--no-tag-display-limit', deb], { encoding: 'utf8' });
    assert.equal(l.status, 0, `${l.stdout}${l.stderr}`);
    assert.doesNotMatch(l.stdout, /^E: /m);
    const s = spawnSync('visudo', ['-c', '-f', join(root, 'etc/sudoers.d/hitless')], { encoding: 'utf8' });
    assert.equal(s.status, 0, s.stdout + s.stderr);
    const depends = execFileSync('dpkg-deb', ['-f', deb, 'Depends'], { encoding: 'utf8' });
    for (const p of ['librte-vhost23', 'libjansson4', 'openssh-client']) assert.match(depends, new RegExp(`\\b${p}\\b`));
  });
});
