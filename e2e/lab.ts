// What the e2e tests share: where the lab and the console run, and how to reach the agents
// directly (to check the console's figures against the hosts' own record).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repo = fileURLToPath(new URL('..', import.meta.url));
export const base = process.env.HITLESS_E2E_DIR ?? '/var/tmp/hitless-e2e';
export const labDir = join(base, 'lab');
export const stateDir = join(base, 'console');
export const urlFile = join(base, 'console.url');
/** the console's release library (--releases): what it offers to upload to hosts */
export const libraryDir = join(base, 'releases');
export const PREFIX = 'hlp';
export const SUBNET = 204;
export const VMS = 3;

export const consoleUrl = (): string => readFileSync(urlFile, 'utf8').trim();
export const fleetFile = join(labDir, 'fleet.json');
