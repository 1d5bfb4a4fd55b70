/*
 * connectors.dynamodb._transcode: a DynamoDB Streams GetRecords response body (JSON bytes)
 * straight to Avro, in one pass, without building Python objects for the items.
 *
 * For each stream record it returns (op, key, source, key_avro, value_avro):
 *   op          "c" | "u" | "d"
 *   key         the record's Keys in DynamoDB JSON ({"pk": {"S": "x"}}, B as base64 text)
 *   source      the envelope's source block as a dict (same keys and values as
 *               connectors.dynamodb.records.from_stream_records builds)
 *   key_avro    Avro body of the table's Key record (no Confluent framing)
 *   value_avro  Avro body of the Envelope record (no Confluent framing)
 * plus the page's last SequenceNumber and its NextShardIterator. Given a TypedPlan (typed values,
 * see "typed images" below), the images are typed records instead of maps. Given records=(topic,
 * schema), it returns StreamRecords instead of tuples, each REMOVE followed by its
 * tombstone: objects with bridge.task.SourceRecord's fields (RECORD_FIELDS), made for the hot
 * path (see StreamRecord below).
 *
 * The bytes are exactly those of connectors.dynamodb.avro.encode_key / encode_envelope (and so of
 * fastavro) for the same input; connectors/dynamodb/_transcode_py.py is the same function in
 * Python and tests/unit/test_transcode.py holds the two to identical output.
 *
 * Anything unusual raises ValueError and the caller takes the general path for that page:
 * invalid JSON (the grammar orjson accepts, UTF-8 checked, lone surrogates refused), a
 * value of the wrong JSON type, attribute values that are not exactly one known type,
 * base64 that is not canonical, a name given twice in one map, attributes nested deeper
 * than MAX_AV_DEPTH.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "_nogil_time.h"

#define MAX_JSON_DEPTH 1024 /* orjson refuses deeper documents */
#define MAX_AV_DEPTH 100    /* must equal MAX_ATTRIBUTE_DEPTH in _transcode_py.py */

/* ------------------------------------------------------------------ growable buffer */

/*
 * Set while this thread runs the item writer's parsing and encoding with the GIL released
 * (ItemWriter below): the shared parsing functions then touch no Python object, allocate with
 * PyMem_Raw*, and only return -1 on failure, setting no exception; the caller takes the GIL
 * back and runs the same input again with the GIL held, which raises the exception.
 */
static _Thread_local int nogil;

typedef struct {
    unsigned char *d;
    Py_ssize_t len;
    Py_ssize_t cap;
} Buf;

static int
buf_grow(Buf *b, Py_ssize_t extra)
{
    Py_ssize_t need = b->len + extra;
    Py_ssize_t cap = b->cap ? b->cap : 1024;
    while (cap < need) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            if (!nogil)
                PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    unsigned char *d = PyMem_RawRealloc(b->d, (size_t)cap);
    if (d == NULL) {
        if (!nogil)
            PyErr_NoMemory();
        return -1;
    }
    b->d = d;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, n)                                                         \
    do {                                                                      \
        if ((b)->len + (Py_ssize_t)(n) > (b)->cap && buf_grow((b), (n)) < 0)  \
            return -1;                                                        \
    } while (0)

static void
buf_free(Buf *b)
{
    PyMem_RawFree(b->d);
    b->d = NULL;
    b->len = b->cap = 0;
}

/* After a page: drop what a big one left behind, so an idle reader does not hold megabytes. */
static void
buf_trim(Buf *b, Py_ssize_t max)
{
    if (b->cap > max)
        buf_free(b);
}

static inline uint64_t
zigzag(int64_t n)
{
    return ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
}

static inline int
varint_len(uint64_t z)
{
    int n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

/* Caller has reserved 10 bytes. */
static inline void
put_varint(Buf *b, uint64_t z)
{
    while (z >= 0x80) {
        b->d[b->len++] = (unsigned char)(z | 0x80);
        z >>= 7;
    }
    b->d[b->len++] = (unsigned char)z;
}

static int
put_avro_string(Buf *b, const char *s, Py_ssize_t n)
{
    RESERVE(b, n + 10);
    put_varint(b, zigzag(n));
    memcpy(b->d + b->len, s, (size_t)n);
    b->len += n;
    return 0;
}

/* A block count was reserved as one byte at `at`; write the real count there. */
static int
finish_count(Buf *b, Py_ssize_t at, Py_ssize_t count)
{
    uint64_t z = zigzag(count);
    int vl = varint_len(z);
    if (vl > 1) {
        RESERVE(b, vl - 1);
        memmove(b->d + at + vl, b->d + at + 1, (size_t)(b->len - at - 1));
        b->len += vl - 1;
    }
    Py_ssize_t end = b->len;
    b->len = at;
    put_varint(b, z);
    b->len = end;
    return 0;
}

/* ------------------------------------------------------------------ module state */

typedef struct {
    PyObject *k_connector, *k_table, *k_region, *k_stream_arn, *k_shard_id;
    PyObject *k_sequence_number, *k_event_id, *k_approximate_creation_ms, *k_ttl_delete;
    PyObject *s_dynamodb, *op_c, *op_u, *op_d, *t_S, *t_N, *t_B;
} State;

static State S; /* interned constants; the module is single-phase and never unloaded */

/* ------------------------------------------------------------------ transcoder object */

typedef struct {
    PyObject *name;    /* str */
    PyObject *type;    /* interned "S" | "N" | "B" */
    const char *utf8;  /* name's UTF-8 (owned by name) */
    Py_ssize_t ulen;
    char t;
    Buf val;           /* while a record is read: its value (S/N text, B as base64 text) */
} KeyField;

typedef struct {
    Py_ssize_t off, len;
} Span;

typedef struct PNode PNode; /* a typed field plan's node (typed images, below) */

typedef struct {
    Py_ssize_t off, len; /* len -1: not seen */
} TSpan;

#define NFIELDS 9
static const char *const RECORD_FIELDS[NFIELDS] = {
    "topic", "schema", "key", "value", "position", "ts_ms", "tombstone", "encoded_key", "encoded_value",
};
#define ABI 6 /* what the module returns and refuses; transcode.py refuses a build of another version */
#define HEADER 5 /* Confluent wire format: magic byte 0, schema id (4 bytes, big-endian) */
#define MAX_KEY_FIELDS 8

typedef struct {
    PyObject_HEAD
    KeyField *kf;
    Py_ssize_t nkf;
    PyObject *table, *region, *stream_arn, *shard_id;
    PyObject *source_template; /* the source dict with the per-record values at their defaults */
    int records;               /* records=(topic, schema) given: page() returns StreamRecords */
    PyObject *rec_topic, *rec_key_fields; /* rec_key_fields: the records' schema handle */
    Buf seq_text, event_id_text, region_text; /* while a record is read: SequenceNumber, eventID, awsRegion */
    Buf last_seq_text;         /* while a page is read: the newest SequenceNumber */
    int has_last_seq;
    PyObject *region_utf8; /* bytes */
    Buf src_head;          /* string "dynamodb", string table */
    Buf src_tail;          /* 0x02 string stream_arn, 0x02 string shard_id */
    Buf src_region;        /* 0x02 string region (the default) */
    /* reused across records and pages */
    Buf before, after, key, src, scratch;
    Span *names;
    Py_ssize_t nnames, capnames;
    /* A binary key attribute in an image must equal Keys' (moto base64-encodes binary Keys
     * twice): where each B key field's attribute starts in before (0) and after (1), or -1. */
    int binary_keys;
    Py_ssize_t img_key_at[2][MAX_KEY_FIELDS];
    /* typed images (page() given a TypedPlan): while a page is read, the plan's root and the
     * records' schema handle; per depth, a record's field values before they are put in order */
    PNode *plan;
    int plan_after; /* image: after: the value is the new image alone */
    PyObject *handle;
    int typed_miss; /* the record's images are not plainly in the plan: the caller's */
    Buf levels[MAX_AV_DEPTH + 1];
    Buf typed_img[2]; /* a table with a binary key: the typed images (before, after); before/after
                       * then hold the envelope's maps, where check_binary_keys finds the keys */
    TSpan *spans;
    Py_ssize_t nspans, capspans;
} Transcoder;

typedef struct {
    const unsigned char *base, *p, *end;
    int depth;
    Transcoder *t;
} Parser;

static int
fail(Parser *ps, const char *msg)
{
    if (nogil)
        return -1;
    PyErr_Format(PyExc_ValueError, "GetRecords page: %s at byte %zd", msg, (Py_ssize_t)(ps->p - ps->base));
    return -1;
}

static inline void
ws(Parser *ps)
{
    const unsigned char *p = ps->p, *e = ps->end;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    ps->p = p;
}

/* Next significant byte, or -1 at the end; does not consume it. */
static inline int
peek(Parser *ps)
{
    ws(ps);
    return ps->p < ps->end ? *ps->p : -1;
}

static inline int
expect(Parser *ps, unsigned char c, const char *msg)
{
    if (peek(ps) != c)
        return fail(ps, msg);
    ps->p++;
    return 0;
}

/* ------------------------------------------------------------------ JSON strings */

static inline int
hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int
hex4(const unsigned char *p, const unsigned char *e, unsigned *out)
{
    if (e - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = (v << 4) | (unsigned)h;
    }
    *out = v;
    return 0;
}

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/*
 * ps->p is at an opening quote. Checks the string (control characters, escapes, UTF-8,
 * surrogate pairs), leaves ps->p after the closing quote, and gives the raw content.
 */
static int
scan_string(Parser *ps, const unsigned char **start, Py_ssize_t *rawlen, int *escaped)
{
    const unsigned char *p = ps->p + 1, *e = ps->end;
    int esc = 0;
    *start = p;
    for (;;) {
        /* eight bytes at a time until one is '"', '\\', a control character or non-ASCII */
        while (e - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            uint64_t q = w ^ (ONES * '"'), bs = w ^ (ONES * '\\');
            uint64_t hit = (((q - ONES) & ~q) | ((bs - ONES) & ~bs) | ((w - ONES * 0x20) & ~w) | w) & HIGHS;
            if (hit) {
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                p += __builtin_ctzll(hit) >> 3; /* the lowest flag is exact; only higher ones can be false */
#endif
                break;
            }
            p += 8;
        }
        if (p >= e) {
            ps->p = e;
            return fail(ps, "unterminated string");
        }
        unsigned c = *p;
        if (c == '"') {
            *rawlen = p - *start;
            *escaped = esc;
            ps->p = p + 1;
            return 0;
        }
        if (c == '\\') {
            esc = 1;
            if (p + 1 >= e) {
                ps->p = p;
                return fail(ps, "unterminated string");
            }
            unsigned x = p[1];
            if (x == 'u') {
                unsigned u;
                if (hex4(p + 2, e, &u) < 0) {
                    ps->p = p;
                    return fail(ps, "invalid \\u escape");
                }
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (e - p < 12 || p[6] != '\\' || p[7] != 'u' || hex4(p + 8, e, &lo) < 0 || lo < 0xDC00 ||
                        lo > 0xDFFF) {
                        ps->p = p;
                        return fail(ps, "lone surrogate in \\u escape");
                    }
                    p += 12;
                }
                else if (u >= 0xDC00 && u <= 0xDFFF) {
                    ps->p = p;
                    return fail(ps, "lone surrogate in \\u escape");
                }
                else {
                    p += 6;
                }
            }
            else if (x == '"' || x == '\\' || x == '/' || x == 'b' || x == 'f' || x == 'n' || x == 'r' || x == 't') {
                p += 2;
            }
            else {
                ps->p = p;
                return fail(ps, "invalid escape in string");
            }
            continue;
        }
        if (c < 0x20) {
            ps->p = p;
            return fail(ps, "control character in string");
        }
        if (c < 0x80) {
            p++;
            continue;
        }
        /* UTF-8: reject overlongs, surrogates and code points above U+10FFFF */
        Py_ssize_t left = e - p;
        int ok = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            ok = left >= 2 && (p[1] & 0xC0) == 0x80;
            if (ok)
                p += 2;
        }
        else if (c >= 0xE0 && c <= 0xEF) {
            unsigned lo = 0x80, hi = 0xBF;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
            ok = left >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80;
            if (ok)
                p += 3;
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            unsigned lo = 0x80, hi = 0xBF;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
            ok = left >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 && (p[3] & 0xC0) == 0x80;
            if (ok)
                p += 4;
        }
        if (!ok) {
            ps->p = p;
            return fail(ps, "invalid UTF-8 in string");
        }
    }
}

static inline void
put_utf8(Buf *b, unsigned cp)
{
    unsigned char *o = b->d + b->len;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        b->len += 1;
    }
    else if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        b->len += 2;
    }
    else if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        b->len += 3;
    }
    else {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        b->len += 4;
    }
}

/* Decode checked string content (scan_string passed it) into b; never longer than raw. */
static int
unescape(const unsigned char *s, Py_ssize_t n, Buf *b)
{
    RESERVE(b, n);
    const unsigned char *e = s + n;
    while (s < e) {
        const unsigned char *bs = memchr(s, '\\', (size_t)(e - s));
        const unsigned char *stop = bs ? bs : e;
        memcpy(b->d + b->len, s, (size_t)(stop - s));
        b->len += stop - s;
        if (!bs)
            break;
        unsigned char x = bs[1];
        s = bs + 2;
        switch (x) {
        case 'b': b->d[b->len++] = '\b'; break;
        case 'f': b->d[b->len++] = '\f'; break;
        case 'n': b->d[b->len++] = '\n'; break;
        case 'r': b->d[b->len++] = '\r'; break;
        case 't': b->d[b->len++] = '\t'; break;
        case 'u': {
            unsigned u, lo;
            hex4(s, e, &u);
            s += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                hex4(s + 2, e, &lo);
                s += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(b, u);
            break;
        }
        default: b->d[b->len++] = x; break; /* " \ / */
        }
    }
    return 0;
}

/* The string at ps->p, decoded: a pointer into the input or into t->scratch. */
static int
read_string(Parser *ps, const unsigned char **s, Py_ssize_t *n)
{
    if (peek(ps) != '"')
        return fail(ps, "expected a string");
    int esc;
    if (scan_string(ps, s, n, &esc) < 0)
        return -1;
    if (esc) {
        Buf *sc = &ps->t->scratch;
        sc->len = 0;
        if (unescape(*s, *n, sc) < 0)
            return -1;
        *s = sc->d;
        *n = sc->len;
    }
    return 0;
}

/* The string at ps->p as a new str. */
static PyObject *
read_pystring(Parser *ps)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (read_string(ps, &s, &n) < 0)
        return NULL;
    return PyUnicode_DecodeUTF8((const char *)s, n, NULL);
}

/* Avro string (length, UTF-8) of the JSON string at ps->p; *at gives where its bytes are. */
static int
put_json_string(Parser *ps, Buf *out, Py_ssize_t *at, Py_ssize_t *len)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (read_string(ps, &s, &n) < 0)
        return -1;
    RESERVE(out, n + 10);
    put_varint(out, zigzag(n));
    memcpy(out->d + out->len, s, (size_t)n);
    if (at)
        *at = out->len;
    if (len)
        *len = n;
    out->len += n;
    return 0;
}

static const signed char B64[256] = {
    ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,  ['H'] = 8,
    ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['/'] = 64,
}; /* value + 1; 0 = not in the alphabet */

/* Avro bytes of canonical base64 text (length a multiple of 4, at most two '=' at the end). */
static int
put_base64(Parser *ps, Buf *out, const unsigned char *s, Py_ssize_t n)
{
    if (n % 4)
        return fail(ps, "binary value is not canonical base64 (length not a multiple of 4)");
    int pads = 0;
    if (n && s[n - 1] == '=')
        pads = (s[n - 2] == '=') ? 2 : 1;
    Py_ssize_t outlen = n / 4 * 3 - pads;
    RESERVE(out, outlen + 10);
    put_varint(out, zigzag(outlen));
    unsigned char *o = out->d + out->len;
    Py_ssize_t data = n - pads;
    Py_ssize_t i = 0;
    for (; i + 4 <= data; i += 4) {
        int a = B64[s[i]], b = B64[s[i + 1]], c = B64[s[i + 2]], d = B64[s[i + 3]];
        if (!a || !b || !c || !d)
            return fail(ps, "binary value is not base64");
        uint32_t v = ((uint32_t)(a - 1) << 18) | ((uint32_t)(b - 1) << 12) | ((uint32_t)(c - 1) << 6) | (uint32_t)(d - 1);
        *o++ = (unsigned char)(v >> 16);
        *o++ = (unsigned char)(v >> 8);
        *o++ = (unsigned char)v;
    }
    if (pads) {
        int a = B64[s[i]], b = B64[s[i + 1]];
        if (!a || !b)
            return fail(ps, "binary value is not base64");
        *o++ = (unsigned char)(((a - 1) << 2) | ((b - 1) >> 4));
        if (pads == 1) {
            int c = B64[s[i + 2]];
            if (!c)
                return fail(ps, "binary value is not base64");
            *o++ = (unsigned char)((((b - 1) & 0xF) << 4) | ((c - 1) >> 2));
        }
    }
    out->len += outlen;
    return 0;
}

static int
put_json_base64(Parser *ps, Buf *out)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (read_string(ps, &s, &n) < 0)
        return -1;
    return put_base64(ps, out, s, n);
}

/* ------------------------------------------------------------------ other JSON values */

