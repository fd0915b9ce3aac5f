/*
 * mockcluster: wraps librdkafka's mock cluster (rdkafka_mock.h) behind sseg_err_t, and serves
 * one as its own process (`streamseg mock-kafka`) so that integration tests talk to a real
 * Kafka protocol peer over loopback, from independent clients (streamseg, kcat). The control
 * channel is line-based on stdin with one reply line per command on stdout; it is a test
 * fixture, not a management protocol. This module does not produce or consume data.
 */
#include "mockcluster.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"

struct sseg_mockcluster_s {
        /* The mock needs a client handle for its logging and op queues; it never connects
         * anywhere (no bootstrap.servers). */
        rd_kafka_t *rk;
        rd_kafka_mock_cluster_t *mcluster;
        int brokers;
        /* Names of the topics created through this API. The mock's own lookups create any
         * topic they do not find (rd_kafka_mock_partition_set_leader() on a typo would make a
         * new topic), so calls naming a topic check it here first. */
        pthread_mutex_t lock;
        char **topics;
        size_t ntopics;
};

static void set_err(char *errstr, size_t errstr_size, const char *fmt, ...) {
        if (!errstr || !errstr_size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errstr, errstr_size, fmt, ap);
        va_end(ap);
}

/* The mock answers its control calls with librdkafka codes: invalid input is ours to fix
 * (INVAL), a missing topic/partition is NOENT, anything else is unexpected (KAFKA, fatal). */
static sseg_err_t xlate(rd_kafka_resp_err_t err, const char *what, char *errstr,
                        size_t errstr_size) {
        sseg_err_t e;
        switch (err) {
        case RD_KAFKA_RESP_ERR_NO_ERROR: return SSEG_OK;
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
        case RD_KAFKA_RESP_ERR__UNKNOWN_BROKER:
        case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
        case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
        case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
        case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION: e = SSEG_ERR_INVAL; break;
        case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION: e = SSEG_ERR_NOENT; break;
        case RD_KAFKA_RESP_ERR__TIMED_OUT: e = SSEG_ERR_TIMEOUT; break;
        default: e = SSEG_ERR_KAFKA; break;
        }
        set_err(errstr, errstr_size, "%s: %s (%s)", what, rd_kafka_err2str(err),
                rd_kafka_err2name(err));
        return e;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
        fprintf(stderr, "mock-kafka: %s: %s\n", fac, buf);
}

sseg_mockcluster_t *sseg_mockcluster_new(int brokers, char *errstr, size_t errstr_size) {
        if (brokers < 1 || brokers > SSEG_MOCKCLUSTER_MAX_BROKERS) {
                set_err(errstr, errstr_size, "mock cluster: brokers must be in 1..%d, not %d",
                        SSEG_MOCKCLUSTER_MAX_BROKERS, brokers);
                return NULL;
        }
        sseg_mockcluster_t *mc = calloc(1, sizeof(*mc));
        if (!mc) {
                set_err(errstr, errstr_size, "mock cluster: out of memory");
                return NULL;
        }
        mc->brokers = brokers;

        char kerr[512];
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        /* Warnings and errors only: the bookkeeping handle would otherwise note that it has no
         * bootstrap.servers, which is the point. */
        if (rd_kafka_conf_set(conf, "log_level", "4", kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK ||
            rd_kafka_conf_set(conf, "client.id", "streamseg-mock", kerr, sizeof(kerr)) !=
                RD_KAFKA_CONF_OK) {
                set_err(errstr, errstr_size, "mock cluster: %s", kerr);
                rd_kafka_conf_destroy(conf);
                free(mc);
                return NULL;
        }
        rd_kafka_conf_set_log_cb(conf, log_cb);

        /* librdkafka's and the mock's threads must not take SIGINT/SIGTERM from the thread
         * that waits for them: they inherit the mask in force when they are created. */
        sigset_t block, old;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &block, &old);

        mc->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
        if (!mc->rk) {
                pthread_sigmask(SIG_SETMASK, &old, NULL);
                set_err(errstr, errstr_size, "mock cluster: client handle: %s", kerr);
                rd_kafka_conf_destroy(conf); /* not taken over on failure */
                free(mc);
                return NULL;
        }
        mc->mcluster = rd_kafka_mock_cluster_new(mc->rk, brokers);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!mc->mcluster) {
                set_err(errstr, errstr_size,
                        "mock cluster: cannot start %d broker(s) (no free loopback port?)",
                        brokers);
                rd_kafka_destroy(mc->rk);
                free(mc);
                return NULL;
        }
        pthread_mutex_init(&mc->lock, NULL);
        return mc;
}

