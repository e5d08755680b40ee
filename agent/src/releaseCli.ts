// hitless-agent release verify TAR | release install TAR --root DIR  [--signers FILE]
// (install's signers default to the host's: <root>/etc/agent.json release_signers)
// What an operator (or the console, over SSH) runs to check a release and to install it.
// Exit 0: done; 1: the release is refused (the message says why; nothing installed); 2: usage.
import { parseArgs } from 'node:util';
import { loadConfig } from './host/config.js';
import { HOST_SIGNERS, installReleaseTar, ReleaseRefused, verifyReleaseTar } from './host/release.js';

const USAGE = 'usage: hitless-agent release verify TAR [--signers FILE]\n       hitless-agent release install TAR --root DIR [--signers FILE]';

export async function releaseCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { root: { type: 'string' }, signers: { type: 'string' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  } catch (e) {
    console.error(`hitless-agent: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const [verb, tar, ...rest] = parsed.positionals;
  const { root, json } = parsed.values;
  // installing into a host root: by default the signers that host's agent checks at every start
  let signers = parsed.values.signers ?? HOST_SIGNERS;
  if (!parsed.values.signers && root !== undefined) {
    try {
      signers = loadConfig(root).release_signers;
    } catch (e) {
      console.error(`hitless-agent: ${(e as Error).message}`);
      return 2;
    }
  }
  if (!tar || rest.length || (verb !== 'verify' && verb !== 'install') || (verb === 'install') !== (root !== undefined)) {
    console.error(USAGE);
    return 2;
  }
  try {
    const v = verb === 'verify' ? { ...(await verifyReleaseTar(tar, signers)), installed: false } : await installReleaseTar(tar, root!, signers);
    const m = v.manifest;
    const what = `release ${m.release} (${m.kind}, ${Object.keys(m.files ?? {}).length} files) signed by ${v.signer}`;
    if (json) console.log(JSON.stringify({ release: m.release, kind: m.kind, signer: v.signer, files: m.files, installed: v.installed }));
    else console.log(verb === 'verify' ? `${tar}: ${what}: verified` : v.installed ? `${what}: installed in ${root}/releases/${m.release}` : `${what}: already installed in ${root}/releases/${m.release}`);
    return 0;
  } catch (e) {
    if (!(e instanceof ReleaseRefused)) throw e;
    console.error(`hitless-agent: ${tar}: refused: ${e.message}${verb === 'install' ? ' (nothing installed)' : ''}`);
    return 1;
  }
}
