// The page: load a recovery folder (served, or picked), verify it (folder.mjs), run the recovery graph with
// onnxruntime-web in a worker (worker.mjs) in chunks of iterations (the loop state fed back between runs,
// recovery.json's `resume`), and show truth | what was measured | the recovery as it improves, with the PSNR, the
// iteration and the time.
//
// URL parameters: folder=URL (default folder/, what `python -m gs_onnx serve-demo` serves; none: wait for a
// pick), threads=N (WASM threads; default: min(4, cores) when cross-origin isolated, else 1), chunk=N (iterations
// per run; default: about two seconds' worth), max_mb=N (the largest file accepted, default 1024),
// trace=i,j (keep the state going into and out of those chunks: window.gs.trace, for the tests), ep=webgpu|wasm (the
// execution provider; default: WebGPU where navigator.gpu offers a hardware adapter, WASM where it offers none or only
// a software one such as SwiftShader, on which a recovery is hundreds of times slower than on WASM), proof=1 (count
// the WebGPU kernels that ran: window.gs.result.kernels).
import { FolderError, fileSource, readFolder, urlSource } from './folder.mjs';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const maxBytes = Number(params.get('max_mb') || 1024) * 1e6;
const fixedChunk = params.get('chunk') ? Math.max(1, Number(params.get('chunk'))) : null;
const traceAt = new Set((params.get('trace') || '').split(',').filter((s) => s !== '').map(Number));
const isolated = globalThis.crossOriginIsolated === true;
const proof = params.get('proof') === '1';

// What the tests and the benchmark read: state idle | loading | running | done | refused | error.
const gs = { state: 'idle', message: '', result: null, trace: {}, webgpu: null, ep: null, isolated, longestPauseMs: 0 };
window.gs = gs;

// How responsive the page stays while the worker recovers: the longest gap between 50 ms ticks, while running.
let lastTick = performance.now();
setInterval(() => {
  const now = performance.now();
  if (gs.state === 'running') gs.longestPauseMs = Math.max(gs.longestPauseMs, now - lastTick);
  lastTick = now;
}, 50);

const wasmPaths = new URL('./node_modules/onnxruntime-web/dist/', location.href).href;

function say(kind, text) {
  const el = $('message');
  el.className = kind;
  el.textContent = text;
  gs.message = text;
}

function setupThreads() {
  const sel = $('threads');
  const cores = navigator.hardwareConcurrency || 1;
  const choices = isolated ? [...new Set([1, 2, 4, cores])].filter((t) => t <= Math.max(cores, 1)).sort((a, b) => a - b) : [1];
  for (const t of choices) sel.add(new Option(String(t), String(t)));
  const want = Number(params.get('threads') || (isolated ? Math.min(4, cores) : 1));
  sel.value = String(choices.includes(want) ? want : choices[choices.length - 1]);
  sel.title = isolated ? 'WASM threads' : 'one thread: the page is not cross-origin isolated (serve it with serve-demo)';
}

// (C, H, W) float32 in [0, 1] onto a canvas (values outside are clamped for display only)
function draw(canvas, data, [C, H, W], caption) {
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d');
  const img = ctx.createImageData(W, H);
  for (let p = 0; p < H * W; p++) {
    for (let c = 0; c < 4; c++) {
      const v = c === 3 ? 1 : data[(C === 1 ? 0 : c) * H * W + p];
      img.data[4 * p + c] = Math.round(255 * Math.min(1, Math.max(0, v)));
    }
  }
  ctx.putImageData(img, 0, 0);
  if (caption) canvas.nextElementSibling.textContent = caption;
}

// A look at the measurements: the back-projection A^T y for a dense operator (contrast stretched between its 1st
// and 99th percentiles), else the m numbers as a grey strip.
function measuredView(iface, inputs) {
  const [C, H, W] = iface.image_shape;
  const y = inputs.y.data;
  const m = iface.m;
  const n = C * H * W;
  if (inputs.A) {
    const A = inputs.A.data;
    const v = new Float64Array(n);
    for (let i = 0; i < m; i++) {
      const yi = y[i];
      const row = i * n;
      for (let j = 0; j < n; j++) v[j] += A[row + j] * yi;
    }
    return { data: stretch(v), dims: [C, H, W],
             what: `A\u1d40y, the back-projection of the ${m} measurements (m/n ${(m / n).toFixed(3)})` };
  }
  const side = Math.ceil(Math.sqrt(m));
  const v = new Float64Array(side * side).fill(NaN);
  v.set(y);
  return { data: stretch(v), dims: [1, side, side],
           what: `the ${m} measurements (${iface.operator?.type || 'operator'}) as a grey strip` };
}

