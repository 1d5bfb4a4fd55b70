/* The typed writer in C: DynamoDB JSON items (as parsed dicts) → Avro records, given a field
 * plan compiled from the schema (connectors/dynamodb/typed/plan.py builds the spec).
 *
 * It takes the common case only: whenever a value is not plainly one of the plan's types
 * (an unknown attribute, a conflict, an unusual number text, an M kept as AttributeValues,
 * bad base64, a string with lone surrogates), Plan.encode returns None and the caller takes
 * the Python writer (encode.py), which decides: grow the schema, or a conflict with its
 * reason. Where it returns bytes, they equal the Python writer's (tests/unit/test_typed_writer.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { K_STRING, K_BOOL, K_BYTES, K_LONG, K_DOUBLE, K_DEC, K_ARR, K_REC };

typedef struct Node Node;
typedef struct { Node **v; int n; } Branches;
typedef struct {
    PyObject *name;     /* attribute (str), owned */
    int nullable;
    Branches types;
    PyObject *dflt;     /* bytes or NULL: a non-null field's default body */
} FieldPlan;
struct Node {
    int kind, precision, scale;
    Branches items;     /* K_ARR */
    FieldPlan *fields;  /* K_REC */
    int nfields;
};

typedef struct { char *p; Py_ssize_t n, cap; } Buf;

static int buf_grow(Buf *b, Py_ssize_t need) {
    if (b->n + need <= b->cap) return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + need) cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->p = p; b->cap = cap;
    return 0;
}
static int put(Buf *b, const void *s, Py_ssize_t n) {
    if (buf_grow(b, n) < 0) return -1;
    memcpy(b->p + b->n, s, n); b->n += n;
    return 0;
}
static int put_long(Buf *b, int64_t v) {
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    if (buf_grow(b, 10) < 0) return -1;
    while (z & ~0x7FULL) { b->p[b->n++] = (char)((z & 0x7F) | 0x80); z >>= 7; }
    b->p[b->n++] = (char)z;
    return 0;
}

static PyObject *K_S, *K_N, *K_B, *K_BOOL_, *K_NULL, *K_M, *K_L, *K_SS, *K_NS, *K_BS;

/* ---- results: 1 written, 0 not this type / not taken (caller falls back), -1 Python error */

static int w_string(Buf *b, PyObject *v) {
    if (!PyUnicode_CheckExact(v)) return 0;
    Py_ssize_t n; const char *s = PyUnicode_AsUTF8AndSize(v, &n);
    if (!s) { PyErr_Clear(); return 0; }
    if (put_long(b, n) < 0 || put(b, s, n) < 0) return -1;
    return 1;
}

static const signed char B64[256] = {
    ['A']=0,['B']=1,['C']=2,['D']=3,['E']=4,['F']=5,['G']=6,['H']=7,['I']=8,['J']=9,['K']=10,['L']=11,['M']=12,
    ['N']=13,['O']=14,['P']=15,['Q']=16,['R']=17,['S']=18,['T']=19,['U']=20,['V']=21,['W']=22,['X']=23,['Y']=24,
    ['Z']=25,['a']=26,['b']=27,['c']=28,['d']=29,['e']=30,['f']=31,['g']=32,['h']=33,['i']=34,['j']=35,['k']=36,
    ['l']=37,['m']=38,['n']=39,['o']=40,['p']=41,['q']=42,['r']=43,['s']=44,['t']=45,['u']=46,['v']=47,['w']=48,
    ['x']=49,['y']=50,['z']=51,['0']=52,['1']=53,['2']=54,['3']=55,['4']=56,['5']=57,['6']=58,['7']=59,['8']=60,
    ['9']=61,['+']=62,['/']=63,
};
static int b64ok(unsigned char c) { return c == 'A' || B64[c] != 0; }

static int w_bytes(Buf *b, PyObject *v) {
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v);
    const unsigned char *s = PyUnicode_1BYTE_DATA(v);
    if (n % 4) return 0;
    Py_ssize_t pad = n && s[n - 1] == '=' ? (s[n - 2] == '=' ? 2 : 1) : 0;
    for (Py_ssize_t i = 0; i < n - pad; i++) if (!b64ok(s[i])) return 0;
    Py_ssize_t out = n / 4 * 3 - pad;
    if (put_long(b, out) < 0 || buf_grow(b, out + 3) < 0) return -1;
    char *o = b->p + b->n;
    for (Py_ssize_t i = 0; i < n; i += 4) {
        uint32_t q = 0;
        for (int j = 0; j < 4; j++) q = (q << 6) | (s[i + j] == '=' ? 0 : (uint32_t)B64[s[i + j]]);
        *o++ = (char)(q >> 16); *o++ = (char)(q >> 8); *o++ = (char)q;
    }
    b->n += out;
    return 1;
}

