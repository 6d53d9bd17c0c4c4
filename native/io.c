/* zcio._native, per-call channel I/O: one buffer, one system call, the GIL released.
 *
 * read(fd, buf, offset, how, path) and write(fd, buf, offset, how, path) are the inner
 * loop of FileChannel.read/write(buf[, position]), SocketChannel.read/write(buf) and
 * the pipe ends' read/write(buf) for the common case: one plain contiguous ByteBuffer
 * (not a mapped or composite kind, its memoryview ``_mv`` alive, exact int indexes).
 * Anything else returns NotImplemented before touching anything, and the caller runs
 * the Python path (zcio._iovec), which stays the reference: the two give the same
 * counts, positions, errors and metrics (tests/test_native_io.py holds them to it).
 * One exception to the GIL's release, and to the metrics' sameness: the held gather
 * (zcio_io_gather_held), a non-blocking send of at most 32 KiB made with the GIL held,
 * whose blocking channel may need a second call.
 *
 * Memory safety: the memory is pinned for the whole call by an export of the object
 * under the buffer's memoryview, as the Python path's ``_mv[pos:lim]`` slice pins it:
 * a concurrent release() of the buffer revokes ``_mv`` but cannot free, unmap, resize
 * or hand back the storage (a pooled slot stays reachable) until the call returned.  Indexes are read with the GIL
 * held before the call; the position moves by what the kernel moved, after it.
 *
 * Errors: as the Python functions the reference calls (os.write, sock.send...): EINTR
 * runs the signal handlers (PyErr_CheckSignals) and retries, unless a handler raised;
 * any other failure raises the OSError subclass for errno, nothing moved.  ``how``
 * says which call and what EAGAIN means (IO_SOCKET, IO_EAGAIN_ZERO) and whether a
 * failed call, or an operation with nothing to move, is counted in zcio.metrics
 * (IO_COUNT_ERRORS, IO_COUNT_EMPTY), as each channel's Python path counts them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <limits.h>
#include <string.h>

#include "native.h"


/* Set by setup(): ByteBuffer (typed views share BufferState but count in elements:
 * never here), the indirect base (IndirectByteBuffer) whose kinds must ask their
 * memory, the slots' offsets, and zcio.metrics's lock and counters. */
static PyTypeObject *state_type = NULL, *indirect_type = NULL;
static PyObject *plain_type = NULL; /* the last type found not indirect: a one-entry cache */
static Py_ssize_t off_pos, off_lim, off_ro, off_mv;
static PyObject *metrics_lock = NULL, *metrics_counts = NULL, *metrics_record = NULL;

/* A socket gather of at most COALESCE_MAX bytes in parts of COALESCE_PART bytes or
 * less on average is copied into one block and sent with one send(). */
#define COALESCE_MAX (64 * 1024)
#define COALESCE_PART 512
/* A gather of at most this many buffers keeps its arrays on the stack. */
#define GATHER_STACK 64

#define SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))


/* A non-negative index held as a small exact int (native.h's small_int), or -1: a
 * larger one (over 2**30 on 3.11) takes the Python path. */
static inline Py_ssize_t
exact_index(PyObject *o)
{
    long long v;
    if (o == NULL || !small_int(o, &v) || v < 0 || v > PY_SSIZE_T_MAX)
        return -1;
    return (Py_ssize_t)v;
}

/* Whether t is a kind whose memory this module may touch: a ByteBuffer (typed views
 * are not), not an indirect kind.  ``remember``: the type found is cached (held: never a
 * stale address); the reference it drops may free the one before, which may run Python
 * code, so a caller that must run none passes 0. */
static inline __attribute__((always_inline)) int
plain_kind(PyTypeObject *t, int remember)
{
    if ((PyObject *)t == plain_type)
        return 1;
    if (state_type == NULL || !PyType_IsSubtype(t, state_type)
        || PyType_IsSubtype(t, indirect_type))
        return 0;
    if (remember)
        Py_XSETREF(plain_type, Py_NewRef((PyObject *)t));
    return 1;
}

/* Pin buf's memory into *hold (an export of the object under its memoryview ``_mv``:
 * a bytearray cannot resize, an mmap cannot close, a pooled slot stays reachable, so
 * not reused, until PyBuffer_Release), with *base (``_mv``'s bytes), *pos and *lim.
 * 1 on success; 0 (no exception) when buf is not a plain buffer this module may
 * touch: not a ByteBuffer, an indirect kind, read-only for a read (``into``),
 * released, not flat bytes, or indexes that are not exact ints inside the view. */
