/* zcio._native: the compiled accelerator.  One module, one part per file:
 *   guard.c  every access zcio makes to mapped memory, guarded against SIGBUS
 *   core.c   the buffer index state as a C type and the hot get/put fast paths
 *   io.c     per-call channel I/O: one buffer, one system call, the GIL released
 *   pool.c   pooled allocate, retain and release
 *   chan.c   the channels' read/write of one buffer: io.c's call, the whole method
 *   serve.c  zcio serve's cached hit: one read answered by one send
 *   share.c  the shared-buffer hand-off's system calls: one sendmsg, one recvmsg
 *   lock.c   threading.Lock's behaviour with a state the other parts read directly
 *   native.c the module itself
 * Each part adds its functions and types to the module in its init function. */
#ifndef ZCIO_NATIVE_H
#define ZCIO_NATIVE_H
#include <Python.h>

int zcio_guard_init(PyObject *m);
int zcio_core_init(PyObject *m);
int zcio_io_init(PyObject *m);
int zcio_pool_init(PyObject *m);
int zcio_chan_init(PyObject *m);
int zcio_serve_init(PyObject *m);
int zcio_share_init(PyObject *m);
int zcio_lock_init(PyObject *m);

/* lock.c's, for zcio._native.Lock (exactly that type): take it if free (1), or not (0,
 * it is held); whether it is held (1 or 0); -1 for any other object (no exception: the
 * caller's Python path takes or tests it).  Release a lock zcio_lock_try took.  The
 * GIL held throughout. */
int zcio_lock_try(PyObject *lock);
int zcio_lock_held(PyObject *lock);
void zcio_lock_release(PyObject *lock);

/* io.c's calls, also the compiled channel operations' (chan.c). */
enum {
    IO_SOCKET = 1,       /* send/recv; else write/pwrite, read/pread */
    IO_EAGAIN_ZERO = 2,  /* EAGAIN: return 0 (a gather's rule); else BlockingIOError */
    IO_COUNT_ERRORS = 4, /* a failed call is counted in the metrics too */
    IO_COUNT_EMPTY = 8,  /* so is an operation that made no call (nothing to move) */
};
/* Their answers besides a count: no call made (nothing remains, no room), the call
 * would block (EAGAIN with IO_EAGAIN_ZERO), an exception, not a plain buffer (nothing
 * touched: the caller takes the Python path); zcio_io_gather_held's "go on". */
enum { T_NOTHING = -1, T_AGAIN = -2, T_ERROR = -3, T_NOT_PLAIN = -4, T_CONTINUE = -5 };
/* One read (``into``) or write of a plain buffer's [position, limit); one gather write
 * of a list of plain buffers.  ``offset`` >= 0: pread/pwrite(v) there.  ``path``: the
 * zcio.metrics entry counted. */
Py_ssize_t zcio_io_transfer(int fd, PyObject *buf, long long offset, int how,
                            PyObject *path, int into);
Py_ssize_t zcio_io_gather(int fd, PyObject *list, long long offset, int how,
                          PyObject *path, Py_ssize_t prior_calls, Py_ssize_t prior);
/* A socket gather of small parts sent with the GIL held (io.c says when, and what a
 * blocking channel's T_CONTINUE asks of the caller). */
Py_ssize_t zcio_io_gather_held(int fd, PyObject *list, int how, PyObject *path,
                               int (*blocking)(void *), void *channel, Py_ssize_t *moved);
/* memmove(dst, src, n) behind the SIGBUS guard (guard.c): 0, or -1 with *fault the
 * address that faulted (a mapped file truncated under it), no exception set. */
int zcio_guarded_move(char *dst, const char *src, size_t n, void **fault);
/* Add one operation of ``syscalls`` calls and ``user_bytes`` to zcio.metrics[path], as
 * Metrics.record does (io.c; io_setup() must have run); -1 with an exception. */
int zcio_io_count(PyObject *path, Py_ssize_t syscalls, Py_ssize_t user_bytes);
/* Their result as Python sees it: the count (a read's 0 is -1, end of file; no call or
 * EAGAIN is 0), NotImplemented for T_NOT_PLAIN, NULL for T_ERROR. */
PyObject *zcio_io_answer(Py_ssize_t r, int into);

/* pool.c's, also io.c's and share.c's: the offset of an object slot of t (a __slots__
 * entry or a BufferState field), found from its member descriptor; -1 with TypeError
 * if name is none.  1 if a Python thread holds zcio._memory._RC_LOCK (is changing a reference
 * count), or its state cannot be read without a call (before accelerate_pool() ran, or
 * not a zcio._native.Lock): the fast paths step aside; else 0. */
Py_ssize_t zcio_slot_offset(PyTypeObject *t, const char *name);
int zcio_counts_locked(void);
/* share.c's: release n references of ``mem`` if it is a shared buffer's memory, as
 * Memory.release does (at zero: revoke, munmap, close, accounting); NULL with no
 * exception for the Python path (another kind, a count error, the lock held). */
PyObject *zcio_share_release(PyObject *mem, Py_ssize_t n);
/* share.c's hand-off as chan.c's compiled SocketChannel.send_buffer/receive_buffer
 * run it, registered and locked: ``dict`` the channel's __dict__, ``sock`` its
 * descriptor.  The result, NULL with an exception, or NULL with none when the call is
 * not one they take (nothing done: the reference runs). */
