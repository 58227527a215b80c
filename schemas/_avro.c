/* schemas._avro: Avro binary decoding and encoding in C, driven by a schema program.
 *
 * Why: the enforcement runner decodes every raw record it admits and encodes every record
 * it delivers, once per contract; fastavro walks the schema in Python for every record
 * (schemas/native.py has the figures). This module walks the schema, given as a small tuple
 * program (schemas/native.py: program()), in C. fastavro stays the reference:
 * tests/schemas/test_native.py checks that this reads what fastavro reads and writes its bytes.
 *
 * Program nodes (tuples):
 *   (NULL,) (BOOLEAN,) (INT,) (LONG,) (FLOAT,) (DOUBLE,) (BYTES,) (STRING,)
 *   (ENUM, symbols: tuple[str])             (FIXED, size)
 *   (UNION_NULL, null_index, node)          the union [null, X] or [X, null]
 *   (ARRAY, node)                           (MAP, node)
 *   (RECORD, names: tuple[str], nodes: tuple, defaults: tuple)   MISSING marks no default
 *
 * Decoding is strict where the spec is (boolean byte, enum index, union branch, negative
 * length, varint over 64 bits, UTF-8) and, unlike the Python reader, a buffer that ends
 * early raises instead of returning an end position past the buffer: any error means the
 * bytes are not a record, and the caller (admission) asks the Python reader why.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum { OP_NULL, OP_BOOLEAN, OP_INT, OP_LONG, OP_FLOAT, OP_DOUBLE, OP_BYTES, OP_STRING, OP_ENUM,
       OP_FIXED, OP_UNION_NULL, OP_ARRAY, OP_MAP, OP_RECORD, OP_COUNT };

typedef struct Node {
    int op;
    int empty;                /* an item of this type can take no bytes (see read_block) */
    Py_ssize_t n;             /* FIXED: size; ENUM: symbols; RECORD: fields; UNION_NULL: null index */
    PyObject *symbols;        /* ENUM: tuple of str */
    PyObject *index;          /* ENUM: dict symbol -> encoded index (bytes) */
    PyObject **names;         /* RECORD: field names */
    PyObject **defaults;      /* RECORD: default values, NULL where the field has none */
    PyObject *allowed;        /* RECORD: frozenset of the names */
    struct Node *children;    /* RECORD: n; UNION_NULL, ARRAY, MAP: 1 */
} Node;

static PyObject *MISSING;  /* the marker for "no default", given by schemas/native.py */

static void node_clear(Node *node) {
    Py_CLEAR(node->symbols);
    Py_CLEAR(node->index);
    Py_CLEAR(node->allowed);
    if (node->names) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->names[i]);
        PyMem_Free(node->names);
        node->names = NULL;
    }
    if (node->defaults) {
        for (Py_ssize_t i = 0; i < node->n; i++) Py_XDECREF(node->defaults[i]);
        PyMem_Free(node->defaults);
        node->defaults = NULL;
    }
    if (node->children) {
        Py_ssize_t k = node->op == OP_RECORD ? node->n : 1;
        for (Py_ssize_t i = 0; i < k; i++) node_clear(&node->children[i]);
        PyMem_Free(node->children);
        node->children = NULL;
    }
}

static int node_build(Node *node, PyObject *spec, int depth);

static int child_build(Node *node, PyObject *spec, int depth) {
    node->children = PyMem_Calloc(1, sizeof(Node));
    if (!node->children) { PyErr_NoMemory(); return -1; }
    return node_build(node->children, spec, depth + 1);
}