void sseg_mockcluster_destroy(sseg_mockcluster_t *mc) {
        if (!mc)
                return;
        rd_kafka_mock_cluster_destroy(mc->mcluster);
        rd_kafka_destroy(mc->rk);
        for (size_t i = 0; i < mc->ntopics; i++)
                free(mc->topics[i]);
        free(mc->topics);
        pthread_mutex_destroy(&mc->lock);
        free(mc);
}

static int topic_known(sseg_mockcluster_t *mc, const char *name) {
        int found = 0;
        pthread_mutex_lock(&mc->lock);
        for (size_t i = 0; i < mc->ntopics && !found; i++)
                found = !strcmp(mc->topics[i], name);
        pthread_mutex_unlock(&mc->lock);
        return found;
}

static sseg_err_t topic_remember(sseg_mockcluster_t *mc, const char *name) {
        char *copy = strdup(name);
        if (!copy)
                return SSEG_ERR_NOMEM;
        pthread_mutex_lock(&mc->lock);
        char **t = realloc(mc->topics, (mc->ntopics + 1) * sizeof(*t));
        if (t) {
                mc->topics = t;
                mc->topics[mc->ntopics++] = copy;
        }
        pthread_mutex_unlock(&mc->lock);
        if (!t) {
                free(copy);
                return SSEG_ERR_NOMEM;
        }
        return SSEG_OK;
}

const char *sseg_mockcluster_bootstraps(const sseg_mockcluster_t *mc) {
        return rd_kafka_mock_cluster_bootstraps(mc->mcluster);
}

int sseg_mockcluster_broker_count(const sseg_mockcluster_t *mc) {
        return mc->brokers;
}

