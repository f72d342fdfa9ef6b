'use strict';
// The reader's rules for a recovery folder (docs/recovery-graph.md, section 12), in JavaScript, written from that page:
// readFolder(folder) checks rules 1-8 and 10 and returns { graph, inputs, iface, reference } or throws a GSError whose
// message ends with "(rule N)". recover.js and conformance.js use it.
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { parseNpy } = require('./npy');

class GSError extends Error {}
const fail = (rule, what) => new GSError(`${what} (rule ${rule})`);

const MAX_INTERFACE = 4 << 20;
const MAX_FILE = 8 * 2 ** 30;
const MAX_NODE_FILE = 2 ** 31 - 1;   // what fs.readFileSync can hold in one Buffer
const MAX_COUNT = 1000000;
const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const DTYPES = ['float32', 'float64', 'int64', 'bool'];

// ---------------------------------------------------------------------------------------------- strict JSON (rule 1)
// JSON.parse takes the last of two equal keys without a word: this parser refuses them (and NaN, as JSON.parse does).
function strictJson(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const err = (what) => { throw new Error(`${what} at ${i}`); };
  function value() {
    ws();
    const c = text[i];
    if (c === '{') {
      i++; const obj = {}; const seen = new Set(); ws();
      if (text[i] === '}') { i++; return obj; }
      for (;;) {
        ws(); if (text[i] !== '"') err('a key expected');
        const k = str();
        if (seen.has(k)) err(`the key ${JSON.stringify(k)} twice`);
        seen.add(k); ws(); if (text[i] !== ':') err('":" expected'); i++;
        obj[k] = value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return obj; }
        err('"," or "}" expected');
      }
    }
    if (c === '[') {
      i++; const arr = []; ws();
      if (text[i] === ']') { i++; return arr; }
      for (;;) {
        arr.push(value()); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return arr; }
        err('"," or "]" expected');
      }
    }
    if (c === '"') return str();
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (m) { i += m[0].length; return Number(m[0]); }
    for (const [w, v] of [['true', true], ['false', false], ['null', null]]) {
      if (text.startsWith(w, i)) { i += w.length; return v; }
    }
    return err('a JSON value expected');
  }
  function str() {
    const start = i; i++;
    while (i < text.length && text[i] !== '"') { if (text[i] === '\\') i++; i++; }
    if (i >= text.length) err('an unterminated string');
    i++;
    return JSON.parse(text.slice(start, i));
  }
  const v = value(); ws();
  if (i !== text.length) err('text after the value');
  return v;
}

