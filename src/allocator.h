/*-------------------------------------------------------------------------
 *
 * allocator.h
 *	  Escrow stock counters in shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDERFLOW_ALLOCATOR_H
#define ORDERFLOW_ALLOCATOR_H

#include "nodes/pg_list.h"

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

/* A SKU in a warehouse, with its counter (see StockLookup). */
typedef struct CodeEntry StockRef;

/* A hold row planned for an order line, not yet written. */
typedef struct StockHold
{
	int64		sku_id;
	int64		warehouse_id;
	int64		bin_id;			/* 0 when not planned on a bin and lot */
	int64		lot_id;
	int32		qty;
	int32		line_no;
	void	   *change;			/* the counter change that took qty */
} StockHold;

extern StockRef *StockLookup(const char *sku, const char *warehouse);
extern int64 StockAvailable(StockRef *s);
extern bool StockTakePlanned(StockRef *s, int32 qty, int32 line_no, List **holds);
extern void StockGiveBack(List *holds);
extern void StockInsertHolds(List *holds, int64 order_id);
extern int32 StockClaimHolds(int64 order_id, int64 shop_id, int32 line_no,
							 const char *sku, const char *ref, int32 need);

/* allocate.c */
extern void RecordCancelRefund(int64 order_id, Datum paid_amount);
extern char **ActiveWarehouses(int *n);

#endif							/* ORDERFLOW_ALLOCATOR_H */
