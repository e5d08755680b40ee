// An OpenFlow 1.4 connection to one OVS bridge's management socket (<rundir>/<bridge>.mgmt),
// for the few messages a switch sends while a VM's frames are in flight (DESIGN.md §12): flow
// mods committed as one atomic, ordered bundle, and the ports' description (is a VM's port
// live yet). ovs-ofctl does the same, but one process per call costs 20-100 ms here, and a
// switch makes four calls inside the VM's break; over one connection kept for the switch each
// is a round trip of well under a millisecond. Everything else (carrying a generation's state,
// dumps) stays with ovs-ofctl, whose text formats the operator reads.
import { createConnection, type Socket } from 'node:net';

const VERSION = 0x05; // OpenFlow 1.4
const T = { HELLO: 0, ERROR: 1, ECHO_REQUEST: 2, ECHO_REPLY: 3, FLOW_MOD: 14, MULTIPART_REQUEST: 18, MULTIPART_REPLY: 19, BARRIER_REQUEST: 20, BARRIER_REPLY: 21, BUNDLE_CONTROL: 33, BUNDLE_ADD: 34 } as const;
const BUNDLE = { OPEN: 0, OPEN_REPLY: 1, COMMIT: 4, COMMIT_REPLY: 5, DISCARD: 6, DISCARD_REPLY: 7, ATOMIC: 1, ORDERED: 2 } as const;
const MP_PORT_STATS = 4;
const OFPP_ANY = 0xffffffff;
const MP_PORT_DESC = 13;
const PORT_STATE_LIVE = 4;
const ANY = 0xffffffff;
const TABLE_ALL = 0xff;

/** One flow added, or every flow with this cookie (and this destination MAC) deleted. */
export interface FlowMod {
  command: 'add' | 'delete';
  cookie: bigint;
  priority?: number;
  inPort?: number;
  ethDst?: string;
  output?: number;
}

/** What the switch refused: the OpenFlow error's type and code, and the request it answers. */
export class OpenFlowError extends Error {
  constructor(
    readonly type: number,
    readonly code: number,
    what: string,
  ) {
    super(`${what}: OpenFlow error type ${type} code ${code}`);
    this.name = 'OpenFlowError';
  }
}

function header(type: number, length: number, xid: number): Buffer {
  const b = Buffer.alloc(length);
  b.writeUInt8(VERSION, 0);
  b.writeUInt8(type, 1);
  b.writeUInt16BE(length, 2);
  b.writeUInt32BE(xid, 4);
  return b;
}

const pad8 = (n: number) => (n + 7) & ~7;

function macBytes(mac: string): Buffer {
  const b = Buffer.from(mac.replaceAll(':', ''), 'hex');
  if (b.length !== 6) throw new Error(`not a MAC address: ${mac}`);
  return b;
}

