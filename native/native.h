/* zcio._native: the compiled accelerator.  One module, one part per file:
 *   guard.c  every access zcio makes to mapped memory, guarded against SIGBUS
 *   core.c   the buffer index state as a C type and the hot get/put fast paths
 *   io.c     per-call channel I/O: one buffer, one system call, the GIL released
 *   pool.c   pooled allocate, retain and release
 *   native.c the module itself
 * Each part adds its functions and types to the module in its init function. */
#ifndef ZCIO_NATIVE_H
#define ZCIO_NATIVE_H
#include <Python.h>

int zcio_guard_init(PyObject *m);
int zcio_core_init(PyObject *m);
int zcio_io_init(PyObject *m);
int zcio_pool_init(PyObject *m);

/* Shared by the parts. */
/* *v = the value of a small exact int (one machine word: every index, most values); 0
 * when o is not one.  Reads the int's own storage, with no call: the fast paths'
 * (v_put, the pool) way to read an index or a count. */
static inline int
small_int(PyObject *o, long long *v)
{
    if (!PyLong_CheckExact(o))
        return 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (!PyUnstable_Long_IsCompact((PyLongObject *)o))
        return 0;
    *v = PyUnstable_Long_CompactValue((PyLongObject *)o);
#else
    Py_ssize_t n = Py_SIZE(o);
    if (n < -1 || n > 1)
        return 0;
    *v = (long long)n * (long long)((PyLongObject *)o)->ob_digit[0];
#endif
    return 1;
}

#endif