static int node_build_inner(Node *node, PyObject *spec, int depth) {
    memset(node, 0, sizeof(Node));
    if (depth > 64) { PyErr_SetString(PyExc_ValueError, "schema program nested too deep"); return -1; }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) < 1) {
        PyErr_SetString(PyExc_TypeError, "a program node is a non-empty tuple");
        return -1;
    }
    long op = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (op == -1 && PyErr_Occurred()) return -1;
    if (op < 0 || op >= OP_COUNT) { PyErr_Format(PyExc_ValueError, "unknown program op %ld", op); return -1; }
    node->op = (int)op;
    Py_ssize_t size = PyTuple_GET_SIZE(spec);
    switch (op) {
    case OP_ENUM: {
        PyObject *syms = size == 2 ? PyTuple_GET_ITEM(spec, 1) : NULL;
        if (!syms || !PyTuple_Check(syms)) { PyErr_SetString(PyExc_TypeError, "ENUM needs a symbols tuple"); return -1; }
        node->symbols = Py_NewRef(syms);
        node->n = PyTuple_GET_SIZE(syms);
        node->index = PyDict_New();
        if (!node->index) return -1;
        for (Py_ssize_t i = 0; i < node->n; i++) {
            uint8_t buf[10];
            int k = 0;
            uint64_t z = (uint64_t)i << 1;
            while (z >= 0x80) { buf[k++] = (uint8_t)(z | 0x80); z >>= 7; }
            buf[k++] = (uint8_t)z;
            PyObject *enc = PyBytes_FromStringAndSize((const char *)buf, k);
            if (!enc || PyDict_SetItem(node->index, PyTuple_GET_ITEM(syms, i), enc) < 0) { Py_XDECREF(enc); return -1; }
            Py_DECREF(enc);
        }
        return 0;
    }
    case OP_FIXED:
        if (size != 2) { PyErr_SetString(PyExc_TypeError, "FIXED needs a size"); return -1; }
        node->n = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        if (node->n < 0) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "negative fixed size"); return -1; }
        return 0;
    case OP_UNION_NULL:
        if (size != 3) { PyErr_SetString(PyExc_TypeError, "UNION_NULL needs (null index, node)"); return -1; }
        node->n = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
        if (node->n != 0 && node->n != 1) { if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "null index is 0 or 1"); return -1; }
        return child_build(node, PyTuple_GET_ITEM(spec, 2), depth);
    case OP_ARRAY:
    case OP_MAP:
        if (size != 2) { PyErr_SetString(PyExc_TypeError, "ARRAY/MAP needs an item node"); return -1; }
        return child_build(node, PyTuple_GET_ITEM(spec, 1), depth);
    case OP_RECORD: {
        if (size != 4) { PyErr_SetString(PyExc_TypeError, "RECORD needs (names, nodes, defaults)"); return -1; }
        PyObject *names = PyTuple_GET_ITEM(spec, 1), *nodes = PyTuple_GET_ITEM(spec, 2), *dfl = PyTuple_GET_ITEM(spec, 3);
        if (!PyTuple_Check(names) || !PyTuple_Check(nodes) || !PyTuple_Check(dfl)
                || PyTuple_GET_SIZE(nodes) != PyTuple_GET_SIZE(names) || PyTuple_GET_SIZE(dfl) != PyTuple_GET_SIZE(names)) {
            PyErr_SetString(PyExc_TypeError, "RECORD needs three tuples of one length");
            return -1;
        }
        Py_ssize_t n = PyTuple_GET_SIZE(names);
        node->names = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
        node->defaults = PyMem_Calloc(n ? n : 1, sizeof(PyObject *));
        node->children = PyMem_Calloc(n ? n : 1, sizeof(Node));
        if (!node->names || !node->defaults || !node->children) { PyErr_NoMemory(); return -1; }
        node->n = n;  /* set before the children, so node_clear frees what was built */
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *name = PyTuple_GET_ITEM(names, i);
            if (!PyUnicode_CheckExact(name)) { PyErr_SetString(PyExc_TypeError, "field names are str"); return -1; }
            Py_INCREF(name);
            PyUnicode_InternInPlace(&name);
            node->names[i] = name;
            PyObject *d = PyTuple_GET_ITEM(dfl, i);
            node->defaults[i] = d == MISSING ? NULL : Py_NewRef(d);
        }
        for (Py_ssize_t i = 0; i < n; i++)
            if (node_build(&node->children[i], PyTuple_GET_ITEM(nodes, i), depth + 1) < 0) return -1;
        node->allowed = PyFrozenSet_New(names);
        return node->allowed ? 0 : -1;
    }
    default:
        return 0;
    }
}