/** An OFPT_FLOW_MOD: OXM match (in_port, eth_dst), an apply-actions output if any. */
export function flowMod(m: FlowMod, xid: number): Buffer {
  const oxm: Buffer[] = [];
  if (m.inPort !== undefined) {
    const f = Buffer.alloc(8);
    f.writeUInt32BE(0x80000004, 0); // OFPXMC_OPENFLOW_BASIC, OFPXMT_OFB_IN_PORT, 4 bytes
    f.writeUInt32BE(m.inPort, 4);
    oxm.push(f);
  }
  if (m.ethDst !== undefined) {
    const f = Buffer.alloc(10);
    f.writeUInt32BE(0x80000606, 0); // OFPXMT_OFB_ETH_DST, 6 bytes
    macBytes(m.ethDst).copy(f, 4);
    oxm.push(f);
  }
  const fields = Buffer.concat(oxm);
  const match = Buffer.alloc(pad8(4 + fields.length));
  match.writeUInt16BE(1, 0); // OFPMT_OXM
  match.writeUInt16BE(4 + fields.length, 2);
  fields.copy(match, 4);
  let inst = Buffer.alloc(0);
  if (m.output !== undefined) {
    inst = Buffer.alloc(8 + 16);
    inst.writeUInt16BE(4, 0); // OFPIT_APPLY_ACTIONS
    inst.writeUInt16BE(24, 2);
    inst.writeUInt16BE(0, 8); // OFPAT_OUTPUT
    inst.writeUInt16BE(16, 10);
    inst.writeUInt32BE(m.output, 12);
    inst.writeUInt16BE(0xffff, 16); // max_len: OFPCML_NO_BUFFER
  }
  const b = header(T.FLOW_MOD, 8 + 40 + match.length + inst.length, xid);
  b.writeBigUInt64BE(m.cookie, 8);
  b.writeBigUInt64BE(m.command === 'delete' ? 0xffffffffffffffffn : 0n, 16); // cookie_mask
  b.writeUInt8(m.command === 'delete' ? TABLE_ALL : 0, 24);
  b.writeUInt8(m.command === 'delete' ? 3 : 0, 25); // OFPFC_DELETE / OFPFC_ADD
  b.writeUInt16BE(m.priority ?? 0x8000, 30);
  b.writeUInt32BE(ANY, 32); // buffer_id: none
  b.writeUInt32BE(ANY, 36); // out_port
  b.writeUInt32BE(ANY, 40); // out_group
  match.copy(b, 48);
  inst.copy(b, 48 + match.length);
  return b;
}

/** The ports of an OF1.4 port-description reply body: name and whether OVS sees it live. */
export function portDescs(body: Buffer): { no: number; name: string; live: boolean }[] {
  const out = [];
  for (let o = 0; o + 48 <= body.length; ) {
    const len = body.readUInt16BE(o + 4);
    if (len < 48 || o + len > body.length) throw new Error(`a port description of ${len} bytes at ${o} of ${body.length}`);
    const raw = body.subarray(o + 16, o + 32);
    const end = raw.indexOf(0);
    out.push({ no: body.readUInt32BE(o), name: raw.subarray(0, end < 0 ? 16 : end).toString('latin1'), live: (body.readUInt32BE(o + 36) & PORT_STATE_LIVE) !== 0 });
    o += len;
  }
  return out;
}

export interface PortCounters {
  rx: bigint;
  tx: bigint;
  rxDropped: bigint;
  txDropped: bigint;
}

/** The entries of an OF1.4 port-stats reply body (ofp_port_stats: length, pad, port_no,
 * duration, then rx/tx packets, rx/tx bytes, rx/tx dropped, ...), by port number; a counter the
 * port does not have reads 0. */
const NO_COUNTER = 0xffffffffffffffffn;

export function portCounters(body: Buffer): Map<number, PortCounters> {
  const out = new Map<number, PortCounters>();
  for (let o = 0; o + 2 <= body.length; ) {
    const len = body.readUInt16BE(o);
    if (len < 80 || o + len > body.length) throw new Error(`port stats of ${len} bytes at ${o} of ${body.length}`);
    // all ones: a counter the port does not have (a vhost port whose device is not running
    // here), which ovs-ofctl shows as "?": nothing counted
    const n = (at: number) => {
      const v = body.readBigUInt64BE(o + at);
      return v === NO_COUNTER ? 0n : v;
    };
    out.set(body.readUInt32BE(o + 4), { rx: n(16), tx: n(24), rxDropped: n(48), txDropped: n(56) });
    o += len;
  }
  return out;
}

interface Waiter {
  done: (type: number, body: Buffer) => boolean; // true: the reply is complete
  resolve: () => void;
  reject: (e: Error) => void;
  what: string;
}

export class OpenFlow {
  private buf: Buffer = Buffer.alloc(0);
  private xid = 1;
  private readonly waiting = new Map<number, Waiter>();
  private gone: Error | null = null;

