'use strict';
// A reader of gs-onnx model folders for Node.js, written from docs/manifest.md alone.
//   loadModel(dir)            -> a verified model (manifest read, every path and sha256 checked)
//   await cutGenerator(m, c)  -> { inputs, shapes, size, forward(packed, B), vjp(env, gradX01, B) }
//   await objective(...)      -> f and its gradient for a dense operator (or the identity)
// Sessions are created from the verified bytes, their weights supplied in memory (externalData): ONNX
// Runtime never opens a path of the model folder itself.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const ort = require('onnxruntime-node');

class GSError extends Error {}

function safePath(root, rel) {
  if (typeof rel !== 'string' || !rel || path.isAbsolute(rel) || rel.includes('\\') ||
      /^.:/.test(rel) || rel.split('/').includes('..')) {
    throw new GSError(`manifest path ${JSON.stringify(rel)} is not a relative path inside the model folder`);
  }
  const realRoot = fs.realpathSync(root);
  const p = path.join(root, rel);
  const real = fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p);
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
    throw new GSError(`manifest path ${JSON.stringify(rel)} escapes the model folder`);
  }
  return p;
}

function loadModel(dir) {
  const mf = path.join(dir, 'manifest.json');
  if (!fs.existsSync(mf)) throw new GSError(`no manifest.json in ${dir}`);
  if (fs.statSync(mf).size > 4 << 20) throw new GSError(`${mf} is too large to be a manifest`);
  const man = JSON.parse(fs.readFileSync(mf, 'utf8'));
  if (man.format !== 'gs-onnx-manifest' || man.format_version !== 1) throw new GSError(`${mf}: not a gs-onnx manifest v1`);
  const files = man.files || {};
  const bytes = {};
  // every path field of the specification, and every listed file: inside the folder, and its sha256
  const paths = new Set(Object.keys(files));
  for (const b of man.blocks) {
    for (const g of [b.forward, b.vjp]) paths.add(g.file);
    if (b.weights) paths.add(b.weights);
  }
  for (const rel of paths) {
    const p = safePath(dir, rel);
    if (!(rel in files)) throw new GSError(`${rel} is not listed (with its sha256) in the manifest`);
    const data = fs.readFileSync(p);
    if (crypto.createHash('sha256').update(data).digest('hex') !== files[rel]) {
      throw new GSError(`checksum mismatch for ${rel}: the file was modified or corrupted`);
    }
    bytes[rel] = data;
  }
  const [lo, hi] = man.output_range;
  if (!(Number.isFinite(lo) && Number.isFinite(hi) && lo < hi)) throw new GSError('output_range must be lo < hi');
  return { dir, man, bytes, scale: 1 / (hi - lo), shift: -lo / (hi - lo) };
}

const SESSION_OPTIONS = {
  executionProviders: ['cpu'],
  graphOptimizationLevel: 'all',
  // chained sessions: idle spinning workers of one session slow the next one down (docs/manifest.md, 4)
  extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
};

async function session(model, graph, block) {
  const externalData = block.weights ? [{ path: block.weights, data: new Uint8Array(model.bytes[block.weights]) }] : [];
  const s = await ort.InferenceSession.create(new Uint8Array(model.bytes[graph.file]), { ...SESSION_OPTIONS, externalData });
  const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);
  if (!same(s.inputNames, graph.inputs) || !same(s.outputNames, graph.outputs)) {
    throw new GSError(`${graph.file} does not compute what the manifest says`);
  }
  return s;
}

const prod = (a) => a.reduce((x, y) => x * y, 1);

