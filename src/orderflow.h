/*-------------------------------------------------------------------------
 *
 * orderflow.h
 *	  Shared declarations of the orderflow extension: the order_state type,
 *	  project SQLSTATEs and the helpers the C files share.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ORDERFLOW_H
#define ORDERFLOW_H

#include "postgres.h"
#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "nodes/lockoptions.h"
#include "utils/relcache.h"
#include "datatype/timestamp.h"

/*
 * Project SQLSTATEs, class OF.  README.md lists them with their meaning; the
 * codes never change meaning once released.
 */
#define ERRCODE_OF_INVALID_TRANSITION		MAKE_SQLSTATE('O','F','0','0','1')
#define ERRCODE_OF_STATE_MISMATCH			MAKE_SQLSTATE('O','F','0','0','2')
#define ERRCODE_OF_HISTORY_IMMUTABLE		MAKE_SQLSTATE('O','F','0','0','3')
#define ERRCODE_OF_ORDER_NOT_FOUND			MAKE_SQLSTATE('O','F','0','0','4')
#define ERRCODE_OF_SHOP_NOT_FOUND			MAKE_SQLSTATE('O','F','0','0','5')
#define ERRCODE_OF_WAREHOUSE_NOT_FOUND		MAKE_SQLSTATE('O','F','0','0','6')
#define ERRCODE_OF_SKU_NOT_FOUND			MAKE_SQLSTATE('O','F','0','0','7')
#define ERRCODE_OF_BIN_NOT_FOUND			MAKE_SQLSTATE('O','F','0','0','8')
#define ERRCODE_OF_ORDER_IDENTITY			MAKE_SQLSTATE('O','F','0','0','9')
#define ERRCODE_OF_CONFLICTING_DEFINITION	MAKE_SQLSTATE('O','F','0','1','0')
#define ERRCODE_OF_ORDER_LOCKED				MAKE_SQLSTATE('O','F','0','1','1')
#define ERRCODE_OF_RESERVATION_NOT_FOUND	MAKE_SQLSTATE('O','F','0','2','0')
#define ERRCODE_OF_ALLOCATOR_FULL			MAKE_SQLSTATE('O','F','0','2','1')
#define ERRCODE_OF_ORDER_NOT_ALLOCATABLE	MAKE_SQLSTATE('O','F','0','2','2')
#define ERRCODE_OF_INSUFFICIENT_STOCK		MAKE_SQLSTATE('O','F','0','2','3')
#define ERRCODE_OF_PREPARED_RESERVATION		MAKE_SQLSTATE('O','F','0','2','4')
#define ERRCODE_OF_ADJUSTMENT_NOT_FOUND		MAKE_SQLSTATE('O','F','0','2','5')

/* Intake and jobs (raised from src/sql/50_intake.sql and 60_jobs.sql). */
#define ERRCODE_OF_INVALID_PAYLOAD			MAKE_SQLSTATE('O','F','0','3','0')
#define ERRCODE_OF_NO_ADAPTER				MAKE_SQLSTATE('O','F','0','3','1')
#define ERRCODE_OF_EXCEPTION_NOT_FOUND		MAKE_SQLSTATE('O','F','0','3','2')
#define ERRCODE_OF_INBOX_NOT_FOUND			MAKE_SQLSTATE('O','F','0','3','3')
#define ERRCODE_OF_SCHEDULER_UNAVAILABLE	MAKE_SQLSTATE('O','F','0','3','4')
#define ERRCODE_OF_OUTBOX_NOT_FOUND			MAKE_SQLSTATE('O','F','0','3','5')

/*
 * Order states, in process-stage order.  The numeric value is the on-disk
 * representation of orderflow.order_state (one byte) and defines its sort
 * order, so values are append-only: never renumber a released state.
 */
typedef enum OrderState
{
	OS_PENDING_PAYMENT = 0,
	OS_PAID,
	OS_ON_HOLD,
	OS_APPROVED,
	OS_BACKORDERED,
	OS_ALLOCATED,
	OS_PICKING,
	OS_PICKED,
	OS_PACKED,
	OS_PARTIALLY_SHIPPED,
	OS_SHIPPED,
	OS_DELIVERED,
	OS_COMPLETED,
	OS_CANCELLED
} OrderState;

#define OS_COUNT		(OS_CANCELLED + 1)

