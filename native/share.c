/* zcio._native, the shared-buffer hand-off (zcio._shared): its system calls, and the
 * whole send, receive and release of the common call.
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
 *     mmap: one object less to make per mapping and none to call.  The cleaner
 *     zcio._shared._unshare (close the descriptor, SHARED.remove) runs here in C.
 *
 * The hand-off compiled whole (accelerate_share, told once by zcio._shared which
 * classes, slot values and constants to use): chan.c's SocketChannel.send_buffer and
 * receive_buffer run zcio_share_send_op / zcio_share_receive_op inside the channel's
 * registry and lock, and pool.c's Buffer.release runs zcio_share_release for a shared
 * buffer's memory.  Each does what the Python code does for the common call, filling
 * the objects' slots directly as pool.c's allocate does (no __init__, no _make, no
 * weakref.finalize), and hands anything else to that code before changing anything:
 *   send: the header packed from the buffer's slots (the format "<8sHHIQQQQ" is
 *     zcio._shared._HEADER's, the one other place it is written), the memory retained
 *     around the sendmsg as mem.retain()/release() do, EAGAIN answered False.
 *   receive: the recvmsg and F_GET_SEALS above; a message whose every check passes
 *     (one descriptor, nothing else, the magic, version, indexes, seals) is mapped and
 *     made a SharedMemory (accounting with SHARED.add, the cleaner) and a
 *     SharedByteBuffer with its tracked view; any other message, or a mapping that
 *     fails, goes to zcio._shared._received, whose checks say why (its messages stay
 *     the one place for them) and close the descriptors.
 *   release: Memory.release for a SharedMemory over a SharedMap (count, revoke every
 *     view, munmap unless an export defers it, the cleaner); a count past zero, the
 *     counts' lock held, or CPython's mmap run Python's.
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

/* One sendmsg(2) of data with memfd attached (SCM_RIGHTS), EINTR retried: the bytes
 * sent, or -1 with the exception set. */
static ssize_t
send_message(int sock, const void *data, size_t len, int memfd)
{
    union { /* aligned for struct cmsghdr */
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof(control));
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
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
    ssize_t r = send_message(sock, data.buf, (size_t)data.len, memfd);
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

/* A hand-off message as one recvmsg(2) left it: share_receive's answer. */
typedef struct {
    char data[DATA_MAX];
    int fds[ANCILLARY_MAX / sizeof(int)];
    Py_ssize_t nfds; /* every descriptor received, in order */
    int other;       /* other ancillary data came */
    int flags;       /* the message's (MSG_CTRUNC) */
    int seals;       /* for exactly one descriptor its F_GET_SEALS, or -errno */
} Message;

/* One recvmsg(2) (MSG_CMSG_CLOEXEC) of at most size bytes with room bytes of ancillary
 * room into m, EINTR retried: the bytes received, or -1 with the exception set
 * (nothing received).  size <= DATA_MAX, room <= ANCILLARY_MAX. */
static ssize_t
receive_message(int sock, Py_ssize_t size, Py_ssize_t room, Message *m)
{
    union {
        char buf[ANCILLARY_MAX];
        struct cmsghdr align;
    } control;
    struct iovec iov = {.iov_base = m->data, .iov_len = (size_t)size};
    struct msghdr msg;
    ssize_t r;
    int err;
    m->nfds = 0;
    m->other = m->seals = 0;
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
                    memcpy(m->fds + m->nfds, CMSG_DATA(c), n * sizeof(int));
                    m->nfds += (Py_ssize_t)n;
                } else {
                    m->other = 1;
                }
            }
            if (m->nfds == 1 && (m->seals = fcntl(m->fds[0], F_GET_SEALS)) < 0)
                m->seals = -errno;
        }
        Py_END_ALLOW_THREADS
    } while (r < 0 && failed(err));
    m->flags = msg.msg_flags;
    return r;
}

/* share_receive's answer for m: (data, fds, other, flags, seals); NULL on error (the
 * descriptors are then still the caller's to close). */
