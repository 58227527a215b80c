/* streams._hmac: the record authenticity tag (streams/envelope.py) in C.
 *
 * Why: the enforcement runner checks the HMAC-SHA256 tag of every raw record it admits.
 * In Python that is seven calls on hashlib objects (~1.2 us per record here); the hashing
 * itself is a fraction of it. This type keeps the key's inner and outer SHA-256 states
 * (RFC 2104 ipad/opad), computed once, and per record copies them, hashes participant,
 * product, event time and payload joined by NUL bytes, and compares in constant time.
 * It gives the same bytes as streams.envelope.PyTagger and hmac.digest (tests check).
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED  /* SHA256_CTX: a plain struct copy per record, no EVP allocation */
#include <Python.h>
#include <stddef.h>
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

/* The full 32-byte HMAC of participant \0 product \0 event_time \0 payload. */
static int mac(Tagger *self, PyObject *const *parts, unsigned char out[SHA256_DIGEST_LENGTH]) {
    SHA256_CTX ctx = self->inner;
    for (int i = 0; i < 4; i++) {
        if (!PyBytes_Check(parts[i])) {
            PyErr_Format(PyExc_TypeError, "expected bytes, got %.100s", Py_TYPE(parts[i])->tp_name);
            return -1;
        }
        if (i) SHA256_Update(&ctx, "", 1);
        SHA256_Update(&ctx, PyBytes_AS_STRING(parts[i]), PyBytes_GET_SIZE(parts[i]));
    }
    unsigned char inner[SHA256_DIGEST_LENGTH];
    SHA256_Final(inner, &ctx);
    ctx = self->outer;
    SHA256_Update(&ctx, inner, sizeof inner);
    SHA256_Final(out, &ctx);
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

static PyMethodDef Tagger_methods[] = {
    {"tag", (PyCFunction)(void (*)(void))Tagger_tag, METH_FASTCALL,
     "tag(participant, product, event_time, payload) -> the 16-byte tag"},
    {"tag_hex", (PyCFunction)(void (*)(void))Tagger_tag_hex, METH_FASTCALL,
     "tag_hex(participant, product, event_time, payload) -> the tag as lower-case hex"},
    {"matches", (PyCFunction)(void (*)(void))Tagger_matches, METH_FASTCALL,
     "matches(participant, product, event_time, payload, claimed, start) -> claimed[start:] is the hex tag"},
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
