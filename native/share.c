/* zcio._native, the shared-buffer hand-off's system calls (zcio._shared).
 *
 * SocketChannel.send_buffer / receive_buffer pass a memfd with a 48-byte header over a
 * Unix socket.  Through the socket module each costs more in Python than in the kernel:
 * the ancillary data is built as a list of tuples and parsed back (array, struct,
 * enum flags), and the receiver asks fcntl for the seals in a second call.  These do
 * the same system calls with the GIL released once per call, and hand back what
 * zcio._shared's checks need; the checks, the header's format and every error message
 * stay in zcio._shared, the one place for them, which also keeps the pure-Python calls
 * (through zcio._syscalls.SYS) as the reference.  zcio._shared calls these only while
 * zcio._syscalls.NATIVE_IO is set (a test's syscall layer turns it off, and then sees
 * every call), with the channel's descriptor read inside the channel's in-flight
 * registry (a close meanwhile leaves the number pointing at the dead socket, never at
 * another file).
 *
 *   share_send(sockfd, data, memfd, path) -> int: one sendmsg(2) of ``data`` with
 *     ``memfd`` attached (SCM_RIGHTS), as Syscalls.sendmsg_fds.
 *   share_receive(sockfd, size, ancillary, path) -> (data, fds, other, flags, seals): one
 *     recvmsg(2) of at most ``size`` bytes with ``ancillary`` bytes of room for
 *     ancillary data (MSG_CMSG_CLOEXEC), as Syscalls.recvmsg; ``fds`` every descriptor
 *     received (SCM_RIGHTS, in order), ``other`` whether anything else came, ``flags``
 *     the message's flags (MSG_CTRUNC); for exactly one descriptor ``seals`` is its
 *     fcntl(F_GET_SEALS), or -errno where that failed; else None.
 *
 *   SharedMap(fd, length, readonly): a MAP_SHARED mapping of ``length`` bytes of the
 *     file ``fd``, as CPython's mmap.mmap(fd, length, access=ACCESS_READ or
 *     ACCESS_WRITE) makes it (the same fstat check and ValueError when the file is
 *     shorter), without the private duplicate of ``fd`` mmap keeps (a dup and a close
 *     per mapping): the caller keeps ``fd``.  It exports its bytes through the buffer
 *     protocol (read-only for ``readonly``) and, as mmap, refuses to ``close()``
 *     (munmap) while an export lives (BufferError); unclosed, it unmaps when collected,
 *     which cannot happen before the last export is gone.  ``set_cleaner(fn, *args)``
 *     has fn(*args) run once right after the munmap (zcio._shared's: close the
 *     descriptor and give back the accounting), in place of a weakref.finalize of the
 *     mmap: one object less to make per mapping and none to call.
 *
 * Both count one operation of one system call under ``path`` in zcio.metrics (io.c's
 * count), whatever the outcome, as zcio._shared's Python path records it.  Errors: as
 * the socket module's calls: EINTR runs the signal handlers (PyErr_CheckSignals) and
 * retries, unless a handler raised; any other failure raises the OSError subclass for
 * errno (BlockingIOError for EAGAIN), nothing sent or received.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "native.h"

#ifndef F_GET_SEALS
#define F_GET_SEALS 1034 /* <linux/fcntl.h>: F_LINUX_SPECIFIC_BASE + 10 */
#endif

/* The most ancillary room share_receive takes: zcio._shared asks for CMSG_SPACE of a
 * few descriptors. */
#define ANCILLARY_MAX 256
#define DATA_MAX 4096

/* A descriptor argument: an int in [0, INT_MAX], else -1 with ValueError/TypeError. */
static int
fd_arg(PyObject *o, const char *what)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < 0 || v > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s: bad file descriptor %ld", what, v);
        return -1;
    }
    return (int)v;
}

/* After a failed call: 1 to retry (EINTR, no handler raised), 0 with the exception. */
static int
failed(int err)
{
    if (err == EINTR)
        return PyErr_CheckSignals() < 0 ? 0 : 1;
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    return 0;
}

