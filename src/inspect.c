/*
 * inspect: `streamseg inspect` prints a state directory as JSON, opened read-only, so it can
 * run beside a live instance (it sees the last committed WriteBatch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "churnstage.h"
#include "cli.h"
#include "profile.h"
#include "segstage.h"
#include "state.h"

typedef struct {
        sseg_state_t *st;
        int raw;
        uint64_t n;
        int64_t watermark[4096]; /* per partition, for profile "now" */
        int nparts;
        int32_t parts[4096];
        sseg_partmeta_t metas[4096];
        int bad;
} ictx_t;

static int32_t rd_be32(const char *p) {
        return (int32_t)(((uint32_t)(unsigned char)p[0] << 24) |
                         ((uint32_t)(unsigned char)p[1] << 16) |
                         ((uint32_t)(unsigned char)p[2] << 8) | (uint32_t)(unsigned char)p[3]);
}

static int meta_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        ictx_t *c = opaque;
        if (kl != 5 || c->nparts >= 4096)
                return 0;
        int32_t part = rd_be32(k + 1);
        char err[256];
        if (sseg_state_meta_get(c->st, part, &c->metas[c->nparts], err, sizeof(err)))
                return 0;
        c->parts[c->nparts++] = part;
        if (part >= 0 && part < 4096)
                c->watermark[part] = c->metas[c->nparts - 1].watermark_ms;
        return 0;
}

static void print_user(ictx_t *c, int32_t part, const char *uid, size_t ul, const char *v,
                       size_t vl) {
        if (c->raw) {
                /* Byte-exact dump for comparisons: partition, user id, hex of the stored
                 * value. */
                printf("%d\t%.*s\t", part, (int)ul, uid);
                for (size_t i = 0; i < vl; i++)
                        printf("%02x", (unsigned char)v[i]);
                printf("\n");
                return;
        }
        sseg_user_t u;
        if (sseg_state_unpack_user(v, vl, &u)) {
                fprintf(stderr, "streamseg inspect: user %.*s: unknown state layout version\n",
                        (int)ul, uid);
                c->bad++;
                return;
        }
        sseg_buf_t b;
        sseg_buf_init(&b);
        int64_t now = part >= 0 && part < 4096 ? c->watermark[part] : u.last_ts;
        sseg_profile_encode(&u, uid, ul, part, now, SSEG_OUT_JSON, &b);
        printf("%.*s\n", (int)b.len, b.p);
        sseg_buf_free(&b);
}

static int user_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        ictx_t *c = opaque;
        if (kl < 5)
                return 0;
        print_user(c, rd_be32(k + 1), k + 5, kl - 5, v, vl);
        c->n++;
        return 0;
}

static int timer_cb(void *opaque, const char *k, size_t kl, const char *v, size_t vl) {
        int32_t part;
        int64_t due;
        const char *uid;
        size_t len;
        if (!sseg_churnstage_timer_key_parse(k, kl, &part, &due, &uid, &len)) {
                sseg_buf_t b;
                sseg_buf_init(&b);
                sseg_buf_printf(&b, "{\"partition\":%d,\"due_ms\":%lld,\"user_id\":", part,
                                (long long)due);
                sseg_buf_json_str(&b, uid, len);
                sseg_buf_printf(&b, "}\n");
                fwrite(b.p, 1, b.len, stdout);
                sseg_buf_free(&b);
        }
        return 0;
}

static void usage(FILE *fp) {
        fprintf(fp, "Usage: streamseg inspect -X state.dir=DIR [-c FILE] (--user ID | --offsets |"
                    " --model | --timers | --dump [--raw])\n"
                    "  --model     the stored models as JSON: the segmentation (K-means) model and "
                    "the\n              churn parameters with their fit\n"
                    "  --offsets   per-partition next offset, processed and dead-lettered counts\n"
                    "  --timers    the churn timer index: partition, due time, user, in due order\n"
                    "  --user ID   the user's profile (JSON) as of its partition's watermark\n"
                    "  --dump      every user's profile, one JSON object per line, in key order\n"
                    "  --raw       with --dump: partition, user id and the stored bytes in hex\n");
}

/* {"segments": ..., "churn": ...}: each stage's stored model (or its prior) as JSON. */
static int print_models(sseg_state_t *st, const sseg_conf_t *conf) {
        sseg_buf_t b;
        sseg_buf_init(&b);
        char err[512];
        sseg_buf_printf(&b, "{\"segments\":");
        sseg_err_t e = sseg_segstage_model_json(st, conf, &b, err, sizeof(err));
        sseg_buf_printf(&b, ",\"churn\":");
        if (!e)
                e = sseg_churnstage_model_json(st, conf, &b, err, sizeof(err));
        sseg_buf_printf(&b, "}\n");
        if (e)
                fprintf(stderr, "streamseg inspect: %s\n", err);
        else
                fwrite(b.p, 1, b.len, stdout);
        sseg_buf_free(&b);
        return e != SSEG_OK;
}

