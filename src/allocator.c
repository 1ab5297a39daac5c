/*-------------------------------------------------------------------------
 *
 * allocator.c
 *	  Non-blocking stock reservation with escrow counters in shared memory.
 *
 * The durable truth is in three tables: stock movements (receipts,
 * adjustments, shipments) and their compacted balances give the quantity
 * on hand per SKU and warehouse; reservations with status 'held' give the
 * quantity promised.  Available = on hand - held.
 *
 * Each (database, SKU, warehouse) has a counter in shared memory holding
 * the available quantity, loaded lazily from the tables.  Following the
 * escrow method, a reservation decrements the counter at once with a
 * compare-and-swap that never lets it fall below zero, so no reservation
 * ever waits for another transaction and none can oversell; the hold row
 * is inserted in the same transaction.  If the transaction (or the
 * subtransaction) rolls back, the quantity is added back.  Quantities that
 * come back (releases, expiries, receipts) are added only when their
 * transaction commits, so nobody can reserve stock that might still vanish.
 *
 * Two windows need care:
 *
 * - A committing transaction is visible to new snapshots slightly before
 *   its commit callback runs.  A counter being loaded in that window could
 *   count an increment twice (once from the tables, once from the
 *   callback).  Each transaction therefore announces its increments in
 *   PRE_COMMIT (counter->pending), before it becomes visible.  A counter is
 *   only loaded while no announced increment is outstanding, and a load is
 *   discarded and retried if any increment was announced or applied while
 *   it ran (counter->missed).
 *
 * - While a counter is loading, reservations on it wait for the load (an
 *   in-memory wait of one query, once per counter after a restart); they
 *   never wait on a lock held by another transaction.
 *
 * After a crash shared memory starts empty and every counter is loaded
 * again from the committed tables: counters are a cache, the tables are
 * the truth, and orderflow.check_stock() compares the two.
 *
 * PREPARE TRANSACTION is refused when the transaction changed a counter:
 * a prepared transaction outlives the backend's commit callbacks.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "orderflow.h"
#include "allocator.h"

#define CODE_MAX 64

/* Tries to see a counter loaded before EnsureLoaded gives up (100 us apart). */
#define LOAD_ATTEMPTS 100000

typedef struct StockKey
{
	Oid			dbid;
	Oid			incarnation;	/* OID of orderflow.reservations */
	int64		sku_id;
	int64		warehouse_id;
} StockKey;

typedef enum CounterState
{
	COUNTER_UNLOADED,
	COUNTER_LOADING,
	COUNTER_READY
} CounterState;

typedef struct StockCounter
{
	StockKey	key;
	slock_t		mutex;			/* protects state, pending, missed */
	CounterState state;
	int			pending;		/* announced, not yet applied increments */
	bool		missed;			/* an increment came while not READY */
	pg_atomic_uint64 available; /* int64 stored unsigned */
	pg_atomic_uint64 inflight;	/* decrements of open transactions */
	pg_atomic_uint64 ledger_version;	/* moves when movements are written */
} StockCounter;

typedef struct AllocatorShared
{
	LWLock	   *lock;			/* protects counter creation */
	int			ncounters;
} AllocatorShared;

/* A counter change made by the current transaction. */
typedef struct PendingChange
{
	StockKey	key;
	StockCounter *counter;		/* NULL until needed */
	int64		delta;			/* immediate: > 0 taken; else applied at
								 * commit */
	bool		immediate;
	bool		announced;
	SubTransactionId subid;
} PendingChange;

/* Backend-local map from (SKU code, warehouse code) to the counter. */
typedef struct CodeKey
{
	char		sku[CODE_MAX + 1];
	char		warehouse[CODE_MAX + 1];
} CodeKey;

/*
 * The stock on hand of a SKU in a warehouse per bin and lot, in picking
 * order (first expiry first out), as of a ledger version.
 */
typedef struct LotList
{
	bool		valid;
	uint64		version;
	int			n;
	int64		total;
	int64	   *bin_id;
	int64	   *lot_id;
	int64	   *qty;
} LotList;

typedef struct CodeEntry CodeEntry;

struct CodeEntry
{
	CodeKey		key;
	int64		sku_id;
	int64		warehouse_id;
	StockCounter *counter;
	LotList		lots;
};

static int	max_stock_counters = 65536;
static AllocatorShared *shared = NULL;
static HTAB *counters = NULL;

static HTAB *code_cache = NULL;
static MemoryContext code_cache_cxt = NULL;
static Oid	cached_incarnation = InvalidOid;
static Oid	cached_hold_sequence = InvalidOid;
static Oid	cached_bins_relid = InvalidOid;
static Oid	cached_lots_relid = InvalidOid;
static bool code_cache_valid = false;
static bool callbacks_registered = false;

static List *pending_changes = NIL;
static StockCounter *loading_counter = NULL;

/* Counters whose ledger this transaction wrote to. */
static List *moved_counters = NIL;

/* ---------- setup ---------- */

void
AllocatorDefineGucs(void)
{
	DefineCustomIntVariable("orderflow.max_stock_counters",
							"Maximum number of (SKU, warehouse) stock counters kept in shared memory.",
							"Each database's SKU and warehouse pair that is reserved or received uses one.",
							&max_stock_counters,
							65536, 1024, 16 * 1024 * 1024,
							PGC_POSTMASTER,
							0,
							NULL, NULL, NULL);
}

static Size
AllocatorShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(AllocatorShared)),
					hash_estimate_size(max_stock_counters, sizeof(StockCounter)));
}

void
AllocatorShmemRequest(void)
{
	RequestAddinShmemSpace(AllocatorShmemSize());
	RequestNamedLWLockTranche("orderflow", 1);
}

void
AllocatorShmemStartup(void)
{
	bool		found;
	HASHCTL		info;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("orderflow allocator", sizeof(AllocatorShared), &found);
	if (!found)
	{
		shared->lock = &(GetNamedLWLockTranche("orderflow"))->lock;
		shared->ncounters = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(StockKey);
	info.entrysize = sizeof(StockCounter);
	counters = ShmemInitHash("orderflow stock counters",
							 max_stock_counters, max_stock_counters,
							 &info, HASH_ELEM | HASH_BLOBS);
	LWLockRelease(AddinShmemInitLock);
}

/* ---------- transaction tracking ---------- */

static void
ResetLoadingCounter(void)
{
	if (loading_counter != NULL)
	{
		SpinLockAcquire(&loading_counter->mutex);
		if (loading_counter->state == COUNTER_LOADING)
			loading_counter->state = COUNTER_UNLOADED;
		SpinLockRelease(&loading_counter->mutex);
		loading_counter = NULL;
	}
}

static void
AllocatorExit(int code, Datum arg)
{
	ResetLoadingCounter();
}

static StockCounter *FindCounter(const StockKey *key, bool create);
static int64 IncomingAtCommit(const StockKey *key);
static bool ShopVisible(int64 shop_id);

/*
 * Announce commit-time increments before the transaction becomes visible.
 * Changes to the same counter are merged first so the counter moves once.
 */
static void
AnnounceIncrements(void)
{
	ListCell   *lc;

	foreach(lc, pending_changes)
	{
		PendingChange *pc = (PendingChange *) lfirst(lc);
		ListCell   *lc2;

		if (pc->immediate || pc->delta == 0)
			continue;
		for_each_cell(lc2, pending_changes, lnext(pending_changes, lc))
		{
			PendingChange *other = (PendingChange *) lfirst(lc2);

			if (!other->immediate && other->delta != 0 &&
				memcmp(&other->key, &pc->key, sizeof(StockKey)) == 0)
			{
				pc->delta += other->delta;
				other->delta = 0;
			}
		}
	}

	foreach(lc, pending_changes)
	{
		PendingChange *pc = (PendingChange *) lfirst(lc);

		if (pc->immediate || pc->delta == 0)
			continue;
		if (pc->delta < 0)
			elog(ERROR, "stock counter would lose %lld units at commit",
				 (long long) -pc->delta);
		if (pc->counter == NULL)
			pc->counter = FindCounter(&pc->key, true);
		SpinLockAcquire(&pc->counter->mutex);
		pc->counter->pending++;
		SpinLockRelease(&pc->counter->mutex);
		pc->announced = true;
	}
}

/*
 * Apply or undo every change at the end of the transaction.  Runs inside
 * commit or abort processing: no errors, only spinlocks and atomics.
 */
static void
FinishChanges(bool commit)
{
	ListCell   *lc;

	foreach(lc, pending_changes)
	{
		PendingChange *pc = (PendingChange *) lfirst(lc);
		StockCounter *c = pc->counter;

		if (pc->immediate)
		{
			if (c == NULL || pc->delta <= 0)
				continue;
			if (!commit)
				pg_atomic_fetch_add_u64(&c->available, (uint64) pc->delta);
			pg_atomic_fetch_sub_u64(&c->inflight, (uint64) pc->delta);
		}
		else if (pc->announced)
		{
			SpinLockAcquire(&c->mutex);
			if (commit)
			{
				if (c->state == COUNTER_READY)
					pg_atomic_fetch_add_u64(&c->available, (uint64) pc->delta);
				else
					c->missed = true;
			}
			c->pending--;
			SpinLockRelease(&c->mutex);
		}
	}
	pending_changes = NIL;
}

/*
 * Tell every backend that cached the lots of these counters to read them
 * again: at the write (for this backend's own view) and when the writing
 * transaction ends, once the new rows are visible or gone.
 */
static void
BumpLedgerVersions(bool forget)
{
	ListCell   *lc;

	foreach(lc, moved_counters)
		pg_atomic_fetch_add_u64(&((StockCounter *) lfirst(lc))->ledger_version, 1);
	if (forget)
		moved_counters = NIL;
}

/* The ledger of a counter was written: cached lots are stale. */
static void
LedgerWritten(StockCounter *c)
{
	pg_atomic_fetch_add_u64(&c->ledger_version, 1);
	if (!list_member_ptr(moved_counters, c))
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		moved_counters = lappend(moved_counters, c);
		MemoryContextSwitchTo(old);
	}
}

