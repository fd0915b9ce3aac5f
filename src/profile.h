/*
 * profile: the user profile record published on output.profiles.topic (compacted, key =
 * user_id), encoded from sseg_user_t as Avro binary of schemas/user_profile.avsc or as JSON
 * with the same field names. Owns the schema's field order; not the features' meaning.
 */
#ifndef SSEG_PROFILE_H
#define SSEG_PROFILE_H
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "features.h"

typedef enum { SSEG_OUT_AVRO = 0, SSEG_OUT_JSON = 1 } sseg_out_format_t;

/* Appends the profile of user (user_id, len) as of now_ms (the partition's event-time
 * watermark) to out. Deterministic: the same state and now_ms give the same bytes. */
void sseg_profile_encode(const sseg_user_t *u, const char *user_id, size_t user_id_len,
                         int partition, int64_t now_ms, sseg_out_format_t fmt, sseg_buf_t *out);
#endif