/* Count the call under ``path`` (zcio.metrics), keeping the exception it raised, if any;
 * NULL if it failed or counting did, else r. */
static PyObject *
counted(PyObject *r, PyObject *path)
{
    PyObject *exc = raised_exception();
    if (zcio_io_count(path, 1, 0) < 0) {
        Py_XDECREF(exc);
        Py_CLEAR(r);
    } else if (exc != NULL) {
        set_raised_exception(exc);
    }
    return r;
}

static PyObject *
share_send(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyUnicode_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "share_send(sockfd, data, memfd, path)");
        return NULL;
    }
    int sock = fd_arg(args[0], "share_send"), memfd = sock < 0 ? -1 : fd_arg(args[2], "share_send");
    if (memfd < 0)
        return NULL;
    Py_buffer data;
    if (PyObject_GetBuffer(args[1], &data, PyBUF_SIMPLE) < 0)
        return NULL;
    union { /* aligned for struct cmsghdr */
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = {.iov_base = data.buf, .iov_len = (size_t)data.len};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof(control.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &memfd, sizeof(int));
    ssize_t r;
    int err;
    do {
        Py_BEGIN_ALLOW_THREADS
        r = sendmsg(sock, &msg, 0);
        err = errno;
        Py_END_ALLOW_THREADS
    } while (r < 0 && failed(err));
    PyBuffer_Release(&data);
    return counted(r < 0 ? NULL : PyLong_FromSsize_t(r), args[3]);
}

/* Close what a failed share_receive received: it never reaches the caller. */
static void
close_all(const int *fds, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        close(fds[i]);
}

static PyObject *
share_receive(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyUnicode_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "share_receive(sockfd, size, ancillary, path)");
        return NULL;
    }
    int sock = fd_arg(args[0], "share_receive");
    Py_ssize_t size = sock < 0 ? -1 : PyLong_AsSsize_t(args[1]);
    Py_ssize_t room = size < 0 ? -1 : PyLong_AsSsize_t(args[2]);
    if (room < 0 || size > DATA_MAX || room > ANCILLARY_MAX) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "share_receive: size or ancillary room out of range");
        return NULL;
    }
    char data[DATA_MAX];
    union {
        char buf[ANCILLARY_MAX];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = data, .iov_len = (size_t)size};
    struct msghdr msg;
    ssize_t r;
    int err, fds[ANCILLARY_MAX / sizeof(int)], seals = 0;
    Py_ssize_t nfds = 0;
    int other = 0;
    do {
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = room ? control.buf : NULL;
        msg.msg_controllen = (size_t)room;
        Py_BEGIN_ALLOW_THREADS
        r = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        err = errno;
        if (r >= 0) {
            /* As the socket module reads it: every item whose length fits what came. */
            for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_len < CMSG_LEN(0))
                    break;
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                    /* the item's data, never past what came (the kernel clips cmsg_len
                     * to it; this keeps fds[] safe whatever it says) */
                    size_t at = (size_t)((char *)CMSG_DATA(c) - control.buf);
                    size_t len = c->cmsg_len - CMSG_LEN(0);
                    if (at > msg.msg_controllen)
                        break;
                    if (len > msg.msg_controllen - at)
                        len = msg.msg_controllen - at;
                    size_t n = len / sizeof(int);
                    memcpy(fds + nfds, CMSG_DATA(c), n * sizeof(int));
                    nfds += (Py_ssize_t)n;
                } else {
                    other = 1;
                }
            }
            if (nfds == 1 && (seals = fcntl(fds[0], F_GET_SEALS)) < 0)
                seals = -errno;
        }
        Py_END_ALLOW_THREADS
    } while (r < 0 && failed(err));
    if (r < 0)
        return counted(NULL, args[3]);
    PyObject *list = PyList_New(nfds);
    for (Py_ssize_t i = 0; list != NULL && i < nfds; i++) {
        PyObject *fd = PyLong_FromLong(fds[i]);
        if (fd == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, fd);
    }
    PyObject *result = list == NULL ? NULL
        : Py_BuildValue("(y#NOiN)", data, (Py_ssize_t)r, list, other ? Py_True : Py_False,
                        msg.msg_flags, nfds == 1 ? PyLong_FromLong(seals) : Py_NewRef(Py_None));
    if ((result = counted(result, args[3])) == NULL)
        close_all(fds, nfds); /* the ints do not own the descriptors: nobody else will close them */
    return result;
}

