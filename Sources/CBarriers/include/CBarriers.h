/*
 * Ordering on memory shared with the kernel or another process (virtqueue rings, the reconnect
 * log): fences and 16-bit atomic loads and stores, which Swift cannot express on raw memory.
 */
#pragma once
#include <stdint.h>

/* ---- ordering on memory shared with the kernel (virtqueue rings) ---- */
static inline void cvduse_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void cvduse_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void cvduse_fence_full(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline uint16_t cvduse_load_u16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED); }
static inline uint16_t cvduse_load_acquire_u16(const void *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_ACQUIRE); }
static inline void cvduse_store_u16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELAXED); }
static inline void cvduse_store_release_u16(void *p, uint16_t v) { __atomic_store_n((uint16_t *)p, v, __ATOMIC_RELEASE); }
