/* zcio._native.Lock: threading.Lock's behaviour, with a state C code can read.
 *
 * The compiled paths must take or test a lock that Python code takes too: a socket
 * channel's read and write locks (chan.c), zcio.metrics's lock (io.c's count) and the
 * reference counts' lock (pool.c).  Through threading.Lock each such step is a method
 * call: lock.acquire(False) parses its arguments into a tuple, locked() is a call,
 * about 0.2 microseconds per channel operation for the pair, as much as the rest of
 * the operation's checks.  This type keeps the lock's state in the object, read and
 * written only with the GIL held, which is what makes it a lock: taking a free lock
 * or letting go is a store to ``locked``, and the C paths take it with one test
 * (zcio_lock_try) and test it with one load (zcio_lock_held).  Only a thread that
 * must wait sleeps, with the GIL released, on ``gate``: a PyThread lock used as a
 * binary semaphore, held while closed; a release that finds waiters opens it (once:
 * ``open`` says whether it is), a waiter that gets through closes it behind itself
 * and tests ``locked`` again (another thread may have taken the lock first: Python's
 * locks are not fair either).  Python sees threading.Lock's API:
 * acquire(blocking=True, timeout=-1) (a wait interrupted by signals, whose handlers
 * run, as _thread's acquire_timed does), release() (RuntimeError if not held),
 * locked(), ``with``, and _at_fork_reinit() for zcio._fork.fork_safe.
 * zcio._lock.new_lock() makes one when the accelerator runs, else a threading.Lock.
 * Like threading.Lock, any thread may release it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <structmember.h>
#include <math.h>
#include <time.h>

#include "native.h"

typedef struct {
    PyObject_HEAD
    char locked;             /* held */
    char open;               /* gate released: one waiter may get through */
    int waiters;             /* threads asleep on the gate, or about to be */
    PyThread_type_lock gate; /* held while closed */
    PyObject *weakreflist;
} Lock;

/* A new gate, closed; NULL with MemoryError. */
static PyThread_type_lock
new_gate(void)
{
    PyThread_type_lock gate = PyThread_allocate_lock();
    if (gate == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    PyThread_acquire_lock(gate, WAIT_LOCK); /* free: taken at once */
    return gate;
}

/* Let go: free, and one waiter (if any) let through to try again. */
static inline void
let_go(Lock *self)
{
    self->locked = 0;
    if (self->waiters > 0 && !self->open) {
        self->open = 1;
        PyThread_release_lock(self->gate);
    }
}

static PyTypeObject *lock_type = NULL;

/* Monotonic nanoseconds. */
static long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Take the lock, waiting at most ``timeout_us`` microseconds (-1: for ever, 0: not at
 * all), as _thread's acquire_timed: a wait with the GIL released, on the gate, which a
 * signal interrupts: its handlers run (an exception from one is returned as
 * PY_LOCK_INTR), and the wait resumes with what is left. */
static PyLockStatus
acquire_timed(Lock *self, long long timeout_us)
{
    long long deadline = timeout_us > 0 ? now_ns() + timeout_us * 1000 : 0;
    for (;;) {
        if (!self->locked) {
            self->locked = 1;
            return PY_LOCK_ACQUIRED;
        }
        if (timeout_us == 0)
            return PY_LOCK_FAILURE;
        PyLockStatus r;
        self->waiters++;
        Py_BEGIN_ALLOW_THREADS
        r = PyThread_acquire_lock_timed(self->gate, timeout_us, 1);
        Py_END_ALLOW_THREADS
        self->waiters--;
        if (r == PY_LOCK_ACQUIRED)
            self->open = 0; /* through, and closed behind: test again */
        else if (r == PY_LOCK_INTR && Py_MakePendingCalls() < 0)
            return PY_LOCK_INTR;
        if (timeout_us > 0) {
            long long left = deadline - now_ns();
            if (left <= 0) {
                if (!self->locked) { /* freed just as the time ran out */
                    self->locked = 1;
                    return PY_LOCK_ACQUIRED;
                }
                return PY_LOCK_FAILURE;
            }
            timeout_us = (left + 999) / 1000;
        }
    }
}

/* acquire(blocking=True, timeout=-1)'s arguments as a wait in microseconds, checked as
 * _thread's lock_acquire_parse_args checks them; -2 with an exception. */
static long long
parse_wait(PyObject *args, PyObject *kw)
{
    static char *names[] = {"blocking", "timeout", NULL};
    int blocking = 1;
    PyObject *timeout = NULL;
#if PY_VERSION_HEX >= 0x030C0000
    const char *format = "|pO:acquire"; /* blocking: any truth value */
#else
    const char *format = "|iO:acquire"; /* blocking: an int */
#endif
    if (!PyArg_ParseTupleAndKeywords(args, kw, format, names, &blocking, &timeout))
        return -2;
    double t = -1.0;
    if (timeout != NULL) {
        if (PyFloat_Check(timeout)) {
            t = PyFloat_AS_DOUBLE(timeout);
            if (isnan(t)) {
                PyErr_SetString(PyExc_ValueError, "Invalid value NaN (not a number)");
                return -2;
            }
        } else {
            long long v = PyLong_AsLongLong(timeout); /* TypeError for a non-integer */
            if (v == -1 && PyErr_Occurred()) {
                if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
                    PyErr_Clear();
                    PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
                }
                return -2;
            }
            t = (double)v;
        }
    }
    int unset = timeout == NULL || t == -1.0;
    if (!blocking && !unset) {
        PyErr_SetString(PyExc_ValueError, "can't specify a timeout for a non-blocking call");
        return -2;
    }
    if (t < 0 && !unset) {
#if PY_VERSION_HEX >= 0x030D0000
        PyErr_SetString(PyExc_ValueError, "timeout value must be a non-negative number");
#else
        PyErr_SetString(PyExc_ValueError, "timeout value must be positive");
#endif
        return -2;
    }
    if (!blocking)
        return 0;
    if (unset)
        return -1;
    double us = ceil(t * 1e6);
    if (us > (double)PY_TIMEOUT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "timeout value is too large");
        return -2;
    }
    return (long long)us;
}

