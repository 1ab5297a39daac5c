/*-------------------------------------------------------------------------
 *
 * allocate.c
 *	  orderflow.allocate(): stock for every line of an order.
 *
 * One call locks the order, reads its lines with what they already hold,
 * claims the holds placed at checkout under the order's platform number,
 * then takes the rest from the escrow counters: from one warehouse that
 * can ship everything if there is one (fewest parcels), else line by line
 * in warehouse priority order.  Every take is planned on bins and lots
 * first expiry first out.  The policy decides what happens when stock is
 * missing:
 *
 *	 wait			all or nothing: what this call took goes back, the order
 *					waits (backordered);
 *	 split			ship what is there (only with the buyer's or the shop's
 *					consent, else as wait);
 *	 cancel_missing cancel the missing units and refund them.
 *
 * The planned holds are written straight into reservations, and the
 * order's row changes once (ChangeLockedOrder): state and policy,
 * validated and audited by the state trigger.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "orderflow.h"
#include "allocator.h"

typedef enum AllocationPolicy
{
	POLICY_WAIT,
	POLICY_SPLIT,
	POLICY_CANCEL_MISSING
} AllocationPolicy;

static const char *const policy_names[] = {"wait", "split", "cancel_missing"};

/* One line of the order being allocated. */
typedef struct AllocLine
{
	int32		line_no;
	char	   *sku;			/* NULL: not mapped to one of our SKUs */
	int32		requested;		/* ordered minus cancelled */
	int32		got;			/* held or shipped */
	int32		need;			/* still missing */
	StringInfoData where;		/* "claimed", or the warehouses it came from */
} AllocLine;

/* The locked order. */
typedef struct AllocOrder
{
	int64		id;
	OrderState	state;
	char	   *stored_policy;	/* NULL when none was stored */
	bool		consent;		/* the order's consent to split shipments */
	bool		consent_unset;	/* NULL: the shop's setting applies */
	char	   *order_no;
	int64		shop_id;
	bool		has_checkout_holds;
	ItemPointerData tid;		/* as LockOrderRow returned it */
	int			nwarehouses;
	char	  **warehouses;		/* active, by priority */
} AllocOrder;

static SPIPlanPtr order_plan = NULL;
static SPIPlanPtr consent_plan = NULL;
static SPIPlanPtr warehouses_plan = NULL;
static SPIPlanPtr cancel_plan = NULL;
static uint64 plan_generation = 0;

/* The columns of the order allocation reads, as order_plan selects them. */
static const char *const order_cols[] = {
	"state", "allocation_policy", "allow_split", "order_no", "shop_id"
};

/*
 * What allocation reads straight from the tables and their indexes: the
 * order row (LockOrderRow), its lines (primary key of order_lines), the
 * holds of its lines (reservations_order_idx) and the holds placed at
 * checkout under its number (reservations_ref_idx).  Relation OIDs and
 * column numbers are looked up once per cache generation.
 */

static struct
{
	Oid			orders;
	AttrNumber	order_cols[lengthof(order_cols)];	/* as order_plan's */
	Oid			lines;
	Oid			lines_pkey;
	AttrNumber	line_no;
	AttrNumber	line_sku;
	AttrNumber	line_qty;
	AttrNumber	line_cancelled;
	Oid			holds;
	Oid			holds_order_idx;
	Oid			holds_ref_idx;
	AttrNumber	hold_qty;
	AttrNumber	hold_status;
	AttrNumber	hold_order;
	AttrNumber	hold_line;
	AttrNumber	hold_shop;
}			rels;

/* Active warehouse codes by priority, kept until the cache generation moves. */
static MemoryContext warehouses_cxt = NULL;
static char **warehouse_codes = NULL;
static int	nwarehouse_codes = 0;
static uint64 warehouses_generation = 0;

/*
 * Changes to what an order owes or holds once it is approved (cancelled
 * quantities, substitution lines, refund records, amounts) are made only by
 * orderflow's stock functions: the guard triggers of those tables refuse
 * them (OF012) unless orderflow.trusted_write() is true, and it is true
 * only while cancel_line, substitute_line or allocate's cancellation of
 * missing units runs in this backend.  SQL cannot set it.
 */
static int	trusted_depth = 0;

static void
TrustedWritesBegin(void)
{
	trusted_depth++;
}

