#!/bin/sh
# The `gen` service of deploy/compose.yaml (profile "demo"), run in the streamseg image:
# registers schemas/event.avsc with the Schema Registry as subject $TOPIC-value, then produces
# simulated shop events in the Confluent wire format with the id the registry gave, so that
# streamseg (input.format=confluent) resolves the writer schema from the registry.
# Arguments are passed to `streamseg gen` (see docs/generator.md).
#   demo-gen.sh --print-body   prints the registration request body and exits (tests)
set -eu
SCHEMA=${SCHEMA:-/usr/share/streamseg/schemas/event.avsc}
REGISTRY=${REGISTRY:-http://schema-registry:8081}
BROKERS=${BROKERS:-kafka:9092}
TOPIC=${TOPIC:-shop.events}

# {"schema": "<the .avsc as one JSON string>"}: join the lines, escape \ and ".
body() {
        printf '{"schema":"%s"}' "$(tr -d '\n\r' <"$SCHEMA" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/ /g')"
}

if [ "${1:-}" = "--print-body" ]; then
        body
        exit 0
fi

tries=0
until curl -fsS -o /dev/null "$REGISTRY/subjects"; do
        tries=$((tries + 1))
        [ "$tries" -lt 60 ] || { echo "demo-gen: no schema registry at $REGISTRY" >&2; exit 1; }
        sleep 2
done
reply=$(body | curl -fsS -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        --data-binary @- "$REGISTRY/subjects/$TOPIC-value/versions")
id=$(printf '%s' "$reply" | sed -n 's/.*"id" *: *\([0-9][0-9]*\).*/\1/p')
[ -n "$id" ] || { echo "demo-gen: unexpected registry reply: $reply" >&2; exit 1; }
echo "demo-gen: $SCHEMA registered as $TOPIC-value, schema id $id" >&2
exec /usr/bin/streamseg gen --brokers "$BROKERS" --topic "$TOPIC" --format confluent \
        --schema-id "$id" "$@"
