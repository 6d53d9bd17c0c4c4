/* zcio._native: the compiled accelerator.  One module, one part per file:
 *   guard.c  every access zcio makes to mapped memory, guarded against SIGBUS
 *   core.c   the buffer index state as a C type and the hot get/put fast paths
 *   native.c the module itself
 * Each part adds its functions and types to the module in its init function. */
#ifndef ZCIO_NATIVE_H
#define ZCIO_NATIVE_H
#include <Python.h>

int zcio_guard_init(PyObject *m);
int zcio_core_init(PyObject *m);
int zcio_pool_init(PyObject *m); /* pool.c: pooled allocate and retain/release in C */

#endif