static void
TrustedWritesEnd(void)
{
	Assert(trusted_depth > 0);
	trusted_depth--;
}

/* Run cancel_plan with args, trusted writes on while it runs. */
static void
CancelUnitsTrusted(Datum *args)
{
	TrustedWritesBegin();
	PG_TRY();
	{
		if (SPI_execute_plan(cancel_plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not cancel missing units");
	}
	PG_FINALLY();
	{
		TrustedWritesEnd();
	}
	PG_END_TRY();
}

static void PrepareQueries(void);
static void LookUpTables(void);

static void
PreparePlans(void)
{
	uint64		generation;

	if (plan_generation == OrderflowCacheGeneration() && order_plan != NULL)
		return;

	/*
	 * The saved plans are prepared once (PrepareKeptPlan); what is read here
	 * besides them follows the cache generation, taken from before the reads
	 * so that an invalidation arriving meanwhile makes the next call read
	 * again.
	 */
	generation = OrderflowCacheGeneration();
	if (order_plan == NULL)
		PrepareQueries();
	LookUpTables();
	plan_generation = generation;
}

/* The statements allocation runs through SPI. */
static void
PrepareQueries(void)
{
	Oid			int8arg[1] = {INT8OID};
	Oid			cancelargs[4] = {INT8OID, INT4OID, INT4OID, TEXTOID};
	SPIPlanPtr *leftover[] = {&consent_plan, &warehouses_plan, &cancel_plan};

	/*
	 * order_plan, prepared last, says whether they are all there: an attempt
	 * that failed partway leaves the others, to be prepared again.
	 */
	for (int i = 0; i < (int) lengthof(leftover); i++)
		if (*leftover[i] != NULL)
		{
			SPI_freeplan(*leftover[i]);
			*leftover[i] = NULL;
		}

	/* The shop's consent to split shipments, when the order gives none. */
	consent_plan = PrepareKeptPlan("SELECT s.allow_split FROM orderflow.shops s"
								   " WHERE s.id OPERATOR(pg_catalog.=) $1",
								   1, int8arg);
	warehouses_plan = PrepareKeptPlan("SELECT w.code FROM orderflow.warehouses w"
									  " WHERE w.active ORDER BY w.priority, w.code",
									  0, NULL);
	cancel_plan = PrepareKeptPlan("SELECT orderflow.cancel_units($1, $2, $3, $4)",
								  4, cancelargs);

	/*
	 * The order, locked.  Run as the caller: row-level security decides which
	 * orders the caller may allocate.  The lock does not conflict with the
	 * key-share locks of rows being added that refer to the order.
	 */
	order_plan = PrepareKeptPlan("SELECT o.state, o.allocation_policy, o.allow_split, o.order_no,"
								 "       o.shop_id"
								 "  FROM orderflow.orders o"
								 " WHERE o.id OPERATOR(pg_catalog.=) $1"
								 "   FOR NO KEY UPDATE",
								 1, int8arg);
}

/* The tables and columns allocation reads straight from their indexes. */
static void
LookUpTables(void)
{
	Relation	rel;

	OrderflowWatchRelation(OrderflowRelid("warehouses", false));
	rels.orders = OrderflowRelid("orders", false);
	rels.lines = OrderflowRelid("order_lines", false);
	rels.holds = OrderflowRelid("reservations", false);
	/* Their column numbers, read below, change with them. */
	OrderflowWatchRelation(rels.orders);
	OrderflowWatchRelation(rels.lines);
	OrderflowWatchRelation(rels.holds);
	rel = table_open(rels.orders, AccessShareLock);
	for (int i = 0; i < (int) lengthof(order_cols); i++)
		rels.order_cols[i] = RequiredColumn(rel, order_cols[i], NULL);
	table_close(rel, AccessShareLock);
	rels.lines_pkey = OrderflowRelid("order_lines_pkey", false);
	rels.holds_order_idx = OrderflowRelid("reservations_order_idx", false);
	rels.holds_ref_idx = OrderflowRelid("reservations_ref_idx", false);
	rel = table_open(rels.lines, AccessShareLock);
	rels.line_no = RequiredColumn(rel, "line_no", NULL);
	rels.line_sku = RequiredColumn(rel, "sku", NULL);
	rels.line_qty = RequiredColumn(rel, "qty", NULL);
	rels.line_cancelled = RequiredColumn(rel, "cancelled_qty", NULL);
	table_close(rel, AccessShareLock);
	rel = table_open(rels.holds, AccessShareLock);
	rels.hold_qty = RequiredColumn(rel, "qty", NULL);
	rels.hold_status = RequiredColumn(rel, "status", NULL);
	rels.hold_order = RequiredColumn(rel, "order_id", NULL);
	rels.hold_line = RequiredColumn(rel, "line_no", NULL);
	rels.hold_shop = RequiredColumn(rel, "shop_id", NULL);
	table_close(rel, AccessShareLock);
}

/*
 * The active warehouses by priority.  Read again after any change to the
 * warehouses table (its statement trigger invalidates it in every backend).
 * Read as the extension, like the stock they hold: what a caller may
 * allocate does not depend on whether its backend read them before.  The
 * list stays in the backend's memory until the next change; the caller is
 * connected to SPI.  Also what available() sums over.
 */
char	  **
ActiveWarehouses(int *n)
{
	PreparePlans();
	if (warehouse_codes == NULL || warehouses_generation != OrderflowCacheGeneration())
	{
		/* A change taken in while reading makes the list stale again. */
		uint64		generation = OrderflowCacheGeneration();
		MemoryContext old;

		if (warehouses_cxt == NULL)
			warehouses_cxt = AllocSetContextCreate(TopMemoryContext,
												   "orderflow warehouses",
												   ALLOCSET_SMALL_SIZES);
		MemoryContextReset(warehouses_cxt);
		warehouse_codes = NULL;
		ReadAsExtensionOwner(warehouses_plan, NULL, 0, false, "warehouse");
		old = MemoryContextSwitchTo(warehouses_cxt);
		nwarehouse_codes = (int) SPI_processed;
		warehouse_codes = palloc(sizeof(char *) * (nwarehouse_codes + 1));
		for (int i = 0; i < nwarehouse_codes; i++)
			warehouse_codes[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContextSwitchTo(old);
		warehouses_generation = generation;
	}
	*n = nwarehouse_codes;
	return warehouse_codes;
}

static AllocationPolicy
ParsePolicy(const char *name)
{
	for (int i = 0; i < (int) lengthof(policy_names); i++)
		if (strcmp(name, policy_names[i]) == 0)
			return (AllocationPolicy) i;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid allocation policy \"%s\"", name),
			 errhint("Use \"split\", \"wait\" or \"cancel_missing\".")));
	pg_unreachable();
}

