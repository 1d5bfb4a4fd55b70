/* Gzip data files of a DynamoDB export, inflated with the GIL released from start to end.
 *
 * Python's zlib releases the GIL around inflate() itself, but builds its output in growing
 * blocks and joins them with the GIL held, and the export reader then copies the buffer's
 * unread tail in front of it: two copies of every decompressed byte, serial across threads
 * (24% of the GIL's time on a multi-file export, measured with py-spy --gil). Here the new
 * bytes object is allocated once at its final size and both the tail and the inflated bytes
 * are written into it without the GIL.
 *
 * Same contract as export.py's _Inflater (which stays the fallback where this does not build):
 * concatenated gzip members are read one after another, as gzip.GzipFile reads them.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <zlib.h>

#include "_nogil_time.h"

static PyObject *ZlibError; /* zlib.error: the caller's except clause stays the same */

typedef struct {
    PyObject_HEAD
    z_stream z;
    int ready;      /* inflateInit2 succeeded */
    int started;    /* a member has begun and not ended: input must not end here */
    int drained;    /* zlib holds no output back (the last call had room left) */
    int busy;
    Py_buffer input; /* the fed bytes (input.obj NULL: none) */
} Inflater;

static int
Inflater_init(Inflater *self, PyObject *args, PyObject *kwds)
{
    if (!PyArg_ParseTuple(args, ":Inflater"))
        return -1;
    if (self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Inflater.__init__ called twice");
        return -1;
    }
    memset(&self->z, 0, sizeof(self->z));
    int rc = inflateInit2(&self->z, 16 + MAX_WBITS); /* gzip */
    if (rc != Z_OK) {
        PyErr_Format(rc == Z_MEM_ERROR ? PyExc_MemoryError : ZlibError, "inflateInit2 failed (%d)", rc);
        return -1;
    }
    self->ready = 1;
    self->drained = 1;
    return 0;
}