/* Plain number text: [-]digits[.digits][(e|E)[+-]digits] → sign, significant digits (no
 * leading zeros, trailing zeros kept), exponent of the last digit. 0 for anything else. */
typedef struct { int neg; char d[64]; int nd; long exp; } Num;

static int parse_num(PyObject *v, Num *x) {
    if (!PyUnicode_CheckExact(v) || !PyUnicode_IS_ASCII(v)) return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(v), i = 0;
    const char *s = (const char *)PyUnicode_1BYTE_DATA(v);
    x->neg = 0; x->nd = 0; x->exp = 0;
    if (i < n && s[i] == '-') { x->neg = 1; i++; }
    int any = 0, frac = 0;
    for (; i < n && (s[i] >= '0' && s[i] <= '9'); i++) {
        any = 1;
        if (x->nd == 0 && s[i] == '0') continue;
        if (x->nd >= 60) return 0;
        x->d[x->nd++] = s[i];
    }
    if (i < n && s[i] == '.') {
        i++;
        int fd = 0;
        for (; i < n && (s[i] >= '0' && s[i] <= '9'); i++) {
            fd = 1; frac++;
            if (x->nd == 0 && s[i] == '0') continue;
            if (x->nd >= 60) return 0;
            x->d[x->nd++] = s[i];
        }
        if (!fd) return 0;
    }
    if (!any) return 0;
    x->exp = -frac;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0; long e = 0; int ed = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) { eneg = s[i] == '-'; i++; }
        for (; i < n && (s[i] >= '0' && s[i] <= '9'); i++) { ed = 1; if (e < 100000) e = e * 10 + (s[i] - '0'); }
        if (!ed) return 0;
        x->exp += eneg ? -e : e;
    }
    return i == n;
}

/* value == digits * 10^exp; normalised: no trailing zeros (zero: nd = 0) */
static void norm(Num *x) {
    while (x->nd && x->d[x->nd - 1] == '0') { x->nd--; x->exp++; }
    if (!x->nd) { x->exp = 0; x->neg = 0; }
}

static int num_eq(Num a, Num b) {
    norm(&a); norm(&b);
    return a.neg == b.neg && a.nd == b.nd && a.exp == b.exp && memcmp(a.d, b.d, a.nd) == 0;
}

/* unscaled value at scale s into *out when it has at most `prec` digits and drops none */
static int unscaled(const Num *x0, int scale, int prec, __int128 *out) {
    Num x = *x0; norm(&x);
    long shift = x.exp + scale;
    if (shift < 0) return 0;  /* would drop non-zero digits */
    if (x.nd + shift > prec) return 0;
    __int128 u = 0;
    for (int i = 0; i < x.nd; i++) u = u * 10 + (x.d[i] - '0');
    for (long i = 0; i < shift; i++) u *= 10;
    *out = x.neg ? -u : u;
    return 1;
}

static int w_dec(Buf *b, const Num *x, int prec, int scale) {
    __int128 u;
    if (!unscaled(x, scale, prec, &u)) return 0;
    unsigned __int128 a = u < 0 ? (unsigned __int128)(-u) : (unsigned __int128)u;  /* bit_length(|u|), as Python */
    int bits = 0;
    while (a) { bits++; a >>= 1; }
    int n = (bits + 8) / 8;
    unsigned char tmp[17];
    unsigned __int128 t = (unsigned __int128)u;
    for (int i = n - 1; i >= 0; i--) { tmp[i] = (unsigned char)(t & 0xFF); t >>= 8; }
    if (put_long(b, n) < 0 || put(b, tmp, n) < 0) return -1;
    return 1;
}