function stretch(v) {
  const finite = Array.from(v).filter(Number.isFinite).sort((a, b) => a - b);
  const lo = finite[Math.floor(0.01 * (finite.length - 1))];
  const hi = finite[Math.ceil(0.99 * (finite.length - 1))];
  return Float32Array.from(v, (x) => (Number.isFinite(x) ? (x - lo) / Math.max(hi - lo, 1e-12) : 0.5));
}

function psnr(a, b) {
  let s = 0;
  for (let i = 0; i < a.length; i++) { const d = a[i] - b[i]; s += d * d; }
  return 10 * Math.log10(a.length / s);
}

let worker = null;
const STOP_GRACE_MS = 10000;   // a run takes about two seconds (worker.mjs, PACE)

// The worker's answers as a promise per run; progress drawn as it comes.
function recoverInWorker(msg, transfer, onProgress) {
  return new Promise((resolve, reject) => {
    worker = new Worker(new URL('./worker.mjs', import.meta.url), { type: 'module' });
    // Stop asks the worker to stop after its current run; a run that never returns (a graph whose loop never ends,
    // rule 9) cannot hear it, so the worker is ended instead when no answer came within STOP_GRACE_MS.
    worker.kill = () => reject(new Error(`the graph's run did not return within ${STOP_GRACE_MS / 1000} s of Stop: ` +
                                         'the worker was ended, no image'));
    worker.onerror = (e) => reject(new Error(`the recovery worker failed: ${e.message || 'could not start'}`));
    worker.onmessage = (ev) => {
      const d = ev.data;
      if (d.type === 'ready') onProgress(d);
      else if (d.type === 'progress') onProgress(d);
      else if (d.type === 'done') resolve(d);
      else if (d.type === 'error') reject(d.refused ? new FolderError(d.message) : new Error(d.message));
    };
    worker.postMessage(msg, transfer);
  }).finally(() => { worker.terminate(); worker = null; });
}