/* A set of states, one bit per state. */
typedef uint16 OrderStateSet;

#define DatumGetOrderState(d)	((OrderState) DatumGetChar(d))
#define OrderStateGetDatum(s)	CharGetDatum((char) (s))
#define PG_GETARG_ORDER_STATE(n) DatumGetOrderState(PG_GETARG_DATUM(n))
#define PG_RETURN_ORDER_STATE(s) return OrderStateGetDatum(s)

/* state.c */
extern const char *OrderStateName(OrderState state);
extern const char *OrderStateLabel(OrderState state, bool chinese);
extern char *OrderStateSetToString(OrderStateSet set);

/* transition.c */
extern OrderStateSet AllowedNextStates(OrderState from);
extern OrderStateSet InitialStates(void);
extern Oid	OrderflowRelid(const char *relname, bool missing_ok);
extern Oid	HistoryOwner(void);

/* The user a BecomeExtensionOwner call replaced, for RestoreUser. */
typedef struct SavedUser
{
	Oid			userid;
	int			sec_context;
} SavedUser;

extern void BecomeExtensionOwner(SavedUser *saved);
extern void RestoreUser(const SavedUser *saved);
struct _SPI_plan;
extern void ReadAsExtensionOwner(struct _SPI_plan *plan, Datum *args, long count,
								 bool latest, const char *what);
extern Oid	HistoryRelid(void);
extern uint64 OrderflowCacheGeneration(void);
extern void OrderflowWatchRelation(Oid relid);
extern void LockOrderRow(Relation rel, int64 order_id, LockTupleMode mode, int ncols,
						 const AttrNumber *cols, Datum *values, bool *isnull,
						 ItemPointer tid, struct _SPI_plan *statement);
extern void ChangeLockedOrder(int64 order_id, ItemPointer locked, OrderState to,
							  const char *policy, const char *reason);

/* orderflow.c */
struct Tuplestorestate;
extern bool orderflow_shmem_ready;
extern char *orderflow_reason;
extern void RequireSharedMemory(const char *funcname);
extern AttrNumber RequiredColumn(Relation rel, const char *name, const char *detail);
extern struct _SPI_plan *PrepareKeptPlan(const char *sql, int nargs, Oid *argtypes);
extern void CheckTriggerCall(FunctionCallInfo fcinfo, const char *name, bool before,
							 int row, HeapTuple *oldtuple, HeapTuple *newtuple);
extern struct Tuplestorestate *MaterializeResult(FunctionCallInfo fcinfo,
												 TupleDesc *tupdesc);

/*
 * Rows written straight into a table's heap and indexes, without the
 * executor: no triggers, no CHECK constraints, no permission checks.  For
 * the extension's own append-only tables, whose rows it forms itself.
 */
typedef struct DirectInsert
{
	Relation	rel;
	struct EState *estate;
	struct ResultRelInfo *rri;
	struct TupleTableSlot *slot;
}			DirectInsert;

extern void DirectInsertOpen(DirectInsert * di, Oid relid, const char *const *columns,
							 int ncolumns);
extern void DirectInsertRow(DirectInsert * di, Datum *values, bool *nulls);
extern void DirectInsertClose(DirectInsert * di);

/*
 * Rows a table's index finds equal to a key in its first column, as a
 * snapshot sees them; visit returns false to stop.
 */
struct TupleTableSlot;
struct SnapshotData;
typedef bool (*IndexScanVisit) (struct TupleTableSlot *slot, void *arg);
extern void IndexScanEqual(Oid relid, Oid indexid, RegProcedure eqproc, Datum key,
						   struct SnapshotData *snapshot, IndexScanVisit visit,
						   void *arg);

/* history.c */
#define HISTORY_HASH_LEN 32

typedef struct HistoryEvent
{
	int64		order_id;
	int32		seq;
	int			from_state;		/* -1 when the order is created */
	int			to_state;
	TimestampTz at;
	const char *session_role;
	const char *acting_role;
	const char *application_name;	/* NULL when unset */
	const char *reason;			/* NULL when none given */
	uint64		xid;
	const uint8 *prev_hash;		/* NULL for the first event */
} HistoryEvent;

extern void HistoryEventHash(const HistoryEvent *ev, uint8 *hash);
extern void HistoryAppend(const HistoryEvent *ev, const uint8 *hash);

#endif							/* ORDERFLOW_H */