static PyObject *
message_tuple(const Message *m, ssize_t r)
{
    PyObject *list = PyList_New(m->nfds);
    for (Py_ssize_t i = 0; list != NULL && i < m->nfds; i++) {
        PyObject *fd = PyLong_FromLong(m->fds[i]);
        if (fd == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, fd);
    }
    return list == NULL ? NULL
        : Py_BuildValue("(y#NOiN)", m->data, (Py_ssize_t)r, list, m->other ? Py_True : Py_False,
                        m->flags, m->nfds == 1 ? PyLong_FromLong(m->seals) : Py_NewRef(Py_None));
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
    Message m;
    ssize_t r = receive_message(sock, size, room, &m);
    if (r < 0)
        return counted(NULL, args[3]);
    PyObject *result = counted(message_tuple(&m, r), args[3]);
    if (result == NULL)
        close_all(m.fds, m.nfds); /* the ints do not own the descriptors: nobody else will close them */
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

/* The fstat check and mmap(MAP_SHARED) of ``len`` bytes of fd, as CPython's mmap makes
 * them (the GIL released): the address, or MAP_FAILED with *err the errno, or 0 and
 * *small set when the file is shorter than len. */
static void *
map_file(int fd, Py_ssize_t len, int readonly, int *err, int *small)
{
    struct stat st;
    void *addr = MAP_FAILED;
    *err = *small = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fstat(fd, &st) < 0)
        *err = errno;
    else if (S_ISREG(st.st_mode) && (long long)st.st_size < (long long)len)
        *small = 1;
    else if ((addr = mmap(NULL, (size_t)len, readonly ? PROT_READ : PROT_READ | PROT_WRITE,
                          MAP_SHARED, fd, 0)) == MAP_FAILED)
        *err = errno;
    Py_END_ALLOW_THREADS
    return addr;
}

/* A SharedMap of what map_file mapped (unmapped again if this fails). */
static PyObject *
map_wrap(PyTypeObject *t, void *addr, Py_ssize_t len, int readonly)
{
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

static PyObject *
map_new(PyTypeObject *t, PyObject *args, PyObject *kw)
{
    int fd, readonly, err, small;
    Py_ssize_t len;
    static char *names[] = {"fd", "length", "readonly", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "inp:SharedMap", names, &fd, &len, &readonly))
        return NULL;
    if (len <= 0) {
        PyErr_SetString(PyExc_ValueError, "SharedMap: length must be positive");
        return NULL;
    }
    void *addr = map_file(fd, len, readonly, &err, &small);
    if (small) { /* CPython's mmap says the same */
        PyErr_SetString(PyExc_ValueError, "mmap length is greater than file size");
        return NULL;
    }
    if (addr == MAP_FAILED) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return map_wrap(t, addr, len, readonly);
}

/* What accelerate_share() was told (see there). */
static PyTypeObject *map_type, *memory_type, *buffer_type;
static PyObject *unshare_fn, *cleaned_fn, *pool_add, *pool_remove, *received_fn;
static PyObject *shared_globals, *family_descr, *mv_release, *little_endian, *handoff_error;
static PyObject *fixed_big, *fixed_little; /* the values of fixed_names per byte order */
static Py_ssize_t *fixed_offsets, n_fixed;
static Py_ssize_t header_size, ancillary_room, page_size;
static char magic[8];
static long version, flag_read_only, flag_little_endian, seal_shrink, no_writes;
static PyObject *s_registered, *s_sock, *s_toreadonly, *s_release;
/* Slot offsets: SharedMemory's, then SharedByteBuffer's. */
static Py_ssize_t o_base, o_views, o_prune, o_released, o_size, o_refcnt, o_mmap,
    o_finalizer, o_address, o_fd, o_seals;
static Py_ssize_t o_mem, o_mv, o_off, o_cap, o_pos, o_lim, o_ro, o_order;

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

/* zcio._shared._unshare(cell, size, used) made here: the descriptor in the cell closed
 * (-1 left in its place first), then SHARED.remove(size, used), also when the close
 * failed (its OSError raised after), as there.  Arguments of another shape call the
 * Python function. */