static int
literal(Parser *ps, int *value)
{
    const unsigned char *p = ps->p;
    Py_ssize_t left = ps->end - p;
    if (left >= 4 && memcmp(p, "true", 4) == 0) {
        *value = 1;
        ps->p += 4;
        return 0;
    }
    if (left >= 5 && memcmp(p, "false", 5) == 0) {
        *value = 0;
        ps->p += 5;
        return 0;
    }
    if (left >= 4 && memcmp(p, "null", 4) == 0) {
        *value = -1;
        ps->p += 4;
        return 0;
    }
    return fail(ps, "invalid literal");
}

/* At 'n': the literal null; true or false fail with `what` (safe with the GIL released, unlike
 * expect_null, which asks PyErr_Occurred). */
static int
null_literal(Parser *ps, const char *what)
{
    int v;
    if (literal(ps, &v) < 0)
        return -1;
    return v == -1 ? 0 : fail(ps, what);
}

/* The literal null at ps->p; anything else fails with `what`. */
static int
expect_null(Parser *ps, const char *what)
{
    int v;
    if (peek(ps) == 'n' && literal(ps, &v) == 0 && v == -1)
        return 0;
    return PyErr_Occurred() ? -1 : fail(ps, what);
}

/* A JSON string (a new str in *out) or null (*out left NULL); anything else fails with `what`. */
static int
string_or_null(Parser *ps, PyObject **out, const char *what)
{
    Py_CLEAR(*out);
    if (peek(ps) == '"')
        return (*out = read_pystring(ps)) == NULL ? -1 : 0;
    return expect_null(ps, what);
}

/* PyOS_string_to_double of n bytes of number text (it wants a NUL-terminated copy): -1.0
 * with an exception set when it fails, as PyOS_string_to_double. Needs the GIL. */
static double
text_to_double(const unsigned char *s, Py_ssize_t n)
{
    char small[80];
    char *text = n < (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n + 1);
    if (text == NULL) {
        PyErr_NoMemory();
        return -1.0;
    }
    memcpy(text, s, (size_t)n);
    text[n] = '\0';
    double v = PyOS_string_to_double(text, NULL, NULL);
    if (text != small)
        PyMem_Free(text);
    return v;
}

/* A JSON number at ps->p (grammar checked); *d gets its value when d is not NULL. */
static int
number(Parser *ps, double *d)
{
    const unsigned char *p = ps->p, *e = ps->end, *start = p;
    int exp = 0;
    if (p < e && *p == '-')
        p++;
    if (p < e && *p == '0')
        p++;
    else if (p < e && *p >= '1' && *p <= '9')
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    else
        return fail(ps, "invalid number");
    if (p < e && *p == '.') {
        p++;
        if (!(p < e && *p >= '0' && *p <= '9'))
            return fail(ps, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        exp = 1;
        p++;
        if (p < e && (*p == '+' || *p == '-'))
            p++;
        if (!(p < e && *p >= '0' && *p <= '9'))
            return fail(ps, "invalid number");
        while (p < e && *p >= '0' && *p <= '9')
            p++;
    }
    Py_ssize_t n = p - start;
    if (d != NULL || exp || n > 300) {
        /* orjson refuses numbers that overflow a double; we need the value anyway */
        if (nogil)
            return -1; /* parsing a double needs the GIL: run again with it */
        double v = text_to_double(start, n);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        if (isinf(v))
            return fail(ps, "number is infinity when parsed as double");
        if (d)
            *d = v;
    }
    ps->p = p;
    return 0;
}

/* After a member or element: 1 = another follows, 0 = the container closed. */
static int
next_or_close(Parser *ps, unsigned char close)
{
    int c = peek(ps);
    if (c == ',') {
        ps->p++;
        return 1;
    }
    if (c == close) {
        ps->p++;
        return 0;
    }
    return fail(ps, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
}

static int skip_value(Parser *ps);

static int
skip_container(Parser *ps, unsigned char close, int object)
{
    if (++ps->depth > MAX_JSON_DEPTH)
        return fail(ps, "JSON nested too deeply");
    ps->p++;
    if (peek(ps) == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        if (object) {
            const unsigned char *s;
            Py_ssize_t n;
            int esc;
            if (peek(ps) != '"')
                return fail(ps, "expected a member name");
            if (scan_string(ps, &s, &n, &esc) < 0 || expect(ps, ':', "expected ':'") < 0)
                return -1;
        }
        if (skip_value(ps) < 0)
            return -1;
        int more = next_or_close(ps, close);
        if (more < 0)
            return -1;
        if (!more)
            break;
    }
    ps->depth--;
    return 0;
}

static int
skip_value(Parser *ps)
{
    int c = peek(ps);
    if (c == '"') {
        const unsigned char *s;
        Py_ssize_t n;
        int esc;
        return scan_string(ps, &s, &n, &esc);
    }
    if (c == '{')
        return skip_container(ps, '}', 1);
    if (c == '[')
        return skip_container(ps, ']', 0);
    if (c == 't' || c == 'f' || c == 'n') {
        int v;
        return literal(ps, &v);
    }
    if (c == '-' || (c >= '0' && c <= '9'))
        return number(ps, NULL);
    return fail(ps, "expected a JSON value");
}

/* Member name of an object; ps->p at '"'. Leaves ps->p after the ':'. */
static int
member_name(Parser *ps, const unsigned char **s, Py_ssize_t *n)
{
    if (peek(ps) != '"')
        return fail(ps, "expected a member name");
    if (read_string(ps, s, n) < 0)
        return -1;
    return expect(ps, ':', "expected ':'");
}

#define NAME_IS(s, n, lit) ((n) == (Py_ssize_t)(sizeof(lit) - 1) && memcmp((s), (lit), sizeof(lit) - 1) == 0)

/* ------------------------------------------------------------------ attribute values */

enum { T_S, T_N, T_B, T_BOOL, T_NULL, T_M, T_L, T_SS, T_NS, T_BS };

static int
type_index(const unsigned char *s, Py_ssize_t n)
{
    switch (n) {
    case 1:
        return s[0] == 'S' ? T_S : s[0] == 'N' ? T_N : s[0] == 'B' ? T_B : s[0] == 'M' ? T_M : s[0] == 'L' ? T_L : -1;
    case 2:
        if (s[1] != 'S')
            return -1;
        return s[0] == 'S' ? T_SS : s[0] == 'N' ? T_NS : s[0] == 'B' ? T_BS : -1;
    case 4:
        return memcmp(s, "BOOL", 4) == 0 ? T_BOOL : memcmp(s, "NULL", 4) == 0 ? T_NULL : -1;
    }
    return -1;
}

static int put_item(Parser *ps, Buf *out, int depth);

/* Array whose block count is not known until its end: reserve one byte, fix it after. */
static int
put_array(Parser *ps, Buf *out, int kind, int depth)
{
    if (peek(ps) != '[')
        return fail(ps, "expected an array");
    ps->p++;
    if (peek(ps) == ']') {
        ps->p++;
        RESERVE(out, 1);
        out->d[out->len++] = 0;
        return 0;
    }
    RESERVE(out, 1);
    Py_ssize_t at = out->len++;
    Py_ssize_t count = 0;
    int more;
    do {
        int r;
        if (kind == T_L)
            r = put_item(ps, out, -depth); /* negative: one attribute value, not a map */
        else if (kind == T_BS)
            r = put_json_base64(ps, out);
        else
            r = put_json_string(ps, out, NULL, NULL);
        if (r < 0)
            return -1;
        count++;
    } while ((more = next_or_close(ps, ']')) == 1);
    if (more < 0 || finish_count(out, at, count) < 0)
        return -1;
    RESERVE(out, 1);
    out->d[out->len++] = 0;
    return 0;
}

static int
put_attribute(Parser *ps, Buf *out, int depth)
{
    if (depth > MAX_AV_DEPTH)
        return fail(ps, "attributes nested too deeply");
    if (peek(ps) != '{')
        return fail(ps, "attribute value must be an object");
    ps->p++;
    if (peek(ps) == '}')
        return fail(ps, "attribute value must have exactly one type, got none");
    const unsigned char *s, *p = ps->p;
    Py_ssize_t n;
    int t = -1;
    /* fast path: a plain "S", "SS" or "BOOL" followed directly by ':' */
    if (ps->end - p >= 7 && p[0] == '"') {
        n = p[2] == '"' ? 1 : p[3] == '"' ? 2 : p[5] == '"' ? 4 : 0;
        if (n && p[n + 2] == ':' && (t = type_index(p + 1, n)) >= 0)
            ps->p = p + n + 3;
    }
    if (t < 0) {
        if (member_name(ps, &s, &n) < 0)
            return -1;
        t = type_index(s, n);
        if (t < 0)
            return fail(ps, "unknown DynamoDB attribute type");
    }
    RESERVE(out, 10);
    memset(out->d + out->len, 0, (size_t)t);
    out->len += t;
    out->d[out->len++] = 2;
    int c;
    switch (t) {
    case T_S:
    case T_N:
        if (put_json_string(ps, out, NULL, NULL) < 0)
            return -1;
        break;
    case T_B:
        if (put_json_base64(ps, out) < 0)
            return -1;
        break;
    case T_BOOL:
    case T_NULL: {
        int v;
        c = peek(ps);
        if ((c != 't' && c != 'f') || literal(ps, &v) < 0)
            return fail(ps, "BOOL and NULL take true or false");
        RESERVE(out, 1);
        out->d[out->len++] = (unsigned char)v;
        break;
    }
    case T_M:
        if (put_item(ps, out, depth + 1) < 0)
            return -1;
        break;
    case T_L:
        if (put_array(ps, out, T_L, depth + 1) < 0)
            return -1;
        break;
    default: /* SS NS BS */
        if (put_array(ps, out, t, depth) < 0)
            return -1;
    }
    RESERVE(out, 10);
    memset(out->d + out->len, 0, (size_t)(9 - t));
    out->len += 9 - t;
    if (peek(ps) != '}')
        return fail(ps, "attribute value must have exactly one type");
    ps->p++;
    return 0;
}

static int
span_cmp(const void *a, const void *b, void *base)
{
    const Span *x = a, *y = b;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    return memcmp((unsigned char *)base + x->off, (unsigned char *)base + y->off, (size_t)x->len);
}

/* qsort without a context argument: the buffer being checked, set just before sorting. */
static _Thread_local const unsigned char *sort_base;
static int
span_cmp_global(const void *a, const void *b)
{
    return span_cmp(a, b, (void *)sort_base);
}

static int
check_unique(Parser *ps, Buf *out, Span *names, Py_ssize_t n)
{
    if (n <= 16) {
        for (Py_ssize_t i = 1; i < n; i++)
            for (Py_ssize_t j = 0; j < i; j++)
                if (names[i].len == names[j].len &&
                    memcmp(out->d + names[i].off, out->d + names[j].off, (size_t)names[i].len) == 0)
                    return fail(ps, "attribute name repeated in one map");
        return 0;
    }
    sort_base = out->d;
    qsort(names, (size_t)n, sizeof(Span), span_cmp_global);
    for (Py_ssize_t i = 1; i < n; i++)
        if (span_cmp(&names[i - 1], &names[i], out->d) == 0)
            return fail(ps, "attribute name repeated in one map");
    return 0;
}

/* An array grown by PyMem_RawRealloc, full at *cap: the larger array (*cap updated), or NULL
 * (a MemoryError only with the GIL held; the old array is kept). */
static void *
grow_raw(void *arr, Py_ssize_t *cap, size_t size, Py_ssize_t first)
{
    Py_ssize_t c = *cap ? *cap * 2 : first;
    void *grown = PyMem_RawRealloc(arr, (size_t)c * size);
    if (grown == NULL) {
        if (!nogil)
            PyErr_NoMemory();
        return NULL;
    }
    *cap = c;
    return grown;
}

/* Room for arr[n] (arr holds cap), or return -1 from the caller (as RESERVE). */
#define ROOM_FOR_ONE(arr, n, cap, first)                                     \
    do {                                                                     \
        if ((n) == (cap)) {                                                  \
            void *grown_ = grow_raw((arr), &(cap), sizeof *(arr), (first));  \
            if (grown_ == NULL)                                              \
                return -1;                                                   \
            (arr) = grown_;                                                  \
        }                                                                    \
    } while (0)

/*
 * A JSON object of name -> attribute value at ps->p, written as Avro map<AttributeValue> (an
 * image or item at depth 1, an M below). With kf: keyat[i] gets where the attribute named as
 * key field i (only of type only_t, unless 0) starts in out, as written before the map's count
 * was finished, and *shift how far finishing it moved what followed the count.
 */
static int
put_map(Parser *ps, Buf *out, int depth, const KeyField *kf, Py_ssize_t nkf, char only_t, Py_ssize_t *keyat,
        Py_ssize_t *shift)
{
    if (kf != NULL)
        *shift = 0;
    if (peek(ps) != '{')
        return fail(ps, "item must be an object");
    ps->p++;
    if (peek(ps) == '}') {
        ps->p++;
        RESERVE(out, 1);
        out->d[out->len++] = 0;
        return 0;
    }
    Transcoder *t = ps->t;
    RESERVE(out, 1);
    Py_ssize_t at = out->len++;
    Py_ssize_t base = t->nnames, count = 0;
    int more;
    do {
        Span sp;
        if (peek(ps) != '"')
            return fail(ps, "expected an attribute name");
        if (put_json_string(ps, out, &sp.off, &sp.len) < 0 || expect(ps, ':', "expected ':'") < 0)
            return -1;
        ROOM_FOR_ONE(t->names, t->nnames, t->capnames, 64);
        t->names[t->nnames++] = sp;
        if (kf != NULL) {
            for (Py_ssize_t i = 0; i < nkf; i++)
                if ((only_t == 0 || kf[i].t == only_t) && kf[i].ulen == sp.len &&
                    memcmp(kf[i].utf8, out->d + sp.off, (size_t)sp.len) == 0)
                    keyat[i] = out->len;
        }
        if (put_attribute(ps, out, depth) < 0)
            return -1;
        count++;
    } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0)
        return -1;
    int r = check_unique(ps, out, t->names + base, count);
    t->nnames = base;
    Py_ssize_t before = out->len;
    if (r < 0 || finish_count(out, at, count) < 0)
        return -1;
    if (kf != NULL)
        *shift = out->len - before; /* a count over one byte moved what followed it */
    RESERVE(out, 1);
    out->d[out->len++] = 0;
    return 0;
}

/*
 * depth > 0: a JSON object of name -> attribute value, written as Avro map<AttributeValue>.
 * depth < 0: one attribute value at depth -depth (an element of L).
 */
static int
put_item(Parser *ps, Buf *out, int depth)
{
    if (depth < 0)
        return put_attribute(ps, out, -depth);
    Transcoder *t = ps->t;
    if (depth != 1 || !t->binary_keys)
        return put_map(ps, out, depth, NULL, 0, 0, NULL, NULL);
    /* an image of a table with a binary key: where its own binary key attributes are */
    Py_ssize_t keyat[MAX_KEY_FIELDS], shift;
    for (Py_ssize_t i = 0; i < t->nkf; i++)
        keyat[i] = -1;
    if (put_map(ps, out, 1, t->kf, t->nkf, 'B', keyat, &shift) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < t->nkf; i++)
        if (keyat[i] >= 0)
            t->img_key_at[out == &t->after][i] = keyat[i]; /* as written (shift not applied) */
    return 0;
}

/* ------------------------------------------------------------------ typed images
 *
 * value: {shape: typed}: an image written as the typed Avro record of a field plan
 * (TypedPlan, compiled from connectors/dynamodb/typed/plan.py's spec) straight from the JSON,
 * with the bytes of the Python writer (connectors/dynamodb/typed/encode.py). Attributes come
 * in any order: in the plan's order (the usual case) each value is written straight out;
 * otherwise each record's field values go to its depth's level buffer, their spans kept, and
 * are copied out in the plan's order; missing ones are null (or the declared default). Only
 * what is plainly in the plan is written: anything else (an attribute with no
 * field, a value no branch takes, NULL false, a name twice, an unusual number text) returns
 * 0, "not taken", and the record goes to the Python writer, which grows the schema or applies
 * the conflict policy. Invalid JSON still fails the page (-1, ValueError), as in the envelope.
 */

enum { P_STRING, P_BOOL, P_BYTES, P_LONG, P_DOUBLE, P_DEC, P_ARR, P_REC };

typedef struct {
    PNode **v;
    int n;
} PBranches;
typedef struct {
    char *name; /* the attribute's UTF-8 */
    Py_ssize_t nlen;
    int nullable;
    PBranches types;
    char *dflt; /* a non-null field's default body, or NULL */
    Py_ssize_t dlen;
} PField;
struct PNode {
    int kind, precision, scale;
    PBranches items; /* P_ARR */
    PField *fields;  /* P_REC */
    int nfields;
};

typedef struct {
    PyObject_HEAD
    PNode *root;
    int after; /* image: after */
} TypedPlan;

static PyTypeObject TypedPlanType;

/* Plain number text: [-]digits[.digits][(e|E)[+-]digits] -> sign, significant digits (no
 * leading zeros), exponent of the last digit; 0 for anything else (the Python writer decides). */
typedef struct {
    int neg;
    char d[64];
    int nd;
    long exp;
} Num;

static int
parse_num(const unsigned char *s, Py_ssize_t n, Num *x)
{
    Py_ssize_t i = 0;
    x->neg = 0;
    x->nd = 0;
    x->exp = 0;
    if (i < n && s[i] == '-') {
        x->neg = 1;
        i++;
    }
    int any = 0, frac = 0;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        any = 1;
        if (x->nd == 0 && s[i] == '0')
            continue;
        if (x->nd >= 60)
            return 0;
        x->d[x->nd++] = (char)s[i];
    }
    if (i < n && s[i] == '.') {
        i++;
        int fd = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            fd = 1;
            frac++;
            if (x->nd == 0 && s[i] == '0')
                continue;
            if (x->nd >= 60)
                return 0;
            x->d[x->nd++] = (char)s[i];
        }
        if (!fd)
            return 0;
    }
    if (!any)
        return 0;
    x->exp = -frac;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0, ed = 0;
        long e = 0;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            eneg = s[i] == '-';
            i++;
        }
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            ed = 1;
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
        }
        if (!ed)
            return 0;
        x->exp += eneg ? -e : e;
    }
    return i == n;
}