static inline __attribute__((always_inline)) int
pin(PyObject *buf, int into, Py_buffer *hold, char **base, Py_ssize_t *pos, Py_ssize_t *lim)
{
    if (!plain_kind(Py_TYPE(buf), 1))
        return 0;
    if (into && SLOT(buf, off_ro) != Py_False)
        return 0;
    PyObject *mv = SLOT(buf, off_mv);
    Py_ssize_t vlen;
    char *bytes;
    if (mv == NULL || !PyMemoryView_Check(mv) || (bytes = own_flat_view(mv, into, 1, &vlen)) == NULL)
        return 0;
    _PyManagedBufferObject *mbuf = ((PyMemoryViewObject *)mv)->mbuf;
    if (hold != NULL && ((mbuf->flags & _Py_MANAGED_BUFFER_RELEASED) || mbuf->master.obj == NULL))
        return 0; /* read only to pin it: one cache line less per buffer in a gather */
    Py_ssize_t p = exact_index(SLOT(buf, off_pos)), l = exact_index(SLOT(buf, off_lim));
    if (p < 0 || l < p || l > vlen)
        return 0;
    /* ``_mv``'s bytes lie in this object's memory, which its own export has kept in
     * place since ``_mv`` was made; this one keeps it there until the call is over.
     * No hold: the caller copies the bytes before it lets go of the GIL. */
    if (hold != NULL && PyObject_GetBuffer(mbuf->master.obj, hold, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        return 0;
    }
    *base = bytes;
    *pos = p;
    *lim = l;
    return 1;
}

/* zcio._native.Counts: one path's four counters (operations, syscalls, kernel_bytes,
 * user_bytes) for zcio.metrics, a sequence of four ints as the pure-Python list is.
 * Each is held as a C long long, or, past that range, as the Python int ``big[i]``, so
 * that any int Python stores reads back the same.  count() adds to the C values with
 * no int made or freed (three of each per operation with a list: about 70 ns). */
typedef struct {
    PyObject_HEAD
    long long v[4];
    PyObject *big[4];
} Counts;

static PyTypeObject *counts_type = NULL;

static PyObject *
counts_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kw != NULL && PyDict_GET_SIZE(kw) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Counts() takes no arguments");
        return NULL;
    }
    return type->tp_alloc(type, 0); /* zeros */
}

