/* test_registry: the Schema Registry answer parser, sseg_registry_parse_answer(), and the size
 * cap of the directory fetch (the HTTP fetch is tested through the decoder in test_decode.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "check.h"
#include "registry.h"

/* Parses js after "held" in out; returns the error, the text (NUL-terminated) in text. */
static sseg_err_t parse(const char *js, char *text, size_t text_size, char *why, size_t why_size) {
        sseg_buf_t out;
        sseg_buf_init(&out);
        sseg_buf_append(&out, "held", 4);
        why[0] = '\0';
        sseg_err_t err = sseg_registry_parse_answer(js, strlen(js), &out, why, why_size);
        CHECK(out.len >= 4 && !memcmp(out.p, "held", 4)); /* appended, never overwritten */
        size_t n = out.len - 4;
        if (n >= text_size)
                n = text_size - 1;
        memcpy(text, out.p + 4, n);
        text[n] = '\0';
        if (err)
                CHECK_INT_EQ(out.len, 4); /* a refused answer leaves out as it was */
        sseg_buf_free(&out);
        return err;
}

static void accepts(const char *js, const char *want) {
        char text[256], why[128];
        CHECK_INT_EQ(parse(js, text, sizeof(text), why, sizeof(why)), SSEG_OK);
        CHECK_STR_EQ(text, want);
}

static void refuses(const char *js, const char *why_part) {
        char text[256], why[128];
        CHECK_INT_EQ(parse(js, text, sizeof(text), why, sizeof(why)), SSEG_ERR_SCHEMA);
        CHECK(strstr(why, why_part) != NULL);
}

/* <dir>/<id>.avsc of n bytes is fetched whole at the cap, refused one byte over it. */
static void test_dir_cap(void) {
        char dir[] = "/tmp/sseg_registry_XXXXXX", path[64], err[512];
        CHECK(mkdtemp(dir) != NULL);
        sseg_registry_t *r = sseg_registry_new(NULL, dir, err, sizeof(err));
        CHECK(r != NULL);
        sseg_buf_t out;
        sseg_buf_init(&out);
        for (int id = 1; id <= 2; id++) {
                snprintf(path, sizeof(path), "%s/%d.avsc", dir, id);
                FILE *fp = fopen(path, "w");
                size_t n = SSEG_REGISTRY_MAX_BYTES + (size_t)(id - 1);
                for (size_t i = 0; i < n; i++)
                        putc(i == 0 || i == n - 1 ? '"' : 'a', fp);
                fclose(fp);
        }
        sseg_buf_append(&out, "held", 4);
        CHECK_INT_EQ(sseg_registry_fetch(r, 1, &out, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(out.len, 4 + SSEG_REGISTRY_MAX_BYTES);
        CHECK(!memcmp(out.p, "held\"aa", 7) && out.p[out.len - 1] == '"');
        out.len = 4;
        CHECK_INT_EQ(sseg_registry_fetch(r, 2, &out, err, sizeof(err)), SSEG_ERR_SCHEMA);
        CHECK(strstr(err, "2.avsc") && strstr(err, "cap"));
        CHECK_INT_EQ(out.len, 4);
        CHECK_INT_EQ(sseg_registry_fetch(r, 3, &out, err, sizeof(err)), SSEG_ERR_NOENT);
        CHECK_INT_EQ(sseg_registry_requests(r), 0);
        for (int id = 1; id <= 2; id++) {
                snprintf(path, sizeof(path), "%s/%d.avsc", dir, id);
                unlink(path);
        }
        rmdir(dir);
        sseg_buf_free(&out);
        sseg_registry_destroy(r);
}

int main(void) {
        test_dir_cap();
        /* What Confluent's registry sends, and what other registries add. */
        accepts("{\"schema\":\"\\\"string\\\"\"}", "\"string\"");
        accepts(" {\"subject\":\"s\",\"version\":3,\"id\":7,\"references\":[{\"name\":\"x\"}],"
                "\"schemaType\":\"AVRO\",\"deleted\":false,\"ruleSet\":null,"
                "\"schema\":\"{\\\"type\\\":\\\"int\\\"}\"} \n",
                "{\"type\":\"int\"}");
        /* Escapes: short ones, \u (UTF-8 out), a surrogate pair; the first "schema" counts. */
        accepts("{\"schema\":\"a\\/b\\n\\u00e9\\ud83d\\ude00\",\"schema\":\"second\"}",
                "a/b\n\xc3\xa9\xf0\x9f\x98\x80");
        accepts("{\"sch\\u0065ma\":\"k\"} trailing bytes are not read", "k");
        refuses("{\"schema\":\"\\ud83d\"}", "not the expected JSON");
        refuses("{\"schemaType\":\"PROTOBUF\",\"schema\":\"syntax = \\\"proto3\\\";\"}",
                "PROTOBUF");
        refuses("{\"error_code\":40403,\"message\":\"Schema not found\"}", "no \"schema\"");
        refuses("{}", "not the expected JSON");
        refuses("{\"schema\":{\"type\":\"int\"}}", "not the expected JSON");
        refuses("", "not the expected JSON");
        /* A truncated answer: a member must follow a comma (it used to be accepted; found by
         * fuzz_registry, seed corpus/registry/regress-truncated-after-comma). */
        refuses("{\"schema\":\"\\\"int\\\"\",", "not the expected JSON");
        refuses("{\"schema\":\"\\\"int\\\"\", ", "not the expected JSON");
        refuses("{\"schema\":\"\\\"int\\\"\"", "not the expected JSON");
        /* Nesting of skipped members is bounded (32). */
        sseg_buf_t deep;
        sseg_buf_init(&deep);
        for (int depth = 32; depth <= 33; depth++) {
                sseg_buf_reset(&deep);
                sseg_buf_printf(&deep, "{\"a\":%*s", depth, "");
                memset(deep.p + deep.len - depth, '[', depth);
                static const char tail[] = ",\"schema\":\"1\"}";
                sseg_buf_printf(&deep, "%*s%s", depth, "", tail);
                memset(deep.p + deep.len - depth - (sizeof(tail) - 1), ']', depth);
                sseg_buf_putc(&deep, '\0');
                if (depth == 32)
                        accepts(deep.p, "1");
                else
                        refuses(deep.p, "not the expected JSON");
        }
        sseg_buf_free(&deep);
        return check_result();
}
