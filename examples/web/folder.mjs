// Reading a gs-onnx recovery folder (docs/recovery-graph.md) in the browser (or Node >= 20), every file verified
// before anything runs: recovery.json first, then each file's size (before it is read), its sha256 against
// recovery.json, each .npy's dtype and shape against recovery.json, the interface's own consistency (m, n, the
// image shape), and, once a session exists, each input against the graph's declared inputs. Any failure throws
// FolderError with one sentence naming the file and the problem.

export class FolderError extends Error {}

export const FORMAT = 'gs-onnx-recovery';
const FILE_RE = /^(recovery\.onnx|reference\.npy|inputs\/[A-Za-z][A-Za-z0-9_]*\.npy)$/;
const KINDS = { '<f4': [Float32Array, 'float32'], '<f8': [Float64Array, 'float64'], '<i8': [BigInt64Array, 'int64'],
                '|b1': [Uint8Array, 'bool'] };

function mb(bytes) { return `${(bytes / 1e6).toFixed(1)} MB`; }

// A folder served over HTTP (relative to the page), files read with fetch; the size is checked from the
// Content-Length before the body is read.
export function urlSource(base, maxBytes) {
  const root = new URL(base.endsWith('/') ? base : base + '/', globalThis.location ? location.href : undefined);
  return {
    label: root.pathname,
    async read(rel) {
      const r = await fetch(new URL(rel, root));
      if (!r.ok) throw new FolderError(`${rel} is missing from the folder (HTTP ${r.status})`);
      const len = Number(r.headers.get('content-length'));
      if (len > maxBytes) {
        r.body?.cancel();
        throw new FolderError(`${rel} is ${mb(len)}, larger than this page accepts (${mb(maxBytes)})`);
      }
      const buf = new Uint8Array(await r.arrayBuffer());
      if (buf.length > maxBytes) throw new FolderError(`${rel} is ${mb(buf.length)}, larger than this page accepts (${mb(maxBytes)})`);
      return buf;
    },
  };
}

// Files the visitor picked (a folder, or the files themselves): recovery.json, recovery.onnx and reference.npy by
// name, every other .npy as inputs/NAME.npy.
export function fileSource(files, maxBytes) {
  const byRel = new Map();
  for (const f of files) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    const base = parts[parts.length - 1];
    const rel = parts.length >= 2 && parts[parts.length - 2] === 'inputs' ? `inputs/${base}`
      : (['recovery.json', 'recovery.onnx', 'reference.npy'].includes(base) ? base : `inputs/${base}`);
    if (byRel.has(rel)) throw new FolderError(`two picked files are ${rel}: pick one recovery folder`);
    byRel.set(rel, f);
  }
  return {
    label: `${files.length} picked files`,
    async read(rel) {
      const f = byRel.get(rel);
      if (!f) throw new FolderError(`${rel} is missing from the picked files`);
      if (f.size > maxBytes) throw new FolderError(`${rel} is ${mb(f.size)}, larger than this page accepts (${mb(maxBytes)})`);
      return new Uint8Array(await f.arrayBuffer());
    },
  };
}

export async function sha256hex(bytes) {
  if (!globalThis.crypto?.subtle) {
    throw new FolderError('this page cannot check sha256 here: open it on localhost or https (a secure context)');
  }
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
  return Array.from(d, (b) => b.toString(16).padStart(2, '0')).join('');
}