PyObject *zcio_share_send_op(PyObject *dict, int sock, PyObject *buf, PyObject *path);
PyObject *zcio_share_receive_op(PyObject *dict, int sock, PyObject *path);

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

/* Index ints: a buffer's position moves by one or a few per call, so a relative
 * get/put would make (and free) one int per call past CPython's small ints (256).
 * index_int(v) gives the int v as a new reference, from a table of the ints 0 ..
 * INDEX_INTS - 1 made once on first use and kept for the process's life (at most
 * INDEX_INTS ints, about 2 MiB with the table, only as far as indexes and the typed
 * gets' values reach: core.c's box takes small non-negative values from it too);
 * others are made as usual.  Ints are immutable: sharing one is invisible to Python.
 * The GIL guards the table. */
#define INDEX_INTS (1 << 16)
extern PyObject *zcio_index_ints[INDEX_INTS] __attribute__((visibility("hidden"))); /* no GOT load */

/* The table's int v, 0 <= v < INDEX_INTS, borrowed (the table holds it for good); NULL
 * with MemoryError if it could not be made. */
static inline PyObject *
table_int(Py_ssize_t v)
{
    PyObject *o = zcio_index_ints[v];
    if (o == NULL) {
        if ((o = PyLong_FromSsize_t(v)) == NULL)
            return NULL;
        zcio_index_ints[v] = o;
    }
    return o;
}

static inline PyObject *
index_int(Py_ssize_t v)
{
    if (v < 0 || v >= INDEX_INTS)
        return PyLong_FromSsize_t(v);
    PyObject *o = table_int(v);
    return o ? Py_NewRef(o) : NULL;
}

/* The bytes of memoryview o (a PyMemoryView_Check one) as flat bytes, or NULL (no
 * exception): not released, one dimension, C-contiguous as the view's own flags say
 * (computed from its strides when it was made: no read of them, a cache line further
 * on), writable if ``writing``, items of one byte if ``bytes_only``; *len its length
 * in bytes.  For a buffer's own view (its ``_mv``) only: ``Memory.view`` never hands
 * out a view made while the memory was released (see flat_view), so a view not
 * released holds an export of a managed buffer that is not released either, and the
 * managed buffer's flags (another object, another cache line) need no read.  Valid
 * while the GIL is held and no Python code runs. */
static inline char *
own_flat_view(PyObject *o, int writing, int bytes_only, Py_ssize_t *len)
{
    PyMemoryViewObject *m = (PyMemoryViewObject *)o;
    Py_buffer *v = &m->view;
    if ((m->flags & (_Py_MEMORYVIEW_RELEASED | _Py_MEMORYVIEW_C)) != _Py_MEMORYVIEW_C
        || v->ndim != 1 || (writing && v->readonly) || (bytes_only && v->itemsize != 1))
        return NULL;
    *len = v->len;
    return (char *)v->buf;
}

/* own_flat_view for any memoryview (a caller's): its managed buffer not released
 * either, as CPython's own checks ask.  A view made by slicing registers with its
 * managed buffer only after allocating itself, and a collection inside that
 * allocation can release the buffer (a finalizer revoking the last other view), so a
 * live view can sit on a released buffer whose memory is gone. */
static inline char *
flat_view(PyObject *o, int writing, int bytes_only, Py_ssize_t *len)
{
    if (((PyMemoryViewObject *)o)->mbuf->flags & _Py_MANAGED_BUFFER_RELEASED)
        return NULL;
    return own_flat_view(o, writing, bytes_only, len);
}

/* The exception being raised, taken out (a new reference, NULL if none), and put back:
 * PyErr_GetRaisedException/PyErr_SetRaisedException, also on 3.11. */
static inline PyObject *
raised_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *t, *v, *tb;
    PyErr_Fetch(&t, &v, &tb);
    if (t == NULL)
        return NULL;
    PyErr_NormalizeException(&t, &v, &tb);
    if (tb != NULL && v != NULL)
        PyException_SetTraceback(v, tb);
    Py_XDECREF(t);
    Py_XDECREF(tb);
    return v;
#endif
}

static inline void
set_raised_exception(PyObject *exc) /* steals exc */
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* The Python method ref called as ref(self, *args, **kwnames-args), as a METH_FASTCALL |
 * METH_KEYWORDS method received them: every fast path's way to its reference. */
static inline PyObject *
call_reference(PyObject *ref, PyObject *self, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames)
{
    if (kwnames == NULL && nargs <= 3) { /* every form the fast paths are called with */
        PyObject *stack[4] = {self};
        for (Py_ssize_t i = 0; i < nargs; i++)
            stack[i + 1] = args[i];
        return PyObject_Vectorcall(ref, stack, nargs + 1, NULL);
    }
    PyObject *bound = PyMethod_New(ref, self);
    if (bound == NULL)
        return NULL;
    PyObject *r = PyObject_Vectorcall(bound, args, nargs, kwnames);
    Py_DECREF(bound);
    return r;
}

/* The attribute names a part looks up, interned once at module init: each entry's
 * *s gets the interned name.  -1 with an exception if one cannot be made. */
typedef struct {
    PyObject **s;
    const char *name;
} zcio_name;

static inline int
intern_names(const zcio_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((*names[i].s = PyUnicode_InternFromString(names[i].name)) == NULL)
            return -1;
    return 0;
}

#endif