/* -- SharedMap ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    char *addr;         /* NULL once unmapped */
    Py_ssize_t len;
    Py_ssize_t exports; /* live buffer-protocol exports */
    int readonly;
    PyObject *cleaner;  /* called with args once unmapped, or NULL */
    PyObject *args;
} SharedMap;

static PyObject *
map_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
    int fd, readonly;
    Py_ssize_t len;
    static char *names[] = {"fd", "length", "readonly", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "inp:SharedMap", names, &fd, &len, &readonly))
        return NULL;
    if (len <= 0) {
        PyErr_SetString(PyExc_ValueError, "SharedMap: length must be positive");
        return NULL;
    }
    struct stat st;
    void *addr = MAP_FAILED;
    int err = 0, small = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fstat(fd, &st) < 0)
        err = errno;
    else if (S_ISREG(st.st_mode) && (long long)st.st_size < (long long)len)
        small = 1;
    else if ((addr = mmap(NULL, (size_t)len, readonly ? PROT_READ : PROT_READ | PROT_WRITE,
                          MAP_SHARED, fd, 0)) == MAP_FAILED)
        err = errno;
    Py_END_ALLOW_THREADS
    if (small) { /* CPython's mmap says the same */
        PyErr_SetString(PyExc_ValueError, "mmap length is greater than file size");
        return NULL;
    }
    if (addr == MAP_FAILED) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    SharedMap *m = (SharedMap *)t->tp_alloc(t, 0);
    if (m == NULL) {
        munmap(addr, (size_t)len);
        return NULL;
    }
    m->addr = addr;
    m->len = len;
    m->readonly = readonly;
    return (PyObject *)m;
}

static inline int
is_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* Unmap and run the cleaner (once); -1 with an exception if the cleaner raised. */
static int
map_unmap(SharedMap *m)
{
    if (m->addr == NULL)
        return 0;
    munmap(m->addr, (size_t)m->len);
    m->addr = NULL;
    PyObject *fn = m->cleaner, *args = m->args;
    m->cleaner = m->args = NULL;
    if (fn == NULL) {
        Py_XDECREF(args);
        return 0;
    }
    PyObject *r = PyObject_Call(fn, args, NULL);
    Py_DECREF(fn);
    Py_DECREF(args);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static PyObject *
map_close(SharedMap *m, PyObject *unused)
{
    if (m->exports > 0) {
        PyErr_SetString(PyExc_BufferError, "cannot close exported pointers exist");
        return NULL;
    }
    if (map_unmap(m) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
map_set_cleaner(SharedMap *m, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || !PyCallable_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "set_cleaner(fn, *args): fn must be callable");
        return NULL;
    }
    if (m->addr == NULL) {
        PyErr_SetString(PyExc_ValueError, "mmap closed or invalid");
        return NULL;
    }
    PyObject *rest = PyTuple_New(nargs - 1);
    if (rest == NULL)
        return NULL;
    for (Py_ssize_t i = 1; i < nargs; i++)
        PyTuple_SET_ITEM(rest, i - 1, Py_NewRef(args[i]));
    Py_XSETREF(m->cleaner, Py_NewRef(args[0]));
    Py_XSETREF(m->args, rest);
    Py_RETURN_NONE;
}

static PyObject *
map_closed(SharedMap *m, void *unused)
{
    return PyBool_FromLong(m->addr == NULL);
}

static Py_ssize_t
map_length(SharedMap *m)
{
    return m->len;
}

static int
map_getbuffer(SharedMap *m, Py_buffer *view, int flags)
{
    if (m->addr == NULL) {
        PyErr_SetString(PyExc_ValueError, "mmap closed or invalid");
        return -1;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)m, m->addr, m->len, m->readonly, flags) < 0)
        return -1;
    m->exports++;
    return 0;
}

