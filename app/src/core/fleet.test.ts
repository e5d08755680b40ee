import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { FleetStore, fromAnsible, fromSshConfig } from './fleet.js';

const dir = mkdtempSync(join(tmpdir(), 'hl-fleet-'));
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};

test('fleet: an Ansible INI inventory gives hosts, addresses, users, keys and racks; group vars apply', () => {
  const p = file(
    'hosts.ini',
    `# lab
[rack1]
cmp-01 ansible_host=10.0.0.11 ansible_user=ops
cmp-02 ansible_host=10.0.0.12 ansible_port=2222

[rack2]
cmp-03 ansible_host=10.0.0.13 ansible_ssh_private_key_file=/keys/id hitless_agent="/opt/hitless/bin/hitless-agent --stdio --root /srv/h"
cmp-[04:09]

[rack1:vars]
ansible_user=root

[compute:children]
rack1
rack2

[compute:vars]
ansible_port=2200
`,
  );
  const im = fromAnsible(p, 'hitless-agent --stdio');
  const by = Object.fromEntries(im.hosts.map((h) => [h.name, h]));
  assert.deepEqual(Object.keys(by).sort(), ['cmp-01', 'cmp-02', 'cmp-03']);
  assert.deepEqual(by['cmp-01']!.ssh, { host: '10.0.0.11', port: 2200, user: 'ops', identity: null }); // host var beats group var
  assert.deepEqual(by['cmp-02']!.ssh, { host: '10.0.0.12', port: 2222, user: 'root', identity: null });
  assert.equal(by['cmp-01']!.group, 'rack1');
  assert.equal(by['cmp-03']!.group, 'rack2');
  assert.equal(by['cmp-03']!.agent_command, '/opt/hitless/bin/hitless-agent --stdio --root /srv/h');
  assert.equal(by['cmp-01']!.agent_command, 'hitless-agent --stdio');
  assert.deepEqual(im.skipped.map((s) => s.name), ['cmp-[04:09]']);
});

test('fleet: a YAML inventory, and bad entries are skipped with the field that is wrong', () => {
  const p = file(
    'hosts.yml',
    `all:
  children:
    pair-a:
      vars: { ansible_user: ops }
      hosts:
        cmp-11: { ansible_host: 10.0.1.11 }
        cmp-12: { ansible_host: 10.0.1.12, ansible_port: 99999 }
`,
  );
  const im = fromAnsible(p, 'hitless-agent --stdio');
  assert.deepEqual(im.hosts.map((h) => [h.name, h.group, 'host' in h.ssh ? h.ssh.user : '']), [['cmp-11', 'pair-a', 'ops']]);
  assert.equal(im.skipped[0]!.name, 'cmp-12');
  assert.match(im.skipped[0]!.why, /ssh/);
});

test('fleet: an ssh config gives its concrete Host aliases, not patterns', () => {
  const p = file('ssh_config', 'Host *\n  User x\nHost h1 h2\n  HostName 198.18.0.1\nHost bastion-?\n  Port 2\nHost db\n  HostName 10.1.1.1\n');
  assert.deepEqual(fromSshConfig(p, 'a --stdio').hosts.map((h) => h.name), ['h1', 'h2', 'db']);
});

test('fleet: the store keeps hosts across restarts and refuses a duplicate name', () => {
  const s = new FleetStore(join(dir, 'fleet.json'));
  s.add({ name: 'h1', source: 'manual', ssh: { host: '198.18.0.1', port: 22, user: 'root', identity: null }, agent_command: 'x --stdio', group: null, host_package: { method: 'dpkg' } });
  assert.throws(() => s.add({ ...s.get('h1')! }), /already in the fleet/);
  const r = s.merge({ hosts: [{ ...s.get('h1')! }, { ...s.get('h1')!, name: 'h2' }], skipped: [] });
  assert.deepEqual(r, { added: ['h2'], updated: [], skipped: [{ name: 'h1', why: 'already in the fleet' }] });
  assert.deepEqual(new FleetStore(join(dir, 'fleet.json')).list().map((h) => h.name), ['h1', 'h2']);
  // a fleet file is the authority for its hosts: a lab rebuilt elsewhere updates them, unless busy
  const lab = (name: string, config: string) => ({ name, source: 'fleet-file' as const, ssh: { alias: name, config }, agent_command: 'x --stdio', group: null, host_package: { method: 'dpkg' as const } });
  assert.deepEqual(s.merge({ hosts: [lab('l1', '/a/ssh_config')], skipped: [] }).added, ['l1']);
  assert.deepEqual(s.merge({ hosts: [lab('l1', '/a/ssh_config')], skipped: [] }).skipped, [{ name: 'l1', why: 'already in the fleet, unchanged' }]);
  assert.deepEqual(s.merge({ hosts: [lab('l1', '/b/ssh_config')], skipped: [] }, () => 'part of campaign c-1, which is running: not updated').skipped, [{ name: 'l1', why: 'part of campaign c-1, which is running: not updated' }]);
  assert.deepEqual(s.merge({ hosts: [lab('l1', '/b/ssh_config')], skipped: [] }).updated, ['l1']);
  assert.deepEqual(s.get('l1')!.ssh, { alias: 'l1', config: '/b/ssh_config' });
  assert.deepEqual(s.merge({ hosts: [{ ...lab('h1', '/b/ssh_config') }], skipped: [] }).skipped, [{ name: 'h1', why: 'already in the fleet' }], 'a host added by hand is never replaced by a file');
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ version: 1, hosts: [{ name: '-x' }] }));
  assert.throws(() => new FleetStore(join(dir, 'bad.json')), /hosts\.0\./);
});
