// Entry point: registers Chart.js pieces and mounts the app.
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { chartTuning, setupCharts } from './charts/setup';
import './styles.css';

chartTuning.fast = new URLSearchParams(window.location.search).get('bench') !== 'naive';
setupCharts();
createRoot(document.getElementById('root') as HTMLElement).render(<App />);