/* Kafka's rule for topic names (legal characters, at most 249 of them). */
static int topic_name_ok(const char *name) {
        size_t n = strlen(name);
        if (n == 0 || n > 249 || !strcmp(name, ".") || !strcmp(name, ".."))
                return 0;
        for (size_t i = 0; i < n; i++) {
                char c = name[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return 0;
        }
        return 1;
}

static int broker_ok(const sseg_mockcluster_t *mc, int32_t id) {
        return id >= 1 && id <= mc->brokers;
}

sseg_err_t sseg_mockcluster_create_topic(sseg_mockcluster_t *mc, const char *name, int partitions,
                                         int replication, char *errstr, size_t errstr_size) {
        if (!name || !topic_name_ok(name)) {
                set_err(errstr, errstr_size, "invalid topic name '%s' (1-249 of [a-zA-Z0-9._-])",
                        name ? name : "");
                return SSEG_ERR_INVAL;
        }
        if (partitions < 1 || partitions > SSEG_MOCKCLUSTER_MAX_PARTITIONS) {
                set_err(errstr, errstr_size, "topic %s: partitions must be in 1..%d, not %d", name,
                        SSEG_MOCKCLUSTER_MAX_PARTITIONS, partitions);
                return SSEG_ERR_INVAL;
        }
        if (replication < 1) {
                set_err(errstr, errstr_size, "topic %s: replication must be >= 1, not %d", name,
                        replication);
                return SSEG_ERR_INVAL;
        }
        if (replication > mc->brokers)
                replication = mc->brokers;
        char what[300];
        snprintf(what, sizeof(what), "create topic %s", name);
        sseg_err_t e =
            xlate(rd_kafka_mock_topic_create(mc->mcluster, name, partitions, replication), what,
                  errstr, errstr_size);
        if (!e && (e = topic_remember(mc, name)))
                set_err(errstr, errstr_size, "%s: out of memory", what);
        return e;
}

static sseg_err_t broker_updown(sseg_mockcluster_t *mc, int32_t id, int up, char *errstr,
                                size_t errstr_size) {
        if (!broker_ok(mc, id)) {
                set_err(errstr, errstr_size, "unknown broker %d (brokers are 1..%d)", (int)id,
                        mc->brokers);
                return SSEG_ERR_INVAL;
        }
        char what[64];
        snprintf(what, sizeof(what), "broker %d %s", (int)id, up ? "up" : "down");
        return xlate(up ? rd_kafka_mock_broker_set_up(mc->mcluster, id)
                        : rd_kafka_mock_broker_set_down(mc->mcluster, id),
                     what, errstr, errstr_size);
}

sseg_err_t sseg_mockcluster_broker_down(sseg_mockcluster_t *mc, int32_t id, char *errstr,
                                        size_t errstr_size) {
        return broker_updown(mc, id, 0, errstr, errstr_size);
}

sseg_err_t sseg_mockcluster_broker_up(sseg_mockcluster_t *mc, int32_t id, char *errstr,
                                      size_t errstr_size) {
        return broker_updown(mc, id, 1, errstr, errstr_size);
}

sseg_err_t sseg_mockcluster_broker_rtt(sseg_mockcluster_t *mc, int32_t id, int rtt_ms, char *errstr,
                                       size_t errstr_size) {
        if (!broker_ok(mc, id)) {
                set_err(errstr, errstr_size, "unknown broker %d (brokers are 1..%d)", (int)id,
                        mc->brokers);
                return SSEG_ERR_INVAL;
        }
        if (rtt_ms < 0) {
                set_err(errstr, errstr_size, "rtt must be >= 0 ms, not %d", rtt_ms);
                return SSEG_ERR_INVAL;
        }
        char what[64];
        snprintf(what, sizeof(what), "broker %d rtt", (int)id);
        return xlate(rd_kafka_mock_broker_set_rtt(mc->mcluster, id, rtt_ms), what, errstr,
                     errstr_size);
}

sseg_err_t sseg_mockcluster_set_leader(sseg_mockcluster_t *mc, const char *topic, int32_t partition,
                                       int32_t broker_id, char *errstr, size_t errstr_size) {
        /* The mock silently accepts an unknown broker id as "no leader": refuse it here. */
        if (broker_id != -1 && !broker_ok(mc, broker_id)) {
                set_err(errstr, errstr_size, "unknown broker %d (brokers are 1..%d, or -1)",
                        (int)broker_id, mc->brokers);
                return SSEG_ERR_INVAL;
        }
        if (!topic || !topic_known(mc, topic)) {
                set_err(errstr, errstr_size,
                        "unknown topic '%s' (only topics created through the mock's API, not "
                        "auto-created ones, can be changed)",
                        topic ? topic : "");
                return SSEG_ERR_NOENT;
        }
        char what[300];
        snprintf(what, sizeof(what), "leader of %s [%d]", topic, (int)partition);
        return xlate(rd_kafka_mock_partition_set_leader(mc->mcluster, topic, partition, broker_id),
                     what, errstr, errstr_size);
}

sseg_err_t sseg_mockcluster_push_errors(sseg_mockcluster_t *mc, int apikey, int code, size_t count,
                                        char *errstr, size_t errstr_size) {
        if (apikey < 0 || apikey > INT16_MAX) {
                set_err(errstr, errstr_size, "invalid ApiKey %d", apikey);
                return SSEG_ERR_INVAL;
        }
        /* Only broker-side codes go on the wire; librdkafka's negative codes are local. */
        if (code <= 0 || code > INT16_MAX) {
                set_err(errstr, errstr_size, "invalid Kafka error code %d (must be > 0)", code);
                return SSEG_ERR_INVAL;
        }
        if (count < 1 || count > 10000) {
                set_err(errstr, errstr_size, "error count must be in 1..10000, not %zu", count);
                return SSEG_ERR_INVAL;
        }
        rd_kafka_resp_err_t *errs = malloc(count * sizeof(*errs));
        if (!errs) {
                set_err(errstr, errstr_size, "out of memory");
                return SSEG_ERR_NOMEM;
        }
        for (size_t i = 0; i < count; i++)
                errs[i] = (rd_kafka_resp_err_t)code;
        rd_kafka_mock_push_request_errors_array(mc->mcluster, (int16_t)apikey, count, errs);
        free(errs);
        return SSEG_OK;
}

void sseg_mockcluster_clear_errors(sseg_mockcluster_t *mc, int apikey) {
        if (apikey >= 0 && apikey <= INT16_MAX)
                rd_kafka_mock_clear_request_errors(mc->mcluster, (int16_t)apikey);
}

/* Parses a whole decimal int in [lo, hi]; 0 on success. */
static int parse_int(const char *s, long lo, long hi, int *out) {
        if (!s || !*s)
                return -1;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || *end || v < lo || v > hi)
                return -1;
        *out = (int)v;
        return 0;
}

