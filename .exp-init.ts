import { initBackend } from './src/backend.ts';
const t0 = performance.now();
const r = await initBackend({ backend: 'wasm', wasmThreads: process.argv[2] === '1', threads: 2, log: (m, f) => process.stderr.write(m + ' ' + JSON.stringify(f) + '\n') });
console.log(r, (performance.now() - t0).toFixed(0), 'ms', (process.memoryUsage().rss/1e6).toFixed(0), 'MB');
