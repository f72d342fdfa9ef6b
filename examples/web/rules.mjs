// The reader's rules for a recovery folder (docs/recovery-graph.md, section 12) in JavaScript, written from that page:
// the one implementation the browser page (folder.mjs) and the Node example (examples/node: recover.js,
// conformance.js) share. It runs wherever WebCrypto and TextDecoder exist (browsers in a secure context, Node >= 20).
//
// readFolder(source) checks rules 1-8 and 10 and resolves to { graph, inputs, iface, reference }, or rejects with a
// GSError whose message ends with "(rule N)". A source reads the folder's files:
//   { label, async read(rel, rule, maxBytes) -> Uint8Array }
// and refuses (GSError, that rule) a file that is missing, not a regular file, leaves the folder, or is larger than
// maxBytes or than what the source can hold: files on disk in Node (examples/node/fs_source.js), a served folder or
// picked files in the page (folder.mjs).

export class GSError extends Error {}
export const fail = (rule, what) => new GSError(`${what} (rule ${rule})`);

export const MAX_INTERFACE = 4 << 20;
export const MAX_FILE = 8 * 2 ** 30;
const MAX_COUNT = 1000000;
const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;
const DTYPES = ['float32', 'float64', 'int64', 'bool'];
// Rule 7: the operator types a reader knows, and the prefixes of the op_* tables each may feed its graph (gaussian
// feeds the dense A, identity nothing; downsample with a Gaussian kernel feeds blur's tables).
export const OPERATOR_TABLES = {
  gaussian: [], identity: [], srdct: ['op_dct_'], mask: ['op_mask_'], box: ['op_mask_'], blur: ['op_blur_'],
  downsample: ['op_blur_'], fourier: ['op_fourier_'],
};