/* Whether an item of this type can take no bytes at all (then a block count is not bounded
 * by the bytes left): decided once here, for the children already built. */
static int takes_no_bytes(const Node *node) {
    if (node->op == OP_NULL || (node->op == OP_FIXED && node->n == 0)) return 1;
    if (node->op != OP_RECORD) return 0;
    for (Py_ssize_t i = 0; i < node->n; i++)
        if (!node->children[i].empty) return 0;
    return 1;
}

static int node_build(Node *node, PyObject *spec, int depth) {
    if (node_build_inner(node, spec, depth) < 0) return -1;
    node->empty = takes_no_bytes(node);
    return 0;
}

/* ---- decoding -------------------------------------------------------------------------- */

typedef struct { const uint8_t *b; Py_ssize_t len, pos; } Reader;

/* `need` bytes from the current position are not all there */
static int short_buffer(Reader *r, Py_ssize_t need) {
    PyErr_Format(PyExc_ValueError, "buffer ends at %zd, %zd more byte(s) needed", r->len, need - (r->len - r->pos));
    return -1;
}

static int read_varint(Reader *r, int64_t *out) {
    uint64_t n = 0;
    for (int shift = 0;; shift += 7) {
        if (r->pos >= r->len) return short_buffer(r, 1);
        uint8_t c = r->b[r->pos++];
        if (shift == 63) {
            if (c & 0x80) { PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes"); return -1; }
            if (c & 0x7E) { PyErr_SetString(PyExc_ValueError, "varint does not fit 64 bits"); return -1; }
        }
        n |= (uint64_t)(c & 0x7F) << shift;
        if (!(c & 0x80)) break;
    }
    *out = (int64_t)((n >> 1) ^ (~(n & 1) + 1));
    return 0;
}

/* A count that must not be negative (a length, an enum index). With `room`, it is a length
 * of bytes that must all be there. */
static int read_count(Reader *r, Py_ssize_t *out, const char *what, int room) {
    int64_t n;
    if (read_varint(r, &n) < 0) return -1;
    if (n < 0) { PyErr_Format(PyExc_ValueError, "negative %s %lld", what, (long long)n); return -1; }
    if (room && n > r->len - r->pos) return short_buffer(r, (Py_ssize_t)(n > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : n));
    *out = n > PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)n;
    return 0;
}

static PyObject *read_node(const Node *node, Reader *r);