static bool
HasCounterChanges(void)
{
	ListCell   *lc;

	foreach(lc, pending_changes)
	{
		PendingChange *pc = (PendingChange *) lfirst(lc);

		if (pc->delta != 0)
			return true;
	}
	return false;
}

static void
AllocatorXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			AnnounceIncrements();
			break;
		case XACT_EVENT_COMMIT:
			FinishChanges(true);
			BumpLedgerVersions(true);
			break;
		case XACT_EVENT_ABORT:
			ResetLoadingCounter();
			FinishChanges(false);
			BumpLedgerVersions(true);
			/* Ids this transaction may have seen uncommitted are gone. */
			code_cache_valid = false;
			break;
		case XACT_EVENT_PREPARE:
			/* Only changes without effect are left; their memory is gone. */
			ResetLoadingCounter();
			pending_changes = NIL;
			BumpLedgerVersions(true);
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (HasCounterChanges())
				ereport(ERROR,
						(errcode(ERRCODE_OF_PREPARED_RESERVATION),
						 errmsg("cannot prepare a transaction that reserved, released or received stock"),
						 errdetail("Stock counters are settled by the backend that commits; a prepared transaction could be committed elsewhere."),
						 errhint("Commit stock changes in an ordinary transaction.")));
			break;
		default:
			break;
	}
}

static void
AllocatorSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending_changes)
		{
			PendingChange *pc = (PendingChange *) lfirst(lc);

			if (pc->subid == mySubid)
				pc->subid = parentSubid;
		}
	}
	else if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		ResetLoadingCounter();
		code_cache_valid = false;
		BumpLedgerVersions(false);
		foreach(lc, pending_changes)
		{
			PendingChange *pc = (PendingChange *) lfirst(lc);

			if (pc->subid != mySubid)
				continue;
			if (pc->immediate && pc->counter != NULL && pc->delta > 0)
			{
				pg_atomic_fetch_add_u64(&pc->counter->available, (uint64) pc->delta);
				pg_atomic_fetch_sub_u64(&pc->counter->inflight, (uint64) pc->delta);
			}
			pc->delta = 0;
		}
	}
}

static void
AllocatorInvalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_incarnation ||
		relid == cached_bins_relid || relid == cached_lots_relid)
		code_cache_valid = false;
}

static void
EnsureCallbacks(void)
{
	if (callbacks_registered)
		return;
	RegisterXactCallback(AllocatorXactCallback, NULL);
	RegisterSubXactCallback(AllocatorSubXactCallback, NULL);
	CacheRegisterRelcacheCallback(AllocatorInvalidate, (Datum) 0);
	before_shmem_exit(AllocatorExit, (Datum) 0);
	callbacks_registered = true;
}

/*
 * Reserve room for one change in the transaction's list, before the counter
 * is touched, so that recording it afterwards cannot fail.
 */
static PendingChange *
NewChange(const StockKey *key, StockCounter *counter, bool immediate)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	PendingChange *pc = palloc0(sizeof(PendingChange));

	pc->key = *key;
	pc->counter = counter;
	pc->immediate = immediate;
	pc->subid = GetCurrentSubTransactionId();
	pending_changes = lappend(pending_changes, pc);
	MemoryContextSwitchTo(old);
	return pc;
}

/* ---------- counters ---------- */

static void
RequireAllocator(void)
{
	RequireSharedMemory("orderflow stock allocation");
	EnsureCallbacks();
}

static StockCounter *
FindCounter(const StockKey *key, bool create)
{
	StockCounter *c;
	bool		found;

	LWLockAcquire(shared->lock, LW_SHARED);
	c = (StockCounter *) hash_search(counters, key, HASH_FIND, NULL);
	LWLockRelease(shared->lock);
	if (c != NULL || !create)
		return c;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	c = (StockCounter *) hash_search(counters, key, HASH_FIND, NULL);
	if (c == NULL)
	{
		if (shared->ncounters < max_stock_counters)
			c = (StockCounter *) hash_search(counters, key, HASH_ENTER_NULL, &found);
		if (c == NULL)
		{
			LWLockRelease(shared->lock);
			ereport(ERROR,
					(errcode(ERRCODE_OF_ALLOCATOR_FULL),
					 errmsg("orderflow stock counters are full"),
					 errdetail("All %d counters in shared memory are in use.", max_stock_counters),
					 errhint("Increase orderflow.max_stock_counters and restart the server.")));
		}
		SpinLockInit(&c->mutex);
		c->state = COUNTER_UNLOADED;
		c->pending = 0;
		c->missed = false;
		pg_atomic_init_u64(&c->available, 0);
		pg_atomic_init_u64(&c->inflight, 0);
		pg_atomic_init_u64(&c->ledger_version, 0);
		shared->ncounters++;
	}
	LWLockRelease(shared->lock);
	return c;
}

/*
 * Run a read-only query as the extension's table owner, returning one
 * bigint; with latest, under a snapshot taken now (also in REPEATABLE READ
 * transactions).  The plan is prepared once per backend and kept in *plan.
 */
static int64
OwnerQueryInt64(const char *sql, SPIPlanPtr *plan, int nargs, Oid *argtypes,
				Datum *args, bool latest)
{
	int64		result = 0;
	bool		isnull;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (*plan == NULL)
		*plan = PrepareKeptPlan(sql, nargs, argtypes);
	ReadAsExtensionOwner(*plan, args, 1, latest, "stock");
	if (SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			result = DatumGetInt64(d);
	}
	SPI_finish();
	return result;
}