int sseg_cmd_inspect(int argc, char **argv) {
        sseg_conf_t *conf = sseg_conf_new();
        const char *user = NULL;
        int offsets = 0, dump = 0, raw = 0, model = 0, timers = 0;
        int i = 1, rc = 0;
        while (i < argc) {
                int r = sseg_cli_conf_opt(conf, argc, argv, &i);
                if (r < 0) {
                        sseg_conf_destroy(conf);
                        return 2;
                }
                if (r)
                        continue;
                if (!strcmp(argv[i], "--user") && i + 1 < argc) {
                        user = argv[i + 1];
                        i += 2;
                } else if (!strcmp(argv[i], "--offsets")) {
                        offsets = 1;
                        i++;
                } else if (!strcmp(argv[i], "--model")) {
                        model = 1;
                        i++;
                } else if (!strcmp(argv[i], "--timers")) {
                        timers = 1;
                        i++;
                } else if (!strcmp(argv[i], "--dump")) {
                        dump = 1;
                        i++;
                } else if (!strcmp(argv[i], "--raw")) {
                        raw = 1;
                        i++;
                } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        usage(stdout);
                        sseg_conf_destroy(conf);
                        return 0;
                } else {
                        fprintf(stderr, "streamseg inspect: unknown argument '%s'\n", argv[i]);
                        usage(stderr);
                        sseg_conf_destroy(conf);
                        return 2;
                }
        }
        if (!user && !offsets && !dump && !model && !timers) {
                usage(stderr);
                sseg_conf_destroy(conf);
                return 2;
        }
        char err[512];
        sseg_err_t e;
        sseg_state_t *st = sseg_state_open(conf->state_dir, 1 << 20, 1, 0, &e, err, sizeof(err));
        if (!st) {
                fprintf(stderr, "streamseg inspect: %s\n", err);
                sseg_conf_destroy(conf);
                return 1;
        }
        ictx_t *c = calloc(1, sizeof(*c));
        c->st = st;
        c->raw = raw;
        sseg_state_scan(st, "o", 1, meta_cb, c, err, sizeof(err));
        if (offsets) {
                uint64_t tp = 0, td = 0;
                printf("{\"partitions\":[");
                for (int k = 0; k < c->nparts; k++) {
                        const sseg_partmeta_t *m = &c->metas[k];
                        printf("%s{\"partition\":%d,\"next_offset\":%lld,\"processed\":%llu,"
                               "\"dead_lettered\":%llu,\"watermark_ms\":%lld}",
                               k ? "," : "", c->parts[k], (long long)m->next_offset,
                               (unsigned long long)m->processed, (unsigned long long)m->dead,
                               (long long)m->watermark_ms);
                        tp += m->processed;
                        td += m->dead;
                }
                printf("],\"processed\":%llu,\"dead_lettered\":%llu}\n", (unsigned long long)tp,
                       (unsigned long long)td);
        }
        if (user) {
                size_t ul = strlen(user);
                int found = 0;
                for (int k = 0; k < c->nparts && ul <= SSEG_USER_ID_MAX; k++) {
                        char key[5 + SSEG_USER_ID_MAX];
                        size_t kl = sseg_state_user_key(key, c->parts[k], user, ul);
                        char *v;
                        size_t vl;
                        if (sseg_state_read(st, key, kl, &v, &vl, err, sizeof(err)) == SSEG_OK) {
                                print_user(c, c->parts[k], user, ul, v, vl);
                                free(v);
                                found++;
                        }
                }
                if (!found) {
                        fprintf(stderr, "streamseg inspect: user '%s' not found in %s\n", user,
                                conf->state_dir);
                        rc = 1;
                }
        }
        if (model && print_models(st, conf))
                rc = 1;
        if (timers && sseg_state_scan(st, "t", 1, timer_cb, NULL, err, sizeof(err))) {
                fprintf(stderr, "streamseg inspect: %s\n", err);
                rc = 1;
        }
        if (dump) {
                if (sseg_state_scan(st, "u", 1, user_cb, c, err, sizeof(err))) {
                        fprintf(stderr, "streamseg inspect: %s\n", err);
                        rc = 1;
                }
        }
        if (c->bad)
                rc = 1;
        free(c);
        sseg_state_close(st);
        sseg_conf_destroy(conf);
        return rc;
}
