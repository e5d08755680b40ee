// End to end: a lab fleet (namespaces, real sshd, real agents and datapaths, probe VMs sending
// across hosts) upgraded through the hitless CLI over SSH with pinned host keys.
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { CtlClient } from '../../../agent/src/native/ctlClient.js';
import { measured, probe } from '../../../protocol/native/probe.js';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { packRelease, signingKey } from '../../../scripts/package.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = mkdtempSync(join(tmpdir(), 'hl-e2e-'));
const fleet = join(dir, 'lab', 'fleet.json');
const lab = (...args: string[]) => execFileSync(join(repo, 'lab/lab'), [...args, '--dir', join(dir, 'lab'), '--prefix', 'hle'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function hitless(args: string[], input = ''): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const p = execFile(join(repo, 'app/bin/hitless'), [...args, '--fleet', fleet, '--state', join(dir, 'state')], { cwd: dir, timeout: 120000 }, (e, stdout, stderr) =>
      res({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
    p.stdin!.end(input);
  });
}

const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

describe('hitless CLI on a lab fleet', () => {
  before(() => {
    lab('up', '--hosts', '2', '--vms', '4', '--subnet', '201');
  });
  after(() => {
    // HITLESS_KEEP_BED=1 keeps the lab's logs and journals (its processes stop) for a post-mortem
    if (process.env.HITLESS_KEEP_BED) return void process.stderr.write(`lab kept: ${dir}\n`);
    try {
      lab('down');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('upgrades 2 hosts x 4 VMs to 1.1.0 with traffic across hosts: 0 lost, every VM moved, old generations stopped', async () => {
    const f = JSON.parse(readFileSync(fleet, 'utf8')) as { hosts: { name: string; root: string }[] };
    const probeStats = async (root: string) => {
      const ctl = await CtlClient.connect(join(root, 'run', 'probe.sock'));
      try {
        return await ctl.request(probe.statsShow, {});
      } finally {
        ctl.close();
      }
    };
    const lostOf = (s: Awaited<ReturnType<typeof probeStats>>) => measured(s).reduce((n, x) => n + x.lost, 0);
    // a frame still in flight (overtaken by a later one) reads as lost until it lands: take the
    // count once two reads 300 ms apart agree
    const settledLost = async (root: string) => {
      let a = lostOf(await probeStats(root));
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 300));
        const b = lostOf(await probeStats(root));
        if (b === a) return a;
        a = b;
      }
      return a;
    };
    // the VMs' own counts before the campaign (frames a host sent before the other host's VMs
    // were up count as lost at the receiver: the campaign is judged on what it adds)
    const before = new Map<string, number>();
    const flowsBefore = new Map<string, string>();
    const flowCounts = (s: Awaited<ReturnType<typeof probeStats>>) => JSON.stringify(measured(s).map((x) => [x.src.slice(-2), x.dst, x.received, x.lost, x.missing, x.late, x.dup, x.gap_count]));
    for (const h of f.hosts) {
      before.set(h.name, await settledLost(h.root));
      flowsBefore.set(h.name, flowCounts(await probeStats(h.root)));
    }
    const r = await hitless(['upgrade', '--hosts', 'all', '--to', '1.1.0', '--approve', 'auto', '--budget-gap-ms', '200', '--budget-lost', '0', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lastJson(r.stdout);
    assert.equal(out.hosts, 2);
    assert.equal(out.vms, 8);
    assert.equal(out.upgraded, 8);
    assert.equal(out.lost, 0, r.stderr);
    // every host's whole upgrade was counted by its witness, not only its switches
    assert.deepEqual(out.outcomes.map((o: { lost: number | null }) => o.lost), [0, 0], r.stderr);
    assert.equal(out.lost_outside, 0);
    assert.ok(out.gap_ms.max >= out.gap_ms.p50 && out.wall_ms > 0);
    const st = lastJson((await hitless(['status', '--json'])).stdout);
    for (const h of st.hosts) {
      assert.equal(h.release, '1.1.0');
      assert.equal(h.state, 'idle');
      for (const v of h.vms) assert.match(v.serving, /^1\.1\.0-/);
    }
    // the old generations are gone: one hitless-dp per host now
    for (const ns of ['hle-h1', 'hle-h2']) {
      const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).trim().split('\n');
      const dps = pids.filter((p) => execFileSync('cat', [`/proc/${p}/comm`], { encoding: 'utf8' }).trim() === 'hitless-dp');
      assert.equal(dps.length, 1, `${ns}: ${dps.length} generations`);
    }
    // the VMs' own count (RFC 6201 frame loss, exact): the campaign lost nothing
    await new Promise((r) => setTimeout(r, 500));
    for (const h of f.hosts) {
      const s = await probeStats(h.root);
      const flows = measured(s);
      assert.ok(flows.length >= 4 && flows.every((x) => x.received > 0), `${h.name}: traffic arrived from the other host`);
      // on failure: when each loss happened (the flow's gaps) and what every probe's sender refused
      const sent = await Promise.all(f.hosts.map(async (o) => (await probeStats(o.root)).flows.filter((x) => x.rx_side === 'remote')));
      assert.equal(
        (await settledLost(h.root)) - before.get(h.name)!,
        0,
        `${h.name}: [src, dst, received, lost, missing, late, dup, gaps] before ${flowsBefore.get(h.name)} after ${flowCounts(s)} lossy gaps ${JSON.stringify(flows.map((x) => x.gaps.filter((g) => g.lost_in_gap > 0)))} meter ${JSON.stringify(s.meter)} vms ${JSON.stringify(s.vms)}\nsent: ${JSON.stringify(sent.map((l) => l.map((x) => [x.src, x.offered, x.tx_refused])))}\n${r.stderr}`,
      );
      assert.equal(flows.reduce((n, x) => n + x.dup, 0), 0, `${h.name}: [src, dst, received, lost, missing, late, dup, gaps] before ${flowsBefore.get(h.name)} after ${flowCounts(s)}\n${r.stderr}`);
      assert.equal(Object.values(s.vms).reduce((n, v) => n + v.link_down, 0), 0, `${h.name}: no VM saw its link go down`);
    }
    const csv = (await hitless(['report', '--format', 'csv'])).stdout.trim().split('\n');
    assert.equal(csv.length, 1 + 8, 'the report lists every VM');
    const html = (await hitless(['report', '--format', 'html'])).stdout;
    assert.match(html, /<svg/);
    // nothing left to do: a second run skips both hosts
    const again = lastJson((await hitless(['upgrade', '--hosts', 'all', '--to', '1.1.0', '--approve', 'auto', '--json'])).stdout);
    assert.deepEqual(again.outcomes.map((o: { outcome: string }) => o.outcome), ['skipped', 'skipped']);
  });

  test('per-VM approval: each VM waits for a yes; a q stops the campaign there, and rollback restores the host', async () => {
    lab('down');
    lab('up', '--hosts', '2', '--vms', '4', '--subnet', '201');
    // a generous break budget: this test is about approvals (the break under load is bench/'s)
    const r = await hitless(['upgrade', '--hosts', 'h1', '--to', '1.1.0', '--approve', 'each', '--budget-gap-ms', '200', '--json'], 'y\ny\nq\n');
    assert.equal(r.code, 1);
    assert.equal(lastJson(r.stdout).outcomes[0].outcome, 'stopped', r.stderr);
    const st = lastJson((await hitless(['status', '--hosts', 'h1', '--json'])).stdout).hosts[0];
    assert.equal(st.state, 'switching');
    assert.deepEqual(st.vms.filter((v: { serving: string }) => /^1\.1\.0-/.test(v.serving)).length, 2, 'exactly the two approved VMs moved');
    const rb = await hitless(['rollback', '--hosts', 'h1']);
    assert.equal(rb.code, 0, rb.stderr);
    const after = lastJson((await hitless(['status', '--hosts', 'h1', '--json'])).stdout).hosts[0];
    assert.equal(after.state, 'idle');
    for (const v of after.vms) assert.match(v.serving, /^1\.0\.0-/);
  });

  test('swap mode: plan shows both modes with the reason and break; an approval per host swaps the stage in place, 0 lost', async () => {
    // both hosts are idle on 1.0.0 (the test above rolled h1 back); 1.0.0 ships stage layout 1
    const plan = lastJson((await hitless(['plan', '--hosts', 'all', '--to', '1.1.0', '--json'])).stdout);
    for (const p of plan.plans) {
      assert.equal(p.recommended, 'swap', JSON.stringify(p));
      const swap = p.modes.find((m: { mode: string }) => m.mode === 'swap');
      assert.match(swap.reason, /converting \d+ FDB entries from state layout 1 to 2/);
    }
    const human = (await hitless(['plan', '--hosts', 'h1', '--to', '1.1.0'])).stdout;
    assert.match(human, /swap \*\s+yes/);
    const r = await hitless(['upgrade', '--hosts', 'all', '--to', '1.1.0', '--mode', 'auto', '--approve', 'each', '--budget-gap-ms', '200', '--json'], 'y\ny\n');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /switch all 4 VMs at once \(stage swap\) on h1 to 1\.1\.0\?/);
    const out = lastJson(r.stdout);
    assert.deepEqual(out.outcomes.map((o: { outcome: string }) => o.outcome), ['committed', 'committed']);
    assert.equal(out.upgraded, 8);
    assert.equal(out.lost, 0);
    // the same generations serve every VM: only their stage changed
    const st = lastJson((await hitless(['status', '--hosts', 'all', '--json'])).stdout);
    for (const h of st.hosts) {
      assert.equal(h.release, '1.1.0');
      for (const v of h.vms) assert.match(v.serving, /^1\.0\.0-/);
    }
    assert.match(await hitless(['upgrade', '--hosts', 'all', '--to', '1.1.0', '--mode', 'sideways']).then((x) => x.stderr), /--mode: handoff, swap or auto, not 'sideways'/);
  });

  test("upload-release: a signed release goes to each host over its SSH connection (SFTP) and the host's agent installs it after checking it; a tampered copy is refused by the host, naming the file, with nothing installed; no copy is left on a host either way", async () => {
    const f = JSON.parse(readFileSync(fleet, 'utf8')) as { hosts: { name: string; root: string }[] };
    // release 1.2.0: 1.1.0's files, signed with the key make package signed dist/ with (the
    // lab's hosts trust it: their release-signers is dist/release-signers)
    const x = join(dir, 'r110');
    mkdirSync(x);
    execFileSync('tar', ['-xf', join(repo, 'dist', 'hitless-release-1.1.0.tar'), '-C', x]);
    const { files: _files, format: _format, ...m110 } = JSON.parse(readFileSync(join(x, 'release.json'), 'utf8')) as Record<string, unknown>;
    const good = join(dir, 'hitless-release-1.2.0.tar');
    packRelease({ manifest: { ...m110, release: '1.2.0' }, files: { 'bin/hitless-dp': join(x, 'bin/hitless-dp'), 'bin/hitless-fwd-l2.so': join(x, 'bin/hitless-fwd-l2.so') }, key: signingKey().key, out: good });
    // the same with one byte of hitless-dp changed after signing
    const bad = join(dir, 'tampered', 'hitless-release-1.2.0.tar');
    mkdirSync(dirname(bad));
    const b = readFileSync(good);
    const at = b.indexOf(Buffer.from('\x7fELF')) + 4096;
    b[at] = b[at]! ^ 0x01;
    writeFileSync(bad, b);
    const uploads = () => readdirSync('/tmp').filter((n) => n.startsWith('hitless-upload-'));
    const left = uploads();
    const installed = (root: string) => existsSync(join(root, 'releases', '1.2.0'));

    let r = await hitless(['upload-release', '--hosts', 'h1', '--tar', bad, '--yes', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const refused = lastJson(r.stdout).hosts[0];
    assert.equal(refused.installed, false);
    assert.match(refused.error, /refused: bin\/hitless-dp: its sha256 differs from the signed manifest.*nothing installed/);
    assert.match(r.stderr, /release 1\.2\.0 \(hitless-dp\) from hitless-release-1\.2\.0\.tar: \d+ bytes, sha256 [0-9a-f]{64}/, 'the preview says what is sent before it is');
    assert.equal(installed(f.hosts[0]!.root), false);
    assert.deepEqual(uploads(), left, 'the refused copy was removed from the host');

    r = await hitless(['upload-release', '--hosts', 'all', '--tar', good, '--json']);
    assert.equal(r.code, 2, 'no terminal to confirm on, and no --yes: nothing is sent');
    assert.match(r.stderr, /--yes is needed/);

    r = await hitless(['upload-release', '--hosts', 'all', '--tar', good, '--yes', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lastJson(r.stdout);
    assert.deepEqual(out.hosts.map((h: { host: string; release: string; installed: boolean; error: string | null }) => [h.host, h.release, h.installed, h.error]), f.hosts.map((h) => [h.name, '1.2.0', true, null]));
    assert.match(r.stderr, /h1: [^\n]*: 100% of \d+ bytes sent/);
    for (const h of f.hosts) assert.ok(installed(h.root), `${h.name} has release 1.2.0`);
    assert.deepEqual(uploads(), left);
    // again: the host has it already (and it still verifies)
    r = await hitless(['upload-release', '--hosts', 'h2', '--tar', good, '--yes', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(lastJson(r.stdout).hosts[0].installed, false);
    // each upload is in the console's audit log, with what was sent
    const audit = readFileSync(join(dir, 'state', 'audit.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"release/upload"'));
    assert.equal(audit.length, 4);
    assert.match(audit[0]!, /"host":"h1".*"error":".*refused/);
    assert.match(audit[1]!, new RegExp(`"sha256":"${out.sha256}"`));
  });

  test("install-agent: the host package goes to a host over SSH and replaces its agent, which answers with the package's version; a package for another architecture or needing a DPDK the host lacks is refused before anything is copied; upgrade-keeper then hands h1's sessions to the installed keeper", async () => {
    const f = JSON.parse(readFileSync(fleet, 'utf8')) as { hosts: { name: string; root: string; package_dir: string }[] };
    const deb = readdirSync(join(repo, 'dist')).find((n) => /^hitless-host_.*\.deb$/.test(n))!;
    // the same package, said to be for arm64 and to need a DPDK library no host has
    const x = join(dir, 'deb-x');
    execFileSync('dpkg-deb', ['-R', join(repo, 'dist', deb), x]);
    const control = readFileSync(join(x, 'DEBIAN/control'), 'utf8').replace(/^Architecture: .*$/m, 'Architecture: arm64').replace(/^Depends: /m, 'Depends: librte-nothing99, ');
    writeFileSync(join(x, 'DEBIAN/control'), control);
    const other = join(dir, 'hitless-host_0.1.0_arm64.deb');
    execFileSync('dpkg-deb', ['-Znone', '--root-owner-group', '--build', x, other], { stdio: 'ignore' });
    const uploads = () => readdirSync('/tmp').filter((n) => n.startsWith('hitless-upload-'));
    const left = uploads();
    const h1 = f.hosts[0]!;
    const before1 = readlinkSync(h1.package_dir);

    let r = await hitless(['install-agent', '--hosts', 'h1', '--deb', other, '--yes', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const refused = lastJson(r.stdout).hosts[0];
    assert.equal(refused.installed, false);
    assert.match(refused.error, /wrong architecture: hitless-host_0\.1\.0_arm64\.deb is for arm64, h1 is amd64; no DPDK: h1 lacks librte-nothing99 .*: nothing copied/);
    assert.deepEqual(uploads(), left, 'nothing was copied to the host');
    assert.equal(readlinkSync(h1.package_dir), before1, "h1's package is untouched");

    r = await hitless(['install-agent', '--hosts', 'h2', '--json']);
    assert.equal(r.code, 2, 'no terminal to confirm on, and no --yes: nothing is sent');
    assert.match(r.stderr, /--yes is needed/);

    // the real package, on both: each host's package directory replaced, its agent a new
    // process of it answering with the package's version
    const before = f.hosts.map((h) => readlinkSync(h.package_dir));
    r = await hitless(['install-agent', '--hosts', 'all', '--yes', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = lastJson(r.stdout);
    const version = /^hitless-host_([^_]+)_/.exec(deb)![1]!.replace(/[~+-].*$/, '');
    assert.deepEqual(out.hosts.map((h: { host: string; installed: boolean; agent_version: string; error: string | null }) => [h.host, h.installed, h.agent_version, h.error]), [['h1', true, version, null], ['h2', true, version, null]]);
    assert.match(r.stderr, /host package hitless-host \S+ \(amd64\) from hitless-host_\S+\.deb: \d+ bytes, sha256 [0-9a-f]{64}/, 'the preview says what is sent before it is');
    assert.match(r.stderr, /h1: hitless-host_\S+\.deb: 100% of \d+ bytes sent/);
    f.hosts.forEach((h, i) => {
      assert.notEqual(readlinkSync(h.package_dir), before[i], `${h.name}: a new package directory`);
      assert.deepEqual(readdirSync(dirname(h.package_dir)).filter((n) => n.startsWith('pkg')).sort(), ['pkg', readlinkSync(h.package_dir)].sort(), 'the old directory removed');
    });
    assert.deepEqual(uploads(), left);
    // the hosts still serve and upgrade with the new agents
    r = await hitless(['status', '--hosts', 'all', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const audit = readFileSync(join(dir, 'state', 'audit.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"agent/install"'));
    assert.equal(audit.length, 3);
    assert.match(audit[0]!, /"host":"h1".*"installed":false.*wrong architecture/);

    // the installed package's keeper takes h1's sessions over from the running one
    r = await hitless(['upgrade-keeper', '--hosts', 'h1', '--json']);
    assert.equal(r.code, 2, 'no terminal to confirm on, and no --yes: nothing is replaced');
    r = await hitless(['upgrade-keeper', '--hosts', 'h1', '--yes', '--json']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /h1: keeper \S+ \(pid \d+, \d+ sessions\) -> the installed \S+/, 'what is replaced is said before it is');
    const k = lastJson(r.stdout).hosts[0];
    assert.deepEqual([k.host, k.upgraded, k.error], ['h1', true, null]);
    assert.notEqual(k.pid, k.from_pid, 'a new keeper process');
    assert.ok(k.sessions > 0 && k.pause_ms > 0, JSON.stringify(k));
    assert.match(readFileSync(join(dir, 'state', 'audit.jsonl'), 'utf8'), /"keeper\/upgrade".*"host":"h1".*"upgraded":true/);
    r = await hitless(['status', '--hosts', 'h1', '--json']);
    assert.ok(lastJson(r.stdout).hosts[0].vms.every((x: { connected: boolean }) => x.connected), 'every VM still connected');
  });

  test("signed approvals: a key not in the host's approvers file is refused by the agent and nothing moves; the hosts' journals verify, and an edited line or a cut tail is reported", async () => {
    const f = JSON.parse(readFileSync(fleet, 'utf8')) as { hosts: { name: string; root: string }[] };
    const h1 = f.hosts.find((h) => h.name === 'h1')!;
    const status = async () => lastJson((await hitless(['status', '--hosts', 'h1', '--json'])).stdout).hosts[0] as { release: string; vms: { vm: string; serving: string }[] };
    const before = await status();
    const to = before.release === '1.1.0' ? '1.0.0' : '1.1.0';
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'stranger', '-f', join(dir, 'stranger')]);
    const r = await hitless(['upgrade', '--hosts', 'h1', '--to', to, '--approve', 'auto', '--identity', join(dir, 'stranger'), '--json']);
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr + r.stdout, /approval refused: signed by a key that is not in .*approvers/);
    const after = await status();
    assert.equal(after.release, before.release);
    assert.deepEqual(after.vms.map((v) => v.serving), before.vms.map((v) => v.serving), 'no VM moved');

    let a = await hitless(['audit', 'verify', '--hosts', 'all', '--json']);
    assert.equal(a.code, 0, a.stderr);
    const hosts = lastJson(a.stdout).hosts as { host: string; entries: number; signed: number; intact: boolean; approvers: boolean }[];
    assert.deepEqual(hosts.map((h) => [h.host, h.intact, h.approvers]), [['h1', true, true], ['h2', true, true]]);
    assert.ok(hosts.every((h) => h.signed > 0 && h.entries > h.signed), JSON.stringify(hosts));

    const journal = join(h1.root, 'var', 'journal.jsonl');
    const text = readFileSync(journal, 'utf8');
    const lines = text.trimEnd().split('\n');
    try {
      writeFileSync(journal, `${lines.map((l, i) => (i === 1 ? l.replace('"type":"', '"type":"x') : l)).join('\n')}\n`);
      a = await hitless(['audit', 'verify', '--hosts', 'all', '--json']);
      assert.equal(a.code, 1);
      const broken = lastJson(a.stdout).hosts[0] as { intact: boolean; problem: { line: number; why: string } };
      assert.deepEqual([broken.intact, broken.problem.line], [false, 2]);
      assert.match(broken.problem.why, /edited/);
      // the last two lines cut off: the chain itself still holds, the head this console saw does not
      writeFileSync(journal, `${lines.slice(0, -2).join('\n')}\n`);
      a = await hitless(['audit', 'verify', '--hosts', 'h1']);
      assert.equal(a.code, 1);
      assert.match(a.stdout, /its tail was cut/);
    } finally {
      writeFileSync(journal, text);
    }
    assert.equal((await hitless(['audit', 'verify', '--hosts', 'all'])).code, 0);
  });

  test('bad arguments and a changed host key are refused with a clear message', async () => {
    let r = await hitless(['upgrade', '--hosts', 'all', '--to', 'latest']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--to: 'latest' is not a release version/);
    r = await hitless(['upgrade', '--hosts', 'h9', '--to', '1.1.0']);
    assert.match(r.stderr, /--hosts: no host h9/);
    // h1 presents a key known_hosts does not have for it
    execFileSync('sh', ['-c', `ssh-keygen -q -t ed25519 -N '' -f ${dir}/other && sed -i "s|^\\(\\S*,h1\\) ssh-ed25519 .*|\\1 $(cut -d' ' -f1,2 ${dir}/other.pub)|" ${dir}/lab/client/known_hosts`]);
    r = await hitless(['hosts', '--json']);
    assert.equal(r.code, 1, 'an unreachable host is reported, not skipped');
    const h1 = lastJson(r.stdout).hosts.find((h: { host: string }) => h.host === 'h1');
    assert.equal(h1.reachable, false);
    assert.match(h1.error, /CHANGED/);
  });
});
