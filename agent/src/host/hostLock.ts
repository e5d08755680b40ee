// One agent at a time changes a host: the console's agent, a CLI's, a second operator's all
// run as separate processes over SSH, and each reads and appends the same journal. The lock is a
// Unix socket bound in the abstract namespace: the kernel lets one process bind a name, and the
// name is free again the moment that process closes it or dies (no stale lock file to judge).
// Abstract names belong to the network namespace: every agent of a host runs in the host's.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class HostLock {
  private readonly name: string;

  constructor(root: string) {
    this.name = `\0hitless-agent-${createHash('sha256').update(root).digest('hex').slice(0, 24)}`;
  }

  private tryBind(): Promise<Server | null> {
    return new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(null));
      srv.listen({ path: this.name }, () => {
        srv.unref();
        resolve(srv);
      });
    });
  }

  /** Run fn holding the host's lock, waiting for another agent's operation to end first. */
  async hold<T>(fn: () => Promise<T>): Promise<T> {
    let srv: Server | null;
    while ((srv = await this.tryBind()) === null) await sleep(50);
    try {
      return await fn();
    } finally {
      srv.close();
    }
  }
}
