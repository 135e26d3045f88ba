// Key -> partition: Kafka's default partitioner for keyed records, bit for
// bit: murmur2 (seed 0x9747b28c) over the key bytes, made non-negative with
// `& 0x7fffffff`, modulo the partition count. The same key lands on the same
// partition index in every process, every run, and in a Kafka cluster with
// the same partition count (useful for the bridge).

#ifndef RUNNEL_IPC_INTERNAL_PARTITIONER_H_
#define RUNNEL_IPC_INTERNAL_PARTITIONER_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace runnel::internal {

// org.apache.kafka.common.utils.Utils.murmur2, as a signed 32-bit value.
int32_t Murmur2(const void* data, std::size_t length);

// REQUIRES: partitions > 0.
inline uint32_t KeyPartition(std::string_view key, uint32_t partitions) {
  const uint32_t positive = static_cast<uint32_t>(Murmur2(key.data(), key.size())) & 0x7fffffffu;
  return positive % partitions;
}

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_PARTITIONER_H_