/* value == digits * 10^exp with no trailing zeros (zero: nd 0, exp 0, not negative) */
static void
num_norm(Num *x)
{
    while (x->nd && x->d[x->nd - 1] == '0') {
        x->nd--;
        x->exp++;
    }
    if (!x->nd) {
        x->exp = 0;
        x->neg = 0;
    }
}

/* The unscaled value at `scale` when it has at most `prec` digits and drops none (x normalised). */
static int
num_unscaled(const Num *x, int scale, int prec, __int128 *out)
{
    long shift = x->exp + scale;
    if (shift < 0 || x->nd + shift > prec)
        return 0;
    __int128 u = 0;
    for (int i = 0; i < x->nd; i++)
        u = u * 10 + (x->d[i] - '0');
    for (long i = 0; i < shift; i++)
        u *= 10;
    *out = x->neg ? -u : u;
    return 1;
}

static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double of number text s (grammar checked by parse_num) when its shortest repr is the same
 * number (Python: Decimal(repr(float(d))) == d): 1 and *f, 0 when not, -1 on error. */
static int
num_double(const unsigned char *s, Py_ssize_t n, int neg, const Num *x, double *f)
{
    /* at most 15 significant digits always come back from the double (DBL_DIG), so the
     * shortest repr is the same number; with |exp| <= 22 one IEEE operation on two exact
     * values is the correctly rounded double (Clinger's fast path) */
    if (x->nd <= 15 && x->exp >= -22 && x->exp <= 22) {
        int64_t dv = 0;
        for (int i = 0; i < x->nd; i++)
            dv = dv * 10 + (x->d[i] - '0');
        double v = (double)dv;
        v = x->exp >= 0 ? v * POW10[x->exp] : v / POW10[-x->exp];
        *f = neg ? -v : v;
        return 1;
    }
    if (nogil)
        return -1; /* parsing a double needs the GIL: run again with it */
    double v = text_to_double(s, n);
    if (v == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_MemoryError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    if (isinf(v) || isnan(v))
        return 0;
    char *r = PyOS_double_to_string(v, 'r', 0, 0, NULL);
    if (r == NULL)
        return -1;
    Num y;
    int ok = parse_num((const unsigned char *)r, (Py_ssize_t)strlen(r), &y);
    PyMem_Free(r);
    if (!ok)
        return 0;
    num_norm(&y);
    if (!(x->neg == y.neg && x->nd == y.nd && x->exp == y.exp && memcmp(x->d, y.d, (size_t)x->nd) == 0))
        return 0;
    *f = v;
    return 1;
}

/* A decimal's unscaled value: two's complement, big-endian, in the fewest bytes (Java's
 * BigInteger.toByteArray). */
static int
put_decimal(Buf *out, __int128 u)
{
    unsigned __int128 a = u < 0 ? (unsigned __int128)(-u) : (unsigned __int128)u; /* bit_length(|u|) */
    uint64_t hi = (uint64_t)(a >> 64), lo = (uint64_t)a;
    int bits = hi ? 128 - __builtin_clzll(hi) : lo ? 64 - __builtin_clzll(lo) : 0;
    int nb = (bits + 8) / 8;
    RESERVE(out, nb + 10);
    put_varint(out, zigzag(nb));
    unsigned __int128 v = (unsigned __int128)u;
    for (int i = nb - 1; i >= 0; i--) {
        out->d[out->len + i] = (unsigned char)(v & 0xFF);
        v >>= 8;
    }
    out->len += nb;
    return 1;
}

static int
put_double(Buf *out, double f)
{
    RESERVE(out, 8);
    memcpy(out->d + out->len, &f, 8); /* little-endian hosts (x86-64, arm64) */
    out->len += 8;
    return 1;
}

/* Number text as branch t (long, double or decimal): 1 written, 0 does not fit, -1 error. */
static int
tw_number(Buf *out, const PNode *t, const unsigned char *s, Py_ssize_t n, int neg, const Num *x)
{
    __int128 u;
    if (t->kind == P_LONG) {
        if (!num_unscaled(x, 0, 19, &u) || u < (__int128)INT64_MIN || u > (__int128)INT64_MAX)
            return 0;
        RESERVE(out, 10);
        put_varint(out, zigzag((int64_t)u));
        return 1;
    }
    if (t->kind == P_DEC)
        return num_unscaled(x, t->scale, t->precision, &u) ? put_decimal(out, u) : 0;
    double f;
    int r = num_double(s, n, neg, x, &f);
    return r <= 0 ? r : put_double(out, f);
}

/* The common number: plain text (-?digits[.digits], no exponent) of at most 18 digits, read in
 * one pass. m: its digits without trailing zeros (0: zero), nd: how many, exp: the power of ten
 * of m's last digit. */
typedef struct {
    int neg, nd, exp;
    uint64_t m;
} Small;

static int
small_num(const unsigned char *s, Py_ssize_t n, Small *x)
{
    Py_ssize_t i = 0;
    int digits = 0, frac = 0;
    uint64_t m = 0;
    x->neg = 0;
    if (i < n && s[i] == '-') {
        x->neg = 1;
        i++;
    }
    for (; i < n && s[i] >= '0' && s[i] <= '9' && digits <= 18; i++, digits++)
        m = m * 10 + (uint64_t)(s[i] - '0');
    if (!digits)
        return 0;
    if (i < n && s[i] == '.') {
        i++;
        for (; i < n && s[i] >= '0' && s[i] <= '9' && digits <= 18; i++, digits++, frac++)
            m = m * 10 + (uint64_t)(s[i] - '0');
        if (!frac)
            return 0;
    }
    if (i != n || digits > 18)
        return 0;
    x->exp = m ? -frac : 0;
    x->nd = 0;
    if (m)
        while (m % 10 == 0) {
            m /= 10;
            x->exp++;
        }
    x->m = m;
    for (uint64_t t = m; t; t /= 10)
        x->nd++;
    return 1;
}

static const uint64_t UPOW10[] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
                                  100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
                                  1000000000000ULL, 10000000000000ULL, 100000000000000ULL,
                                  1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
                                  1000000000000000000ULL};

/* tw_number for a Small: 1 written, 0 does not fit, 2 not sure (a double beyond the fast
 * path): tw_number decides. */
static int
tw_small(Buf *out, const PNode *t, const Small *x)
{
    if (t->kind == P_LONG) {
        if (x->exp < 0)
            return 0; /* a fraction */
        int64_t v = (int64_t)(x->m * UPOW10[x->exp]); /* at most 18 digits: fits */
        RESERVE(out, 10);
        put_varint(out, zigzag(x->neg ? -v : v));
        return 1;
    }
    if (t->kind == P_DEC) {
        int shift = x->exp + t->scale;
        if (shift < 0 || (x->m && x->nd + shift > t->precision))
            return 0;
        __int128 u = (__int128)x->m;
        for (int i = 0; i < shift; i++)
            u *= 10;
        return put_decimal(out, x->neg ? -u : u);
    }
    if (x->m == 0)
        return put_double(out, x->neg ? -0.0 : 0.0);
    if (x->nd > 15 || x->exp < -22 || x->exp > 22)
        return 2;
    double v = (double)x->m; /* as num_double's fast path */
    v = x->exp >= 0 ? v * POW10[x->exp] : v / POW10[-x->exp];
    return put_double(out, x->neg ? -v : v);
}

static inline int
buf_grow_to(Buf *b, Py_ssize_t n)
{
    RESERVE(b, n);
    return 0;
}

static int tw_record(Parser *ps, const PNode *t, Buf *out, int depth);
static int tw_position(Parser *ps, const PBranches *bs, int nullable, const PField *f, Buf *out, int depth);

/* A union position's branch index (nullable: after "null"; a single non-null branch has none). */
static inline int
tw_index(Buf *out, int i, int nullable, int nbranches)
{
    if (nullable || nbranches > 1) {
        RESERVE(out, 10);
        put_varint(out, zigzag(nullable ? i + 1 : i));
    }
    return 0;
}

static int tw_array(Parser *ps, const PNode *t, int k, Buf *out, int depth);

/* The value of DynamoDB type k (not NULL) at ps->p, as the first branch of bs that takes it
 * (the Python writer's order: a number tries each numeric branch; S, B, BOOL, M and the lists
 * take the first branch of their kind and stand or fall with it). */
static int
tw_value(Parser *ps, const PBranches *bs, int nullable, int k, Buf *out, int depth)
{
    if (depth > MAX_AV_DEPTH)
        return 0;
    int want = k == T_S ? P_STRING : k == T_B ? P_BYTES : k == T_BOOL ? P_BOOL : k == T_M ? P_REC
             : k == T_N ? -1 : P_ARR;
    if (k == T_N) {
        if (peek(ps) != '"')
            return 0;
        const unsigned char *s;
        Py_ssize_t n;
        if (read_string(ps, &s, &n) < 0)
            return -1;
        Small sm = {0};
        Num x;
        int small = small_num(s, n, &sm), parsed = 0, neg = 0;
        for (int i = 0; i < bs->n; i++) {
            const PNode *b = bs->v[i];
            if (b->kind != P_LONG && b->kind != P_DOUBLE && b->kind != P_DEC)
                continue;
            Py_ssize_t mark = out->len;
            if (tw_index(out, i, nullable, bs->n) < 0)
                return -1;
            int r = small ? tw_small(out, b, &sm) : 2;
            if (r == 2) {
                if (!parsed) {
                    if (!parse_num(s, n, &x))
                        return 0; /* not plain number text: the Python writer decides */
                    neg = x.neg;
                    num_norm(&x);
                    parsed = 1;
                }
                r = tw_number(out, b, s, n, neg, &x);
            }
            if (r != 0)
                return r;
            out->len = mark;
        }
        return 0;
    }
    int i = 0;
    while (i < bs->n && bs->v[i]->kind != want)
        i++;
    if (i == bs->n)
        return 0;
    const PNode *b = bs->v[i];
    if (tw_index(out, i, nullable, bs->n) < 0)
        return -1;
    switch (k) {
    case T_S:
        if (peek(ps) != '"')
            return 0;
        return put_json_string(ps, out, NULL, NULL) < 0 ? -1 : 1;
    case T_B:
        if (peek(ps) != '"')
            return 0;
        return put_json_base64(ps, out) < 0 ? -1 : 1;
    case T_BOOL: {
        int c = peek(ps), v;
        if (c != 't' && c != 'f')
            return 0;
        if (literal(ps, &v) < 0)
            return -1;
        RESERVE(out, 1);
        out->d[out->len++] = (unsigned char)v;
        return 1;
    }
    case T_M:
        return tw_record(ps, b, out, depth + 1);
    default:
        return tw_array(ps, b, k, out, depth + 1);
    }
}

/* L (elements are attribute values), SS/NS/BS (elements are strings) as an Avro array. */
static int
tw_array(Parser *ps, const PNode *t, int k, Buf *out, int depth)
{
    if (peek(ps) != '[')
        return 0;
    ps->p++;
    if (peek(ps) == ']') {
        ps->p++;
        RESERVE(out, 1);
        out->d[out->len++] = 0;
        return 1;
    }
    int elem = k == T_SS ? T_S : k == T_NS ? T_N : k == T_BS ? T_B : -1;
    RESERVE(out, 1);
    Py_ssize_t at = out->len++, count = 0;
    int more;
    do {
        int r = elem < 0 ? tw_position(ps, &t->items, 1, NULL, out, depth) : tw_value(ps, &t->items, 1, elem, out, depth);
        if (r <= 0)
            return r;
        count++;
    } while ((more = next_or_close(ps, ']')) == 1);
    if (more < 0 || finish_count(out, at, count) < 0)
        return -1;
    RESERVE(out, 1);
    out->d[out->len++] = 0;
    return 1;
}

/* One attribute value ({"T": v}) at a position of branches bs; f: a non-null field (its default). */
static int
tw_position(Parser *ps, const PBranches *bs, int nullable, const PField *f, Buf *out, int depth)
{
    if (peek(ps) != '{')
        return 0;
    ps->p++;
    const unsigned char *s, *p;
    Py_ssize_t n;
    int k = -1, r;
    if (peek(ps) != '"')
        return 0;
    p = ps->p;
    /* fast path, as put_attribute's: a plain type name followed directly by ':' */
    if (ps->end - p >= 7) {
        n = p[2] == '"' ? 1 : p[3] == '"' ? 2 : p[5] == '"' ? 4 : 0;
        if (n && p[n + 2] == ':' && (k = type_index(p + 1, n)) >= 0)
            ps->p = p + n + 3;
    }
    if (k < 0) {
        if (member_name(ps, &s, &n) < 0)
            return -1;
        if ((k = type_index(s, n)) < 0)
            return 0;
    }
    if (k == T_NULL) {
        int v, c = peek(ps);
        if (c != 't')
            return 0;
        if (literal(ps, &v) < 0)
            return -1;
        if (nullable) {
            RESERVE(out, 1);
            out->d[out->len++] = 0;
        }
        else if (f != NULL && f->dflt != NULL) {
            RESERVE(out, f->dlen);
            memcpy(out->d + out->len, f->dflt, (size_t)f->dlen);
            out->len += f->dlen;
        }
        else
            return 0;
        r = 1;
    }
    else if ((r = tw_value(ps, bs, nullable, k, out, depth)) <= 0)
        return r;
    if (peek(ps) != '}')
        return 0; /* more than one type: the Python writer says what is wrong */
    ps->p++;
    return 1;
}

/* A field the item does not hold: null, or a non-null field's default; 0: it has none. */
static inline int
tw_absent(const PField *f, Buf *out)
{
    if (f->nullable) {
        RESERVE(out, 1);
        out->d[out->len++] = 0;
        return 1;
    }
    if (f->dflt == NULL)
        return 0;
    RESERVE(out, f->dlen);
    memcpy(out->d + out->len, f->dflt, (size_t)f->dlen);
    out->len += f->dlen;
    return 1;
}

/* Record t with the item's attributes in the plan's order (the usual case: the schema was
 * grown from items like it): each value written straight to out. 2: not in order (or a field
 * missing that has no default, which may come later), for tw_record_spans. */
static int
tw_record_in_order(Parser *ps, const PNode *t, Buf *out, int depth)
{
    ps->p++;
    int nf = t->nfields, next = 0, more = 0, r;
    if (peek(ps) == '}')
        ps->p++;
    else
        do {
            const unsigned char *s;
            Py_ssize_t n;
            if (peek(ps) != '"')
                return 0;
            if (member_name(ps, &s, &n) < 0)
                return -1;
            int i = next;
            while (i < nf && !(t->fields[i].nlen == n && memcmp(t->fields[i].name, s, (size_t)n) == 0))
                i++;
            if (i == nf)
                return 2; /* an earlier field, a name twice, or none: the spans decide */
            for (; next < i; next++)
                if ((r = tw_absent(&t->fields[next], out)) <= 0)
                    return r < 0 ? -1 : 2;
            const PField *f = &t->fields[i];
            if ((r = tw_position(ps, &f->types, f->nullable, f, out, depth)) <= 0)
                return r;
            next = i + 1;
        } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0)
        return -1;
    for (; next < nf; next++)
        if ((r = tw_absent(&t->fields[next], out)) <= 0)
            return r;
    return 1;
}

static int tw_record_spans(Parser *ps, const PNode *t, Buf *out, int depth);

/* An item or M (a JSON object of name -> attribute value) as record t. */
static int
tw_record(Parser *ps, const PNode *t, Buf *out, int depth)
{
    if (depth > MAX_AV_DEPTH || peek(ps) != '{')
        return 0;
    const unsigned char *start = ps->p;
    Py_ssize_t mark = out->len;
    int r = tw_record_in_order(ps, t, out, depth);
    if (r != 2)
        return r;
    ps->p = start;
    out->len = mark;
    return tw_record_spans(ps, t, out, depth);
}

/* Record t with the attributes in any order: values to the depth's level buffer, then copied
 * out in the plan's order. */
static int
tw_record_spans(Parser *ps, const PNode *t, Buf *out, int depth)
{
    ps->p++;
    Transcoder *T = ps->t;
    Py_ssize_t mark = T->levels[depth].len, base = T->nspans, nf = t->nfields;
    while (T->nspans + nf > T->capspans) {
        void *grown = grow_raw(T->spans, &T->capspans, sizeof(TSpan), 64);
        if (grown == NULL)
            return -1;
        T->spans = grown;
    }
    for (Py_ssize_t i = 0; i < nf; i++)
        T->spans[base + i].len = -1;
    T->nspans += nf;
    int r = 0, more = 0;
    Py_ssize_t next = 0;
    if (peek(ps) == '}')
        ps->p++;
    else
        do {
            const unsigned char *s;
            Py_ssize_t n;
            if (peek(ps) != '"') {
                r = 0;
                goto out;
            }
            if (member_name(ps, &s, &n) < 0) {
                r = -1;
                goto out;
            }
            /* the field: looked for from the one after the last (items usually keep an order) */
            Py_ssize_t i = next, tried = 0;
            for (; tried < nf; tried++, i = i + 1 == nf ? 0 : i + 1)
                if (t->fields[i].nlen == n && memcmp(t->fields[i].name, s, (size_t)n) == 0)
                    break;
            if (tried == nf || T->spans[base + i].len >= 0) {
                r = 0; /* no field yet, or a name given twice */
                goto out;
            }
            const PField *f = &t->fields[i];
            Buf *lv = &T->levels[depth];
            Py_ssize_t off = lv->len;
            r = tw_position(ps, &f->types, f->nullable, f, lv, depth);
            if (r <= 0)
                goto out;
            T->spans[base + i].off = off;
            T->spans[base + i].len = T->levels[depth].len - off;
            next = i + 1 == nf ? 0 : i + 1;
        } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0) {
        r = -1;
        goto out;
    }
    Buf *lv = &T->levels[depth];
    for (Py_ssize_t i = 0; i < nf; i++) {
        TSpan sp = T->spans[base + i];
        if (sp.len >= 0) {
            if (buf_grow_to(out, sp.len) < 0) {
                r = -1;
                goto out;
            }
            memcpy(out->d + out->len, lv->d + sp.off, (size_t)sp.len);
            out->len += sp.len;
        }
        else if ((r = tw_absent(&t->fields[i], out)) <= 0)
            goto out;
    }
    r = 1;