// ---------------------------------------------------------------------------------------------- strict JSON (rule 1)
// JSON.parse takes the last of two equal keys without a word: this parser refuses them (and NaN, as JSON.parse does).
export function strictJson(text) {
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
const text = (buf, f) => new TextDecoder('utf-8').decode(buf.subarray(f.from, f.to));

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

// ------------------------------------------------------------------------------------------------- .npy (rule 5)
const KINDS = { '<f4': [Float32Array, 'float32'], '<f8': [Float64Array, 'float64'], '<i8': [BigInt64Array, 'int64'],
                '|b1': [Uint8Array, 'bool'] };

// A plain .npy (format 1.0 or 2.0, C order, little-endian float32 / float64 / int64 / bool; never pickled) ->
// { dtype, shape, data }; anything else throws an Error saying why.
export function parseNpy(bytes, label = 'the file') {
  const bad = (why) => new Error(`${label}: ${why}`);
  if (bytes.length < 10 || String.fromCharCode(...bytes.subarray(0, 6)) !== '\x93NUMPY') throw bad('no .npy magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  if (![1, 2].includes(major) || bytes[7] !== 0) throw bad(`format ${major}.${bytes[7]} (1.0 or 2.0 are read)`);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + hlen > bytes.length) throw bad('a truncated header');
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw bad('not a plain array header');
  if (fortran[1] === 'True') throw bad('Fortran order');
  if (!(descr[1] in KINDS)) throw bad(`dtype ${descr[1]} (<f4, <f8, <i8 and |b1 are read)`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw bad('a bad shape');
  const [Kind, dtype] = KINDS[descr[1]];
  const count = dims.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(start + hlen);
  if (body.length !== count * Kind.BYTES_PER_ELEMENT) {
    throw bad(`the header says ${count} values, the file holds ${body.length / Kind.BYTES_PER_ELEMENT}`);
  }
  const data = new Kind(count);
  new Uint8Array(data.buffer).set(body);
  return { dtype, shape: dims, data };
}

// ------------------------------------------------------------------------------------------------------- the folder
export async function sha256hex(bytes) {
  if (!globalThis.crypto?.subtle) {
    throw new GSError('sha256 cannot be checked here: WebCrypto is missing (open the page on localhost or https)');
  }
  const d = new Uint8Array(await globalThis.crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// Rule 5's path syntax: a relative path inside the folder (the source then refuses links that leave it).
export function checkRel(rel, rule) {
  if (typeof rel !== 'string' || !rel || rel.startsWith('/') || rel.includes('\\') || rel.split('/').includes('..')
      || /^[A-Za-z]:/.test(rel) || rel.includes('\0')) {
    throw fail(rule, `${JSON.stringify(rel)} is not a relative path inside the recovery folder`);
  }
  return rel;
}

async function verified(source, files, rel, onStep) {
  const data = await source.read(checkRel(rel, 5), 5, MAX_FILE);
  onStep(`checking ${rel}`);
  if (await sha256hex(data) !== files[rel]) {
    throw fail(5, `${rel} does not match its sha256 in recovery.json: the file was altered or replaced`);
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
  // the fields a reader reports or acts on, where present
  if (iface.sigma !== undefined && iface.sigma !== null) {
    need(typeof iface.sigma === 'number' && Number.isFinite(iface.sigma) && iface.sigma >= 0, 'sigma must be a finite number >= 0, or null');
  }
  if ('source' in iface) {
    const src = iface.source;
    need(src && typeof src === 'object' && !Array.isArray(src), 'source must be an object (path, sha256)');
    need(!('sha256' in src) || (typeof src.sha256 === 'string' && HEX64.test(src.sha256)), 'source.sha256 must be 64 hex digits');
    need(!('path' in src) || typeof src.path === 'string', 'source.path must be a string');
  }
  need(!('measurements' in iface) || typeof iface.measurements === 'string', 'measurements must be a string');
  if ('resume' in iface) {
    const r = iface.resume;
    need(r && typeof r === 'object' && r.start === 'start' && r.chunk === 'chunk' && r.running === 'running'
         && r.state && typeof r.state === 'object' && !Array.isArray(r.state), 'resume must name start, chunk, running and state');
    for (const [k, v] of Object.entries(r.state)) {
      need(k in iface.inputs && typeof v === 'string' && v in iface.outputs, `resume.state must map inputs to outputs (${JSON.stringify(k.slice(0, 40))})`);
    }
    need('start' in iface.inputs && 'chunk' in iface.inputs && 'running' in iface.outputs, 'resume names start, chunk and running, which the interface must declare');
  }
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
  const op = iface.operator;
  for (const k of ['m', 'n']) need(!(k in op) || op[k] === iface[k], `operator.${k} (${op[k]}) must be the interface's ${k} (${iface[k]})`);
  need(!('in_shape' in op) || JSON.stringify(op.in_shape) === JSON.stringify(iface.image_shape), 'operator.in_shape must be image_shape');
  const prefixes = OPERATOR_TABLES[op.type];
  need(prefixes !== undefined && Object.hasOwn(OPERATOR_TABLES, op.type), `operator type ${JSON.stringify(op.type)} is not one this reader knows`);
  for (const name of Object.keys(inputs)) {
    if (name.startsWith('op_')) need(prefixes.some((p) => name.startsWith(p)), `${name} is not a table a ${op.type} operator feeds its graph`);
  }
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
    if ('pnp_denoiser' in inputs) {
      const K = Object.keys(iface.plan.pnp.classical || {}).length;
      need(shapeIs(inputs.pnp_denoiser, [R]) && Array.from(inputs.pnp_denoiser.data).every((v) => v >= 0n && v <= BigInt(K)),
           `pnp_denoiser must give each row 0 (the network) or 1..${K} (plan.pnp.classical)`);
    }
  }
}

// What a file that is not a recovery interface is (rule 2's refusals name it).
function whatElse(obj) {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    if (obj.format === 'gs-onnx-manifest') return 'a model manifest (gs-export), not a recovery folder';
    if (obj.format === 'gs-onnx-denoiser') return 'a denoiser manifest (gs-train denoiser), not a recovery folder';
    if (obj.format === 'gs-onnx-measurements' || ('operator_fingerprint' in obj && !('format' in obj))) {
      return "this is a measurement file's sidecar (gs-measure), not a recovery folder: make one with " +
             'gs-export recovery --measurements FILE.npy -o FOLDER';
    }
  }
  return 'not a recovery interface (format gs-onnx-recovery)';
}

function npy(bytes, rel) {
  try {
    return parseNpy(bytes, rel);
  } catch (e) {
    throw fail(5, `${rel} is not a plain .npy array (${e.message.replace(`${rel}: `, '')})`);
  }
}

export async function readFolder(source, onStep = () => {}) {
  const raw = await source.read('recovery.json', 1, MAX_INTERFACE);
  if (raw.length > MAX_INTERFACE) throw fail(1, 'recovery.json is above 4 MB');
  let textIn;
  try { textIn = new TextDecoder('utf-8', { fatal: true }).decode(raw); } catch (e) { throw fail(1, 'recovery.json is not UTF-8'); }
  let iface;
  try { iface = strictJson(textIn); } catch (e) { throw fail(1, `recovery.json is not strict JSON (${e.message})`); }
  if (!iface || typeof iface !== 'object' || Array.isArray(iface) || iface.format !== 'gs-onnx-recovery') {
    throw fail(2, whatElse(iface));
  }
  if (iface.format_version !== 1) throw fail(2, `format_version ${iface.format_version}; this reader reads 1`);
  checkFields(iface);
  checkFiles(iface);
  const graph = await verified(source, iface.files, 'recovery.onnx', onStep);
  const inputs = {};
  for (const [name, spec] of Object.entries(iface.inputs)) {
    const a = npy(await verified(source, iface.files, spec.file, onStep), spec.file);
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
    const r = npy(await verified(source, iface.files, 'reference.npy', onStep), 'reference.npy');
    if (r.dtype !== 'float32' || JSON.stringify(r.shape) !== JSON.stringify(iface.image_shape)) throw fail(10, 'reference.npy is not float32 of image_shape');
    if (!r.data.every((v) => v >= 0 && v <= 1)) throw fail(10, 'reference.npy has values outside [0, 1] (or NaN)');
    reference = r;
  }
  return { graph, inputs, iface, reference };
}