static PyObject *
run_unshare(PyObject *args)
{
    long long fd;
    PyObject *cell;
    if (pool_remove == NULL || !PyTuple_CheckExact(args) || PyTuple_GET_SIZE(args) != 3
        || !PyList_CheckExact(cell = PyTuple_GET_ITEM(args, 0)) || PyList_GET_SIZE(cell) != 1
        || !small_int(PyList_GET_ITEM(cell, 0), &fd) || fd > INT_MAX)
        return PyObject_Call(unshare_fn, args, NULL);
    PyObject *gone = PyLong_FromLong(-1);
    if (gone == NULL || PyList_SetItem(cell, 0, gone) < 0) /* steals gone */
        return NULL;
    int r = 0, err = 0;
    if (fd >= 0) { /* os.close's call */
        Py_BEGIN_ALLOW_THREADS
        r = close((int)fd);
        err = errno;
        Py_END_ALLOW_THREADS
    }
    PyObject *done = PyObject_Vectorcall(pool_remove, ((PyTupleObject *)args)->ob_item + 1, 2,
                                         NULL);
    if (done == NULL || r == 0)
        return done;
    Py_DECREF(done);
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
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
    PyObject *r = fn == unshare_fn ? run_unshare(args) : PyObject_Call(fn, args, NULL);
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
        /* The cleaner names the failure: the dying object must not (WriteUnraisable
         * takes a reference to what it is given, and dropping it here would
         * deallocate this object a second time). */
        PyObject *ctx = m->cleaner != NULL ? Py_NewRef(m->cleaner) : NULL;
        if (map_unmap(m) < 0)
            PyErr_WriteUnraisable(ctx);
        Py_XDECREF(ctx);
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

/* -- the hand-off compiled whole (accelerate_share) --------------------------------- */

/* A small exact int's value, or -1 for anything else. */
static inline long long
exact_value(PyObject *o)
{
    long long v;
    return (o != NULL && small_int(o, &v)) ? v : -1;
}

/* zcio._memory.revoke_view(mv): 0 once released or when exported further (BufferError:
 * it stays valid); -1 on another error. */
static int
revoke_view(PyObject *mv)
{
    PyObject *r = PyObject_Vectorcall(mv_release, &mv, 1, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_BufferError))
        return -1;
    PyErr_Clear();
    return 0;
}

/* Whether the channel's socket (its __dict__'s ``_sock``) is AF_UNIX, read as
 * zcio._shared._unix_socket reads it (the _socket.socket member, not the enum
 * property); 0 for anything else, or that cannot be read (no exception). */
static int
unix_socket(PyObject *dict)
{
    PyObject *sock = PyDict_GetItemWithError(dict, s_sock); /* borrowed */
    PyObject *family = sock == NULL ? NULL
        : Py_TYPE(family_descr)->tp_descr_get(family_descr, sock, (PyObject *)Py_TYPE(sock));
    int is_unix = exact_value(family) == AF_UNIX;
    Py_XDECREF(family);
    PyErr_Clear();
    return is_unix;
}