out:
    T->levels[depth].len = mark;
    T->nspans = base;
    return r;
}

/* An image in typed mode: 1 written to out, 0 not taken (ps->p after the image either way).
 * One not taken is read again as the envelope reads it, so that a page fails (ValueError) on
 * exactly what fails an envelope page, and the Python twin refuses the same. */
static int
typed_image(Parser *ps, Buf *out)
{
    const unsigned char *start = (ws(ps), ps->p);
    int r = tw_record(ps, ps->t->plan, out, 1);
    if (r != 0)
        return r;
    ps->p = start;
    out->len = 0;
    return put_item(ps, out, 1) < 0 ? -1 : 0;
}

/* ---- plan compilation from the spec plan.py builds */

static void pnode_free(PNode *t);

static void
pbranches_free(PBranches *bs)
{
    for (int i = 0; i < bs->n; i++)
        pnode_free(bs->v[i]);
    PyMem_Free(bs->v);
}

static void
pnode_free(PNode *t)
{
    if (t == NULL)
        return;
    pbranches_free(&t->items);
    for (int i = 0; i < t->nfields; i++) {
        PyMem_Free(t->fields[i].name);
        PyMem_Free(t->fields[i].dflt);
        pbranches_free(&t->fields[i].types);
    }
    PyMem_Free(t->fields);
    PyMem_Free(t);
}

static PNode *pnode_compile(PyObject *spec);

static int
pbranches_compile(PyObject *seq, PBranches *bs)
{
    if (!PyTuple_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, "TypedPlan: branches must be a tuple");
        return -1;
    }
    int n = (int)PyTuple_GET_SIZE(seq);
    bs->v = PyMem_Calloc(n ? (size_t)n : 1, sizeof(PNode *));
    if (bs->v == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if ((bs->v[i] = pnode_compile(PyTuple_GET_ITEM(seq, i))) == NULL)
            return -1;
        bs->n = i + 1;
    }
    return 0;
}

static char *
copy_bytes(const char *s, Py_ssize_t n)
{
    char *d = PyMem_Malloc(n ? (size_t)n : 1);
    if (d == NULL)
        PyErr_NoMemory();
    else
        memcpy(d, s, (size_t)n);
    return d;
}

/* spec: ("string",) ("boolean",) ("bytes",) ("long",) ("double",) ("decimal", p, s)
 *       ("array", branches) ("record", ((attribute, nullable, branches, default bytes | None), ...)) */
static PNode *
pnode_compile(PyObject *spec)
{
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1) {
        PyErr_SetString(PyExc_TypeError, "TypedPlan: bad plan node");
        return NULL;
    }
    const char *kind = PyUnicode_AsUTF8(PyTuple_GET_ITEM(spec, 0));
    if (kind == NULL)
        return NULL;
    PNode *t = PyMem_Calloc(1, sizeof(PNode));
    if (t == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (!strcmp(kind, "string"))
        t->kind = P_STRING;
    else if (!strcmp(kind, "boolean"))
        t->kind = P_BOOL;
    else if (!strcmp(kind, "bytes"))
        t->kind = P_BYTES;
    else if (!strcmp(kind, "long"))
        t->kind = P_LONG;
    else if (!strcmp(kind, "double"))
        t->kind = P_DOUBLE;
    else if (!strcmp(kind, "decimal") && PyTuple_GET_SIZE(spec) == 3) {
        t->kind = P_DEC;
        t->precision = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 1));
        t->scale = (int)PyLong_AsLong(PyTuple_GET_ITEM(spec, 2));
        if (t->precision < 1 || t->precision > 38 || t->scale < 0 || t->scale > 38) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_ValueError, "TypedPlan: decimal precision is 1..38, scale 0..38");
            goto error;
        }
    }
    else if (!strcmp(kind, "array") && PyTuple_GET_SIZE(spec) == 2) {
        t->kind = P_ARR;
        if (pbranches_compile(PyTuple_GET_ITEM(spec, 1), &t->items) < 0)
            goto error;
    }
    else if (!strcmp(kind, "record") && PyTuple_GET_SIZE(spec) == 2 && PyTuple_Check(PyTuple_GET_ITEM(spec, 1))) {
        t->kind = P_REC;
        PyObject *fs = PyTuple_GET_ITEM(spec, 1);
        int nf = (int)PyTuple_GET_SIZE(fs);
        t->fields = PyMem_Calloc(nf ? (size_t)nf : 1, sizeof(PField));
        if (t->fields == NULL) {
            PyErr_NoMemory();
            goto error;
        }
        for (int i = 0; i < nf; i++) {
            PyObject *name, *nullable, *branches, *dflt;
            if (!PyArg_ParseTuple(PyTuple_GET_ITEM(fs, i), "UOO!O:plan field", &name, &nullable, &PyTuple_Type,
                                  &branches, &dflt))
                goto error;
            PField *f = &t->fields[i];
            t->nfields = i + 1;
            const char *u = PyUnicode_AsUTF8AndSize(name, &f->nlen);
            if (u == NULL || (f->name = copy_bytes(u, f->nlen)) == NULL)
                goto error;
            f->nullable = PyObject_IsTrue(nullable);
            if (dflt != Py_None) {
                if (!PyBytes_Check(dflt)) {
                    PyErr_SetString(PyExc_TypeError, "TypedPlan: a default is bytes or None");
                    goto error;
                }
                f->dlen = PyBytes_GET_SIZE(dflt);
                if ((f->dflt = copy_bytes(PyBytes_AS_STRING(dflt), f->dlen)) == NULL)
                    goto error;
            }
            if (pbranches_compile(branches, &f->types) < 0)
                goto error;
        }
    }
    else {
        PyErr_Format(PyExc_ValueError, "TypedPlan: unknown plan node %s", kind);
        goto error;
    }
    return t;
error:
    pnode_free(t);
    return NULL;
}

static int
TypedPlan_init(TypedPlan *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"spec", "after", NULL};
    PyObject *spec;
    int after = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$p:TypedPlan", kwlist, &spec, &after))
        return -1;
    PNode *root = pnode_compile(spec);
    if (root == NULL)
        return -1;
    if (root->kind != P_REC) {
        pnode_free(root);
        PyErr_SetString(PyExc_ValueError, "TypedPlan: the root is a record");
        return -1;
    }
    pnode_free(self->root);
    self->root = root;
    self->after = after;
    return 0;
}

static void
TypedPlan_dealloc(TypedPlan *self)
{
    pnode_free(self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TypedPlanType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors.dynamodb._transcode.TypedPlan",
    .tp_basicsize = sizeof(TypedPlan),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "TypedPlan(spec, *, after=False): a typed record's field plan (connectors/dynamodb/typed/plan.py's\n"
              "spec), for Transcoder.page(body, ts_ms, plan, schema); after: values are the new image alone.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)TypedPlan_init,
    .tp_dealloc = (destructor)TypedPlan_dealloc,
};

/* ------------------------------------------------------------------ one stream record */

/* What one record's JSON gave, besides the images (in t->before/after) and the strings kept
 * in the transcoder's buffers (key values, SequenceNumber, eventID, awsRegion). */
typedef struct {
    PyObject *op;          /* borrowed interned constant */
    int has_dynamodb, has_before, has_after, has_ms, has_keys, has_seq, has_event_id, has_region;
    unsigned keys_seen;    /* bit i: key field i was in Keys */
    int64_t ms;
    int type_lower, type_lower_ok, type_upper_ok; /* userIdentity */
    int principal_lower, principal_lower_ok, principal_upper_ok;
} Rec;

/* The decoded JSON string at ps->p, copied into b (read_string may point into the scratch). */
static int
read_into(Parser *ps, Buf *b)
{
    const unsigned char *s;
    Py_ssize_t n;
    if (read_string(ps, &s, &n) < 0)
        return -1;
    b->len = 0;
    RESERVE(b, n);
    memcpy(b->d, s, (size_t)n);
    b->len = n;
    return 0;
}

/* {"pk": {"S": "x"}, ...}: exactly the table's key attributes, each its declared S, N or B
 * type. Values go to the key fields' buffers; the dict form is built only when asked for
 * (StreamRecord.key). Anything else (another attribute, a name twice) is for the general path. */
static int
parse_keys(Parser *ps, Rec *r)
{
    Transcoder *t = ps->t;
    if (peek(ps) != '{')
        return fail(ps, "dynamodb.Keys must be an object");
    ps->p++;
    r->has_keys = 1;
    r->keys_seen = 0;
    if (peek(ps) == '}') {
        ps->p++;
        return 0;
    }
    int more;
    do {
        const unsigned char *s;
        Py_ssize_t n;
        if (peek(ps) != '"')
            return fail(ps, "expected a key attribute name");
        if (member_name(ps, &s, &n) < 0)
            return -1;
        Py_ssize_t i = 0;
        while (i < t->nkf && !(t->kf[i].ulen == n && memcmp(t->kf[i].utf8, s, (size_t)n) == 0))
            i++;
        if (i == t->nkf)
            return fail(ps, "dynamodb.Keys has an attribute that is not part of the table's key");
        if (r->keys_seen & (1u << i))
            return fail(ps, "key attribute given twice in dynamodb.Keys");
        if (expect(ps, '{', "key attribute value must be an object") < 0 || member_name(ps, &s, &n) < 0)
            return -1;
        if (!(n == 1 && s[0] == t->kf[i].t))
            return fail(ps, "key attribute's type is not the table's");
        if (read_into(ps, &t->kf[i].val) < 0)
            return -1;
        if (peek(ps) != '}')
            return fail(ps, "key attribute value must have exactly one type");
        ps->p++;
        r->keys_seen |= 1u << i;
    } while ((more = next_or_close(ps, '}')) == 1);
    return more;
}

static void
forget_image_keys(Transcoder *t, int which)
{
    for (Py_ssize_t i = 0; i < t->nkf; i++)
        t->img_key_at[which][i] = -1;
}

static int
parse_image(Parser *ps, Buf *out, int *present)
{
    if (ps->t->binary_keys)
        forget_image_keys(ps->t, out == &ps->t->after);
    if (peek(ps) == 'n') {
        if (null_literal(ps, "image must be an object or null") < 0)
            return -1;
        *present = -1; /* seen, null */
        return 0;
    }
    out->len = 0;
    Transcoder *t = ps->t;
    int typed = t->plan != NULL && !(t->plan_after && out == &t->before); /* after: no old image written */
    if (typed && t->binary_keys) {
        Buf *tb = &t->typed_img[out == &t->after];
        tb->len = 0;
        const unsigned char *start = (ws(ps), ps->p);
        int r = tw_record(ps, t->plan, tb, 1);
        if (r < 0)
            return -1;
        if (r == 0)
            t->typed_miss = 1;
        ps->p = start;
        if (put_item(ps, out, 1) < 0) /* the envelope's map too: its checks, and its binary keys */
            return -1;
    }
    else if (typed) {
        int r = typed_image(ps, out);
        if (r < 0)
            return -1;
        if (r == 0)
            t->typed_miss = 1;
    }
    else if (put_item(ps, out, 1) < 0)
        return -1;
    *present = 1;
    return 0;
}

static int
parse_dynamodb(Parser *ps, Rec *r)
{
    Transcoder *t = ps->t;
    if (peek(ps) != '{')
        return fail(ps, "dynamodb must be an object");
    ps->p++;
    ps->depth++;
    /* a member given twice: the last one counts, as in a parsed dict */
    r->has_keys = r->has_seq = 0;
    r->has_before = r->has_after = r->has_ms = 0;
    if (t->binary_keys) {
        forget_image_keys(t, 0);
        forget_image_keys(t, 1);
    }
    if (peek(ps) == '}') {
        ps->p++;
        return fail(ps, "dynamodb.Keys missing");
    }
    int more;
    do {
        const unsigned char *s;
        Py_ssize_t n;
        if (member_name(ps, &s, &n) < 0)
            return -1;
        if (NAME_IS(s, n, "Keys")) {
            ps->depth++;
            if (parse_keys(ps, r) < 0)
                return -1;
            ps->depth--;
        }
        else if (NAME_IS(s, n, "NewImage")) {
            if (parse_image(ps, &t->after, &r->has_after) < 0)
                return -1;
        }
        else if (NAME_IS(s, n, "OldImage")) {
            if (parse_image(ps, &t->before, &r->has_before) < 0)
                return -1;
        }
        else if (NAME_IS(s, n, "SequenceNumber")) {
            if (peek(ps) != '"')
                return fail(ps, "dynamodb.SequenceNumber must be a string");
            if (read_into(ps, &t->seq_text) < 0)
                return -1;
            r->has_seq = 1;
        }
        else if (NAME_IS(s, n, "ApproximateCreationDateTime")) {
            int c = peek(ps);
            if (c == 'n') {
                if (null_literal(ps, "ApproximateCreationDateTime must be a number or null") < 0)
                    return -1;
                r->has_ms = 0;
            }
            else if (c == '-' || (c >= '0' && c <= '9')) {
                double d;
                if (number(ps, &d) < 0)
                    return -1;
                d *= 1000.0;
                if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0))
                    return fail(ps, "ApproximateCreationDateTime out of range");
                r->ms = (int64_t)d; /* truncates toward zero, as int() does */
                r->has_ms = 1;
            }
            else
                return fail(ps, "ApproximateCreationDateTime must be a number or null");
        }
        else if (skip_value(ps) < 0)
            return -1;
    } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0)
        return -1;
    ps->depth--;
    if (!r->has_keys)
        return fail(ps, "dynamodb.Keys missing");
    if (!r->has_seq)
        return fail(ps, "dynamodb.SequenceNumber missing");
    return 0;
}

/* A userIdentity member value: 1 if it is the string `want`, else 0 (any JSON value). */
static int
identity_value(Parser *ps, const char *want)
{
    if (peek(ps) == '"') {
        const unsigned char *s;
        Py_ssize_t n;
        if (read_string(ps, &s, &n) < 0)
            return -1;
        return n == (Py_ssize_t)strlen(want) && memcmp(s, want, (size_t)n) == 0;
    }
    return skip_value(ps) < 0 ? -1 : 0;
}

static int
parse_identity(Parser *ps, Rec *r)
{
    r->type_lower = r->type_lower_ok = r->type_upper_ok = 0;
    r->principal_lower = r->principal_lower_ok = r->principal_upper_ok = 0;
    int c = peek(ps);
    if (c == 'n') {
        if (null_literal(ps, "userIdentity must be an object or null") < 0)
            return -1;
        return 0;
    }
    if (c != '{')
        return fail(ps, "userIdentity must be an object or null");
    ps->p++;
    ps->depth++;
    if (peek(ps) == '}') {
        ps->p++;
        ps->depth--;
        return 0;
    }
    int more;
    do {
        const unsigned char *s;
        Py_ssize_t n;
        int v;
        if (member_name(ps, &s, &n) < 0)
            return -1;
        if (NAME_IS(s, n, "type")) {
            if ((v = identity_value(ps, "Service")) < 0)
                return -1;
            r->type_lower = 1;
            r->type_lower_ok = v;
        }
        else if (NAME_IS(s, n, "Type")) {
            if ((v = identity_value(ps, "Service")) < 0)
                return -1;
            r->type_upper_ok = v;
        }
        else if (NAME_IS(s, n, "principalId")) {
            if ((v = identity_value(ps, "dynamodb.amazonaws.com")) < 0)
                return -1;
            r->principal_lower = 1;
            r->principal_lower_ok = v;
        }
        else if (NAME_IS(s, n, "PrincipalId")) {
            if ((v = identity_value(ps, "dynamodb.amazonaws.com")) < 0)
                return -1;
            r->principal_upper_ok = v;
        }
        else if (skip_value(ps) < 0)
            return -1;
    } while ((more = next_or_close(ps, '}')) == 1);
    ps->depth--;
    return more;
}

/* An Avro ["null", "string"] from a buffer (or null); *at gets where the string's bytes start. */
static int
put_opt_text(Buf *b, const Buf *text, int present, Py_ssize_t *at)
{
    RESERVE(b, text->len + 11);
    if (!present) {
        b->d[b->len++] = 0;
        *at = -1;
        return 0;
    }
    b->d[b->len++] = 2;
    put_varint(b, zigzag(text->len));
    *at = b->len;
    memcpy(b->d + b->len, text->d, (size_t)text->len);
    b->len += text->len;
    return 0;
}

static int
put_buf(Buf *b, const Buf *src)
{
    RESERVE(b, src->len);
    memcpy(b->d + b->len, src->d, (size_t)src->len);
    b->len += src->len;
    return 0;
}

