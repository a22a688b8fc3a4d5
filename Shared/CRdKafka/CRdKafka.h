// Clang module shim exposing librdkafka (and its mock cluster) to Swift.
#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/// `rd_kafka_producev` is variadic, which Swift cannot call, so this wrapper fixes
/// the argument list. The payload and key are copied (`RD_KAFKA_MSG_F_COPY`).
/// `headers` may be NULL; on success librdkafka owns it, on failure the caller
/// still does. `msg_opaque` comes back in the delivery report's `_private`.
static inline rd_kafka_resp_err_t
crdkafka_produce(rd_kafka_t *rk,
                 const char *topic,
                 const void *key, size_t key_len,
                 const void *value, size_t value_len,
                 rd_kafka_headers_t *headers,
                 void *msg_opaque) {
        if (headers != NULL) {
                return rd_kafka_producev(
                    rk, RD_KAFKA_V_TOPIC(topic),
                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                    RD_KAFKA_V_KEY(key, key_len),
                    RD_KAFKA_V_VALUE(value, value_len),
                    RD_KAFKA_V_HEADERS(headers),
                    RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
        }
        return rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE(value, value_len),
            RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
}

#endif
