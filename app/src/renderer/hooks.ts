// Small React hooks shared by the screens: typed actions (mutations that report into the error
// line), query errors into the error line, a ticking clock, the link state, the hash route.
import { useMutation, type UseQueryResult } from '@tanstack/react-query';
import { useEffect, useState, useSyncExternalStore } from 'react';
import type { z } from 'zod';
import type { Request } from '../../../protocol/rpc.js';
import { client, type LinkState } from './client.js';
import { clearError, reportError } from './errors.js';
import { parseRoute, type Route } from './route.js';

/** A request the operator triggers: clears the error line when it starts, fills it on failure. */
export function useAction<P extends z.ZodTypeAny, R extends z.ZodTypeAny>(
  req: Request<P, R>,
  onSuccess?: (result: z.output<R>, params: z.input<P>) => void,
) {
  return useMutation<z.output<R>, Error, z.input<P>>({
    mutationFn: (params) => client.call(req, params),
    onMutate: () => clearError(),
    onError: (e) => reportError(req.method, e),
    ...(onSuccess ? { onSuccess } : {}),
  });
}

/** Show a query's failure in the error line (once per failure). */
export function useReportQueryError(q: UseQueryResult<unknown, Error>, what: string): void {
  const { error, errorUpdatedAt } = q;
  useEffect(() => {
    if (error) reportError(what, error);
  }, [error, errorUpdatedAt, what]);
}

/** Date.now(), refreshed every `ms`. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export function useLinkState(): LinkState {
  return useSyncExternalStore(
    (fn) => client.onState(fn),
    () => client.state,
  );
}

export function useRoute(): Route {
  const hash = useSyncExternalStore(
    (fn) => {
      window.addEventListener('hashchange', fn);
      return () => window.removeEventListener('hashchange', fn);
    },
    () => location.hash,
  );
  return parseRoute(hash);
}

export function navigate(href: string): void {
  location.hash = href.replace(/^#/, '');
}