/* Kafka protocol ApiKeys (KIP-numbered, as in Kafka's ApiKeys.java). */
static const struct {
        const char *name;
        int key;
} apikeys[] = {
    {"Produce", 0},
    {"Fetch", 1},
    {"ListOffsets", 2},
    {"Metadata", 3},
    {"LeaderAndIsr", 4},
    {"StopReplica", 5},
    {"UpdateMetadata", 6},
    {"ControlledShutdown", 7},
    {"OffsetCommit", 8},
    {"OffsetFetch", 9},
    {"FindCoordinator", 10},
    {"JoinGroup", 11},
    {"Heartbeat", 12},
    {"LeaveGroup", 13},
    {"SyncGroup", 14},
    {"DescribeGroups", 15},
    {"ListGroups", 16},
    {"SaslHandshake", 17},
    {"ApiVersions", 18},
    {"CreateTopics", 19},
    {"DeleteTopics", 20},
    {"DeleteRecords", 21},
    {"InitProducerId", 22},
    {"OffsetForLeaderEpoch", 23},
    {"AddPartitionsToTxn", 24},
    {"AddOffsetsToTxn", 25},
    {"EndTxn", 26},
    {"WriteTxnMarkers", 27},
    {"TxnOffsetCommit", 28},
    {"DescribeAcls", 29},
    {"CreateAcls", 30},
    {"DeleteAcls", 31},
    {"DescribeConfigs", 32},
    {"AlterConfigs", 33},
    {"AlterReplicaLogDirs", 34},
    {"DescribeLogDirs", 35},
    {"SaslAuthenticate", 36},
    {"CreatePartitions", 37},
    {"CreateDelegationToken", 38},
    {"RenewDelegationToken", 39},
    {"ExpireDelegationToken", 40},
    {"DescribeDelegationToken", 41},
    {"DeleteGroups", 42},
    {"ElectLeaders", 43},
    {"IncrementalAlterConfigs", 44},
    {"AlterPartitionReassignments", 45},
    {"ListPartitionReassignments", 46},
    {"OffsetDelete", 47},
};

int sseg_mockcluster_apikey(const char *name) {
        int v;
        if (!name)
                return -1;
        if (!parse_int(name, 0, INT16_MAX, &v))
                return v;
        for (size_t i = 0; i < sizeof(apikeys) / sizeof(apikeys[0]); i++)
                if (!strcasecmp(name, apikeys[i].name))
                        return apikeys[i].key;
        return -1;
}

