// Entry point: registers Chart.js pieces and mounts the app.
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { setupCharts } from './charts/setup';
import './styles.css';

setupCharts();
createRoot(document.getElementById('root') as HTMLElement).render(<App />);