static const char *durable_available_sql =
"SELECT (coalesce((SELECT pg_catalog.sum(b.qty) FROM orderflow.stock_balances b"
"                   WHERE b.sku_id OPERATOR(pg_catalog.=) $1"
"                     AND b.warehouse_id OPERATOR(pg_catalog.=) $2), 0)"
"      OPERATOR(pg_catalog.+)"
"        coalesce((SELECT pg_catalog.sum(m.qty) FROM orderflow.stock_movements m"
"                   WHERE m.sku_id OPERATOR(pg_catalog.=) $1"
"                     AND m.warehouse_id OPERATOR(pg_catalog.=) $2), 0)"
"      OPERATOR(pg_catalog.-)"
"        coalesce((SELECT pg_catalog.sum(r.qty) FROM orderflow.reservations r"
"                   WHERE r.sku_id OPERATOR(pg_catalog.=) $1"
"                     AND r.warehouse_id OPERATOR(pg_catalog.=) $2"
"                     AND r.closed_at IS NULL), 0))::pg_catalog.int8";

static int64
DurableAvailable(const StockKey *key)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		args[2] = {Int64GetDatum(key->sku_id), Int64GetDatum(key->warehouse_id)};

	return OwnerQueryInt64(durable_available_sql, &plan, 2, argtypes, args, true);
}

/*
 * The committed available quantity of a SKU in a warehouse, as a counter
 * holds it: the durable records' snapshot sees this transaction's own
 * changes, which reach a counter only when it commits, so they are left out.
 */
static int64
CommittedDurable(const StockKey *key)
{
	return DurableAvailable(key) - IncomingAtCommit(key);
}

/*
 * The committed available quantity of a counter being loaded.  On error the
 * counter goes back to unloaded, so nobody waits for a load that will not
 * finish.
 */
static int64
LoadDurable(StockCounter *c)
{
	int64		value = 0;

	PG_TRY();
	{
		value = CommittedDurable(&c->key);
	}
	PG_CATCH();
	{
		ResetLoadingCounter();
		PG_RE_THROW();
	}
	PG_END_TRY();
	return value;
}

/*
 * Make sure a counter holds the committed available quantity.
 */
static void
EnsureLoaded(StockCounter *c)
{
	for (int attempt = 0;; attempt++)
	{
		bool		mine = false;
		bool		done = false;
		int64		value;

		SpinLockAcquire(&c->mutex);
		if (c->state == COUNTER_READY)
			done = true;
		else if (c->state == COUNTER_UNLOADED && c->pending == 0 &&
				 attempt < LOAD_ATTEMPTS)
		{
			c->state = COUNTER_LOADING;
			c->missed = false;
			mine = true;
		}
		SpinLockRelease(&c->mutex);
		if (done)
			return;

		/* Give up without having claimed the load. */
		if (attempt >= LOAD_ATTEMPTS)
			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("could not load the stock counter of SKU %lld in warehouse %lld",
							(long long) c->key.sku_id, (long long) c->key.warehouse_id),
					 errdetail("Stock kept changing while the counter was being loaded."),
					 errhint("Try again.")));
		if (!mine)
		{
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100L);
			continue;
		}

		loading_counter = c;
		value = LoadDurable(c);

		SpinLockAcquire(&c->mutex);
		if (c->pending == 0 && !c->missed)
		{
			pg_atomic_write_u64(&c->available, (uint64) value);
			pg_atomic_write_u64(&c->inflight, 0);
			c->state = COUNTER_READY;
			done = true;
		}
		else
			c->state = COUNTER_UNLOADED;
		SpinLockRelease(&c->mutex);
		loading_counter = NULL;
		if (done)
			return;
	}
}

static Oid
CurrentIncarnation(void)
{
	if (!code_cache_valid)
	{
		HASHCTL		info;

		if (code_cache_cxt == NULL)
			code_cache_cxt = AllocSetContextCreate(TopMemoryContext,
												   "orderflow stock codes",
												   ALLOCSET_DEFAULT_SIZES);
		else
			MemoryContextReset(code_cache_cxt);
		code_cache = NULL;
		memset(&info, 0, sizeof(info));
		info.keysize = sizeof(CodeKey);
		info.entrysize = sizeof(CodeEntry);
		info.hcxt = code_cache_cxt;
		code_cache = hash_create("orderflow stock codes", 256, &info,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

		/*
		 * Valid from before the lookups, which may take in invalidations: one
		 * that arrives meanwhile makes the cache start over next time.
		 */
		code_cache_valid = true;
		PG_TRY();
		{
			cached_incarnation = OrderflowRelid("reservations", false);
			cached_hold_sequence = InvalidOid;
			cached_bins_relid = OrderflowRelid("bins", false);
			cached_lots_relid = OrderflowRelid("lots", false);
		}
		PG_CATCH();
		{
			code_cache_valid = false;
			PG_RE_THROW();
		}
		PG_END_TRY();
	}
	return cached_incarnation;
}

/* The id of a SKU (sku true) or warehouse by code; 0 when there is none. */
static int64
LookupId(bool sku, const char *code)
{
	static SPIPlanPtr sku_plan = NULL;
	static SPIPlanPtr warehouse_plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		args[1] = {CStringGetTextDatum(code)};

	if (sku)
		return OwnerQueryInt64("SELECT t.id FROM orderflow.skus t WHERE t.code OPERATOR(pg_catalog.=) $1",
							   &sku_plan, 1, argtypes, args, false);
	return OwnerQueryInt64("SELECT t.id FROM orderflow.warehouses t WHERE t.code OPERATOR(pg_catalog.=) $1",
						   &warehouse_plan, 1, argtypes, args, false);
}

static void
CheckCode(const char *kind, const char *code)
{
	if (code[0] == '\0' || strlen(code) > CODE_MAX)
		ereport(ERROR,
				(errcode(strcmp(kind, "SKU") == 0 ? ERRCODE_OF_SKU_NOT_FOUND : ERRCODE_OF_WAREHOUSE_NOT_FOUND),
				 errmsg("%s \"%s\" does not exist", kind, code)));
}

static StockKey
KeyIn(Oid incarnation, int64 sku_id, int64 warehouse_id)
{
	StockKey	key;

	memset(&key, 0, sizeof(key));
	key.dbid = MyDatabaseId;
	key.incarnation = incarnation;
	key.sku_id = sku_id;
	key.warehouse_id = warehouse_id;
	return key;
}

/* The counter key of a SKU and warehouse (may make the code cache start over). */
static StockKey
MakeKey(int64 sku_id, int64 warehouse_id)
{
	return KeyIn(CurrentIncarnation(), sku_id, warehouse_id);
}

/*
 * A SKU and warehouse given by code, with their counter: created (not
 * loaded) if needed, or, with take_counter false, only if it is already in
 * shared memory (else the entry's counter is NULL).  Unknown codes fail
 * with OF007 or OF006.
 */
static CodeEntry *
ResolveCodes(const char *sku, const char *warehouse, bool take_counter)
{
	CodeKey		key;
	CodeEntry  *e;
	bool		found;
	StockKey	skey;
	int64		sku_id;
	int64		warehouse_id;
	Oid			incarnation;

	CheckCode("SKU", sku);
	CheckCode("warehouse", warehouse);
	incarnation = CurrentIncarnation();

	memset(&key, 0, sizeof(key));
	strlcpy(key.sku, sku, sizeof(key.sku));
	strlcpy(key.warehouse, warehouse, sizeof(key.warehouse));
	e = (CodeEntry *) hash_search(code_cache, &key, HASH_FIND, NULL);
	if (e == NULL)
	{
		sku_id = LookupId(true, sku);
		if (sku_id == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OF_SKU_NOT_FOUND),
					 errmsg("SKU \"%s\" does not exist", sku)));
		warehouse_id = LookupId(false, warehouse);
		if (warehouse_id == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OF_WAREHOUSE_NOT_FOUND),
					 errmsg("warehouse \"%s\" does not exist", warehouse)));

		/*
		 * The lookups may have made the cache start over: enter it now.  From
		 * here on nothing may start it over again, which would free the
		 * entry.
		 */
		incarnation = CurrentIncarnation();
		e = (CodeEntry *) hash_search(code_cache, &key, HASH_ENTER, &found);
		e->sku_id = sku_id;
		e->warehouse_id = warehouse_id;
		e->counter = NULL;
		memset(&e->lots, 0, sizeof(LotList));
	}
	if (e->counter == NULL)
	{
		skey = KeyIn(incarnation, e->sku_id, e->warehouse_id);
		e->counter = FindCounter(&skey, take_counter);
	}
	return e;
}