async function cutGenerator(model, cut) {
  const man = model.man;
  if (!(Number.isInteger(cut) && cut >= 0 && cut < man.blocks.length)) throw new GSError(`cut ${cut} out of range`);
  const inputs = man.cuts[cut].inputs;
  const shapes = Object.fromEntries(inputs.map(n => [n, man.tensors[n]]));
  const size = inputs.reduce((s, n) => s + prod(shapes[n]), 0);
  const blocks = [];
  for (let k = cut; k < man.blocks.length; k++) {
    const b = man.blocks[k];
    blocks.push({ spec: b, fwd: await session(model, b.forward, b), vjp: await session(model, b.vjp, b) });
  }

  async function forward(packed, B) {
    // unpack: the cut's inputs in manifest order, each C-order, concatenated per image
    const env = {};
    let off = 0;
    for (const n of inputs) {
      const k = prod(shapes[n]);
      const t = new Float32Array(B * k);
      for (let i = 0; i < B; i++) t.set(packed.subarray(i * size + off, i * size + off + k), i * k);
      env[n] = new ort.Tensor('float32', t, [B, ...shapes[n]]);
      off += k;
    }
    for (const { spec, fwd } of blocks) {
      const feeds = Object.fromEntries(spec.forward.inputs.map(n => [n, env[n]]));
      Object.assign(env, await fwd.run(feeds));
    }
    const x = env[man.image.name].data;
    const x01 = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) x01[i] = Math.fround(Math.fround(x[i] * model.scale) + model.shift);
    return { x01, env };
  }

  async function vjp(env, gradX01, B) {
    const image = man.image.name;
    const grad = {};
    const g = new Float32Array(gradX01.length);
    for (let i = 0; i < g.length; i++) g[i] = Math.fround(gradX01[i] * model.scale);
    grad[image] = new ort.Tensor('float32', g, [B, ...man.tensors[image]]);
    for (let j = blocks.length - 1; j >= 0; j--) {
      const { spec, vjp: s } = blocks[j];
      if (!spec.outputs.some(n => n in grad)) continue;
      const feeds = {};
      for (const n of spec.vjp.inputs) {
        if (n.startsWith('grad_') && spec.outputs.includes(n.slice(5))) {
          const o = n.slice(5);
          feeds[n] = grad[o] || new ort.Tensor('float32', new Float32Array(env[o].data.length), env[o].dims);
        } else {
          feeds[n] = env[n];
        }
      }
      const out = await s.run(feeds);
      for (const [name, t] of Object.entries(out)) {
        const n = name.slice(5);
        if (n in grad) {
          const acc = new Float32Array(grad[n].data.length);
          for (let i = 0; i < acc.length; i++) acc[i] = Math.fround(grad[n].data[i] + t.data[i]);
          grad[n] = new ort.Tensor('float32', acc, t.dims);
        } else {
          grad[n] = t;
        }
      }
    }
    const packed = new Float32Array(B * size);
    let off = 0;
    for (const n of inputs) {
      const k = prod(shapes[n]);
      for (let i = 0; i < B; i++) packed.set(grad[n].data.subarray(i * k, (i + 1) * k), i * size + off);
      off += k;
    }
    return packed;
  }

  return { inputs, shapes, size, forward, vjp };
}

// f(z) = ||A x01(z) - y||^2 / m and df/dz for one image (B = 1); A: Float32Array (m x n, row-major) or null
// for the identity. Sums in float64, A products accumulated in float64 then rounded (numpy's float32 BLAS may
// differ in the last bits: the tests compare gradients to 1e-6 relative).
async function objective(gen, z, A, y, m, n) {
  const { x01, env } = await gen.forward(z, 1);
  const r = new Float64Array(m);
  for (let j = 0; j < m; j++) {
    let s = 0;
    if (A) { const row = j * n; for (let i = 0; i < n; i++) s += A[row + i] * x01[i]; } else s = x01[j];
    r[j] = Math.fround(s) - y[j];
  }
  let f = 0;
  for (let j = 0; j < m; j++) f += r[j] * r[j];
  f /= m;
  const gx = new Float64Array(n);
  if (A) {
    for (let j = 0; j < m; j++) { const c = 2 * r[j] / m, row = j * n; for (let i = 0; i < n; i++) gx[i] += c * A[row + i]; }
  } else {
    for (let i = 0; i < n; i++) gx[i] = 2 * r[i] / m;
  }
  const g = await gen.vjp(env, Float32Array.from(gx), 1);
  return { f, g, x01 };
}

module.exports = { GSError, loadModel, cutGenerator, objective, safePath };