int sseg_mockcluster_errcode(const char *name) {
        int v;
        if (!name)
                return -1;
        if (!parse_int(name, 1, INT16_MAX, &v))
                return v;
        static const char prefix[] = "RD_KAFKA_RESP_ERR_";
        if (!strncasecmp(name, prefix, sizeof(prefix) - 1))
                name += sizeof(prefix) - 1;
        const struct rd_kafka_err_desc *descs;
        size_t cnt;
        rd_kafka_get_err_descs(&descs, &cnt);
        for (size_t i = 0; i < cnt; i++)
                if (descs[i].code > 0 && descs[i].name && !strcasecmp(name, descs[i].name))
                        return descs[i].code;
        return -1;
}

/* ---------------------------------------------------------------------------------------------
 * streamseg mock-kafka
 */

#define MAX_TOPICS   64
#define MAX_LINE     1024
#define MAX_TOKENS   8
#define POLL_MS      200 /* upper bound on the reaction time to a signal */
#define DEFAULT_PART 4

/* Topics every streamseg program expects; --topic NAME:P overrides the partition count. */
static const char *const default_topics[] = {
    "shop.events",
    "streamseg.profiles",
    "streamseg.dlq",
    "streamseg.segment-changes",
    "streamseg.segment-stats",
    "streamseg.churn-alerts",
    "streamseg.model",
};

static void usage(FILE *f) {
        fprintf(
            f,
            "usage: streamseg mock-kafka [--brokers N] [--partitions P] "
            "[--topic NAME[:PARTITIONS]]... [--help]\n"
            "\n"
            "Runs a librdkafka mock Kafka cluster on loopback until SIGINT/SIGTERM (exit 0).\n"
            "The first line of stdout is the bootstrap servers list. Topics created: every\n"
            "--topic, and shop.events, streamseg.profiles, streamseg.dlq,\n"
            "streamseg.segment-changes, streamseg.segment-stats, streamseg.churn-alerts and\n"
            "streamseg.model, with P partitions unless given.\n"
            "\n"
            "  --brokers N      brokers, ids 1..N (default 1, at most %d)\n"
            "  --partitions P   partitions of topics without an explicit count (default %d)\n"
            "  --topic NAME[:P] create topic NAME (repeatable)\n"
            "\n"
            "Control commands, one per line on stdin; each gets one reply line on stdout,\n"
            "'ok' or 'error: <reason>' (end of stdin only stops the reading):\n"
            "  topic NAME P [R]              create a topic (replication R, default min(N,3))\n"
            "  down ID | up ID               take broker ID down / bring it back\n"
            "  leader TOPIC PARTITION ID     move a partition's leadership (ID -1: none)\n"
            "  errors API CODE COUNT         fail the next COUNT requests of API (Produce,\n"
            "                                Fetch, OffsetCommit, JoinGroup, ... or a number)\n"
            "                                with Kafka error CODE (number or name, e.g.\n"
            "                                NOT_LEADER_FOR_PARTITION)\n"
            "  clear API                     drop the queued errors of API\n"
            "  rtt ID MS                     add MS of latency to broker ID's responses\n"
            "  ping                          answers ok\n"
            "\n"
            "The mock keeps about 5 MB per partition, has no CreateTopics API and ignores topic\n"
            "configs (no compaction); clients asking for an unknown topic's metadata create it\n"
            "with 4 partitions.\n",
            SSEG_MOCKCLUSTER_MAX_BROKERS, DEFAULT_PART);
}

static void reply(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stdout, fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
        fflush(stdout);
}

static int default_replication(const sseg_mockcluster_t *mc) {
        return mc->brokers < 3 ? mc->brokers : 3;
}

