/* conf: defaults, value checks naming the key, config files, kafka.* pass-through, and the
 * generated CONFIGURATION.md matching the property table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "conf.h"

static void test_defaults(void) {
        sseg_conf_t *c = sseg_conf_new();
        CHECK_STR_EQ(c->input_topic, "shop.events");
        CHECK_STR_EQ(c->output_profiles_topic, "streamseg.profiles");
        CHECK_STR_EQ(c->dlq_topic, "streamseg.dlq");
        CHECK_INT_EQ(c->input_format, 0);
        CHECK_INT_EQ(c->output_format, 0);
        CHECK_INT_EQ(c->state_cache_max_bytes, 512LL << 20);
        CHECK_INT_EQ(c->commit_interval_ms, 1000);
        CHECK_STR_EQ(sseg_conf_kafka_get(c, "group.id"), "streamseg");
        sseg_conf_destroy(c);
}

static void test_errors(void) {
        sseg_conf_t *c = sseg_conf_new();
        char err[512];
        CHECK_INT_EQ(sseg_conf_set(c, "input.format", "xml", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, "input.format") && strstr(err, "avro|confluent"));
        CHECK_INT_EQ(sseg_conf_set(c, "commit.interval.ms", "5", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, "commit.interval.ms") && strstr(err, "out of range"));
        CHECK_INT_EQ(sseg_conf_set(c, "commit.interval.ms", "12x", err, sizeof(err)),
                     SSEG_ERR_INVAL);
        CHECK(strstr(err, "commit.interval.ms") != NULL);
        CHECK_INT_EQ(sseg_conf_set(c, "no.such.key", "1", err, sizeof(err)), SSEG_ERR_UNKNOWN_KEY);
        CHECK(strstr(err, "no.such.key") != NULL);
        CHECK_INT_EQ(sseg_conf_set(c, "state.sync", "maybe", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK_INT_EQ(sseg_conf_set_kv(c, "novalue", err, sizeof(err)), SSEG_ERR_INVAL);
        /* sizes */
        CHECK_INT_EQ(sseg_conf_set(c, "state.cache.max.bytes", "64M", err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(c->state_cache_max_bytes, 64LL << 20);
        CHECK_INT_EQ(sseg_conf_set(c, "state.cache.max.bytes", "2G", err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(c->state_cache_max_bytes, 2LL << 30);
        CHECK_INT_EQ(sseg_conf_set(c, "state.cache.max.bytes", "1T", err, sizeof(err)),
                     SSEG_ERR_INVAL);
        /* numbers and lists of numbers */
        CHECK_NEAR(c->segments_hysteresis, 0.1, 1e-12);
        CHECK_INT_EQ(c->churn_levels.n, 3);
        CHECK_NEAR(c->churn_levels.v[2], 0.95, 1e-12);
        CHECK_INT_EQ(sseg_conf_set(c, "segments.hysteresis", "0.25", err, sizeof(err)), SSEG_OK);
        CHECK_NEAR(c->segments_hysteresis, 0.25, 1e-12);
        CHECK_INT_EQ(sseg_conf_set(c, "segments.hysteresis", "1.5", err, sizeof(err)),
                     SSEG_ERR_INVAL);
        CHECK(strstr(err, "segments.hysteresis") && strstr(err, "out of range"));
        /* Tiny numbers are numbers (strtod's underflow is not an error): 0x1p-1074 was accepted
         * but the dump's 4.9406564584124654e-324 for it was not (fuzz_conf's round trip). */
        CHECK_INT_EQ(sseg_conf_set(c, "segments.hysteresis", "1e-310", err, sizeof(err)), SSEG_OK);
        CHECK(c->segments_hysteresis > 0 && c->segments_hysteresis < 1.1e-310);
        CHECK_INT_EQ(
            sseg_conf_set(c, "segments.hysteresis", "4.9406564584124654e-324", err, sizeof(err)),
            SSEG_OK);
        CHECK(c->segments_hysteresis == 0x1p-1074);
        CHECK_INT_EQ(sseg_conf_set(c, "segments.hysteresis", "1e-400", err, sizeof(err)), SSEG_OK);
        CHECK(c->segments_hysteresis == 0);
        CHECK_INT_EQ(sseg_conf_set(c, "churn.horizon", "1e999", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK_INT_EQ(sseg_conf_set(c, "segments.hysteresis", "0.25", err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(sseg_conf_set(c, "churn.horizon", "nan", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, "churn.horizon") != NULL);
        CHECK_INT_EQ(sseg_conf_set(c, "churn.levels", "0.3,0.6", err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(c->churn_levels.n, 2);
        CHECK_NEAR(c->churn_levels.v[1], 0.6, 1e-12);
        CHECK_INT_EQ(sseg_conf_set(c, "churn.levels", "0.6,0.3", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, "churn.levels") && strstr(err, "ascending"));
        CHECK_INT_EQ(sseg_conf_set(c, "churn.levels", "0.5,x", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK_INT_EQ(sseg_conf_set(c, "churn.levels", "", err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK_INT_EQ(c->churn_levels.n, 2); /* a rejected value leaves the old one */
        /* enums and values */
        CHECK_INT_EQ(sseg_conf_set_kv(c, " output.format = json ", err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(c->output_format, 1);
        CHECK_INT_EQ(sseg_conf_set_kv(c, "kafka.bootstrap.servers=127.0.0.1:1", err, sizeof(err)),
                     SSEG_OK);
        CHECK_STR_EQ(sseg_conf_kafka_get(c, "bootstrap.servers"), "127.0.0.1:1");
        CHECK_INT_EQ(sseg_conf_set_kv(c, "kafka.=x", err, sizeof(err)), SSEG_ERR_UNKNOWN_KEY);
        sseg_conf_destroy(c);
}

static void test_file(void) {
        char path[] = "/tmp/sseg_conf_XXXXXX";
        int fd = mkstemp(path);
        CHECK(fd >= 0);
        FILE *fp = fdopen(fd, "w");
        fprintf(fp, "# comment\n\ninput.topic = clicks\nkafka.group.id=g1\n"
                    "commit.interval.ms=250\n");
        fclose(fp);
        sseg_conf_t *c = sseg_conf_new();
        char err[512];
        CHECK_INT_EQ(sseg_conf_load_file(c, path, err, sizeof(err)), SSEG_OK);
        CHECK_STR_EQ(c->input_topic, "clicks");
        CHECK_STR_EQ(sseg_conf_kafka_get(c, "group.id"), "g1");
        CHECK_INT_EQ(c->commit_interval_ms, 250);
        fp = fopen(path, "w");
        fprintf(fp, "input.topic=a\nstate.cache.max.bytes=lots\n");
        fclose(fp);
        CHECK_INT_EQ(sseg_conf_load_file(c, path, err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, ":2:") && strstr(err, "state.cache.max.bytes"));
        /* A NUL byte is an error naming its line, also on a last line without a newline (it
         * used to cut the value short there: state.dir=/data). Found by fuzz_conf. */
        static const char nul_file[] = "input.topic=b\nstate.dir=/data\0junk";
        fp = fopen(path, "w");
        fwrite(nul_file, 1, sizeof(nul_file) - 1, fp);
        fclose(fp);
        CHECK_INT_EQ(sseg_conf_load_file(c, path, err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, ":2:") && strstr(err, "NUL"));
        CHECK_STR_EQ(c->state_dir, "./streamseg-state");
        /* The longest -X (4095 bytes) also fits on a config file line; one more byte does not. */
        char kv[4097];
        memset(kv, 'a', sizeof(kv));
        memcpy(kv, "input.topic=", 12);
        kv[4095] = '\0';
        CHECK_INT_EQ(sseg_conf_set_kv(c, kv, err, sizeof(err)), SSEG_OK);
        fp = fopen(path, "w");
        fprintf(fp, "%s\n", kv);
        fclose(fp);
        CHECK_INT_EQ(sseg_conf_load_file(c, path, err, sizeof(err)), SSEG_OK);
        CHECK_INT_EQ(strlen(c->input_topic), 4095 - 12);
        kv[4095] = 'a';
        kv[4096] = '\0';
        CHECK_INT_EQ(sseg_conf_set_kv(c, kv, err, sizeof(err)), SSEG_ERR_INVAL);
        fp = fopen(path, "w");
        fprintf(fp, "# long\n%s\n", kv);
        fclose(fp);
        CHECK_INT_EQ(sseg_conf_load_file(c, path, err, sizeof(err)), SSEG_ERR_INVAL);
        CHECK(strstr(err, ":2:") && strstr(err, "too long"));
        unlink(path);
        CHECK_INT_EQ(sseg_conf_load_file(c, "/nonexistent/x.conf", err, sizeof(err)), SSEG_ERR_IO);
        CHECK(strstr(err, "/nonexistent/x.conf") != NULL);
        sseg_conf_destroy(c);
}

/* CONFIGURATION.md is generated from the table; this fails when someone edits either alone.
 * Regenerate with `cmake --build build --target docs`. */
static void test_doc_in_sync(void) {
        char *gen = NULL;
        size_t genlen = 0;
        FILE *mem = open_memstream(&gen, &genlen);
        sseg_conf_print_markdown(mem);
        fclose(mem);
        FILE *fp = fopen(SSEG_SOURCE_DIR "/CONFIGURATION.md", "r");
        CHECK(fp != NULL);
        if (fp) {
                char *file = calloc(1, genlen + 2);
                size_t n = fread(file, 1, genlen + 1, fp);
                fclose(fp);
                CHECK(n == genlen && !memcmp(file, gen, genlen));
                if (n != genlen || memcmp(file, gen, genlen))
                        fprintf(stderr, "CONFIGURATION.md is out of date: run `cmake --build "
                                        "build --target docs`\n");
                free(file);
        }
        free(gen);
}

int main(void) {
        test_defaults();
        test_errors();
        test_file();
        test_doc_in_sync();
        return check_result();
}
