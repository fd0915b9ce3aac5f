/*
 * fuzz_decode: libFuzzer target for the input decoder, the parser of untrusted record bytes.
 * Not built by default. The first input byte picks the decoder, the rest is the record value:
 *   0: plain Avro, reader schema (hand-written fast path)
 *   1: plain Avro, tests/data/schemas/event_v0.avsc writer (Avro-C resolved path)
 *   2: plain Avro, tests/data/schemas/event_v2.avsc writer (arrays, maps, enum by symbol)
 *   3: Confluent framing, schema ids 1 (event.avsc), 2 (v0), 3 (v2), 4 (incompatible)
 * Invariants checked beyond "no crash": a decoded event has NUL-terminated strings within their
 * caps and a non-empty user id, and it re-encodes to bytes that decode to the same struct.
 *
 * Build and run: docs/fuzzing.md (tests/fuzz/run.sh); seeds in tests/fuzz/corpus/decode/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode.h"
#include "event.h"

#ifndef SSEG_SOURCE_DIR
#define SSEG_SOURCE_DIR "."
#endif

#define NDEC 4

static sseg_decoder_t *decs[NDEC];
static sseg_decoder_t *plain_check; /* re-decodes our own encoding */
static char dir[] = "/tmp/sseg_fuzz_registry.XXXXXX";

static void copy(const char *from, const char *to) {
        FILE *in = fopen(from, "r"), *out = fopen(to, "w");
        char buf[8192];
        size_t n;
        if (!in || !out)
                abort();
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                if (fwrite(buf, 1, n, out) != n)
                        abort();
        fclose(in);
        fclose(out);
}

static sseg_decoder_t *mk(sseg_in_format_t fmt, const char *schema_file, const char *dir) {
        sseg_decoder_opts_t o = {.format = fmt,
                                 .schema_file = schema_file,
                                 .registry_dir = dir,
                                 .max_skew_ms = 86400000,
                                 .max_record_bytes = 65536};
        char err[512];
        sseg_decoder_t *d = sseg_decoder_new(&o, NULL, err, sizeof(err));
        if (!d) {
                fprintf(stderr, "fuzz_decode: %s\n", err);
                abort();
        }
        return d;
}

/* Decoders live for the whole run; freed at exit so that LeakSanitizer's final check sees
 * only real leaks. The registry directory goes too. */
static void fini(void) {
        char p[sizeof(dir) + 16];
        for (int i = 0; i < NDEC; i++)
                sseg_decoder_destroy(decs[i]);
        sseg_decoder_destroy(plain_check);
        for (int i = 0; i < 4; i++) {
                snprintf(p, sizeof(p), "%s/%d.avsc", dir, i + 1);
                unlink(p);
        }
        rmdir(dir);
}

static void init(void) {
        const char *data = getenv("SSEG_TEST_DATA");
        char v0[1024], v2[1024], nu[1024], ev[1024], p[1100];
        snprintf(v0, sizeof(v0), "%s/schemas/event_v0.avsc",
                 data ? data : SSEG_SOURCE_DIR "/tests/data");
        snprintf(v2, sizeof(v2), "%s/schemas/event_v2.avsc",
                 data ? data : SSEG_SOURCE_DIR "/tests/data");
        snprintf(nu, sizeof(nu), "%s/schemas/event_no_user.avsc",
                 data ? data : SSEG_SOURCE_DIR "/tests/data");
        snprintf(ev, sizeof(ev), "%s/schemas/event.avsc", SSEG_SOURCE_DIR);
        if (!mkdtemp(dir))
                abort();
        const char *src[] = {ev, v0, v2, nu};
        for (int i = 0; i < 4; i++) {
                snprintf(p, sizeof(p), "%s/%d.avsc", dir, i + 1);
                copy(src[i], p);
        }
        decs[0] = mk(SSEG_IN_AVRO, NULL, NULL);
        decs[1] = mk(SSEG_IN_AVRO, v0, NULL);
        decs[2] = mk(SSEG_IN_AVRO, v2, NULL);
        decs[3] = mk(SSEG_IN_CONFLUENT, NULL, dir);
        plain_check = mk(SSEG_IN_AVRO, NULL, NULL);
        atexit(fini);
}

static void check_str(const char *s, size_t cap) {
        if (strnlen(s, cap + 1) > cap)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static int ready;
        if (!ready) {
                init();
                ready = 1;
        }
        if (size < 1)
                return 0;
        sseg_decoder_t *d = decs[data[0] % NDEC];
        sseg_event_t ev, again;
        char why[256];
        int retry = 0;
        /* Copy so that reads past the record are caught by ASan. */
        size_t n = size - 1;
        uint8_t *rec = malloc(n ? n : 1);
        memcpy(rec, data + 1, n);
        sseg_dlq_reason_t r =
            sseg_decoder_decode(d, rec, n, 1700000000000LL, &ev, &retry, why, sizeof(why));
        free(rec);
        if (retry || r < 0 || r >= SSEG_DLQ__CNT || strnlen(why, sizeof(why)) >= sizeof(why))
                abort();
        if (r != SSEG_DLQ_NONE)
                return 0;
        check_str(ev.event_id, SSEG_STR_MAX);
        check_str(ev.user_id, SSEG_USER_ID_MAX);
        check_str(ev.session_id, SSEG_STR_MAX);
        check_str(ev.item_id, SSEG_STR_MAX);
        check_str(ev.category, SSEG_STR_MAX);
        check_str(ev.order_id, SSEG_STR_MAX);
        check_str(ev.device, SSEG_SHORT_STR_MAX);
        check_str(ev.country, SSEG_SHORT_STR_MAX);
        if (ev.user_id_len == 0 || ev.user_id_len != strlen(ev.user_id) || ev.type >= SSEG_EV__CNT)
                abort();
        sseg_buf_t b;
        sseg_buf_init(&b);
        sseg_event_encode_avro(&ev, &b);
        r = sseg_decoder_decode(plain_check, b.p, b.len, 1700000000000LL, &again, &retry, why,
                                sizeof(why));
        sseg_buf_free(&b);
        if (r != SSEG_DLQ_NONE || memcmp(&ev, &again, sizeof(ev)))
                abort();
        return 0;
}