/* Splits line in place on blanks into at most max tokens; returns the count, or -1 if there
 * are more. */
static int tokenize(char *line, char **tok, int max) {
        int n = 0;
        char *p = line;
        for (;;) {
                while (*p == ' ' || *p == '\t' || *p == '\r')
                        p++;
                if (!*p)
                        return n;
                if (n == max)
                        return -1;
                tok[n++] = p;
                while (*p && *p != ' ' && *p != '\t' && *p != '\r')
                        p++;
                if (*p)
                        *p++ = '\0';
        }
}

/* Executes one control command and writes its reply line. */
static void control(sseg_mockcluster_t *mc, char *line) {
        char *tok[MAX_TOKENS];
        char err[512];
        int n = tokenize(line, tok, MAX_TOKENS);
        if (n == 0 || (n > 0 && tok[0][0] == '#'))
                return; /* blank lines and comments get no reply */
        if (n < 0) {
                reply("error: too many words");
                return;
        }
        const char *cmd = tok[0];
        sseg_err_t e = SSEG_OK;
        int a, b, c;
        err[0] = '\0';

        if (!strcmp(cmd, "ping") && n == 1) {
                e = SSEG_OK;
        } else if (!strcmp(cmd, "topic") && (n == 3 || n == 4)) {
                if (parse_int(tok[2], 1, SSEG_MOCKCLUSTER_MAX_PARTITIONS, &a)) {
                        reply("error: bad partition count '%s'", tok[2]);
                        return;
                }
                b = default_replication(mc);
                if (n == 4 && parse_int(tok[3], 1, SSEG_MOCKCLUSTER_MAX_BROKERS, &b)) {
                        reply("error: bad replication factor '%s'", tok[3]);
                        return;
                }
                e = sseg_mockcluster_create_topic(mc, tok[1], a, b, err, sizeof(err));
        } else if ((!strcmp(cmd, "down") || !strcmp(cmd, "up")) && n == 2) {
                if (parse_int(tok[1], INT32_MIN, INT32_MAX, &a)) {
                        reply("error: bad broker id '%s'", tok[1]);
                        return;
                }
                e = cmd[0] == 'd' ? sseg_mockcluster_broker_down(mc, a, err, sizeof(err))
                                  : sseg_mockcluster_broker_up(mc, a, err, sizeof(err));
        } else if (!strcmp(cmd, "leader") && n == 4) {
                if (parse_int(tok[2], 0, INT32_MAX, &a) ||
                    parse_int(tok[3], INT32_MIN, INT32_MAX, &b)) {
                        reply("error: usage: leader TOPIC PARTITION BROKERID");
                        return;
                }
                e = sseg_mockcluster_set_leader(mc, tok[1], a, b, err, sizeof(err));
        } else if (!strcmp(cmd, "errors") && n == 4) {
                if ((a = sseg_mockcluster_apikey(tok[1])) < 0) {
                        reply("error: unknown API '%s'", tok[1]);
                        return;
                }
                if ((b = sseg_mockcluster_errcode(tok[2])) < 0) {
                        reply("error: unknown Kafka error code '%s'", tok[2]);
                        return;
                }
                if (parse_int(tok[3], 1, 10000, &c)) {
                        reply("error: bad count '%s' (1..10000)", tok[3]);
                        return;
                }
                e = sseg_mockcluster_push_errors(mc, a, b, (size_t)c, err, sizeof(err));
        } else if (!strcmp(cmd, "clear") && n == 2) {
                if ((a = sseg_mockcluster_apikey(tok[1])) < 0) {
                        reply("error: unknown API '%s'", tok[1]);
                        return;
                }
                sseg_mockcluster_clear_errors(mc, a);
        } else if (!strcmp(cmd, "rtt") && n == 3) {
                if (parse_int(tok[1], INT32_MIN, INT32_MAX, &a) ||
                    parse_int(tok[2], 0, 600000, &b)) {
                        reply("error: usage: rtt BROKERID MS");
                        return;
                }
                e = sseg_mockcluster_broker_rtt(mc, a, b, err, sizeof(err));
        } else {
                reply("error: unknown command or wrong arguments: '%s' (topic NAME P [R], "
                      "down ID, up ID, leader TOPIC PARTITION ID, errors API CODE COUNT, "
                      "clear API, rtt ID MS, ping)",
                      cmd);
                return;
        }
        if (e) {
                fprintf(stderr, "mock-kafka: %s: %s\n", cmd, err);
                reply("error: %s", err);
        } else {
                reply("ok");
        }
}

