/* streams._hmac: the record authenticity tag (streams/envelope.py) in C.
 *
 * Why: the enforcement runner checks the HMAC-SHA256 tag of every raw record it admits.
 * In Python that is seven calls on hashlib objects (~1.2 us per record here); the hashing
 * itself is a fraction of it. This type keeps the key's inner and outer SHA-256 states
 * (RFC 2104 ipad/opad), computed once, and per record copies them, hashes participant,
 * product, event time and payload joined by NUL bytes, and compares in constant time.
 * It gives the same bytes as streams.envelope.PyTagger and hmac.digest (tests check).
 * The same key states make the tags of the mesh's deliveries (tag_deliveries, one call per
 * contract and batch; streams/delivery.py has the reference and the consumer's check).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED  /* SHA256_CTX: a plain struct copy per record, no EVP allocation */
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define TAG_BYTES 16

typedef struct {
    PyObject_HEAD
    SHA256_CTX inner, outer;
} Tagger;

static int Tagger_init(Tagger *self, PyObject *args, PyObject *kw) {
    Py_buffer key;
    if (!PyArg_ParseTuple(args, "y*:Tagger", &key)) return -1;
    unsigned char block[64] = {0}, pad[64];
    if (key.len > 64) SHA256(key.buf, key.len, block);
    else memcpy(block, key.buf, key.len);
    PyBuffer_Release(&key);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x36;
    SHA256_Init(&self->inner);
    SHA256_Update(&self->inner, pad, 64);
    for (int i = 0; i < 64; i++) pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&self->outer);
    SHA256_Update(&self->outer, pad, 64);
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
    return 0;
}

/* The full 32-byte HMAC of n byte strings joined by NUL bytes. */
static void mac_parts(Tagger *self, const char *const *ptrs, const Py_ssize_t *lens, int n,
                      unsigned char out[SHA256_DIGEST_LENGTH]) {
    SHA256_CTX ctx = self->inner;
    for (int i = 0; i < n; i++) {
        if (i) SHA256_Update(&ctx, "", 1);
        SHA256_Update(&ctx, ptrs[i], lens[i]);
    }
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_Final(inner, &ctx);
    ctx = self->outer;
    SHA256_Update(&ctx, inner, sizeof inner);
    SHA256_Final(out, &ctx);
}

static int not_bytes(PyObject *o, const char *what) {
    if (PyBytes_Check(o)) return 0;
    PyErr_Format(PyExc_TypeError, "%s: expected bytes, got %.100s", what, Py_TYPE(o)->tp_name);
    return -1;
}

/* The full 32-byte HMAC of participant \0 product \0 event_time \0 payload. */
static int mac(Tagger *self, PyObject *const *parts, unsigned char out[SHA256_DIGEST_LENGTH]) {
    const char *ptrs[4];
    Py_ssize_t lens[4];
    for (int i = 0; i < 4; i++) {
        if (not_bytes(parts[i], "tag part") < 0) return -1;
        ptrs[i] = PyBytes_AS_STRING(parts[i]);
        lens[i] = PyBytes_GET_SIZE(parts[i]);
    }
    mac_parts(self, ptrs, lens, 4, out);
    return 0;
}

static int four(Py_ssize_t nargs, Py_ssize_t want, const char *name) {
    if (nargs == want) return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments, %zd given", name, want, nargs);
    return -1;
}

static PyObject *Tagger_tag(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    if (four(nargs, 4, "tag") < 0 || mac(self, args, d) < 0) return NULL;
    return PyBytes_FromStringAndSize((const char *)d, TAG_BYTES);
}

static const char HEX[] = "0123456789abcdef";

static void to_hex(const unsigned char *d, char *out) {
    for (int i = 0; i < TAG_BYTES; i++) {
        out[2 * i] = HEX[d[i] >> 4];
        out[2 * i + 1] = HEX[d[i] & 15];
    }
}

static PyObject *Tagger_tag_hex(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    char hex[2 * TAG_BYTES];
    if (four(nargs, 4, "tag_hex") < 0 || mac(self, args, d) < 0) return NULL;
    to_hex(d, hex);
    return PyUnicode_FromStringAndSize(hex, sizeof hex);
}

/* matches(participant, product, event_time, payload, claimed, start): whether claimed[start:]
 * is exactly the lower-case hex tag, compared in constant time. */
static PyObject *Tagger_matches(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    unsigned char d[SHA256_DIGEST_LENGTH];
    char hex[2 * TAG_BYTES];
    if (four(nargs, 6, "matches") < 0) return NULL;
    if (!PyBytes_Check(args[4])) {
        PyErr_Format(PyExc_TypeError, "claimed tag: expected bytes, got %.100s", Py_TYPE(args[4])->tp_name);
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[5]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    if (mac(self, args, d) < 0) return NULL;
    Py_ssize_t n = PyBytes_GET_SIZE(args[4]);
    if (start < 0 || n - start != (Py_ssize_t)sizeof hex) Py_RETURN_FALSE;
    to_hex(d, hex);
    return PyBool_FromLong(CRYPTO_memcmp(hex, PyBytes_AS_STRING(args[4]) + start, sizeof hex) == 0);
}

/* The value (bytes) of the header pair at `at` of a record's header list. */
static PyObject *header_value(PyObject *hs, Py_ssize_t at) {
    if (at < 0 || at >= PyList_GET_SIZE(hs)) {
        PyErr_Format(PyExc_IndexError, "a delivery has no header at %zd", at);
        return NULL;
    }
    PyObject *pair = PyList_GET_ITEM(hs, at);
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 || not_bytes(PyTuple_GET_ITEM(pair, 1), "header value") < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "a header is not a (name, bytes) pair");
        return NULL;
    }
    return PyTuple_GET_ITEM(pair, 1);
}

