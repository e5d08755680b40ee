// Secrets (identity-file passphrases) encrypted with the OS keyring through safeStorage, in one
// file under the app's user data. Refused outright when Electron would fall back to its
// 'basic_text' backend (no keyring on this Linux desktop): a secret that is merely obfuscated
// on disk is not kept at all.
import { readFileSync, writeFileSync } from 'node:fs';
import { safeStorage } from 'electron';
import type { SecretStore } from '../core/console.js';

export class SafeSecrets implements SecretStore {
  private cache: Record<string, string> = {};

  constructor(private readonly path: string) {
    try {
      this.cache = JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>;
    } catch {
      this.cache = {};
    }
  }

  private usable(): string | null {
    if (!safeStorage.isEncryptionAvailable()) return 'no OS keyring is available';
    if (process.platform === 'linux' && safeStorage.getSelectedStorageBackend() === 'basic_text')
      return "Electron would store it with its 'basic_text' backend (no gnome-libsecret or kwallet running)";
    return null;
  }

  get(key: string): string | null {
    const v = this.cache[key];
    if (!v || this.usable()) return null;
    return safeStorage.decryptString(Buffer.from(v, 'base64'));
  }

  set(key: string, value: string): void {
    const why = this.usable();
    if (why) throw new Error(`the secret was not kept: ${why}. Use ssh-agent instead`);
    this.cache[key] = safeStorage.encryptString(value).toString('base64');
    writeFileSync(this.path, JSON.stringify(this.cache), { mode: 0o600 });
  }
}