static void
Inflater_dealloc(Inflater *self)
{
    if (self->ready)
        inflateEnd(&self->z);
    if (self->input.obj != NULL)
        PyBuffer_Release(&self->input);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
check(Inflater *self)
{
    if (!self->ready) {
        PyErr_SetString(PyExc_RuntimeError, "Inflater.__init__ was not called");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Inflater is in use by another thread");
        return -1;
    }
    return 0;
}

static PyObject *
Inflater_feed(Inflater *self, PyObject *args)
{
    Py_buffer raw;
    if (check(self) < 0 || !PyArg_ParseTuple(args, "y*:feed", &raw))
        return NULL;
    if (self->z.avail_in) {
        PyBuffer_Release(&raw);
        PyErr_SetString(PyExc_RuntimeError, "feed: the last input is not consumed yet");
        return NULL;
    }
    if (self->input.obj != NULL)
        PyBuffer_Release(&self->input);
    self->input = raw;
    self->z.next_in = (Bytef *)raw.buf;
    self->z.avail_in = (uInt)raw.len;
    if ((Py_ssize_t)self->z.avail_in != raw.len) {
        PyErr_SetString(PyExc_ValueError, "feed: at most 4 GiB at a time");
        self->z.avail_in = 0;
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Inflater_hungry(Inflater *self, void *closure)
{
    return PyBool_FromLong(self->z.avail_in == 0 && self->drained);
}

/* inflate_after(buf, pos, limit) -> buf[pos:] + up to `limit` inflated bytes. */
static PyObject *
Inflater_inflate_after(Inflater *self, PyObject *args)
{
    Py_buffer prev;
    Py_ssize_t pos, limit;
    if (check(self) < 0 || !PyArg_ParseTuple(args, "y*nn:inflate_after", &prev, &pos, &limit))
        return NULL;
    if (pos < 0 || pos > prev.len || limit < 1 || limit > (Py_ssize_t)UINT_MAX) {
        PyBuffer_Release(&prev);
        PyErr_SetString(PyExc_ValueError, "inflate_after: pos within buf, 0 < limit < 4 GiB");
        return NULL;
    }
    Py_ssize_t keep = prev.len - pos;
    int hungry = self->z.avail_in == 0 && self->drained;
    PyObject *out = PyBytes_FromStringAndSize(NULL, keep + (hungry ? 0 : limit));
    if (out == NULL) {
        PyBuffer_Release(&prev);
        return NULL;
    }
    char *o = PyBytes_AS_STRING(out);
    int rc = Z_OK;
    uInt room = (uInt)limit;
    long long t0, t1;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    t0 = thread_cpu_ns();
    memcpy(o, (const char *)prev.buf + pos, (size_t)keep);
    if (!hungry) {
        self->z.next_out = (Bytef *)o + keep;
        self->z.avail_out = room;
        while (self->z.avail_out) {
            if (self->z.avail_in == 0 && !self->started)
                break; /* between members: nothing to start */
            self->started = 1;
            rc = inflate(&self->z, Z_NO_FLUSH);
            if (rc == Z_STREAM_END) {
                /* a member ended: the rest of the input (if any) is the next member */
                self->started = 0;
                rc = Z_OK;
                if (self->z.avail_in == 0)
                    break;
                if ((rc = inflateReset(&self->z)) != Z_OK)
                    break;
                continue;
            }
            if (rc == Z_BUF_ERROR && self->z.avail_in == 0) {
                rc = Z_OK; /* needs more input */
                break;
            }
            if (rc != Z_OK)
                break;
        }
    }
    t1 = thread_cpu_ns();
    Py_END_ALLOW_THREADS
    nogil_cpu_ns_total += t1 - t0;
    self->busy = 0;
    PyBuffer_Release(&prev);
    if (rc != Z_OK) {
        const char *why = self->z.msg ? self->z.msg : "invalid input";
        if (rc == Z_MEM_ERROR)
            PyErr_SetString(PyExc_MemoryError, "out of memory while decompressing data");
        else
            PyErr_Format(ZlibError, "Error %d while decompressing data: %s", rc, why);
        Py_DECREF(out);
        return NULL;
    }
    if (hungry)
        return out;
    self->drained = self->z.avail_out > 0;
    Py_ssize_t got = limit - (Py_ssize_t)self->z.avail_out;
    if (got < limit && _PyBytes_Resize(&out, keep + got) < 0)
        return NULL;
    return out;
}

static PyObject *
Inflater_finish(Inflater *self, PyObject *unused)
{
    if (check(self) < 0)
        return NULL;
    if (self->started) {
        PyErr_SetString(PyExc_EOFError, "Compressed file ended before the end-of-stream marker was reached");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef Inflater_methods[] = {
    {"feed", (PyCFunction)Inflater_feed, METH_VARARGS, "feed(raw): the next compressed bytes (all read before more)."},
    {"inflate_after", (PyCFunction)Inflater_inflate_after, METH_VARARGS,
     "inflate_after(buf, pos, limit) -> bytes: buf[pos:] followed by up to limit inflated bytes."},
    {"finish", (PyCFunction)Inflater_finish, METH_NOARGS,
     "finish(): the input ended; EOFError if a member was cut short."},
    {NULL}
};

static PyGetSetDef Inflater_getset[] = {
    {"hungry", (getter)Inflater_hungry, NULL, "nothing more comes out without more input", NULL},
    {NULL}
};

static PyTypeObject InflaterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.dynamodb._inflate.Inflater",
    .tp_basicsize = sizeof(Inflater),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Gzip members -> bytes, inflated and copied with the GIL released.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Inflater_init,
    .tp_dealloc = (destructor)Inflater_dealloc,
    .tp_methods = Inflater_methods,
    .tp_getset = Inflater_getset,
};

static PyMethodDef module_methods[] = {
    {"nogil_cpu_ns", nogil_cpu_ns, METH_NOARGS, "nogil_cpu_ns() -> int: CPU time spent inflating without the GIL."},
    {NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_inflate", "Export data files inflated without the GIL.", -1, module_methods,
};

PyMODINIT_FUNC
PyInit__inflate(void)
{
    PyObject *zlib = PyImport_ImportModule("zlib");
    if (zlib == NULL)
        return NULL;
    ZlibError = PyObject_GetAttrString(zlib, "error");
    Py_DECREF(zlib);
    if (ZlibError == NULL || PyType_Ready(&InflaterType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Inflater", (PyObject *)&InflaterType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
