/**
 * C library functions msgpipe calls directly (through the koffi FFI library), for memory
 * management that Node has no binding for: madvise (./code-pages.ts) and mallopt
 * (./native-heap.ts). Linux only; elsewhere, or when koffi cannot load, a function is `null`
 * and its caller goes without.
 */
import { createRequire } from 'node:module';

import type * as Koffi from 'koffi';

let libc: Koffi.IKoffiLib | null | undefined;

/**
 * The C function of `declaration` (C syntax, e.g. `int mallopt(int param, int value)`) from the
 * process's own libraries, callable from JavaScript, or `null` where it cannot be had; the caller
 * states its type.
 *
 * @throws nothing; a failure to load is returned as `null` with its error in `onError`
 */
export function libcFunction(declaration: string, onError?: (err: unknown) => void): unknown {
  if (process.platform !== 'linux') return null;
  try {
    // Loaded on first use: a platform without koffi's binary just goes without.
    if (libc === undefined) libc = (createRequire(import.meta.url)('koffi') as typeof Koffi).load(null);
    if (libc === null) return null;
    return libc.func(declaration);
  } catch (err) {
    libc ??= null;
    onError?.(err);
    return null;
  }
}