static int w_number(Buf *b, Node *t, PyObject *v) {
    Num x;
    if (!parse_num(v, &x)) return 0;
    if (t->kind == K_LONG) {
        __int128 u;
        if (!unscaled(&x, 0, 19, &u)) return 0;
        if (u < (__int128)INT64_MIN || u > (__int128)INT64_MAX) return 0;
        return put_long(b, (int64_t)u) < 0 ? -1 : 1;
    }
    if (t->kind == K_DEC) return w_dec(b, &x, t->precision, t->scale);
    /* double: only when the shortest text of the double is the same number */
    double f = PyOS_string_to_double(PyUnicode_AsUTF8(v), NULL, NULL);
    if (f == -1.0 && PyErr_Occurred()) { PyErr_Clear(); return 0; }
    if (isinf(f) || isnan(f)) return 0;
    char *r = PyOS_double_to_string(f, 'r', 0, 0, NULL);
    if (!r) return -1;
    PyObject *rs = PyUnicode_FromString(r);
    PyMem_Free(r);
    if (!rs) return -1;
    Num y;
    int ok = parse_num(rs, &y) && num_eq(x, y);
    Py_DECREF(rs);
    if (!ok) return 0;
    if (buf_grow(b, 8) < 0) return -1;
    memcpy(b->p + b->n, &f, 8);  /* little-endian hosts (x86-64, arm64) */
    b->n += 8;
    return 1;
}

static int w_record(Buf *b, Node *t, PyObject *item);
static int w_position(Buf *b, Branches *bs, int nullable, PyObject *av);

/* one DynamoDB value (type key k, value v) as branch type t */
static int w_value(Buf *b, Node *t, PyObject *k, PyObject *v) {
    switch (t->kind) {
    case K_STRING: return k == K_S ? w_string(b, v) : 0;
    case K_BOOL:
        if (k != K_BOOL_ || (v != Py_True && v != Py_False)) return 0;
        return put(b, v == Py_True ? "\x01" : "\x00", 1) < 0 ? -1 : 1;
    case K_BYTES: return k == K_B ? w_bytes(b, v) : 0;
    case K_LONG: case K_DOUBLE: case K_DEC: return k == K_N ? w_number(b, t, v) : 0;
    case K_REC: return k == K_M ? w_record(b, t, v) : 0;
    case K_ARR: {
        PyObject *elem_key = k == K_SS ? K_S : k == K_NS ? K_N : k == K_BS ? K_B : NULL;
        if ((k != K_L && !elem_key) || !PyList_CheckExact(v)) return 0;
        Py_ssize_t n = PyList_GET_SIZE(v);
        if (n) {
            if (put_long(b, n) < 0) return -1;
            for (Py_ssize_t i = 0; i < n; i++) {
                PyObject *x = PyList_GET_ITEM(v, i);
                int r;
                if (elem_key) {
                    /* a set element: the position's branches, never null */
                    r = 0;
                    for (int j = 0; j < t->items.n && r == 0; j++) {
                        Py_ssize_t mark = b->n;
                        if (put_long(b, j + 1) < 0) return -1;
                        r = w_value(b, t->items.v[j], elem_key, x);
                        if (r == 0) b->n = mark;
                    }
                } else {
                    r = w_position(b, &t->items, 1, x);
                }
                if (r <= 0) return r;
            }
        }
        return put(b, "\x00", 1) < 0 ? -1 : 1;
    }
    }
    return 0;
}

static int w_position(Buf *b, Branches *bs, int nullable, PyObject *av) {
    if (!PyDict_CheckExact(av) || PyDict_GET_SIZE(av) != 1) return 0;
    Py_ssize_t pos = 0; PyObject *k, *v;
    PyDict_Next(av, &pos, &k, &v);
    /* the type keys are interned by the JSON parser's dict keys only sometimes: compare by value */
    PyObject *key = NULL;
    PyObject *keys[] = {K_S, K_N, K_B, K_BOOL_, K_NULL, K_M, K_L, K_SS, K_NS, K_BS};
    for (int i = 0; i < 10; i++) {
        if (k == keys[i] || (PyUnicode_CheckExact(k) && PyUnicode_Compare(k, keys[i]) == 0)) { key = keys[i]; break; }
    }
    if (!key) { PyErr_Clear(); return 0; }
    if (key == K_NULL) {
        if (!nullable || v != Py_True) return 0;
        return put(b, "\x00", 1) < 0 ? -1 : 1;
    }
    for (int i = 0; i < bs->n; i++) {
        Py_ssize_t mark = b->n;
        if (nullable || bs->n > 1) { if (put_long(b, nullable ? i + 1 : i) < 0) return -1; }
        int r = w_value(b, bs->v[i], key, v);
        if (r) return r;
        b->n = mark;
    }
    return 0;
}

