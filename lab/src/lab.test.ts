// The lab end to end, for real: namespaces, veths, a bridge, an OpenSSH sshd per host, both
// releases built with meson. Uses its own names (prefix hlt, 198.18.200.0/24) and directory, so
// a developer's lab (prefix hl) is left alone. Needs root.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ReleaseManifest } from '../../protocol/files.js';
import { AgentConfig, Fleet } from '../../protocol/files.js';

const repo = resolve(fileURLToPath(import.meta.url), '../../..');
const tmp = mkdtempSync('/tmp/hitless-lab-test-');
const dir = join(tmp, 'lab');
const PREFIX = 'hlt';
const SUBNET = 200;
const UP = ['up', '--hosts', '2', '--vms', '2', '--dir', dir, '--prefix', PREFIX, '--subnet', String(SUBNET)];

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: string[], timeoutMs = 120_000): Promise<Result> {
  return new Promise((res) => {
    execFile(cmd, args, { timeout: timeoutMs }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const lab = (...args: string[]) => exec(join(repo, 'lab/lab'), args, 600_000);
const sshCfg = () => join(dir, 'client/ssh_config');
const ssh = (host: string, command: string) => exec('ssh', ['-F', sshCfg(), '-o', 'BatchMode=yes', host, command], 15_000);

async function labNames(): Promise<{ namespaces: string[]; links: string[] }> {
  const ns = (await exec('ip', ['netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0]!);
  const links = (JSON.parse((await exec('ip', ['-j', 'link', 'show'])).stdout) as { ifname: string }[]).map((l) => l.ifname);
  return { namespaces: ns.filter((n) => n.startsWith(`${PREFIX}-`)).sort(), links: links.filter((l) => l.startsWith(PREFIX)).sort() };
}

/** Pids of processes whose command line mentions the test's lab directory. */
function labProcesses(): number[] {
  return readdirSync('/proc')
    .filter((p) => /^[0-9]+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(dir);
      } catch {
        return false;
      }
    })
    .map(Number);
}

function hostKey(name: string): string {
  return readFileSync(join(dir, 'hosts', name, 'ssh/ssh_host_ed25519_key.pub'), 'utf8');
}

interface HostJson {
  name: string;
  netns: boolean;
  sshd: number | null;
  ssh: boolean;
  releases: string[];
  active: string | null;
  keeper: boolean;
  probe: number | null;
  flows: { src: string; dst: string; received: number }[];
  link_down: number | null;
  guests: { vm: string; pid: number | null }[];
}

async function statusJson(): Promise<{ hosts: HostJson[] }> {
  const r = await lab('status', '--dir', dir, '--json');
  assert.equal(r.code, 0, `status: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function assertHostsServe(): Promise<void> {
  for (const i of [1, 2]) {
    const r = await ssh(`h${i}`, 'cat /proc/self/net/dev >/dev/null && echo ok');
    assert.equal(r.code, 0, `ssh h${i}: ${r.stderr}`);
    assert.equal(r.stdout.trim(), 'ok');
  }
}

before(async () => {
  assert.equal(process.getuid?.(), 0, 'the lab test needs root');
  await lab('down', '--dir', dir, '--prefix', PREFIX);
});

after(async () => {
  await lab('down', '--dir', dir, '--prefix', PREFIX);
  rmSync(tmp, { recursive: true, force: true });
});

test('bad arguments exit 2 and name the problem', async () => {
  const tooMany = await lab('up', '--hosts', '9', '--vms', '2', '--dir', dir, '--prefix', PREFIX);
  assert.equal(tooMany.code, 2);
  assert.match(tooMany.stderr, /--hosts: must be 1\.\.8/);
  const noVms = await lab('up', '--hosts', '2', '--dir', dir, '--prefix', PREFIX);
  assert.equal(noVms.code, 2);
  assert.match(noVms.stderr, /--vms is required/);
  const wrongFlag = await lab('status', '--hosts', '2');
  assert.equal(wrongFlag.code, 2);
  assert.match(wrongFlag.stderr, /status takes no --hosts/);
  assert.equal(existsSync(dir), false, 'a refused command creates nothing');
});

test('up: each host answers SSH with its pinned key, inside its own namespace, with both releases', async () => {
  const r = await lab(...UP);
  assert.equal(r.code, 0, r.stderr);

  const fleet = Fleet.parse(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8')));
  assert.deepEqual(fleet.hosts.map((h) => [h.name, h.address, h.netns]), [
    ['h1', `198.18.${SUBNET}.1`, `${PREFIX}-h1`],
    ['h2', `198.18.${SUBNET}.2`, `${PREFIX}-h2`],
  ]);
  assert.match(readFileSync(fleet.ssh_config, 'utf8'), /StrictHostKeyChecking yes/);

  await assertHostsServe();
  const byAddress = await ssh(`root@${fleet.hosts[0]!.address}`, 'true');
  assert.equal(byAddress.code, 0, `ssh by address: ${byAddress.stderr}`);
  for (const [k, h] of fleet.hosts.entries()) {
    // The shell sshd gave us is in the host's namespace: same net namespace inode, its address only.
    const ns = await ssh(h.name, 'readlink /proc/self/ns/net; ip -o -4 addr show; ip -o link show');
    assert.equal(ns.code, 0, ns.stderr);
    assert.ok(ns.stdout.includes(`net:[${statSync(`/run/netns/${h.netns}`).ino}]`), ns.stdout);
    assert.match(ns.stdout, new RegExp(`inet ${h.address.replaceAll('.', '\\.')}/24`));
    assert.ok(!ns.stdout.includes(fleet.hosts[1 - k]!.address), 'another host address is visible');
    assert.match(ns.stdout, /: up0@/);
    assert.match(ns.stdout, /: up1@/);

    for (const release of ['1.0.0', '1.1.0']) {
      const v = await ssh(h.name, `${h.root}/releases/${release}/bin/hitless-dp --version`);
      assert.equal(v.code, 0, v.stderr);
      assert.match(v.stdout, new RegExp(`^hitless-dp ${release.replaceAll('.', '\\.')} `));
      assert.ok(existsSync(`${h.root}/releases/${release}/bin/hitless-fwd-l2.so`));
    }
    // the manifests say the two releases share a core; 1.0.0's stage is at layout 1, 1.1.0's at 2
    const [m0, m1] = ['1.0.0', '1.1.0'].map((r) => ReleaseManifest.parse(JSON.parse(readFileSync(`${h.root}/releases/${r}/release.json`, 'utf8'))));
    assert.ok(m0!.kind === 'hitless-dp' && m1!.kind === 'hitless-dp');
    assert.equal(m0!.core, m1!.core);
    assert.deepEqual([m0!.release, m0!.fwd.layout, m1!.release, m1!.fwd.layout], ['1.0.0', 1, '1.1.0', 2]);
    for (const bin of ['hitless-keeper', 'hitless-probe', 'hitless-agent']) {
      assert.ok(statSync(`${h.root}/bin/${bin}`).mode & 0o100, `${bin} executable`);
    }
    // the host package's agent, as an operator's host runs it: not the repository's
    assert.ok(readFileSync(h.agent, 'utf8').includes(`/pkg/usr/bin/hitless-agent --root ${h.root} "$@"`));
    const exe = /exec (\S+) --root/.exec(readFileSync(h.agent, 'utf8'))![1]!;
    const version = spawnSync(exe, ['--version'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' });
    assert.match(version.stdout, /^hitless-agent \d+\.\d+\.\d+ \(node v24\./, version.stderr);
    const agent = AgentConfig.parse(JSON.parse(readFileSync(`${h.root}/etc/agent.json`, 'utf8')));
    assert.deepEqual(agent.vms, h.vms);
    assert.deepEqual(agent.vms.map((v) => v.mac), [`02:00:00:0${k + 1}:00:01`, `02:00:00:0${k + 1}:00:02`]);
    assert.deepEqual(agent.uplinks, ['up0', 'up1']);
  }

  const st = await statusJson();
  assert.deepEqual(st.hosts.map((h) => [h.name, h.netns, h.sshd !== null, h.ssh, h.releases]), [
    ['h1', true, true, true, ['1.0.0', '1.1.0']],
    ['h2', true, true, true, ['1.0.0', '1.1.0']],
  ]);
});

/** Pids of a host's detached runtime: keeper, generations, probe (from their pid files). */
function runtimePids(name: string): number[] {
  const run = join(dir, 'hosts', name, 'root/run');
  const files = ['keeper/keeper.pid', 'probe.pid', ...readdirSync(run).filter((d) => d.startsWith('gen-') && !d.endsWith('.log')).map((d) => `${d}/dp.pid`)];
  return files.map((f) => Number(readFileSync(join(run, f), 'utf8').trim()));
}

test('up leaves every host running: agent active 1.0.0, probe receiving from the other host', async () => {
  const fleet = Fleet.parse(JSON.parse(readFileSync(join(dir, 'fleet.json'), 'utf8')));
  for (const h of fleet.hosts) {
    const agent = AgentConfig.parse(JSON.parse(readFileSync(`${h.root}/etc/agent.json`, 'utf8')));
    assert.equal(agent.probe_ctl, `${h.root}/run/probe.sock`);
    assert.ok(existsSync(`${h.root}/run/probe.pid`));
    for (const v of h.vms) assert.ok(existsSync(`${h.root}/run/keeper/vhost/${v.name}.sock`), `${v.name} keeper socket`);
  }
  const t0 = Date.now();
  let st = await statusJson();
  const ok = (h: HostJson, k: number) => {
    const other = fleet.hosts[1 - k]!;
    return (
      h.active === '1.0.0' &&
      h.keeper &&
      h.probe !== null &&
      h.link_down === 0 &&
      fleet.hosts[k]!.vms.every((v, j) => h.flows.some((f) => f.dst === v.name && f.src === other.vms[j]!.mac && f.received > 0))
    );
  };
  while (!st.hosts.every(ok) && Date.now() - t0 < 10_000) {
    await new Promise((r) => setTimeout(r, 500));
    st = await statusJson();
  }
  assert.ok(st.hosts.every(ok), JSON.stringify(st.hosts.map((h) => [h.name, h.active, h.keeper, h.probe, h.link_down, h.flows])));
  // the probe and the generation really run inside the host's namespace
  for (const h of fleet.hosts) {
    for (const pid of runtimePids(h.name)) assert.equal(statSync(`/proc/${pid}/ns/net`).ino, statSync(`/run/netns/${h.netns}`).ino, `${h.name} pid ${pid}`);
  }
  const text = await lab('status', '--dir', dir);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /ACTIVE\s+PROBE\s+GUESTS\s+RECEIVED/);
  assert.match(text.stdout, /^h1 .* 1\.0\.0 +pid \d+ +- +h1-v1<-02:00:00:02:00:01 \d+/m);
});

test('up again changes nothing: same host keys, same sshd processes, one lab', async () => {
  const keys = [hostKey('h1'), hostKey('h2')];
  const pids = (await statusJson()).hosts.map((h) => h.sshd);
  const running = [runtimePids('h1'), runtimePids('h2')];
  const before = await labNames();
  const r = await lab(...UP);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual([hostKey('h1'), hostKey('h2')], keys);
  assert.deepEqual((await statusJson()).hosts.map((h) => h.sshd), pids);
  assert.deepEqual([runtimePids('h1'), runtimePids('h2')], running, 'keeper, generation and probe left alone');
  assert.equal(readFileSync(join(dir, 'hosts/h1/root/var/journal.jsonl'), 'utf8').trim().split('\n').length, 1, 'one host/start in the journal');
  assert.deepEqual(await labNames(), before);
  assert.deepEqual(before.namespaces, [`${PREFIX}-h1`, `${PREFIX}-h2`]);
  assert.equal(before.links.filter((l) => l === `${PREFIX}fab0`).length, 1);
  await assertHostsServe();
});

test('a host presenting another key is refused; up restores the pinned key', async () => {
  const other = join(tmp, 'other_key');
  assert.equal((await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other])).code, 0);
  const otherKey = readFileSync(`${other}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
  const knownHosts = join(dir, 'client/known_hosts');
  const lines = readFileSync(knownHosts, 'utf8').split('\n');
  writeFileSync(knownHosts, lines.map((l) => (l.startsWith(`198.18.${SUBNET}.1,h1 `) ? `198.18.${SUBNET}.1,h1 ${otherKey}` : l)).join('\n'));

  const refused = await ssh('h1', 'echo should-not-run');
  assert.notEqual(refused.code, 0);
  assert.ok(!refused.stdout.includes('should-not-run'));
  assert.match(refused.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  assert.equal((await ssh('h2', 'true')).code, 0, 'h2 is unaffected');

  assert.equal((await lab(...UP)).code, 0);
  await assertHostsServe();
});

test('up after a crash half-way clears the leftovers and builds a whole lab', async () => {
  const st = await statusJson();
  process.kill(st.hosts[1]!.sshd!, 'SIGKILL');
  assert.equal((await exec('ip', ['netns', 'add', `${PREFIX}-h5`])).code, 0);
  const state = JSON.parse(readFileSync(join(dir, 'lab.json'), 'utf8'));
  writeFileSync(join(dir, 'lab.json'), JSON.stringify({ ...state, state: 'building' }));

  const r = await lab(...UP);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /clearing a half-built lab/);
  assert.deepEqual((await labNames()).namespaces, [`${PREFIX}-h1`, `${PREFIX}-h2`]);
  await assertHostsServe();
});

test('down removes namespaces, bridge, veths, sshd processes and the directory; again is a no-op', async () => {
  const runtime = [...runtimePids('h1'), ...runtimePids('h2')];
  const prefixes = runtime.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').match(/--file-prefix=([^\0]+)/)?.[1]).filter((p): p is string => !!p);
  assert.equal(prefixes.length, 4, 'two generations and two probes run DPDK');
  const r = await lab('down', '--dir', dir);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(await labNames(), { namespaces: [], links: [] });
  assert.deepEqual(labProcesses(), []);
  assert.deepEqual(runtime.filter((pid) => existsSync(`/proc/${pid}`) && !/^\S+ \S+ Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/\(.*\)/, 'x'))), [], 'keeper, generations and probes are gone');
  assert.deepEqual(prefixes.filter((p) => existsSync(`/var/run/dpdk/${p}`)), [], 'DPDK run dirs removed');
  assert.equal(existsSync(dir), false);
  assert.ok(existsSync('/var/tmp/hitless-lab-build/build-1.0.0/build.ninja'), 'the build cache is kept');

  const again = await lab('down', '--dir', dir);
  assert.equal(again.code, 0, again.stderr);
  const status = await lab('status', '--dir', dir);
  assert.equal(status.code, 1);
  assert.match(status.stderr, /no lab in/);
});

test('a mixed lab: a QEMU guest per host, measured through the guest in an upgrade, stopped by down', async () => {
  const up = await lab('up', '--hosts', '1', '--vms', '2', '--vm-kind', 'mixed', '--dir', dir, '--prefix', PREFIX, '--subnet', String(SUBNET));
  assert.equal(up.code, 0, up.stderr);
  const st = await statusJson();
  const h1 = st.hosts[0]!;
  assert.deepEqual(h1.guests.map((g) => g.vm), ['h1-v2']);
  const guestPid = h1.guests[0]!.pid!;
  assert.ok(guestPid > 0 && readFileSync(`/proc/${guestPid}/cmdline`, 'utf8').includes('qemu-system'), 'the guest is a QEMU process');
  assert.ok(h1.flows.some((f) => f.dst === 'h1-v2' && f.src === 'h1-v1' && f.received > 0), `frames come back through the guest: ${JSON.stringify(h1.flows)}`);

  // the guest's switch is witnessed through the guest: the agent names the reflected flow's VM
  const state = mkdtempSync('/tmp/hitless-lab-test-state-');
  try {
    const r = await exec(join(repo, 'app/bin/hitless'), ['upgrade', '--state', state, '--fleet', join(dir, 'fleet.json'), '--hosts', 'all', '--to', '1.1.0', '--approve', 'auto', '--budget-gap-ms', '2000', '--json'], 300_000);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { lost: number; report: string };
    assert.equal(out.lost, 0, r.stderr);
    const report = JSON.parse(readFileSync(out.report, 'utf8')) as { hosts: { vms: { vm: string; measurement: { witness: { source: string; rx: { flows: number; lost: number } | null } | null } | null }[] }[] };
    const guestRow = report.hosts[0]!.vms.find((v) => v.vm === 'h1-v2')!;
    assert.equal(guestRow.measurement?.witness?.source, 'lab probe', JSON.stringify(guestRow));
    assert.equal(guestRow.measurement?.witness?.rx?.flows, 1, 'the flow through the guest is the guest\'s');
    assert.equal(guestRow.measurement?.witness?.rx?.lost, 0);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }

  const down = await lab('down', '--dir', dir);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(existsSync(`/proc/${guestPid}`) && !/^\S+ \S+ Z/.test(readFileSync(`/proc/${guestPid}/stat`, 'utf8').replace(/\(.*\)/, 'x')), false, 'QEMU is stopped');
});

test('a mixed-datapath lab: h2 runs stock OVS-DPDK generations, traffic crosses the fabric both ways, one campaign upgrades both kinds, and down gives the hugepages back', async () => {
  const nr = () => Number(readFileSync('/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages', 'utf8').trim());
  const baseline = nr();
  const up = await lab('up', '--hosts', '2', '--vms', '2', '--datapath', 'mixed', '--dir', dir, '--prefix', PREFIX, '--subnet', String(SUBNET));
  assert.equal(up.code, 0, up.stderr);
  assert.match(up.stdout, /^h2 .* 1\.0\.0 ovs-dpdk /m);
  const h2 = JSON.parse(readFileSync(join(dir, 'hosts/h2/root/releases/1.1.0/release.json'), 'utf8'));
  assert.equal(ReleaseManifest.parse(h2).kind, 'ovs-dpdk');
  assert.ok(nr() > baseline, "h2's generation reserved its hugepages");
  const st = await statusJson();
  for (const h of st.hosts) assert.ok(h.flows.every((f) => f.received > 0) && h.flows.length === 2, `${h.name} receives from the other host: ${JSON.stringify(h.flows)}`);

  const state = mkdtempSync('/tmp/hitless-lab-test-state-');
  try {
    // the mechanics, not the figures (bench/run handoff --datapath ovs measures those)
    const r = await exec(join(repo, 'app/bin/hitless'), ['upgrade', '--state', state, '--fleet', join(dir, 'fleet.json'), '--hosts', 'all', '--to', '1.1.0', '--approve', 'auto', '--budget-gap-ms', '5000', '--budget-lost', '1000000', '--json'], 300_000);
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { state: string; upgraded: number };
    assert.deepEqual([out.state, out.upgraded], ['done', 4], r.stderr);
  } finally {
    rmSync(state, { recursive: true, force: true });
  }
  const after = await statusJson();
  assert.deepEqual(after.hosts.map((h) => [h.name, h.active, h.ssh]), [['h1', '1.1.0', true], ['h2', '1.1.0', true]], 'both hosts on 1.1.0, still reachable over SSH');
  await sleep(1000);
  const later = await statusJson();
  for (const h of later.hosts) for (const f of h.flows) assert.ok(f.received > after.hosts.find((x) => x.name === h.name)!.flows.find((x) => x.src === f.src)!.received, `${h.name}: ${f.src} still arrives`);

  const down = await lab('down', '--dir', dir);
  assert.equal(down.code, 0, down.stderr);
  assert.equal(nr(), baseline, 'every hugepage given back');
  assert.deepEqual((await exec('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith('hlo-')), [], 'no generation namespace left');
});