/* Key record body: the table's key attributes in schema order. */
static int
put_key(Parser *ps, Rec *r)
{
    Transcoder *t = ps->t;
    Buf *k = &t->key;
    k->len = 0;
    for (Py_ssize_t i = 0; i < t->nkf; i++) {
        KeyField *f = &t->kf[i];
        if (!(r->keys_seen & (1u << i))) {
            PyErr_Format(PyExc_ValueError, "GetRecords page: key attribute %R of type %U missing in Keys at byte %zd",
                         f->name, f->type, (Py_ssize_t)(ps->p - ps->base));
            return -1;
        }
        if (f->t == 'B') {
            if (put_base64(ps, k, f->val.d, f->val.len) < 0)
                return -1;
        }
        else if (put_avro_string(k, (const char *)f->val.d, f->val.len) < 0)
            return -1;
    }
    return 0;
}

/* Each binary key attribute an image holds as a B must be the one in Keys, byte for byte. They
 * differ only where a source got Keys wrong (moto base64-encodes binary Keys twice): the page
 * is then the general path's, which takes the key from the image. */
static int
check_binary_keys(Parser *ps, Rec *r)
{
    Transcoder *t = ps->t;
    for (int w = 0; w < 2; w++) {
        if ((w ? r->has_after : r->has_before) != 1)
            continue;
        Buf *img = w ? &t->after : &t->before;
        for (Py_ssize_t i = 0; i < t->nkf; i++) {
            Py_ssize_t at = t->img_key_at[w][i];
            if (at < 0 || img->d[at] != 0 || img->d[at + 1] != 0 || img->d[at + 2] != 2)
                continue; /* not there, or not a B (index 2 of AttributeValue's fields) */
            t->scratch.len = 0;
            if (put_base64(ps, &t->scratch, t->kf[i].val.d, t->kf[i].val.len) < 0)
                return -1;
            Py_ssize_t n = t->scratch.len; /* length and bytes, as the image holds them after the prefix */
            if (at + 3 + n > img->len || memcmp(img->d + at + 3, t->scratch.d, (size_t)n) != 0)
                return fail(ps, "binary key attribute in dynamodb.Keys differs from the image's");
        }
    }
    return 0;
}

/* ------------------------------------------------------------------ the records */

/*
 * One stream record with the fields of bridge.task.SourceRecord, read-only. Tens of thousands
 * wait for the broker at once, so a record is one small object holding its two byte strings
 * and objects shared by its page: not tracked by the cyclic collector (it cannot be part of a
 * cycle), and no dicts. `key` and `source` are built when asked for (dead-letter path,
 * snapshot handoff) from the Avro bodies, which hold everything they say.
 *
 * The byte strings start with HEADER bytes left zero for the Confluent header: frame() writes
 * it there, once, so the message is not copied again to be framed. Until then the objects are
 * never handed out (encoded_key/encoded_value return copies of the bodies), so writing into
 * them is invisible; once framed, a different header gets a fresh copy.
 */
typedef struct {
    PyObject_HEAD
    Transcoder *t;   /* topic, table, key fields, the source template */
    PyObject *op;    /* "c" | "u" | "d" */
    PyObject *ts_ms; /* the page's int */
    PyObject *key;   /* bytes: header room + Avro key body */
    PyObject *value; /* bytes: header room + Avro envelope body; a tombstone keeps its delete's */
    PyObject *schema; /* typed: the handle of the plan that wrote it; NULL: the transcoder's */
    PyObject *text;   /* typed, image: after: the source block (the *_at offsets are in it); NULL: value */
    int64_t ms;
    /* where source strings are in value; -1: null (event_id) or the transcoder's (region) */
    int32_t seq_at, seq_len, event_id_at, event_id_len, region_at, region_len;
    char has_ms, ttl, tombstone;
} StreamRecord;

static PyTypeObject StreamRecordType;

static const char B64_ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static PyObject *
base64_text(const unsigned char *s, Py_ssize_t n)
{
    PyObject *out = PyUnicode_New((n + 2) / 3 * 4, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *o = PyUnicode_1BYTE_DATA(out);
    Py_ssize_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = B64_ALPHABET[v >> 18];
        *o++ = B64_ALPHABET[(v >> 12) & 63];
        *o++ = B64_ALPHABET[(v >> 6) & 63];
        *o++ = B64_ALPHABET[v & 63];
    }
    if (n - i == 1) {
        *o++ = B64_ALPHABET[s[i] >> 2];
        *o++ = B64_ALPHABET[(s[i] & 3) << 4];
        *o++ = '=';
        *o++ = '=';
    }
    else if (n - i == 2) {
        *o++ = B64_ALPHABET[s[i] >> 2];
        *o++ = B64_ALPHABET[((s[i] & 3) << 4) | (s[i + 1] >> 4)];
        *o++ = B64_ALPHABET[(s[i + 1] & 15) << 2];
        *o++ = '=';
    }
    return out;
}

/* An Avro string or bytes length at *p (this module wrote it, so it is well formed). */
static Py_ssize_t
read_length(const unsigned char **p, const unsigned char *e)
{
    uint64_t z = 0;
    int shift = 0;
    while (*p < e && shift < 64) {
        unsigned char c = *(*p)++;
        z |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) {
            int64_t n = (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
            if (n >= 0 && n <= e - *p)
                return (Py_ssize_t)n;
            break;
        }
        shift += 7;
    }
    PyErr_SetString(PyExc_ValueError, "StreamRecord: corrupt Avro key");
    return -1;
}

/* An Avro key body (after the header room) in DynamoDB JSON ({"pk": {"S": "x"}}, B as base64
 * text), read with the key fields that wrote it: StreamRecord's and ItemRecord's `key`. */
static PyObject *
key_dict(PyObject *key, const KeyField *kf, Py_ssize_t nkf)
{
    const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(key) + HEADER;
    const unsigned char *e = (const unsigned char *)PyBytes_AS_STRING(key) + PyBytes_GET_SIZE(key);
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < nkf; i++) {
        Py_ssize_t n = read_length(&p, e);
        if (n < 0)
            goto error;
        PyObject *v = kf[i].t == 'B' ? base64_text(p, n) : PyUnicode_DecodeUTF8((const char *)p, n, NULL);
        p += n;
        if (v == NULL)
            goto error;
        PyObject *inner = PyDict_New();
        int rc = inner == NULL ? -1 : PyDict_SetItem(inner, kf[i].type, v);
        Py_DECREF(v);
        if (rc == 0)
            rc = PyDict_SetItem(out, kf[i].name, inner);
        Py_XDECREF(inner);
        if (rc < 0)
            goto error;
    }
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

/* The record's Keys in DynamoDB JSON, from its Avro key. */
static PyObject *
StreamRecord_key(StreamRecord *r, void *closure)
{
    return key_dict(r->key, r->t->kf, r->t->nkf);
}

static int
set_text(PyObject *d, PyObject *name, PyObject *bytes, int32_t at, int32_t len)
{
    PyObject *v = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(bytes) + at, len, NULL);
    int rc = v == NULL ? -1 : PyDict_SetItem(d, name, v);
    Py_XDECREF(v);
    return rc;
}

/* The envelope's source block as a dict (what from_stream_records builds). */
static PyObject *
StreamRecord_source(StreamRecord *r, void *closure)
{
    PyObject *src = PyDict_Copy(r->t->source_template);
    if (src == NULL)
        return NULL;
    PyObject *text = r->text ? r->text : r->value;
    if (set_text(src, S.k_sequence_number, text, r->seq_at, r->seq_len) < 0 ||
        (r->region_at >= 0 && set_text(src, S.k_region, text, r->region_at, r->region_len) < 0) ||
        (r->event_id_at >= 0 && set_text(src, S.k_event_id, text, r->event_id_at, r->event_id_len) < 0) ||
        (r->ttl && PyDict_SetItem(src, S.k_ttl_delete, Py_True) < 0))
        goto error;
    if (r->has_ms) {
        PyObject *ms = PyLong_FromLongLong(r->ms);
        int rc = ms == NULL ? -1 : PyDict_SetItem(src, S.k_approximate_creation_ms, ms);
        Py_XDECREF(ms);
        if (rc < 0)
            goto error;
    }
    return src;
error:
    Py_DECREF(src);
    return NULL;
}

static PyObject *
StreamRecord_topic(StreamRecord *r, void *closure)
{
    return Py_NewRef(r->t->rec_topic ? r->t->rec_topic : Py_None);
}

static PyObject *
StreamRecord_key_fields(StreamRecord *r, void *closure)
{
    PyObject *schema = r->schema ? r->schema : r->t->rec_key_fields;
    return Py_NewRef(schema ? schema : Py_None);
}

/* The connector's own names beside the neutral fields (connectors.dynamodb.envelope.ChangeRecord's). */
static PyObject *
StreamRecord_table(StreamRecord *r, void *closure)
{
    return Py_NewRef(r->t->table);
}

static PyObject *
StreamRecord_op(StreamRecord *r, void *closure)
{
    return Py_NewRef(r->op);
}

static PyObject *
StreamRecord_schema_key_fields(StreamRecord *r, void *closure)
{
    PyObject *schema = r->schema ? r->schema : r->t->rec_key_fields;
    return schema ? PyObject_GetAttrString(schema, "key_fields") : Py_NewRef(Py_None);
}

static PyObject *
StreamRecord_none(StreamRecord *r, void *closure)
{
    Py_RETURN_NONE; /* value: the change exists only in encoded_value */
}

static PyObject *
StreamRecord_ts_ms(StreamRecord *r, void *closure)
{
    return Py_NewRef(r->ts_ms);
}

static PyObject *
StreamRecord_tombstone(StreamRecord *r, void *closure)
{
    return PyBool_FromLong(r->tombstone);
}

static PyObject *
body_copy(PyObject *b)
{
    return PyBytes_FromStringAndSize(PyBytes_AS_STRING(b) + HEADER, PyBytes_GET_SIZE(b) - HEADER);
}

static PyObject *
StreamRecord_encoded_key(StreamRecord *r, void *closure)
{
    return body_copy(r->key);
}

static PyObject *
StreamRecord_encoded_value(StreamRecord *r, void *closure)
{
    return r->tombstone ? Py_NewRef(Py_None) : body_copy(r->value);
}

/* In RECORD_FIELDS order. */
static PyGetSetDef StreamRecord_getset[] = {
    {"topic", (getter)StreamRecord_topic, NULL, NULL, NULL},
    {"schema", (getter)StreamRecord_key_fields, NULL, "the schema handle given as records=(topic, schema)", NULL},
    {"key", (getter)StreamRecord_key, NULL, "the Keys in DynamoDB JSON, built from encoded_key", NULL},
    {"value", (getter)StreamRecord_none, NULL, "None: the change is in encoded_value only", NULL},
    {"position", (getter)StreamRecord_source, NULL, "the envelope's source block, built from the Avro value", NULL},
    {"ts_ms", (getter)StreamRecord_ts_ms, NULL, NULL, NULL},
    {"tombstone", (getter)StreamRecord_tombstone, NULL, NULL, NULL},
    {"encoded_key", (getter)StreamRecord_encoded_key, NULL, "the Avro key body (a copy)", NULL},
    {"encoded_value", (getter)StreamRecord_encoded_value, NULL, "the Avro envelope body (a copy); None: tombstone", NULL},
    /* not fields: ChangeRecord's views */
    {"table", (getter)StreamRecord_table, NULL, NULL, NULL},
    {"key_fields", (getter)StreamRecord_schema_key_fields, NULL, "schema.key_fields", NULL},
    {"op", (getter)StreamRecord_op, NULL, NULL, NULL},
    {"before", (getter)StreamRecord_none, NULL, "None: the old image is in encoded_value only", NULL},
    {"after", (getter)StreamRecord_none, NULL, "None: the new image is in encoded_value only", NULL},
    {"source", (getter)StreamRecord_source, NULL, "position", NULL},
    {NULL},
};

static PyObject *
StreamRecord_repr(StreamRecord *r)
{
    PyObject *seq = PyUnicode_DecodeUTF8(PyBytes_AS_STRING(r->text ? r->text : r->value) + r->seq_at, r->seq_len, NULL);
    if (seq == NULL)
        return NULL;
    PyObject *out = PyUnicode_FromFormat("StreamRecord(topic=%R, table=%R, op=%R, sequence_number=%R%s)",
                                         r->t->rec_topic ? r->t->rec_topic : Py_None, r->t->table, r->op, seq,
                                         r->tombstone ? ", tombstone=True" : "");
    Py_DECREF(seq);
    return out;
}

static void
StreamRecord_dealloc(StreamRecord *r)
{
    Py_DECREF(r->t);
    Py_DECREF(r->op);
    Py_DECREF(r->ts_ms);
    Py_DECREF(r->key);
    Py_DECREF(r->value);
    Py_XDECREF(r->schema);
    Py_XDECREF(r->text);
    PyObject_Free(r);
}

static PyTypeObject StreamRecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors.dynamodb._transcode.StreamRecord",
    .tp_basicsize = sizeof(StreamRecord),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One DynamoDB Streams record, transcoded: bridge.task.SourceRecord's fields, read-only.",
    .tp_dealloc = (destructor)StreamRecord_dealloc,
    .tp_repr = (reprfunc)StreamRecord_repr,
    .tp_getset = StreamRecord_getset,
};

static StreamRecord *
new_stream_record(Transcoder *t, PyObject *op, PyObject *ts_obj, PyObject *key, PyObject *value)
{
    StreamRecord *r = PyObject_New(StreamRecord, &StreamRecordType);
    if (r == NULL)
        return NULL;
    r->t = (Transcoder *)Py_NewRef((PyObject *)t);
    r->op = Py_NewRef(op);
    r->ts_ms = Py_NewRef(ts_obj);
    r->key = Py_NewRef(key);
    r->value = Py_NewRef(value);
    r->schema = Py_XNewRef(t->handle);
    r->text = NULL;
    return r;
}

/* Appends the record (in records mode a StreamRecord, and for a REMOVE its tombstone) to out. */
static int
build_record(Parser *ps, Rec *r, const Buf *ts, PyObject *ts_obj, PyObject *out_list)
{
    Transcoder *t = ps->t;
    if (put_key(ps, r) < 0 || (t->binary_keys && check_binary_keys(ps, r) < 0))
        return -1;
    int ttl = 0;
    if (r->op == S.op_d) {
        int kind = r->type_lower ? r->type_lower_ok : r->type_upper_ok;
        int principal = r->principal_lower ? r->principal_lower_ok : r->principal_upper_ok;
        ttl = kind && principal;
    }
    /* source block */
    Buf *src = &t->src;
    src->len = 0;
    Py_ssize_t seq_at, event_id_at, region_at = -1;
    if (put_buf(src, &t->src_head) < 0)
        return -1;
    if (!r->has_region) {
        if (put_buf(src, &t->src_region) < 0)
            return -1;
    }
    else if (put_opt_text(src, &t->region_text, 1, &region_at) < 0)
        return -1;
    if (put_buf(src, &t->src_tail) < 0 || put_opt_text(src, &t->seq_text, 1, &seq_at) < 0 ||
        put_opt_text(src, &t->event_id_text, r->has_event_id, &event_id_at) < 0)
        return -1;
    if (buf_grow(src, 16) < 0)
        return -1;
    src->d[src->len++] = 0; /* snapshot */
    src->d[src->len++] = 0; /* segment */
    src->d[src->len++] = 0; /* total_segments */
    if (r->has_ms) {
        src->d[src->len++] = 2;
        put_varint(src, zigzag(r->ms));
    }
    else
        src->d[src->len++] = 0;
    src->d[src->len++] = (unsigned char)ttl;

    const Buf *before = t->plan && t->binary_keys ? &t->typed_img[0] : &t->before;
    const Buf *after = t->plan && t->binary_keys ? &t->typed_img[1] : &t->after;
    Py_ssize_t nb = r->has_before == 1 ? before->len : 0, na = r->has_after == 1 ? after->len : 0;
    Py_ssize_t src_at = HEADER + 2 + 1 + nb + 1 + na, total = src_at + src->len + ts->len;
    if (total > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "GetRecords page: record too large");
        return -1;
    }
    PyObject *value, *text = NULL;
    int after_only = t->plan != NULL && t->plan_after;
    if (after_only) {
        /* typed, image: after: the value is the new image alone (a delete is its tombstone
         * only); the source block, which the record's `position` is read from, beside it */
        if ((text = PyBytes_FromStringAndSize((const char *)src->d, src->len)) == NULL)
            return -1;
        src_at = 0;
        if (r->op == S.op_d)
            value = Py_NewRef(text); /* never written: a tombstone's value is null */
        else if ((value = PyBytes_FromStringAndSize(NULL, HEADER + na)) != NULL) {
            memset(PyBytes_AS_STRING(value), 0, HEADER);
            memcpy(PyBytes_AS_STRING(value) + HEADER, after->d, (size_t)na);
        }
        if (value == NULL) {
            Py_DECREF(text);
            return -1;
        }
    }
    else {
        if ((value = PyBytes_FromStringAndSize(NULL, total)) == NULL)
            return -1;
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(value);
        memset(o, 0, HEADER);
        o += HEADER;
        *o++ = 2; /* op: a one-character string */
        *o++ = (unsigned char)PyUnicode_AsUTF8(r->op)[0];
        *o++ = r->has_before == 1 ? 2 : 0;
        memcpy(o, before->d, (size_t)nb);
        o += nb;
        *o++ = r->has_after == 1 ? 2 : 0;
        memcpy(o, after->d, (size_t)na);
        o += na;
        memcpy(o, src->d, (size_t)src->len);
        o += src->len;
        memcpy(o, ts->d, (size_t)ts->len);
    }

    PyObject *key = PyBytes_FromStringAndSize(NULL, HEADER + t->key.len);
    if (key != NULL) {
        memset(PyBytes_AS_STRING(key), 0, HEADER);
        memcpy(PyBytes_AS_STRING(key) + HEADER, t->key.d, (size_t)t->key.len);
    }
    StreamRecord *rec = key == NULL ? NULL : new_stream_record(t, r->op, ts_obj, key, value);
    Py_XDECREF(key);
    Py_DECREF(value);
    if (rec == NULL) {
        Py_XDECREF(text);
        return -1;
    }
    rec->text = text;
    rec->ms = r->ms;
    rec->has_ms = (char)r->has_ms;
    rec->ttl = (char)ttl;
    rec->tombstone = (char)(after_only && r->op == S.op_d);
    rec->seq_at = (int32_t)(src_at + seq_at);
    rec->seq_len = (int32_t)t->seq_text.len;
    rec->event_id_at = event_id_at < 0 ? -1 : (int32_t)(src_at + event_id_at);
    rec->event_id_len = (int32_t)t->event_id_text.len;
    rec->region_at = region_at < 0 ? -1 : (int32_t)(src_at + region_at);
    rec->region_len = (int32_t)t->region_text.len;
    int rc;
    if (t->records) {
        rc = PyList_Append(out_list, (PyObject *)rec);
        if (rc == 0 && r->op == S.op_d && !after_only) { /* a delete is followed by a tombstone with the same key */
            StreamRecord *tomb = new_stream_record(t, r->op, ts_obj, rec->key, rec->value);
            if (tomb == NULL)
                rc = -1;
            else {
                /* the delete's plain fields (everything from ms on), flagged */
                size_t at = offsetof(StreamRecord, ms);
                memcpy((char *)tomb + at, (char *)rec + at, sizeof(StreamRecord) - at);
                tomb->tombstone = 1;
                rc = PyList_Append(out_list, (PyObject *)tomb);
                Py_DECREF(tomb);
            }
        }
    }
    else { /* (op, key, source, key_avro, value_avro) */
        PyObject *keys = StreamRecord_key(rec, NULL), *source = keys ? StreamRecord_source(rec, NULL) : NULL;
        PyObject *kb = source ? body_copy(rec->key) : NULL, *vb = kb ? body_copy(rec->value) : NULL;
        PyObject *tuple = vb ? PyTuple_Pack(5, r->op, keys, source, kb, vb) : NULL;
        rc = tuple == NULL ? -1 : PyList_Append(out_list, tuple);
        Py_XDECREF(tuple);
        Py_XDECREF(keys);
        Py_XDECREF(source);
        Py_XDECREF(kb);
        Py_XDECREF(vb);
    }
    Py_DECREF(rec);
    if (rc == 0) {
        Buf *last = &t->last_seq_text;
        last->len = 0;
        if (put_buf(last, &t->seq_text) < 0)
            return -1;
        t->has_last_seq = 1;
    }
    return rc;
}

