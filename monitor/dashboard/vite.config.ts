// Vite build and dev server for the dashboard, plus the vitest settings.
// `npm run dev` proxies /ws and /api to a running aggregator
// (SHARDLM_MONITOR, default http://127.0.0.1:8765), so the page behaves as when
// `shardlm monitor --static dist` serves it.
import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

const monitor = process.env.SHARDLM_MONITOR ?? 'http://127.0.0.1:8765';

export default defineConfig({
  plugins: [react()],
  base: './',
  build: { outDir: 'dist', sourcemap: false, chunkSizeWarningLimit: 1000 },
  server: {
    proxy: {
      '/ws': { target: monitor.replace(/^http/, 'ws'), ws: true },
      '/api': monitor,
      '/metrics': monitor,
    },
  },
  test: {
    environment: 'jsdom',
    globals: true,
    include: ['test/**/*.test.{ts,tsx}'],
  },
});