static void
counts_dealloc(Counts *self)
{
    for (int i = 0; i < 4; i++)
        Py_CLEAR(self->big[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
counts_length(PyObject *self)
{
    return 4;
}

static PyObject *
counts_item(PyObject *o, Py_ssize_t i)
{
    Counts *self = (Counts *)o;
    if (i < 0 || i >= 4) {
        PyErr_SetString(PyExc_IndexError, "Counts index out of range");
        return NULL;
    }
    return self->big[i] ? Py_NewRef(self->big[i]) : PyLong_FromLongLong(self->v[i]);
}

static int
counts_ass_item(PyObject *o, Py_ssize_t i, PyObject *value)
{
    Counts *self = (Counts *)o;
    if (i < 0 || i >= 4) {
        PyErr_SetString(PyExc_IndexError, "Counts assignment index out of range");
        return -1;
    }
    if (value == NULL || !PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "a Counts entry is an int and cannot be deleted");
        return -1;
    }
    int over = 0;
    long long v = PyLong_AsLongLongAndOverflow(value, &over);
    if (v == -1 && PyErr_Occurred())
        return -1;
    Py_CLEAR(self->big[i]);
    if (over)
        self->big[i] = PyNumber_Index(value); /* an exact int */
    else
        self->v[i] = v;
    return over && self->big[i] == NULL ? -1 : 0;
}

static PyObject *
counts_repr(PyObject *self)
{
    PyObject *list = PySequence_List(self);
    if (list == NULL)
        return NULL;
    PyObject *r = PyUnicode_FromFormat("Counts(%R)", list);
    Py_DECREF(list);
    return r;
}

static PyType_Slot counts_slots[] = {
    {Py_tp_doc, "Counts()\n--\n\n"
                "One zcio.metrics path's counters (operations, syscalls, kernel_bytes, "
                "user_bytes): a sequence of four ints the compiled paths add to directly."},
    {Py_tp_new, counts_new},
    {Py_tp_dealloc, counts_dealloc},
    {Py_tp_repr, counts_repr},
    {Py_sq_length, counts_length},
    {Py_sq_item, counts_item},
    {Py_sq_ass_item, counts_ass_item},
    {0, NULL},
};

static PyType_Spec counts_spec = {
    .name = "zcio._native.Counts",
    .basicsize = sizeof(Counts),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = counts_slots,
};

/* Far from the C range's edge: the adds of count() cannot wrap. */
#define COUNT_TOP ((long long)1 << 62)

/* metrics[path]'s Counts when count() may add to it directly, else NULL (an exception
 * only if the lookup raised).  Every update of the counters holds the metrics lock, and
 * the GIL is held from this check to the last store: with the lock free, no update is
 * half done and none can start.  Not directly: a path not counted yet, counters not a
 * Counts, one held as a Python int or near the edge, or a lock not zcio._native.Lock,
 * whose state this cannot read without a call. */
static inline Counts *
counts_ready(PyObject *path)
{
    PyObject *c = PyDict_GetItemWithError(metrics_counts, path); /* borrowed */
    if (c == NULL || !Py_IS_TYPE(c, counts_type) || zcio_lock_held(metrics_lock) != 0)
        return NULL;
    Counts *k = (Counts *)c;
    long long *v = k->v;
    if (k->big[0] || k->big[1] || k->big[3] || v[0] >= COUNT_TOP || v[1] >= COUNT_TOP
        || v[3] >= COUNT_TOP)
        return NULL;
    return k;
}

/* Add one operation of ``syscalls`` calls and ``user_bytes`` (both in [0, 2**62)) to
 * counters counts_ready() gave, the GIL held since. */
static inline void
counts_add(Counts *k, Py_ssize_t syscalls, Py_ssize_t user_bytes)
{
    k->v[0] += 1;
    k->v[1] += syscalls;
    k->v[3] += user_bytes;
}

/* Add one operation of ``syscalls`` calls and ``user_bytes`` to metrics[path], as
 * Metrics.record does: directly when counts_ready() allows, else record() itself runs. */
static int
count(PyObject *path, Py_ssize_t syscalls, Py_ssize_t user_bytes)
{
    Counts *k = counts_ready(path);
    if (k != NULL && syscalls >= 0 && syscalls < COUNT_TOP && user_bytes >= 0
        && user_bytes < COUNT_TOP) {
        counts_add(k, syscalls, user_bytes);
        return 0;
    }
    if (PyErr_Occurred())
        return -1;
    PyObject *r = PyObject_CallFunction(metrics_record, "Onnn", path, syscalls,
                                        (Py_ssize_t)0, user_bytes);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* count() for the other parts (native.h); io_setup() must have run. */
int
zcio_io_count(PyObject *path, Py_ssize_t syscalls, Py_ssize_t user_bytes)
{
    if (metrics_counts == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "zcio._native: io_setup() has not run");
        return -1;
    }
    return count(path, syscalls, user_bytes);
}

/* count() for an operation that failed, keeping the exception it raised (or the one
 * count raised, if it failed itself). */
static void
count_failed(PyObject *path, Py_ssize_t syscalls, Py_ssize_t user_bytes)
{
    PyObject *exc = raised_exception();
    if (count(path, syscalls, user_bytes) < 0)
        Py_XDECREF(exc);
    else
        set_raised_exception(exc);
}

/* advance() for a position that is not a small exact int: ``_pos + n`` in Python. */
static __attribute__((noinline)) int
advance_any(PyObject *buf, Py_ssize_t n)
{
    PyObject *p = SLOT(buf, off_pos);
    PyObject *d = PyLong_FromSsize_t(n);
    if (d == NULL)
        return -1;
    PyObject *np = p ? PyNumber_Add(p, d) : NULL;
    Py_DECREF(d);
    if (np == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_AttributeError, "_pos");
        return -1;
    }
    Py_XSETREF(SLOT(buf, off_pos), np);
    return 0;
}

/* position += n (the position as it is now, as ``_pos += n`` does). */
static inline __attribute__((always_inline)) int
advance(PyObject *buf, Py_ssize_t n)
{
    PyObject *p = SLOT(buf, off_pos);
    long long v;
    if (p != NULL && small_int(p, &v) && v >= 0 && v <= PY_SSIZE_T_MAX - n) {
        PyObject *np = index_int((Py_ssize_t)v + n); /* the usual case: no add */
        if (np == NULL)
            return -1;
        Py_SETREF(SLOT(buf, off_pos), np);
        return 0;
    }
    return advance_any(buf, n);
}

/* One call moving [pos, lim) of buf; ``into``: a read.  Returns the count (>= 0) or
 * one of the T_ answers (native.h). */
Py_ssize_t
zcio_io_transfer(int fd, PyObject *buf, long long offset, int how, PyObject *path, int into)
{
    char *base;
    Py_ssize_t pos, lim;
    Py_buffer hold;
    if (!pin(buf, into, &hold, &base, &pos, &lim))
        return T_NOT_PLAIN;
    Py_ssize_t want = lim - pos, r;
    char *p = base + pos;
    int err;
    if (want == 0) { /* nothing remains, or no room: no call */
        PyBuffer_Release(&hold);
        if ((how & IO_COUNT_EMPTY) && count(path, 0, 0) < 0)
            return T_ERROR;
        return T_NOTHING;
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        if (how & IO_SOCKET)
            r = into ? recv(fd, p, (size_t)want, 0) : send(fd, p, (size_t)want, 0);
        else if (offset < 0)
            r = into ? read(fd, p, (size_t)want) : write(fd, p, (size_t)want);
        else
            r = into ? pread(fd, p, (size_t)want, (off_t)offset)
                     : pwrite(fd, p, (size_t)want, (off_t)offset);
        err = errno;
        Py_END_ALLOW_THREADS
        if (r >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) { /* a handler raised: the call fails with it */
            PyBuffer_Release(&hold);
            if (how & IO_COUNT_ERRORS)
                count_failed(path, 1, 0);
            return T_ERROR;
        }
    }
    PyBuffer_Release(&hold);
    if (r < 0) {
        if ((err == EAGAIN || err == EWOULDBLOCK) && (how & IO_EAGAIN_ZERO)) {
            if ((how & IO_COUNT_ERRORS) && count(path, 1, 0) < 0)
                return T_ERROR;
            return T_AGAIN;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        if (how & IO_COUNT_ERRORS)
            count_failed(path, 1, 0);
        return T_ERROR;
    }
    /* Positions first: counting may run Python code (a signal handler that raises),
     * and the buffer must say what moved whatever the call then raises. */
    if (r > 0 && advance(buf, r) < 0)
        return T_ERROR;
    if (count(path, 1, r) < 0)
        return T_ERROR;
    return r;
}

/* A run of reference count changes to one object, made at once when it ends. */
typedef struct {
    PyObject *o;
    Py_ssize_t n;
} RefRun;

/* End the run of n increments (o gains n references) and start one on ``next``. */
static inline void
run_gain(RefRun *run, PyObject *next)
{
    if (run->n) /* Py_SET_REFCNT leaves an immortal object (3.12+) as it is */
        Py_SET_REFCNT(run->o, Py_REFCNT(run->o) + run->n);
    run->o = next;
    run->n = 0;
}

/* End the run of n decrements (each of n slots held a reference: the count is at least
 * n; the last one is a Py_DECREF, which frees the object at zero) and start one. */
static inline void
run_lose(RefRun *run, PyObject *next)
{
    if (run->n) {
        Py_SET_REFCNT(run->o, Py_REFCNT(run->o) - (run->n - 1));
        Py_DECREF(run->o);
    }
    run->o = next;
    run->n = 0;
}

/* Positions set part by part for the r bytes the kernel took (zcio._iovec.advance, as
 * Java's IOUtil): while anything is left of r, part i, of owner[i] with len[i] bytes
 * from index start[i], sets its owner's position to start[i] plus its share (what is
 * left of r, len[i] at most); a buffer listed twice ends where its last part with a
 * share puts it.  Buffers moving to positions below INDEX_INTS take the table's ints:
 * their reference counts change once per run of equal ones, not once per buffer, which
 * would chain 2 x 64 read-modify-writes of two words, each waiting for the one before
 * (half the loop's time).  Every int gained is the table's, which holds a reference of
 * its own; an int let go whose increments still wait (set by an earlier part of the
 * same buffer) has them made first: no count can reach zero early.  0, or -1 with an
 * exception (the parts before moved). */
static int
advance_parts(PyObject *const *owner, const Py_ssize_t *start, const Py_ssize_t *len,
              Py_ssize_t n, Py_ssize_t r)
{
    RefRun gained = {NULL, 0}, lost = {NULL, 0};
    int ok = 0;
    for (Py_ssize_t i = 0; i < n && r > 0; i++) {
        Py_ssize_t step = len[i] < r ? len[i] : r, to = start[i] + step;
        PyObject *b = owner[i], *p = SLOT(b, off_pos), *np;
        r -= step;
        if (step == 0)
            continue;
        if (p == gained.o) /* an earlier part's int: its increments first */
            run_gain(&gained, gained.o);
        if (p != NULL && to < INDEX_INTS) {
            if ((np = table_int(to)) == NULL) {
                ok = -1;
                break;
            }
            SLOT(b, off_pos) = np; /* the reference counted in ``gained`` */
            if (np != gained.o)
                run_gain(&gained, np);
            gained.n++;
            if (p != lost.o)
                run_lose(&lost, p);
            lost.n++;
        } else if ((np = PyLong_FromSsize_t(to)) == NULL) {
            ok = -1;
            break;
        } else {
            Py_XSETREF(SLOT(b, off_pos), np);
        }
    }
    run_gain(&gained, NULL);
    run_lose(&lost, NULL);
    return ok;
}

/* The answer of a gather whose ``calls``-th call failed with ``err`` (not EINTR), after
 * earlier calls of the operation took ``prior`` bytes: those bytes if any (Java's rule:
 * the error comes again on the next call), counted as moved; else, for EAGAIN with
 * IO_EAGAIN_ZERO, T_AGAIN; else the OSError raised (T_ERROR).  A failed operation is
 * counted with IO_COUNT_ERRORS, as each channel's Python path counts it. */
static Py_ssize_t
gather_failed(int err, int how, PyObject *path, Py_ssize_t calls, Py_ssize_t prior)
{
    if (prior > 0)
        return count(path, calls, prior) < 0 ? T_ERROR : prior;
    if ((err == EAGAIN || err == EWOULDBLOCK) && (how & IO_EAGAIN_ZERO))
        return (how & IO_COUNT_ERRORS) && count(path, calls, 0) < 0 ? T_ERROR : T_AGAIN;
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    if (how & IO_COUNT_ERRORS)
        count_failed(path, calls, 0);
    return T_ERROR;
}

/* k bytes, COALESCE_PART at most, in 16-byte moves (the last one overlapping): inline,
 * as a memcpy whose size the compiler knows is small becomes ``rep movsq``, twice as
 * slow for 128 bytes as the whole loop around it (measured). */
typedef char v32 __attribute__((vector_size(32), aligned(1), may_alias));
typedef char v16 __attribute__((vector_size(16), aligned(1), may_alias));
static inline __attribute__((always_inline)) void
copy_small(char *d, const char *s, size_t k)
{
    if (k >= 32) {
        for (size_t i = 0; i + 32 < k; i += 32)
            *(v32 *)(d + i) = *(const v32 *)(s + i);
        *(v32 *)(d + k - 32) = *(const v32 *)(s + k - 32);
    } else if (k >= 16) {
        *(v16 *)d = *(const v16 *)s;
        *(v16 *)(d + k - 16) = *(const v16 *)(s + k - 16);
    } else {
        for (size_t i = 0; i < k; i++)
            d[i] = s[i];
    }
}

#ifndef Py_GIL_DISABLED
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define HELD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef HELD_CLONES
#define HELD_CLONES
#endif

/* The block zcio_io_gather_held() copies into: the GIL guards it. */
static char held_block[GATHER_STACK * COALESCE_PART] __attribute__((aligned(64)));

/* Put the positions of parts [0, m) back (old[i], their references) from their limits. */
static void
put_back(PyObject *list, PyObject *const *old, Py_ssize_t m)
{
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *b = PyList_GET_ITEM(list, i), *lim = SLOT(b, off_pos);
        SLOT(b, off_pos) = old[i];
        Py_DECREF(lim); /* never the last: the limit's slot holds it */
    }
}

/* Whether b is one of list[0, i). */
static int
listed_before(PyObject *list, Py_ssize_t i, PyObject *b)
{
    while (i-- > 0)
        if (PyList_GET_ITEM(list, i) == b)
            return 1;
    return 0;
}

/* zcio_io_gather_held's copy: parts [0, i) copied to *out on and their positions set to
 * their limits (old[]: the positions, with their references; len[]: their bytes); i, the
 * first part that cannot be sent this way, or n.  With AVX2 where the compiler can pick
 * at load time (32-byte moves: 5 % of the whole write, measured), else as built. */
static __attribute__((noinline)) HELD_CLONES Py_ssize_t
held_parts(PyObject *list, Py_ssize_t n, PyObject **old, Py_ssize_t *len, char **out)
{
    Py_ssize_t i;
    RefRun gained = {NULL, 0};
    /* in locals: the stores below could alias the globals, which would be read again */
    PyObject *const *item = ((PyListObject *)list)->ob_item;
    const Py_ssize_t o_mv = off_mv, o_pos = off_pos, o_lim = off_lim;
    PyTypeObject *const plain = (PyTypeObject *)plain_type;
    char *to = *out;
    for (i = 0; i < n; i++) {
        PyObject *b = item[i];
        if (Py_TYPE(b) != plain && !plain_kind(Py_TYPE(b), 0))
            break;
        PyObject *mv = SLOT(b, o_mv), *po = SLOT(b, o_pos), *lo = SLOT(b, o_lim);
        Py_ssize_t vlen, p, l;
        char *base;
        if (mv == NULL || !PyMemoryView_Check(mv) || (base = own_flat_view(mv, 0, 1, &vlen)) == NULL)
            break;
        if ((p = exact_index(po)) < 0 || (l = exact_index(lo)) < p || l > vlen
            || l - p > COALESCE_PART)
            break;
        /* listed before: its position is its limit now (the reference would send it
         * twice; the general path does) */
        if (l == p && listed_before(list, i, b))
            break;
        copy_small(to, base + p, (size_t)(len[i] = l - p));
        to += l - p;
        old[i] = po;
        SLOT(b, o_pos) = lo; /* the reference counted in ``gained`` */
        if (lo != gained.o)
            run_gain(&gained, lo);
        gained.n++;
    }
    run_gain(&gained, NULL);
    *out = to;
    return i;
}
#endif

/* A socket gather of small parts, sent with the GIL held (chan.c's SocketChannel.write,
 * before anything is registered).
 *
 * A list of 2 to GATHER_STACK distinct plain buffers, each with COALESCE_PART bytes or
 * fewer left (32 KiB in all at most), is copied into one static block and sent with one
 * send(MSG_DONTWAIT), the GIL held from the first check to the last position.  That call
 * never waits: it copies at most 32 KiB into the socket's buffer, as the copy before it
 * did into the block.  Nothing else runs meanwhile, so no part can be released or
 * changed, nothing is pinned, owned, allocated or registered, and no thread can see a
 * position half moved: each part's position is set to its limit as it is copied, and
 * the parts the kernel did not take are put back and advanced by what it took.  The
 * general path costs about twice as much around the same send (measured on 64 x 128 B).
 *
 * Answers, as zcio_io_gather's and counted as there: the count, T_AGAIN (a non-blocking
 * channel's EAGAIN) or T_ERROR.  T_NOT_PLAIN (nothing moved, nothing counted: the
 * general path runs) for any other list: a part not plain or larger, a buffer listed
 * twice, nothing to send, counters count() could not add to without running Python, or
 * a send interrupted by a signal (the general path makes that call again, and runs the
 * handlers).  T_CONTINUE for a blocking channel (``blocking(channel)``, asked only
 * then) whose send took less than everything (EAGAIN: nothing): *moved bytes were
 * taken and the positions moved by them, one call made, nothing counted; the caller,
 * registered, finishes the operation with zcio_io_gather(..., 1, *moved), which waits
 * as a blocking channel must.
 *
 * Syscalls: send(2) with MSG_DONTWAIT, once. */
Py_ssize_t
zcio_io_gather_held(int fd, PyObject *list, int how, PyObject *path,
                    int (*blocking)(void *), void *channel, Py_ssize_t *moved)
{
#ifdef Py_GIL_DISABLED
    return T_NOT_PLAIN;
#else
    Py_ssize_t n = PyList_GET_SIZE(list), i, r;
    if (!(how & IO_SOCKET) || n < 2 || n > GATHER_STACK || state_type == NULL)
        return T_NOT_PLAIN;
    Counts *counts = counts_ready(path);
    if (counts == NULL) {
        PyErr_Clear();
        return T_NOT_PLAIN;
    }
    /* The last part first: where one part is too large for this path it is most often
     * the last (small heads, then a body), and the parts before it would be copied for
     * nothing. */
    PyObject *last = PyList_GET_ITEM(list, n - 1);
    Py_ssize_t lp, ll;
    if ((Py_TYPE(last) != (PyTypeObject *)plain_type && !plain_kind(Py_TYPE(last), 0))
        || (lp = exact_index(SLOT(last, off_pos))) < 0
        || (ll = exact_index(SLOT(last, off_lim))) < lp || ll - lp > COALESCE_PART)
        return T_NOT_PLAIN;
    PyObject *old[GATHER_STACK]; /* the positions replaced, with their references */
    Py_ssize_t len[GATHER_STACK];
    char *to = held_block;
    i = held_parts(list, n, old, len, &to);
    size_t total = (size_t)(to - held_block);
    if (i < n || total == 0) {
        put_back(list, old, i);
        return T_NOT_PLAIN;
    }
    r = send(fd, held_block, total, MSG_DONTWAIT);
    int err = errno;
    if (r == (Py_ssize_t)total) { /* the usual case: every part taken */
        RefRun lost = {NULL, 0};
        for (i = 0; i < n; i++) {
            if (old[i] != lost.o)
                run_lose(&lost, old[i]);
            lost.n++;
        }
        run_lose(&lost, NULL);
        counts_add(counts, 1, r);
        return r;
    }
    Py_ssize_t start[GATHER_STACK];
    for (i = 0; i < n; i++)
        start[i] = exact_index(old[i]); /* held_parts took them: exact, not negative */
    put_back(list, old, n);
    if (r < 0 && err == EINTR)
        return T_NOT_PLAIN;
    int waits = blocking(channel); /* asked only now: the usual case never needs it */
    if (r < 0 && waits && (err == EAGAIN || err == EWOULDBLOCK))
        r = 0;
    if (r < 0)
        return gather_failed(err, how, path, 1, 0);
    if (advance_parts(((PyListObject *)list)->ob_item, start, len, n, r) < 0)
        return r > 0 ? (count_failed(path, 1, r), T_ERROR) : T_ERROR;
    if (waits) {
        *moved = r;
        return T_CONTINUE;
    }
    counts_add(counts, 1, r);
    return r;
#endif
}

/* One gather call for a list of plain buffers: writev/pwritev, or sendmsg, of every
 * buffer's [position, limit) in order (at most IOV_MAX with bytes left); positions then
 * advance buffer by buffer by what the kernel took (advance_parts).  The count or a T_
 * answer; T_NOT_PLAIN, before anything moved, for any buffer not plain, or more than
 * IOV_MAX of them with bytes left (the Python loop chunks those).  ``prior_calls`` calls
 * of the same operation took ``prior`` bytes before this one (zcio_io_gather_held's
 * T_CONTINUE; else 0 and 0): they are counted with it, and added to its count; an error
 * after them answers them (gather_failed). */
Py_ssize_t
zcio_io_gather(int fd, PyObject *list, long long offset, int how, PyObject *path,
               Py_ssize_t prior_calls, Py_ssize_t prior)
{
    Py_ssize_t n = PyList_GET_SIZE(list), used = 0, r = 0, i, calls = prior_calls + 1;
    int err = 0;
    /* Up to GATHER_STACK buffers, the arrays live on the stack (2.6 KiB); the holds only
     * for the parts sent from their own memory (``own``: not copied). */
    PyObject *owner_s[GATHER_STACK];
    struct iovec iov_s[GATHER_STACK];
    Py_ssize_t len_s[GATHER_STACK], start_s[GATHER_STACK];
    char own_s[GATHER_STACK];
    int heap = n > GATHER_STACK;
    PyObject **owner = heap ? PyMem_Malloc(n * sizeof(PyObject *)) : owner_s; /* held: the list may change */
    struct iovec *iov = heap ? PyMem_Malloc(n * sizeof(struct iovec)) : iov_s;
    Py_ssize_t *len = heap ? PyMem_Malloc(n * sizeof(Py_ssize_t)) : len_s;
    Py_ssize_t *start = heap ? PyMem_Malloc(n * sizeof(Py_ssize_t)) : start_s;
    char *own = heap ? PyMem_Malloc((size_t)n) : own_s;
    Py_buffer *holds = NULL;
    if (owner == NULL || iov == NULL || len == NULL || start == NULL || own == NULL) {
        if (heap) {
            PyMem_Free(owner);
            PyMem_Free(iov);
            PyMem_Free(len);
            PyMem_Free(start);
            PyMem_Free(own);
        }
        PyErr_NoMemory();
        return T_ERROR;
    }
    Py_ssize_t pinned = 0, owned = 0, answer;
    size_t total = 0, room = 0, filled = 0;
    char *joined = NULL;
    int run = 0;          /* the last iovec: 0 a part, 1 a lone small part, 2 a run */
    Py_ssize_t direct = 0, parts = 0; /* iovecs of the parts' own memory; parts */
    Py_ssize_t last = -1; /* the part of the last iovec of its own memory */
    /* Runs of small parts to a socket (COALESCE_PART bytes or less each, two or more in
     * a row) are copied into one block, a run to an iovec: one copy and one send() cost
     * the TCP stack less than a sendmsg of many short iovecs (measured in C over
     * loopback TCP, with the reader's recv: 64 iovecs of 128 B 3.0-3.1 us, one send of
     * the 8 KiB 1.8 us).  Any other part is an iovec of its own memory,
     * never copied: a large one, a small one alone between large ones (it is copied
     * only when a second one follows), a small one once the block (room for every part
     * small, COALESCE_MAX at most) is full; so every byte copied saves an iovec.  Each
     * part is copied while its buffer is at hand.  The copy is made with the GIL held,
     * so nothing can release the memory under it; only the buffers of parts sent from
     * their own memory are pinned for the call.  The bytes, the count and the
     * positions are those of a sendmsg of the parts in order. */
    if ((how & IO_SOCKET) && n > 1) {
        room = (size_t)n * COALESCE_PART < COALESCE_MAX ? (size_t)n * COALESCE_PART
                                                        : COALESCE_MAX;
        if ((joined = PyMem_Malloc(room)) == NULL)
            room = 0;
    }
    for (i = 0; i < n; i++) { /* every buffer checked before anything is touched */
        char *base;
        Py_ssize_t pos, lim;
        owner[owned++] = Py_NewRef(PyList_GET_ITEM(list, i));
        if (!pin(owner[i], 0, NULL, &base, &pos, &lim)) {
            answer = T_NOT_PLAIN;
            goto done;
        }
        start[i] = pos;
        own[i] = 0;
        size_t k = (size_t)(len[i] = lim - pos);
        if (k == 0)
            continue;
        if (++parts > IOV_MAX) { /* as the reference: IOV_MAX parts per call */
            answer = T_NOT_PLAIN;
            goto done;
        }
        total += k;
        int small = k <= COALESCE_PART;
        if (small && run == 1 && filled + iov[used - 1].iov_len + k <= room) {
            /* the lone small part before this one: into the block, a run begins */
            memcpy(joined + filled, iov[used - 1].iov_base, iov[used - 1].iov_len);
            iov[used - 1].iov_base = joined + filled;
            filled += iov[used - 1].iov_len;
            own[last] = 0;
            direct--;
            run = 2;
        }
        if (small && run == 2 && filled + k <= room) {
            memcpy(joined + filled, base + pos, k);
            filled += k;
            iov[used - 1].iov_len += k;
            continue;
        }
        iov[used].iov_base = base + pos; /* its own memory */
        iov[used++].iov_len = k;
        own[last = i] = 1;
        direct++;
        run = small;
    }
    if (used == 0) { /* nothing left (after a held call: cannot happen, GIL held since) */
        if (prior_calls)
            answer = count(path, prior_calls, prior) < 0 ? T_ERROR : prior;
        else
            answer = (how & IO_COUNT_EMPTY) && count(path, 0, 0) < 0 ? T_ERROR : T_NOTHING;
        goto done;
    }
    if (direct) {
        if ((holds = PyMem_Malloc(direct * sizeof(Py_buffer))) == NULL) {
            PyErr_NoMemory();
            answer = T_ERROR;
            goto done;
        }
        for (i = 0; i < n; i++) {
            char *base;
            Py_ssize_t pos, lim;
            if (!own[i])
                continue;
            if (!pin(owner[i], 0, &holds[pinned], &base, &pos, &lim)) {
                answer = T_NOT_PLAIN; /* cannot happen: checked above, GIL held since */
                goto done;
            }
            pinned++;
        }
    }
    for (;;) {
        Py_BEGIN_ALLOW_THREADS
        if (!direct) { /* one run: the whole block */
            r = send(fd, joined, total, 0);
        } else if (how & IO_SOCKET) {
            struct msghdr msg = {0};
            msg.msg_iov = iov;
            msg.msg_iovlen = (size_t)used;
            r = sendmsg(fd, &msg, 0);
        } else if (offset < 0) {
            r = writev(fd, iov, (int)used);
        } else {
            r = pwritev(fd, iov, (int)used, (off_t)offset);
        }
        err = errno;
        Py_END_ALLOW_THREADS
        if (r >= 0 || err != EINTR)
            break;
        if (PyErr_CheckSignals() < 0) { /* a handler raised: so does the operation */
            if ((how & IO_COUNT_ERRORS) || prior > 0)
                count_failed(path, calls, prior);
            answer = T_ERROR;
            goto done;
        }
    }
    if (r < 0) {
        answer = gather_failed(err, how, path, calls, prior);
        goto done;
    }
    answer = prior + r;
    /* Positions first, as in zcio_io_transfer. */
    if (advance_parts(owner, start, len, owned, r) < 0 || count(path, calls, prior + r) < 0)
        answer = T_ERROR;
done:
    for (i = 0; i < pinned; i++)
        PyBuffer_Release(&holds[i]);
    for (i = 0; i < owned; i++)
        Py_DECREF(owner[i]);
    PyMem_Free(joined);
    PyMem_Free(holds);
    if (heap) {
        PyMem_Free(owner);
        PyMem_Free(iov);
        PyMem_Free(len);
        PyMem_Free(start);
        PyMem_Free(own);
    }
    return answer;
}

static int
as_int(PyObject *o, int *v)
{
    long x = PyLong_AsLong(o);
    if (x == -1 && PyErr_Occurred())
        return -1;
    if (x < INT_MIN || x > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "out of the C int range");
        return -1;
    }
    *v = (int)x;
    return 0;
}

