/*-------------------------------------------------------------------------
 *
 * allocator.h
 *	  Escrow stock counters in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDERFLOW_ALLOCATOR_H
#define ORDERFLOW_ALLOCATOR_H

extern void AllocatorDefineGucs(void);
extern void AllocatorShmemRequest(void);
extern void AllocatorShmemStartup(void);

/*
 * Close the holds that an SQL query selects (it must return the columns
 * sku_id, warehouse_id and qty of the rows it moved out of 'held'); the
 * quantities return to the counters when the transaction commits.  Returns
 * the number of holds closed.
 */
extern uint64 CloseHolds(const char *sql, int nargs, Oid *argtypes,
						 Datum *args, const char *nulls);

#endif							/* ORDERFLOW_ALLOCATOR_H */