/* tag_deliveries(contract, timestamp_ms, payloads, keys, headers, ref_at, trace_at, name):
 * the delivery tag (streams/delivery.py, tag_deliveries_py is the reference) of each of one
 * contract's deliveries in a batch: hex of HMAC over contract \0 cm.src \0 key \0 timestamp
 * \0 traceparent \0 payload, cm.src and traceparent read from the record's header list at
 * ref_at and trace_at. Appends (name, tag) to each header list; returns the tags, None where
 * the payload is None (the record is not delivered). Why in C: one call per contract and
 * batch instead of a format, a call and an append per delivery (bench/RESULTS.md). */
static PyObject *Tagger_tag_deliveries(Tagger *self, PyObject *const *args, Py_ssize_t nargs) {
    if (four(nargs, 8, "tag_deliveries") < 0) return NULL;
    PyObject *contract = args[0], *payloads = args[2], *keys = args[3], *headers = args[4], *name = args[7];
    long long ts = PyLong_AsLongLong(args[1]);
    Py_ssize_t ref_at = PyLong_AsSsize_t(args[5]), trace_at = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred() || not_bytes(contract, "contract") < 0) return NULL;
    if (!PyList_Check(payloads) || !PyList_Check(keys) || !PyList_Check(headers)) {
        PyErr_SetString(PyExc_TypeError, "payloads, keys and headers must be lists");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(payloads);
    if (PyList_GET_SIZE(keys) != n || PyList_GET_SIZE(headers) != n) {
        PyErr_SetString(PyExc_ValueError, "payloads, keys and headers differ in length");
        return NULL;
    }
    char stamp[32];
    int stamp_len = snprintf(stamp, sizeof stamp, "%lld", ts);
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *payload = PyList_GET_ITEM(payloads, i);
        if (payload == Py_None) {
            PyList_SET_ITEM(out, i, Py_NewRef(Py_None));
            continue;
        }
        PyObject *key = PyList_GET_ITEM(keys, i), *hs = PyList_GET_ITEM(headers, i), *ref, *trace;
        if (!PyList_Check(hs)) {
            PyErr_SetString(PyExc_TypeError, "a delivery's headers must be a list");
            goto fail;
        }
        if ((ref = header_value(hs, ref_at)) == NULL || (trace = header_value(hs, trace_at)) == NULL
            || not_bytes(payload, "payload") < 0 || (key != Py_None && not_bytes(key, "key") < 0)) goto fail;
        const char *ptrs[6] = {PyBytes_AS_STRING(contract), PyBytes_AS_STRING(ref),
                               key == Py_None ? "" : PyBytes_AS_STRING(key), stamp, PyBytes_AS_STRING(trace),
                               PyBytes_AS_STRING(payload)};
        Py_ssize_t lens[6] = {PyBytes_GET_SIZE(contract), PyBytes_GET_SIZE(ref),
                              key == Py_None ? 0 : PyBytes_GET_SIZE(key), stamp_len, PyBytes_GET_SIZE(trace),
                              PyBytes_GET_SIZE(payload)};
        unsigned char d[SHA256_DIGEST_LENGTH];
        mac_parts(self, ptrs, lens, 6, d);
        PyObject *tag = PyBytes_FromStringAndSize(NULL, 2 * TAG_BYTES);
        if (tag == NULL) goto fail;
        to_hex(d, PyBytes_AS_STRING(tag));
        PyList_SET_ITEM(out, i, tag);
        PyObject *pair = PyTuple_Pack(2, name, tag);
        if (pair == NULL) goto fail;
        int appended = PyList_Append(hs, pair);
        Py_DECREF(pair);
        if (appended < 0) goto fail;
    }
    return out;
fail:
    Py_DECREF(out);  /* (PyList_New fills with NULL: the slots not yet set are skipped) */
    return NULL;
}

static PyMethodDef Tagger_methods[] = {
    {"tag", (PyCFunction)(void (*)(void))Tagger_tag, METH_FASTCALL,
     "tag(participant, product, event_time, payload) -> the 16-byte tag"},
    {"tag_hex", (PyCFunction)(void (*)(void))Tagger_tag_hex, METH_FASTCALL,
     "tag_hex(participant, product, event_time, payload) -> the tag as lower-case hex"},
    {"matches", (PyCFunction)(void (*)(void))Tagger_matches, METH_FASTCALL,
     "matches(participant, product, event_time, payload, claimed, start) -> claimed[start:] is the hex tag"},
    {"tag_deliveries", (PyCFunction)(void (*)(void))Tagger_tag_deliveries, METH_FASTCALL,
     "tag_deliveries(contract, timestamp_ms, payloads, keys, headers, ref_at, trace_at, name) -> the hex tags"},
    {NULL},
};

static void Tagger_dealloc(Tagger *self) {
    OPENSSL_cleanse(&self->inner, sizeof self->inner);
    OPENSSL_cleanse(&self->outer, sizeof self->outer);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject TaggerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "streams._hmac.Tagger",
    .tp_doc = "Tagger(key): HMAC-SHA256 record tags with the key's pad states prepared once",
    .tp_basicsize = sizeof(Tagger),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Tagger_init,
    .tp_dealloc = (destructor)Tagger_dealloc,
    .tp_methods = Tagger_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streams._hmac", "The record authenticity tag in C (see streams/envelope.py).", -1, NULL,
};

PyMODINIT_FUNC PyInit__hmac(void) {
    if (PyType_Ready(&TaggerType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "Tagger", (PyObject *)&TaggerType) < 0) Py_CLEAR(m);
    return m;
}