static int
parse(PyObject *const *args, Py_ssize_t nargs, int *fd, long long *offset, int *how,
      PyObject **path)
{
    if (nargs != 5 || !PyUnicode_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "expected (fd, buffer, offset, how, path: str)");
        return -1;
    }
    if (as_int(args[0], fd) < 0)
        return -1;
    *offset = PyLong_AsLongLong(args[2]);
    if (*offset == -1 && PyErr_Occurred())
        return -1;
    if (as_int(args[3], how) < 0)
        return -1;
    *path = args[4];
    return 0;
}

/* What io.c's calls answer Python, from a transfer's or a gather's result: the count;
 * 0 when no call was made or it met EAGAIN; for a read, -1 at end of file or stream (a
 * count of 0); NotImplemented for a buffer this module does not take; NULL with the
 * exception. */
PyObject *
zcio_io_answer(Py_ssize_t r, int into)
{
    switch (r) {
    case T_NOT_PLAIN: Py_RETURN_NOTIMPLEMENTED;
    case T_ERROR: return NULL;
    case T_NOTHING: case T_AGAIN: r = 0; break;
    case 0: r = into ? -1 : 0; break;
    default: break;
    }
    return index_int(r); /* a count below 65536: the index table's int, none made */
}

/* io_read / io_write: one call for one buffer (a read: EAGAIN gives 0). */
static PyObject *
one_call(PyObject *const *args, Py_ssize_t nargs, int into)
{
    int fd, how;
    long long offset;
    PyObject *path;
    if (parse(args, nargs, &fd, &offset, &how, &path) < 0)
        return NULL;
    return zcio_io_answer(zcio_io_transfer(fd, args[1], offset,
                                           into ? how | IO_EAGAIN_ZERO : how, path, into),
                          into);
}