static int
parse_record(Parser *ps, const Buf *ts, PyObject *ts_obj, PyObject *out_list, PyObject *misses)
{
    Transcoder *t = ps->t;
    Rec r;
    memset(&r, 0, sizeof r);
    int out = -1;
    t->typed_miss = 0;
    const unsigned char *start = (ws(ps), ps->p);
    if (peek(ps) != '{')
        return fail(ps, "a record must be an object");
    ps->p++;
    ps->depth++;
    int more = 0;
    if (peek(ps) == '}') {
        ps->p++;
        return fail(ps, "record has no eventName");
    }
    do {
        const unsigned char *s;
        Py_ssize_t n;
        if (member_name(ps, &s, &n) < 0)
            goto done;
        if (NAME_IS(s, n, "dynamodb")) {
            r.has_dynamodb = 1;
            if (parse_dynamodb(ps, &r) < 0)
                goto done;
        }
        else if (NAME_IS(s, n, "eventName")) {
            if (peek(ps) != '"' || read_string(ps, &s, &n) < 0) {
                if (!PyErr_Occurred())
                    fail(ps, "eventName must be a string");
                goto done;
            }
            if (NAME_IS(s, n, "INSERT"))
                r.op = S.op_c;
            else if (NAME_IS(s, n, "MODIFY"))
                r.op = S.op_u;
            else if (NAME_IS(s, n, "REMOVE"))
                r.op = S.op_d;
            else {
                fail(ps, "unknown eventName");
                goto done;
            }
        }
        else if (NAME_IS(s, n, "eventID")) {
            r.has_event_id = peek(ps) == '"';
            if (r.has_event_id ? read_into(ps, &t->event_id_text) < 0
                               : expect_null(ps, "eventID must be a string or null") < 0)
                goto done;
        }
        else if (NAME_IS(s, n, "awsRegion")) {
            int c = peek(ps);
            r.has_region = 0;
            if (c == '"') {
                if (read_into(ps, &t->region_text) < 0)
                    goto done;
                Py_ssize_t rn = t->region_text.len, dn = PyBytes_GET_SIZE(t->region_utf8);
                int same = rn == 0 || (rn == dn && memcmp(t->region_text.d, PyBytes_AS_STRING(t->region_utf8), (size_t)rn) == 0);
                r.has_region = !same;
            }
            else if (expect_null(ps, "awsRegion must be a string or null") < 0)
                goto done;
        }
        else if (NAME_IS(s, n, "userIdentity")) {
            if (parse_identity(ps, &r) < 0)
                goto done;
        }
        else if (skip_value(ps) < 0)
            goto done;
    } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0)
        goto done;
    ps->depth--;
    if (r.op == NULL) {
        fail(ps, "record has no eventName");
        goto done;
    }
    if (!r.has_dynamodb) {
        fail(ps, "record has no dynamodb");
        goto done;
    }
    if (t->plan != NULL && t->plan_after && r.op != S.op_d && r.has_after != 1)
        t->typed_miss = 1; /* image: after, no new image: the Python writer says why */
    if (t->typed_miss) {
        /* typed images not plainly in the plan: the record's JSON, for the Python writer */
        PyObject *raw = PyBytes_FromStringAndSize((const char *)start, ps->p - start);
        PyObject *at = raw ? PyLong_FromSsize_t(PyList_GET_SIZE(out_list)) : NULL;
        out = at == NULL || PyList_Append(out_list, raw) < 0 || PyList_Append(misses, at) < 0 ? -1 : 0;
        Py_XDECREF(raw);
        Py_XDECREF(at);
        if (out == 0) {
            t->last_seq_text.len = 0;
            out = put_buf(&t->last_seq_text, &t->seq_text);
            t->has_last_seq = 1;
        }
        goto done;
    }
    out = build_record(ps, &r, ts, ts_obj, out_list);
done:
    return out;
}

/* The message: b framed with header, in place the first time (see StreamRecord), else a copy. */
static PyObject *
framed(PyObject *b, const char *header)
{
    char *d = PyBytes_AS_STRING(b);
    if (memcmp(d, header, HEADER) == 0)
        return Py_NewRef(b);
    static const char room[HEADER] = {0};
    if (memcmp(d, room, HEADER) == 0) {
        memcpy(d, header, HEADER);
        return Py_NewRef(b);
    }
    PyObject *copy = PyBytes_FromStringAndSize(d, PyBytes_GET_SIZE(b));
    if (copy != NULL)
        memcpy(PyBytes_AS_STRING(copy), header, HEADER);
    return copy;
}

/* A record's owner (its records frame together) and bodies; *value NULL: a tombstone. */
typedef void (*record_parts)(PyObject *r, void **owner, PyObject **key, PyObject **value);

/* frame() and frame_items(): fmt parses (records, key_header, value_header); records of another
 * type than `type` or owner than the first's give None. */
static PyObject *
frame_records(PyObject *args, const char *fmt, const char *name, PyTypeObject *type, record_parts parts)
{
    PyObject *records;
    const char *kh, *vh;
    Py_ssize_t khn, vhn;
    if (!PyArg_ParseTuple(args, fmt, &PyList_Type, &records, &kh, &khn, &vh, &vhn))
        return NULL;
    if (khn != HEADER || vhn != HEADER) {
        PyErr_Format(PyExc_ValueError, "%s: headers are 5 bytes", name);
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    void *owner0 = NULL, *owner;
    PyObject *key, *value;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(records, i);
        if (!Py_IS_TYPE(r, type))
            Py_RETURN_NONE;
        parts(r, &owner, &key, &value);
        if (i == 0)
            owner0 = owner;
        else if (owner != owner0)
            Py_RETURN_NONE;
    }
    PyObject *keys = PyList_New(n), *values = PyList_New(n);
    if (keys == NULL || values == NULL)
        goto error;
    Py_ssize_t payload = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        parts(PyList_GET_ITEM(records, i), &owner, &key, &value);
        PyObject *k = framed(key, kh);
        if (k == NULL)
            goto error;
        PyList_SET_ITEM(keys, i, k);
        payload += PyBytes_GET_SIZE(k);
        PyObject *v = value == NULL ? Py_NewRef(Py_None) : framed(value, vh);
        if (v == NULL)
            goto error;
        PyList_SET_ITEM(values, i, v);
        if (v != Py_None)
            payload += PyBytes_GET_SIZE(v);
    }
    return Py_BuildValue("(NNn)", keys, values, payload);
error:
    Py_XDECREF(keys);
    Py_XDECREF(values);
    return NULL;
}

static void
stream_record_parts(PyObject *o, void **owner, PyObject **key, PyObject **value)
{
    StreamRecord *r = (StreamRecord *)o;
    *owner = r->schema ? (void *)r->schema : (void *)r->t; /* one framing header per schema */
    *key = r->key;
    *value = r->tombstone ? NULL : r->value;
}

static PyObject *
frame(PyObject *module, PyObject *args)
{
    return frame_records(args, "O!y#y#:frame", "frame", &StreamRecordType, stream_record_parts);
}

/* ------------------------------------------------------------------ the page */

static PyObject *
Transcoder_page(Transcoder *self, PyObject *args)
{
    Py_buffer view;
    long long ts_ms;
    PyObject *plan = NULL, *handle = NULL, *misses = NULL;
    if (self->source_template == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Transcoder.__init__ was not called");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "y*L|O!O:page", &view, &ts_ms, &TypedPlanType, &plan, &handle))
        return NULL;
    if (plan != NULL) {
        if (handle == NULL || !self->records || ((TypedPlan *)plan)->root == NULL) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_ValueError, "page: a (compiled) TypedPlan needs its schema handle and "
                                              "records=(topic, schema)");
            return NULL;
        }
        if ((misses = PyList_New(0)) == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        self->plan = ((TypedPlan *)plan)->root;
        self->plan_after = ((TypedPlan *)plan)->after;
        self->handle = handle;
    }
    Parser ps = {view.buf, view.buf, (const unsigned char *)view.buf + view.len, 0, self};
    PyObject *ts_obj = PyLong_FromLongLong(ts_ms);
    if (ts_obj == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char tsbytes[10];
    Buf ts = {tsbytes, 0, sizeof tsbytes};
    put_varint(&ts, zigzag(ts_ms));
    self->nnames = 0;

    PyObject *records = PyList_New(0), *next = NULL, *result = NULL;
    self->has_last_seq = 0;
    int more;
    if (records == NULL)
        goto done;
    if (expect(&ps, '{', "expected a JSON object") < 0)
        goto done;
    ps.depth = 1;
    if (peek(&ps) == '}')
        ps.p++;
    else {
        do {
            const unsigned char *s;
            Py_ssize_t n;
            if (member_name(&ps, &s, &n) < 0)
                goto done;
            if (NAME_IS(s, n, "Records")) {
                /* given twice: the last one counts */
                if (PyList_SetSlice(records, 0, PyList_GET_SIZE(records), NULL) < 0 ||
                    (misses && PyList_SetSlice(misses, 0, PyList_GET_SIZE(misses), NULL) < 0))
                    goto done;
                self->has_last_seq = 0;
                int c = peek(&ps);
                if (c == 'n') {
                    if (null_literal(&ps, "Records must be an array or null") < 0)
                        goto done;
                    continue;
                }
                if (c != '[') {
                    fail(&ps, "Records must be an array or null");
                    goto done;
                }
                ps.p++;
                ps.depth = 2;
                if (peek(&ps) == ']') {
                    ps.p++;
                }
                else {
                    int m;
                    do {
                        if (parse_record(&ps, &ts, ts_obj, records, misses) < 0)
                            goto done;
                    } while ((m = next_or_close(&ps, ']')) == 1);
                    if (m < 0)
                        goto done;
                }
                ps.depth = 1;
            }
            else if (NAME_IS(s, n, "NextShardIterator")) {
                if (string_or_null(&ps, &next, "NextShardIterator must be a string or null") < 0)
                    goto done;
            }
            else if (skip_value(&ps) < 0)
                goto done;
        } while ((more = next_or_close(&ps, '}')) == 1);
        if (more < 0)
            goto done;
    }
    ws(&ps);
    if (ps.p != ps.end) {
        fail(&ps, "trailing characters after the JSON document");
        goto done;
    }
    {
        PyObject *last = self->has_last_seq
                             ? PyUnicode_DecodeUTF8((const char *)self->last_seq_text.d, self->last_seq_text.len, NULL)
                             : Py_NewRef(Py_None);
        if (last != NULL)
            result = misses ? PyTuple_Pack(4, records, last, next ? next : Py_None, misses)
                            : PyTuple_Pack(3, records, last, next ? next : Py_None);
        Py_XDECREF(last);
    }
done:
    self->plan = NULL;
    self->handle = NULL;
    Py_XDECREF(misses);
    for (int i = 0; i <= MAX_AV_DEPTH; i++)
        buf_trim(&self->levels[i], 1 << 20);
    buf_trim(&self->typed_img[0], 1 << 20);
    buf_trim(&self->typed_img[1], 1 << 20);
    buf_trim(&self->before, 1 << 20);
    buf_trim(&self->after, 1 << 20);
    buf_trim(&self->scratch, 1 << 20);
    Py_XDECREF(records);
    Py_XDECREF(next);
    Py_DECREF(ts_obj);
    PyBuffer_Release(&view);
    return result;
}

/* ------------------------------------------------------------------ type plumbing */

static int
prefix_string(Buf *b, PyObject *s, int optional)
{
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(s, &n);
    if (u == NULL)
        return -1;
    if (optional) {
        RESERVE(b, 1);
        b->d[b->len++] = 2;
    }
    return put_avro_string(b, u, n);
}

/* key_fields as a fast sequence of one to MAX_KEY_FIELDS items (*n: how many), or NULL. */
static PyObject *
key_fields_seq(PyObject *key_fields, Py_ssize_t *n)
{
    PyObject *seq = PySequence_Fast(key_fields, "key_fields must be a sequence of (name, type) pairs");
    if (seq == NULL)
        return NULL;
    *n = PySequence_Fast_GET_SIZE(seq);
    if (*n == 0 || *n > MAX_KEY_FIELDS) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, *n ? "key_fields: a DynamoDB key has at most two attributes"
                                             : "key_fields must name at least one attribute");
        return NULL;
    }
    return seq;
}

/* One (name, type) pair into kf (zeroed; what it holds is the owner's to release, even after a
 * failure): its type as T_S, T_N or T_B, or -1. */
static int
read_key_field(PyObject *pair, KeyField *kf)
{
    PyObject *name, *type;
    if (!PyArg_ParseTuple(pair, "UU:key field", &name, &type))
        return -1;
    int kt = PyUnicode_CompareWithASCIIString(type, "S") == 0   ? T_S
             : PyUnicode_CompareWithASCIIString(type, "N") == 0 ? T_N
             : PyUnicode_CompareWithASCIIString(type, "B") == 0 ? T_B
                                                                : -1;
    if (kt < 0) {
        PyErr_Format(PyExc_ValueError, "key attribute %R has type %R; expected S, N or B", name, type);
        return -1;
    }
    kf->name = Py_NewRef(name);
    kf->type = Py_NewRef(kt == T_S ? S.t_S : kt == T_N ? S.t_N : S.t_B);
    kf->t = "SNB"[kt];
    if ((kf->utf8 = PyUnicode_AsUTF8AndSize(name, &kf->ulen)) == NULL)
        return -1;
    return kt;
}