static CodeEntry *
LookupCodes(const char *sku, const char *warehouse)
{
	return ResolveCodes(sku, warehouse, true);
}

/*
 * Take qty from a loaded counter; false when it does not have that much.
 * *before (if given) receives the counter's value just before the take.
 */
static bool
TryTake(StockCounter *c, int64 qty, int64 *before)
{
	uint64		cur = pg_atomic_read_u64(&c->available);

	if (unlikely(qty <= 0))
		elog(ERROR, "stock counter take of %lld units", (long long) qty);
	for (;;)
	{
		if ((int64) cur < qty)
			return false;
		if (pg_atomic_compare_exchange_u64(&c->available, &cur, cur - (uint64) qty))
		{
			pg_atomic_fetch_add_u64(&c->inflight, (uint64) qty);
			if (before)
				*before = (int64) cur;
			return true;
		}
	}
}

/* Register a quantity that returns to a counter when the transaction commits. */
static void
AddAtCommit(int64 sku_id, int64 warehouse_id, int64 delta)
{
	StockKey	key = MakeKey(sku_id, warehouse_id);
	PendingChange *pc = NewChange(&key, FindCounter(&key, false), false);

	pc->delta = delta;
}

/* The quantity this transaction will add to a counter at commit. */
static int64
IncomingAtCommit(const StockKey *key)
{
	ListCell   *lc;
	int64		sum = 0;

	foreach(lc, pending_changes)
	{
		PendingChange *pc = (PendingChange *) lfirst(lc);

		if (!pc->immediate && memcmp(&pc->key, key, sizeof(StockKey)) == 0)
			sum += pc->delta;
	}
	return sum;
}

/* ---------- SQL-callable functions ---------- */

static char *
TextArg(FunctionCallInfo fcinfo, int n)
{
	return PG_ARGISNULL(n) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(n));
}

static void
RequireArg(FunctionCallInfo fcinfo, int n, const char *what)
{
	if (PG_ARGISNULL(n))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
}