  private constructor(
    private readonly sock: Socket,
    readonly path: string,
  ) {
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e) => this.fail(new Error(`OpenFlow ${path}: ${e.message}`)));
    sock.on('close', () => this.fail(new Error(`OpenFlow connection ${path} closed`)));
  }

  /** Connected and version-negotiated (the bridge must allow OpenFlow 1.4). */
  static async connect(path: string, timeoutMs = 5000): Promise<OpenFlow> {
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection(path);
      const timer = setTimeout(() => (s.destroy(), reject(new Error(`OpenFlow ${path}: no connection after ${timeoutMs} ms`))), timeoutMs);
      s.once('connect', () => (clearTimeout(timer), resolve(s)));
      s.once('error', (e) => (clearTimeout(timer), reject(new Error(`OpenFlow ${path}: ${e.message}`))));
    });
    const of = new OpenFlow(sock, path);
    // the bridge's hello names its highest version; a bridge without 1.4 closes or errs
    const hello = new Promise<void>((resolve, reject) => of.waiting.set(0, { done: (t) => t === T.HELLO, resolve, reject, what: 'hello' }));
    sock.write(header(T.HELLO, 8, 0));
    await of.within(hello, timeoutMs);
    return of;
  }

  /** p, or a rejection once timeoutMs have passed. */
  private async within(p: Promise<void>, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`OpenFlow ${this.path}: no reply after ${timeoutMs} ms`)), timeoutMs)));
    try {
      await Promise.race([p, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Send a request and wait for its reply (done says when a multipart reply is complete). */
  private request(msg: (xid: number) => Buffer, what: string, done: (type: number, body: Buffer) => boolean, timeoutMs = 5000): Promise<void> {
    if (this.gone) return Promise.reject(this.gone);
    const xid = this.xid++;
    const p = new Promise<void>((resolve, reject) => this.waiting.set(xid, { done, resolve, reject, what }));
    this.sock.write(msg(xid));
    return this.within(p, timeoutMs).finally(() => this.waiting.delete(xid));
  }

  /**
   * The flow mods as one bundle committed atomically and in order: the datapath never sees
   * some of them without the others. Rejects with the switch's error if any is refused (the
   * bundle is then discarded whole).
   */
  async bundle(mods: FlowMod[]): Promise<void> {
    const id = this.xid; // any id unique on this connection
    const control = (type: number) => (xid: number) => {
      const b = header(T.BUNDLE_CONTROL, 16, xid);
      b.writeUInt32BE(id, 8);
      b.writeUInt16BE(type, 12);
      b.writeUInt16BE(BUNDLE.ATOMIC | BUNDLE.ORDERED, 14);
      return b;
    };
    const reply = (type: number) => (t: number, body: Buffer) => t === T.BUNDLE_CONTROL && body.readUInt16BE(4) === type;
    await this.request(control(BUNDLE.OPEN), 'bundle open', reply(BUNDLE.OPEN_REPLY));
    // an added message has no reply of its own: an error answering one, else the barrier
    // after the last one, says whether the bundle holds them all
    const added: number[] = [];
    const refused: Error[] = [];
    try {
      for (const m of mods) {
        const xid = this.xid++;
        const inner = flowMod(m, xid);
        const b = header(T.BUNDLE_ADD, 16 + inner.length, xid);
        b.writeUInt32BE(id, 8);
        b.writeUInt16BE(BUNDLE.ATOMIC | BUNDLE.ORDERED, 14);
        inner.copy(b, 16);
        added.push(xid);
        this.waiting.set(xid, { done: () => false, resolve: () => undefined, reject: (e) => refused.push(e), what: `bundled ${m.command} ${m.ethDst ?? 'all'}` });
        this.sock.write(b);
      }
      await this.request((xid) => header(T.BARRIER_REQUEST, 8, xid), 'barrier', (t) => t === T.BARRIER_REPLY);
      if (refused.length) throw refused[0];
      await this.request(control(BUNDLE.COMMIT), 'bundle commit', reply(BUNDLE.COMMIT_REPLY));
    } catch (e) {
      await this.request(control(BUNDLE.DISCARD), 'bundle discard', reply(BUNDLE.DISCARD_REPLY)).catch(() => undefined);
      throw e;
    } finally {
      for (const xid of added) this.waiting.delete(xid);
    }
  }

  /** Every port's name and whether it is live (a vhost port: its device running here). */
  async ports(): Promise<{ no: number; name: string; live: boolean }[]> {
    const parts: Buffer[] = [];
    await this.request(
      (xid) => {
        const b = header(T.MULTIPART_REQUEST, 16, xid);
        b.writeUInt16BE(MP_PORT_DESC, 8);
        return b;
      },
      'port description',
      (t, body) => {
        if (t !== T.MULTIPART_REPLY) return false;
        parts.push(body.subarray(8));
        return (body.readUInt16BE(2) & 1) === 0; // OFPMPF_REPLY_MORE clear: the last part
      },
    );
    return portDescs(Buffer.concat(parts));
  }

  /** The connection is gone (closed, or the daemon went). */
  get closed(): boolean {
    return this.gone !== null;
  }

  /** A port's frame counters as OVS keeps them (OFPMP_PORT_STATS). */
  async portStats(port: number): Promise<PortCounters> {
    const got = (await this.stats(port)).get(port);
    if (!got) throw new Error(`${this.path}: no port ${port}`);
    return got;
  }

  /** Every port's frame counters, by OpenFlow port number, in one request. */
  allPortStats(): Promise<Map<number, PortCounters>> {
    return this.stats(OFPP_ANY);
  }

  private async stats(port: number): Promise<Map<number, PortCounters>> {
    const parts: Buffer[] = [];
    await this.request(
      (xid) => {
        const b = header(T.MULTIPART_REQUEST, 24, xid);
        b.writeUInt16BE(MP_PORT_STATS, 8);
        b.writeUInt32BE(port, 16);
        return b;
      },
      `port ${port === OFPP_ANY ? 'any' : port} stats`,
      (t, body) => {
        if (t !== T.MULTIPART_REPLY) return false;
        parts.push(body.subarray(8));
        return (body.readUInt16BE(2) & 1) === 0;
      },
    );
    return portCounters(Buffer.concat(parts));
  }

  /** Kept open without keeping the process alive (a connection kept between uses). */
  unref(): this {
    this.sock.unref();
    return this;
  }

  close(): void {
    this.sock.destroy();
    this.fail(new Error(`OpenFlow connection ${this.path} closed`));
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 8) {
      const len = this.buf.readUInt16BE(2);
      if (len < 8) return this.fail(new Error(`OpenFlow ${this.path}: a message of length ${len}`));
      if (this.buf.length < len) return;
      const msg = this.buf.subarray(0, len);
      this.buf = this.buf.subarray(len);
      this.onMessage(msg.readUInt8(1), msg.readUInt32BE(4), msg.subarray(8));
    }
  }

  private onMessage(type: number, xid: number, body: Buffer): void {
    if (type === T.ECHO_REQUEST) {
      const r = header(T.ECHO_REPLY, 8 + body.length, xid);
      body.copy(r, 8);
      this.sock.write(r);
      return;
    }
    const w = this.waiting.get(type === T.HELLO ? 0 : xid);
    if (!w) return;
    if (type === T.ERROR) {
      this.waiting.delete(xid);
      w.reject(new OpenFlowError(body.readUInt16BE(0), body.readUInt16BE(2), `${this.path}: ${w.what}`));
    } else if (w.done(type, body)) {
      this.waiting.delete(type === T.HELLO ? 0 : xid);
      w.resolve();
    }
  }

  private fail(e: Error): void {
    if (this.gone) return;
    this.gone = e;
    for (const w of this.waiting.values()) w.reject(e);
    this.waiting.clear();
  }
}
