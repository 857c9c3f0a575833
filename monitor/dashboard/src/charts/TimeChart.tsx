// A line chart over training steps: several named lines, optional log y axis,
// markers, and a visible step window. Data are the reducer's point buffers:
// a long line is handed to Chart.js as its incremental min/max envelope (a few
// thousand points, see Decimator), a step window as the raw points inside it,
// always as a copy (Chart.js would otherwise instrument the shared buffers).
// Chart.js's own LTTB decimation then thins what is left to the pixel width.

import { useMemo, useRef } from 'react';
import { Line } from 'react-chartjs-2';
import type { ChartData, ChartOptions } from 'chart.js';
import { Decimator, lowerBound, type Point } from '../state/series';
import { chartTuning, type Marker } from './setup';
import { fmtSi } from '../lib/format';

/** Lines earlier in the list are drawn on top and listed first in the legend. */
export interface ChartLine {
  label: string;
  data: Point[];
  color: string;
  width?: number;
  dash?: number[];
  /** Fill between this line and the dataset at this index (for min/max bands). */
  fillTo?: number;
  hidden?: boolean;
  /** Draw points (for sparse series such as validation). */
  points?: boolean;
  stepped?: boolean;
  /** Leave out of the legend. */
  noLegend?: boolean;
}

export interface TimeChartProps {
  lines: ChartLine[];
  /** Changes whenever the data changed (the reducer's version). */
  version: number;
  yLog?: boolean;
  yTitle?: string;
  yFormat?: (v: number) => string;
  yMin?: number;
  xMin?: number;
  markers?: Marker[];
  height?: number;
  legend?: boolean;
  testId?: string;
}

const fmtStep = (v: number | string) => fmtSi(Number(v), 4);

export function TimeChart(props: TimeChartProps) {
  const {
    lines,
    version,
    yLog,
    yTitle,
    yFormat,
    yMin,
    xMin,
    markers,
    height,
    legend = true,
    testId,
  } = props;

  const decimators = useRef(new Map<string, Decimator>());
  const data = useMemo<ChartData<'line', Point[]>>(
    () => ({
      datasets: lines.map((l) => ({
        label: l.label,
        data: visible(l.data, xMin, decimators.current, l.label),
        borderColor: l.color,
        backgroundColor: l.fillTo !== undefined ? hexAlpha(l.color, 0.16) : l.color,
        borderWidth: l.width ?? 1.6,
        borderDash: l.dash,
        pointRadius: l.points ? (l.data.length > 120 ? 0 : l.data.length > 40 ? 2 : 3) : 0,
        pointHoverRadius: 4,
        pointBackgroundColor: l.color,
        fill: l.fillTo !== undefined ? { target: l.fillTo } : false,
        hidden: l.hidden,
        stepped: l.stepped ? ('before' as const) : false,
        spanGaps: false,
      })),
    }),
    // `version` stands for the contents of the point buffers.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [lines, version, xMin],
  );

  const options = useMemo<ChartOptions<'line'>>(
    () => ({
      parsing: chartTuning.fast ? false : undefined,
      normalized: chartTuning.fast,
      animation: false,
      interaction: { mode: 'nearest', axis: 'x', intersect: false },
      elements: { line: { tension: 0 } },
      scales: {
        x: {
          type: 'linear',
          min: xMin,
          title: { display: true, text: 'step' },
          ticks: { callback: fmtStep, maxTicksLimit: 8 },
          grid: { display: true },
        },
        y: {
          type: yLog ? 'logarithmic' : 'linear',
          min: yMin,
          title: { display: !!yTitle, text: yTitle ?? '' },
          ticks: {
            maxTicksLimit: 7,
            callback: (v) => (yFormat ? yFormat(Number(v)) : fmtSi(Number(v), 3)),
          },
        },
      },
      plugins: {
        decimation: { enabled: chartTuning.fast, algorithm: 'lttb', samples: 800, threshold: 1000 },
        legend: {
          display: legend,
          position: 'top',
          align: 'end',
          labels: { filter: (item) => !lines[item.datasetIndex ?? 0]?.noLegend },
        },
        tooltip: {
          callbacks: {
            title: (items) => (items.length ? `step ${items[0].parsed.x}` : ''),
            label: (item) =>
              `${item.dataset.label}: ${yFormat ? yFormat(item.parsed.y ?? NaN) : fmtSi(item.parsed.y, 4)}`,
          },
        },
        markers: { lines: markers ?? [] },
      },
    }),
    [yLog, yTitle, yFormat, yMin, xMin, markers, legend, lines],
  );

  return (
    <div
      className="chart-box"
      style={height ? { height } : undefined}
      data-testid={testId}
      data-points={lines[0]?.data.length ?? 0}
      data-last={lines[0]?.data[lines[0].data.length - 1]?.y ?? ''}
    >
      <Line data={data} options={options} updateMode="none" datasetIdKey="label" />
    </div>
  );
}

/** Points per line beyond which a step window is drawn from the envelope too. */
const WINDOW_RAW_LIMIT = 20000;

function visible(
  pts: Point[],
  xMin: number | undefined,
  decimators: Map<string, Decimator>,
  key: string,
): Point[] {
  if (!chartTuning.fast) return pts.slice();
  if (xMin !== undefined) {
    const from = Math.max(0, lowerBound(pts, pts.length, xMin) - 1);
    if (pts.length - from <= WINDOW_RAW_LIMIT) return pts.slice(from);
  }
  let d = decimators.get(key);
  if (!d) decimators.set(key, (d = new Decimator()));
  return d.view(pts).slice();
}

export function hexAlpha(hex: string, alpha: number): string {
  const m = /^#([0-9a-f]{6})$/i.exec(hex);
  if (!m) return hex;
  const n = parseInt(m[1], 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}