static void
RequirePositiveQty(int32 qty)
{
	if (qty <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantity must be positive, not %d", qty)));
}

/*
 * Hold rows are written straight into orderflow.reservations (see
 * DirectInsert): the extension forms every row itself, with a positive
 * quantity, status 'held' and no closed_at, so its CHECK constraints hold by
 * construction, and nothing else may write the table.
 */
/*
 * Values of a hold given beside its SKU, warehouse and quantity (WriteHold),
 * and the column of hold_columns each one fills.
 */
#define HOLD_EXTRA 7
#define HOLD_EXTRA_SHOP 6
static const int hold_extra_column[HOLD_EXTRA] = {5, 6, 7, 8, 9, 10, 13};

static const char *const hold_columns[] = {
	"id", "sku_id", "warehouse_id", "qty", "status", "ref", "expires_at",
	"order_id", "line_no", "bin_id", "lot_id", "created_at", "closed_at",
	"shop_id"
};

static void
OpenHolds(DirectInsert * di)
{
	Oid			relid = CurrentIncarnation();

	DirectInsertOpen(di, relid, hold_columns, lengthof(hold_columns));
	if (!OidIsValid(cached_hold_sequence))
#if PG_VERSION_NUM >= 170000
		cached_hold_sequence = getIdentitySequence(di->rel, 1, false);
#else
		cached_hold_sequence = getIdentitySequence(relid, 1, false);
#endif
}

/*
 * Write one hold row; extra[] holds ref, expires_at, order_id, line_no,
 * bin_id, lot_id, shop_id (HOLD_EXTRA values).  Returns its id.
 */
static int64
WriteHold(DirectInsert * di, int64 sku_id, int64 warehouse_id, int32 qty,
		  const Datum *extra, const bool *extra_null)
{
	Datum		values[lengthof(hold_columns)];
	bool		nulls[lengthof(hold_columns)];
	int64		id = nextval_internal(cached_hold_sequence, false);

	memset(nulls, false, sizeof(nulls));
	values[0] = Int64GetDatum(id);
	values[1] = Int64GetDatum(sku_id);
	values[2] = Int64GetDatum(warehouse_id);
	values[3] = Int32GetDatum(qty);
	values[4] = CStringGetTextDatum("held");
	for (int i = 0; i < HOLD_EXTRA; i++)
	{
		values[hold_extra_column[i]] = extra_null[i] ? (Datum) 0 : extra[i];
		nulls[hold_extra_column[i]] = extra_null[i];
	}
	values[11] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	nulls[12] = true;
	DirectInsertRow(di, values, nulls);
	return id;
}

/* Record one hold; returns its id. */
static int64
InsertHoldRow(int64 sku_id, int64 warehouse_id, int32 qty, Datum *extra,
			  const bool *extra_null)
{
	DirectInsert di;
	int64		id;

	OpenHolds(&di);
	id = WriteHold(&di, sku_id, warehouse_id, qty, extra, extra_null);
	DirectInsertClose(&di);
	return id;
}

/*
 * The reservation primitive: take qty from the counter and record a hold.
 * extra[] holds ref, expires_at, order_id, line_no, bin_id, lot_id, shop_id.
 * Returns the hold's id, or 0 when the stock is not there.  With incoming,
 * the quantity comes from stock this transaction received and has not yet
 * added to the counter.
 */
static int64
HoldInternal(const char *sku, const char *warehouse, int32 qty,
			 Datum *extra, const bool *extra_null, bool incoming)
{
	CodeEntry  *e;
	StockCounter *counter;
	int64		sku_id;
	int64		warehouse_id;
	StockKey	key;
	PendingChange *pc;

	RequireAllocator();
	RequirePositiveQty(qty);
	if (!extra_null[1] && DatumGetTimestampTz(extra[1]) <= GetCurrentTransactionStartTimestamp())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a reservation must expire in the future")));

	/*
	 * Loading the counter runs queries, after which the code cache may start
	 * over (OpenHolds): keep what the entry says, not the entry.
	 */
	e = LookupCodes(sku, warehouse);
	counter = e->counter;
	sku_id = e->sku_id;
	warehouse_id = e->warehouse_id;
	key = counter->key;

	if (incoming)
	{
		if (IncomingAtCommit(&key) < qty)
			ereport(ERROR,
					(errcode(ERRCODE_OF_INSUFFICIENT_STOCK),
					 errmsg("cannot hold %d units of SKU \"%s\" in warehouse \"%s\" from stock received in this transaction",
							qty, sku, warehouse),
					 errdetail("Only %lld units were received and not yet held.",
							   (long long) IncomingAtCommit(&key))));
		pc = NewChange(&key, counter, false);
		pc->delta = -qty;
	}
	else
	{
		EnsureLoaded(counter);
		pc = NewChange(&key, counter, true);
		if (!TryTake(counter, qty, NULL))
			return 0;
		pc->delta = qty;
	}
	return InsertHoldRow(sku_id, warehouse_id, qty, extra, extra_null);
}

/* ---------- the allocator's interface to orderflow.allocate() ---------- */

/*
 * The SKU and warehouse given by code, for StockTakePlanned; unknown codes
 * fail with OF007 or OF006.
 */
StockRef *
StockLookup(const char *sku, const char *warehouse)
{
	RequireAllocator();
	return LookupCodes(sku, warehouse);
}

/* The quantity that can be taken now. */
int64
StockAvailable(StockRef *s)
{
	EnsureLoaded(s->counter);
	return (int64) pg_atomic_read_u64(&s->counter->available);
}

/*
 * Read the lots of a SKU in a warehouse again if a movement was written
 * since they were read.  The version is read before the snapshot is taken,
 * so a movement committed after the read moves the version past it.
 */
static LotList *
CurrentLots(CodeEntry *e)
{
	static SPIPlanPtr plan = NULL;
	uint64		version = pg_atomic_read_u64(&e->counter->ledger_version);
	LotList    *l = &e->lots;
	Datum		args[2];
	MemoryContext old;

	if (l->valid && l->version == version)
		return l;
	pg_memory_barrier();

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (plan == NULL)
	{
		Oid			argtypes[2] = {INT8OID, INT8OID};

		plan = PrepareKeptPlan("SELECT h.bin_id, h.lot_id, h.qty"
							   "  FROM orderflow.bin_lot_on_hand($1, $2) h"
							   "  JOIN orderflow.lots l ON l.id OPERATOR(pg_catalog.=) h.lot_id"
							   "  JOIN orderflow.bins n ON n.id OPERATOR(pg_catalog.=) h.bin_id"
							   " WHERE h.qty OPERATOR(pg_catalog.>) 0"
							   " ORDER BY l.expiry_date NULLS LAST, l.created_at, n.route_seq NULLS LAST, n.code",
							   2, argtypes);
	}
	args[0] = Int64GetDatum(e->sku_id);
	args[1] = Int64GetDatum(e->warehouse_id);
	ReadAsExtensionOwner(plan, args, 0, true, "lot");

	l->valid = false;
	if (l->bin_id != NULL)
		pfree(l->bin_id);
	if (l->lot_id != NULL)
		pfree(l->lot_id);
	if (l->qty != NULL)
		pfree(l->qty);
	l->bin_id = l->lot_id = l->qty = NULL;
	old = MemoryContextSwitchTo(code_cache_cxt);
	l->n = (int) SPI_processed;
	l->bin_id = palloc(sizeof(int64) * (l->n + 1));
	l->lot_id = palloc(sizeof(int64) * (l->n + 1));
	l->qty = palloc(sizeof(int64) * (l->n + 1));
	MemoryContextSwitchTo(old);
	l->total = 0;
	for (int i = 0; i < l->n; i++)
	{
		bool		isnull;
		HeapTuple	tup = SPI_tuptable->vals[i];

		l->bin_id[i] = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		l->lot_id[i] = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		l->qty[i] = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
		l->total += l->qty[i];
	}
	SPI_finish();
	l->version = version;
	l->valid = true;
	return l;
}

static void
AddPlannedHold(List **holds, CodeEntry *e, PendingChange *pc, int32 line_no,
			   int64 bin_id, int64 lot_id, int32 qty)
{
	StockHold  *h = palloc(sizeof(StockHold));

	h->sku_id = e->sku_id;
	h->warehouse_id = e->warehouse_id;
	h->bin_id = bin_id;
	h->lot_id = lot_id;
	h->qty = qty;
	h->line_no = line_no;
	h->change = pc;
	*holds = lappend(*holds, h);
}

/*
 * Take qty for an order line and plan it on bins and lots, first expiry
 * first out, appending the planned hold rows to *holds (to be written by
 * StockInsertHolds or given back by StockGiveBack).  False when the
 * counter does not have qty.
 *
 * The units promised so far are taken to come from the earliest-expiring
 * stock: the counter's value just before this take says how many units
 * are promised, so this take's units are the next ones in expiry order.
 * Concurrent takes get distinct positions because the compare-and-swap
 * orders them.  The plan is a picking instruction; the counter is the
 * guarantee.
 */
bool
StockTakePlanned(StockRef *e, int32 qty, int32 line_no, List **holds)
{
	StockKey	key = e->counter->key;
	PendingChange *pc;
	LotList    *lots;
	int64		before;
	int64		position;
	int64		covered = 0;
	int32		left = qty;

	RequirePositiveQty(qty);
	EnsureLoaded(e->counter);
	lots = CurrentLots(e);
	pc = NewChange(&key, e->counter, true);
	if (!TryTake(e->counter, qty, &before))
		return false;
	pc->delta = qty;

	/* This take's units are positions (total - before, ... + qty]. */
	position = Max(lots->total - before, 0);
	for (int i = 0; i < lots->n && left > 0; i++)
	{
		int64		lot_end = covered + lots->qty[i];

		if (lot_end > position)
		{
			int32		part = (int32) Min((int64) left, lot_end - position);

			AddPlannedHold(holds, e, pc, line_no, lots->bin_id[i], lots->lot_id[i], part);
			left -= part;
			position += part;
		}
		covered = lot_end;
	}
	if (left > 0)
		AddPlannedHold(holds, e, pc, line_no, 0, 0, left);
	return true;
}

/*
 * Give planned holds back to their counters at once: the quantities were
 * taken by this transaction and nobody else has relied on them.
 */
void
StockGiveBack(List *holds)
{
	ListCell   *lc;

	foreach(lc, holds)
	{
		StockHold  *h = (StockHold *) lfirst(lc);
		PendingChange *pc = (PendingChange *) h->change;

		Assert(pc->immediate && pc->delta >= h->qty);
		pc->delta -= h->qty;
		pg_atomic_fetch_add_u64(&pc->counter->available, (uint64) h->qty);
		pg_atomic_fetch_sub_u64(&pc->counter->inflight, (uint64) h->qty);
	}
}

/* Write planned holds of an order as reservation rows. */
void
StockInsertHolds(List *holds, int64 order_id)
{
	DirectInsert di;
	ListCell   *lc;

	if (holds == NIL)
		return;
	OpenHolds(&di);
	foreach(lc, holds)
	{
		StockHold  *h = (StockHold *) lfirst(lc);
		Datum		extra[HOLD_EXTRA] = {0, 0, Int64GetDatum(order_id), Int32GetDatum(h->line_no),
		Int64GetDatum(h->bin_id), Int64GetDatum(h->lot_id), 0};
		bool		extra_null[HOLD_EXTRA] = {true, true, false, false, h->lot_id == 0, h->lot_id == 0, true};

		WriteHold(&di, h->sku_id, h->warehouse_id, h->qty, extra, extra_null);
	}
	DirectInsertClose(&di);
}

/*
 * orderflow.reserve(sku, warehouse, qty, ref, ttl): reserve stock, e.g. at
 * checkout.  Returns the reservation id, or NULL when the stock is not
 * there.  Never waits for another transaction.
 */
PG_FUNCTION_INFO_V1(orderflow_reserve);
Datum
orderflow_reserve(PG_FUNCTION_ARGS)
{
	Datum		extra[HOLD_EXTRA] = {0, 0, 0, 0, 0, 0, 0};
	bool		extra_null[HOLD_EXTRA] = {true, true, true, true, true, true, true};
	int64		id;

	RequireArg(fcinfo, 0, "SKU");
	RequireArg(fcinfo, 1, "warehouse");
	RequireArg(fcinfo, 2, "quantity");
	if (!PG_ARGISNULL(3))
	{
		extra[0] = PG_GETARG_DATUM(3);
		extra_null[0] = false;
	}
	if (!PG_ARGISNULL(4))
	{
		Interval   *ttl = PG_GETARG_INTERVAL_P(4);
		TimestampTz now = GetCurrentTransactionStartTimestamp();

		extra[1] = DirectFunctionCall2(timestamptz_pl_interval,
									   TimestampTzGetDatum(now),
									   IntervalPGetDatum(ttl));
		extra_null[1] = false;
		if (DatumGetTimestampTz(extra[1]) <= now)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("reservation time to live must be positive")));
	}
	if (!PG_ARGISNULL(5))
	{
		if (!ShopVisible(PG_GETARG_INT64(5)))
			ereport(ERROR,
					(errcode(ERRCODE_OF_SHOP_NOT_FOUND),
					 errmsg("shop %lld does not exist", (long long) PG_GETARG_INT64(5))));
		extra[HOLD_EXTRA_SHOP] = PG_GETARG_DATUM(5);
		extra_null[HOLD_EXTRA_SHOP] = false;
	}
	id = HoldInternal(TextArg(fcinfo, 0), TextArg(fcinfo, 1), PG_GETARG_INT32(2),
					  extra, extra_null, false);
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/*
 * Whether query, run as the calling role with id as $1, finds a row: the
 * tenant policy applied to the caller.  Holds are written and closed as the
 * extension owner, so the policy of the order or shop they belong to is
 * applied here, as functions that read the order itself have it applied.
 */
