/* zcio._native, zcio serve's cached hit: one read answered by one send, in C.
 *
 * The server's loop (zcio.serve._server) spends its user time per request in Python:
 * the read, the parser's shortcut for a simple request, the responder's cache lookup
 * with its stat, the send, about twenty calls.  serve_hit() does the common case in
 * one call: it reads what the client sent and, when that is exactly one request the
 * Python path would answer with the cached small file's response already made for this
 * second (Representation.wire), sends that response.  Anything else it leaves to the
 * Python path, having only read: the caller hands the bytes read to the parser as any
 * read.  The Python path is the reference; this takes only what it can prove the
 * reference would do, so a miss costs nothing but the look.
 *
 * A hit is, all of (the reference's rules, from _http._SIMPLE/_simple, _respond and
 * _files, in order):
 *   - the read is at most 8192 bytes (_SIMPLE_MAX) and is whole one request of
 *     _SIMPLE's grammar: ``GET`` (HEAD is left to Python), an origin-form target of RFC
 *     3986 characters, ``HTTP/1.1``, header fields of token names and visible-ASCII
 *     values (one optional space after the colon), then an empty line, nothing after;
 *   - within the limits (target, header bytes counted as name + value + 4, field
 *     count), a Host field, no field twice (names compared without case), none of
 *     _NOT_SIMPLE's (Content-Length, Transfer-Encoding, Connection, Upgrade, Expect);
 *   - no field that can change the answer: conditional ones (``If-*``), ``Range``, and
 *     ``Accept-Encoding`` when precompressed siblings are served;
 *   - the cache holds (path before ``?``, None) and one stat of its file gives the same
 *     inode, device, size, modification and status-change times, a regular file
 *     (FileCache.get), and its wire was made for exactly this date.  The stat is
 *     skipped while the entry's ``watched`` is True: the loop's Watcher
 *     (zcio.serve._watch) has read, this turn, no notice of a change to it.
 *
 * Syscalls: one recv (flags 0) into the caller's buffer; on a hit, one stat of the
 * file (none for a watched entry) and one send (flags 0) of the response, the GIL
 * released around each.  EAGAIN or EINTR on the recv: -1, nothing read.  A recv error:
 * OSError.  A send's EAGAIN or EINTR: 0 sent; its other errors: -1 sent (the caller
 * closes, as after a failed send).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "native.h"

#define SIMPLE_MAX 8192   /* _http._SIMPLE_MAX */
#define MAX_FIELDS 128    /* more fields than this: left to Python */

static PyObject *s_full_path, *s_key, *s_wire, *s_head, *s_watched;

/* RFC 9110 tchar, and the target's characters of _SIMPLE. */
static unsigned char is_tchar[256], is_target[256];

static void
tables(void)
{
    const char *t = "!#$%&'*+-.^_`|~", *u = "-._~!$&'()*+,;=:@/%?";
    for (int c = 0; c < 256; c++) {
        int alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        is_tchar[c] = (unsigned char)(alnum || (c && strchr(t, c) != NULL));
        is_target[c] = (unsigned char)(alnum || (c && strchr(u, c) != NULL));
    }
}

/* a[0:n] and b[0:n] are the same name, ASCII letters compared without case. */
static int
same_name(const char *a, const char *b, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x |= 0x20;
        if (y >= 'A' && y <= 'Z')
            y |= 0x20;
        if (x != y)
            return 0;
    }
    return 1;
}

/* p[0:n] is the name `lower` (lower case), compared without case. */
static int
name_is(const char *p, Py_ssize_t n, const char *lower)
{
    return n == (Py_ssize_t)strlen(lower) && same_name(p, lower, n);
}

typedef struct {
    long long max_target, max_header_bytes, max_headers;
    int precompressed;
} Limits;

/* 1 when p[0:n] is one simple GET a hit may answer (see the top), with the cache key
 * (the target before '?') in [*key, *key + *key_len); 0 otherwise. */
