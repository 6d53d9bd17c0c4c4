/* zcio._native, the channels' read/write of one buffer as one C method.
 *
 * io.c made the system call of FileChannel.read(buf, pos) as cheap as os.preadv, but
 * the Python around it (the in-flight registry of zcio._channel's counting_operation,
 * the channel's checks, a lock for a socket) cost as much again.  accelerate_channel()
 * replaces one such method by a C method doing the same steps for the common call, and
 * keeps the Python method as its reference and slow path
 * (zcio._channel.CHANNEL_REFERENCE).  Eight are installed: FileChannel.read/write(buf[,
 * position]), SocketChannel.read(buf) and write(buf | [bufs]), SourceChannel.read(buf),
 * SinkChannel.write(buf | [bufs]), and SocketChannel.send_buffer(buf) and
 * receive_buffer(), whose call is share.c's (the hand-off message, and the received
 * buffer built there) in place of io.c's: an operation, not a counting one, whose
 * AsynchronousCloseError says 0 moved, as closed_during() makes it for a result that
 * is not a count.
 *
 * The fast path runs when: the channel's type is exactly the class (a subclass may
 * override what this reads), positional arguments only, zcio._syscalls.NATIVE_IO is
 * set (a test's syscall layer turns it off), the instance attributes named at install
 * time hold exactly the given objects (``_readable`` True, ``_state`` connected...), the
 * descriptor is open, the channel's lock (if any) is a zcio._native.Lock (lock.c) and
 * free, and io.c takes the buffer (a plain one, or a list of plain ones for a gather;
 * share.c: see there).  Anything else calls the reference, before anything was
 * registered or moved.
 *
 * Its steps are counting_operation's (zcio._channel._wrap) and the method's: the lock
 * taken (with one try, never waited for: held elsewhere, this falls back before
 * registering; taken first, with the GIL held until the registration, which no thread
 * can tell from _wrap's order); the thread's ident appended to ``_users``, then
 * ``_fd`` read again (close() clears ``_fd`` and then reads the users: one sees the
 * other); io.c's call, the GIL released around the system call; the lock released;
 * the entry removed.  When the
 * channel is closing or closed by then, zcio._channel.closed_during() finishes the
 * pre-close and raises AsynchronousCloseError with the count, as _wrap does.  The GIL
 * is held between these steps, so the registry sees the same sequence of changes as
 * from Python.
 *
 * One exception: SocketChannel.write of 2 to 64 buffers of at most 512 bytes each is
 * first offered, lock taken and before registering, to io.c's zcio_io_gather_held(),
 * which sends it with one non-blocking send() without letting go of the GIL.  No
 * Python code runs from the check of ``_fd`` to its answer, so no close() can start
 * and no thread can look at the registry meanwhile: registering would change nothing
 * anyone can see, and is skipped.  When a blocking channel's socket took less than
 * everything, the operation goes on as above, registered, for the rest (two system
 * calls counted as one operation).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <limits.h>
#include <string.h>

#include "native.h"

enum { OP_FILE_READ, OP_FILE_WRITE, OP_SOCKET_READ, OP_SOCKET_WRITE, OP_PIPE_READ,
       OP_PIPE_WRITE, OP_SHARE_SEND, OP_SHARE_RECEIVE, N_OPS };
static const char *op_paths[N_OPS] = {"file_read", "file_write", "socket_read",
                                      "socket_write", "pipe_read", "pipe_write",
                                      "shared_send", "shared_receive"};

typedef struct {
    PyTypeObject *cls;   /* exactly this type takes the fast path */
    PyObject *ref;       /* the Python method: reference and slow path */
    PyObject *what;      /* the operation's name in AsynchronousCloseError */
    PyObject *path;      /* the zcio.metrics entry */
    PyObject *lock;      /* the attribute holding the channel's lock, or NULL */
    PyObject *state;     /* ((attribute, required object), ...) */
    int into, how, max_args, gather;
} Op;

static Op ops[N_OPS];
static PyObject *closed_during;   /* zcio._channel.closed_during */
static PyObject *syscalls_dict;   /* zcio._syscalls's globals: NATIVE_IO */
static PyObject *s_users, *s_fd, *s_closing_fd, *s_left, *s_native_io, *s_blocking;

/* The reference method: ref(self, *args, **kw). */
static inline PyObject *
reference(Op *op, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    return call_reference(op->ref, self, args, nargs, kw);
}

