/*
 * mockcluster: an in-process Kafka protocol peer for tests and demos, wrapping librdkafka's
 * mock cluster (rdkafka_mock.h), and the `streamseg mock-kafka` command that serves one as its
 * own process with a line-based control channel on stdin. Owns the bookkeeping rd_kafka_t the
 * mock needs and the translation of mock errors into sseg_err_t. Does not produce or consume:
 * clients connect to sseg_mockcluster_bootstraps() like to any cluster.
 *
 * All functions may be called from any thread: librdkafka serialises mock changes through the
 * mock's own thread. The mock keeps at most about 5 MB per partition (older messages are
 * dropped), has no CreateTopics API, and ignores topic configs (no compaction, no retention).
 */
#ifndef SSEG_MOCKCLUSTER_H
#define SSEG_MOCKCLUSTER_H
#include <stddef.h>
#include <stdint.h>

#include "streamseg/streamseg.h"

/* Most brokers and partitions per topic accepted (the mock has no limit of its own; these are
 * sanity caps for command-line input). */
#define SSEG_MOCKCLUSTER_MAX_BROKERS    32
#define SSEG_MOCKCLUSTER_MAX_PARTITIONS 1024

typedef struct sseg_mockcluster_s sseg_mockcluster_t;

/* Starts a mock cluster of `brokers` brokers (ids 1..brokers) listening on loopback ports.
 * Returns NULL with a message in errstr on failure. Free with sseg_mockcluster_destroy(). */
sseg_mockcluster_t *sseg_mockcluster_new(int brokers, char *errstr, size_t errstr_size);

/* Stops the brokers (open client connections are closed) and frees everything. NULL: no-op. */
void sseg_mockcluster_destroy(sseg_mockcluster_t *mc);

/* "127.0.0.1:port,..." for bootstrap.servers; borrowed until sseg_mockcluster_destroy(). */
const char *sseg_mockcluster_bootstraps(const sseg_mockcluster_t *mc);

/* Number of brokers given to sseg_mockcluster_new(). */
int sseg_mockcluster_broker_count(const sseg_mockcluster_t *mc);

/* Creates a topic (name copied). replication is capped at the broker count. Creating a topic
 * that already exists is SSEG_ERR_INVAL. The 2.0.2 mock also creates, with 4 partitions, any
 * unknown topic a client names in a Metadata request (so any topic a client produces to or
 * subscribes to), and clients cannot opt out (allow.auto.create.topics=false needs a Metadata
 * version the mock does not offer): create topics explicitly, before clients use them, when
 * the partition count matters. */
sseg_err_t sseg_mockcluster_create_topic(sseg_mockcluster_t *mc, const char *name, int partitions,
                                         int replication, char *errstr, size_t errstr_size);

/* Takes broker `id` down (its connections are closed and it accepts no new ones; partitions
 * it leads become unavailable) or back up. Unknown id: SSEG_ERR_INVAL. */
sseg_err_t sseg_mockcluster_broker_down(sseg_mockcluster_t *mc, int32_t id, char *errstr,
                                        size_t errstr_size);
sseg_err_t sseg_mockcluster_broker_up(sseg_mockcluster_t *mc, int32_t id, char *errstr,
                                      size_t errstr_size);

/* Adds round-trip latency (ms, >= 0) to every response of broker id. */
sseg_err_t sseg_mockcluster_broker_rtt(sseg_mockcluster_t *mc, int32_t id, int rtt_ms, char *errstr,
                                       size_t errstr_size);

/* Moves the leadership of topic/partition to broker_id (-1: no leader). Unknown topic or
 * partition: SSEG_ERR_NOENT; unknown broker: SSEG_ERR_INVAL. */
sseg_err_t sseg_mockcluster_set_leader(sseg_mockcluster_t *mc, const char *topic, int32_t partition,
                                       int32_t broker_id, char *errstr, size_t errstr_size);

/* Makes the next `count` requests of ApiKey `apikey` (to any broker) fail with Kafka protocol
 * error code `code` (> 0, e.g. 6 NOT_LEADER_FOR_PARTITION). count <= 10000. */
sseg_err_t sseg_mockcluster_push_errors(sseg_mockcluster_t *mc, int apikey, int code, size_t count,
                                        char *errstr, size_t errstr_size);

/* Drops the errors still queued for apikey. */
void sseg_mockcluster_clear_errors(sseg_mockcluster_t *mc, int apikey);

/* Kafka ApiKey of a request name ("Produce", "Fetch", "OffsetCommit", "JoinGroup", ...,
 * case-insensitive) or of a decimal number; -1 if unknown. */
int sseg_mockcluster_apikey(const char *name);

/* Kafka protocol error code (> 0) of a name as librdkafka spells it ("NOT_LEADER_FOR_PARTITION",
 * with or without the "RD_KAFKA_RESP_ERR_" prefix, case-insensitive) or of a decimal number;
 * -1 if unknown or not a broker error. */
int sseg_mockcluster_errcode(const char *name);

/* `streamseg mock-kafka`: argv[0] = "mock-kafka". Prints the bootstrap servers as the first
 * line of stdout, answers control commands read from stdin (see --help) with "ok" or
 * "error: ..." lines, serves until SIGINT/SIGTERM. Returns 0 on a clean stop, 1 if the cluster
 * cannot start, 2 on a usage error. */
int sseg_cmd_mock_kafka(int argc, char **argv);
#endif