static int
Transcoder_init(Transcoder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key_fields", "table", "region", "stream_arn", "shard_id", "records", NULL};
    PyObject *key_fields, *table, *region, *stream_arn, *shard_id, *records = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OUUUU|$O:Transcoder", kwlist, &key_fields, &table, &region,
                                     &stream_arn, &shard_id, &records))
        return -1;
    if (self->kf != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Transcoder is already initialised");
        return -1;
    }
    Py_ssize_t n;
    PyObject *seq = key_fields_seq(key_fields, &n);
    if (seq == NULL)
        return -1;
    self->kf = PyMem_Calloc((size_t)n, sizeof(KeyField));
    if (self->kf == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    self->nkf = n;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (read_key_field(PySequence_Fast_GET_ITEM(seq, i), &self->kf[i]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
        if (self->kf[i].t == 'B')
            self->binary_keys = 1;
    }
    Py_DECREF(seq);
    self->table = Py_NewRef(table);
    self->region = Py_NewRef(region);
    self->stream_arn = Py_NewRef(stream_arn);
    self->shard_id = Py_NewRef(shard_id);
    self->region_utf8 = PyUnicode_AsUTF8String(region);
    if (self->region_utf8 == NULL)
        return -1;
    if (prefix_string(&self->src_head, S.s_dynamodb, 0) < 0 || prefix_string(&self->src_head, table, 0) < 0 ||
        prefix_string(&self->src_region, region, 1) < 0 || prefix_string(&self->src_tail, stream_arn, 1) < 0 ||
        prefix_string(&self->src_tail, shard_id, 1) < 0)
        return -1;
    PyObject *tpl = self->source_template = PyDict_New();
    if (tpl == NULL || PyDict_SetItem(tpl, S.k_connector, S.s_dynamodb) < 0 || PyDict_SetItem(tpl, S.k_table, table) < 0 ||
        PyDict_SetItem(tpl, S.k_region, region) < 0 || PyDict_SetItem(tpl, S.k_stream_arn, stream_arn) < 0 ||
        PyDict_SetItem(tpl, S.k_shard_id, shard_id) < 0 || PyDict_SetItem(tpl, S.k_sequence_number, Py_None) < 0 ||
        PyDict_SetItem(tpl, S.k_event_id, Py_None) < 0 || PyDict_SetItem(tpl, S.k_approximate_creation_ms, Py_None) < 0 ||
        PyDict_SetItem(tpl, S.k_ttl_delete, Py_False) < 0)
        return -1;
    if (records == Py_None)
        return 0;
    PyObject *topic, *kf_obj;
    if (!PyArg_ParseTuple(records, "UO:records", &topic, &kf_obj))
        return -1;
    self->records = 1;
    self->rec_topic = Py_NewRef(topic);
    self->rec_key_fields = Py_NewRef(kf_obj);
    return 0;
}

static void
Transcoder_dealloc(Transcoder *self)
{
    for (Py_ssize_t i = 0; i < self->nkf; i++) {
        Py_XDECREF(self->kf[i].name);
        Py_XDECREF(self->kf[i].type);
        buf_free(&self->kf[i].val);
    }
    PyMem_Free(self->kf);
    Py_XDECREF(self->table);
    Py_XDECREF(self->region);
    Py_XDECREF(self->stream_arn);
    Py_XDECREF(self->shard_id);
    Py_XDECREF(self->region_utf8);
    Py_XDECREF(self->source_template);
    Py_XDECREF(self->rec_topic);
    Py_XDECREF(self->rec_key_fields);
    Buf *bufs[] = {&self->src_head, &self->src_tail,  &self->src_region,    &self->before,
                   &self->after,    &self->key,       &self->src,           &self->scratch,
                   &self->seq_text, &self->event_id_text, &self->region_text, &self->last_seq_text};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        buf_free(bufs[i]);
    PyMem_RawFree(self->names);
    for (int i = 0; i <= MAX_AV_DEPTH; i++)
        buf_free(&self->levels[i]);
    buf_free(&self->typed_img[0]);
    buf_free(&self->typed_img[1]);
    PyMem_RawFree(self->spans);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Transcoder_methods[] = {
    {"page", (PyCFunction)Transcoder_page, METH_VARARGS,
     "page(body, ts_ms) -> (records, last_sequence_number, next_shard_iterator)\n\n"
     "records: list of (op, key, source, key_avro, value_avro), or with records=(topic, schema)\n"
     "StreamRecords (a REMOVE followed by its tombstone); ValueError on input the general path\n"
     "must handle.\n\n"
     "page(body, ts_ms, plan, schema) -> (records, last, next, misses): typed images by a TypedPlan,\n"
     "the records' schema handle `schema`; a record whose images are not plainly in the plan is left\n"
     "in records as its JSON (bytes), at the indices listed in misses, for the Python writer."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TranscoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors.dynamodb._transcode.Transcoder",
    .tp_basicsize = sizeof(Transcoder),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Transcoder(key_fields, table, region, stream_arn, shard_id, *, records=None):\n"
              "GetRecords JSON -> Avro for one shard.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Transcoder_init,
    .tp_dealloc = (destructor)Transcoder_dealloc,
    .tp_methods = Transcoder_methods,
};

/* ================================================================== snapshot items
 *
 * ItemWriter: DynamoDB JSON items that are not stream records -- a Scan response's `Items`,
 * the `{"Item": ...}` lines of an S3 export -- to Avro key and value bodies, with the same
 * item encoding (put_attribute, put_item's rules) as the stream path. The value is
 * `head + map<AttributeValue> + tail`: the caller gives the constant parts (for today's
 * envelope: op "r", before null, the after branch; then the source block and ts_ms), so the
 * writer itself knows nothing of the envelope and a converter can reuse it.
 *
 * Each call runs in two phases. Phase 1 parses and encodes every item of the page (or of up to
 * max_records lines) into one buffer with the GIL released: it touches no Python object
 * (see `nogil`), so export files and Scan pages encode on several cores at once. Phase 2 takes
 * the GIL and builds the records. A failure in phase 1 is repeated with the GIL held, which
 * raises the ValueError (the caller then takes the general path for that page or batch).
 */

typedef struct {
    Py_ssize_t vat, vlen, kat, klen; /* value map and key body in ItemWriter.out */
    Py_ssize_t jat, jlen;            /* typed, vlen -1: the item's JSON in the input, for the Python writer */
} ItemSpan;

#define MAX_OTHER_MEMBERS 32

typedef struct {
    const unsigned char *name; /* at the member name's opening quote, in the input */
    Py_ssize_t vat, vlen;      /* the member's JSON value, in the input */
} OtherMember;

typedef struct {
    PyObject_HEAD
    Transcoder work; /* only its parser scratch (scratch, names) is used; no Python fields */
    Py_ssize_t nkf;
    KeyField kf[MAX_KEY_FIELDS]; /* name, type, utf8, ulen, t; val: a typed item's key value */
    int kt[MAX_KEY_FIELDS];      /* T_S | T_N | T_B */
    PyObject *topic, *table, *key_fields, *source, *op;
    Buf out;
    ItemSpan *spans;
    Py_ssize_t nspans, capspans;
    OtherMember others[MAX_OTHER_MEMBERS];
    Py_ssize_t nothers;
    int busy;
} ItemWriter;

typedef struct {
    PyObject_HEAD
    ItemWriter *w;
    PyObject *ts_ms;
    PyObject *key;   /* bytes: header room + Avro key body */
    PyObject *value;  /* bytes: header room + head + item + tail */
    PyObject *schema; /* typed: the handle of the plan that wrote it; NULL: the writer's */
} ItemRecord;

static PyTypeObject ItemRecordType;

/* An Avro long at p (written by this module): its value; *n gets its length in bytes. */
static int64_t
get_varint(const unsigned char *p, int *n)
{
    uint64_t z = 0;
    int i = 0, shift = 0;
    for (;;) {
        unsigned char c = p[i++];
        z |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80) || i == 10)
            break;
        shift += 7;
    }
    *n = i;
    return (int64_t)(z >> 1) ^ -(int64_t)(z & 1);
}

/* One item (a JSON object of attributes) at ps->p: its map<AttributeValue> and then its key
 * body are appended to w->out, and their places to w->spans. The key is the item's key
 * attributes' encoded values, which are the key record's fields byte for byte (S and N as
 * strings, B as bytes); an item without one, or with one of another type, is refused. */
/* An item the typed plan took (so well formed, its names unique) at ps->p: its key body
 * appended to w->out from its key attributes' values, as put_snapshot_item takes them from
 * the envelope's map. 0: a key attribute missing or of another type (that path says which). */
static int
typed_item_key(Parser *ps, ItemWriter *w)
{
    unsigned seen = 0;
    int more = 0;
    ps->p++;
    if (peek(ps) == '}')
        ps->p++;
    else
        do {
            const unsigned char *s;
            Py_ssize_t n, i = 0;
            if (member_name(ps, &s, &n) < 0)
                return -1;
            while (i < w->nkf && !(w->kf[i].ulen == n && memcmp(w->kf[i].utf8, s, (size_t)n) == 0))
                i++;
            if (i == w->nkf) {
                if (skip_value(ps) < 0)
                    return -1;
                continue;
            }
            if (expect(ps, '{', "attribute value must be an object") < 0 || member_name(ps, &s, &n) < 0)
                return -1;
            if (!(n == 1 && s[0] == w->kf[i].t) || peek(ps) != '"')
                return 0;
            if (read_into(ps, &w->kf[i].val) < 0)
                return -1;
            if (peek(ps) != '}')
                return 0;
            ps->p++;
            seen |= 1u << i;
        } while ((more = next_or_close(ps, '}')) == 1);
    if (more < 0)
        return -1;
    if (seen != (1u << w->nkf) - 1)
        return 0;
    for (Py_ssize_t i = 0; i < w->nkf; i++) {
        Buf *v = &w->kf[i].val;
        if ((w->kf[i].t == 'B' ? put_base64(ps, &w->out, v->d, v->len)
                               : put_avro_string(&w->out, (const char *)v->d, v->len)) < 0)
            return -1;
    }
    return 1;
}

static int
put_snapshot_item(Parser *ps, ItemWriter *w)
{
    Buf *out = &w->out;
    if (w->work.plan != NULL) {
        /* typed: the item as the plan's record, then its key; else the envelope's way below
         * (its key, its checks), and the item goes to the Python writer */
        const unsigned char *item = (ws(ps), ps->p);
        Py_ssize_t start = out->len;
        int r = tw_record(ps, w->work.plan, out, 1);
        if (r < 0)
            return -1;
        if (r == 1) {
            Py_ssize_t vlen = out->len - start, kstart = out->len;
            Parser again = *ps;
            again.p = item;
            int k = typed_item_key(&again, w);
            if (k < 0)
                return -1;
            if (k == 1) {
                ROOM_FOR_ONE(w->spans, w->nspans, w->capspans, 256);
                ItemSpan *s = &w->spans[w->nspans++];
                *s = (ItemSpan){start, vlen, kstart, out->len - kstart, -1, 0};
                return 0;
            }
        }
        ps->p = item;
        out->len = start;
    }
    Py_ssize_t keyat[MAX_KEY_FIELDS], shift;
    for (Py_ssize_t i = 0; i < w->nkf; i++)
        keyat[i] = -1;
    Py_ssize_t start = out->len;
    const unsigned char *item = (ws(ps), ps->p);
    if (put_map(ps, out, 1, w->kf, w->nkf, 0, keyat, &shift) < 0)
        return -1;
    for (Py_ssize_t i = 0; i < w->nkf; i++)
        if (keyat[i] >= 0)
            keyat[i] += shift;
    Py_ssize_t vlen = out->len - start, kstart = out->len, jat = -1, jlen = 0;
    for (Py_ssize_t i = 0; i < w->nkf; i++) {
        if (keyat[i] < 0)
            return fail(ps, "item without a key attribute");
        int ti = w->kt[i];
        const unsigned char *p = out->d + keyat[i];
        for (int j = 0; j < ti; j++)
            if (p[j] != 0)
                return fail(ps, "key attribute's type is not the table's");
        if (p[ti] != 2)
            return fail(ps, "key attribute's type is not the table's");
        int vn;
        int64_t n = get_varint(p + ti + 1, &vn);
        Py_ssize_t from = keyat[i] + ti + 1, len = vn + (Py_ssize_t)n;
        RESERVE(out, len);
        memcpy(out->d + out->len, out->d + from, (size_t)len);
        out->len += len;
    }
    Py_ssize_t klen = out->len - kstart;
    if (w->work.plan != NULL) { /* typed, not plainly in the plan: the item's JSON */
        vlen = -1;
        jat = item - ps->base;
        jlen = ps->p - item;
    }
    ROOM_FOR_ONE(w->spans, w->nspans, w->capspans, 256);
    ItemSpan *s = &w->spans[w->nspans++];
    s->vat = start;
    s->vlen = vlen;
    s->kat = kstart;
    s->klen = klen;
    s->jat = jat;
    s->jlen = jlen;
    return 0;
}

static void
writer_reset(ItemWriter *w)
{
    w->out.len = 0;
    w->nspans = 0;
    w->nothers = 0;
    w->work.nnames = 0;
}

/* Phase 1 of a Scan page: {"Items": [item, ...] | null, other members...}. */
static int
scan_phase1(ItemWriter *w, Parser *ps)
{
    writer_reset(w);
    if (expect(ps, '{', "expected a JSON object") < 0)
        return -1;
    ps->depth = 1;
    if (peek(ps) == '}') {
        ps->p++;
    }
    else {
        int more;
        do {
            const unsigned char *s, *name_at;
            Py_ssize_t n;
            ws(ps);
            name_at = ps->p;
            if (member_name(ps, &s, &n) < 0)
                return -1;
            if (NAME_IS(s, n, "Items")) {
                w->out.len = 0; /* given twice: the last one counts */
                w->nspans = 0;
                int c = peek(ps);
                if (c == 'n') {
                    if (null_literal(ps, "Items must be an array or null") < 0)
                        return -1;
                    continue;
                }
                if (c != '[')
                    return fail(ps, "Items must be an array or null");
                ps->p++;
                ps->depth = 2;
                if (peek(ps) == ']')
                    ps->p++;
                else {
                    int m;
                    do {
                        if (put_snapshot_item(ps, w) < 0)
                            return -1;
                    } while ((m = next_or_close(ps, ']')) == 1);
                    if (m < 0)
                        return -1;
                }
                ps->depth = 1;
            }
            else {
                if (w->nothers == MAX_OTHER_MEMBERS)
                    return fail(ps, "too many members");
                ws(ps);
                OtherMember *o = &w->others[w->nothers++];
                o->name = name_at;
                o->vat = ps->p - ps->base;
                if (skip_value(ps) < 0)
                    return -1;
                o->vlen = (ps->p - ps->base) - o->vat;
            }
        } while ((more = next_or_close(ps, '}')) == 1);
        if (more < 0)
            return -1;
    }
    ws(ps);
    if (ps->p != ps->end)
        return fail(ps, "trailing characters after the JSON document");
    return 0;
}

static inline int
blank_byte(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\x0b' || c == '\x0c';
}

/* Phase 1 of export lines: from *pos, up to max_records {"Item": ...} lines (blank lines are
 * counted and skipped); stops before a last line without '\n' unless final. */
static int
lines_phase1(ItemWriter *w, const unsigned char *d, Py_ssize_t len, Py_ssize_t *pos, Py_ssize_t max_records,
             int final, Py_ssize_t *lines)
{
    writer_reset(w);
    Py_ssize_t p = *pos, nlines = 0;
    while (w->nspans < max_records && p < len) {
        const unsigned char *nl = memchr(d + p, '\n', (size_t)(len - p));
        if (nl == NULL && !final)
            break;
        Py_ssize_t end = nl ? nl - d : len, next = nl ? end + 1 : len;
        nlines++;
        Py_ssize_t i = p;
        while (i < end && blank_byte(d[i]))
            i++;
        if (i == end) {
            p = next;
            continue;
        }
        Parser ps = {d + p, d + p, d + end, 0, &w->work};
        if (expect(&ps, '{', "export line: expected a JSON object") < 0)
            return -1;
        ps.depth = 1;
        Py_ssize_t spans_before = w->nspans, out_before = w->out.len;
        int has_item = 0;
        if (peek(&ps) == '}')
            ps.p++;
        else {
            int more;
            do {
                const unsigned char *s;
                Py_ssize_t n;
                if (member_name(&ps, &s, &n) < 0)
                    return -1;
                if (NAME_IS(s, n, "Item")) {
                    w->nspans = spans_before; /* given twice: the last one counts */
                    w->out.len = out_before;
                    if (put_snapshot_item(&ps, w) < 0)
                        return -1;
                    has_item = 1;
                }
                else if (skip_value(&ps) < 0)
                    return -1;
            } while ((more = next_or_close(&ps, '}')) == 1);
            if (more < 0)
                return -1;
        }
        ws(&ps);
        if (ps.p != ps.end)
            return fail(&ps, "export line: trailing characters after the JSON document");
        if (!has_item)
            return fail(&ps, "export line has no Item");
        p = next;
    }
    *pos = p;
    *lines = nlines;
    return 0;
}

/* Phase 2: the records of w->spans, as a new list. The objects are made with the GIL held;
 * their bytes are filled after, with it released (the list is this thread's alone until it is
 * returned): the copies are most of phase 2's work, and other threads run beside them. */
static PyObject *
build_items(ItemWriter *w, const char *head, Py_ssize_t headn, const char *tail, Py_ssize_t tailn, PyObject *ts_obj,
            const unsigned char *input, PyObject *schema, PyObject *misses)
{
    PyObject *list = PyList_New(w->nspans);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < w->nspans; i++) {
        ItemSpan *s = &w->spans[i];
        if (s->vlen < 0) { /* typed, not plainly in the plan: the item's JSON for the Python writer */
            PyObject *raw = PyBytes_FromStringAndSize((const char *)input + s->jat, s->jlen);
            PyObject *at = raw ? PyLong_FromSsize_t(i) : NULL;
            int rc = at == NULL ? -1 : PyList_Append(misses, at);
            Py_XDECREF(at);
            if (rc < 0) {
                Py_XDECREF(raw);
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, i, raw);
            continue;
        }
        PyObject *value = PyBytes_FromStringAndSize(NULL, HEADER + headn + s->vlen + tailn);
        PyObject *key = value ? PyBytes_FromStringAndSize(NULL, HEADER + s->klen) : NULL;
        ItemRecord *r = key ? PyObject_New(ItemRecord, &ItemRecordType) : NULL;
        if (r == NULL) {
            Py_XDECREF(value);
            Py_XDECREF(key);
            Py_DECREF(list);
            return NULL;
        }
        r->w = (ItemWriter *)Py_NewRef((PyObject *)w);
        r->ts_ms = Py_NewRef(ts_obj);
        r->key = key;
        r->value = value;
        r->schema = Py_XNewRef(schema);
        PyList_SET_ITEM(list, i, (PyObject *)r);
    }
    PyObject **items = ((PyListObject *)list)->ob_item;
    long long t0, t1;
    Py_BEGIN_ALLOW_THREADS
    t0 = thread_cpu_ns();
    for (Py_ssize_t i = 0; i < w->nspans; i++) {
        ItemSpan *s = &w->spans[i];
        if (s->vlen < 0)
            continue;
        ItemRecord *r = (ItemRecord *)items[i];
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(r->value);
        memset(o, 0, HEADER);
        memcpy(o + HEADER, head, (size_t)headn);
        memcpy(o + HEADER + headn, w->out.d + s->vat, (size_t)s->vlen);
        memcpy(o + HEADER + headn + s->vlen, tail, (size_t)tailn);
        o = (unsigned char *)PyBytes_AS_STRING(r->key);
        memset(o, 0, HEADER);
        memcpy(o + HEADER, w->out.d + s->kat, (size_t)s->klen);
    }
    t1 = thread_cpu_ns();
    Py_END_ALLOW_THREADS
    nogil_cpu_ns_total += t1 - t0;
    return list;
}