/* A descriptor or index held in dict[name] as a small int; `dflt` when absent. */
static long long
dict_int(PyObject *dict, PyObject *name, long long dflt)
{
    PyObject *o = PyDict_GetItemWithError(dict, name); /* borrowed */
    long long v;
    if (o == NULL) {
        PyErr_Clear();
        return dflt;
    }
    return small_int(o, &v) ? v : -2;
}

/* Whether the channel whose instance dict this is blocks (``_blocking``; absent: the
 * class's default, True). */
static int
blocking(void *dict)
{
    PyObject *b = PyDict_GetItemWithError((PyObject *)dict, s_blocking); /* borrowed */
    PyErr_Clear();
    return b != Py_False;
}

/* Remove the entry appended for this call from users, or (a nested Python operation of
 * this thread removed that one: list.remove takes the first equal) the last one equal
 * to ident: every equal entry is this thread's, the same.  -1 with an exception if
 * there is none. */
static int
unregister(PyObject *users, PyObject *ident)
{
    for (Py_ssize_t i = PyList_GET_SIZE(users) - 1; i >= 0; i--) /* the entry appended */
        if (PyList_GET_ITEM(users, i) == ident)
            return PyList_SetSlice(users, i, i + 1, NULL);
    for (Py_ssize_t i = PyList_GET_SIZE(users) - 1; i >= 0; i--) {
        int eq = PyObject_RichCompareBool(PyList_GET_ITEM(users, i), ident, Py_EQ);
        if (eq < 0)
            return -1;
        if (eq)
            return PyList_SetSlice(users, i, i + 1, NULL);
    }
    PyErr_SetString(PyExc_ValueError, "list.remove(x): x not in list");
    return -1;
}