static bool
VisibleToCaller(const char *query, int64 id)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	bool		found;

	args[0] = Int64GetDatum(id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(query, 1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up %lld: %s", (long long) id, query);
	found = SPI_processed == 1;
	SPI_finish();
	return found;
}

/* Whether the shop exists and the calling role may see its orders. */
static bool
ShopVisible(int64 shop_id)
{
	return VisibleToCaller("SELECT FROM orderflow.shops s"
						   " WHERE s.id OPERATOR(pg_catalog.=) $1"
						   "   AND orderflow.shop_visible(s.id)", shop_id);
}

/* Fail with OF004 unless the calling role may see the order. */
static void
RequireOrderVisible(int64 order_id)
{
	bool		found = VisibleToCaller("SELECT FROM orderflow.orders o"
										" WHERE o.id OPERATOR(pg_catalog.=) $1", order_id);

	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_FOUND),
				 errmsg("order %lld does not exist", (long long) order_id)));
}

/*
 * Look a hold up as the owner: false when it does not exist, else its
 * status (allocated where the caller can use it after SPI_finish), the
 * order it belongs to and the shop that placed it (0 when none).
 */
static bool
HoldLookup(int64 hold_id, int64 *order_id, int64 *shop_id, char **status)
{
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];
	SavedUser	saved_user;
	bool		found;

	args[0] = Int64GetDatum(hold_id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	BecomeExtensionOwner(&saved_user);
	if (SPI_execute_with_args("SELECT r.status, coalesce(r.order_id, 0), coalesce(r.shop_id, 0)"
							  "  FROM orderflow.reservations r"
							  " WHERE r.id OPERATOR(pg_catalog.=) $1",
							  1, argtypes, args, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not look up reservation %lld", (long long) hold_id);
	RestoreUser(&saved_user);
	found = SPI_processed == 1;
	if (found)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *value = SPI_getvalue(tup, desc, 1);
		bool		isnull;

		*status = SPI_palloc(strlen(value) + 1);
		strcpy(*status, value);
		*order_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		*shop_id = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
	SPI_finish();
	return found;
}

/*
 * orderflow.hold(sku, warehouse, qty, ref, expires_at, order_id, line_no,
 *				  bin_id, lot_id, incoming): a hold with every detail given, for
 * the extension's own functions (receive_stock holds incoming stock for
 * back-orders with it).
 */
PG_FUNCTION_INFO_V1(orderflow_hold);
Datum
orderflow_hold(PG_FUNCTION_ARGS)
{
	Datum		extra[HOLD_EXTRA];
	bool		extra_null[HOLD_EXTRA];
	int64		id;

	RequireArg(fcinfo, 0, "SKU");
	RequireArg(fcinfo, 1, "warehouse");
	RequireArg(fcinfo, 2, "quantity");
	for (int i = 0; i < HOLD_EXTRA; i++)
	{
		extra_null[i] = i == HOLD_EXTRA_SHOP || PG_ARGISNULL(3 + i);
		extra[i] = extra_null[i] ? (Datum) 0 : PG_GETARG_DATUM(3 + i);
	}
	if (!extra_null[2])
		RequireOrderVisible(DatumGetInt64(extra[2]));
	id = HoldInternal(TextArg(fcinfo, 0), TextArg(fcinfo, 1), PG_GETARG_INT32(2),
					  extra, extra_null, !PG_ARGISNULL(9) && PG_GETARG_BOOL(9));
	if (id == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(id);
}

/*
 * Run an UPDATE ... RETURNING sku_id, warehouse_id, qty as the owner and
 * give each returned quantity back to its counter at commit.
 */
uint64
CloseHolds(const char *sql, int nargs, Oid *argtypes, Datum *args,
		   const char *nulls)
{
	SavedUser	saved_user;
	uint64		n;

	RequireAllocator();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	BecomeExtensionOwner(&saved_user);
	if (SPI_execute_with_args(sql, nargs, argtypes, args, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not close reservations");
	RestoreUser(&saved_user);
	n = SPI_processed;
	for (uint64 i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		int64		sku_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		int64		warehouse_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		int32		qty = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));

		AddAtCommit(sku_id, warehouse_id, qty);
	}
	SPI_finish();
	return n;
}

/*
 * orderflow.release(reservation_id): give a hold back.  Returns true when it
 * was released, false (with a notice) when it was not held any more.
 */
PG_FUNCTION_INFO_V1(orderflow_release);
Datum
orderflow_release(PG_FUNCTION_ARGS)
{
	int64		id;
	int64		order_id;
	int64		shop_id;
	char	   *status;
	Oid			argtypes[1] = {INT8OID};
	Datum		args[1];

	RequireArg(fcinfo, 0, "reservation id");
	id = PG_GETARG_INT64(0);
	args[0] = Int64GetDatum(id);

	/*
	 * A hold of an order is the order's tenants'; a checkout hold placed for
	 * a shop is that shop's tenants': to others it does not exist.
	 */
	if (!HoldLookup(id, &order_id, &shop_id, &status) ||
		(order_id == 0 && shop_id != 0 && !ShopVisible(shop_id)))
		ereport(ERROR,
				(errcode(ERRCODE_OF_RESERVATION_NOT_FOUND),
				 errmsg("reservation %lld does not exist", (long long) id)));
	if (order_id != 0)
		RequireOrderVisible(order_id);

	if (strcmp(status, "held") == 0)
	{
		if (CloseHolds("UPDATE orderflow.reservations r"
					   "   SET status = 'released', closed_at = pg_catalog.now()"
					   " WHERE r.id OPERATOR(pg_catalog.=) $1"
					   "   AND r.status OPERATOR(pg_catalog.=) 'held'"
					   " RETURNING r.sku_id, r.warehouse_id, r.qty",
					   1, argtypes, args, NULL) == 1)
			PG_RETURN_BOOL(true);
		/* Closed meanwhile by a transaction that has committed since. */
		(void) HoldLookup(id, &order_id, &shop_id, &status);
	}
	ereport(NOTICE,
			(errmsg("reservation %lld is already %s; nothing to release",
					(long long) id, status)));
	PG_RETURN_BOOL(false);
}

/*
 * orderflow.release_holds(order_id, line_no): give back every hold of an
 * order, or of one of its lines.  Returns the number of holds released.
 */
PG_FUNCTION_INFO_V1(orderflow_release_order_holds);
Datum
orderflow_release_order_holds(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {INT8OID, INT4OID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};

	RequireArg(fcinfo, 0, "order id");
	RequireOrderVisible(PG_GETARG_INT64(0));
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(1))
		nulls[1] = 'n';
	PG_RETURN_INT64((int64) CloseHolds("UPDATE orderflow.reservations r"
									   "   SET status = 'released', closed_at = pg_catalog.now()"
									   " WHERE r.order_id OPERATOR(pg_catalog.=) $1"
									   "   AND ($2 IS NULL OR r.line_no OPERATOR(pg_catalog.=) $2)"
									   "   AND r.status OPERATOR(pg_catalog.=) 'held'"
									   " RETURNING r.sku_id, r.warehouse_id, r.qty",
									   2, argtypes, args, nulls));
}

/*
 * orderflow.expire_reservations(max): expire up to max holds whose time is
 * up.  Concurrent runs skip each other's rows, so nothing is released twice.
 */
PG_FUNCTION_INFO_V1(orderflow_expire_reservations);
Datum
orderflow_expire_reservations(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1];

	RequireArg(fcinfo, 0, "batch size");
	if (PG_GETARG_INT32(0) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("batch size must be positive")));
	args[0] = PG_GETARG_DATUM(0);
	PG_RETURN_INT64((int64) CloseHolds("UPDATE orderflow.reservations r"
									   "   SET status = 'expired', closed_at = pg_catalog.now()"
									   " WHERE r.id IN (SELECT x.id FROM orderflow.reservations x"
									   "                 WHERE x.status OPERATOR(pg_catalog.=) 'held'"
									   "                   AND x.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()"
									   "                 ORDER BY x.expires_at LIMIT $1"
									   "                 FOR UPDATE SKIP LOCKED)"
									   "   AND r.status OPERATOR(pg_catalog.=) 'held'"
									   " RETURNING r.sku_id, r.warehouse_id, r.qty",
									   1, argtypes, args, NULL));
}