static PyObject *read_block(const Node *node, Reader *r) {
    int is_map = node->op == OP_MAP;
    PyObject *out = is_map ? PyDict_New() : PyList_New(0);
    if (!out) return NULL;
    for (;;) {
        int64_t count;
        if (read_varint(r, &count) < 0) goto fail;
        if (count == 0) break;
        uint64_t items = (uint64_t)count;
        if (count < 0) {
            int64_t skip;
            items = ~items + 1;  /* -count, also for the most negative count */
            if (read_varint(r, &skip) < 0) goto fail;
        }
        /* every item takes at least one byte, or (items of no bytes) at most 2^20 of them */
        if (node->children->empty ? items > (1u << 20) : items > (uint64_t)(r->len - r->pos)) {
            PyErr_Format(PyExc_ValueError, "block of %llu items cannot be in %zd bytes", (unsigned long long)items,
                         r->len - r->pos);
            goto fail;
        }
        for (uint64_t i = 0; i < items; i++) {
            if (is_map) {
                Py_ssize_t n;
                if (read_count(r, &n, "length", 1) < 0) goto fail;
                PyObject *k = PyUnicode_DecodeUTF8((const char *)r->b + r->pos, n, NULL);
                if (!k) goto fail;
                r->pos += n;
                PyObject *x = read_node(node->children, r);
                if (!x || PyDict_SetItem(out, k, x) < 0) { Py_DECREF(k); Py_XDECREF(x); goto fail; }
                Py_DECREF(k);
                Py_DECREF(x);
            } else {
                PyObject *x = read_node(node->children, r);
                if (!x || PyList_Append(out, x) < 0) { Py_XDECREF(x); goto fail; }
                Py_DECREF(x);
            }
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyObject *read_node(const Node *node, Reader *r) {
    switch (node->op) {
    case OP_NULL:
        Py_RETURN_NONE;
    case OP_BOOLEAN: {
        if (r->pos >= r->len) { short_buffer(r, 1); return NULL; }
        uint8_t c = r->b[r->pos++];
        if (c > 1) { PyErr_Format(PyExc_ValueError, "boolean byte %u", c); return NULL; }
        return Py_NewRef(c ? Py_True : Py_False);
    }
    case OP_INT:
    case OP_LONG: {
        int64_t v;
        if (r->pos < r->len && r->b[r->pos] < 0x80) {  /* one byte: the common small value */
            uint8_t c = r->b[r->pos++];
            return PyLong_FromLong((long)(c >> 1) ^ -(long)(c & 1));
        }
        if (read_varint(r, &v) < 0) return NULL;
        return PyLong_FromLongLong(v);
    }
    case OP_FLOAT:
    case OP_DOUBLE: {
        Py_ssize_t n = node->op == OP_FLOAT ? 4 : 8;
        if (r->len - r->pos < n) { short_buffer(r, n); return NULL; }
        const char *p = (const char *)r->b + r->pos;
        double d = n == 4 ? PyFloat_Unpack4(p, 1) : PyFloat_Unpack8(p, 1);
        if (d == -1.0 && PyErr_Occurred()) return NULL;
        r->pos += n;
        return PyFloat_FromDouble(d);
    }
    case OP_BYTES:
    case OP_STRING: {
        Py_ssize_t n;
        if (read_count(r, &n, "length", 1) < 0) return NULL;
        const char *p = (const char *)r->b + r->pos;
        r->pos += n;
        return node->op == OP_STRING ? PyUnicode_DecodeUTF8(p, n, NULL) : PyBytes_FromStringAndSize(p, n);
    }
    case OP_ENUM: {
        Py_ssize_t i;
        if (read_count(r, &i, "enum index", 0) < 0) return NULL;
        if (i >= node->n) { PyErr_Format(PyExc_ValueError, "enum index %zd past %zd symbols", i, node->n); return NULL; }
        return Py_NewRef(PyTuple_GET_ITEM(node->symbols, i));
    }
    case OP_FIXED: {
        if (r->len - r->pos < node->n) { short_buffer(r, node->n); return NULL; }
        const char *p = (const char *)r->b + r->pos;
        r->pos += node->n;
        return PyBytes_FromStringAndSize(p, node->n);
    }
    case OP_UNION_NULL: {
        if (r->pos >= r->len) { short_buffer(r, 1); return NULL; }
        uint8_t c = r->b[r->pos++];
        if (c == 2 * node->n) Py_RETURN_NONE;
        if (c == 2 * (1 - node->n)) return read_node(node->children, r);
        PyErr_Format(PyExc_ValueError, "union branch byte %u", c);
        return NULL;
    }
    case OP_ARRAY:
    case OP_MAP:
        return read_block(node, r);
    case OP_RECORD: {
        PyObject *d = _PyDict_NewPresized(node->n);
        if (!d) return NULL;
        for (Py_ssize_t i = 0; i < node->n; i++) {
            PyObject *x = read_node(&node->children[i], r);
            if (!x || PyDict_SetItem(d, node->names[i], x) < 0) { Py_XDECREF(x); Py_DECREF(d); return NULL; }
            Py_DECREF(x);
        }
        return d;
    }
    }
    PyErr_SetString(PyExc_SystemError, "bad program op");
    return NULL;
}

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Node root;
} Decoder;

static PyObject *Decoder_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 2 || (kwnames && PyTuple_GET_SIZE(kwnames))) {
        PyErr_SetString(PyExc_TypeError, "decode(buf, pos) takes two positional arguments");
        return NULL;
    }
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    if (pos == -1 && PyErr_Occurred()) return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *result = NULL;
    if (pos < 0 || pos > view.len) {
        PyErr_Format(PyExc_IndexError, "position %zd outside a buffer of %zd bytes", pos, view.len);
    } else {
        Reader r = {(const uint8_t *)view.buf, view.len, pos};
        PyObject *rec = read_node(&((Decoder *)self)->root, &r);
        if (rec) {
            PyObject *end = PyLong_FromSsize_t(r.pos);
            if (end) result = PyTuple_Pack(2, rec, end);
            Py_XDECREF(end);
            Py_DECREF(rec);
        }
    }
    PyBuffer_Release(&view);
    return result;
}