static inline void
put16(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 2; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void
put32(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void
put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint64_t
get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* zcio._shared._header(buf, mem) into h (header_size bytes: "<8sHHIQQQQ", magic,
 * version, flags, seals, offset, capacity, position, limit); 0 when a slot is not what
 * the fast path reads (nothing written that matters: the reference runs). */
static int
pack_header(PyObject *buf, PyObject *mem, unsigned char *h)
{
    long long seals = exact_value(SLOT(mem, o_seals)), off = exact_value(SLOT(buf, o_off)),
              cap = exact_value(SLOT(buf, o_cap)), pos = exact_value(SLOT(buf, o_pos)),
              lim = exact_value(SLOT(buf, o_lim));
    PyObject *ro = SLOT(buf, o_ro);
    if (seals < 0 || seals > 0xFFFFFFFFLL || off < 0 || cap < 0 || pos < 0 || lim < 0
        || (ro != Py_True && ro != Py_False) || header_size != 48)
        return 0;
    long flags = (ro == Py_True ? flag_read_only : 0)
                 | (SLOT(buf, o_order) == little_endian ? flag_little_endian : 0);
    memcpy(h, magic, 8);
    put16(h + 8, (uint64_t)version);
    put16(h + 10, (uint64_t)flags);
    put32(h + 12, (uint64_t)seals);
    put64(h + 16, (uint64_t)off);
    put64(h + 24, (uint64_t)cap);
    put64(h + 32, (uint64_t)pos);
    put64(h + 40, (uint64_t)lim);
    return 1;
}

/* mem.release() of the reference send_buffer's call took: here while the count stays
 * above zero and no Python thread is changing it, else the Python method.  Keeps the
 * exception being raised, as a finally block does, unless the release raises. */
static int
release_retained(PyObject *mem)
{
    PyObject *exc = raised_exception();
    long long rc = exact_value(SLOT(mem, o_refcnt));
    int locked = rc > 1 ? zcio_counts_locked() : 1;
    PyObject *r = NULL;
    if (!locked) {
        if ((r = index_int((Py_ssize_t)rc - 1)) != NULL)
            Py_SETREF(SLOT(mem, o_refcnt), r);
    } else {
        r = PyObject_CallMethodNoArgs(mem, s_release);
        Py_XDECREF(r);
    }
    if (r == NULL) {
        Py_XDECREF(exc);
        return -1;
    }
    if (exc != NULL)
        set_raised_exception(exc);
    return 0;
}

PyObject *
zcio_share_send_op(PyObject *dict, int sock, PyObject *buf, PyObject *path)
{
    if (buffer_type == NULL || buf == NULL || Py_TYPE(buf) != buffer_type)
        return NULL;
    PyObject *mem = SLOT(buf, o_mem), *cell;
    if (mem == NULL || Py_TYPE(mem) != memory_type || SLOT(mem, o_released) != Py_False)
        return NULL;
    long long rc = exact_value(SLOT(mem, o_refcnt)), memfd;
    cell = SLOT(mem, o_fd);
    if (rc <= 0 || rc >= 0x7FFFFFFF || cell == NULL || !PyList_CheckExact(cell)
        || PyList_GET_SIZE(cell) != 1 || (memfd = exact_value(PyList_GET_ITEM(cell, 0))) < 0
        || memfd > INT_MAX)
        return NULL;
    unsigned char header[48];
    if (!pack_header(buf, mem, header) || !unix_socket(dict))
        return NULL;
    if (zcio_counts_locked())
        return NULL;
    /* mem.retain(): a release() by another thread while the GIL is released around
     * the call cannot close the descriptor under it. */
    PyObject *v = index_int((Py_ssize_t)rc + 1);
    if (v == NULL)
        return NULL;
    Py_SETREF(SLOT(mem, o_refcnt), v);
    Py_INCREF(mem);
    ssize_t r = send_message(sock, header, (size_t)header_size, (int)memfd);
    PyObject *sent = counted(r < 0 ? NULL : Py_NewRef(Py_True), path);
    if (release_retained(mem) < 0)
        Py_CLEAR(sent);
    Py_DECREF(mem);
    if (sent == NULL) {
        if (r < 0 && PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
            PyErr_Clear();
            return Py_NewRef(Py_False);
        }
        return NULL;
    }
    if (r != header_size) { /* AF_UNIX queues a small message whole */
        Py_DECREF(sent);
        PyErr_Format(handoff_error, "only %zd of %zd header bytes sent: the stream is "
                     "out of step", (Py_ssize_t)r, header_size);
        return NULL;
    }
    return sent;
}

/* The header's fields, as _check unpacks them. */
typedef struct {
    uint64_t version, flags, claimed, off, cap, pos, lim;
} Header;

/* A buffer over the memfd fd as the header h describes it, made as _adopt
 * makes it (SharedMap, SharedMemory with its accounting and cleaner, SharedByteBuffer
 * and its view) with every slot filled here, no __init__ run.  NULL with no exception
 * when _adopt must answer (a check fails, the mapping fails: it asks again and
 * says why; the first shared buffer, which registers the reducer): fd untouched.  NULL
 * with an exception otherwise; then *owned tells whether fd went with the mapping
 * (closed by its cleaner) or is still the caller's. */
static PyObject *
adopt(int fd, const unsigned char *h, int seals, int *owned)
{
    *owned = 0;
    Header d = {get_le(h + 8, 2), get_le(h + 10, 2), get_le(h + 12, 4), get_le(h + 16, 8),
                get_le(h + 24, 8), get_le(h + 32, 8), get_le(h + 40, 8)};
    PyObject *registered = PyDict_GetItemWithError(shared_globals, s_registered);
    if (header_size != 48 || memcmp(h, magic, 8) != 0 || d.version != (uint64_t)version
        || !(d.pos <= d.lim && d.lim <= d.cap) || d.off > (uint64_t)PY_SSIZE_T_MAX
        || d.cap > (uint64_t)PY_SSIZE_T_MAX - d.off || d.off + d.cap == 0 || seals < 0
        || !(seals & seal_shrink) || (d.claimed & ~(uint64_t)seals) != 0
        || registered != Py_True) {
        PyErr_Clear();
        return NULL;
    }
    Py_ssize_t need = (Py_ssize_t)(d.off + d.cap), off = (Py_ssize_t)d.off,
               cap = (Py_ssize_t)d.cap;
    Py_ssize_t used = (need + page_size - 1) / page_size * page_size;
    int readonly = (d.flags & (uint64_t)flag_read_only) || (seals & no_writes), err, small;
    void *addr = map_file(fd, need, readonly, &err, &small);
    if (addr == MAP_FAILED)
        return NULL;
    PyObject *mm = map_wrap(map_type, addr, need, readonly), *base = NULL, *mem = NULL,
             *buf = NULL, *views = NULL, *cell = NULL, *size = NULL, *usedo = NULL,
             *sealso = NULL, *args = NULL, *added = NULL, *mv = NULL, *ref = NULL;
    if (mm == NULL || (base = PyMemoryView_FromObject(mm)) == NULL
        || (views = PyList_New(0)) == NULL || (cell = PyList_New(1)) == NULL
        || (size = PyLong_FromSsize_t(need)) == NULL
        || (usedo = PyLong_FromSsize_t(used)) == NULL
        || (sealso = PyLong_FromLong(seals)) == NULL
        || (mem = memory_type->tp_alloc(memory_type, 0)) == NULL)
        goto fail;
    PyList_SET_ITEM(cell, 0, PyLong_FromLong(fd));
    if (PyList_GET_ITEM(cell, 0) == NULL || (args = PyTuple_Pack(3, cell, size, usedo)) == NULL)
        goto fail;
    /* SharedMemory.__init__: the accounting, then the slots, then the cleaner. */
    PyObject *stack[2] = {size, usedo};
    if ((added = PyObject_Vectorcall(pool_add, stack, 2, NULL)) == NULL)
        goto fail;
    SLOT(mem, o_mmap) = Py_NewRef(mm);
    SLOT(mem, o_fd) = Py_NewRef(cell);
    SLOT(mem, o_seals) = Py_NewRef(sealso);
    SLOT(mem, o_base) = Py_NewRef(base);
    SLOT(mem, o_views) = Py_NewRef(views);
    SLOT(mem, o_prune) = index_int(8);
    SLOT(mem, o_released) = Py_NewRef(Py_False);
    SLOT(mem, o_size) = Py_NewRef(size);
    SLOT(mem, o_refcnt) = index_int(1);
    SLOT(mem, o_address) = PyLong_FromLong(-1);
    SLOT(mem, o_finalizer) = Py_NewRef(cleaned_fn);
    ((SharedMap *)mm)->cleaner = Py_NewRef(unshare_fn);
    ((SharedMap *)mm)->args = Py_NewRef(args);
    *owned = 1; /* from here the mapping's cleaner closes fd and gives back the count */
    if (SLOT(mem, o_prune) == NULL || SLOT(mem, o_refcnt) == NULL
        || SLOT(mem, o_address) == NULL)
        goto fail;
    /* SharedByteBuffer._make: mem.view(off, off + cap, readonly), tracked, and the
     * slots; the byte order's set as order() sets them. */
    if ((mv = PySequence_GetSlice(base, off, off + cap)) == NULL)
        goto fail;
    if (readonly) {
        PyObject *ro = PyObject_CallMethodNoArgs(mv, s_toreadonly);
        if (ro == NULL || revoke_view(mv) < 0) {
            Py_XDECREF(ro);
            goto fail;
        }
        Py_SETREF(mv, ro);
    }
    if ((ref = PyWeakref_NewRef(mv, NULL)) == NULL || PyList_Append(views, ref) < 0
        || (buf = buffer_type->tp_alloc(buffer_type, 0)) == NULL)
        goto fail;
    PyObject *fixed = d.flags & (uint64_t)flag_little_endian ? fixed_little : fixed_big;
    for (Py_ssize_t i = 0; i < n_fixed; i++)
        SLOT(buf, fixed_offsets[i]) = Py_NewRef(PyTuple_GET_ITEM(fixed, i));
    SLOT(buf, o_mem) = Py_NewRef(mem);
    SLOT(buf, o_mv) = Py_NewRef(mv);
    SLOT(buf, o_ro) = Py_NewRef(readonly ? Py_True : Py_False);
    if ((SLOT(buf, o_off) = index_int(off)) == NULL
        || (SLOT(buf, o_cap) = index_int(cap)) == NULL
        || (SLOT(buf, o_pos) = index_int((Py_ssize_t)d.pos)) == NULL
        || (SLOT(buf, o_lim) = index_int((Py_ssize_t)d.lim)) == NULL)
        Py_CLEAR(buf);
fail:
    Py_XDECREF(ref);
    Py_XDECREF(mv);
    Py_XDECREF(added);
    Py_XDECREF(args);
    Py_XDECREF(sealso);
    Py_XDECREF(usedo);
    Py_XDECREF(size);
    Py_XDECREF(cell);
    Py_XDECREF(views);
    Py_XDECREF(mem);
    Py_XDECREF(base);
    Py_XDECREF(mm); /* the last reference, on failure: unmapped (and cleaned if owned) */
    if (buf == NULL && !PyErr_Occurred())
        PyErr_NoMemory();
    return buf;
}

PyObject *
zcio_share_receive_op(PyObject *dict, int sock, PyObject *path)
{
    if (memory_type == NULL || header_size > DATA_MAX || ancillary_room > ANCILLARY_MAX
        || !unix_socket(dict))
        return NULL;
    Message m;
    ssize_t r = receive_message(sock, header_size, ancillary_room, &m);
    PyObject *ok = counted(r < 0 ? NULL : Py_NewRef(Py_None), path);
    if (ok == NULL) {
        close_all(m.fds, m.nfds);
        if (r < 0 && PyErr_ExceptionMatches(PyExc_BlockingIOError)) {
            PyErr_Clear();
            return Py_NewRef(Py_None);
        }
        return NULL;
    }
    Py_DECREF(ok);
    if (r == header_size && m.nfds == 1 && !m.other && !(m.flags & MSG_CTRUNC)) {
        int owned;
        PyObject *buf = adopt(m.fds[0], (const unsigned char *)m.data, m.seals, &owned);
        if (buf != NULL || PyErr_Occurred()) {
            if (buf == NULL && !owned)
                close(m.fds[0]);
            return buf;
        }
    }
    /* zcio._shared._received: its checks and errors, and the adoption */
    PyObject *t = message_tuple(&m, r);
    if (t == NULL) {
        close_all(m.fds, m.nfds);
        return NULL;
    }
    PyObject *buf = PyObject_Call(received_fn, t, NULL);
    if (buf == NULL) {
        /* Every descriptor it did not close or hand over (-1 marks those: an exception
         * at its entry, before its own error path, leaves them here). */
        PyObject *fds = PyTuple_GET_ITEM(t, 1), *exc = raised_exception(); /* the list */
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(fds); i++) {
            long fd = PyLong_AsLong(PyList_GET_ITEM(fds, i));
            if (fd >= 0)
                close((int)fd);
            else if (fd == -1 && PyErr_Occurred())
                PyErr_Clear();
        }
        set_raised_exception(exc);
    }
    Py_DECREF(t);
    return buf;
}

PyObject *
zcio_share_release(PyObject *mem, Py_ssize_t n)
{
    if (memory_type == NULL || Py_TYPE(mem) != memory_type)
        return NULL;
    PyObject *mm = SLOT(mem, o_mmap), *views = SLOT(mem, o_views), *base = SLOT(mem, o_base);
    long long rc = exact_value(SLOT(mem, o_refcnt));
    if (rc < n || mm == NULL || !Py_IS_TYPE(mm, map_type) || views == NULL
        || !PyList_CheckExact(views) || base == NULL)
        return NULL; /* past zero (an error, or a no-op at zero), or not ours */
    if (zcio_counts_locked())
        return NULL; /* the Python path waits for it */
    /* Memory.release */
    PyObject *v = index_int((Py_ssize_t)(rc - n));
    if (v == NULL)
        return NULL;
    Py_SETREF(SLOT(mem, o_refcnt), v);
    if (rc > n)
        Py_RETURN_FALSE;
    Py_SETREF(SLOT(mem, o_released), Py_NewRef(Py_True));
    Py_INCREF(mem); /* held across what the calls below drop */
    int err = 0;
    /* _revoke: the block's view, then every view it handed out */
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL || revoke_view(base) < 0)
        err = -1;
    else {
        views = SLOT(mem, o_views);
        SLOT(mem, o_views) = fresh;
        fresh = NULL;
        for (Py_ssize_t i = 0; !err && i < PyList_GET_SIZE(views); i++) {
            PyObject *view = PyObject_CallNoArgs(PyList_GET_ITEM(views, i)); /* ref() */
            if (view == NULL || (view != Py_None && revoke_view(view) < 0))
                err = -1;
            Py_XDECREF(view);
        }
        Py_DECREF(views);
    }
    Py_XDECREF(fresh);
    if (!err) { /* DirectMemory._free: unmap unless an export defers it, then the
                 * finalizer (a SharedMap's: nothing, its cleaner ran) */
        mm = SLOT(mem, o_mmap);
        SLOT(mem, o_mmap) = Py_NewRef(Py_None);
        if (((SharedMap *)mm)->exports == 0) {
            PyObject *fin = SLOT(mem, o_finalizer);
            if (map_unmap((SharedMap *)mm) < 0)
                err = -1;
            else if (fin != cleaned_fn) {
                PyObject *r = fin == NULL ? NULL : PyObject_CallNoArgs(fin);
                if (r == NULL)
                    err = -1;
                Py_XDECREF(r);
            }
        }
        Py_DECREF(mm);
    }
    Py_DECREF(mem);
    if (err)
        return NULL;
    Py_RETURN_TRUE;
}

