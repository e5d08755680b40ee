// How every message of Hitless is defined, once: a request (method + params and result
// schemas) or a notification (method + params schema). The same helper defines the console
// API (renderer <-> core), the agent protocol (console <-> agent, JSON-RPC over SSH) and the
// native processes' control commands (agent <-> keeper, generations, probe): both ends import
// the one object, check what they send and what they receive against it, and never spell the
// method name at a call site. Pure: no node, electron or DOM imports.
import type { z } from 'zod';

export interface Request<P extends z.ZodTypeAny, R extends z.ZodTypeAny> {
  readonly kind: 'request';
  readonly method: string;
  readonly params: P;
  readonly result: R;
}

export interface Notification<P extends z.ZodTypeAny> {
  readonly kind: 'notification';
  readonly method: string;
  readonly params: P;
}

export type AnyRequest = Request<z.ZodTypeAny, z.ZodTypeAny>;

export function request<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(method: string, params: P, result: R): Request<P, R> {
  return { kind: 'request', method, params, result };
}

export function notification<P extends z.ZodTypeAny>(method: string, params: P): Notification<P> {
  return { kind: 'notification', method, params };
}

/** Index a table of requests by method (a server's dispatch, a test's cross-check). */
export function byMethod<T extends { readonly method: string }>(table: Record<string, T>): ReadonlyMap<string, T> {
  return new Map(Object.values(table).map((r) => [r.method, r]));
}

/** A zod error the way every boundary reports it: where, the field, then what is wrong. */
export function describeZodError(where: string, e: z.ZodError): string {
  const i = e.issues[0]!;
  return `${where}: ${i.path.join('.') || 'params'}: ${i.message}`;
}

/** The Electron IPC channel the console API's envelopes travel on (main process <-> preload). */
export const IPC_CHANNEL = 'hitless/api';