static PyObject *
io_write(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    return one_call(args, nargs, 0);
}

static PyObject *
io_read(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    return one_call(args, nargs, 1);
}

static PyObject *
io_gather(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    int fd, how;
    long long offset;
    PyObject *path;
    if (parse(args, nargs, &fd, &offset, &how, &path) < 0)
        return NULL;
    if (!PyList_CheckExact(args[1]))
        Py_RETURN_NOTIMPLEMENTED;
    return zcio_io_answer(zcio_io_gather(fd, args[1], offset, how | IO_EAGAIN_ZERO, path, 0, 0),
                          0);
}

/* io_byte_buffers(list) -> bool: whether every element is a ByteBuffer (the check of
 * zcio._iovec.check_buffers, without a Python loop). */
static PyObject *
io_byte_buffers(PyObject *mod, PyObject *list)
{
    if (!PyList_CheckExact(list) || state_type == NULL) {
        PyErr_SetString(PyExc_TypeError, "io_byte_buffers(list) after io_setup()");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++)
        if (!PyObject_TypeCheck(PyList_GET_ITEM(list, i), state_type))
            Py_RETURN_FALSE;
    Py_RETURN_TRUE;
}

/* io_setup(ByteBuffer, IndirectByteBuffer, metrics) */
static PyObject *
io_setup(PyObject *mod, PyObject *args)
{
    PyObject *state, *indirect, *metrics;
    if (!PyArg_ParseTuple(args, "O!O!O", &PyType_Type, &state, &PyType_Type, &indirect,
                          &metrics))
        return NULL;
    PyTypeObject *t = (PyTypeObject *)state;
    if ((off_pos = zcio_slot_offset(t, "_pos")) < 0 || (off_lim = zcio_slot_offset(t, "_lim")) < 0
        || (off_ro = zcio_slot_offset(t, "_ro")) < 0 || (off_mv = zcio_slot_offset(t, "_mv")) < 0)
        return NULL;
    PyObject *lock = PyObject_GetAttrString(metrics, "_lock");
    PyObject *counts = lock ? PyObject_GetAttrString(metrics, "_counts") : NULL;
    PyObject *record = counts ? PyObject_GetAttrString(metrics, "record") : NULL;
    if (record == NULL || !PyDict_CheckExact(counts)) {
        Py_XDECREF(lock);
        Py_XDECREF(counts);
        Py_XDECREF(record);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "io_setup(): metrics._counts is not a dict");
        return NULL;
    }
    Py_XSETREF(metrics_lock, lock);
    Py_XSETREF(metrics_counts, counts);
    Py_XSETREF(metrics_record, record);
    Py_XSETREF(indirect_type, (PyTypeObject *)Py_NewRef(indirect));
    Py_XSETREF(state_type, (PyTypeObject *)Py_NewRef(state));
    Py_CLEAR(plain_type);
    Py_RETURN_NONE;
}

