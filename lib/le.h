/*
 * le.h -- little-endian loads and stores, the one copy for every on-disk format
 * ragsafe reads or writes (WAL page headers, pg_control, zstd frames, sealed objects).
 * Unaligned pointers are fine: the bytes are assembled one at a time.
 */
#ifndef RAGSAFE_LE_H
#define RAGSAFE_LE_H

#include <stdint.h>

static inline uint16_t le16_load(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t le32_load(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64_load(const uint8_t *p)
{
    return (uint64_t)le32_load(p) | (uint64_t)le32_load(p + 4) << 32;
}

static inline void le32_store(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void le64_store(uint8_t *p, uint64_t v)
{
    le32_store(p, (uint32_t)v);
    le32_store(p + 4, (uint32_t)(v >> 32));
}

#endif