/*
 * Trigger on orders: an order that is cancelled or put on hold gives back
 * everything it holds, once, including checkout holds under its number; a
 * cancelled order that was paid records the refund due (RecordCancelRefund).
 */
PG_FUNCTION_INFO_V1(orderflow_order_release_trigger);
Datum
orderflow_order_release_trigger(PG_FUNCTION_ARGS)
{
	static const char *const columns[] = {"id", "order_no", "shop_id", "state", "paid_amount"};
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc = RelationGetDescr(trigdata->tg_relation);
	Oid			argtypes[3] = {INT8OID, TEXTOID, INT8OID};
	Datum		values[5];
	bool		nulls[5];
	HeapTuple	oldtuple;
	HeapTuple	newtuple;

	CheckTriggerCall(fcinfo, "orderflow_order_release_trigger", false, 1, &oldtuple, &newtuple);
	if (oldtuple == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function \"%s\" must be fired for UPDATE",
						"orderflow_order_release_trigger")));

	for (int i = 0; i < (int) lengthof(columns); i++)
		values[i] = heap_getattr(newtuple,
								 RequiredColumn(trigdata->tg_relation, columns[i], NULL),
								 desc, &nulls[i]);

	/*
	 * The order's holds, and those placed at checkout under its platform
	 * order number that allocate() has not claimed yet: for its shop, or for
	 * no shop in particular.
	 */
	CloseHolds("UPDATE orderflow.reservations r"
			   "   SET status = 'released', closed_at = pg_catalog.now()"
			   " WHERE (r.order_id OPERATOR(pg_catalog.=) $1"
			   "        OR (r.order_id IS NULL AND r.ref OPERATOR(pg_catalog.=) $2"
			   "            AND (r.shop_id IS NULL OR r.shop_id OPERATOR(pg_catalog.=) $3)))"
			   "   AND r.status OPERATOR(pg_catalog.=) 'held'"
			   " RETURNING r.sku_id, r.warehouse_id, r.qty",
			   3, argtypes, values, NULL);

	if (!nulls[3] && DatumGetOrderState(values[3]) == OS_CANCELLED && !nulls[4] &&
		DatumGetBool(DirectFunctionCall2(numeric_gt, values[4],
										 NumericGetDatum(int64_to_numeric(0)))))
	{
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		RecordCancelRefund(DatumGetInt64(values[0]), values[4]);
		SPI_finish();
	}
	return PointerGetDatum(NULL);
}

/*
 * Attach the unclaimed holds of a SKU whose ref is the order's platform
 * number, placed for the order's shop or for none, to an order line, up to
 * need; a hold larger than needed is cut
 * down and the rest given back.  Returns the quantity claimed.  Holds being
 * claimed by another transaction are skipped, not waited for.
 */
