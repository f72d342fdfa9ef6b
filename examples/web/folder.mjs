// Reading a gs-onnx recovery folder in the page: every rule of docs/recovery-graph.md section 12 (rules.mjs, the
// reader the Node example shares) checked before anything runs, on a folder served over HTTP or on files the visitor
// picked; then what the page itself needs (the resume section, for its chunks) and, once a session exists, each
// input against the graph's declared inputs (rule 7's SHOULD). Any failure throws FolderError (rules.mjs's
// GSError) with one sentence naming the file and the problem, and the rule it breaks.
import { GSError, fail, readFolder as readByRules } from './rules.mjs';

export const FolderError = GSError;

function mb(bytes) { return `${(bytes / 1e6).toFixed(1)} MB`; }

// A folder served over HTTP (relative to the page), files read with fetch; the size is checked from the
// Content-Length before the body is read. `maxBytes`: the page's own limit (?max_mb=).
export function urlSource(base, maxBytes) {
  const root = new URL(base.endsWith('/') ? base : base + '/', globalThis.location ? location.href : undefined);
  return {
    label: root.pathname,
    async read(rel, rule, max) {
      const limit = Math.min(maxBytes, max);
      const r = await fetch(new URL(rel, root));
      if (!r.ok) throw fail(rule, `${rel} is missing from the folder (HTTP ${r.status})`);
      const len = Number(r.headers.get('content-length'));
      const tooLarge = (size) => fail(rule, `${rel} is ${mb(size)}, larger than this page accepts (${mb(limit)})`);
      if (len > limit) {
        r.body?.cancel();
        throw tooLarge(len);
      }
      const buf = new Uint8Array(await r.arrayBuffer());
      if (buf.length > limit) throw tooLarge(buf.length);
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
    async read(rel, rule, max) {
      const limit = Math.min(maxBytes, max);
      const f = byRel.get(rel);
      if (!f) throw fail(rule, `${rel} is missing from the picked files`);
      if (f.size > limit) throw fail(rule, `${rel} is ${mb(f.size)}, larger than this page accepts (${mb(limit)})`);
      return new Uint8Array(await f.arrayBuffer());
    },
  };
}

// Every check that needs no session. Returns {iface, graph, inputs: {name: {dtype, shape, data}}, reference}.
export async function readFolder(source, onStep = () => {}) {
  const folder = await readByRules(source, onStep);
  const { resume } = folder.iface;
  if (!resume || typeof resume.state !== 'object' || !resume.state || resume.start !== 'start' || resume.chunk !== 'chunk'
      || resume.running !== 'running') {
    throw new FolderError('recovery.json has no resume section (section 8), which this page runs in chunks by: ' +
                          'export the folder again with this gs-onnx (gs-export recovery)');
  }
  for (const [inName, outName] of Object.entries(resume.state)) {
    if (!(inName in folder.inputs) || !/^next_[A-Za-z0-9_]+$/.test(outName)) {
      throw new FolderError(`recovery.json: the state ${inName} is not an input of the folder`);
    }
  }
  return folder;
}

// The inputs against the graph's declared inputs (names, element types, fixed dimensions): a folder whose files
// were made for another graph is refused here, before any run.
export function checkAgainstGraph(session, inputs) {
  const declared = new Set(session.inputNames);
  for (const name of declared) if (!(name in inputs)) throw fail(6, `the graph needs the input ${name}, which the folder does not give`);
  for (const name of Object.keys(inputs)) if (!declared.has(name)) throw fail(6, `the folder gives ${name}, which is not an input of this graph`);
  const meta = session.inputMetadata;
  if (!Array.isArray(meta)) return;
  for (const md of meta) {
    const a = inputs[md.name];
    if (!md.isTensor || !a) continue;
    if (md.type !== a.dtype) throw fail(7, `inputs/${md.name}.npy is ${a.dtype}, the graph takes ${md.type}`);
    const want = md.shape;
    if (want.length !== a.shape.length || want.some((d, i) => typeof d === 'number' && d !== a.shape[i])) {
      throw fail(7, `inputs/${md.name}.npy is [${a.shape}], the graph takes [${want}]: these files were not made for this graph`);
    }
  }
}