/*
 * Lock the order and read what allocation needs of it: directly, or by
 * order_plan when only the statement applies (see LockOrderRow).
 */
static void
LockOrder(int64 order_id, AllocOrder *o)
{
	Datum		values[lengthof(order_cols)];
	bool		nulls[lengthof(order_cols)];
	Relation	rel = table_open(rels.orders, RowShareLock);

	LockOrderRow(rel, order_id, LockTupleNoKeyExclusive, lengthof(values),
				 rels.order_cols, values, nulls, &o->tid, order_plan);
	table_close(rel, NoLock);
	o->id = order_id;
	o->state = DatumGetOrderState(values[0]);
	o->stored_policy = nulls[1] ? NULL : TextDatumGetCString(values[1]);
	o->consent_unset = nulls[2];
	o->consent = !nulls[2] && DatumGetBool(values[2]);
	o->order_no = TextDatumGetCString(values[3]);
	o->shop_id = DatumGetInt64(values[4]);
	o->warehouses = ActiveWarehouses(&o->nwarehouses);
}

/*
 * Whether the order may ship in several parcels: its own say, else its
 * shop's.  The caller may see the order, and so what its shop allows; the
 * shop is read as the extension, like the warehouses.
 */
static bool
SplitConsent(AllocOrder *o)
{
	Datum		args[1] = {Int64GetDatum(o->shop_id)};
	bool		isnull;
	Datum		d;

	if (!o->consent_unset)
		return o->consent;
	ReadAsExtensionOwner(consent_plan, args, 1, false, "shop");
	if (SPI_processed == 0)
		return false;
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

static int32
Int32Column(TupleTableSlot *slot, AttrNumber attnum)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, attnum, &isnull);

	return isnull ? 0 : DatumGetInt32(d);
}

