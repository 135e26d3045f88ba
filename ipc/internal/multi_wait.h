// Waiting on several rings at once, for consumers of several partitions.
//
// kBlocking registers as a sleeping reader on every ring (data_waiters, so
// producers' commits issue a futex wake) and sleeps with futex_waitv(2) on all
// their data_seq words: the first commit on any partition wakes it. Sleeps
// are sliced to 100 ms, as RingReader::Wait does, so a producer that died
// between its commit and its wake costs a bounded delay. On kernels without
// futex_waitv (before 5.16, ENOSYS) it sleeps 1 ms at a time on one ring
// after another.

#ifndef RUNNEL_IPC_INTERNAL_MULTI_WAIT_H_
#define RUNNEL_IPC_INTERNAL_MULTI_WAIT_H_

#include <cstdint>
#include <span>

#include "core/ring.h"
#include "core/wait.h"

namespace runnel::internal {

// True if `reader` has a committed frame to read or was lapped (then read()
// reports the overrun).
bool ReaderReady(const RingReader& reader);

// Sleeps until ReaderReady for any reader, or until `deadline_ns`
// (CLOCK_MONOTONIC). Returns whether one is ready. At most 64 readers.
bool WaitAny(std::span<const RingReader* const> readers, WaitStrategy strategy,
             int64_t deadline_ns);

}  // namespace runnel::internal

#endif  // RUNNEL_IPC_INTERNAL_MULTI_WAIT_H_
