// Signed releases: what the agent installs and runs is what was signed, by a key the host
// allows. Real ssh-keygen signatures, real tar archives, the datapath binaries of native/build.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { makeKey, packRelease, signersLine } from '../../../scripts/package.js';
import { listReleases } from './config.js';
import { installReleaseTar, ReleaseRefused, verifyReleaseTar } from './release.js';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const dir = mkdtempSync(join(tmpdir(), 'hl-release-'));
const build = join(repo, 'native/build');
const manifest = JSON.parse(readFileSync(join(build, 'release.json'), 'utf8')) as { release: string };
const files = { 'bin/hitless-dp': join(build, 'src/dp/hitless-dp'), 'bin/hitless-fwd-l2.so': join(build, 'src/fwd/hitless-fwd-l2.so') };
const ours = makeKey(join(dir, 'keys/ours'), 'release-team');
const theirs = makeKey(join(dir, 'keys/theirs'), 'someone-else');
const signers = join(dir, 'release-signers');
writeFileSync(signers, signersLine(ours));

/** A copy of a release tar with its members changed by edit (run in the unpacked copy);
 * names: GNU tar --transform expressions for member names (kept verbatim, -P). */
function altered(tar: string, name: string, edit: (d: string) => void, names: string[] = []): string {
  const d = join(dir, `${name}.d`);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d);
  execFileSync('tar', ['-xf', tar, '-C', d]);
  edit(d);
  const out = join(dir, `${name}.tar`);
  execFileSync('tar', ['-P', ...names.map((t) => `--transform=${t}`), '-cf', out, '-C', d, ...readdirSync(d)]);
  return out;
}

const refusal = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof ReleaseRefused, `refused, not failed: ${(e as Error).stack}`);
    return e.message;
  }
  assert.fail('accepted');
};

describe('signed releases', () => {
  after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.tar');
  packRelease({ manifest, files, key: ours, out: good });

  test('a release signed by an allowed key verifies and installs whole; installing it again changes nothing', async () => {
    const v = await verifyReleaseTar(good, signers);
    assert.equal(v.signer, 'release-team');
    assert.equal(v.manifest.release, manifest.release);
    assert.deepEqual(Object.keys(v.manifest.files!).sort(), Object.keys(files).sort());
    const root = join(dir, 'host');
    mkdirSync(join(root, 'releases'), { recursive: true });
    const i = await installReleaseTar(good, root, signers);
    assert.equal(i.installed, true);
    // the agent sees it as a runnable release, with its manifest
    const listed = listReleases(root);
    assert.deepEqual(listed.map((r) => [r.version, r.manifest?.kind]), [[manifest.release, 'hitless-dp']]);
    assert.ok(readFileSync(join(root, 'releases', manifest.release, 'bin/hitless-dp')).equals(readFileSync(files['bin/hitless-dp'])));
    assert.equal((await installReleaseTar(good, root, signers)).installed, false);
    assert.deepEqual(readdirSync(join(root, 'releases')), [manifest.release], 'no staging directory left behind');
  });

  test('refused, each with its own reason, and nothing installed: a flipped byte, no signature, an unknown signer, a changed manifest, an unknown format, an extra file, a symbolic or hard link, a path out of the release', async () => {
    const flipped = altered(good, 'flipped', (d) => {
      const f = join(d, 'bin/hitless-dp');
      const b = readFileSync(f);
      b[b.length >> 1] = b[b.length >> 1]! ^ 0x01;
      writeFileSync(f, b);
    });
    const unsigned = altered(good, 'unsigned', (d) => rmSync(join(d, 'release.json.sig')));
    const foreign = join(dir, 'foreign.tar');
    packRelease({ manifest, files, key: theirs, out: foreign });
    const edited = altered(good, 'edited', (d) => {
      const m = JSON.parse(readFileSync(join(d, 'release.json'), 'utf8'));
      m.modes = ['handoff', 'swap', 'handoff'];
      writeFileSync(join(d, 'release.json'), JSON.stringify(m));
    });
    const future = join(dir, 'future.tar');
    packRelease({ manifest: { ...manifest }, files, key: ours, out: future });
    const futureV2 = altered(future, 'future2', (d) => {
      const m = JSON.parse(readFileSync(join(d, 'release.json'), 'utf8'));
      writeFileSync(join(d, 'release.json'), JSON.stringify({ ...m, format: 2 }));
      execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-f', ours.key, '-n', 'hitless-release', join(d, 'release.json')]);
      rmSync(join(d, 'release.json.sig'));
      execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-f', ours.key, '-n', 'hitless-release', join(d, 'release.json')]);
    });
    const extra = altered(good, 'extra', (d) => writeFileSync(join(d, 'bin/helper.sh'), '#!/bin/sh\n'));
    const linked = altered(good, 'linked', (d) => symlinkSync('/etc/passwd', join(d, 'bin/passwd')));
    const hardLinked = altered(good, 'hard-linked', (d) => linkSync(join(d, 'bin/hitless-dp'), join(d, 'bin/hitless-dp2')));
    const evil = (d: string) => writeFileSync(join(d, 'evil'), 'x');
    const climbing = altered(good, 'climbing', evil, ['s,^evil$,../evil,']);
    const absolute = altered(good, 'absolute', evil, [`s,^evil$,${dir}/evil,`]);
    const inherited = altered(good, 'inherited', (d) => writeFileSync(join(d, 'constructor'), 'x'));
    const otherUse = altered(good, 'other-use', (d) => {
      rmSync(join(d, 'release.json.sig'));
      execFileSync('ssh-keygen', ['-q', '-Y', 'sign', '-f', ours.key, '-n', 'file', join(d, 'release.json')]);
    });
    const root = join(dir, 'host2');
    mkdirSync(join(root, 'releases'), { recursive: true });
    const cases: [string, RegExp][] = [
      [flipped, /^bin\/hitless-dp: its sha256 differs from the signed manifest/],
      [unsigned, /^unsigned: it has no release\.json\.sig/],
      [foreign, /signed by a key that is not in .*release-signers/],
      [edited, /release\.json does not match its signature by release-team/],
      [futureV2, /format version 2 is unknown \(this agent reads 1\)/],
      [extra, /^bin\/helper\.sh is not in the signed manifest/],
      [linked, /member bin\/passwd is not a file or directory/],
      [hardLinked, /member bin\/hitless-dp2 is not a file or directory/],
      [climbing, /member "\.\.\/evil" has a name a release cannot have/],
      [absolute, /member "\/.*\/evil" has a name a release cannot have/],
      [inherited, /^constructor is not in the signed manifest/],
      [otherUse, /does not match its signature .*hitless-release/],
    ];
    for (const [tar, why] of cases) {
      assert.match(await refusal(verifyReleaseTar(tar, signers)), why, tar);
      assert.match(await refusal(installReleaseTar(tar, root, signers)), why, tar);
      assert.deepEqual(readdirSync(join(root, 'releases')), [], `${tar}: nothing installed, no staging left`);
    }
    assert.ok(!existsSync(join(dir, '..', 'evil')) && !existsSync(join(dir, 'evil')), 'nothing written outside the release');
    // a host with no signers file trusts nothing
    assert.match(await refusal(verifyReleaseTar(good, join(dir, 'absent'))), /no allowed signers at .*absent/);
    assert.match(await refusal(verifyReleaseTar(join(dir, 'missing.tar'), signers)), /missing\.tar: no such file/);
  });
});