static void
writer_trim(ItemWriter *w)
{
    buf_trim(&w->out, 4 << 20);
    buf_trim(&w->work.scratch, 1 << 20);
}

static int
writer_enter(ItemWriter *w)
{
    if (w->topic == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ItemWriter.__init__ was not called");
        return -1;
    }
    if (w->busy) {
        PyErr_SetString(PyExc_RuntimeError, "ItemWriter is in use by another thread");
        return -1;
    }
    w->busy = 1;
    return 0;
}

static PyObject *
ItemWriter_scan_page(ItemWriter *w, PyObject *args)
{
    Py_buffer view;
    const char *head, *tail;
    Py_ssize_t headn, tailn;
    PyObject *ts_obj, *plan = NULL, *schema = NULL, *misses = NULL;
    if (!PyArg_ParseTuple(args, "y*y#y#O!|O!O:scan_page", &view, &head, &headn, &tail, &tailn, &PyLong_Type, &ts_obj,
                          &TypedPlanType, &plan, &schema))
        return NULL;
    if (plan != NULL && (schema == NULL || ((TypedPlan *)plan)->root == NULL)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "scan_page: a (compiled) TypedPlan needs its schema handle");
        return NULL;
    }
    if (writer_enter(w) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    w->work.plan = plan ? ((TypedPlan *)plan)->root : NULL;
    const unsigned char *b = view.buf;
    Parser ps = {b, b, b + view.len, 0, &w->work};
    int rc;
    long long t0 = 0, t1 = 0;
    Py_BEGIN_ALLOW_THREADS
    t0 = thread_cpu_ns();
    nogil = 1;
    rc = scan_phase1(w, &ps);
    nogil = 0;
    t1 = thread_cpu_ns();
    Py_END_ALLOW_THREADS
    nogil_cpu_ns_total += t1 - t0;
    if (rc < 0) {
        Parser again = {b, b, b + view.len, 0, &w->work};
        rc = scan_phase1(w, &again);
    }
    PyObject *records = NULL, *rest = NULL, *result = NULL;
    if (rc < 0)
        goto done;
    if ((plan != NULL && (misses = PyList_New(0)) == NULL) ||
        (records = build_items(w, head, headn, tail, tailn, ts_obj, b, schema, misses)) == NULL ||
        (rest = PyDict_New()) == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < w->nothers; i++) {
        OtherMember *o = &w->others[i];
        Parser np = {b, o->name, b + view.len, 0, &w->work};
        PyObject *name = read_pystring(&np);
        PyObject *v = name ? PyBytes_FromStringAndSize((const char *)b + o->vat, o->vlen) : NULL;
        int r = v ? PyDict_SetItem(rest, name, v) : -1;
        Py_XDECREF(name);
        Py_XDECREF(v);
        if (r < 0)
            goto done;
    }
    result = misses ? PyTuple_Pack(3, records, rest, misses) : PyTuple_Pack(2, records, rest);
done:
    w->work.plan = NULL;
    for (int i = 0; i <= MAX_AV_DEPTH; i++)
        buf_trim(&w->work.levels[i], 1 << 20);
    Py_XDECREF(records);
    Py_XDECREF(rest);
    Py_XDECREF(misses);
    writer_trim(w);
    w->busy = 0;
    PyBuffer_Release(&view);
    return result;
}

static PyObject *
ItemWriter_lines(ItemWriter *w, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, max_records;
    int final;
    const char *head, *tail;
    Py_ssize_t headn, tailn;
    PyObject *ts_obj;
    if (!PyArg_ParseTuple(args, "y*nnpy#y#O!:lines", &view, &pos, &max_records, &final, &head, &headn, &tail, &tailn,
                          &PyLong_Type, &ts_obj))
        return NULL;
    if (pos < 0 || pos > view.len || max_records < 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "lines: pos must be within data, max_records >= 0");
        return NULL;
    }
    if (writer_enter(w) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const unsigned char *d = view.buf;
    Py_ssize_t len = view.len, end = pos, nlines = 0;
    int rc;
    long long t0 = 0, t1 = 0;
    Py_BEGIN_ALLOW_THREADS
    t0 = thread_cpu_ns();
    nogil = 1;
    rc = lines_phase1(w, d, len, &end, max_records, final, &nlines);
    nogil = 0;
    t1 = thread_cpu_ns();
    Py_END_ALLOW_THREADS
    nogil_cpu_ns_total += t1 - t0;
    if (rc < 0) {
        end = pos;
        rc = lines_phase1(w, d, len, &end, max_records, final, &nlines);
    }
    PyObject *records = NULL, *result = NULL;
    if (rc == 0 && (records = build_items(w, head, headn, tail, tailn, ts_obj, d, NULL, NULL)) != NULL)
        result = Py_BuildValue("(Onn)", records, end, nlines);
    Py_XDECREF(records);
    writer_trim(w);
    w->busy = 0;
    PyBuffer_Release(&view);
    return result;
}

static int
ItemWriter_init(ItemWriter *w, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"key_fields", "topic", "table", "schema", "source", "op", NULL};
    PyObject *key_fields, *topic, *table, *rkf, *source, *op = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OUUOO!|U:ItemWriter", kwlist, &key_fields, &topic, &table, &rkf,
                                     &PyDict_Type, &source, &op))
        return -1;
    if (w->topic != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ItemWriter is already initialised");
        return -1;
    }
    Py_ssize_t n;
    PyObject *seq = key_fields_seq(key_fields, &n);
    if (seq == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        w->nkf = i + 1; /* kf[i] is zeroed: dealloc releases what it gets */
        if ((w->kt[i] = read_key_field(PySequence_Fast_GET_ITEM(seq, i), &w->kf[i])) < 0)
            goto error;
    }
    Py_DECREF(seq);
    w->table = Py_NewRef(table);
    w->key_fields = Py_NewRef(rkf);
    w->source = Py_NewRef(source);
    w->op = op ? Py_NewRef(op) : PyUnicode_InternFromString("r");
    if (w->op == NULL)
        return -1;
    w->topic = Py_NewRef(topic); /* last: marks the writer initialised */
    return 0;
error:
    Py_DECREF(seq);
    return -1;
}

static void
ItemWriter_dealloc(ItemWriter *w)
{
    for (Py_ssize_t i = 0; i < w->nkf; i++) {
        Py_XDECREF(w->kf[i].name);
        Py_XDECREF(w->kf[i].type);
        buf_free(&w->kf[i].val);
    }
    Py_XDECREF(w->topic);
    Py_XDECREF(w->table);
    Py_XDECREF(w->key_fields);
    Py_XDECREF(w->source);
    Py_XDECREF(w->op);
    buf_free(&w->out);
    buf_free(&w->work.scratch);
    PyMem_RawFree(w->work.names);
    for (int i = 0; i <= MAX_AV_DEPTH; i++)
        buf_free(&w->work.levels[i]);
    PyMem_RawFree(w->work.spans);
    PyMem_RawFree(w->spans);
    Py_TYPE(w)->tp_free((PyObject *)w);
}

static PyMethodDef ItemWriter_methods[] = {
    {"scan_page", (PyCFunction)ItemWriter_scan_page, METH_VARARGS,
     "scan_page(body, head, tail, ts_ms) -> (records, rest)\n\n"
     "A Scan response body: its Items as ItemRecords (value: head + item + tail), and its other\n"
     "members as {name: raw JSON bytes}. ValueError on input the general path must handle.\n\n"
     "scan_page(body, head, tail, ts_ms, plan, schema) -> (records, rest, misses): items as typed\n"
     "records by a TypedPlan (schema: their handle); an item not plainly in the plan is left in\n"
     "records as its JSON (bytes), at the indices listed in misses, for the Python writer."},
    {"lines", (PyCFunction)ItemWriter_lines, METH_VARARGS,
     "lines(data, pos, max_records, final, head, tail, ts_ms) -> (records, pos, lines)\n\n"
     "Export lines ({\"Item\": ...} per line) from byte pos: up to max_records records, the byte\n"
     "position after the last line read and the number of lines read (blank ones included); a\n"
     "last line without a newline is read only when final. ValueError as scan_page."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ItemWriterType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors.dynamodb._transcode.ItemWriter",
    .tp_basicsize = sizeof(ItemWriter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ItemWriter(key_fields, topic, table, schema, source, op='r'):\n"
              "Scan pages and export lines -> Avro key and value, parsed with the GIL released.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)ItemWriter_init,
    .tp_dealloc = (destructor)ItemWriter_dealloc,
    .tp_methods = ItemWriter_methods,
};

/* ------------------------------------------------------------------ ItemRecord */

static PyObject *
ItemRecord_key(ItemRecord *r, void *closure)
{
    return key_dict(r->key, r->w->kf, r->w->nkf);
}

static PyObject *ItemRecord_topic(ItemRecord *r, void *c) { return Py_NewRef(r->w->topic); }
static PyObject *ItemRecord_key_fields(ItemRecord *r, void *c) { return Py_NewRef(r->schema ? r->schema : r->w->key_fields); }
static PyObject *ItemRecord_none(ItemRecord *r, void *c) { Py_RETURN_NONE; }
static PyObject *ItemRecord_table(ItemRecord *r, void *c) { return Py_NewRef(r->w->table); }
static PyObject *ItemRecord_op(ItemRecord *r, void *c) { return Py_NewRef(r->w->op); }
static PyObject *ItemRecord_schema_key_fields(ItemRecord *r, void *c)
{
    return PyObject_GetAttrString(r->schema ? r->schema : r->w->key_fields, "key_fields");
}
static PyObject *ItemRecord_source(ItemRecord *r, void *c) { return Py_NewRef(r->w->source); }
static PyObject *ItemRecord_ts_ms(ItemRecord *r, void *c) { return Py_NewRef(r->ts_ms); }
static PyObject *ItemRecord_false(ItemRecord *r, void *c) { Py_RETURN_FALSE; }
static PyObject *ItemRecord_encoded_key(ItemRecord *r, void *c) { return body_copy(r->key); }
static PyObject *ItemRecord_encoded_value(ItemRecord *r, void *c) { return body_copy(r->value); }

/* In RECORD_FIELDS order. */
static PyGetSetDef ItemRecord_getset[] = {
    {"topic", (getter)ItemRecord_topic, NULL, NULL, NULL},
    {"schema", (getter)ItemRecord_key_fields, NULL, "the writer's schema handle", NULL},
    {"key", (getter)ItemRecord_key, NULL, "the key attributes in DynamoDB JSON, built from encoded_key", NULL},
    {"value", (getter)ItemRecord_none, NULL, "None: the item is in encoded_value only", NULL},
    {"position", (getter)ItemRecord_source, NULL, "the writer's source dict (shared by its records)", NULL},
    {"ts_ms", (getter)ItemRecord_ts_ms, NULL, NULL, NULL},
    {"tombstone", (getter)ItemRecord_false, NULL, NULL, NULL},
    {"encoded_key", (getter)ItemRecord_encoded_key, NULL, "the Avro key body (a copy)", NULL},
    {"encoded_value", (getter)ItemRecord_encoded_value, NULL, "the Avro value body (a copy)", NULL},
    /* not fields: ChangeRecord's views */
    {"table", (getter)ItemRecord_table, NULL, NULL, NULL},
    {"key_fields", (getter)ItemRecord_schema_key_fields, NULL, "schema.key_fields", NULL},
    {"op", (getter)ItemRecord_op, NULL, NULL, NULL},
    {"before", (getter)ItemRecord_none, NULL, "None", NULL},
    {"after", (getter)ItemRecord_none, NULL, "None: the item is in encoded_value only", NULL},
    {"source", (getter)ItemRecord_source, NULL, "position", NULL},
    {NULL},
};

static void
ItemRecord_dealloc(ItemRecord *r)
{
    Py_DECREF(r->w);
    Py_DECREF(r->ts_ms);
    Py_DECREF(r->key);
    Py_DECREF(r->value);
    Py_XDECREF(r->schema);
    PyObject_Free(r);
}

static PyObject *
ItemRecord_repr(ItemRecord *r)
{
    return PyUnicode_FromFormat("ItemRecord(topic=%R, table=%R, op=%R)", r->w->topic, r->w->table, r->w->op);
}

static PyTypeObject ItemRecordType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "connectors.dynamodb._transcode.ItemRecord",
    .tp_basicsize = sizeof(ItemRecord),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One snapshot item, encoded: bridge.task.SourceRecord's fields, read-only.",
    .tp_dealloc = (destructor)ItemRecord_dealloc,
    .tp_repr = (reprfunc)ItemRecord_repr,
    .tp_getset = ItemRecord_getset,
};

static void
item_record_parts(PyObject *o, void **owner, PyObject **key, PyObject **value)
{
    ItemRecord *r = (ItemRecord *)o;
    *owner = r->schema ? (void *)r->schema : (void *)r->w; /* one framing header per schema */
    *key = r->key;
    *value = r->value;
}

/* frame() for ItemRecords of one writer; None when the list holds anything else. */
static PyObject *
frame_items(PyObject *module, PyObject *args)
{
    return frame_records(args, "O!y#y#:frame_items", "frame_items", &ItemRecordType, item_record_parts);
}

static PyMethodDef module_methods[] = {
    {"frame", frame, METH_VARARGS,
     "frame(records, key_header, value_header) -> (keys, values, payload) | None\n\n"
     "The Kafka messages of a list of StreamRecords from one transcoder, in Confluent wire format\n"
     "(values None for tombstones; payload: their total length); None when the list holds anything\n"
     "else (the caller frames it itself)."},
    {"nogil_cpu_ns", nogil_cpu_ns, METH_NOARGS,
     "nogil_cpu_ns() -> int: CPU time ItemWriter spent parsing and encoding with the GIL released."},
    {"frame_items", frame_items, METH_VARARGS,
     "frame_items(records, key_header, value_header) -> (keys, values, payload) | None\n\n"
     "frame() for the ItemRecords of one ItemWriter."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "connectors.dynamodb._transcode",
    "GetRecords JSON -> Avro in one pass (see connectors/dynamodb/transcode.py).", -1, module_methods,
};

#define INTERN(field, text)                                   \
    do {                                                      \
        if ((S.field = PyUnicode_InternFromString(text)) == NULL) \
            return NULL;                                      \
    } while (0)

PyMODINIT_FUNC
PyInit__transcode(void)
{
    INTERN(k_connector, "connector");
    INTERN(k_table, "table");
    INTERN(k_region, "region");
    INTERN(k_stream_arn, "stream_arn");
    INTERN(k_shard_id, "shard_id");
    INTERN(k_sequence_number, "sequence_number");
    INTERN(k_event_id, "event_id");
    INTERN(k_approximate_creation_ms, "approximate_creation_ms");
    INTERN(k_ttl_delete, "ttl_delete");
    INTERN(s_dynamodb, "dynamodb");
    INTERN(op_c, "c");
    INTERN(op_u, "u");
    INTERN(op_d, "d");
    INTERN(t_S, "S");
    INTERN(t_N, "N");
    INTERN(t_B, "B");
    if (PyType_Ready(&TranscoderType) < 0 || PyType_Ready(&StreamRecordType) < 0 || PyType_Ready(&TypedPlanType) < 0 ||
        PyType_Ready(&ItemWriterType) < 0 || PyType_Ready(&ItemRecordType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    PyObject *fields = PyTuple_New(NFIELDS);
    if (fields == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    for (int i = 0; i < NFIELDS; i++) {
        PyObject *f = PyUnicode_InternFromString(RECORD_FIELDS[i]);
        if (f == NULL) {
            Py_DECREF(fields);
            Py_DECREF(m);
            return NULL;
        }
        PyTuple_SET_ITEM(fields, i, f);
    }
    if (PyModule_AddObjectRef(m, "Transcoder", (PyObject *)&TranscoderType) < 0 ||
        PyModule_AddObjectRef(m, "StreamRecord", (PyObject *)&StreamRecordType) < 0 ||
        PyModule_AddObjectRef(m, "TypedPlan", (PyObject *)&TypedPlanType) < 0 ||
        PyModule_AddObjectRef(m, "ItemWriter", (PyObject *)&ItemWriterType) < 0 ||
        PyModule_AddObjectRef(m, "ItemRecord", (PyObject *)&ItemRecordType) < 0 ||
        PyModule_AddIntConstant(m, "ABI", ABI) < 0 ||
        PyModule_AddIntConstant(m, "MAX_ATTRIBUTE_DEPTH", MAX_AV_DEPTH) < 0 ||
        PyModule_AddObject(m, "RECORD_FIELDS", fields) < 0) {
        Py_XDECREF(fields);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