// ------------------------------------------------------------------------------------ a minimal protobuf walker (rule 6)
function fields(buf, start = 0, end = buf.length) {
  // [{ field, wire, value (a number) or [from, to) (length-delimited) }]
  const out = [];
  let i = start;
  const varint = () => {
    let r = 0n, shift = 0n;
    for (;;) {
      if (i >= end) throw new Error('truncated varint');
      const b = buf[i++];
      r |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return r;
      shift += 7n;
    }
  };
  while (i < end) {
    const key = Number(varint());
    const field = key >>> 3, wire = key & 7;
    if (wire === 0) out.push({ field, wire, value: varint() });
    else if (wire === 1) { i += 8; out.push({ field, wire }); }
    else if (wire === 5) { i += 4; out.push({ field, wire }); }
    else if (wire === 2) {
      const len = Number(varint());
      if (i + len > end) throw new Error('truncated field');
      out.push({ field, wire, from: i, to: i + len }); i += len;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}
const sub = (buf, f) => fields(buf, f.from, f.to);
const text = (buf, f) => buf.slice(f.from, f.to).toString('utf8');

function* tensors(buf, graph) {      // every TensorProto of a graph and of its subgraphs (GraphProto field list)
  for (const f of graph) {
    if (f.field === 5) yield sub(buf, f);                 // initializer
    if (f.field === 1) {                                  // node
      for (const a of sub(buf, f).filter((x) => x.field === 5)) {   // attribute
        for (const x of sub(buf, a)) {
          if (x.field === 5 || x.field === 10) yield sub(buf, x);   // t, tensors
          if (x.field === 6 || x.field === 11) yield* tensors(buf, sub(buf, x));   // g, graphs
        }
      }
    }
  }
}

function checkGraph(buf, iface, initializersOut) {
  let model;
  try { model = fields(buf); } catch (e) { throw fail(6, `recovery.onnx is not an ONNX model (${e.message})`); }
  const ir = model.find((f) => f.field === 1);
  const irv = ir ? Number(ir.value) : 0;
  if (irv < 7 || irv > 10) throw fail(6, `recovery.onnx has IR version ${irv}; readers accept 7..10`);
  for (const f of model.filter((x) => x.field === 8)) {
    const ops = sub(buf, f);
    const d = ops.find((x) => x.field === 1), v = ops.find((x) => x.field === 2);
    const domain = d ? text(buf, d) : '', version = v ? Number(v.value) : 0;
    if (domain !== '' && domain !== 'ai.onnx') throw fail(6, `recovery.onnx imports the operator domain ${JSON.stringify(domain)}`);
    if (version < 13 || version > 18) throw fail(6, `recovery.onnx uses opset ${version}; readers accept 13..18`);
  }
  if (model.some((f) => f.field === 25)) throw fail(6, 'recovery.onnx defines model-local functions');
  const g = model.find((f) => f.field === 7);
  if (!g) throw fail(6, 'recovery.onnx has no graph');
  const graph = sub(buf, g);
  for (const t of tensors(buf, graph)) {
    const loc = t.find((x) => x.field === 14);
    if ((loc && Number(loc.value) === 1) || t.some((x) => x.field === 13)) {
      const nm = t.find((x) => x.field === 8);
      throw fail(6, `recovery.onnx keeps tensor ${nm ? JSON.stringify(text(buf, nm)) : ''} in external data`);
    }
  }
  const inits = new Set(graph.filter((f) => f.field === 5).map((f) => {
    const nm = sub(buf, f).find((x) => x.field === 8); return nm ? text(buf, nm) : '';
  }));
  const declared = graph.filter((f) => f.field === 11).map((f) => text(buf, sub(buf, f).find((x) => x.field === 1)))
    .filter((n) => !inits.has(n));
  const want = Object.keys(iface.inputs);
  const a = [...declared].sort().join('\0'), b = [...want].sort().join('\0');
  if (a !== b) throw fail(6, "the graph's inputs and the interface's differ");
}

// ------------------------------------------------------------------------------------------------------- the folder
function inside(folder, rel, rule) {
  if (typeof rel !== 'string' || !rel || path.isAbsolute(rel) || rel.includes('\\') || rel.split('/').includes('..')
      || /^[A-Za-z]:/.test(rel)) {
    throw fail(rule, `${JSON.stringify(rel)} is not a relative path inside the recovery folder`);
  }
  const p = path.join(folder, rel);
  let st;
  try { st = fs.statSync(p); } catch (e) { throw fail(rule, `${rel} is missing from ${folder}`); }
  if (!st.isFile()) throw fail(rule, `${rel} is not a regular file`);
  const real = fs.realpathSync(p), root = fs.realpathSync(folder);
  if (!real.startsWith(root + path.sep)) throw fail(rule, `${rel} escapes the recovery folder`);
  if (st.size > MAX_FILE) throw fail(5, `${rel} is larger than 8 GiB`);
  if (st.size > MAX_NODE_FILE) throw fail(5, `${rel} is ${st.size} bytes: this reader holds files up to 2 GiB`);
  return p;
}

function verified(folder, files, rel) {
  const data = fs.readFileSync(inside(folder, rel, 5));
  if (crypto.createHash('sha256').update(data).digest('hex') !== files[rel]) {
    throw fail(5, `${rel} does not match its sha256 in recovery.json`);
  }
  return data;
}

const isInt = (v, lo = 0, hi = MAX_COUNT) => Number.isInteger(v) && v >= lo && v <= hi;

function checkFields(iface) {                                          // rule 3
  const need = (c, w) => { if (!c) throw fail(3, w); };
  need(typeof iface.model === 'string' && iface.model, 'model must be a non-empty string');
  need(typeof iface.model_sha256 === 'string' && HEX64.test(iface.model_sha256), 'model_sha256 must be 64 hex digits');
  need(isInt(iface.cut) && isInt(iface.image), 'cut and image must be integers >= 0');
  const s = iface.image_shape;
  need(Array.isArray(s) && s.length === 3 && s.every((v) => isInt(v, 1, 65536)), 'image_shape must be three integers >= 1');
  need(iface.operator && typeof iface.operator === 'object' && typeof iface.operator.type === 'string', 'operator needs a type');
  need(isInt(iface.m, 1, 2 ** 40), 'm must be an integer >= 1');
  need(iface.n === s[0] * s[1] * s[2], 'n must be C * H * W of image_shape');
  need(iface.method === undefined || ['gs', 'gs-pnp', 'gs-tv'].includes(iface.method), 'method must be gs, gs-pnp or gs-tv');
  const p = iface.plan;
  need(p && typeof p === 'object' && isInt(p.restarts, 1, 1000) && isInt(p.max_iter, 1) && p.stopping && typeof p.stopping === 'object',
       'plan must give restarts, max_iter and stopping');
  need(iface.graph === 'recovery.onnx', 'graph must be recovery.onnx');
  need(iface.inputs && typeof iface.inputs === 'object' && iface.files && typeof iface.files === 'object', 'inputs and files must be objects');
  for (const [name, d] of Object.entries(iface.inputs)) {
    need(NAME.test(name), `input name ${JSON.stringify(name.slice(0, 40))} is not [A-Za-z][A-Za-z0-9_]*`);
    need(d && d.file === `inputs/${name}.npy`, `input ${JSON.stringify(name)} must come from inputs/${name}.npy`);
  }
  need(iface.outputs && typeof iface.outputs === 'object' && iface.outputs.image, 'outputs must name image');
  need(iface.reference === undefined || iface.reference === 'reference.npy', 'reference must be reference.npy');
  if (iface.method === 'gs-pnp') need(p.pnp && Array.isArray(p.pnp.candidates), 'a gs-pnp plan must give pnp.candidates');
  if (iface.method === 'gs-tv') need(p.tv && typeof p.tv === 'object', 'a gs-tv plan must give tv');
}

function checkFiles(iface) {                                           // rule 4
  const want = new Set(['recovery.onnx', ...Object.keys(iface.inputs).map((n) => `inputs/${n}.npy`)]);
  if (iface.reference) want.add('reference.npy');
  for (const rel of Object.keys(iface.files)) if (!want.has(rel)) throw fail(4, `files lists ${JSON.stringify(rel)}, which nothing reads`);
  for (const rel of want) if (!(rel in iface.files)) throw fail(4, `files lists no sha256 for ${JSON.stringify(rel)}`);
  for (const [rel, d] of Object.entries(iface.files)) {
    if (typeof d !== 'string' || !HEX64.test(d)) throw fail(4, `the sha256 of ${rel} is not 64 hex digits`);
  }
}

const scalar = (a) => (a.shape.length === 0 ? Number(a.data[0]) : NaN);
const shapeIs = (a, s) => a && JSON.stringify(a.shape) === JSON.stringify(s);

function checkConsistency(inputs, iface) {                             // rule 7
  const need = (c, w) => { if (!c) throw fail(7, w); };
  const { m, n } = iface;
  need(shapeIs(inputs.y, [1, m]) && shapeIs(inputs.w, [1, m]), `y and w must be (1, m) = (1, ${m})`);
  let ones = 0, binary = true;
  for (const v of inputs.w.data) { if (v === 1) ones++; else if (v !== 0) binary = false; }
  need(binary && ones > 0, 'w must hold 0 and 1, with at least one 1');
  const gauss = iface.operator.type === 'gaussian';
  if ('A' in inputs) need(shapeIs(inputs.A, [m, n]), `A must be (m, n) = (${m}, ${n})`);
  need(('A' in inputs) === gauss, `a ${iface.operator.type} operator ${gauss ? 'needs' : 'has no'} dense A`);
  const z0 = inputs.z0;
  need(z0 && z0.shape.length === 2 && z0.shape[0] === iface.plan.restarts, `z0 must have plan.restarts = ${iface.plan.restarts} rows`);
  for (const k of ['prior_mean', 'prior_scale']) need(shapeIs(inputs[k], [z0.shape[1]]), `${k} must have z0's width`);
  const out = iface.outputs.image.shape;
  need(Array.isArray(out) && out.length === 3 && out.every((d, k) => typeof d !== 'number' || d === iface.image_shape[k]),
       "the output image's shape must be image_shape");
}

function checkValues(inputs, iface) {                                  // rule 8
  const need = (c, w) => { if (!c) throw fail(8, w); };
  for (const k of ['lr', 'eps']) if (k in inputs) { const v = scalar(inputs[k]); need(Number.isFinite(v) && v > 0, `${k} must be > 0`); }
  for (const k of ['tolerance_grad', 'tolerance_change']) if (k in inputs) { const v = scalar(inputs[k]); need(Number.isFinite(v) && v >= 0, `${k} must be >= 0`); }
  for (const k of ['beta1', 'beta2']) if (k in inputs) { const v = scalar(inputs[k]); need(v >= 0 && v < 1, `${k} must be in [0, 1)`); }
  for (const k of ['steps', 'step_iters', 'max_iterations']) if (k in inputs) need(isInt(scalar(inputs[k]), 1), `${k} must be in 1..${MAX_COUNT}`);
  for (const k of ['patience', 'pnp_patience', 'pnp_polish']) if (k in inputs) { const v = scalar(inputs[k]); need(v >= 0 && v <= MAX_COUNT, `${k} must be in 0..${MAX_COUNT}`); }
  for (const k of ['tv_lam', 'tv_gamma', 'tv_tol']) if (k in inputs) { const v = scalar(inputs[k]); need(Number.isFinite(v) && v >= 0, `${k} must be >= 0`); }
  if ('tv_lipschitz' in inputs) { const v = scalar(inputs.tv_lipschitz); need(Number.isFinite(v) && v > 0, 'tv_lipschitz must be > 0'); }
  if ('tv_max_iter' in inputs) { const v = scalar(inputs.tv_max_iter); need(v >= 1 && v <= MAX_COUNT, `tv_max_iter must be in 1..${MAX_COUNT}`); }
  need(('steps' in inputs) !== ('max_iterations' in inputs), 'steps (L-BFGS) or max_iterations (Adam), not both');
  const total = 'steps' in inputs ? scalar(inputs.steps) * scalar(inputs.step_iters) : scalar(inputs.max_iterations);
  need(total <= MAX_COUNT, `the plan's budget ${total} is above ${MAX_COUNT}`);
  need(shapeIs(inputs.start, []) && scalar(inputs.start) === 0, 'start must be 0');
  need(shapeIs(inputs.chunk, []) && scalar(inputs.chunk) >= 1 && scalar(inputs.chunk) <= total, `chunk must be in 1..${total}`);
  if ('pnp_sigma' in inputs) {
    const s = inputs.pnp_sigma, it = inputs.pnp_iterations, R = it.shape[0];
    need(s.shape.length === 2 && s.shape[0] === R && s.data.every((v) => v > 0 && v <= 1), 'pnp_sigma must be (R, T) in (0, 1]');
    need(Array.from(it.data).every((v) => Number(v) >= 1 && Number(v) <= s.shape[1]), 'pnp_iterations must be in 1..T');
    for (const k of ['pnp_gamma', 'pnp_tau', 'pnp_from_grey']) need(shapeIs(inputs[k], [R]), `${k} needs one value per row`);
    need(inputs.pnp_gamma.data.every((v) => v >= 0) && inputs.pnp_tau.data.every((v) => v > 0), 'pnp_gamma >= 0, pnp_tau > 0');
    need(Array.isArray(iface.plan.pnp.candidates) && iface.plan.pnp.candidates.length === R, 'plan.pnp.candidates must name the rows');
  }
}

function readFolder(folder) {
  const ifacePath = inside(folder, 'recovery.json', 1);
  if (fs.statSync(ifacePath).size > MAX_INTERFACE) throw fail(1, 'recovery.json is above 4 MB');
  let textIn;
  try { textIn = new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(ifacePath)); } catch (e) { throw fail(1, 'recovery.json is not UTF-8'); }
  let iface;
  try { iface = strictJson(textIn); } catch (e) { throw fail(1, `recovery.json is not strict JSON (${e.message})`); }
  if (!iface || typeof iface !== 'object' || Array.isArray(iface) || iface.format !== 'gs-onnx-recovery') {
    throw fail(2, 'not a recovery interface (format gs-onnx-recovery)');
  }
  if (iface.format_version !== 1) throw fail(2, `format_version ${iface.format_version}; this reader reads 1`);
  checkFields(iface);
  checkFiles(iface);
  const graph = verified(folder, iface.files, 'recovery.onnx');
  const inputs = {};
  for (const [name, spec] of Object.entries(iface.inputs)) {
    let a;
    try { a = parseNpy(verified(folder, iface.files, spec.file), spec.file); } catch (e) {
      if (e instanceof GSError) throw e;
      throw fail(5, `${spec.file} is not a plain .npy array (${e.message})`);
    }
    if (!DTYPES.includes(a.dtype) || a.dtype !== spec.dtype || JSON.stringify(a.shape) !== JSON.stringify(spec.shape)) {
      throw fail(5, `${spec.file} holds ${a.dtype} [${a.shape}], the interface says ${spec.dtype} [${spec.shape}]`);
    }
    if (a.dtype.startsWith('float') && !a.data.every(Number.isFinite)) throw fail(5, `${spec.file} contains NaN or Inf`);
    inputs[name] = a;
  }
  checkGraph(graph, iface);
  checkConsistency(inputs, iface);
  checkValues(inputs, iface);
  let reference = null;
  if (iface.reference) {
    let r;
    try { r = parseNpy(verified(folder, iface.files, 'reference.npy'), 'reference.npy'); } catch (e) {
      if (e instanceof GSError) throw e;
      throw fail(5, `reference.npy is not a plain .npy array (${e.message})`);
    }
    if (r.dtype !== 'float32' || JSON.stringify(r.shape) !== JSON.stringify(iface.image_shape)) throw fail(10, 'reference.npy is not float32 of image_shape');
    if (!r.data.every((v) => v >= 0 && v <= 1)) throw fail(10, 'reference.npy has values outside [0, 1] (or NaN)');
    reference = r;
  }
  return { graph, inputs, iface, reference };
}

module.exports = { GSError, readFolder, strictJson };
