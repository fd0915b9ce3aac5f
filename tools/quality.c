/*
 * quality: how right the segments and churn scores are on generated data, where the truth is
 * known (issue 5 item 4; docs/benchmarks.md "Quality" holds the figures and the command).
 *
 * Generates N users' events with `streamseg gen`'s simulator (src/gen.h: each user's persona
 * and drop-out time are the ground truth), feeds them in event-time order through the offline
 * pipeline (sseg_pipeline_feed: decode, state, features, the churn and segmentation stages,
 * RocksDB; no Kafka) with segments.k = the number of personas and churn on, in count-bounded
 * cycles (so the run is a function of the options), then reads every user's final state and
 * prints:
 *
 *   - the adjusted Rand index (Hubert & Arabie 1985) of the users' segments against their
 *     personas, over every generated user (a user without a segment counts as segment -1);
 *   - the ROC AUC of the churn score against the ground-truth drop-out (Mann-Whitney, tied
 *     scores get average ranks), over the users the label is defined for (below);
 *   - as a diagnostic, the ARI if the final model re-assigned every user (nearest centre to the
 *     vector at the user's last event, no hysteresis): the gap to the first figure is users
 *     last seen long ago who keep a segment of an older model;
 *   - a persona x segment confusion table, per-persona churn figures, a "figures:" line with
 *     the four figures at full precision (for oracles) and the method.
 *
 * Churn label and score (the choices the figures depend on, stated again in the output):
 *   - dropped = the user's drop-out (the PURCHASE after which it left, gen.h) happened in the
 *     generated period. Only buyers can drop out (the BG/NBD story), so the AUC population is
 *     the users with at least one purchase;
 *   - a drop-out less than --grace-days before the end of the period is not observable yet (the
 *     user's last event is a recent purchase: nothing distinguishes it from an active buyer),
 *     so those users are left out of the headline AUC; the AUC with every drop-out is printed
 *     too;
 *   - score = the churn score the pipeline's own scoring (sseg_churnstage_score_user) gives the
 *     user at its partition's final clock, with the churn model refitted on the final state
 *     exactly as the stage's background refit does (sseg_churnstage_refit_now). A profile
 *     carries the score of the user's last scoring (its last event or a timer at a level
 *     crossing), with the model of that moment (the configured prior, unless a wall-clock
 *     refit ran during the run): that "stored" score's AUC is printed as well.
 *
 *   quality [--users N] [--days D | --events N] [--seed S] [--partitions P]
 *           [--cycle-events N] [--grace-days G] [-X key=value]... [--export FILE]
 *           [--features] [--quiet]
 *
 * Defaults: 5000 users, 90 days, seed 1, 4 partitions, a commit cycle every 20000 events,
 * grace 14 days. -X sets processor properties after the tool's own (segments.k, churn.enabled,
 * commit.*); -X state.dir=DIR keeps the state for `streamseg inspect` (the default directory
 * is removed). Wall-clock refits (churn.refit.interval.ms) make the stored scores, and through
 * the users their timers load the segments, depend on timing.
 *
 * --export FILE writes one CSV line per generated user:
 *   user_id,persona,dropped,segment,score,auc,score_stored,dropout_ts_ms,purchases,events
 * (auc = 1 for the rows of the headline AUC; scores "nan" when unscored; with --features the
 * 16 segmentation features at the user's last event follow, by name), from which an oracle
 * recomputes both figures (tests/integration/test_quality.py does, with scikit-learn;
 * tools/quality_analysis.py computes ceilings from it).
 *
 * Prints figures and method; asserts nothing (STYLE.md: benchmarks are programs).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "churn.h"
#include "churnstage.h"
#include "conf.h"
#include "event.h"
#include "features.h"
#include "gen.h"
#include "kmeans.h"
#include "log.h"
#include "pipeline.h"
#include "segstage.h"
#include "segvec.h"
#include "state.h"

#define NP     SSEG_GEN_PERSONA__CNT
#define DAY_MS 86400000LL

static double now_s(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void die(const char *what) {
        fprintf(stderr, "quality: %s\n", what);
        exit(1);
}

/* ---- the two figures ------------------------------------------------------------------------ */