static int w_record(Buf *b, Node *t, PyObject *item) {
    if (!PyDict_CheckExact(item)) return 0;
    Py_ssize_t known = 0;
    for (int i = 0; i < t->nfields; i++) {
        FieldPlan *f = &t->fields[i];
        PyObject *av = PyDict_GetItemWithError(item, f->name);
        if (!av) {
            if (PyErr_Occurred()) return -1;
            if (f->nullable) { if (put(b, "\x00", 1) < 0) return -1; continue; }
            if (!f->dflt) return 0;
            if (put(b, PyBytes_AS_STRING(f->dflt), PyBytes_GET_SIZE(f->dflt)) < 0) return -1;
            continue;
        }
        known++;
        int r = w_position(b, &f->types, f->nullable, av);
        if (r <= 0) {
            if (r == 0 && !f->nullable && f->dflt && PyDict_CheckExact(av) && PyDict_GetItem(av, K_NULL) == Py_True) {
                if (put(b, PyBytes_AS_STRING(f->dflt), PyBytes_GET_SIZE(f->dflt)) < 0) return -1;
                continue;
            }
            return r;
        }
    }
    return known == PyDict_GET_SIZE(item);
}

/* ---- plan compilation from the spec plan.py builds ---------------------------------- */

static void free_node(Node *t);
static void free_branches(Branches *bs) {
    for (int i = 0; i < bs->n; i++) free_node(bs->v[i]);
    PyMem_Free(bs->v);
}
static void free_node(Node *t) {
    if (!t) return;
    free_branches(&t->items);
    for (int i = 0; i < t->nfields; i++) {
        Py_XDECREF(t->fields[i].name); Py_XDECREF(t->fields[i].dflt); free_branches(&t->fields[i].types);
    }
    PyMem_Free(t->fields);
    PyMem_Free(t);
}

static Node *compile_node(PyObject *spec);

static int compile_branches(PyObject *seq, Branches *bs) {
    if (!PyTuple_Check(seq)) { PyErr_SetString(PyExc_TypeError, "branches must be a tuple"); return -1; }
    bs->n = (int)PyTuple_GET_SIZE(seq);
    bs->v = PyMem_Calloc(bs->n ? bs->n : 1, sizeof(Node *));
    if (!bs->v) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < bs->n; i++) if (!(bs->v[i] = compile_node(PyTuple_GET_ITEM(seq, i)))) return -1;
    return 0;
}

/* spec: ("string",) ("boolean",) ("bytes",) ("long",) ("double",) ("decimal", p, s)
 *       ("array", branches) ("record", ((name, nullable, branches, default bytes|None), ...)) */
static Node *compile_node(PyObject *spec) {
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1) { PyErr_SetString(PyExc_TypeError, "bad plan node"); return NULL; }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 0));
    if (!kind) return NULL;
    Node *t = PyMem_Calloc(1, sizeof(Node));
    if (!t) { PyErr_NoMemory(); return NULL; }
    if (!strcmp(kind, "string")) t->kind = K_STRING;
    else if (!strcmp(kind, "boolean")) t->kind = K_BOOL;
    else if (!strcmp(kind, "bytes")) t->kind = K_BYTES;
    else if (!strcmp(kind, "long")) t->kind = K_LONG;
    else if (!strcmp(kind, "double")) t->kind = K_DOUBLE;
    else if (!strcmp(kind, "decimal")) {
        t->kind = K_DEC;
        t->precision = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
        t->scale = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 2));
        if (t->precision < 1 || t->precision > 38 || t->scale < 0) {
            PyErr_SetString(PyExc_ValueError, "decimal precision 1..38"); free_node(t); return NULL;
        }
    } else if (!strcmp(kind, "array")) {
        t->kind = K_ARR;
        if (compile_branches(PyTuple_GET_ITEM(spec, 1), &t->items) < 0) { free_node(t); return NULL; }
    } else if (!strcmp(kind, "record")) {
        t->kind = K_REC;
        PyObject *fs = PyTuple_GET_ITEM(spec, 1);
        t->nfields = (int)PyTuple_GET_SIZE(fs);
        t->fields = PyMem_Calloc(t->nfields ? t->nfields : 1, sizeof(FieldPlan));
        if (!t->fields) { free_node(t); PyErr_NoMemory(); return NULL; }
        for (int i = 0; i < t->nfields; i++) {
            PyObject *f = PyTuple_GET_ITEM(fs, i);
            FieldPlan *fp = &t->fields[i];
            fp->name = Py_NewRef(PyTuple_GET_ITEM(f, 0));
            fp->nullable = PyObject_IsTrue(PyTuple_GET_ITEM(f, 1));
            PyObject *d = PyTuple_GET_ITEM(f, 3);
            fp->dflt = d == Py_None ? NULL : Py_NewRef(d);
            if (compile_branches(PyTuple_GET_ITEM(f, 2), &fp->types) < 0) { free_node(t); return NULL; }
        }
    } else {
        PyErr_Format(PyExc_ValueError, "unknown plan node %s", kind); free_node(t); return NULL;
    }
    return t;
}

