'use strict';
// Minimal .npy (version 1.0/2.0) reader (little-endian float32, float64, int64, bool; C order; 0-d and empty arrays
// too) and a
// float32 writer.
const fs = require('fs');

function readNpy(path) {
  return parseNpy(fs.readFileSync(path), path);
}

function parseNpy(buf, path) {
  if (buf.slice(0, 6).toString('latin1') !== '\x93NUMPY') throw new Error(`${path}: not a .npy file`);
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.slice(start, start + hlen).toString('latin1');
  const d = /'descr':\s*'([^']+)'/.exec(header);
  if (!d || !/'shape':\s*\(([^)]*)\)/.test(header)) throw new Error(`${path}: not a plain array header`);
  const descr = d[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order is not supported`);
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(',').map(s => s.trim()).filter(s => s).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const data = buf.slice(start + hlen);
  const kinds = { '<f4': [Float32Array, 'float32'], '<f8': [Float64Array, 'float64'], '<i8': [BigInt64Array, 'int64'],
                  '|b1': [Uint8Array, 'bool'] };
  if (!(descr in kinds)) throw new Error(`${path}: dtype ${descr}, only <f4, <f8, <i8 and |b1 are supported`);
  const [Kind, dtype] = kinds[descr];
  const size = Kind.BYTES_PER_ELEMENT;
  if (data.length !== size * count) throw new Error(`${path}: header claims ${count} values, file holds ${data.length / size}`);
  const out = new Kind(count);
  Buffer.from(out.buffer).set(data);
  return { data: out, shape, dtype };
}

function writeNpy(path, array, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + header.length + 1;
  header += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const pre = Buffer.alloc(10);
  pre.write('\x93NUMPY', 0, 'latin1');
  pre[6] = 1; pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  const f32 = array instanceof Float32Array ? array : Float32Array.from(array);
  fs.writeFileSync(path, Buffer.concat([pre, Buffer.from(header, 'latin1'), Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength)]));
}

module.exports = { readNpy, parseNpy, writeNpy };