static PyObject *
call(Op *op, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kw)
{
    if (kw != NULL || nargs < (op->max_args > 0) || nargs > op->max_args
        || Py_TYPE(self) != op->cls)
        return reference(op, self, args, nargs, kw);
    PyObject *io = PyDict_GetItemWithError(syscalls_dict, s_native_io); /* borrowed */
    if (io == NULL || io == Py_None) {
        PyErr_Clear();
        return reference(op, self, args, nargs, kw);
    }
    long long offset = -1;
    if (nargs == 2 && args[1] != Py_None && !(small_int(args[1], &offset) && offset >= 0))
        return reference(op, self, args, nargs, kw);
    PyObject *buf = nargs ? args[0] : NULL;
    int several = buf != NULL && PyList_CheckExact(buf);
    if (several && !op->gather)
        return reference(op, self, args, nargs, kw);

    PyObject *dict = PyObject_GenericGetDict(self, NULL);
    if (dict == NULL) {
        PyErr_Clear();
        return reference(op, self, args, nargs, kw);
    }
    PyObject *users = PyDict_GetItemWithError(dict, s_users); /* borrowed, as below */
    PyObject *lock = op->lock ? PyDict_GetItemWithError(dict, op->lock) : NULL;
    long long fd0 = dict_int(dict, s_fd, -1);
    int fast = users != NULL && PyList_CheckExact(users) && (op->lock == NULL || lock != NULL)
               && fd0 >= 0 && fd0 <= INT_MAX;
    for (Py_ssize_t i = 0; fast && i < PyTuple_GET_SIZE(op->state); i++) {
        PyObject *pair = PyTuple_GET_ITEM(op->state, i);
        fast = PyDict_GetItemWithError(dict, PyTuple_GET_ITEM(pair, 0))
               == PyTuple_GET_ITEM(pair, 1);
    }
    if (!fast) {
        PyErr_Clear();
        Py_DECREF(dict);
        return reference(op, self, args, nargs, kw);
    }
    Py_INCREF(users);
    Py_XINCREF(lock);
    PyObject *result = NULL, *ident = NULL;
    Py_ssize_t r = T_NOT_PLAIN;
    int registered = 0, locked = 0;

    /* The lock taken, never waited for: held elsewhere, or not zcio's Lock, the
     * reference runs (and waits). */
    if (lock != NULL && !(locked = zcio_lock_try(lock) == 1))
        goto out;
    /* A socket gather of small parts is sent whole with the GIL held (io.c), and not
     * registered: from the check of ``_fd`` above to its answer no Python code runs, so
     * no thread can close the channel or see the registry meanwhile.  The general call
     * below finishes a blocking channel's partial send (T_CONTINUE), registered. */
    Py_ssize_t prior_calls = 0, moved = 0;
    if (several && op - ops == OP_SOCKET_WRITE && offset < 0) {
        r = zcio_io_gather_held((int)fd0, buf, op->how | IO_EAGAIN_ZERO, op->path,
                                blocking, dict, &moved);
        if (r == T_CONTINUE) {
            prior_calls = 1;
        } else if (r != T_NOT_PLAIN) {
            if (r != T_ERROR)
                result = zcio_io_answer(r, 0);
            goto out;
        }
    }
    ident = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (ident == NULL || PyList_Append(users, ident) < 0)
        goto out;
    registered = 1;
    long long fd = dict_int(dict, s_fd, -1); /* again, once registered */
    if (fd < 0 || fd > INT_MAX) { /* closed meanwhile: the reference says so */
        if (prior_calls) /* cannot happen (the GIL held since): what moved is the count */
            r = zcio_io_count(op->path, prior_calls, moved) < 0 ? T_ERROR : moved;
        if (r >= 0)
            result = zcio_io_answer(r, 0);
        goto out;
    }
    if (op - ops >= OP_SHARE_SEND) { /* share.c's hand-off: an object, not a count */
        result = op - ops == OP_SHARE_SEND ? zcio_share_send_op(dict, (int)fd, buf, op->path)
                                           : zcio_share_receive_op(dict, (int)fd, op->path);
        r = result != NULL ? 0 : PyErr_Occurred() ? T_ERROR : T_NOT_PLAIN;
        goto out;
    }
    if (several)
        r = zcio_io_gather((int)fd, buf, offset, op->how | IO_EAGAIN_ZERO, op->path,
                           prior_calls, moved);
    else
        r = zcio_io_transfer((int)fd, buf, offset, op->into ? op->how | IO_EAGAIN_ZERO
                                                            : op->how, op->path, op->into);
    if (r != T_NOT_PLAIN && r != T_ERROR)
        result = zcio_io_answer(r, op->into);

out:
    {
        /* Leave as _wrap does: the lock (released first, by the with block inside the
         * method), then the registry, keeping whatever exception is set. */
        PyObject *exc = raised_exception();
        if (locked)
            zcio_lock_release(lock);
        if (registered && unregister(users, ident) < 0)
            exc = exc ? exc : raised_exception();
        PyErr_Clear();
        int closing = registered && (dict_int(dict, s_closing_fd, -1) >= 0
                                     || dict_int(dict, s_fd, -1) < 0);
        Py_DECREF(dict);
        Py_DECREF(users);
        Py_XDECREF(lock);
        Py_XDECREF(ident);
        if (exc == NULL && result == NULL && (r == T_NOT_PLAIN || registered == 0)) {
            /* nothing moved, nothing counted: not a buffer io.c takes, the lock taken,
             * or the channel closed before the call; finish a pre-close we held up,
             * then the reference answers */
            if (closing) {
                PyObject *left = PyObject_CallMethodNoArgs(self, s_left);
                if (left == NULL)
                    return NULL;
                Py_DECREF(left);
            }
            return reference(op, self, args, nargs, kw);
        }
        if (closing) {
            PyObject *a[4] = {self, op->what, result ? result : Py_None, exc ? exc : Py_None};
            PyObject *ok = PyObject_Vectorcall(closed_during, a, 4, NULL);
            if (ok == NULL) { /* AsynchronousCloseError, chained to exc */
                Py_XDECREF(exc);
                Py_XDECREF(result);
                return NULL;
            }
            Py_DECREF(ok);
        }
        if (exc != NULL) {
            Py_XDECREF(result);
            set_raised_exception(exc);
            return NULL;
        }
        return result;
    }
}

#define OP_FUNCTION(k)                                                                 \
    static PyObject *op_##k(PyObject *self, PyObject *const *args, Py_ssize_t nargs,   \
                            PyObject *kwnames)                                         \
    {                                                                                  \
        return call(&ops[k], self, args, nargs, kwnames);                              \
    }
OP_FUNCTION(0)
OP_FUNCTION(1)
OP_FUNCTION(2)
OP_FUNCTION(3)
OP_FUNCTION(4)
OP_FUNCTION(5)
OP_FUNCTION(6)
OP_FUNCTION(7)

