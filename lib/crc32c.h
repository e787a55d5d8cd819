/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of PostgreSQL's WAL records and
 * pg_control: the SSE 4.2 crc32 instruction where the CPU has it (checked once, at
 * run time), a table otherwise.
 *
 *     uint32_t c = crc32c_update(CRC32C_INIT, p, n);   any number of updates
 *     c = crc32c_update(c, q, m);
 *     uint32_t crc = crc32c_final(c);
 *     crc32c(p, n) == crc32c_final(crc32c_update(CRC32C_INIT, p, n))
 */
#ifndef RAGSAFE_CRC32C_H
#define RAGSAFE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

#define CRC32C_INIT 0xFFFFFFFFu

uint32_t crc32c_update(uint32_t crc, const void *p, size_t n);
/* the table path alone, whatever the CPU (the tests compare both) */
uint32_t crc32c_update_table(uint32_t crc, const void *p, size_t n);
static inline uint32_t crc32c_final(uint32_t crc) { return crc ^ 0xFFFFFFFFu; }
static inline uint32_t crc32c(const void *p, size_t n)
{
    return crc32c_final(crc32c_update(CRC32C_INIT, p, n));
}

#endif