async function run(source) {
  gs.state = 'loading';
  gs.result = null;
  gs.trace = {};
  gs.longestPauseMs = 0;
  $('progress').value = 0;
  for (const id of ['load-served', 'pick', 'pick-dir']) $(id).disabled = true;
  try {
    say('info', `Checking ${source.label} against recovery.json\u2026`);
    const folder = await readFolder(source, (step) => say('info', `Checking ${source.label}: ${step}\u2026`));
    const { iface, inputs, reference } = folder;
    const shape = iface.image_shape;
    const plan = iface.plan || {};
    $('s-model').textContent = `${iface.model}, cut ${iface.cut} (image ${shape.join(' x ')})`;
    $('s-meas').textContent = `${iface.operator?.type || '?'}, m = ${iface.m} of n = ${iface.n} (${iface.measurements || ''})`;
    $('s-plan').textContent = `${plan.restarts} restart(s) x ${plan.max_iter} iterations, ${plan.stopping?.rule} rule, ${plan.optimizer}`;
    for (const id of ['truth', 'measured', 'recovered']) $(id).getContext('2d').clearRect(0, 0, 9999, 9999);
    if (reference) draw($('truth'), reference.data, shape, 'truth (reference.npy)');
    else $('truth-cap').textContent = 'truth: the folder has no reference.npy';
    const mv = measuredView(iface, inputs);
    draw($('measured'), mv.data, mv.dims, mv.what);

    const threads = Number($('threads').value);
    say('info', 'Files verified. Creating the onnxruntime-web session\u2026');
    const total = Number(inputs.chunk.data[0]);
    const runtime = (v) => `onnxruntime-web ${v}, ${gs.ep === 'webgpu' ? 'WebGPU (what it lacks on WASM)' : 'WASM'} ` +
      `in a worker, ${threads} WASM thread(s)${isolated ? '' : ' (not cross-origin isolated: one thread)'}; ` +
      `WebGPU: ${gs.webgpu || 'not checked'}`;
    const show = (d) => {
      if (d.type === 'ready') {
        gs.state = 'running';
        gs.device = d.device;
        $('stop').disabled = false;
        $('s-runtime').textContent = runtime(d.version);
        say('info', 'Recovering\u2026');
        return;
      }
      const reached = Math.max(...d.iterations);
      const p = reference ? psnr(d.image, reference.data) : null;
      draw($('recovered'), d.image, shape, `recovered: iteration ${reached}${p === null ? '' : `, ${p.toFixed(2)} dB`}`);
      $('progress').value = reached / total;
      $('s-iter').textContent = `${reached} of at most ${total} (${d.runs} run(s) of the graph, the last of ${d.chunk})`;
      if (d.objective.length) $('s-obj').textContent = d.objective[d.objective.length - 1].toExponential(4);
      $('s-psnr').textContent = p === null ? 'no reference' : `${p.toFixed(2)} dB`;
      $('s-time').textContent = `${d.seconds.toFixed(2)} s, ${(1000 * d.seconds / Math.max(reached, 1)).toFixed(1)} ms / iteration`;
    };
    const msg = { type: 'run', graph: folder.graph, inputs, state: iface.resume.state, threads, chunk: fixedChunk,
                  trace: [...traceAt], wasmPaths, ep: gs.ep, proof };
    const transfer = [folder.graph.buffer, ...Object.values(inputs).map((a) => a.data.buffer)];
    const d = await recoverInWorker(msg, transfer, show);
    show(d);
    const winner = d.winner;
    const p = reference ? psnr(d.image, reference.data) : null;
    gs.trace = d.trace;
    gs.result = { image: d.image, dims: d.dims, psnr: p, psnrText: $('s-psnr').textContent, iterations: d.iterations,
                  winner, seconds: d.seconds, runs: d.runs, threads, stopped: d.stopped,
                  msPerIteration: 1000 * d.seconds / Math.max(d.iterations[winner], 1), objective: d.objective,
                  ep: gs.ep, kernels: d.kernels };
    gs.state = 'done';
    say('ok', `${d.stopped ? 'Stopped' : 'Recovered'}: restart ${winner + 1} of ${d.iterations.length}, ` +
              `${d.iterations[winner]} iterations in ${d.seconds.toFixed(2)} s${p === null ? '' : `, PSNR ${p.toFixed(2)} dB`}.`);
  } catch (e) {
    gs.state = e instanceof FolderError ? 'refused' : 'error';
    say('error', `${e instanceof FolderError ? 'Refused, nothing was run' : 'Error'}: ${e.message}`);
  } finally {
    $('stop').disabled = true;
    for (const id of ['load-served', 'pick', 'pick-dir']) $(id).disabled = false;
  }
}

async function main() {
  setupThreads();
  try {
    const adapter = navigator.gpu ? await navigator.gpu.requestAdapter() : null;
    const info = adapter?.info || {};
    const software = adapter && (adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe/i
      .test(`${info.vendor} ${info.architecture} ${info.description}`));
    gs.ep = params.get('ep') || (adapter && !software ? 'webgpu' : 'wasm');
    gs.webgpu = adapter ? `adapter ${[info.vendor, info.architecture, info.description].filter((v) => v).join(' ') || '(no info)'}` +
      `${software ? ', a software adapter' : ''}` : 'no adapter';
  } catch (e) {
    gs.ep = params.get('ep') || 'wasm';
    gs.webgpu = `no adapter (${e.message})`;
  }
  if (!['webgpu', 'wasm'].includes(gs.ep)) {
    say('error', `Unknown ep=${gs.ep}: webgpu or wasm`);
    gs.state = 'error';
    return;
  }
  $('load-served').onclick = () => run(urlSource(params.get('folder') || 'folder/', maxBytes));
  for (const id of ['pick', 'pick-dir']) {
    $(id).onchange = (ev) => {
      try {
        run(fileSource(ev.target.files, maxBytes));
      } catch (e) {
        gs.state = 'refused';
        say('error', `Refused, nothing was run: ${e.message}`);
      }
    };
  }
  $('stop').onclick = () => {
    const w = worker;
    if (!w) return;
    w.postMessage({ type: 'stop' });
    setTimeout(() => { if (worker === w) w.kill(); }, STOP_GRACE_MS);
  };
  say('info', 'Pick a recovery folder (gs-export recovery), or load the served one.');
  if (params.get('folder') !== '') {
    const probe = await fetch(new URL(`${params.get('folder') || 'folder/'}`.replace(/\/?$/, '/recovery.json'), location.href),
                              { method: 'HEAD' }).catch(() => null);
    if (probe?.ok) await run(urlSource(params.get('folder') || 'folder/', maxBytes));
  }
}

main();
