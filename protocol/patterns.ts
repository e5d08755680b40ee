// OpenSSH's patterns, as ssh_config(5) PATTERNS defines them: * any run, ? one character; a
// pattern list is comma-separated and a leading ! excludes (known_hosts names, allowed_signers
// principals, Include globs). Case-insensitive, as OpenSSH matches host names. Pure.

/** pattern as a RegExp; caseSensitive for file names (Include globs), not host names */
export function sshPattern(pattern: string, caseSensitive = false): RegExp {
  return new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, caseSensitive ? '' : 'i');
}

/** Whether name matches the list: some pattern matches it and no negated one does. */
export function matchPatternList(name: string, list: string): boolean {
  let hit = false;
  for (const p of list.split(',')) {
    if (p.startsWith('!')) {
      if (sshPattern(p.slice(1)).test(name)) return false;
    } else if (sshPattern(p).test(name)) hit = true;
  }
  return hit;
}