/* Line reader over a raw fd (stdio buffering would hide data from poll()). */
typedef struct {
        char buf[MAX_LINE + 1];
        size_t len;
        int discarding; /* inside an over-long line: drop up to the next newline */
} linebuf_t;

/* Reads what is available on fd and runs every complete line. Returns 0, or -1 on EOF or a
 * read error (stop reading). */
static int read_commands(sseg_mockcluster_t *mc, int fd, linebuf_t *lb) {
        ssize_t r = read(fd, lb->buf + lb->len, MAX_LINE - lb->len);
        if (r < 0)
                return errno == EINTR || errno == EAGAIN ? 0 : -1;
        if (r == 0) {
                /* A last command without its newline still counts. */
                if (lb->len && !lb->discarding) {
                        lb->buf[lb->len] = '\0';
                        control(mc, lb->buf);
                }
                lb->len = 0;
                return -1;
        }
        lb->len += (size_t)r;
        size_t start = 0;
        for (size_t i = 0; i < lb->len; i++) {
                if (lb->buf[i] != '\n')
                        continue;
                lb->buf[i] = '\0';
                if (!lb->discarding)
                        control(mc, lb->buf + start);
                lb->discarding = 0;
                start = i + 1;
        }
        memmove(lb->buf, lb->buf + start, lb->len - start);
        lb->len -= start;
        if (lb->len == MAX_LINE) {
                if (!lb->discarding)
                        reply("error: line longer than %d bytes", MAX_LINE);
                lb->discarding = 1;
                lb->len = 0;
        }
        return 0;
}

typedef struct {
        char name[256];
        int partitions; /* 0: the --partitions default */
} topic_arg_t;

/* Adds or updates (a later --topic wins) a topic. */
static int add_topic(topic_arg_t *topics, int *cnt, const char *spec) {
        const char *colon = strrchr(spec, ':');
        size_t nlen = colon ? (size_t)(colon - spec) : strlen(spec);
        int parts = 0;
        if (nlen == 0 || nlen >= sizeof(topics[0].name)) {
                fprintf(stderr, "streamseg mock-kafka: bad --topic '%s'\n", spec);
                return -1;
        }
        if (colon && parse_int(colon + 1, 1, SSEG_MOCKCLUSTER_MAX_PARTITIONS, &parts)) {
                fprintf(stderr, "streamseg mock-kafka: --topic '%s': partitions must be in 1..%d\n",
                        spec, SSEG_MOCKCLUSTER_MAX_PARTITIONS);
                return -1;
        }
        for (int i = 0; i < *cnt; i++) {
                if (strlen(topics[i].name) == nlen && !memcmp(topics[i].name, spec, nlen)) {
                        if (parts)
                                topics[i].partitions = parts;
                        return 0;
                }
        }
        if (*cnt == MAX_TOPICS) {
                fprintf(stderr, "streamseg mock-kafka: at most %d topics\n", MAX_TOPICS);
                return -1;
        }
        memcpy(topics[*cnt].name, spec, nlen);
        topics[*cnt].name[nlen] = '\0';
        topics[*cnt].partitions = parts;
        (*cnt)++;
        return 0;
}

