// How far a control command got: sent, forwarded to rank 0, and the step at
// which it took effect (the rank's ack), or why it was refused.

import type { CommandEntry } from '../state/reducer';

export function ackText(c: CommandEntry): string {
  switch (c.phase) {
    case 'sent':
      return 'sent…';
    case 'forwarded':
      return 'waiting for the step boundary…';
    case 'done':
      return c.message ? `done: ${c.message}` : 'done';
    case 'acked':
      return `took effect at step ${c.step?.toLocaleString('en-US')}`;
    case 'rejected':
      return `rejected at step ${c.step}${c.message ? `: ${c.message}` : ''}`;
    case 'refused':
      return `refused${c.message ? `: ${c.message}` : ''}`;
    case 'failed':
      return `failed${c.message ? `: ${c.message}` : ''}`;
  }
}

export function ackTone(c: CommandEntry): 'ok' | 'warn' | 'bad' | 'muted' {
  if (c.phase === 'acked' || c.phase === 'done') return 'ok';
  if (c.phase === 'sent' || c.phase === 'forwarded') return 'muted';
  return 'bad';
}

const PAST: Partial<Record<CommandEntry['command'], string>> = {
  pause: 'paused',
  resume: 'resumed',
  stop: 'stopped',
  save_checkpoint: 'saved',
};

export function CommandAck({ entry, compact }: { entry: CommandEntry; compact?: boolean }) {
  const tone = ackTone(entry);
  const text =
    compact && entry.phase === 'acked'
      ? `${PAST[entry.command] ?? entry.command} at step ${entry.step?.toLocaleString('en-US')}`
      : ackText(entry);
  return (
    <span
      className={`ack tone-${tone}`}
      data-testid={`ack-${entry.command}`}
      data-phase={entry.phase}
      data-step={entry.step ?? ''}
      title={`${entry.command} (${entry.id}): ${ackText(entry)}`}
    >
      {tone === 'ok' ? '✓ ' : tone === 'bad' ? '✗ ' : ''}
      {text}
    </span>
  );
}
