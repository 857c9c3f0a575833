// Small building blocks shared by the views: cards, stats, badges, inputs.

import { useEffect, useState, type ReactNode } from 'react';

export function Card(props: {
  title: ReactNode;
  subtitle?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  className?: string;
  testId?: string;
}) {
  return (
    <section className={`card ${props.className ?? ''}`} data-testid={props.testId}>
      <header className="card-head">
        <div>
          <h2>{props.title}</h2>
          {props.subtitle && <div className="card-sub">{props.subtitle}</div>}
        </div>
        {props.actions && <div className="card-actions">{props.actions}</div>}
      </header>
      <div className="card-body">{props.children}</div>
    </section>
  );
}

export function Stat(props: {
  label: string;
  value: ReactNode;
  hint?: ReactNode;
  testId?: string;
  tone?: Tone;
}) {
  return (
    <div className={`stat ${props.tone ? `tone-${props.tone}` : ''}`} data-testid={props.testId}>
      <div className="stat-label">{props.label}</div>
      <div className="stat-value">{props.value}</div>
      {props.hint && <div className="stat-hint">{props.hint}</div>}
    </div>
  );
}

export type Tone = 'ok' | 'warn' | 'bad' | 'info' | 'muted';

export function Badge(props: { tone: Tone; children: ReactNode; testId?: string; title?: string }) {
  return (
    <span className={`badge tone-${props.tone}`} data-testid={props.testId} title={props.title}>
      {props.children}
    </span>
  );
}

export function Toggle(props: {
  label: string;
  checked: boolean;
  onChange: (v: boolean) => void;
  testId?: string;
}) {
  return (
    <label className="toggle" data-testid={props.testId}>
      <input
        type="checkbox"
        checked={props.checked}
        onChange={(e) => props.onChange(e.target.checked)}
      />
      <span className="toggle-track" aria-hidden>
        <span className="toggle-thumb" />
      </span>
      {props.label}
    </label>
  );
}

export function Segmented<T extends string | number>(props: {
  options: { value: T; label: string }[];
  value: T;
  onChange: (v: T) => void;
  testId?: string;
}) {
  return (
    <div className="segmented" role="group" data-testid={props.testId}>
      {props.options.map((o) => (
        <button
          key={String(o.value)}
          type="button"
          className={o.value === props.value ? 'active' : ''}
          data-testid={props.testId ? `${props.testId}-${o.value}` : undefined}
          onClick={() => props.onChange(o.value)}
        >
          {o.label}
        </button>
      ))}
    </div>
  );
}

/**
 * A number input that keeps what the user types (also half-typed values like
 * "1e-") and reports a parsed number, or null while the text is not one.
 */
export function NumberField(props: {
  label: string;
  value: number | null;
  onChange: (v: number | null) => void;
  placeholder?: string;
  hint?: ReactNode;
  testId?: string;
  width?: number;
  /** Only the input (the caller lays out the label). */
  bare?: boolean;
}) {
  const [text, setText] = useState(props.value === null ? '' : String(props.value));
  useEffect(() => {
    if (props.value === null) return;
    setText((t) => (Number(t) === props.value ? t : String(props.value)));
  }, [props.value]);
  const invalid = text.trim() !== '' && !Number.isFinite(Number(text));
  const input = (
    <input
      data-testid={props.testId}
      inputMode="decimal"
      aria-label={props.label}
      aria-invalid={invalid}
      className={invalid ? 'invalid' : undefined}
      value={text}
      placeholder={props.placeholder}
      style={props.width ? { width: props.width } : undefined}
      onChange={(e) => {
        setText(e.target.value);
        const v = e.target.value.trim() === '' ? null : Number(e.target.value);
        props.onChange(v !== null && Number.isFinite(v) ? v : null);
      }}
    />
  );
  if (props.bare) return input;
  return (
    <label className={`field ${invalid ? 'invalid' : ''}`}>
      <span className="field-label">{props.label}</span>
      {input}
      {props.hint && <span className="field-hint">{props.hint}</span>}
    </label>
  );
}

export function Empty(props: { children: ReactNode; testId?: string }) {
  return (
    <div className="empty" data-testid={props.testId}>
      {props.children}
    </div>
  );
}

/** Re-renders every `ms` (for "3 s ago" labels and countdowns). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