typedef struct { PyObject_HEAD Node *root; } Plan;

static int Plan_init(Plan *self, PyObject *args, PyObject *kw) {
    PyObject *spec;
    if (!PyArg_ParseTuple(args, "O", &spec)) return -1;
    free_node(self->root);
    self->root = compile_node(spec);
    if (self->root && self->root->kind != K_REC) {
        PyErr_SetString(PyExc_ValueError, "a plan's root is a record"); free_node(self->root); self->root = NULL;
    }
    return self->root ? 0 : -1;
}

static void Plan_dealloc(Plan *self) { free_node(self->root); Py_TYPE(self)->tp_free((PyObject *)self); }

/* encode(item) -> bytes of the record, or None when the Python writer must decide */
static PyObject *Plan_encode(Plan *self, PyObject *item) {
    Buf b = {0};
    int r = w_record(&b, self->root, item);
    PyObject *out = r > 0 ? PyBytes_FromStringAndSize(b.p, b.n) : NULL;
    PyMem_Free(b.p);
    if (r < 0) return NULL;
    if (r == 0) Py_RETURN_NONE;
    return out;
}

static PyMethodDef Plan_methods[] = {
    {"encode", (PyCFunction)Plan_encode, METH_O, "encode(item) -> Avro record body, or None (take the Python writer)"},
    {NULL},
};

static PyTypeObject PlanType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "connectors.dynamodb.typed._typed.Plan",
    .tp_basicsize = sizeof(Plan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Plan_init,
    .tp_dealloc = (destructor)Plan_dealloc,
    .tp_methods = Plan_methods,
    .tp_doc = "Plan(spec): a typed record's field plan; .encode(item)",
};


/* ---- reading typed Avro bodies: where an image's fields start (the transform chain's
 * fast path reads a few fields of the one-pass writer's bodies without decoding them).
 * A type is a program of Python objects: an int (0 null, 1 boolean, 2 int/long/enum, 3 float,
 * 4 double, 5 string/bytes), a pair (6, size) fixed, (8, items) array, (9, values) map,
 * (10, fields) record, (11, branches) union, or a one-item list holding a type (named types,
 * so that recursive ones close). */

static int rd_varint(const unsigned char *b, Py_ssize_t n, Py_ssize_t *pos, int64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    while (*pos < n) {
        unsigned char c = b[(*pos)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
        shift += 7;
        if (shift > 63) return -1;
    }
    return -1;
}

static int skip_type(const unsigned char *b, Py_ssize_t n, Py_ssize_t *pos, PyObject *t, int depth);

static int skip_bytes(const unsigned char *b, Py_ssize_t n, Py_ssize_t *pos) {
    int64_t len;
    if (rd_varint(b, n, pos, &len) < 0 || len < 0 || len > n - *pos) return -1;
    *pos += (Py_ssize_t)len;
    return 0;
}

static int skip_fields(const unsigned char *b, Py_ssize_t n, Py_ssize_t *pos, PyObject *fields, int depth) {
    Py_ssize_t k = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < k; i++)
        if (skip_type(b, n, pos, PyTuple_GET_ITEM(fields, i), depth + 1) < 0) return -1;
    return 0;
}