/* accelerate_share(SharedMemory, SharedByteBuffer, big, little, consts, _unshare,
 *                  _cleaned, SHARED.add, SHARED.remove, _received, HandoffError,
 *                  zcio._shared's globals, _socket.socket.family) */
static PyObject *
share_accelerate(PyObject *mod, PyObject *args)
{
    PyObject *mc, *bc, *big, *little, *consts, *un, *cl, *add, *rm, *rcv, *herr, *glb, *fam,
        *le;
    const char *mg;
    Py_ssize_t mglen;
    if (!PyArg_ParseTuple(args, "O!O!O!O!O!OOOOOOO!O:accelerate_share", &PyType_Type, &mc,
                          &PyType_Type, &bc, &PyDict_Type, &big, &PyDict_Type, &little,
                          &PyTuple_Type, &consts, &un, &cl, &add, &rm, &rcv, &herr,
                          &PyDict_Type, &glb, &fam))
        return NULL;
    if (!PyArg_ParseTuple(consts, "nny#lllllnO:accelerate_share consts", &header_size,
                          &ancillary_room, &mg, &mglen, &version, &flag_read_only,
                          &flag_little_endian, &seal_shrink, &no_writes, &page_size, &le))
        return NULL;
    PyTypeObject *m = (PyTypeObject *)mc, *b = (PyTypeObject *)bc;
    if (mglen != 8 || page_size <= 0 || m->tp_dictoffset != 0 || b->tp_dictoffset != 0
        || Py_TYPE(fam)->tp_descr_get == NULL || PyDict_Size(big) != PyDict_Size(little)) {
        PyErr_SetString(PyExc_TypeError, "accelerate_share(): arguments of the wrong shape");
        return NULL;
    }
    struct { Py_ssize_t *at; PyTypeObject *t; const char *name; } slots[] = {
        {&o_base, m, "_base"}, {&o_views, m, "_views"}, {&o_prune, m, "_prune_at"},
        {&o_released, m, "released"}, {&o_size, m, "size"}, {&o_refcnt, m, "refcnt"},
        {&o_mmap, m, "_mmap"}, {&o_finalizer, m, "_finalizer"}, {&o_address, m, "_address"},
        {&o_fd, m, "_fd"}, {&o_seals, m, "seals"}, {&o_mem, b, "_mem"}, {&o_mv, b, "_mv"},
        {&o_off, b, "_off"}, {&o_cap, b, "_cap"}, {&o_pos, b, "_pos"}, {&o_lim, b, "_lim"},
        {&o_ro, b, "_ro"}, {&o_order, b, "_order"},
    };
    for (size_t k = 0; k < sizeof(slots) / sizeof(slots[0]); k++)
        if ((*slots[k].at = zcio_slot_offset(slots[k].t, slots[k].name)) < 0)
            return NULL;
    Py_ssize_t nf = PyDict_Size(big), pos = 0, i = 0;
    Py_ssize_t *offs = PyMem_Malloc((nf + 1) * sizeof(Py_ssize_t));
    PyObject *tb = PyTuple_New(nf), *tl = PyTuple_New(nf), *key, *value;
    if (offs == NULL || tb == NULL || tl == NULL)
        goto fail;
    while (PyDict_Next(big, &pos, &key, &value)) {
        const char *name = PyUnicode_AsUTF8(key);
        PyObject *other = PyDict_GetItemWithError(little, key);
        if (name == NULL || other == NULL || (offs[i] = zcio_slot_offset(b, name)) < 0) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_TypeError, "accelerate_share(): big and little differ");
            goto fail;
        }
        PyTuple_SET_ITEM(tb, i, Py_NewRef(value));
        PyTuple_SET_ITEM(tl, i, Py_NewRef(other));
        i++;
    }
    if (mv_release == NULL
        && (mv_release = PyObject_GetAttrString((PyObject *)&PyMemoryView_Type, "release"))
               == NULL)
        goto fail;
    memcpy(magic, mg, 8);
    PyMem_Free(fixed_offsets);
    fixed_offsets = offs;
    n_fixed = nf;
    Py_XSETREF(fixed_big, tb);
    Py_XSETREF(fixed_little, tl);
    Py_XSETREF(little_endian, Py_NewRef(le));
    Py_XSETREF(map_type, (PyTypeObject *)PyObject_GetAttrString(mod, "SharedMap"));
    Py_XSETREF(memory_type, (PyTypeObject *)Py_NewRef(mc));
    Py_XSETREF(buffer_type, (PyTypeObject *)Py_NewRef(bc));
    Py_XSETREF(unshare_fn, Py_NewRef(un));
    Py_XSETREF(cleaned_fn, Py_NewRef(cl));
    Py_XSETREF(pool_add, Py_NewRef(add));
    Py_XSETREF(pool_remove, Py_NewRef(rm));
    Py_XSETREF(received_fn, Py_NewRef(rcv));
    Py_XSETREF(handoff_error, Py_NewRef(herr));
    Py_XSETREF(shared_globals, Py_NewRef(glb));
    Py_XSETREF(family_descr, Py_NewRef(fam));
    if (map_type == NULL)
        return NULL;
    Py_RETURN_NONE;
fail:
    PyMem_Free(offs);
    Py_XDECREF(tb);
    Py_XDECREF(tl);
    return NULL;
}

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
    {"accelerate_share", share_accelerate, METH_VARARGS,
     "accelerate_share(SharedMemory, SharedByteBuffer, big, little, consts, _unshare, "
     "_cleaned, SHARED.add, SHARED.remove, _received, HandoffError, globals, family): what "
     "the compiled send_buffer/receive_buffer and a shared buffer's release() need."},
    {NULL},
};

int
zcio_share_init(PyObject *m)
{
    const zcio_name names[] = {
        {&s_registered, "_registered"}, {&s_sock, "_sock"}, {&s_toreadonly, "toreadonly"},
        {&s_release, "release"},
    };
    if (intern_names(names, sizeof(names) / sizeof(names[0])) < 0)
        return -1;
    PyObject *t = PyType_FromSpec(&map_spec);
    if (t == NULL)
        return -1;
    int err = PyModule_AddObjectRef(m, "SharedMap", t);
    Py_DECREF(t);
    if (err < 0)
        return -1;
    return PyModule_AddFunctions(m, share_functions);
}