typedef struct LineRead
{
	AllocLine  *lines;
	int			n;
	int			size;
} LineRead;

static bool
VisitLine(TupleTableSlot *slot, void *arg)
{
	LineRead   *r = (LineRead *) arg;
	AllocLine  *l;
	bool		isnull;
	Datum		sku;

	if (r->n == r->size)
	{
		r->size *= 2;
		r->lines = repalloc(r->lines, sizeof(AllocLine) * r->size);
	}
	l = &r->lines[r->n++];
	memset(l, 0, sizeof(AllocLine));
	l->line_no = Int32Column(slot, rels.line_no);
	sku = slot_getattr(slot, rels.line_sku, &isnull);
	l->sku = isnull ? NULL : TextDatumGetCString(sku);
	l->requested = Int32Column(slot, rels.line_qty) - Int32Column(slot, rels.line_cancelled);
	initStringInfo(&l->where);
	return true;
}

/* A hold's status is one of these. */
static bool
StatusIs(TupleTableSlot *slot, const char *status)
{
	bool		isnull;
	Datum		d = slot_getattr(slot, rels.hold_status, &isnull);
	text	   *t;

	if (isnull)
		return false;
	t = DatumGetTextPP(d);
	return VARSIZE_ANY_EXHDR(t) == strlen(status) &&
		memcmp(VARDATA_ANY(t), status, VARSIZE_ANY_EXHDR(t)) == 0;
}

/* Holds of the order's lines: what is held or shipped counts as got. */
static bool
VisitLineHold(TupleTableSlot *slot, void *arg)
{
	LineRead   *r = (LineRead *) arg;
	int32		line_no = Int32Column(slot, rels.hold_line);

	if (!StatusIs(slot, "held") && !StatusIs(slot, "shipped"))
		return true;
	for (int i = 0; i < r->n; i++)
		if (r->lines[i].line_no == line_no)
			r->lines[i].got += Int32Column(slot, rels.hold_qty);
	return true;
}

/*
 * Whether a hold placed at checkout, for the order's shop or for none, waits
 * to be claimed.
 */
static bool
VisitCheckoutHold(TupleTableSlot *slot, void *arg)
{
	AllocOrder *o = (AllocOrder *) arg;
	bool		isnull;
	Datum		shop;

	if (!StatusIs(slot, "held") || !slot_attisnull(slot, rels.hold_order))
		return true;
	shop = slot_getattr(slot, rels.hold_shop, &isnull);
	if (!isnull && DatumGetInt64(shop) != o->shop_id)
		return true;
	o->has_checkout_holds = true;
	return false;
}

/*
 * The order's lines with what they hold, and whether holds wait to be
 * claimed under the order's number.  Read with a new snapshot taken after
 * the order is locked, as a statement run then would, so that changes made
 * by whoever held the lock before are seen.  The caller may see the order,
 * and so its lines and their holds; they are read as the extension.
 */
static AllocLine *
ReadLines(AllocOrder *o, int *nlines)
{
	LineRead	r;
	Snapshot	snapshot;

	r.size = 8;
	r.n = 0;
	r.lines = palloc(sizeof(AllocLine) * r.size);

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	IndexScanEqual(rels.lines, rels.lines_pkey, F_INT8EQ, Int64GetDatum(o->id),
				   snapshot, VisitLine, &r);
	IndexScanEqual(rels.holds, rels.holds_order_idx, F_INT8EQ, Int64GetDatum(o->id),
				   snapshot, VisitLineHold, &r);
	o->has_checkout_holds = false;
	IndexScanEqual(rels.holds, rels.holds_ref_idx, F_TEXTEQ,
				   CStringGetTextDatum(o->order_no), snapshot, VisitCheckoutHold, o);
	UnregisterSnapshot(snapshot);

	for (int i = 0; i < r.n; i++)
		r.lines[i].need = r.lines[i].requested - r.lines[i].got;
	*nlines = r.n;
	return r.lines;
}

static void
NoteWhere(AllocLine *l, const char *where, bool replace)
{
	if (replace)
		resetStringInfo(&l->where);
	else if (l->where.len > 0)
		appendStringInfoChar(&l->where, ',');
	appendStringInfoString(&l->where, where);
}