static PyMethodDef io_functions[] = {
    {"io_setup", io_setup, METH_VARARGS,
     "io_setup(ByteBuffer, IndirectByteBuffer, metrics): what read/write need to know "
     "(the buffers they take, the kinds that must ask their memory, the counters)."},
    {"io_read", (PyCFunction)(void (*)(void))io_read, METH_FASTCALL,
     "io_read(fd, buf, offset, how, path) -> int | NotImplemented: one read/pread/recv "
     "into buf's [position, limit) (pread at offset >= 0); 0 with no call if no room, 0 "
     "on EAGAIN, -1 at end of file or stream, else the count, position advanced."},
    {"io_write", (PyCFunction)(void (*)(void))io_write, METH_FASTCALL,
     "io_write(fd, buf, offset, how, path) -> int | NotImplemented: one "
     "write/pwrite/send of buf's [position, limit) (pwrite at offset >= 0); 0 with no "
     "call if nothing remains, 0 on EAGAIN with IO_EAGAIN_ZERO, else the count, "
     "position advanced."},
    {"io_byte_buffers", io_byte_buffers, METH_O,
     "io_byte_buffers(list) -> bool: whether every element is a ByteBuffer."},
    {"io_gather", (PyCFunction)(void (*)(void))io_gather, METH_FASTCALL,
     "io_gather(fd, [buf, ...], offset, how, path) -> int | NotImplemented: one "
     "writev/pwritev/sendmsg of every buffer's [position, limit) in order (at most "
     "IOV_MAX with bytes left); positions advance buffer by buffer by the count; 0 on "
     "EAGAIN or with nothing left (no call)."},
    {NULL},
};

int
zcio_io_init(PyObject *m)
{
    if (PyModule_AddIntConstant(m, "IO_SOCKET", IO_SOCKET) < 0
        || PyModule_AddIntConstant(m, "IO_EAGAIN_ZERO", IO_EAGAIN_ZERO) < 0
        || PyModule_AddIntConstant(m, "IO_COUNT_ERRORS", IO_COUNT_ERRORS) < 0
        || PyModule_AddIntConstant(m, "IO_COUNT_EMPTY", IO_COUNT_EMPTY) < 0)
        return -1;
    PyObject *t = PyType_FromSpec(&counts_spec);
    if (t == NULL)
        return -1;
    counts_type = (PyTypeObject *)t;
    if (PyModule_AddObjectRef(m, "Counts", t) < 0)
        return -1;
    return PyModule_AddFunctions(m, io_functions);
}