static int skip_type(const unsigned char *b, Py_ssize_t n, Py_ssize_t *pos, PyObject *t, int depth) {
    int64_t v;
    if (depth > 256) return -1;
    while (PyList_Check(t) && PyList_GET_SIZE(t) == 1) t = PyList_GET_ITEM(t, 0);
    if (PyLong_Check(t)) {
        switch (PyLong_AsLong(t)) {
        case 0: return 0;
        case 1: if (*pos >= n) return -1; (*pos)++; return 0;
        case 2: return rd_varint(b, n, pos, &v);
        case 3: if (n - *pos < 4) return -1; *pos += 4; return 0;
        case 4: if (n - *pos < 8) return -1; *pos += 8; return 0;
        case 5: return skip_bytes(b, n, pos);
        }
        return -1;
    }
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 2) return -1;
    long code = PyLong_AsLong(PyTuple_GET_ITEM(t, 0));
    PyObject *a = PyTuple_GET_ITEM(t, 1);
    switch (code) {
    case 6: {
        long size = PyLong_AsLong(a);
        if (size < 0 || n - *pos < size) return -1;
        *pos += size;
        return 0;
    }
    case 8: case 9:
        for (;;) {
            if (rd_varint(b, n, pos, &v) < 0) return -1;
            if (v == 0) return 0;
            if (v < 0) {  /* a block with its size in bytes: skipped whole */
                int64_t size;
                if (rd_varint(b, n, pos, &size) < 0 || size < 0 || size > n - *pos) return -1;
                *pos += (Py_ssize_t)size;
                continue;
            }
            for (int64_t i = 0; i < v; i++) {
                if (code == 9 && skip_bytes(b, n, pos) < 0) return -1;
                if (skip_type(b, n, pos, a, depth + 1) < 0) return -1;
            }
        }
    case 10:
        return PyTuple_Check(a) ? skip_fields(b, n, pos, a, depth) : -1;
    case 11:
        if (!PyTuple_Check(a) || rd_varint(b, n, pos, &v) < 0 || v < 0 || v >= PyTuple_GET_SIZE(a)) return -1;
        return skip_type(b, n, pos, PyTuple_GET_ITEM(a, (Py_ssize_t)v), depth + 1);
    }
    return -1;
}

static PyObject *image_offsets(PyObject *self, PyObject *args) {
    Py_buffer buf;
    Py_ssize_t which, count, pos = 0;
    PyObject *top, *fields;
    int64_t branch;
    if (!PyArg_ParseTuple(args, "y*O!nO!n", &buf, &PyTuple_Type, &top, &which, &PyTuple_Type, &fields, &count))
        return NULL;
    const unsigned char *b = (const unsigned char *)buf.buf;
    Py_ssize_t n = buf.len, k = PyTuple_GET_SIZE(fields);
    if (which < 0 || which >= PyTuple_GET_SIZE(top)) goto bad;
    for (Py_ssize_t i = 0; i < which; i++)
        if (skip_type(b, n, &pos, PyTuple_GET_ITEM(top, i), 0) < 0) goto bad;
    if (rd_varint(b, n, &pos, &branch) < 0 || branch < 0 || branch > 1) goto bad;
    if (branch == 0) { PyBuffer_Release(&buf); return PyTuple_New(0); }
    if (count > k) count = k;
    PyObject *out = PyTuple_New(count + 1);
    if (!out) { PyBuffer_Release(&buf); return NULL; }
    for (Py_ssize_t i = 0; i <= count; i++) {
        PyObject *o = PyLong_FromSsize_t(pos);
        if (!o) { Py_DECREF(out); PyBuffer_Release(&buf); return NULL; }
        PyTuple_SET_ITEM(out, i, o);
        if (i < count && skip_type(b, n, &pos, PyTuple_GET_ITEM(fields, i), 0) < 0) { Py_DECREF(out); goto bad; }
    }
    PyBuffer_Release(&buf);
    return out;
bad:
    PyBuffer_Release(&buf);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"image_offsets", image_offsets, METH_VARARGS,
     "image_offsets(body, top, which, fields, count) -> offsets | () | None\n\n"
     "Where the first ``count`` fields (a tuple of type programs) of the record in the union\n"
     "[null, record] that is field ``which`` of the top record (``top``: its fields' programs)\n"
     "start, and where the last ends; () where that field is null, None where the body does not\n"
     "read as them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_typed", NULL, -1, module_methods};

PyMODINIT_FUNC PyInit__typed(void) {
    if (PyType_Ready(&PlanType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
#define INTERN(var, s) if (!(var = PyUnicode_InternFromString(s))) return NULL;
    INTERN(K_S, "S") INTERN(K_N, "N") INTERN(K_B, "B") INTERN(K_BOOL_, "BOOL") INTERN(K_NULL, "NULL")
    INTERN(K_M, "M") INTERN(K_L, "L") INTERN(K_SS, "SS") INTERN(K_NS, "NS") INTERN(K_BS, "BS")
    Py_INCREF(&PlanType);
    if (PyModule_AddObject(m, "Plan", (PyObject *)&PlanType) < 0) return NULL;
    return m;
}