static double comb2(double n) {
        return n * (n - 1) / 2;
}

/* Adjusted Rand index of two labelings given as their contingency table (rows x cols, counts,
 * row-major): (Σ C(n_ij,2) - E) / (½(Σ C(a_i,2) + Σ C(b_j,2)) - E), E = Σ C(a_i,2) Σ C(b_j,2) /
 * C(n,2) [Hubert & Arabie 1985]. 1 when the labelings are identical up to names (including
 * the degenerate cases where the denominator is 0, as scikit-learn does). */
static double ari(const uint64_t *tab, int rows, int cols) {
        long double sij = 0, sa = 0, sb = 0, n = 0;
        for (int i = 0; i < rows; i++) {
                uint64_t a = 0;
                for (int j = 0; j < cols; j++) {
                        a += tab[i * cols + j];
                        sij += comb2((double)tab[i * cols + j]);
                }
                sa += comb2((double)a);
                n += a;
        }
        for (int j = 0; j < cols; j++) {
                uint64_t b = 0;
                for (int i = 0; i < rows; i++)
                        b += tab[i * cols + j];
                sb += comb2((double)b);
        }
        long double total = comb2((double)n);
        if (total <= 0)
                return 1.0;
        long double expect = sa * sb / total, maxi = (sa + sb) / 2;
        if (maxi == expect)
                return 1.0;
        return (double)((sij - expect) / (maxi - expect));
}

typedef struct {
        double s;
        int y;
} scored_t;

static int cmp_scored(const void *a, const void *b) {
        double x = ((const scored_t *)a)->s, y = ((const scored_t *)b)->s;
        return x < y ? -1 : x > y;
}

/* ROC AUC = P(score of a positive > score of a negative) + ½ P(equal): the Mann-Whitney U of
 * the positives over n_pos n_neg, with tied scores given their average rank (this equals the
 * trapezoidal area under the ROC curve, which is what roc_auc_score computes). NaN when a
 * class is empty. Sorts v. */
static double auc(scored_t *v, size_t n, size_t *npos_out) {
        qsort(v, n, sizeof(*v), cmp_scored);
        long double rank_pos = 0;
        size_t npos = 0;
        for (size_t i = 0; i < n;) {
                size_t j = i;
                while (j < n && v[j].s == v[i].s)
                        j++;
                long double avg = ((long double)(i + 1) + (long double)j) / 2; /* ranks i+1..j */
                for (size_t t = i; t < j; t++)
                        if (v[t].y) {
                                rank_pos += avg;
                                npos++;
                        }
                i = j;
        }
        *npos_out = npos;
        size_t nneg = n - npos;
        if (!npos || !nneg)
                return NAN;
        return (double)((rank_pos - (long double)npos * (npos + 1) / 2) /
                        ((long double)npos * (long double)nneg));
}

/* The nearest centre of km to x (original units) in its standardised units; -1 without a
 * model. A diagnostic: the segment a user would get from the final model, no hysteresis. */
static int nearest(const sseg_kmeans_t *km, const float *x) {
        if (!km || !sseg_kmeans_initialized(km))
                return -1;
        float z[SSEG_KMEANS_MAX_DIM], c[SSEG_KMEANS_MAX_DIM];
        int dim = sseg_kmeans_dim(km), best = -1;
        double bd = INFINITY;
        sseg_kmeans_standardize(km, x, z);
        for (int j = 0; j < sseg_kmeans_k(km); j++) {
                sseg_kmeans_centroid_std(km, j, c);
                double d = 0;
                for (int i = 0; i < dim; i++)
                        d += ((double)z[i] - c[i]) * ((double)z[i] - c[i]);
                if (d < bd) {
                        bd = d;
                        best = j;
                }
        }
        return best;
}

/* ---- the run -------------------------------------------------------------------------------- */

typedef struct {
        sseg_gen_truth_t t;
        int has_state;
        int segment;   /* -1 none */
        int nearest;   /* the final model's nearest centre to the vector at the last event */
        double score;  /* at the end, refitted model; NaN unscored */
        double stored; /* the state's churn_score; NaN unscored */
        int basis;     /* sseg_churn_basis_t of the end score, -1 unscored */
        int dropped;   /* drop-out in the period */
        int in_auc;    /* row of the headline AUC */
        float feat[SSEG_SEGVEC_DIM];
} urow_t;