static void
map_releasebuffer(SharedMap *m, Py_buffer *view)
{
    m->exports--;
}

static void
map_dealloc(SharedMap *m)
{
    PyTypeObject *t = Py_TYPE(m);
    if (m->addr != NULL) {
        /* Collected unclosed: the last view went.  At interpreter exit only the munmap
         * (weakref.finalize, the mmap's cleaner, skips its call then too); else keep
         * any exception being raised. */
        if (is_finalizing())
            Py_CLEAR(m->cleaner);
        PyObject *exc = raised_exception();
        if (map_unmap(m) < 0)
            PyErr_WriteUnraisable((PyObject *)m);
        if (exc != NULL)
            set_raised_exception(exc);
    }
    Py_XDECREF(m->cleaner);
    Py_XDECREF(m->args);
    t->tp_free((PyObject *)m);
    Py_DECREF(t);
}

static PyMethodDef map_methods[] = {
    {"close", (PyCFunction)map_close, METH_NOARGS,
     "close(): munmap (then the cleaner); BufferError while an export lives; again: "
     "nothing."},
    {"set_cleaner", (PyCFunction)(void (*)(void))map_set_cleaner, METH_FASTCALL,
     "set_cleaner(fn, *args): run fn(*args) once, right after the munmap."},
    {NULL},
};

static PyGetSetDef map_getset[] = {
    {"closed", (getter)map_closed, NULL, "Whether the mapping is gone.", NULL},
    {NULL},
};

static PyType_Slot map_slots[] = {
    {Py_tp_doc, "SharedMap(fd, length, readonly): a MAP_SHARED mapping of fd's first "
                "length bytes (an mmap.mmap without its duplicate descriptor), exported "
                "through the buffer protocol; see native/share.c."},
    {Py_tp_new, map_new},
    {Py_tp_dealloc, map_dealloc},
    {Py_tp_methods, map_methods},
    {Py_tp_getset, map_getset},
    {Py_sq_length, map_length},
    {Py_bf_getbuffer, map_getbuffer},
    {Py_bf_releasebuffer, map_releasebuffer},
    {0, NULL},
};

static PyType_Spec map_spec = {
    .name = "zcio._native.SharedMap",
    .basicsize = sizeof(SharedMap),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = map_slots,
};

static PyMethodDef share_functions[] = {
    {"share_send", (PyCFunction)(void (*)(void))share_send, METH_FASTCALL,
     "share_send(sockfd, data, memfd, path) -> int: one sendmsg(2) of data with memfd "
     "attached (SCM_RIGHTS), counted under path; EINTR retried, other errors OSError."},
    {"share_receive", (PyCFunction)(void (*)(void))share_receive, METH_FASTCALL,
     "share_receive(sockfd, size, ancillary, path) -> (data, fds, other, flags, seals): "
     "one recvmsg(2) (MSG_CMSG_CLOEXEC) of at most size bytes with ancillary bytes of "
     "room, counted under path; "
     "every descriptor received, whether other ancillary data came, the message's flags, "
     "and for exactly one descriptor its F_GET_SEALS (-errno if that failed), else None."},
    {NULL},
};

int
zcio_share_init(PyObject *m)
{
    PyObject *t = PyType_FromSpec(&map_spec);
    if (t == NULL)
        return -1;
    int err = PyModule_AddObjectRef(m, "SharedMap", t);
    Py_DECREF(t);
    if (err < 0)
        return -1;
    return PyModule_AddFunctions(m, share_functions);
}