static int program_init(Node *root, vectorcallfunc *slot, vectorcallfunc fn, PyObject *program) {
    node_clear(root);
    if (node_build(root, program, 0) < 0) { node_clear(root); return -1; }
    *slot = fn;
    return 0;
}

static int Decoder_init(Decoder *self, PyObject *args, PyObject *kw) {
    PyObject *program;
    if (!PyArg_ParseTuple(args, "O:Decoder", &program)) return -1;
    if (program_init(&self->root, &self->vectorcall, Decoder_vectorcall, program) < 0) return -1;
    if (self->root.op != OP_RECORD) { PyErr_SetString(PyExc_ValueError, "the program's root is a RECORD"); return -1; }
    return 0;
}

static void Decoder_dealloc(Decoder *self) {
    node_clear(&self->root);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro.Decoder",
    .tp_doc = "Decoder(program)(buf, pos) -> (record dict, position after it)",
    .tp_basicsize = sizeof(Decoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Decoder_init,
    .tp_dealloc = (destructor)Decoder_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Decoder, vectorcall),
};

/* ---- encoding -------------------------------------------------------------------------- */

typedef struct { char *data; Py_ssize_t len, cap; char stack[512]; } Writer;

static int grow(Writer *w, Py_ssize_t need) {
    if (w->len + need <= w->cap) return 0;
    Py_ssize_t cap = w->cap * 2;
    while (cap < w->len + need) cap *= 2;
    char *data = w->data == w->stack ? PyMem_Malloc(cap) : PyMem_Realloc(w->data, cap);
    if (!data) { PyErr_NoMemory(); return -1; }
    if (w->data == w->stack) memcpy(data, w->stack, w->len);
    w->data = data;
    w->cap = cap;
    return 0;
}

static inline int put(Writer *w, const void *p, Py_ssize_t n) {
    if (grow(w, n) < 0) return -1;
    memcpy(w->data + w->len, p, n);
    w->len += n;
    return 0;
}

static inline int put_zigzag(Writer *w, int64_t v) {
    if (grow(w, 10) < 0) return -1;
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) { w->data[w->len++] = (char)(z | 0x80); z >>= 7; }
    w->data[w->len++] = (char)z;
    return 0;
}

static int type_error(const char *expected, PyObject *v) {
    PyErr_Format(PyExc_TypeError, "expected %s, got %.100s", expected, Py_TYPE(v)->tp_name);
    return -1;
}

static int write_node(const Node *node, PyObject *v, Writer *w);

static int write_fields(const Node *node, PyObject *const *values, Writer *w) {
    for (Py_ssize_t i = 0; i < node->n; i++)
        if (write_node(&node->children[i], values[i], w) < 0) return -1;
    return 0;
}

static int write_record(const Node *node, PyObject *v, Writer *w) {
    if (!PyDict_Check(v)) return type_error("a dict record", v);
    PyObject *key, *value;
    Py_ssize_t it = 0;
    while (PyDict_Next(v, &it, &key, &value)) {
        int known = PySet_Contains(node->allowed, key);
        if (known < 0) return -1;
        if (!known) {
            PyErr_Format(PyExc_ValueError, "unknown field(s): %R", key);
            return -1;
        }
    }
    for (Py_ssize_t i = 0; i < node->n; i++) {
        PyObject *x = PyDict_GetItemWithError(v, node->names[i]);
        if (!x) {
            if (PyErr_Occurred()) return -1;
            if (!node->defaults[i]) { PyErr_SetObject(PyExc_KeyError, node->names[i]); return -1; }
            x = node->defaults[i];
        }
        if (write_node(&node->children[i], x, w) < 0) return -1;
    }
    return 0;
}

