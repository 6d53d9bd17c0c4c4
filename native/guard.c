/* zcio._native, the SIGBUS guard: zcio's own accesses to mapped memory, guarded against SIGBUS.
 *
 * Touching a page of a file mapping that lies past the file's end (the file was
 * truncated by someone else) or that the file system cannot back (a hole in a full
 * file system) makes the kernel send SIGBUS to the faulting thread.  Every function
 * here does one memory access of zcio's (a copy, a comparison, a page walk) with a
 * per-thread jump buffer armed: the SIGBUS handler jumps back out of it, and the
 * function raises MappedRegionError instead of the process dying.
 *
 * Rules that make the jump safe:
 * - Only the plain loop or libc call between arming and disarming can fault; it takes
 *   no lock, allocates nothing and calls no Python.  The arguments are Py_buffers held
 *   for the whole call with the GIL held, so nothing can unmap them meanwhile.
 * - The jump buffer lives in the guarded function's frame; a thread-local pointer says
 *   which one is armed (initial-exec TLS: the handler never allocates).
 * - A SIGBUS fault while the thread is not armed goes to the handler that was there
 *   before (faulthandler's, or the default that kills the process): the previous
 *   disposition is restored and the faulting instruction runs again.  A SIGBUS sent
 *   with kill() is handed to the previous handler (or kills, by default) at once.
 *
 * The rest of the compiled accelerator (core.c) never touches mapped memory: every
 * mapped access goes through these functions.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "native.h"

typedef struct {
    sigjmp_buf jb;
    void *volatile addr; /* the faulting address, set by the handler */
} guard_t;

static __thread guard_t *volatile current
    __attribute__((tls_model("initial-exec"))) = NULL;

static struct sigaction previous;
static int installed = 0;
static PyObject *error_class = NULL; /* zcio.MappedRegionError */

#define BARRIER() __asm__ __volatile__("" ::: "memory")

static void
on_sigbus(int sig, siginfo_t *info, void *context)
{
    guard_t *g = current;
    if (g != NULL) {
        current = NULL;
        g->addr = info->si_code > 0 ? info->si_addr : NULL; /* kernel-sent: an address */
        siglongjmp(g->jb, 1);
    }
    if (info->si_code <= 0) {
        /* Sent by kill() or raise(), not a fault: pass it on as if we were not here. */
        if (previous.sa_flags & SA_SIGINFO) {
            if (previous.sa_sigaction != NULL)
                previous.sa_sigaction(sig, info, context);
        } else if (previous.sa_handler == SIG_DFL) {
            sigaction(SIGBUS, &previous, NULL); /* die of it, as without zcio */
            raise(SIGBUS);
        } else if (previous.sa_handler != SIG_IGN) {
            previous.sa_handler(sig);
        }
        return;
    }
    /* A fault outside zcio's accesses: give it back to whoever had it; the instruction
     * faults again and the previous handler (or the default: death) sees it. */
    sigaction(SIGBUS, &previous, NULL);
}