/* Take qty for a line from a warehouse; false when it is not there. */
static bool
TakeForLine(AllocLine *l, const char *warehouse, int32 qty, List **holds)
{
	if (!StockTakePlanned(StockLookup(l->sku, warehouse), qty, l->line_no, holds))
		return false;
	l->need -= qty;
	l->got += qty;
	return true;
}

/* The first warehouse, by priority, that has every missing unit. */
static const char *
SingleWarehouse(AllocOrder *o, AllocLine *lines, int nlines)
{
	for (int w = 0; w < o->nwarehouses; w++)
	{
		bool		fills = true;

		for (int i = 0; i < nlines && fills; i++)
		{
			if (lines[i].need <= 0)
				continue;
			fills = lines[i].sku != NULL &&
				StockAvailable(StockLookup(lines[i].sku, o->warehouses[w])) >= lines[i].need;
		}
		if (fills)
			return o->warehouses[w];
	}
	return NULL;
}

static const char *
Outcome(const AllocLine *l, AllocationPolicy policy)
{
	if (l->sku == NULL)
		return "unmapped sku";
	if (l->need <= 0)
		return "allocated";
	if (policy == POLICY_CANCEL_MISSING)
		return l->got == 0 ? "cancelled" : "partly cancelled";
	return l->got > 0 ? "partly backordered" : "backordered";
}

/*
 * orderflow.allocate(order_id, policy): allocate stock to every line of an
 * approved or backordered order (or, when split, of one with parts still
 * outstanding).  Returns one row per line.
 */
