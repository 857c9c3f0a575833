// The page: top bar, rank warnings, tabs. The tab lives in the URL hash
// (#training, #system, #control, #model, #generate, #evaluate, #rate, #run) so
// a view can be linked (a rater's link: ?token=RATING_TOKEN#rate).

import { useEffect, useState } from 'react';
import { Header, Warnings } from './components/Header';
import { RunProvider, useRun } from './context';
import { monitorUrl, useSessionToken } from './lib/token';
import { ControlView } from './views/ControlView';
import { EvaluateView } from './views/EvaluateView';
import { GenerateView, initialGenerateSession, type GenerateSession } from './views/GenerateView';
import { ModelView } from './views/ModelView';
import { RateView } from './views/RateView';
import { RunView } from './views/RunView';
import { SystemView } from './views/SystemView';
import { TrainingView, type ChartSettings } from './views/TrainingView';
import type { WebSocketFactory } from './ws/connection';

const TABS = [
  { id: 'training', label: 'Training' },
  { id: 'system', label: 'System' },
  { id: 'control', label: 'Control' },
  { id: 'model', label: 'Model' },
  { id: 'generate', label: 'Generate' },
  { id: 'evaluate', label: 'Evaluate' },
  { id: 'rate', label: 'Rate' },
  { id: 'run', label: 'Run' },
] as const;
type TabId = (typeof TABS)[number]['id'];

function tabFromHash(): TabId {
  const h = window.location.hash.replace('#', '');
  return (TABS.find((t) => t.id === h)?.id ?? 'training') as TabId;
}

export function App(props: { url?: string; createSocket?: WebSocketFactory }) {
  const [token, setToken] = useSessionToken();
  const [url] = useState(() => props.url ?? monitorUrl());
  return (
    <RunProvider url={url} token={token} setToken={setToken} createSocket={props.createSocket}>
      <Shell />
    </RunProvider>
  );
}

function Shell() {
  const { state } = useRun();
  const [tab, setTab] = useState<TabId>(tabFromHash);
  const [settings, setSettings] = useState<ChartSettings>({
    smoothing: 0.6,
    logY: false,
    window: 0,
    band: false,
  });
  const [generate, setGenerate] = useState<GenerateSession>(initialGenerateSession);
  useEffect(() => {
    const on = () => setTab(tabFromHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  const xMin = settings.window > 0 ? Math.max(0, state.step - settings.window) : undefined;
  const open = (t: TabId) => {
    window.location.hash = t;
    setTab(t);
  };
  const warn = Object.values(state.liveness?.ranks ?? []).some(
    (r) => r.state === 'dead' || r.straggler,
  );
  return (
    <div className="app">
      <Header />
      <nav className="tabs" role="tablist">
        {TABS.map((t) => (
          <button
            key={t.id}
            type="button"
            role="tab"
            aria-selected={tab === t.id}
            className={tab === t.id ? 'active' : ''}
            data-testid={`tab-${t.id}`}
            onClick={() => open(t.id)}
          >
            {t.label}
            {t.id === 'system' && warn && <span className="tab-dot" />}
          </button>
        ))}
      </nav>
      <Warnings />
      <main className="main">
        {tab === 'training' && <TrainingView settings={settings} setSettings={setSettings} />}
        {tab === 'system' && <SystemView xMin={xMin} smoothing={settings.smoothing} />}
        {tab === 'control' && <ControlView />}
        {tab === 'model' && <ModelView />}
        {tab === 'generate' && <GenerateView session={generate} setSession={setGenerate} />}
        {tab === 'evaluate' && <EvaluateView />}
        {tab === 'rate' && <RateView />}
        {tab === 'run' && <RunView />}
      </main>
    </div>
  );
}