static int
simple_get(const char *p, Py_ssize_t n, const Limits *lim, const char **key,
           Py_ssize_t *key_len)
{
    if (n > SIMPLE_MAX || n < 5 || memcmp(p, "GET /", 5) != 0)
        return 0;
    Py_ssize_t i = 4, start = 4;
    while (i < n && is_target[(unsigned char)p[i]])
        i++;
    Py_ssize_t target_len = i - start;
    if (target_len > lim->max_target || n - i < 11 || memcmp(p + i, " HTTP/1.1\r\n", 11) != 0)
        return 0;
    const char *q = memchr(p + start, '?', (size_t)target_len);
    *key = p + start;
    *key_len = q == NULL ? target_len : q - (p + start);
    i += 11;

    /* Each field's name: where, how long, and a hash of it without case, so that the
     * search for a repeated name compares two numbers per pair, whatever a client puts
     * in its names (a full comparison only on equal hashes). */
    Py_ssize_t names[MAX_FIELDS], lens[MAX_FIELDS];
    uint64_t hashes[MAX_FIELDS];
    int count = 0, host = 0;
    long long size = 0;
    while (1) {
        if (i + 1 < n && p[i] == '\r' && p[i + 1] == '\n') {
            i += 2;
            break;
        }
        Py_ssize_t name = i;
        uint64_t hash = 14695981039346656037ULL; /* FNV-1a */
        while (i < n && is_tchar[(unsigned char)p[i]]) {
            unsigned char c = (unsigned char)p[i++];
            hash = (hash ^ (c >= 'A' && c <= 'Z' ? c | 0x20 : c)) * 1099511628211ULL;
        }
        Py_ssize_t name_len = i - name;
        if (name_len == 0 || i >= n || p[i] != ':')
            return 0;
        i++;
        if (i < n && p[i] == ' ')
            i++;
        Py_ssize_t value = i;
        if (i >= n || (unsigned char)p[i] < 0x21 || (unsigned char)p[i] > 0x7e)
            return 0;
        while (i < n && (unsigned char)p[i] >= 0x20 && (unsigned char)p[i] <= 0x7e)
            i++;
        if (p[i - 1] == ' ' || i + 1 >= n || p[i] != '\r' || p[i + 1] != '\n')
            return 0;
        Py_ssize_t value_len = i - value;
        i += 2;
        const char *f = p + name;
        if (count == MAX_FIELDS || name_is(f, name_len, "content-length")
            || name_is(f, name_len, "transfer-encoding") || name_is(f, name_len, "connection")
            || name_is(f, name_len, "upgrade") || name_is(f, name_len, "expect")
            || name_is(f, name_len, "range")
            || (name_len >= 3 && same_name(f, "if-", 3))
            || (lim->precompressed && name_is(f, name_len, "accept-encoding")))
            return 0;
        for (int k = 0; k < count; k++)
            if (hashes[k] == hash && lens[k] == name_len
                && same_name(p + names[k], f, name_len))
                return 0;
        host |= name_is(f, name_len, "host");
        names[count] = name;
        hashes[count] = hash;
        lens[count++] = name_len;
        size += name_len + value_len + 4;
    }
    return i == n && host && size <= lim->max_header_bytes && count <= lim->max_headers;
}

static int
long_is(PyObject *o, unsigned long long v)
{
    unsigned long long x = PyLong_AsUnsignedLongLong(o);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return x == v;
}

static int
slong_is(PyObject *o, long long v)
{
    long long x = PyLong_AsLongLong(o);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return x == v;
}

/* rep's file still is what rep says (FileCache.get's identity and S_ISREG): without a
 * syscall while rep.watched is True (zcio.serve._watch: no change notice read for it,
 * notices read each turn), else by one stat.  0 when not, or when anything about rep is
 * not as expected. */
static int
unchanged(PyObject *rep)
{
    PyObject *watched = PyObject_GetAttr(rep, s_watched);
    int trusted = watched == Py_True;
    Py_XDECREF(watched);
    if (trusted)
        return 1;
    PyErr_Clear();
    PyObject *path = PyObject_GetAttr(rep, s_full_path), *key = NULL;
    int ok = 0;
    if (path == NULL || !PyUnicode_CheckExact(path))
        goto done;
    const char *c_path = PyUnicode_AsUTF8(path);
    key = PyObject_GetAttr(rep, s_key);
    if (c_path == NULL || key == NULL || !PyTuple_CheckExact(key) || PyTuple_GET_SIZE(key) != 5)
        goto done;
    struct stat st;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = stat(c_path, &st);
    Py_END_ALLOW_THREADS
    if (rc != 0 || !S_ISREG(st.st_mode))
        goto done;
    ok = long_is(PyTuple_GET_ITEM(key, 0), (unsigned long long)st.st_ino)
         && long_is(PyTuple_GET_ITEM(key, 1), (unsigned long long)st.st_dev)
         && slong_is(PyTuple_GET_ITEM(key, 2), (long long)st.st_size)
         && slong_is(PyTuple_GET_ITEM(key, 3), (long long)st.st_mtim.tv_sec * 1000000000LL
                                                   + st.st_mtim.tv_nsec)
         && slong_is(PyTuple_GET_ITEM(key, 4), (long long)st.st_ctim.tv_sec * 1000000000LL
                                                   + st.st_ctim.tv_nsec);
done:
    PyErr_Clear();
    Py_XDECREF(path);
    Py_XDECREF(key);
    return ok;
}

/* The response head (bytes) made for `date` for key, or NULL (no exception) when there
 * is none to send. */
