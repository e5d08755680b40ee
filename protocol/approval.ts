// A signed approval (DESIGN.md §15): what an operator approved or denied, signed with their SSH
// key (SSHSIG, namespace hitless-approval) by the console, verified by the host's agent against
// the host's approvers file before it acts. The payload travels as the exact text that was
// signed; both ends read it with this one schema. Pure.
import { z } from 'zod';
import { Budget } from './measure.js';
import { Name } from './names.js';

export const APPROVAL_NAMESPACE = 'hitless-approval';
/** an approval older than this (or this far in the future: clocks differ) is refused */
export const APPROVAL_MAX_AGE_MS = 10 * 60_000;

/** vm: one VM's handoff; host: a stage swap of all of a host's VMs; wave: a wave of hosts moved
 * in the agent's auto mode; auto: a campaign run in auto mode (an approval of its budget);
 * keeper: the host's keeper replaced under its sessions */
export const ApprovalKind = z.enum(['vm', 'host', 'wave', 'auto', 'keeper']);
export type ApprovalKind = z.infer<typeof ApprovalKind>;

export const ApprovalPayload = z
  .object({
    v: z.literal(1),
    ns: z.literal(APPROVAL_NAMESPACE),
    campaign: z.string().min(1).max(100),
    kind: ApprovalKind,
    /** the host as its agent names itself (agent.json host) */
    host: z.string().min(1).max(63),
    /** the VMs this approval moves (empty for a keeper step) */
    vms: z.array(Name).max(4096),
    release: z.string().min(1).max(64),
    mode: z.enum(['handoff', 'swap', 'auto']),
    decision: z.enum(['approve', 'deny']),
    reason: z.string().max(2000),
    /** auto and wave: the budget every switch is judged against */
    budget: Budget.nullable(),
    /** when the operator decided */
    decided: z.string().datetime(),
    /** when it was signed: the agent refuses one older than APPROVAL_MAX_AGE_MS */
    at: z.string().datetime(),
    /** sha256 (hex) of what the operator was shown when deciding (the measured context) */
    context: z.string().regex(/^[0-9a-f]{64}$/),
    /** random: no two signed approvals are the same text */
    nonce: z.string().regex(/^[0-9a-f]{16,64}$/),
  })
  .strict();
export type ApprovalPayload = z.infer<typeof ApprovalPayload>;

/** The payload text as signed, and its SSHSIG signature (armored, as ssh-keygen -Y sign writes it). */
export const SignedApproval = z
  .object({
    payload: z.string().min(2).max(64 * 1024),
    signature: z
      .string()
      .max(16 * 1024)
      .regex(/^-----BEGIN SSH SIGNATURE-----\n[A-Za-z0-9+/=\n]+\n-----END SSH SIGNATURE-----\n?$/, 'an armored SSH signature (ssh-keygen -Y sign)'),
  })
  .strict();
export type SignedApproval = z.infer<typeof SignedApproval>;

/** Who the agent found behind a signed approval. */
export const Signer = z.object({ principal: z.string(), fingerprint: z.string() });
export type Signer = z.infer<typeof Signer>;