static int write_node(const Node *node, PyObject *v, Writer *w) {
    switch (node->op) {
    case OP_NULL:
        return v == Py_None ? 0 : type_error("null", v);
    case OP_BOOLEAN:
        if (v == Py_True) return put(w, "\x01", 1);
        if (v == Py_False) return put(w, "\x00", 1);
        return type_error("a boolean", v);
    case OP_INT:
    case OP_LONG: {
        if (!PyLong_Check(v) || PyBool_Check(v)) return type_error("an integer", v);  /* an Avro int is no boolean */
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (x == -1 && PyErr_Occurred()) return -1;
        if (overflow || (node->op == OP_INT && (x < INT32_MIN || x > INT32_MAX))) {
            PyErr_Format(PyExc_OverflowError, "%R does not fit %s", v, node->op == OP_INT ? "an int" : "a long");
            return -1;
        }
        return put_zigzag(w, (int64_t)x);
    }
    case OP_FLOAT:
    case OP_DOUBLE: {
        if (PyBool_Check(v)) return type_error("a number", v);
        double x = PyFloat_AsDouble(v);
        if (x == -1.0 && PyErr_Occurred()) return -1;
        int n = node->op == OP_FLOAT ? 4 : 8;
        if (grow(w, n) < 0) return -1;
        if ((n == 4 ? PyFloat_Pack4(x, w->data + w->len, 1) : PyFloat_Pack8(x, w->data + w->len, 1)) < 0) return -1;
        w->len += n;
        return 0;
    }
    case OP_BYTES: {
        const char *p;
        Py_ssize_t n;
        if (PyBytes_Check(v)) { p = PyBytes_AS_STRING(v); n = PyBytes_GET_SIZE(v); }
        else if (PyByteArray_Check(v)) { p = PyByteArray_AS_STRING(v); n = PyByteArray_GET_SIZE(v); }
        else return type_error("bytes", v);
        if (put_zigzag(w, n) < 0) return -1;
        return put(w, p, n);
    }
    case OP_STRING: {
        if (!PyUnicode_Check(v)) return type_error("a string", v);
        Py_ssize_t n;
        const char *p = PyUnicode_AsUTF8AndSize(v, &n);
        if (!p) return -1;
        if (put_zigzag(w, n) < 0) return -1;
        return put(w, p, n);
    }
    case OP_ENUM: {
        PyObject *enc = PyDict_GetItemWithError(node->index, v);
        if (!enc) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, v);
            return -1;
        }
        return put(w, PyBytes_AS_STRING(enc), PyBytes_GET_SIZE(enc));
    }
    case OP_FIXED: {
        Py_buffer view;
        if (!PyBytes_Check(v) && !PyByteArray_Check(v)) return type_error("bytes", v);
        if (PyObject_GetBuffer(v, &view, PyBUF_SIMPLE) < 0) return -1;
        int rc;
        if (view.len != node->n) {
            PyErr_Format(PyExc_ValueError, "fixed size %zd expected, got %zd bytes", node->n, view.len);
            rc = -1;
        } else {
            rc = put(w, view.buf, view.len);
        }
        PyBuffer_Release(&view);
        return rc;
    }
    case OP_UNION_NULL:
        if (v == Py_None) return put(w, node->n ? "\x02" : "\x00", 1);
        if (put(w, node->n ? "\x00" : "\x02", 1) < 0) return -1;
        return write_node(node->children, v, w);
    case OP_ARRAY: {
        PyObject *seq = PySequence_Fast(v, "expected an array (a list or tuple)");
        if (!seq) return -1;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        int rc = 0;
        if (n) {
            rc = put_zigzag(w, n);
            PyObject **items = PySequence_Fast_ITEMS(seq);
            for (Py_ssize_t i = 0; rc == 0 && i < n; i++) rc = write_node(node->children, items[i], w);
        }
        Py_DECREF(seq);
        return rc < 0 ? -1 : put(w, "\x00", 1);
    }
    case OP_MAP: {
        if (!PyDict_Check(v)) return type_error("a dict (map)", v);
        Py_ssize_t n = PyDict_GET_SIZE(v);
        if (n) {
            if (put_zigzag(w, n) < 0) return -1;
            PyObject *key, *value;
            Py_ssize_t it = 0;
            while (PyDict_Next(v, &it, &key, &value)) {
                if (!PyUnicode_Check(key)) return type_error("a string map key", key);
                Py_ssize_t kn;
                const char *kp = PyUnicode_AsUTF8AndSize(key, &kn);
                if (!kp || put_zigzag(w, kn) < 0 || put(w, kp, kn) < 0) return -1;
                if (write_node(node->children, value, w) < 0) return -1;
            }
        }
        return put(w, "\x00", 1);
    }
    case OP_RECORD:
        return write_record(node, v, w);
    }
    PyErr_SetString(PyExc_SystemError, "bad program op");
    return -1;
}

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Node root;
    PyObject *prefix;   /* bytes put before every body (a single-object header, or b"") */
    int positional;     /* called with the root record's field values instead of a dict */
} Encoder;