static PyObject *
lock_acquire(Lock *self, PyObject *args, PyObject *kw)
{
    long long wait = parse_wait(args, kw);
    if (wait == -2)
        return NULL;
    PyLockStatus r = acquire_timed(self, wait);
    if (r == PY_LOCK_INTR)
        return NULL;
    return PyBool_FromLong(r == PY_LOCK_ACQUIRED);
}

static PyObject *
lock_enter(Lock *self, PyObject *unused)
{
    if (acquire_timed(self, -1) == PY_LOCK_INTR)
        return NULL;
    Py_RETURN_TRUE;
}

static PyObject *
lock_release(Lock *self, PyObject *unused)
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    let_go(self);
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(Lock *self, PyObject *args)
{
    return lock_release(self, NULL);
}

static PyObject *
lock_locked(Lock *self, PyObject *unused)
{
    return PyBool_FromLong(self->locked);
}

/* In a forked child: free, with a new gate and no waiters (the parent's other threads
 * are not in the child).  The old gate is left as it is (its state is not to be
 * trusted), as CPython's own _PyThread_at_fork_reinit leaves a lock. */
static PyObject *
lock_at_fork_reinit(Lock *self, PyObject *unused)
{
    PyThread_type_lock gate = new_gate();
    if (gate == NULL)
        return NULL;
    self->gate = gate;
    self->locked = self->open = 0;
    self->waiters = 0;
    Py_RETURN_NONE;
}

static PyObject *
lock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    if (PyTuple_GET_SIZE(args) != 0 || (kw != NULL && PyDict_GET_SIZE(kw) != 0)) {
        PyErr_SetString(PyExc_TypeError, "Lock() takes no arguments");
        return NULL;
    }
    Lock *self = (Lock *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    if ((self->gate = new_gate()) == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
lock_dealloc(Lock *self)
{
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    if (self->gate != NULL) { /* no waiter: each holds a reference to the lock */
        if (!self->open)
            PyThread_release_lock(self->gate);
        PyThread_free_lock(self->gate);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
lock_repr(Lock *self)
{
    return PyUnicode_FromFormat("<%s %s object at %p>", self->locked ? "locked" : "unlocked",
                                Py_TYPE(self)->tp_name, self);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_VARARGS | METH_KEYWORDS,
     "acquire($self, /, blocking=True, timeout=-1)\n--\n\n"
     "Take the lock, as threading.Lock.acquire: wait for ever, up to ``timeout`` "
     "seconds, or (``blocking`` false) not at all; True if taken."},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, "Take the lock, waiting for it."},
    {"release", (PyCFunction)lock_release, METH_NOARGS,
     "release($self, /)\n--\n\nLet go of the lock (RuntimeError if it is not held)."},
    {"__exit__", (PyCFunction)lock_exit, METH_VARARGS, "Let go of the lock."},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS,
     "locked($self, /)\n--\n\nWhether the lock is held."},
    {"_at_fork_reinit", (PyCFunction)lock_at_fork_reinit, METH_NOARGS,
     "In a forked child: the lock made free again (zcio._fork.fork_safe)."},
    {NULL},
};

static PyMemberDef lock_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(Lock, weakreflist), READONLY, NULL},
    {NULL},
};

static PyType_Slot lock_slots[] = {
    {Py_tp_doc, "Lock()\n--\n\n"
                "threading.Lock's API over a state zcio's compiled paths read directly."},
    {Py_tp_new, lock_new},
    {Py_tp_dealloc, lock_dealloc},
    {Py_tp_repr, lock_repr},
    {Py_tp_methods, lock_methods},
    {Py_tp_members, lock_members},
    {0, NULL},
};

static PyType_Spec lock_spec = {
    .name = "zcio._native.Lock",
    .basicsize = sizeof(Lock),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = lock_slots,
};

int
zcio_lock_try(PyObject *o)
{
    if (Py_TYPE(o) != lock_type)
        return -1;
    Lock *l = (Lock *)o;
    if (l->locked)
        return 0;
    l->locked = 1;
    return 1;
}

void
zcio_lock_release(PyObject *o)
{
    let_go((Lock *)o);
}

int
zcio_lock_held(PyObject *o)
{
    return Py_TYPE(o) == lock_type ? ((Lock *)o)->locked : -1;
}

int
zcio_lock_init(PyObject *m)
{
    PyObject *t = PyType_FromSpec(&lock_spec);
    if (t == NULL)
        return -1;
    lock_type = (PyTypeObject *)t;
    return PyModule_AddObjectRef(m, "Lock", t);
}