#define OP_DEF(k, name)                                                                \
    {name, (PyCFunction)(void (*)(void))op_##k, METH_FASTCALL | METH_KEYWORDS, NULL}
static PyMethodDef op_defs[N_OPS] = {
    OP_DEF(0, "read"), OP_DEF(1, "write"), OP_DEF(2, "read"),
    OP_DEF(3, "write"), OP_DEF(4, "read"), OP_DEF(5, "write"),
    OP_DEF(6, "send_buffer"), OP_DEF(7, "receive_buffer"),
};

/* accelerate_channel(path, cls, name, what, into, how, max_args, gather, lock, state,
 *                    closed_during, syscalls_globals, doc) */
static PyObject *
chan_accelerate(PyObject *mod, PyObject *args)
{
    const char *path, *name, *lock_name;
    PyObject *cls, *what, *state, *closed, *globals, *doc;
    int into, how, max_args, gather;
    if (!PyArg_ParseTuple(args, "sO!sUpiipzO!OO!U:accelerate_channel", &path, &PyType_Type,
                          &cls, &name, &what, &into, &how, &max_args, &gather, &lock_name,
                          &PyTuple_Type, &state, &closed, &PyDict_Type, &globals, &doc))
        return NULL;
    int k = 0;
    while (k < N_OPS && strcmp(op_paths[k], path) != 0)
        k++;
    if (k == N_OPS || strcmp(op_defs[k].ml_name, name) != 0 || max_args < 0 || max_args > 2
        || (max_args == 0) != (k == OP_SHARE_RECEIVE)) {
        PyErr_Format(PyExc_ValueError, "accelerate_channel(): no operation %s as %s", path,
                     name);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(state); i++) {
        PyObject *pair = PyTuple_GET_ITEM(state, i);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(pair, 0))) {
            PyErr_SetString(PyExc_TypeError, "accelerate_channel(): state is ((name, value), ...)");
            return NULL;
        }
    }
    PyObject *ref = PyObject_GetAttrString(cls, name);
    if (ref != NULL && Py_IS_TYPE(ref, &PyMethodDescr_Type)) {
        PyErr_Format(PyExc_ValueError, "accelerate_channel(): %s is compiled already", name);
        Py_CLEAR(ref);
    }
    PyObject *p = ref ? PyUnicode_InternFromString(path) : NULL;
    PyObject *lock = p && lock_name ? PyUnicode_InternFromString(lock_name) : NULL;
    const char *text = p ? PyUnicode_AsUTF8(doc) : NULL;
    char *copy = text ? strdup(text) : NULL; /* lives as long as the process */
    PyObject *fast = NULL;
    if (copy != NULL && (lock_name == NULL || lock != NULL)) {
        op_defs[k].ml_doc = copy; /* (a second install leaks the first: descriptors point at it) */
        copy = NULL;
        fast = PyDescr_NewMethod((PyTypeObject *)cls, &op_defs[k]);
    }
    free(copy);
    if (fast == NULL || PyObject_SetAttrString(cls, name, fast) < 0) {
        if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_XDECREF(fast);
        Py_XDECREF(ref);
        Py_XDECREF(p);
        Py_XDECREF(lock);
        return NULL;
    }
    Py_DECREF(fast);
    Op *op = &ops[k];
    Py_XSETREF(op->cls, (PyTypeObject *)Py_NewRef(cls));
    Py_XSETREF(op->ref, ref);
    Py_XSETREF(op->what, Py_NewRef(what));
    Py_XSETREF(op->path, p);
    Py_XSETREF(op->lock, lock);
    Py_XSETREF(op->state, Py_NewRef(state));
    op->into = into;
    op->how = how;
    op->max_args = max_args;
    op->gather = gather;
    Py_XSETREF(closed_during, Py_NewRef(closed));
    Py_XSETREF(syscalls_dict, Py_NewRef(globals));
    Py_RETURN_NONE;
}

static PyMethodDef chan_functions[] = {
    {"accelerate_channel", chan_accelerate, METH_VARARGS,
     "accelerate_channel(path, cls, name, what, into, how, max_args, gather, lock, state, "
     "closed_during, syscalls_globals, doc): cls.<name> for one plain buffer (or a list, "
     "with gather) as one C method, the Python method kept as its reference."},
    {NULL},
};

int
zcio_chan_init(PyObject *m)
{
    const zcio_name names[] = {
        {&s_users, "_users"}, {&s_fd, "_fd"}, {&s_closing_fd, "_closing_fd"},
        {&s_left, "_left"}, {&s_native_io, "NATIVE_IO"}, {&s_blocking, "_blocking"},
    };
    if (intern_names(names, sizeof(names) / sizeof(names[0])) < 0)
        return -1;
    return PyModule_AddFunctions(m, chan_functions);
}
