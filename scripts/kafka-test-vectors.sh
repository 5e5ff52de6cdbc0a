#!/usr/bin/env bash
# Writes the known answers that floe-core's tests check against Apache Kafka's own Java
# code (kafka-clients from Maven Central), so no test uses floe's code as its own oracle:
#   - crates/floe-core/src/testdata/kafka-batches.hex: RecordBatch v2 bytes written by
#     Kafka's MemoryRecordsBuilder (uncompressed, lz4, zstd), checked by floe-core's
#     `batch::tests::decodes_batches_written_by_kafka`;
#   - on stdout, Kafka's `Utils.murmur2` and `BuiltInPartitioner.partitionForKey` for a
#     few keys, the numbers hard-coded in `partitioner::tests` and floe-broker's tests.
# Needs java 17+ and mvn; not part of CI. The output is deterministic: rerunning it must
# leave the hex file unchanged.
#
#   scripts/kafka-test-vectors.sh [KAFKA_CLIENTS_VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-4.1.1}
OUT=crates/floe-core/src/testdata/kafka-batches.hex
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cat > "$WORK/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId>
  <artifactId>kafka-test-vectors</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-clients</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
# kafka-clients brings lz4-java, zstd-jni and slf4j-api as runtime dependencies.
(cd "$WORK" && mvn -q -B -Dstyle.color=never org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
  -DoutputDirectory=libs -DincludeScope=runtime)

cat > "$WORK/KafkaTestVectors.java" <<'EOF'
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import org.apache.kafka.common.compress.Compression;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.record.MemoryRecords;
import org.apache.kafka.common.record.MemoryRecordsBuilder;
import org.apache.kafka.common.record.RecordBatch;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.utils.AppInfoParser;
import org.apache.kafka.common.utils.Utils;

public class KafkaTestVectors {
    static byte[] utf8(String text) {
        return text == null ? null : text.getBytes(StandardCharsets.UTF_8);
    }

    static Header header(String name, String value) {
        return new RecordHeader(name, utf8(value));
    }

    static String hex(ByteBuffer buffer) {
        StringBuilder out = new StringBuilder();
        while (buffer.hasRemaining()) out.append(String.format("%02x", buffer.get()));
        return out.toString();
    }

    /** One batch at base offset 0, CreateTime, no producer id: what a plain producer sends. */
    static String batch(Compression compression, Object[][] records) {
        MemoryRecordsBuilder builder = MemoryRecords.builder(ByteBuffer.allocate(64 * 1024),
            RecordBatch.MAGIC_VALUE_V2, compression, TimestampType.CREATE_TIME, 0L);
        for (Object[] record : records) {
            builder.append((Long) record[0], (byte[]) record[1], (byte[]) record[2],
                (Header[]) record[3]);
        }
        MemoryRecords built = builder.build();
        int batches = 0;
        for (RecordBatch batch : built.batches()) {
            batch.ensureValid();
            batches++;
        }
        if (batches != 1) throw new IllegalStateException("expected one batch, got " + batches);
        return hex(built.buffer());
    }

    public static void main(String[] args) throws java.io.IOException {
        byte[] binaryKey = {0x00, (byte) 0xff, (byte) 0x80};
        byte[] longValue = new byte[300];
        Arrays.fill(longValue, (byte) 'x');
        Object[][] plain = {
            {1_700_000_000_000L, utf8("k1"), utf8("hello"),
                new Header[] {header("trace", "t-1"), header("empty", null)}},
            {1_700_000_000_005L, null, utf8("world"), new Header[0]},
            {1_700_000_000_010L, utf8("k2"), null, new Header[] {header("h", "")}},
            {1_700_000_000_010L, binaryKey, longValue, new Header[0]},
        };
        Object[][] lz4 = {
            {1_700_000_001_000L, utf8("a"), utf8("lz4 one"), new Header[] {header("n", "1")}},
            // Earlier than the first record: a negative timestamp delta.
            {1_700_000_000_500L, utf8("b"), utf8("lz4 two"), new Header[0]},
            {1_700_000_002_000L, null, utf8("lz4 three ".repeat(20)),
                new Header[] {header("name-\u00fc", "\u00fc")}},
        };
        Object[][] zstd = new Object[5][];
        for (int i = 0; i < 5; i++) {
            zstd[i] = new Object[] {1_700_000_003_000L + i, utf8("z" + i),
                i == 4 ? new byte[0] : utf8(("zstd value " + i + " ").repeat(10)),
                new Header[] {header("i", Integer.toString(i))}};
        }
        String vectors = "# RecordBatch v2 bytes written by Apache Kafka's MemoryRecordsBuilder "
            + "(kafka-clients " + AppInfoParser.getVersion() + "),\n"
            + "# base offset 0, CreateTime, no producer id. Generated by "
            + "scripts/kafka-test-vectors.sh; do not edit.\n"
            + "none " + batch(Compression.NONE, plain) + "\n"
            + "lz4 " + batch(Compression.lz4().build(), lz4) + "\n"
            + "zstd " + batch(Compression.zstd().build(), zstd) + "\n";
        Files.writeString(Path.of(args[0]), vectors);

        String[] keys = {"21", "key-0", "key-2", "key-3", "key-6", "key-8", "kafka", "b", "c",
            "user-42"};
        int[] partitionCounts = {3, 7, 12, 100};
        System.out.println("key murmur2 toPositive " + Arrays.toString(partitionCounts));
        for (String key : keys) {
            byte[] bytes = utf8(key);
            int hash = Utils.murmur2(bytes);
            int[] partitions = new int[partitionCounts.length];
            for (int i = 0; i < partitionCounts.length; i++) {
                partitions[i] = BuiltInPartitioner.partitionForKey(bytes, partitionCounts[i]);
            }
            System.out.println(key + " " + hash + " " + Utils.toPositive(hash) + " "
                + Arrays.toString(partitions));
        }
    }
}
EOF
mkdir -p "$(dirname "$OUT")"
# slf4j-api without a binding prints a three-line NOP-logger warning on stderr: harmless.
java -cp "$WORK/libs/*" "$WORK/KafkaTestVectors.java" "$OUT"
echo "wrote $OUT"
