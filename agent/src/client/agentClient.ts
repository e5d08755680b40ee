// A typed client of the agent protocol over any stream pair: a child's stdio in tests, an SSH
// exec channel in the console. Params are checked before sending, results when they arrive.
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node.js';
import type { z } from 'zod';
import type { Notification, Request } from '../../../protocol/rpc.js';

export class AgentClient {
  readonly conn: MessageConnection;

  constructor(input: NodeJS.ReadableStream, output: NodeJS.WritableStream) {
    this.conn = createMessageConnection(new StreamMessageReader(input), new StreamMessageWriter(output));
    this.conn.listen();
  }

  async request<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(req: Request<P, R>, params: z.input<P>): Promise<z.output<R>> {
    const checked = req.params.parse(params);
    return req.result.parse(await this.conn.sendRequest(req.method, checked));
  }

  /** Send params unchecked (tests of the agent's own validation). */
  raw(method: string, params: unknown): Promise<unknown> {
    return this.conn.sendRequest(method, params);
  }

  on<P extends z.ZodTypeAny>(n: Notification<P>, fn: (p: z.output<P>) => void): void {
    this.conn.onNotification(n.method, (raw: unknown) => {
      const p = n.params.safeParse(raw);
      if (p.success) fn(p.data);
    });
  }

  dispose(): void {
    this.conn.dispose();
  }
}