PG_FUNCTION_INFO_V1(orderflow_allocate);
Datum
orderflow_allocate(PG_FUNCTION_ARGS)
{
	TupleDesc	desc;
	Tuplestorestate *tupstore;
	AllocOrder	o;
	AllocLine  *lines;
	int			nlines;
	AllocationPolicy policy;
	List	   *holds = NIL;
	bool		missing = false;
	bool		held_any = false;
	bool		claimed_any = false;
	bool		movable;
	bool		to_set = false;
	OrderState	to = OS_PENDING_PAYMENT;
	const char *reason = NULL;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("order id must not be null")));
	tupstore = MaterializeResult(fcinfo, &desc);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PreparePlans();
	LockOrder(PG_GETARG_INT64(0), &o);

	policy = ParsePolicy(!PG_ARGISNULL(1) ? text_to_cstring(PG_GETARG_TEXT_PP(1)) :
						 o.stored_policy != NULL ? o.stored_policy : "wait");
	movable = o.state == OS_APPROVED || o.state == OS_BACKORDERED;
	if (!movable &&
		!((o.state == OS_ALLOCATED || o.state == OS_PARTIALLY_SHIPPED) &&
		  o.stored_policy != NULL && strcmp(o.stored_policy, "split") == 0))
		ereport(ERROR,
				(errcode(ERRCODE_OF_ORDER_NOT_ALLOCATABLE),
				 errmsg("order %lld cannot be allocated in state \"%s\"",
						(long long) o.id, OrderStateName(o.state)),
				 errdetail("Orders are allocated when approved or backordered (or, when split, while parts are outstanding).")));
	if (policy == POLICY_SPLIT && !SplitConsent(&o))
		policy = POLICY_WAIT;

	lines = ReadLines(&o, &nlines);

	/* Holds placed at checkout under the platform order number come first. */
	if (o.has_checkout_holds)
	{
		for (int i = 0; i < nlines; i++)
		{
			int32		claimed;

			if (lines[i].need <= 0 || lines[i].sku == NULL)
				continue;
			claimed = StockClaimHolds(o.id, o.shop_id, lines[i].line_no, lines[i].sku,
									  o.order_no, lines[i].need);
			if (claimed > 0)
			{
				lines[i].need -= claimed;
				lines[i].got += claimed;
				claimed_any = true;
				NoteWhere(&lines[i], "claimed", true);
			}
		}
	}

	/* One warehouse that can ship everything still missing, by priority. */
	for (int i = 0; i < nlines; i++)
		missing |= lines[i].need > 0;
	if (missing)
	{
		const char *single = SingleWarehouse(&o, lines, nlines);

		if (single != NULL)
			for (int i = 0; i < nlines; i++)
				if (lines[i].need > 0 &&
					TakeForLine(&lines[i], single, lines[i].need, &holds))
					NoteWhere(&lines[i], single, true);
	}

	/* Whatever is still missing: line by line, warehouse by warehouse. */
	for (int i = 0; i < nlines; i++)
	{
		if (lines[i].sku == NULL)
			continue;
		for (int w = 0; w < o.nwarehouses && lines[i].need > 0; w++)
		{
			int64		avail = StockAvailable(StockLookup(lines[i].sku, o.warehouses[w]));
			int32		take = (int32) Min((int64) lines[i].need, avail);

			if (take > 0 && TakeForLine(&lines[i], o.warehouses[w], take, &holds))
				NoteWhere(&lines[i], o.warehouses[w], false);
		}
	}

	missing = false;
	for (int i = 0; i < nlines; i++)
	{
		missing |= lines[i].need > 0;
		held_any |= lines[i].got > 0;
	}

	if (!missing)
	{
		if (movable)
		{
			to_set = true;
			to = OS_ALLOCATED;
			reason = "stock allocated";
		}
	}
	else if (policy == POLICY_WAIT)
	{
		/* All or nothing: give back what this call took; claims stay. */
		ListCell   *lc;

		StockGiveBack(holds);
		foreach(lc, holds)
		{
			StockHold  *h = (StockHold *) lfirst(lc);

			for (int i = 0; i < nlines; i++)
				if (lines[i].line_no == h->line_no)
				{
					lines[i].got -= h->qty;
					lines[i].need += h->qty;
				}
		}
		holds = NIL;
		for (int i = 0; i < nlines; i++)
			if (strcmp(lines[i].where.data, "claimed") != 0)
				resetStringInfo(&lines[i].where);
		if (o.state == OS_APPROVED)
		{
			to_set = true;
			to = OS_BACKORDERED;
			reason = "waiting for stock";
		}
	}
	else if (policy == POLICY_SPLIT)
	{
		if (held_any && movable)
		{
			to_set = true;
			to = OS_ALLOCATED;
			reason = "split: shipping what is in stock";
		}
		else if (!held_any && o.state == OS_APPROVED)
		{
			to_set = true;
			to = OS_BACKORDERED;
			reason = "waiting for stock";
		}
	}

	StockInsertHolds(holds, o.id);

	if (missing && policy == POLICY_CANCEL_MISSING)
	{
		/* Cancel what is not there and refund it. */
		for (int i = 0; i < nlines; i++)
		{
			Datum		args[4];

			if (lines[i].need <= 0)
				continue;
			args[0] = Int64GetDatum(o.id);
			args[1] = Int32GetDatum(lines[i].line_no);
			args[2] = Int32GetDatum(lines[i].need);
			args[3] = CStringGetTextDatum("out of stock");
			CancelUnitsTrusted(args);
		}
		to_set = held_any ? movable : true;
		to = held_any ? OS_ALLOCATED : OS_CANCELLED;
		reason = held_any ? "missing lines cancelled" : "out of stock";
	}

	/*
	 * One update of the locked order row: the state change (validated and
	 * audited by the trigger, with the reason) and the policy.  Holds written
	 * or claimed update it even when neither changes: a lock alone would let
	 * a REPEATABLE READ or SERIALIZABLE transaction whose snapshot predates
	 * this one cancel or allocate the order without seeing those holds, where
	 * an update makes it fail with a serialization error.
	 */
	if (to_set || holds != NIL || claimed_any || o.stored_policy == NULL ||
		strcmp(o.stored_policy, policy_names[policy]) != 0)
		ChangeLockedOrder(o.id, &o.tid, to_set ? to : o.state, policy_names[policy], reason);

	/*
	 * The lines live in SPI's memory, which SPI_finish frees; the tuplestore
	 * keeps its own copy of each row.
	 */
	for (int i = 0; i < nlines; i++)
	{
		Datum		values[6];
		bool		nulls[6] = {false, false, false, false, false, false};

		values[0] = Int32GetDatum(lines[i].line_no);
		values[1] = lines[i].sku ? CStringGetTextDatum(lines[i].sku) : (Datum) 0;
		nulls[1] = lines[i].sku == NULL;
		values[2] = Int32GetDatum(lines[i].requested);
		values[3] = Int32GetDatum(lines[i].got);
		values[4] = lines[i].where.len > 0 ? CStringGetTextDatum(lines[i].where.data) : (Datum) 0;
		nulls[4] = lines[i].where.len == 0;
		values[5] = CStringGetTextDatum(Outcome(&lines[i], policy));
		tuplestore_putvalues(tupstore, desc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * orderflow.trusted_write(): whether one of orderflow's stock functions is
 * running in this backend (see TrustedWritesBegin); read by the guard
 * triggers.
 */
PG_FUNCTION_INFO_V1(orderflow_trusted_write);
Datum
orderflow_trusted_write(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(trusted_depth > 0);
}

/*
 * Call the PL/pgSQL function named by signature with this call's
 * arguments, trusted writes on while it runs, off again however it ends.
 * The function is called through fmgr, so it runs as the caller, with the
 * caller's row-level security, and needs no EXECUTE grant of its own.
 */
static Datum
CallTrusted(FunctionCallInfo fcinfo, const char *signature)
{
	FmgrInfo   *steps = (FmgrInfo *) fcinfo->flinfo->fn_extra;

	LOCAL_FCINFO(inner, 5);
	Datum		result = (Datum) 0;

	Assert(fcinfo->nargs <= 5);
	if (steps == NULL)
	{
		Oid			fn = DatumGetObjectId(DirectFunctionCall1(to_regprocedure,
															  CStringGetTextDatum(signature)));

		if (!OidIsValid(fn))
			elog(ERROR, "function %s does not exist", signature);
		steps = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(fn, steps, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = steps;
	}
	InitFunctionCallInfoData(*inner, steps, fcinfo->nargs, fcinfo->fncollation, NULL, NULL);
	for (int i = 0; i < fcinfo->nargs; i++)
		inner->args[i] = fcinfo->args[i];

	TrustedWritesBegin();
	PG_TRY();
	{
		result = FunctionCallInvoke(inner);
	}
	PG_FINALLY();
	{
		TrustedWritesEnd();
	}
	PG_END_TRY();
	fcinfo->isnull = inner->isnull;
	return result;
}

/* orderflow.cancel_line(order_id, line_no, reason): see cancel_line_steps. */
PG_FUNCTION_INFO_V1(orderflow_cancel_line);
Datum
orderflow_cancel_line(PG_FUNCTION_ARGS)
{
	return CallTrusted(fcinfo, "orderflow.cancel_line_steps(bigint,integer,text)");
}

/*
 * orderflow.substitute_line(order_id, line_no, sku, unit_price, reason): see
 * substitute_line_steps.
 */
PG_FUNCTION_INFO_V1(orderflow_substitute_line);
Datum
orderflow_substitute_line(PG_FUNCTION_ARGS)
{
	return CallTrusted(fcinfo, "orderflow.substitute_line_steps(bigint,integer,text,numeric,text)");
}

/*
 * An order has been cancelled: what the buyer paid is due back.  Records one
 * refund (kind order_cancelled) of the amount paid less the net of the
 * refunds and charges already recorded for the order, so that the order's
 * records add up to what was paid; nothing when that is not positive.
 * Written as the extension, with trusted writes on.  Called by the trigger
 * that gives back what a cancelled order holds (in a connected SPI session).
 */
void
RecordCancelRefund(int64 order_id, Datum paid_amount)
{
	Oid			argtypes[2] = {INT8OID, NUMERICOID};
	Datum		args[2] = {Int64GetDatum(order_id), paid_amount};
	SavedUser	saved_user;

	BecomeExtensionOwner(&saved_user);
	TrustedWritesBegin();
	PG_TRY();
	{
		if (SPI_execute_with_args("INSERT INTO orderflow.order_adjustments (order_id, kind, amount, reason)"
								  " SELECT $1, 'order_cancelled', d.due, 'order cancelled'"
								  "   FROM (SELECT $2 OPERATOR(pg_catalog.-) coalesce(pg_catalog.sum(a.amount), 0) AS due"
								  "           FROM orderflow.order_adjustments a"
								  "          WHERE a.order_id OPERATOR(pg_catalog.=) $1) d"
								  "  WHERE d.due OPERATOR(pg_catalog.>) 0",
								  2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not record the refund of order %lld", (long long) order_id);
	}
	PG_FINALLY();
	{
		TrustedWritesEnd();
	}
	PG_END_TRY();
	RestoreUser(&saved_user);
}