static const char *xopts[64];
static int nxopts;

static void conf_set(sseg_conf_t *c, const char *k, const char *v) {
        char err[256];
        if (sseg_conf_set(c, k, v, err, sizeof(err)))
                die(err);
}

int main(int argc, char **argv) {
        uint32_t users = 5000;
        uint64_t events = 0, seed = 1;
        double days = 90, grace_days = 14;
        int partitions = 4, features = 0, quiet = 0, days_set = 0;
        long cycle_events = 20000;
        const char *export_path = NULL;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
                if (!strcmp(a, "--features")) {
                        features = 1;
                        continue;
                }
                if (!strcmp(a, "--quiet")) {
                        quiet = 1;
                        continue;
                }
                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        printf("usage: quality [--users N] [--days D | --events N] [--seed S] "
                               "[--partitions P]\n               [--cycle-events N] "
                               "[--grace-days G] [-X key=value]... [--export FILE]\n"
                               "               [--features] [--quiet]\n"
                               "(the header of tools/quality.c explains each)\n");
                        return 0;
                }
                if (!v) {
                        fprintf(stderr, "quality: %s needs a value (--help)\n", a);
                        return 2;
                }
                char *end = NULL;
                if (!strcmp(a, "--users"))
                        users = (uint32_t)strtoul(v, &end, 10);
                else if (!strcmp(a, "--events"))
                        events = strtoull(v, &end, 10);
                else if (!strcmp(a, "--days")) {
                        days = strtod(v, &end);
                        days_set = 1;
                } else if (!strcmp(a, "--seed"))
                        seed = strtoull(v, &end, 10);
                else if (!strcmp(a, "--partitions"))
                        partitions = (int)strtol(v, &end, 10);
                else if (!strcmp(a, "--cycle-events"))
                        cycle_events = strtol(v, &end, 10);
                else if (!strcmp(a, "--grace-days"))
                        grace_days = strtod(v, &end);
                else if (!strcmp(a, "--export")) {
                        export_path = v;
                        end = (char *)v + strlen(v);
                } else if (!strcmp(a, "-X") && nxopts < 64) {
                        xopts[nxopts++] = v;
                        end = (char *)v + strlen(v);
                } else {
                        fprintf(stderr, "quality: unknown option %s (--help)\n", a);
                        return 2;
                }
                if (!end || *end || end == v) {
                        fprintf(stderr, "quality: bad value '%s' for %s\n", v, a);
                        return 2;
                }
                i++;
        }
        if (users < 10 || partitions < 1 || partitions > 1024 || cycle_events < 1 ||
            !(grace_days >= 0) || !(days > 0)) {
                fprintf(stderr, "quality: --users >= 10, --partitions 1..1024, --cycle-events "
                                ">= 1, --days > 0, --grace-days >= 0\n");
                return 2;
        }
        if (events && !days_set)
                days = 0; /* --events alone: no time limit, as `streamseg gen` */
        sseg_log_set_level(getenv("QUALITY_LOG") ? SSEG_LOG_INFO : SSEG_LOG_WARN);

        /* Processor configuration: our defaults, then -X. */
        char dir[64];
        snprintf(dir, sizeof(dir), "/tmp/sseg-quality-XXXXXX");
        if (!mkdtemp(dir))
                die("mkdtemp failed");
        sseg_conf_t *conf = sseg_conf_new();
        char num[32];
        conf_set(conf, "state.dir", dir);
        conf_set(conf, "log.level", getenv("QUALITY_LOG") ? "info" : "warn");
        snprintf(num, sizeof(num), "%d", NP);
        conf_set(conf, "segments.k", num);
        conf_set(conf, "churn.enabled", "true");
        /* Count-bounded cycles: the boundaries are a function of the input, not of the wall
         * clock, so the run is reproducible. */
        conf_set(conf, "commit.interval.ms", "600000");
        snprintf(num, sizeof(num), "%ld", cycle_events);
        conf_set(conf, "commit.max.events", num);
        for (int i = 0; i < nxopts; i++) {
                char err[256];
                if (sseg_conf_set_kv(conf, xopts[i], err, sizeof(err)))
                        die(err);
        }
        int k = (int)conf->segments_k;
        if (!conf->churn_enabled || k < 1)
                die("quality needs churn.enabled=true and segments.k >= 1");

        sseg_gen_opts_t go;
        sseg_gen_opts_init(&go);
        go.users = users;
        go.events = events;
        go.duration_days = days;
        go.seed = seed;
        char err[512];
        sseg_gen_t *g = sseg_gen_new(&go, err, sizeof(err));
        if (!g)
                die(err);
        sseg_err_t e;
        sseg_pipeline_t *p = sseg_pipeline_new_offline(conf, &e, err, sizeof(err));
        if (!p)
                die(err);

        /* Generate and feed, in event-time order. */
        double t0 = now_s(), tlast = t0;
        int64_t *next = calloc((size_t)partitions, sizeof(*next));
        sseg_buf_t v;
        sseg_buf_init(&v);
        sseg_event_t ev;
        uint64_t n = 0;
        int64_t last_ts = 0;
        while (sseg_gen_next(g, &ev)) {
                sseg_buf_reset(&v);
                sseg_event_encode_avro(&ev, &v);
                int32_t part =
                    (int32_t)(sseg_hash64(ev.user_id, ev.user_id_len) % (uint64_t)partitions);
                if (sseg_pipeline_feed(p, part, next[part]++, ev.user_id, ev.user_id_len, v.p,
                                       v.len))
                        die("feeding the pipeline failed");
                last_ts = ev.ts_ms;
                n++;
                if (!quiet && (n & 0xffff) == 0 && now_s() - tlast > 2) {
                        tlast = now_s();
                        fprintf(stderr, "quality: %" PRIu64 " events, day %.1f\n", n,
                                (double)(ev.ts_ms - SSEG_GEN_DEFAULT_START_MS) / DAY_MS);
                }
        }
        if (sseg_pipeline_end_cycle(p))
                die("the final cycle failed");
        double t_feed = now_s() - t0;
        sseg_pipeline_stats_t ps;
        sseg_pipeline_get_stats(p, &ps);
        if (ps.processed != n)
                fprintf(stderr, "quality: %" PRIu64 " of %" PRIu64 " events processed\n",
                        ps.processed, n);
        int64_t end_ms = days > 0 ? SSEG_GEN_DEFAULT_START_MS + (int64_t)(days * DAY_MS) : last_ts;
        int64_t *clocks = calloc((size_t)partitions, sizeof(*clocks));
        int64_t clock_max = 0;
        for (int i = 0; i < partitions; i++) {
                clocks[i] = sseg_pipeline_watermark(p, i);
                if (clocks[i] > clock_max)
                        clock_max = clocks[i];
        }

        /* The churn model as the stage left it, and refitted on the final state. */
        sseg_state_t *st = sseg_pipeline_state(p);
        sseg_churn_model_t m_stage, m_end;
        sseg_churnstage_prior(&m_stage, conf);
        char *mv;
        size_t ml;
        if (sseg_state_read(st, SSEG_CHURN_MODEL_KEY, strlen(SSEG_CHURN_MODEL_KEY), &mv, &ml, err,
                            sizeof(err)) == SSEG_OK) {
                if (sseg_churn_model_deserialize(mv, ml, &m_stage, err, sizeof(err)))
                        die(err);
                free(mv);
        }
        int fitted = 0;
        char fitmsg[1024];
        if (sseg_churnstage_refit_now(st, conf, &m_stage, &m_end, &fitted, fitmsg, sizeof(fitmsg)))
                die(fitmsg);
        sseg_churnstage_opts_t co;
        sseg_churnstage_opts_from_conf(&co, conf);

        /* The segmentation model, for the segments' descriptions. */
        sseg_kmeans_t *km = NULL;
        sseg_kmeans_opts_t ko;
        if (sseg_segstage_opts_from_conf(conf, &ko, err, sizeof(err)))
                die(err);
        if (sseg_state_read(st, SSEG_SEG_MODEL_KEY, strlen(SSEG_SEG_MODEL_KEY), &mv, &ml, err,
                            sizeof(err)) == SSEG_OK) {
                if (sseg_kmeans_deserialize(mv, ml, &ko, &km, err, sizeof(err)))
                        km = NULL;
                free(mv);
        }

        /* Every user: truth, final state, scores. */
        urow_t *u = calloc(users, sizeof(*u));
        if (!u)
                die("out of memory");
        int64_t grace_ms = (int64_t)(grace_days * DAY_MS);
        uint64_t with_state = 0, unsegmented = 0;
        for (uint32_t i = 0; i < users; i++) {
                urow_t *r = &u[i];
                sseg_gen_truth(g, i, &r->t);
                r->segment = r->nearest = -1;
                r->score = r->stored = NAN;
                r->basis = -1;
                r->dropped = r->t.dropout_ts_ms >= 0;
                char uid[32], key[5 + SSEG_USER_ID_MAX];
                size_t ul = sseg_gen_user_id(i, uid, sizeof(uid));
                int32_t part = (int32_t)(sseg_hash64(uid, ul) % (uint64_t)partitions);
                size_t kl = sseg_state_user_key(key, part, uid, ul);
                char *val;
                size_t vl;
                sseg_err_t re = sseg_state_read(st, key, kl, &val, &vl, err, sizeof(err));
                if (re == SSEG_ERR_NOENT) {
                        unsegmented++;
                        continue;
                }
                if (re)
                        die(err);
                sseg_user_t us;
                if (sseg_state_unpack_user(val, vl, &us))
                        die("a stored user has another state layout");
                free(val);
                r->has_state = 1;
                with_state++;
                r->segment = us.segment >= 0 && us.segment < k ? us.segment : -1;
                if (r->segment < 0)
                        unsegmented++;
                if (!(us.churn_score == 0 && us.p_alive == 0))
                        r->stored = us.churn_score;
                sseg_segvec_build(&us, us.last_ts, r->feat);
                r->nearest = nearest(km, r->feat);
                sseg_churnstage_result_t res;
                sseg_user_t copy = us;
                sseg_churnstage_score_user(&co, &m_end, &copy, clocks[part], &res);
                if (res.scored) {
                        r->score = res.score;
                        r->basis = (int)res.basis;
                }
                int observable = !r->dropped || r->t.dropout_ts_ms <= end_ms - grace_ms;
                r->in_auc = r->t.purchases > 0 && observable && !isnan(r->score);
        }

        /* ARI over every generated user; the segment -1 column holds the unsegmented. */
        int cols = k + 1;
        uint64_t *tab = calloc((size_t)NP * cols, sizeof(*tab));
        for (uint32_t i = 0; i < users; i++)
                tab[u[i].t.persona * cols + (u[i].segment + 1)]++;
        double ari_all = ari(tab, NP, cols);
        uint64_t *tab2 = calloc((size_t)NP * cols, sizeof(*tab2));
        for (uint32_t i = 0; i < users; i++)
                tab2[u[i].t.persona * cols + (u[i].nearest + 1)]++;
        double ari_nearest = ari(tab2, NP, cols);

        /* AUCs. */
        scored_t *sv = malloc(users * sizeof(*sv));
        size_t ns, npos;
        double auc_main, auc_every, auc_all, auc_stored;
        ns = 0;
        for (uint32_t i = 0; i < users; i++)
                if (u[i].in_auc)
                        sv[ns++] = (scored_t){u[i].score, u[i].dropped};
        size_t n_main = ns;
        auc_main = auc(sv, ns, &npos);
        size_t pos_main = npos;
        ns = 0;
        for (uint32_t i = 0; i < users; i++)
                if (u[i].t.purchases > 0 && !isnan(u[i].score))
                        sv[ns++] = (scored_t){u[i].score, u[i].dropped};
        size_t n_every = ns;
        auc_every = auc(sv, ns, &npos);
        size_t pos_every = npos;
        ns = 0;
        for (uint32_t i = 0; i < users; i++) {
                int observable = !u[i].dropped || u[i].t.dropout_ts_ms <= end_ms - grace_ms;
                if (observable && !isnan(u[i].score))
                        sv[ns++] = (scored_t){u[i].score, u[i].dropped};
        }
        size_t n_all = ns;
        auc_all = auc(sv, ns, &npos);
        ns = 0;
        for (uint32_t i = 0; i < users; i++)
                if (u[i].in_auc && !isnan(u[i].stored))
                        sv[ns++] = (scored_t){u[i].stored, u[i].dropped};
        size_t n_stored = ns;
        auc_stored = auc(sv, ns, &npos);

        /* ---- report ---- */
        char host[128] = "?";
        gethostname(host, sizeof(host));
        printf("quality: %u users, %" PRIu64 " events over %.1f days (seed %" PRIu64
               "), %d partitions, cycles of %ld events; host %s; %.1f s (%.0f events/s)\n",
               users, n, (double)(end_ms - SSEG_GEN_DEFAULT_START_MS) / DAY_MS, seed, partitions,
               cycle_events, host, t_feed, n / t_feed);
        printf("processor: segments.k=%d churn.model=%s", k, sseg_churn_kind2str(co.kind));
        for (int i = 0; i < nxopts; i++)
                printf(" -X %s", xopts[i]);
        printf("\n\n");
        printf("adjusted Rand index, segments vs personas: %.4f   (target >= 0.8; %u users, "
               "%" PRIu64 " without a segment)\n",
               ari_all, users, unsegmented);
        printf("  final model, every user re-assigned:     %.4f   (nearest centre to the vector at "
               "the user's last event, no hysteresis)\n",
               ari_nearest);
        printf("churn ROC AUC, score vs drop-out:          %.4f   (target >= 0.85; %zu buyers, "
               "%zu dropped out >= %g days before the end)\n",
               auc_main, n_main, pos_main, grace_days);
        printf("  every drop-out (no grace):               %.4f   (%zu buyers, %zu dropped)\n",
               auc_every, n_every, pos_every);
        printf("  all users (never-buyers as alive):       %.4f   (%zu users)\n", auc_all, n_all);
        printf("  stored score (last scoring, model v%u):  %.4f   (%zu of the %zu buyers "
               "scored)\n",
               m_stage.version, auc_stored, n_stored, n_main);
        /* The same figures at full precision, for oracles (tests/integration/test_quality.py). */
        printf("figures: ari=%.17g auc=%.17g auc_every=%.17g auc_stored=%.17g\n", ari_all, auc_main,
               auc_every, auc_stored);
        printf("\nchurn model refitted on the final state (v%u, %s): purchase r=%.4g alpha=%.4g "
               "a=%.4g b=%.4g (%" PRIu64 " users)\n  %s\n",
               m_end.version, sseg_churn_kind2str(m_end.kind), m_end.purchase.params.r,
               m_end.purchase.params.alpha, m_end.purchase.params.a, m_end.purchase.params.b,
               m_end.purchase.info.n_users, fitmsg);

        printf("\npersona x segment (users; segment -1: none)\n%-8s", "persona");
        for (int j = -1; j < k; j++)
                printf(" %6d", j);
        printf("   total\n");
        for (int i = 0; i < NP; i++) {
                uint64_t tot = 0;
                printf("%-8s", sseg_gen_persona((sseg_gen_persona_t)i)->name);
                for (int j = 0; j < cols; j++) {
                        printf(" %6" PRIu64, tab[i * cols + j]);
                        tot += tab[i * cols + j];
                }
                printf(" %7" PRIu64 "\n", tot);
        }
        printf("\nsegments (majority persona, its share of the segment, the centre's decayed count "
               "of observations, description)\n");
        for (int j = 0; j < k; j++) {
                uint64_t tot = 0, best = 0;
                int bi = 0;
                for (int i = 0; i < NP; i++) {
                        tot += tab[i * cols + j + 1];
                        if (tab[i * cols + j + 1] > best) {
                                best = tab[i * cols + j + 1];
                                bi = i;
                        }
                }
                char desc[256] = "";
                double w = 0;
                if (km && sseg_kmeans_initialized(km)) {
                        sseg_kmeans_describe(km, j, desc, sizeof(desc));
                        w = sseg_kmeans_count(km, j);
                }
                printf("  %2d  %-8s %5.1f%%  %8.0f  %s\n", j,
                       sseg_gen_persona((sseg_gen_persona_t)bi)->name,
                       tot ? 100.0 * best / tot : 0.0, w, desc);
        }

        printf("\nchurn by persona: users, buyers, dropped (of the buyers), mean end score of "
               "dropped / alive buyers\n");
        for (int i = 0; i < NP; i++) {
                uint64_t nu = 0, nb = 0, nd = 0, nsd = 0, nsa = 0;
                double sd = 0, sa = 0;
                for (uint32_t j = 0; j < users; j++) {
                        if ((int)u[j].t.persona != i)
                                continue;
                        nu++;
                        if (u[j].t.purchases == 0)
                                continue;
                        nb++;
                        nd += (uint64_t)u[j].dropped;
                        if (isnan(u[j].score))
                                continue;
                        if (u[j].dropped) {
                                sd += u[j].score;
                                nsd++;
                        } else {
                                sa += u[j].score;
                                nsa++;
                        }
                }
                printf("  %-8s %7" PRIu64 " %7" PRIu64 " %7" PRIu64 "   %.3f / %.3f\n",
                       sseg_gen_persona((sseg_gen_persona_t)i)->name, nu, nb, nd,
                       nsd ? sd / nsd : NAN, nsa ? sa / nsa : NAN);
        }

        printf("\nmethod: events from the generator (src/gen.h, docs/generator.md) fed in event "
               "order through the offline pipeline (sseg_pipeline_feed, partition = hash(user) "
               "mod %d, a commit cycle every %ld events, then one final cycle). ARI: every "
               "generated user, persona vs the segment in its final state (-1 when it has none; "
               "Hubert-Arabie adjustment). AUC: Mann-Whitney with average ranks for ties; "
               "label = the user's ground-truth drop-out lies in the generated period; "
               "population = users with a purchase (only buyers drop out), without those whose "
               "drop-out is less than %g days before the end (not observable yet); score = "
               "sseg_churnstage_score_user at the partition's final clock with the model "
               "refitted on the final state (sseg_churnstage_refit_now); 'stored' = the "
               "churn_score in the state (the user's last scoring).\n",
               partitions, cycle_events, grace_days);

        if (export_path) {
                FILE *f = strcmp(export_path, "-") ? fopen(export_path, "w") : stdout;
                if (!f)
                        die("cannot open the export file");
                fprintf(f, "user_id,persona,dropped,segment,score,auc,score_stored,dropout_ts_ms,"
                           "purchases,events");
                if (features)
                        for (int d = 0; d < SSEG_SEGVEC_DIM; d++)
                                fprintf(f, ",%s", sseg_segvec_names[d]);
                fprintf(f, "\n");
                for (uint32_t i = 0; i < users; i++) {
                        char uid[32];
                        sseg_gen_user_id(i, uid, sizeof(uid));
                        fprintf(f, "%s,%s,%d,%d,%.17g,%d,%.9g,%lld,%u,%u", uid,
                                sseg_gen_persona(u[i].t.persona)->name, u[i].dropped, u[i].segment,
                                u[i].score, u[i].in_auc, u[i].stored,
                                (long long)u[i].t.dropout_ts_ms, u[i].t.purchases, u[i].t.events);
                        if (features)
                                for (int d = 0; d < SSEG_SEGVEC_DIM; d++)
                                        fprintf(f, ",%.9g", u[i].has_state ? u[i].feat[d] : NAN);
                        fprintf(f, "\n");
                }
                if (f != stdout && fclose(f))
                        die("writing the export file failed");
        }

        sseg_kmeans_destroy(km);
        free(sv);
        free(tab);
        free(tab2);
        free(u);
        free(clocks);
        free(next);
        sseg_buf_free(&v);
        sseg_pipeline_destroy(p);
        sseg_gen_destroy(g);
        sseg_conf_destroy(conf);
        /* -X state.dir=DIR keeps the state for `streamseg inspect`; the default one goes. */
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
                fprintf(stderr, "quality: could not remove %s\n", dir);
        return 0;
}
