/* SPDX-License-Identifier: MIT */
/**
 * @file inline.h
 * @brief The read-side section of reference-free checks, inlined into the
 *        caller.
 *
 * mrkey_read_lock() and mrkey_read_unlock() are library calls around
 * liburcu-bp's read-side lock and unlock, so a reference-free check
 * (mrkey_rkey_check() or mrkey_lkey_check()) costs three calls. This header
 * gives the same two operations as inline functions, so it costs one.
 *
 * Both pairs work on the same per-thread liburcu-bp reader, so they are
 * interchangeable: a section opened with one pair may be closed with the
 * other, and sections of either kind nest. Everything said of
 * mrkey_read_lock() and mrkey_read_unlock() holds.
 *
 * Including this header ties the program to liburcu-bp directly. The
 * inlined code is liburcu-bp's own read side (the functions of
 * `<urcu/static/urcu-bp.h>`, which liburcu offers to code under any
 * license), so the program references liburcu-bp's per-thread reader and
 * urcu_bp_register(). It must see liburcu-bp's headers and link the
 * library. The CMake target `mrkey::mrkey` and `pkg-config --libs mrkey`
 * provide both. The inlined code follows liburcu-bp's ABI: rebuild the
 * program when liburcu-bp's major version changes.
 *
 * The two functions become plain calls of mrkey_read_lock() and
 * mrkey_read_unlock() when `MRKEY_URCU_NO_INLINE` is defined before this
 * header is included, and under ThreadSanitizer, which needs the library's
 * annotations of the grace period. Define it under `-fsanitize=alignment`
 * too: liburcu 0.13 hands out reader records less aligned than their type
 * declares, and the inlined code would report that.
 */
#ifndef MRKEY_INLINE_H
#define MRKEY_INLINE_H

#include <mrkey/sge.h>

#if !defined(MRKEY_URCU_NO_INLINE)
#if defined(__SANITIZE_THREAD__)
#define MRKEY_URCU_NO_INLINE 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MRKEY_URCU_NO_INLINE 1
#endif
#endif
#endif

#ifndef MRKEY_URCU_NO_INLINE
#include <urcu/urcu-bp.h>
#include <urcu/static/urcu-bp.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * @brief mrkey_read_lock(), inlined: enter an RCU read-side section for
 *        reference-free checks.
 *
 * The first call on a thread registers it with liburcu-bp (one library
 * call); later calls are a few loads and one store to the thread's own
 * reader record.
 *
 * Context: any thread; lock-free; must be paired with
 * mrkey_read_unlock_inline() or mrkey_read_unlock() on the same thread.
 */
static inline void mrkey_read_lock_inline(void)
{
#ifdef MRKEY_URCU_NO_INLINE
	mrkey_read_lock();
#else
	_urcu_bp_read_lock();
#endif
}

/**
 * @brief mrkey_read_unlock(), inlined: leave the section.
 *
 * Context: the thread that entered the section, with
 * mrkey_read_lock_inline() or mrkey_read_lock().
 */
static inline void mrkey_read_unlock_inline(void)
{
#ifdef MRKEY_URCU_NO_INLINE
	mrkey_read_unlock();
#else
	_urcu_bp_read_unlock();
#endif
}

#ifdef __cplusplus
}
#endif

#endif /* MRKEY_INLINE_H */