// A .npy (version 1/2/3, little-endian float32/float64/int64/bool, C order) -> {dtype, dims, data}; never
// anything else (no pickles, no object arrays).
export function parseNpy(bytes, label) {
  const bad = (why) => new FolderError(`${label} is not a plain .npy array (${why})`);
  if (bytes.length < 10 || String.fromCharCode(...bytes.subarray(0, 6)) !== '\x93NUMPY') throw bad('no .npy magic');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  if (![1, 2, 3].includes(major)) throw bad(`version ${major}`);
  const hlen = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + hlen > bytes.length) throw bad('truncated header');
  const header = new TextDecoder('latin1').decode(bytes.subarray(start, start + hlen));
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  const fortran = /'fortran_order':\s*(True|False)/.exec(header);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) throw bad('unreadable header');
  if (fortran[1] === 'True') throw bad('Fortran order');
  if (!(descr[1] in KINDS)) throw bad(`dtype ${descr[1]}`);
  const dims = shape[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw bad('bad shape');
  const [Kind, dtype] = KINDS[descr[1]];
  const count = dims.reduce((a, b) => a * b, 1);
  const body = bytes.subarray(start + hlen);
  if (body.length !== count * Kind.BYTES_PER_ELEMENT) {
    throw bad(`the header says ${count} values, the file holds ${body.length / Kind.BYTES_PER_ELEMENT}`);
  }
  const data = new Kind(count);
  new Uint8Array(data.buffer).set(body);
  return { dtype, dims, data };
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Every check that needs no session. Returns {iface, graph, inputs: {name: array}, reference}.
export async function readFolder(source, onStep = () => {}) {
  let iface;
  const jsonBytes = await source.read('recovery.json');
  try {
    iface = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(jsonBytes));
  } catch (e) {
    throw new FolderError(`recovery.json is not UTF-8 JSON (${e.message})`);
  }
  if (iface && iface.format === 'gs-onnx-measurements') {
    throw new FolderError('this is a measurement file\'s sidecar (gs-measure), not a recovery folder: make one with ' +
                          'gs-export recovery --measurements FILE.npy -o FOLDER');
  }
  if (!iface || typeof iface !== 'object' || iface.format !== FORMAT) {
    throw new FolderError(`recovery.json is not a recovery interface (format "${FORMAT}")`);
  }
  if (iface.format_version !== 1) throw new FolderError(`recovery.json has format_version ${iface.format_version}; this page reads 1`);
  const { files, inputs: spec, resume } = iface;
  if (typeof files !== 'object' || typeof spec !== 'object' || iface.graph !== 'recovery.onnx' || !files || !spec) {
    throw new FolderError('recovery.json lacks its files, inputs or graph');
  }
  for (const rel of Object.keys(files)) {
    if (!FILE_RE.test(rel) || !/^[0-9a-f]{64}$/.test(files[rel])) throw new FolderError(`recovery.json lists a bad file entry ${JSON.stringify(rel)}`);
  }
  const shape = iface.image_shape;
  if (!Array.isArray(shape) || shape.length !== 3 || !shape.every((d) => Number.isInteger(d) && d > 0 && d <= 4096)) {
    throw new FolderError('recovery.json has no valid image_shape');
  }
  const n = shape[0] * shape[1] * shape[2];
  if (iface.n !== n) throw new FolderError(`recovery.json says n = ${iface.n}, but its image shape [${shape}] has ${n} values`);
  if (!resume || typeof resume.state !== 'object' || resume.start !== 'start' || resume.chunk !== 'chunk' || resume.running !== 'running') {
    throw new FolderError('recovery.json has no resume section: export the folder again with this gs-onnx (gs-export recovery)');
  }

  const verified = async (rel) => {
    if (!(rel in files)) throw new FolderError(`recovery.json lists no sha256 for ${rel}`);
    const bytes = await source.read(rel);
    onStep(`checking ${rel}`);
    if (await sha256hex(bytes) !== files[rel]) {
      throw new FolderError(`${rel} does not match its sha256 in recovery.json: the file was altered or replaced`);
    }
    return bytes;
  };

  const graph = await verified('recovery.onnx');
  const inputs = {};
  for (const [name, d] of Object.entries(spec)) {
    if (!d || d.file !== `inputs/${name}.npy`) throw new FolderError(`recovery.json: input ${name} must come from inputs/${name}.npy`);
    const a = parseNpy(await verified(d.file), d.file);
    if (a.dtype !== d.dtype || !same(a.dims, d.shape)) {
      throw new FolderError(`${d.file} holds ${a.dtype} [${a.dims}], but recovery.json says ${d.dtype} [${d.shape}]`);
    }
    if (a.dtype.startsWith('float') && !a.data.every(Number.isFinite)) throw new FolderError(`${d.file} contains NaN or Inf`);
    inputs[name] = a;
  }
  for (const name of ['z0', 'y', 'w', 'start', 'chunk']) {
    if (!(name in inputs)) throw new FolderError(`the folder has no input ${name}`);
  }
  for (const [inName, outName] of Object.entries(resume.state)) {
    if (!(inName in inputs) || !/^next_[A-Za-z0-9_]+$/.test(outName)) throw new FolderError(`recovery.json: the state ${inName} is not an input of the folder`);
  }
  const m = iface.m;
  if (!same(inputs.y.dims, [1, m]) || !same(inputs.w.dims, [1, m])) {
    throw new FolderError(`inputs/y.npy holds ${inputs.y.dims[1]} measurements, but recovery.json says m = ${m}`);
  }
  if (inputs.A && !same(inputs.A.dims, [m, n])) {
    throw new FolderError(`inputs/A.npy is [${inputs.A.dims}], but the operator maps ${n} values to ${m}`);
  }
  let reference = null;
  if (iface.reference !== undefined) {
    if (iface.reference !== 'reference.npy') throw new FolderError('recovery.json: reference must be reference.npy');
    reference = parseNpy(await verified('reference.npy'), 'reference.npy');
    if (reference.dtype !== 'float32' || !same(reference.dims, shape)) {
      throw new FolderError(`reference.npy is ${reference.dtype} [${reference.dims}], the image is float32 [${shape}]`);
    }
  }
  return { iface, graph, inputs, reference };
}

// The inputs against the graph's declared inputs (names, element types, fixed dimensions): a folder whose files
// were made for another graph is refused here, before any run.
export function checkAgainstGraph(session, inputs) {
  const declared = new Set(session.inputNames);
  for (const name of declared) if (!(name in inputs)) throw new FolderError(`the graph needs the input ${name}, which the folder does not give`);
  for (const name of Object.keys(inputs)) if (!declared.has(name)) throw new FolderError(`the folder gives ${name}, which is not an input of this graph`);
  const meta = session.inputMetadata;
  if (!Array.isArray(meta)) return;
  for (const md of meta) {
    const a = inputs[md.name];
    if (!md.isTensor || !a) continue;
    if (md.type !== a.dtype) throw new FolderError(`inputs/${md.name}.npy is ${a.dtype}, the graph takes ${md.type}`);
    const want = md.shape;
    if (want.length !== a.dims.length || want.some((d, i) => typeof d === 'number' && d !== a.dims[i])) {
      throw new FolderError(`inputs/${md.name}.npy is [${a.dims}], the graph takes [${want}]: these files were not made for this graph`);
    }
  }
}
