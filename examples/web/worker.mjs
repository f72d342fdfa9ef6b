// The recovery itself, in a module worker so that the page never blocks: one onnxruntime-web session runs the
// recovery graph in chunks of iterations, the loop state kept here and fed back between runs (recovery.json's
// `resume`), and after every run posts the current image, the iterations reached and the time.
//
// The execution provider (msg.ep): 'wasm' (onnxruntime-web's WASM bundle, as before) or 'webgpu' (its default bundle:
// the WebGPU backend, JSEP, runs what it supports - the generator's convolutions, float32 element-wise work - and WASM
// the rest, the float64 L-BFGS bookkeeping and the Loop; docs/recovery-graph.md section 11 lists the placement).
// With msg.proof the WebGPU kernels that ran are counted by type (onnxruntime-web's WebGPU profiling), so that a test
// can tell a WebGPU run from one that fell back whole to WASM.
//
// in:  {type: 'run', graph, inputs, state, threads, chunk, trace, wasmPaths, ep, proof}   then optionally {type: 'stop'}
// out: {type: 'ready', version, ep, device} | {type: 'progress', image, dims, iterations, objective, seconds, runs, chunk}
//      | {type: 'done', ...progress, winner, stopped, trace, kernels} | {type: 'error', message, refused}
import { FolderError, checkAgainstGraph } from './folder.mjs';

const BUNDLES = { wasm: './node_modules/onnxruntime-web/dist/ort.wasm.min.mjs',
                  webgpu: './node_modules/onnxruntime-web/dist/ort.min.mjs' };
let ort = null;
let stop = false;
// Seconds of work per run of the graph when the page does not fix the chunk: every run ends by computing each
// restart's image and copying the loop state out and back in, which cost BEGAN 15-30 % of its time at one second a
// run (docs/benchmarks.md); two seconds halve that and still show progress often.
const PACE = 2.0;

function copy(t) {
  return { dtype: t.type, dims: [...t.dims], data: t.data.slice() };
}

async function run(msg) {
  const ep = msg.ep || 'wasm';
  if (!(ep in BUNDLES)) throw new Error(`unknown execution provider ${JSON.stringify(ep)} (wasm or webgpu)`);
  ort = await import(BUNDLES[ep]);
  ort.env.wasm.wasmPaths = msg.wasmPaths;
  ort.env.wasm.numThreads = msg.threads;
  const kernels = {};
  if (ep === 'webgpu' && msg.proof) {
    ort.env.webgpu.profiling = { mode: 'default', ondata: (d) => { kernels[d.kernelType] = (kernels[d.kernelType] || 0) + 1; } };
  }
  let session;
  try {
    session = await ort.InferenceSession.create(msg.graph, { executionProviders: [ep], graphOptimizationLevel: 'all' });
  } catch (e) {
    throw new Error(`onnxruntime-web cannot load this graph on ${ep}: ${e.message}`);
  }
  try {
    checkAgainstGraph(session, msg.inputs);
    const device = ep === 'webgpu' ? Boolean(ort.env.webgpu.device) : null;
    postMessage({ type: 'ready', version: ort.env.versions?.web || '', ep, device });
    const feeds = {};
    for (const [name, a] of Object.entries(msg.inputs)) feeds[name] = new ort.Tensor(a.dtype, a.data, a.shape);
    const total = Number(msg.inputs.chunk.data[0]);
    const trace = {};
    const traceAt = new Set(msg.trace);
    let start = 0;
    let chunk = msg.chunk || Math.min(2, total);
    let seconds = 0;
    let runs = 0;
    for (;;) {
      feeds.start = new ort.Tensor('int64', BigInt64Array.from([BigInt(start)]), []);
      feeds.chunk = new ort.Tensor('int64', BigInt64Array.from([BigInt(chunk)]), []);
      const before = traceAt.has(runs) ? Object.fromEntries(Object.keys(msg.state).map((k) => [k, copy(feeds[k])])) : null;
      const t0 = performance.now();
      const out = await session.run(feeds);
      const dt = (performance.now() - t0) / 1000;
      seconds += dt;
      if (before) {
        trace[runs] = { start, chunk, state: before, image: copy(out.image),
                        next: Object.fromEntries(Object.values(msg.state).map((k) => [k, copy(out[k])])) };
      }
      for (const [inName, outName] of Object.entries(msg.state)) feeds[inName] = out[outName];
      runs += 1;
      const o = out.objective;
      const objective = [];
      for (let r = 0; r < o.dims[0]; r++) objective.push(Math.min(...o.data.slice(r * o.dims[1], (r + 1) * o.dims[1])));
      const report = { image: out.image.data, dims: out.image.dims, iterations: Array.from(out.iterations.data, Number),
                       objective, seconds, runs, chunk, total };
      await new Promise((r) => setTimeout(r, 0));   // let a 'stop' arrive
      if (!out.running.data[0] || stop) {
        postMessage({ type: 'done', ...report, winner: Number(out.winner.data[0]), stopped: stop, trace, kernels });
        return;
      }
      postMessage({ type: 'progress', ...report });
      start += chunk;
      // about PACE seconds a run (the first run also evaluates the start: it only sets the pace)
      if (!msg.chunk) chunk = Math.max(1, Math.min(100, Math.round(PACE / Math.max(dt / chunk, 1e-4))));
    }
  } finally {
    await session.release();
  }
}

onmessage = (ev) => {
  if (ev.data.type === 'stop') { stop = true; return; }
  if (ev.data.type === 'run') {
    run(ev.data).catch((e) => postMessage({ type: 'error', message: e.message, refused: e instanceof FolderError }));
  }
};