int sseg_cmd_mock_kafka(int argc, char **argv) {
        int brokers = 1, partitions = DEFAULT_PART, ntopics = 0;
        static topic_arg_t topics[MAX_TOPICS];

        for (size_t i = 0; i < sizeof(default_topics) / sizeof(default_topics[0]); i++)
                if (add_topic(topics, &ntopics, default_topics[i]))
                        return 2;

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
                        usage(stdout);
                        return 0;
                }
                if (i + 1 >= argc ||
                    (strcmp(a, "--brokers") && strcmp(a, "--partitions") && strcmp(a, "--topic"))) {
                        fprintf(stderr,
                                "streamseg mock-kafka: unknown option or missing value: '%s'\n", a);
                        usage(stderr);
                        return 2;
                }
                const char *v = argv[++i];
                if (!strcmp(a, "--brokers")) {
                        if (parse_int(v, 1, SSEG_MOCKCLUSTER_MAX_BROKERS, &brokers)) {
                                fprintf(stderr,
                                        "streamseg mock-kafka: --brokers must be in 1..%d\n",
                                        SSEG_MOCKCLUSTER_MAX_BROKERS);
                                return 2;
                        }
                } else if (!strcmp(a, "--partitions")) {
                        if (parse_int(v, 1, SSEG_MOCKCLUSTER_MAX_PARTITIONS, &partitions)) {
                                fprintf(stderr,
                                        "streamseg mock-kafka: --partitions must be in 1..%d\n",
                                        SSEG_MOCKCLUSTER_MAX_PARTITIONS);
                                return 2;
                        }
                } else if (add_topic(topics, &ntopics, v)) {
                        return 2;
                }
        }
        for (int i = 0; i < ntopics; i++) {
                if (!topic_name_ok(topics[i].name)) {
                        fprintf(stderr,
                                "streamseg mock-kafka: invalid topic name '%s' (1-249 of "
                                "[a-zA-Z0-9._-])\n",
                                topics[i].name);
                        return 2;
                }
        }

        volatile sig_atomic_t stop = 0;
        sseg_cli_install_signals(&stop); /* also ignores SIGPIPE: a closed stdout is harmless */

        char err[512];
        sseg_mockcluster_t *mc = sseg_mockcluster_new(brokers, err, sizeof(err));
        if (!mc) {
                fprintf(stderr, "streamseg mock-kafka: %s\n", err);
                return 1;
        }
        for (int i = 0; i < ntopics; i++) {
                int p = topics[i].partitions ? topics[i].partitions : partitions;
                if (sseg_mockcluster_create_topic(mc, topics[i].name, p, default_replication(mc),
                                                  err, sizeof(err))) {
                        fprintf(stderr, "streamseg mock-kafka: %s\n", err);
                        sseg_mockcluster_destroy(mc);
                        return 1;
                }
        }

        /* Tests wait for this line: it must come first and alone. */
        reply("%s", sseg_mockcluster_bootstraps(mc));
        fprintf(stderr, "mock-kafka: %d broker(s) at %s, %d topic(s); pid %d\n", brokers,
                sseg_mockcluster_bootstraps(mc), ntopics, (int)getpid());

        static linebuf_t lb;
        int in_open = 1;
        while (!stop) {
                struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
                /* After EOF there is nothing to watch: poll() on no fds is a plain sleep. */
                int r = poll(&pfd, in_open ? 1 : 0, POLL_MS);
                if (r < 0 && errno != EINTR)
                        in_open = 0;
                if (r > 0 && in_open) {
                        if (pfd.revents & (POLLIN | POLLHUP)) {
                                if (read_commands(mc, STDIN_FILENO, &lb))
                                        in_open = 0;
                        } else if (pfd.revents & (POLLERR | POLLNVAL)) {
                                in_open = 0;
                        }
                }
        }
        fprintf(stderr, "mock-kafka: stopping on signal\n");
        sseg_mockcluster_destroy(mc);
        return 0;
}
