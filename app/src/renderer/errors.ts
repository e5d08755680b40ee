// The one visible error line (data-testid="error"): the last failed call or unusable message,
// with what was being done. An action clears it when it starts, so the line always describes the
// operator's latest attempt; nothing is swallowed.
import { useSyncExternalStore } from 'react';

export interface ShownError {
  readonly what: string;
  readonly message: string;
  readonly at: number;
}

let current: ShownError | null = null;
const listeners = new Set<() => void>();

function emit(): void {
  for (const fn of listeners) fn();
}

export function messageOf(e: unknown): string {
  if (e instanceof Error) return e.message;
  return typeof e === 'string' ? e : JSON.stringify(e);
}

export function reportError(what: string, e: unknown): void {
  current = { what, message: messageOf(e), at: Date.now() };
  emit();
}

export function clearError(): void {
  if (current === null) return;
  current = null;
  emit();
}

export function useShownError(): ShownError | null {
  return useSyncExternalStore(
    (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    () => current,
  );
}