static PyObject *
cached_head(PyObject *entries, const char *key, Py_ssize_t key_len, PyObject *date)
{
    PyObject *k = PyBytes_FromStringAndSize(key, key_len), *head = NULL, *wire = NULL;
    PyObject *pair = k == NULL ? NULL : PyTuple_Pack(2, k, Py_None);
    Py_XDECREF(k);
    if (pair == NULL)
        goto done;
    PyObject *rep = PyDict_GetItemWithError(entries, pair); /* borrowed */
    Py_DECREF(pair);
    if (rep == NULL)
        goto done;
    Py_INCREF(rep);
    wire = PyObject_GetAttr(rep, s_wire);
    if (wire != NULL && PyTuple_CheckExact(wire) && PyTuple_GET_SIZE(wire) == 2) {
        PyObject *made = PyTuple_GET_ITEM(wire, 0);
        if (PyBytes_CheckExact(made) && PyBytes_GET_SIZE(made) == PyBytes_GET_SIZE(date)
            && memcmp(PyBytes_AS_STRING(made), PyBytes_AS_STRING(date),
                      (size_t)PyBytes_GET_SIZE(date)) == 0 && unchanged(rep)) {
            head = PyObject_GetAttr(PyTuple_GET_ITEM(wire, 1), s_head);
            if (head != NULL && !PyBytes_CheckExact(head))
                Py_CLEAR(head);
        }
    }
    Py_DECREF(rep);
done:
    Py_XDECREF(wire);
    PyErr_Clear();
    return head;
}

static PyObject *
serve_hit(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Limits lim;
    if (nargs != 5 || !PyLong_CheckExact(args[0]) || !PyByteArray_CheckExact(args[1])
        || !PyDict_CheckExact(args[2]) || !PyBytes_CheckExact(args[3])
        || !PyTuple_CheckExact(args[4]) || PyTuple_GET_SIZE(args[4]) != 4) {
        PyErr_SetString(PyExc_TypeError, "serve_hit(fd, bytearray, dict, bytes, limits)");
        return NULL;
    }
    long fd = PyLong_AsLong(args[0]);
    lim.max_target = PyLong_AsLongLong(PyTuple_GET_ITEM(args[4], 0));
    lim.max_header_bytes = PyLong_AsLongLong(PyTuple_GET_ITEM(args[4], 1));
    lim.max_headers = PyLong_AsLongLong(PyTuple_GET_ITEM(args[4], 2));
    lim.precompressed = PyObject_IsTrue(PyTuple_GET_ITEM(args[4], 3));
    if (PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "serve_hit: not a file descriptor");
        return NULL;
    }
    /* An export of the bytearray for the call: nothing can resize it (and free its
     * bytes) while the GIL is released around the recv, or while the key is read. */
    Py_buffer view;
    if (PyObject_GetBuffer(args[1], &view, PyBUF_WRITABLE) < 0)
        return NULL;
    char *p = view.buf;
    Py_ssize_t n;
    int err;
    Py_BEGIN_ALLOW_THREADS
    n = recv((int)fd, p, (size_t)view.len, 0);
    err = errno;
    Py_END_ALLOW_THREADS
    if (n < 0) {
        PyBuffer_Release(&view);
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
            return PyLong_FromLong(-1);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    const char *key;
    Py_ssize_t key_len;
    PyObject *head = NULL;
    if (simple_get(p, n, &lim, &key, &key_len))
        head = cached_head(args[2], key, key_len, args[3]);
    PyBuffer_Release(&view);
    if (head == NULL)
        return PyLong_FromSsize_t(n);
    Py_ssize_t sent;
    Py_BEGIN_ALLOW_THREADS
    sent = send((int)fd, PyBytes_AS_STRING(head), (size_t)PyBytes_GET_SIZE(head), 0);
    err = errno;
    Py_END_ALLOW_THREADS
    if (sent < 0)
        sent = err == EAGAIN || err == EWOULDBLOCK || err == EINTR ? 0 : -1;
    PyObject *r = Py_BuildValue("(nNn)", n, head, sent);
    return r;
}

static PyMethodDef serve_functions[] = {
    {"serve_hit", (PyCFunction)(void (*)(void))serve_hit, METH_FASTCALL,
     "serve_hit(fd, buffer, entries, date, (max_target, max_header_bytes, max_headers, "
     "precompressed)) -> n | -1 | (n, head, sent): one recv into buffer; when it is one "
     "simple GET of a cached small file whose response was made for date, that response "
     "sent (sent: its bytes that went out, -1 on a send error).  -1: nothing to read.  "
     "n: bytes read and not answered (0: the peer closed), for the Python path."},
    {NULL},
};

int
zcio_serve_init(PyObject *m)
{
    const zcio_name names[] = {
        {&s_full_path, "full_path"}, {&s_key, "key"}, {&s_wire, "wire"}, {&s_head, "head"},
        {&s_watched, "watched"},
    };
    if (intern_names(names, sizeof(names) / sizeof(names[0])) < 0)
        return -1;
    tables();
    return PyModule_AddFunctions(m, serve_functions);
}
