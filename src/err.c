/*
 * err: names of the error codes in include/streamseg/streamseg.h and whether each is
 * retriable. Translating foreign errors is done by each boundary module, not here.
 */
#include "streamseg/streamseg.h"

const char *sseg_err2str(sseg_err_t err) {
        switch (err) {
        case SSEG_OK: return "Success";
        case SSEG_ERR_INVAL: return "Invalid argument or configuration value";
        case SSEG_ERR_NOMEM: return "Out of memory";
        case SSEG_ERR_IO: return "I/O error";
        case SSEG_ERR_STATE: return "State store (RocksDB) error";
        case SSEG_ERR_STATE_VERSION: return "Unknown state layout version";
        case SSEG_ERR_KAFKA: return "Kafka error";
        case SSEG_ERR_KAFKA_RETRY: return "Transient Kafka error";
        case SSEG_ERR_DECODE: return "Record cannot be decoded or violates the input contract";
        case SSEG_ERR_SCHEMA: return "Schema error";
        case SSEG_ERR_SCHEMA_FETCH: return "Schema registry unreachable";
        case SSEG_ERR_NOENT: return "Not found";
        case SSEG_ERR_TIMEOUT: return "Timed out";
        case SSEG_ERR_UNKNOWN_KEY: return "Unknown configuration key";
        case SSEG_ERR_MODEL: return "Model fit failed or degenerate";
        default: return "Unknown error";
        }
}

int sseg_err_retriable(sseg_err_t err) {
        return err == SSEG_ERR_KAFKA_RETRY || err == SSEG_ERR_SCHEMA_FETCH ||
               err == SSEG_ERR_TIMEOUT;
}

const char *sseg_version(void) {
        return SSEG_VERSION_STR;
}
