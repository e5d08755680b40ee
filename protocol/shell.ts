// Words for a POSIX shell: what the console runs on a host over SSH and the scripts the agent
// writes for systemd are built from these, never by pasting text into a command line.

/** s as one word the shell reads back unchanged. */
export function shellWord(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
