// Planning a campaign: which hosts move in which wave, and what stops it from starting. The
// canary goes alone first; the rest follow in batches of the chosen size, and two hosts of the
// same group (rack or pair, from the inventory) are never in one wave. Each host's upgrade mode
// (handoff or swap) is the operator's choice for it, checked against what its agent judged
// possible (upgrade/plan, gathered by the caller). A host whose host package installed a new
// keeper has it replaced first (a keeper step, asked once per host). Pure: no I/O.
import type { UpgradeMode } from '../../../protocol/files.js';
import type { UpgradePlan } from '../../../protocol/agent.js';
import type { CampaignSpec, HostRow, KeeperStep, Plan, PlanWave } from '../../../protocol/console.js';

export function planCampaign(spec: CampaignSpec, rows: readonly HostRow[], options: ReadonlyMap<string, UpgradePlan> = new Map()): Plan {
  const blockers: string[] = [];
  const notes: string[] = [];
  const byName = new Map(rows.map((r) => [r.name, r]));
  const seen = new Set<string>();
  const modes = new Map<string, UpgradeMode>();
  const movers: HostRow[] = [];
  for (const name of spec.hosts) {
    if (seen.has(name)) {
      blockers.push(`${name} is listed twice`);
      continue;
    }
    seen.add(name);
    const r = byName.get(name);
    if (!r) {
      blockers.push(`${name} is not in the fleet`);
      continue;
    }
    if (r.conn !== 'connected') {
      blockers.push(`${name} is not connected (${r.conn}${r.problem ? `: ${r.problem}` : ''}): reconnect it or leave it out of the campaign`);
      continue;
    }
    if (r.state !== 'idle') {
      blockers.push(`${name} is ${r.state}${r.target ? ` (to ${r.target.release})` : ''}: finish or roll back that upgrade first`);
      continue;
    }
    if (r.exposed) {
      blockers.push(`${name} is exposed (${r.exposed.why}) and has no standby yet: an upgrade waits until its agent has restored one`);
      continue;
    }
    if (!r.releases.includes(spec.release)) {
      blockers.push(`${name} does not have release ${spec.release} installed (it has ${r.releases.join(', ') || 'none'})`);
      continue;
    }
    if (r.active?.release === spec.release) {
      notes.push(`${name} already runs ${spec.release}: nothing to move there`);
      continue;
    }
    const choice = spec.host_modes[name] ?? spec.mode;
    const opts = options.get(name);
    if (!opts && choice !== 'handoff') {
      blockers.push(`${name}: its agent did not say which upgrade modes it can use, so ${choice} cannot be checked: choose handoff for it`);
      continue;
    }
    const mode: UpgradeMode = choice === 'auto' ? opts!.recommended : choice;
    const option = opts?.modes.find((m) => m.mode === mode);
    if (option && !option.available) {
      blockers.push(`${name}: ${mode} is not possible: ${option.reason}`);
      continue;
    }
    modes.set(name, mode);
    const off = r.vms.filter((v) => !v.connected).map((v) => v.vm);
    if (off.length) notes.push(`${name}: ${off.join(', ')} ha${off.length > 1 ? 've' : 's'} no frontend connected; ${off.length > 1 ? 'they follow' : 'it follows'} the generation when it returns`);
    movers.push(r);
  }
  if (spec.canary !== null && !spec.hosts.includes(spec.canary)) blockers.push(`canary ${spec.canary} is not one of the campaign's hosts`);

  const waves: PlanWave[] = [];
  const planHost = (r: HostRow) => {
    const mode = modes.get(r.name)!;
    const opts = options.get(r.name)?.modes ?? [];
    const predicted = opts.find((m) => m.mode === mode)?.predicted_break_us ?? null;
    const judged = options.get(r.name);
    return { host: r.name, group: r.group, from: r.active?.release ?? null, core: r.active?.core ?? r.active?.release ?? null, vms: r.vms.map((v) => v.vm), mode, options: opts, recommended: judged?.recommended ?? null, predicted_break_us: predicted, keeper: keeperStep(r) };
  };
  const canary = movers.find((r) => r.name === spec.canary);
  if (canary) waves.push({ index: 0, name: 'canary', hosts: [planHost(canary)] });
  const rest: PlanWave[] = [];
  for (const r of movers) {
    if (r === canary) continue;
    let w = rest.find((x) => x.hosts.length < spec.batch && (r.group === null || !x.hosts.some((h) => h.group === r.group)));
    if (!w) {
      w = { index: 0, name: '', hosts: [] };
      rest.push(w);
    }
    w.hosts.push(planHost(r));
  }
  rest.forEach((w, i) => waves.push({ ...w, index: waves.length, name: `wave ${i + 1}` }));
  if (waves.length === 0 && blockers.length === 0) blockers.push(`no host needs to move to ${spec.release}`);
  for (const name of Object.keys(spec.host_modes)) if (!spec.hosts.includes(name)) blockers.push(`host_modes: ${name} is not one of the campaign's hosts`);
  const vms = waves.reduce((n, w) => n + w.hosts.reduce((m, h) => m + h.vms.length, 0), 0);
  const swaps = movers.filter((r) => modes.get(r.name) === 'swap').length;
  const how =
    swaps === 0
      ? 'one VM at a time per host (handoff)'
      : swaps === movers.length
        ? "each host's VMs at once by an in-place stage swap"
        : `${movers.length - swaps} host${movers.length - swaps === 1 ? '' : 's'} by handoff (one VM at a time), ${swaps} by an in-place stage swap (all of a host's VMs at once)`;
  const keepers = movers.filter((r) => keeperStep(r) !== null);
  if (keepers.length)
    notes.push(
      `first on ${keepers.map((r) => r.name).join(', ')}: the keeper is replaced by the one its host package installed (${keepers.map((r) => `${r.name} ${keeperStep(r)!.from} -> ${keeperStep(r)!.to}, control pause ~${(keeperStep(r)!.predicted_pause_us / 1000).toFixed(0)} ms`).join('; ')}; ${keeperStep(keepers[0]!)!.basis}): the VMs keep forwarding, ${spec.approval === 'each-vm' ? 'asked once per host' : 'without asking'}`,
    );
  notes.unshift(
    `${vms} VM${vms === 1 ? '' : 's'} on ${movers.length} host${movers.length === 1 ? '' : 's'} move${vms === 1 ? 's' : ''} to ${spec.release} in ${waves.length} wave${waves.length === 1 ? '' : 's'}, ${how}; ` +
      (spec.approval === 'each-vm'
        ? swaps === movers.length
          ? 'each host waits for one operator approval (its VMs move together)'
          : `each VM waits for an operator approval (a swapped host once, for all its VMs)`
        : spec.approval === 'each-wave'
          ? 'each wave waits for an operator approval, then its VMs move within the budget'
          : 'VMs move without asking while they stay within the budget') +
      `; budget: ${spec.budget.max_gap_ms} ms break and ${spec.budget.max_lost} lost frames per VM. A host over budget, failed or unreachable stops the campaign.`,
  );
  return { spec, waves, blockers, notes };
}

/** The host's keeper step: its keeper is due for replacement (a new one installed). */
function keeperStep(r: HostRow): KeeperStep | null {
  const k = r.keeper;
  if (!k?.due || !k.running || !k.installed) return null;
  return { from: k.running.version, to: k.installed, predicted_pause_us: k.predicted_pause_us, basis: k.basis };
}