static PyObject *Encoder_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Encoder *self = (Encoder *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames && PyTuple_GET_SIZE(kwnames)) {
        PyErr_SetString(PyExc_TypeError, "encode() takes no keyword arguments");
        return NULL;
    }
    if (self->positional ? nargs != self->root.n : nargs != 1) {
        PyErr_Format(PyExc_TypeError, "encode() takes %zd positional argument(s), %zd given",
                     self->positional ? self->root.n : 1, nargs);
        return NULL;
    }
    Writer w;
    w.data = w.stack;
    w.len = 0;
    w.cap = sizeof(w.stack);
    int rc = put(&w, PyBytes_AS_STRING(self->prefix), PyBytes_GET_SIZE(self->prefix));
    if (rc == 0) rc = self->positional ? write_fields(&self->root, args, &w) : write_record(&self->root, args[0], &w);
    PyObject *out = rc < 0 ? NULL : PyBytes_FromStringAndSize(w.data, w.len);
    if (w.data != w.stack) PyMem_Free(w.data);
    return out;
}

static int Encoder_init(Encoder *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"program", "prefix", "positional", NULL};
    PyObject *program, *prefix = NULL;
    int positional = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|Sp:Encoder", kwlist, &program, &prefix, &positional)) return -1;
    if (program_init(&self->root, &self->vectorcall, Encoder_vectorcall, program) < 0) return -1;
    if (self->root.op != OP_RECORD) { PyErr_SetString(PyExc_ValueError, "the program's root is a RECORD"); return -1; }
    Py_XSETREF(self->prefix, prefix ? Py_NewRef(prefix) : PyBytes_FromStringAndSize("", 0));
    self->positional = positional;
    return self->prefix ? 0 : -1;
}

static void Encoder_dealloc(Encoder *self) {
    node_clear(&self->root);
    Py_XDECREF(self->prefix);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject EncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "schemas._avro.Encoder",
    .tp_doc = "Encoder(program, prefix=b'', positional=False): encode(record) or, positional,\n"
              "encode(v0, v1, ...) -> prefix + Avro binary body",
    .tp_basicsize = sizeof(Encoder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Encoder, vectorcall),
};

/* ---- module ---------------------------------------------------------------------------- */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "schemas._avro",
    "Avro binary decoding and encoding in C from a schema program (see schemas/native.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__avro(void) {
    if (PyType_Ready(&DecoderType) < 0 || PyType_Ready(&EncoderType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    MISSING = PyObject_New(PyObject, &PyBaseObject_Type);
    if (!MISSING || PyModule_AddObjectRef(m, "MISSING", MISSING) < 0
            || PyModule_AddObjectRef(m, "Decoder", (PyObject *)&DecoderType) < 0
            || PyModule_AddObjectRef(m, "Encoder", (PyObject *)&EncoderType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    static const char *names[] = {"NULL", "BOOLEAN", "INT", "LONG", "FLOAT", "DOUBLE", "BYTES", "STRING", "ENUM",
                                  "FIXED", "UNION_NULL", "ARRAY", "MAP", "RECORD"};
    for (int i = 0; i < OP_COUNT; i++)
        if (PyModule_AddIntConstant(m, names[i], i) < 0) { Py_DECREF(m); return NULL; }
    return m;
}