static void
unblock_sigbus(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* The guarded operations.  Each returns 0, or -1 with *fault set after a SIGBUS.
 * noinline: the locals of the caller stay untouched between sigsetjmp and the jump. */

#define GUARD_BEGIN(fault)                                  \
    guard_t g;                                              \
    guard_t *volatile outer = current;                      \
    g.addr = NULL;                                          \
    if (sigsetjmp(g.jb, 0)) {                               \
        current = outer;                                    \
        unblock_sigbus();                                   \
        *(fault) = g.addr;                                  \
        return -1;                                          \
    }                                                       \
    current = &g;                                           \
    BARRIER()

#define GUARD_END()                                         \
    BARRIER();                                              \
    current = outer

static __attribute__((noinline)) int
guarded_move(char *dst, const char *src, size_t n, void **fault)
{
    GUARD_BEGIN(fault);
    memmove(dst, src, n);
    GUARD_END();
    return 0;
}

/* For the other parts (native.h): the guarded memmove, the same call. */
int
zcio_guarded_move(char *dst, const char *src, size_t n, void **fault)
{
    return guarded_move(dst, src, n, fault);
}

static __attribute__((noinline)) int
guarded_mismatch(const unsigned char *a, const unsigned char *b, size_t n,
                 Py_ssize_t *at, void **fault)
{
    GUARD_BEGIN(fault);
    size_t i = 0;
    const size_t block = 256;
    while (i + block <= n && memcmp(a + i, b + i, block) == 0)
        i += block;
    while (i < n && a[i] == b[i])
        i++;
    *at = i < n ? (Py_ssize_t)i : -1;
    GUARD_END();
    return 0;
}

static __attribute__((noinline)) int
guarded_touch(const volatile unsigned char *p, size_t n, size_t step, void **fault)
{
    GUARD_BEGIN(fault);
    if (n) {
        uintptr_t start = (uintptr_t)p;
        uintptr_t end = start + n;
        unsigned char sink = p[0];
        for (uintptr_t q = (start / step + 1) * step; q < end; q += step)
            sink ^= *(const volatile unsigned char *)q;
        (void)sink;
    }
    GUARD_END();
    return 0;
}

/* -- Python side ---------------------------------------------------------------------- */

static PyObject *
fault_error(void *fault, const Py_buffer *view)
{
    if (error_class == NULL) {
        PyErr_SetString(PyExc_SystemError, "zcio._native: guard install() was not called");
        return NULL;
    }
    uintptr_t base = (uintptr_t)view->buf, addr = (uintptr_t)fault;
    PyObject *msg;
    if (fault != NULL && addr >= base && addr - base < (uintptr_t)view->len)
        msg = PyUnicode_FromFormat(
            "mapped memory at %p (byte %zd of a %zd-byte view) is no longer backed by its "
            "file (SIGBUS): the file was truncated, or a hole could not be allocated",
            fault, (Py_ssize_t)(addr - base), view->len);
    else
        msg = PyUnicode_FromFormat(
            "mapped memory at %p is no longer backed by its file (SIGBUS): the file was "
            "truncated, or a hole could not be allocated", fault);
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(error_class, "iO", EFAULT, msg);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject(error_class, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static int
check_range(const char *what, Py_ssize_t off, Py_ssize_t n, Py_ssize_t len)
{
    if (off < 0 || n < 0 || off > len || n > len - off) {
        PyErr_Format(PyExc_IndexError, "%s range [%zd, %zd + %zd) out of bounds for %zd",
                     what, off, off, n, len);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(copy_doc,
"copy(dst, dst_offset, src, src_offset, n, /)\n--\n\n"
"memmove n bytes from src[src_offset:] to dst[dst_offset:] (overlap allowed).");

static PyObject *
g_copy(PyObject *self, PyObject *args)
{
    Py_buffer dst, src;
    Py_ssize_t doff, soff, n;
    void *fault = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "w*ny*nn:copy", &dst, &doff, &src, &soff, &n))
        return NULL;
    if (check_range("destination", doff, n, dst.len) == 0
        && check_range("source", soff, n, src.len) == 0) {
        if (guarded_move((char *)dst.buf + doff, (const char *)src.buf + soff, (size_t)n,
                         &fault) == 0) {
            result = Py_NewRef(Py_None);
        } else {
            uintptr_t f = (uintptr_t)fault, d = (uintptr_t)dst.buf;
            fault_error(fault, (f >= d && f - d < (uintptr_t)dst.len) ? &dst : &src);
        }
    }
    PyBuffer_Release(&src);
    PyBuffer_Release(&dst);
    return result;
}

PyDoc_STRVAR(read_doc,
"read(src, offset=0, n=-1, /)\n--\n\n"
"A bytes copy of src[offset:offset + n] (n < 0: to the end).");

static PyObject *
g_read(PyObject *self, PyObject *args)
{
    Py_buffer src;
    Py_ssize_t off = 0, n = -1;
    void *fault = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*|nn:read", &src, &off, &n))
        return NULL;
    if (n < 0 && off >= 0 && off <= src.len)
        n = src.len - off;
    if (check_range("read", off, n, src.len) == 0) {
        result = PyBytes_FromStringAndSize(NULL, n);
        if (result != NULL
            && guarded_move(PyBytes_AS_STRING(result), (const char *)src.buf + off,
                            (size_t)n, &fault) != 0) {
            Py_CLEAR(result);
            fault_error(fault, &src);
        }
    }
    PyBuffer_Release(&src);
    return result;
}

PyDoc_STRVAR(join_doc,
"join(views, /)\n--\n\n"
"The bytes of every buffer in the sequence, concatenated (b\"\".join, guarded).");

static PyObject *
g_join(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "join() needs a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_buffer *views = PyMem_Calloc(count ? count : 1, sizeof(Py_buffer));
    PyObject *result = NULL;
    Py_ssize_t got = 0, total = 0;
    if (views == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (; got < count; got++) {
        if (PyObject_GetBuffer(items[got], &views[got], PyBUF_SIMPLE) < 0)
            goto done;
        if (views[got].len > PY_SSIZE_T_MAX - total) {
            got++;
            PyErr_NoMemory();
            goto done;
        }
        total += views[got].len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    for (Py_ssize_t k = 0; k < count; k++) {
        void *fault = NULL;
        if (guarded_move(out, views[k].buf, (size_t)views[k].len, &fault) != 0) {
            Py_CLEAR(result);
            fault_error(fault, &views[k]);
            goto done;
        }
        out += views[k].len;
    }
done:
    for (Py_ssize_t k = 0; k < got; k++)
        PyBuffer_Release(&views[k]);
    PyMem_Free(views);
    Py_DECREF(seq);
    return result;
}

PyDoc_STRVAR(mismatch_doc,
"mismatch(a, b, /)\n--\n\n"
"Index of the first differing byte among the first min(len(a), len(b)), or -1.");

static PyObject *
g_mismatch(PyObject *self, PyObject *args)
{
    Py_buffer a, b;
    Py_ssize_t at = -1;
    void *fault = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*y*:mismatch", &a, &b))
        return NULL;
    size_t n = (size_t)(a.len < b.len ? a.len : b.len);
    if (guarded_mismatch(a.buf, b.buf, n, &at, &fault) == 0) {
        result = PyLong_FromSsize_t(at);
    } else {
        uintptr_t f = (uintptr_t)fault, s = (uintptr_t)a.buf;
        fault_error(fault, (f >= s && f - s < (uintptr_t)a.len) ? &a : &b);
    }
    PyBuffer_Release(&b);
    PyBuffer_Release(&a);
    return result;
}

PyDoc_STRVAR(touch_doc,
"touch(buf, step, /)\n--\n\n"
"Read one byte of every step-byte page that buf overlaps (faults the pages in).");

static PyObject *
g_touch(PyObject *self, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t step;
    void *fault = NULL;
    PyObject *result = NULL;
    if (!PyArg_ParseTuple(args, "y*n:touch", &view, &step))
        return NULL;
    if (step <= 0)
        PyErr_Format(PyExc_ValueError, "step must be positive, not %zd", step);
    else if (guarded_touch(view.buf, (size_t)view.len, (size_t)step, &fault) == 0)
        result = Py_NewRef(Py_None);
    else
        fault_error(fault, &view);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(install_doc,
"install(error_class, /)\n--\n\n"
"Install the SIGBUS handler (once; the previous one is kept for faults outside zcio)\n"
"and set the exception class raised for a caught fault.");

static PyObject *
g_install(PyObject *self, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls,
                                                (PyTypeObject *)PyExc_OSError)) {
        PyErr_SetString(PyExc_TypeError, "install() needs an OSError subclass");
        return NULL;
    }
    Py_XSETREF(error_class, Py_NewRef(cls));
    if (!installed) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sigemptyset(&sa.sa_mask);
        /* NODEFER: the handler leaves the signal mask as it was, so the jump (which
         * does not restore masks) leaves it right too. */
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        if (sigaction(SIGBUS, &sa, &previous) != 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        installed = 1;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"copy", g_copy, METH_VARARGS, copy_doc},
    {"read", g_read, METH_VARARGS, read_doc},
    {"join", g_join, METH_O, join_doc},
    {"mismatch", g_mismatch, METH_VARARGS, mismatch_doc},
    {"touch", g_touch, METH_VARARGS, touch_doc},
    {"install", g_install, METH_O, install_doc},
    {NULL, NULL, 0, NULL},
};

int
zcio_guard_init(PyObject *m)
{
    return PyModule_AddFunctions(m, methods);
}