int32
StockClaimHolds(int64 order_id, int64 shop_id, int32 line_no, const char *sku,
				const char *ref, int32 need)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};
	Datum		args[3];
	SavedUser	saved_user;
	int32		claimed = 0;
	uint64		n;
	static SPIPlanPtr find_plan = NULL;
	struct
	{
		int64		id;
		int64		sku_id;
		int64		warehouse_id;
		int32		qty;
	}		   *holds;

	RequireAllocator();
	RequirePositiveQty(need);
	args[0] = CStringGetTextDatum(sku);
	args[1] = CStringGetTextDatum(ref);
	args[2] = Int64GetDatum(shop_id);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (find_plan == NULL)
		find_plan = PrepareKeptPlan("SELECT r.id, r.sku_id, r.warehouse_id, r.qty"
									"  FROM orderflow.reservations r"
									" WHERE r.ref OPERATOR(pg_catalog.=) $2"
									"   AND r.status OPERATOR(pg_catalog.=) 'held'"
									"   AND r.order_id IS NULL"
									"   AND (r.shop_id IS NULL OR r.shop_id OPERATOR(pg_catalog.=) $3)"
									"   AND r.sku_id OPERATOR(pg_catalog.=) (SELECT s.id FROM orderflow.skus s"
									"                                         WHERE s.code OPERATOR(pg_catalog.=) $1)"
									" ORDER BY r.id FOR UPDATE OF r SKIP LOCKED",
									3, argtypes);
	BecomeExtensionOwner(&saved_user);
	if (SPI_execute_plan(find_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not look up holds");
	n = SPI_processed;
	holds = palloc(sizeof(*holds) * (n + 1));
	for (uint64 i = 0; i < n; i++)
	{
		bool		isnull;

		holds[i].id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		holds[i].sku_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		holds[i].warehouse_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		holds[i].qty = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 4, &isnull));
	}

	for (uint64 i = 0; i < n && claimed < need; i++)
	{
		Oid			uargtypes[4] = {INT8OID, INT8OID, INT4OID, INT4OID};
		Datum		uargs[4];
		int32		take = Min(holds[i].qty, need - claimed);

		uargs[0] = Int64GetDatum(holds[i].id);
		uargs[1] = Int64GetDatum(order_id);
		uargs[2] = Int32GetDatum(line_no);
		uargs[3] = Int32GetDatum(take);
		if (SPI_execute_with_args("UPDATE orderflow.reservations"
								  "   SET order_id = $2, line_no = $3, qty = $4, expires_at = NULL"
								  " WHERE id OPERATOR(pg_catalog.=) $1",
								  4, uargtypes, uargs, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not claim hold");
		if (take < holds[i].qty)
			AddAtCommit(holds[i].sku_id, holds[i].warehouse_id, holds[i].qty - take);
		claimed += take;
	}
	RestoreUser(&saved_user);
	SPI_finish();
	return claimed;
}

/*
 * orderflow.record_movement(sku, warehouse, bin, lot, qty, kind, reason, ref,
 *							 production_date, expiry_date): append a receipt or
 * adjustment to the stock ledger.  Stock coming in reaches the counter at
 * commit; stock going out is taken from the counter at once and fails
 * (OF023) when it is reserved.
 */
PG_FUNCTION_INFO_V1(orderflow_record_movement);
Datum
orderflow_record_movement(PG_FUNCTION_ARGS)
{
	char	   *sku;
	char	   *warehouse;
	char	   *kind;
	int32		qty;
	CodeEntry  *e;
	StockCounter *counter;
	int64		sku_id;
	int64		warehouse_id;
	StockKey	key;
	SavedUser	saved_user;
	bool		isnull;
	int64		movement_id;
	Oid			argtypes[10] = {INT8OID, INT8OID, TEXTOID, TEXTOID, INT4OID, TEXTOID,
	TEXTOID, TEXTOID, DATEOID, DATEOID};
	Datum		args[10];
	char		nulls[10];

	RequireAllocator();
	RequireArg(fcinfo, 0, "SKU");
	RequireArg(fcinfo, 1, "warehouse");
	RequireArg(fcinfo, 2, "bin");
	RequireArg(fcinfo, 4, "quantity");
	RequireArg(fcinfo, 5, "movement kind");
	sku = TextArg(fcinfo, 0);
	warehouse = TextArg(fcinfo, 1);
	qty = PG_GETARG_INT32(4);
	kind = TextArg(fcinfo, 5);
	if (strcmp(kind, "receipt") != 0 && strcmp(kind, "adjustment") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid stock movement kind \"%s\"", kind),
				 errhint("Use \"receipt\" or \"adjustment\".")));
	if (qty == 0 || (strcmp(kind, "receipt") == 0 && qty < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("quantity must be positive, not %d", qty)));
	if (qty == PG_INT32_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("adjustment quantity %d is out of range", qty),
				 errdetail("An adjustment removes at most %d units.", PG_INT32_MAX)));

	/* Queries below may make the code cache start over: keep the values. */
	e = LookupCodes(sku, warehouse);
	counter = e->counter;
	sku_id = e->sku_id;
	warehouse_id = e->warehouse_id;
	key = counter->key;

	/* The SQL side validates bin and lot, then inserts the movement. */
	memset(nulls, ' ', sizeof(nulls));
	args[0] = Int64GetDatum(sku_id);
	args[1] = Int64GetDatum(warehouse_id);
	for (int i = 2; i < 10; i++)
	{
		if (PG_ARGISNULL(i))
		{
			args[i] = (Datum) 0;
			nulls[i] = 'n';
		}
		else
			args[i] = PG_GETARG_DATUM(i);
	}

	if (qty < 0)
	{
		PendingChange *pc;

		EnsureLoaded(counter);
		pc = NewChange(&key, counter, true);
		if (!TryTake(counter, -qty, NULL))
			ereport(ERROR,
					(errcode(ERRCODE_OF_INSUFFICIENT_STOCK),
					 errmsg("cannot remove %d units of SKU \"%s\" from warehouse \"%s\"",
							-qty, sku, warehouse),
					 errdetail("Only %lld units are on hand and not reserved.",
							   (long long) (int64) pg_atomic_read_u64(&counter->available))));
		pc->delta = -qty;
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	BecomeExtensionOwner(&saved_user);
	if (SPI_execute_with_args("SELECT orderflow.insert_movement($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
							  10, argtypes, args, nulls, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not record the stock movement");
	RestoreUser(&saved_user);
	movement_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	LedgerWritten(counter);

	if (qty > 0)
		AddAtCommit(sku_id, warehouse_id, qty);
	PG_RETURN_INT64(movement_id);
}

/*
 * The quantity of a SKU that can be reserved now in a warehouse: its
 * counter's, or, for a pair that has no counter in shared memory (no
 * stock function but this one touched it since the server started), the
 * committed quantity from the durable records, as loading the counter
 * would find it.  Asking takes no counter, so a catalog that asks for
 * every SKU does not fill orderflow.max_stock_counters.
 */
static int64
AvailableIn(const char *sku, const char *warehouse)
{
	CodeEntry  *e = ResolveCodes(sku, warehouse, false);
	StockCounter *counter = e->counter;

	if (counter == NULL)
	{
		StockKey	key = MakeKey(e->sku_id, e->warehouse_id);
		int64		value = CommittedDurable(&key);

		/*
		 * A counter made while the records were read may hold a take those
		 * records do not show yet; without one, nothing was taken or
		 * announced before their snapshot, and they are exact.
		 */
		counter = FindCounter(&key, false);
		if (counter == NULL)
			return value;
	}
	EnsureLoaded(counter);
	return (int64) pg_atomic_read_u64(&counter->available);
}

/*
 * orderflow.available(sku, warehouse): the quantity that can be reserved
 * now, in one warehouse or (NULL) in all of them.
 */
PG_FUNCTION_INFO_V1(orderflow_available);
Datum
orderflow_available(PG_FUNCTION_ARGS)
{
	char	   *sku;
	int64		total = 0;

	RequireAllocator();
	RequireArg(fcinfo, 0, "SKU");
	sku = TextArg(fcinfo, 0);

	if (!PG_ARGISNULL(1))
		PG_RETURN_INT64(AvailableIn(sku, TextArg(fcinfo, 1)));
	else
	{
		char	  **codes;
		int			ncodes;

		CheckCode("SKU", sku);
		if (LookupId(true, sku) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OF_SKU_NOT_FOUND),
					 errmsg("SKU \"%s\" does not exist", sku)));
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		codes = ActiveWarehouses(&ncodes);
		SPI_finish();
		for (int i = 0; i < ncodes; i++)
			total += AvailableIn(sku, codes[i]);
		PG_RETURN_INT64(total);
	}
}

/*
 * orderflow.stock_counters(): the counters of this database as they stand
 * in shared memory (for monitoring and tests).
 */
PG_FUNCTION_INFO_V1(orderflow_stock_counters);
Datum
orderflow_stock_counters(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Tuplestorestate *tupstore;
	HASH_SEQ_STATUS status;
	StockCounter *c;
	Oid			incarnation;
	static const char *state_names[] = {"unloaded", "loading", "ready"};

	RequireAllocator();
	tupstore = MaterializeResult(fcinfo, &desc);
	incarnation = CurrentIncarnation();

	LWLockAcquire(shared->lock, LW_SHARED);
	hash_seq_init(&status, counters);
	while ((c = (StockCounter *) hash_seq_search(&status)) != NULL)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};
		CounterState st;
		int			pending;

		if (c->key.dbid != MyDatabaseId || c->key.incarnation != incarnation)
			continue;
		SpinLockAcquire(&c->mutex);
		st = c->state;
		pending = c->pending;
		SpinLockRelease(&c->mutex);
		values[0] = Int64GetDatum(c->key.sku_id);
		values[1] = Int64GetDatum(c->key.warehouse_id);
		values[2] = CStringGetTextDatum(state_names[st]);
		values[3] = Int64GetDatum((int64) pg_atomic_read_u64(&c->available));
		values[4] = Int64GetDatum((int64) pg_atomic_read_u64(&c->inflight));
		values[5] = Int32GetDatum(pending);
		if (st != COUNTER_READY)
			nulls[3] = nulls[4] = true;
		tuplestore_putvalues(tupstore, desc, values, nulls);
	}
	LWLockRelease(shared->lock);
	return (Datum) 0;
}

/*
 * orderflow.counter_drift(sku_id, warehouse_id): counter minus durable
 * available for a loaded counter, measured when no change is in flight;
 * NULL when the counter is not loaded.  Used by orderflow.check_stock().
 */
PG_FUNCTION_INFO_V1(orderflow_counter_drift);
Datum
orderflow_counter_drift(PG_FUNCTION_ARGS)
{
	StockKey	key;
	StockCounter *c;
	int64		drift = 0;

	RequireAllocator();
	key = MakeKey(PG_GETARG_INT64(0), PG_GETARG_INT64(1));
	c = FindCounter(&key, false);
	if (c == NULL)
		PG_RETURN_NULL();

	/*
	 * A transaction committing while we compare makes the two disagree for a
	 * moment; only a difference that persists over several tries counts.
	 */
	for (int attempt = 0; attempt < 20; attempt++)
	{
		int64		before;
		int64		after;
		int64		durable;
		int			pending;
		CounterState st;

		SpinLockAcquire(&c->mutex);
		st = c->state;
		pending = c->pending;
		SpinLockRelease(&c->mutex);
		if (st != COUNTER_READY)
			PG_RETURN_NULL();
		before = (int64) (pg_atomic_read_u64(&c->available) + pg_atomic_read_u64(&c->inflight));
		durable = DurableAvailable(&key);
		after = (int64) (pg_atomic_read_u64(&c->available) + pg_atomic_read_u64(&c->inflight));
		drift = before - durable;
		if (drift == 0 || (before == after && pending == 0 &&
						   pg_atomic_read_u64(&c->inflight) == 0))
			break;
		pg_usleep(10000L);
	}
	PG_RETURN_INT64(drift);
}
