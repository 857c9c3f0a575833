// Chart.js registration and the dashboard's chart defaults.
//
// Every time-series chart uses `parsing: false`, a linear x axis (the step) and
// the decimation plugin (LTTB), so 100k points per line redraw in a few
// milliseconds, and `animation: false` (steady screenshots, no lag on updates).
// The small `markers` plugin draws labelled vertical lines, used for the steps
// at which control commands took effect.

import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  Decimation,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  LogarithmicScale,
  PointElement,
  ScatterController,
  Tooltip,
  type Plugin,
} from 'chart.js';

export interface Marker {
  x: number;
  label: string;
  color?: string;
}

declare module 'chart.js' {
  interface PluginOptionsByType<TType> {
    markers?: { lines: Marker[] };
    _type?: TType;
  }
}

export const markersPlugin: Plugin = {
  id: 'markers',
  afterDatasetsDraw(chart, _args, options) {
    const lines = (options as { lines?: Marker[] }).lines ?? [];
    const x = chart.scales.x;
    if (!x || lines.length === 0) return;
    const { top, bottom, left, right } = chart.chartArea;
    const ctx = chart.ctx;
    ctx.save();
    ctx.font = '11px Inter, system-ui, sans-serif';
    ctx.textBaseline = 'top';
    // Labels go in the first of three rows where they do not overlap an
    // earlier one; a label that fits nowhere is left out (the line stays).
    const rowRight = [-Infinity, -Infinity, -Infinity];
    for (const m of lines) {
      const px = x.getPixelForValue(m.x);
      if (!Number.isFinite(px) || px < left || px > right) continue;
      const color = m.color ?? '#f5a524';
      ctx.strokeStyle = color;
      ctx.setLineDash([4, 3]);
      ctx.lineWidth = 1;
      ctx.beginPath();
      ctx.moveTo(px, top);
      ctx.lineTo(px, bottom);
      ctx.stroke();
      const w = ctx.measureText(m.label).width + 8;
      const lx = Math.min(px + 3, right - w);
      const row = rowRight.findIndex((r) => lx > r + 2);
      if (row < 0) continue;
      const ly = top + 2 + row * 15;
      ctx.setLineDash([]);
      ctx.fillStyle = 'rgba(15, 18, 26, 0.85)';
      ctx.fillRect(lx, ly, w, 14);
      ctx.fillStyle = color;
      ctx.fillText(m.label, lx + 4, ly + 1);
      rowRight[row] = lx + w;
    }
    ctx.restore();
  },
};

/**
 * The settings that keep big series cheap (the Decimator envelope, `parsing:
 * false`, LTTB). `?bench=naive` turns them off, so e2e/bench_charts.mjs can
 * measure what they buy in the same browser.
 */
export const chartTuning = { fast: true };

let done = false;

export function setupCharts(): void {
  if (done) return;
  done = true;
  Chart.register(
    LineController,
    LineElement,
    PointElement,
    BarController,
    BarElement,
    ScatterController,
    LinearScale,
    LogarithmicScale,
    CategoryScale,
    Decimation,
    Filler,
    Legend,
    Tooltip,
    markersPlugin,
  );
  Chart.defaults.color = '#9aa4b8';
  Chart.defaults.borderColor = 'rgba(154, 164, 184, 0.14)';
  Chart.defaults.font.family = 'Inter, "Segoe UI", system-ui, -apple-system, sans-serif';
  Chart.defaults.font.size = 11;
  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.labels.boxWidth = 10;
  Chart.defaults.plugins.legend.labels.boxHeight = 10;
  Chart.defaults.plugins.tooltip.backgroundColor = 'rgba(15, 18, 26, 0.95)';
  Chart.defaults.plugins.tooltip.borderColor = 'rgba(154, 164, 184, 0.3)';
  Chart.defaults.plugins.tooltip.borderWidth = 1;
}

/** Colours for ranks and series: distinct on the dark background. */
export const PALETTE = [
  '#4f8cff',
  '#f5a524',
  '#2ec27e',
  '#e5484d',
  '#a970ff',
  '#12b5cb',
  '#ff7eb6',
  '#c6d13a',
  '#8d9bb0',
  '#ff9254',
];
export const rankColor = (rank: number) => PALETTE[rank % PALETTE.length];
